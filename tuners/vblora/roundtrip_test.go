package vblora_test

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/vblora"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := vblora.NewConfig()
	cfg.R, cfg.NumVectors, cfg.VectorLength = 2, 6, 2
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, []string{
		"base_model.model.0.vblora_logits_A", "base_model.model.0.vblora_logits_B",
		"base_model.model.2.vblora_logits_A", "base_model.model.2.vblora_logits_B",
		"base_model.vblora_vector_bank",
	})
}

// TestSaveOnlyTopKWeights saves in PEFT's save_only_topk_weights form
// (indices and k-1 weights instead of logits) and checks that the file
// holds that form and that the reload, whose logits are -inf outside the
// top k, reproduces the output.
func TestSaveOnlyTopKWeights(t *testing.T) {
	for _, k := range []int{1, 2, 3} {
		cfg := vblora.NewConfig()
		cfg.R, cfg.NumVectors, cfg.VectorLength, cfg.TopK, cfg.SaveOnlyTopKWeights = 2, 6, 2, k, true
		cfg.InitLogitsStd = 1
		cfg.TargetModules = tuners.Names("0", "2")
		newModel := func() nn.Module { return peftcheck.MLP(6, 8, 4) }
		m, err := peft.New(newModel(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		in := models.Input{X: x, Shape: x.Shape()}
		y0, err := m.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := m.Save(dir); err != nil {
			t.Fatal(err)
		}
		file, _, err := safetensors.ReadAll(filepath.Join(dir, peft.WeightsName))
		if err != nil {
			t.Fatal(err)
		}
		idx, ok := file["base_model.model.0.vblora_logits_A_topk_indices"]
		w, ok2 := file["base_model.model.0.vblora_logits_A_topk_weights"]
		if !ok || !ok2 || idx.Shape[2] != k || w.Shape[2] != k-1 {
			t.Fatalf("top-%d file: keys %v", k, keysOf(file))
		}
		if _, ok := file["base_model.model.0.vblora_logits_A"]; ok {
			t.Fatal("the file still holds the logits")
		}
		m2, err := peft.Load(newModel(), dir)
		if err != nil {
			t.Fatal(err)
		}
		y1, err := m2.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		if err := layertest.Close(y1.Data(), layertest.To64(y0.Data()), 1e-5, 1e-5); err != nil {
			t.Fatalf("top-%d reload: %v", k, err)
		}
		// Saving the reloaded adapter again gives the same file, bit for bit.
		dir2 := t.TempDir()
		if err := m2.Save(dir2); err != nil {
			t.Fatal(err)
		}
		file2, _, err := safetensors.ReadAll(filepath.Join(dir2, peft.WeightsName))
		if err != nil {
			t.Fatal(err)
		}
		for key, v := range file {
			if !slices.Equal(v.I64, file2[key].I64) || !slices.Equal(v.F32, file2[key].F32) {
				t.Fatalf("top-%d: re-saved %s differs", k, key)
			}
		}
	}
}

func keysOf(m map[string]safetensors.Tensor) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
