package miss_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/miss"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, mode := range []miss.Init{miss.InitDefault, miss.InitMini, miss.InitBat} {
		t.Run(string(mode), func(t *testing.T) {
			cfg := miss.NewConfig()
			cfg.R, cfg.MiniR, cfg.InitWeights = 2, 2, mode
			cfg.TargetModules = tuners.Names("0", "2")
			x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
			peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x,
				[]string{"base_model.model.0.miss_block", "base_model.model.2.miss_block"})
		})
	}
}
