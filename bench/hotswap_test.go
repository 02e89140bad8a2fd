package bench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// goldenLlama loads the base model of the golden lora_llama_qv case (the
// golden LLaMA), or, without the golden suite, builds one of its size.
func goldenLlama(b *testing.B) models.Model {
	dir := os.Getenv("GOPEFT_GOLDEN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "golden")
	}
	if m, err := fixtures.Load(nil, filepath.Join(dir, "lora_llama_qv")); err == nil {
		return m
	}
	m, err := fixtures.Build(nil, "llama", map[string]float64{"heads": 4, "hidden": 32, "intermediate": 64,
		"kv_heads": 2, "layers": 2, "rms_eps": 1e-6, "rope_theta": 10000, "vocab": 64}, 1)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// saveRank16 writes a rank-16 LoRA adapter on every linear layer of the
// golden LLaMA with random weights drawn from seed.
func saveRank16(b *testing.B, seed uint64) string {
	c := lora.NewConfig()
	c.R, c.Alpha = 16, 32
	c.TargetModules = tuners.Names("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
	m, err := peft.New(goldenLlama(b), c)
	if err != nil {
		b.Fatal(err)
	}
	sd, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		b.Fatal(err)
	}
	rng := nn.NewRNG(seed)
	for _, t := range sd {
		t.CopyFrom(nn.Normal(t.Backend(), rng, 0, 0.1, t.Shape()...))
	}
	dir := b.TempDir()
	if err := m.Save(dir); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkHotSwap compares replacing a loaded rank-16 LoRA adapter of the
// golden LLaMA in place (Model.HotSwapAdapter) with loading the same
// adapter fresh next to it (LoadAdapter, then DeleteAdapter to keep the
// model as it was). The bar: hotswap takes less time than load.
func BenchmarkHotSwap(b *testing.B) {
	dirs := []string{saveRank16(b, 1), saveRank16(b, 2)}
	m, err := peft.Load(goldenLlama(b), dirs[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hotswap", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := m.HotSwapAdapter(dirs[i%2], peft.DefaultAdapterName); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := m.LoadAdapter(dirs[i%2], "fresh"); err != nil {
				b.Fatal(err)
			}
			if err := m.DeleteAdapter("fresh"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
