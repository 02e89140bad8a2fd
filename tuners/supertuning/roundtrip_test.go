package supertuning_test

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
	"github.com/gopeft/gopeft/tuners/supertuning"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	r := 2
	for _, saved := range []bool{true, false} {
		cfg := supertuning.NewConfig()
		cfg.Sparsity, cfg.R, cfg.SavePrecomputedIndices = 0.8, &r, saved
		cfg.TargetModules = tuners.Names("0", "2")
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		var keys []string
		for _, m := range []string{"0", "2"} {
			for _, f := range []string{"supertuning_values", "supertuning_lora_A.weight", "supertuning_lora_B.weight"} {
				keys = append(keys, "base_model.model."+m+"."+f)
			}
		}
		peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)

		// The indices are in the file exactly when save_precomputed_indices.
		m, err := peft.New(peftcheck.MLP(6, 8, 4), cfg)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := m.Save(dir); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(filepath.Join(dir, peft.WeightsName))
		if err != nil {
			t.Fatal(err)
		}
		info, ok := f.Info("base_model.model.0.supertuning_indices")
		f.Close()
		if ok != saved || (ok && (len(info.Shape) != 1 || info.Shape[0] != 9)) {
			t.Fatalf("save_precomputed_indices %v: indices in file %v %+v", saved, ok, info)
		}
	}
}
