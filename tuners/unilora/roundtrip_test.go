package unilora_test

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/unilora"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := unilora.NewConfig()
	cfg.R, cfg.ThetaDLength = 2, 32
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, []string{"base_model.unilora_theta_d"})
}

func TestSaveIndicesRoundTrip(t *testing.T) {
	cfg := unilora.NewConfig()
	cfg.R, cfg.ThetaDLength, cfg.SaveIndices = 2, 32, true
	cfg.TargetModules = tuners.Names("0")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	m := peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, []string{"base_model.unilora_theta_d",
		"base_model.model.0.unilora_scales_A", "base_model.model.0.unilora_scales_B"})
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, k := range []string{"base_model.model.0.unilora_indices_A", "base_model.model.0.unilora_indices_B"} {
		if info, ok := f.Info(k); !ok || info.DType != "I64" {
			t.Errorf("%s: saved %v (%v), want an I64 tensor", k, ok, info.DType)
		}
	}
}
