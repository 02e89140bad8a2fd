package road_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/road"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, v := range []string{road.Variant1, road.Variant2, road.Variant4} {
		cfg := road.NewConfig()
		cfg.Variant, cfg.GroupSize = v, 4
		cfg.TargetModules = tuners.Names("0", "2")
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x,
			[]string{"base_model.model.0.road_theta", "base_model.model.0.road_alpha", "base_model.model.2.road_theta", "base_model.model.2.road_alpha"})
	}
}
