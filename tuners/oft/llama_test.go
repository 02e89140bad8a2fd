package oft_test

import (
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/oft"
)

// OFT on a whole small LLaMA, embeddings and the attention/MLP projections
// included: the model runs, the identity init leaves it unchanged, and a
// merge with random weights reproduces the unmerged output.
func TestLlamaEmbeddingsAndProjections(t *testing.T) {
	base, err := fixtures.Build(nn.DefaultBackend(), "llama", map[string]float64{
		"vocab": 64, "hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 64, "rms_eps": 1e-6, "rope_theta": 10000,
	}, 5)
	if err != nil {
		t.Fatal(err)
	}
	in := models.Input{IDs: []int32{1, 5, 9, 2, 7, 3}, Shape: []int{1, 6}}
	want, err := base.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oft.NewConfig()
	cfg.BlockSize = 8
	cfg.TargetModules = tuners.Names("embed_tokens", "q_proj", "down_proj")
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(got.Data(), want.Data()); d > 1e-5 {
		t.Fatalf("identity-initialised OFT changed the logits by %g", d)
	}
	cfg2 := oft.NewConfig()
	cfg2.BlockSize = 8
	cfg2.InitWeights = false
	cfg2.TargetModules = tuners.Names("embed_tokens", "v_proj", "up_proj")
	if err := m.AddAdapter(cfg2, peft.AdapterName("rand")); err != nil {
		t.Fatal(err)
	}
	if err := m.SetAdapter("rand"); err != nil {
		t.Fatal(err)
	}
	unmerged, err := m.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(unmerged.Data(), want.Data()); d < 1e-3 {
		t.Fatalf("random OFT left the logits unchanged (%g)", d)
	}
	if err := m.Merge(); err != nil {
		t.Fatal(err)
	}
	merged, err := m.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(merged.Data(), unmerged.Data()); d > 1e-4 {
		t.Fatalf("merged logits differ from unmerged by %g", d)
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		if v := float64(a[i] - b[i]); v > d {
			d = v
		} else if -v > d {
			d = -v
		}
	}
	return d
}
