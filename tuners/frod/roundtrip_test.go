package frod_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/frod"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := frod.NewConfig()
	cfg.SparseRate = 0.1
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, []string{
		"base_model.frod_V.0", "base_model.frod_V.2",
		"base_model.model.0.frod_lambda_l", "base_model.model.0.frod_lambda_s_values",
		"base_model.model.2.frod_lambda_l", "base_model.model.2.frod_lambda_s_values"})
}
