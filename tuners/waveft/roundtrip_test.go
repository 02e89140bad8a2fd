package waveft_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/waveft"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := waveft.NewConfig()
	cfg.NFrequency, cfg.WaveletFamily = 6, "sym3"
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x,
		[]string{"base_model.model.0.waveft_spectrum", "base_model.model.2.waveft_spectrum"})
}
