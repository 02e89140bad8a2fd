package tinylora_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/tinylora"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, save := range []bool{true, false} {
		cfg := tinylora.NewConfig()
		cfg.U, cfg.WeightTying, cfg.SaveProjection = 8, 1, save
		cfg.TargetModules = tuners.Names("0", "2")
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		keys := []string{"base_model.tinylora_v.0",
			"base_model.model.0.tinylora_A", "base_model.model.0.tinylora_B",
			"base_model.model.2.tinylora_A", "base_model.model.2.tinylora_B"}
		if save {
			keys = append(keys, "base_model.model.0.tinylora_P", "base_model.model.2.tinylora_P")
		}
		peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
	}
}
