package delora_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/delora"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := delora.NewConfig()
	cfg.R = 2
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	var keys []string
	for _, m := range []string{"0", "2"} {
		for _, k := range []string{"delora_A", "delora_B", "delora_lambda", "delora_w_norm"} {
			keys = append(keys, "base_model.model."+m+"."+k)
		}
	}
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
}
