package adalora_test

import (
	"testing"

	"github.com/gopeft/gopeft/internal/demo"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/train"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adalora"
)

// TestTrainerAllocates runs the train package's loop on a tiny LLaMA with
// an AdaLoRA adapter: through the model's hooks it prunes to target_r per
// layer by total_step - tfinal, and the pruned singular values stay zero to
// the end of training.
func TestTrainerAllocates(t *testing.T) {
	base, err := llama.New(nil, demo.ModelConfig(), 7)
	if err != nil {
		t.Fatal(err)
	}
	cfg := adalora.NewConfig()
	cfg.TargetModules = tuners.Names("q_proj", "v_proj")
	cfg.InitR, cfg.TargetR, cfg.TInit, cfg.TFinal, cfg.TotalStep = 4, 2, 2, 3, 10
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var data []train.Example
	for i := range 8 {
		ids := make([]int32, 6)
		for j := range ids {
			ids[j] = int32((i*7 + j*3) % 16)
		}
		data = append(data, train.Example{IDs: ids})
	}
	tr, err := train.New(m, train.Config{LR: 1e-2, Steps: 12, BatchSize: 4, Seed: 1}, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(); err != nil {
		t.Fatal(err)
	}
	mc := m.Config("default").(*adalora.Config)
	layers := adalora.LayersOf(m.Base(), "default")
	if len(mc.RankPattern) != len(layers) || len(layers) == 0 {
		t.Fatalf("rank_pattern has %d entries for %d layers", len(mc.RankPattern), len(layers))
	}
	kept := 0
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	for key, mask := range mc.RankPattern {
		e := sd["base_model.model."+key].Data()
		for i, on := range mask {
			if on {
				kept++
			} else if e[i] != 0 {
				t.Fatalf("%s[%d] is pruned but E = %v", key, i, e[i])
			}
		}
	}
	if want := cfg.TargetR * len(layers); kept != want {
		t.Fatalf("%d triplets kept, want %d", kept, want)
	}
}
