package shira_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/shira"
)

// TestSaveLoadRoundTrip also checks that the mask, which is not saved, is
// re-derived identically on load.
func TestSaveLoadRoundTrip(t *testing.T) {
	seed := int64(11)
	cfg := shira.NewConfig()
	cfg.R, cfg.RandomSeed = 1, &seed
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x,
		[]string{"base_model.model.0.shira_weight", "base_model.model.2.shira_weight"})
}
