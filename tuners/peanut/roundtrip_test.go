package peanut_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/peanut"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := peanut.NewConfig()
	cfg.R, cfg.Depth = 3, 1
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	var keys []string
	for _, m := range []string{"0", "2"} {
		for _, f := range []string{"peanut_A.weight", "peanut_B.weight", "peanut_encoders.0.weight", "peanut_decoders.0.weight"} {
			keys = append(keys, "base_model.model."+m+"."+f)
		}
	}
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
}
