package pvera_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/pvera"
)

// TestSaveLoadRoundTrip checks both save_projection modes.
func TestSaveLoadRoundTrip(t *testing.T) {
	lambdas := []string{
		"base_model.model.0.pvera_lambda_b", "base_model.model.0.pvera_lambda_d",
		"base_model.model.2.pvera_lambda_b", "base_model.model.2.pvera_lambda_d",
	}
	for _, save := range []bool{true, false} {
		cfg := pvera.NewConfig()
		cfg.R, cfg.ProjectionPRNGKey, cfg.SaveProjection = 3, 5, save
		cfg.TargetModules = tuners.Names("0", "2")
		keys := lambdas
		if save {
			keys = append([]string{"base_model.pvera_A", "base_model.pvera_B"}, lambdas...)
		}
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		m := peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
		sd, err := m.StateDict("default")
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := sd["base_model.pvera_A"]; save && (!ok || a.Dim(0) != 6 || a.Dim(1) != 8) {
			t.Fatalf("save_projection: pvera_A %v, want [2r, 8] (largest in)", a)
		}
	}
}
