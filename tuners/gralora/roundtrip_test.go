package gralora_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/gralora"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, hybrid := range []int{0, 2} {
		cfg := gralora.NewConfig()
		cfg.R, cfg.HybridR = 4, hybrid
		cfg.TargetModules = tuners.Names("0", "2")
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		var keys []string
		for _, m := range []string{"0", "2"} {
			keys = append(keys, "base_model.model."+m+".gralora_A", "base_model.model."+m+".gralora_B")
			if hybrid > 0 {
				keys = append(keys, "base_model.model."+m+".gralora_A_general.weight", "base_model.model."+m+".gralora_B_general.weight")
			}
		}
		peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
	}
}
