package psoft_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/psoft"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := psoft.NewConfig()
	cfg.R = 3
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	var keys []string
	for _, m := range []string{"0", "2"} {
		for _, p := range []string{"weight", "vector_a", "vector_b"} {
			keys = append(keys, "base_model.model."+m+".psoft_R."+p)
		}
	}
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
}
