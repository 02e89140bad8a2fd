package randlora_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/randlora"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, save := range []bool{true, false} {
		cfg := randlora.NewConfig()
		cfg.R, cfg.SaveProjection = 3, save
		cfg.TargetModules = tuners.Names("0", "2")
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		keys := []string{"base_model.model.0.randlora_lambda", "base_model.model.0.randlora_gamma", "base_model.model.2.randlora_lambda", "base_model.model.2.randlora_gamma"}
		if save {
			keys = append(keys, "base_model.randlora_A", "base_model.randlora_B")
		}
		peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
	}
}
