package deft_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/deft"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, method := range []string{deft.DecompositionReLU, deft.DecompositionQR} {
		cfg := deft.NewConfig()
		cfg.R, cfg.DecompositionMethod = 3, method
		cfg.TargetModules = tuners.Names("0", "2")
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x,
			[]string{"base_model.model.0.deft_P", "base_model.model.0.deft_R", "base_model.model.2.deft_P", "base_model.model.2.deft_R"})
	}
}
