package adamss_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adamss"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := adamss.NewConfig()
	cfg.R, cfg.NumSubspaces, cfg.SubspaceRank = 4, 2, 1
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, []string{
		"base_model.model.0.adamss_A.0", "base_model.model.0.adamss_A.1",
		"base_model.model.0.adamss_B.0", "base_model.model.0.adamss_B.1", "base_model.model.0.adamss_newB",
		"base_model.model.2.adamss_A.0", "base_model.model.2.adamss_A.1",
		"base_model.model.2.adamss_B.0", "base_model.model.2.adamss_B.1", "base_model.model.2.adamss_newB",
	})
}
