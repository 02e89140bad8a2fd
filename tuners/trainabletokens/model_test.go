package trainabletokens_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners/trainabletokens"
)

var llamaDims = map[string]float64{
	"vocab": 32, "hidden": 16, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate": 24, "rms_eps": 1e-6, "rope_theta": 10000,
}

// TestTrainSaveLoad trains three token rows of a llama model's embedding,
// checks that only they change and only they are saved (as PEFT does: no
// full embedding), and that the reloaded adapter and the merged model give
// the trained output.
func TestTrainSaveLoad(t *testing.T) {
	build := func() models.Model {
		m, err := fixtures.Build(nil, "llama", llamaDims, 11)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	base := build()
	cfg := trainabletokens.NewConfig()
	cfg.TokenIndices = []int{1, 5, 7}
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Config(peft.DefaultAdapterName).(*trainabletokens.Config).TargetModules; got.Pattern != "model.embed_tokens" {
		t.Fatalf("default target_modules %v, want the input embedding's path", got)
	}
	tp := m.TrainableParameters()
	if len(tp) != 1 || tp[0].Name != "base_model.model.model.embed_tokens.trainable_tokens_delta.default" {
		t.Fatalf("trainable parameters %v", tp)
	}
	ids := []int32{1, 2, 5, 9, 7, 1}
	in := models.Input{IDs: ids, Shape: []int{2, 3}}
	loss := func() *nn.Tensor {
		out, err := base.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		return nn.MeanAll(nn.Square(out))
	}
	opt := nn.NewSGD(nn.SGDConfig{LR: 0.5}, nn.ParamGroup{Params: []*nn.Tensor{tp[0].T}, LR: 0.5})
	first := loss().Item()
	for range 10 {
		opt.ZeroGrad()
		loss().Backward()
		opt.Step()
	}
	if last := loss().Item(); !(last < first) {
		t.Fatalf("loss %v -> %v", first, last)
	}
	want, _ := base.Forward(in)
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	saved, _, err := safetensors.ReadAll(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	if len(saved) != 1 || saved["base_model.model.model.embed_tokens.trainable_tokens_delta"].Shape == nil {
		t.Fatalf("saved tensors %v", saved)
	}
	raw, err := os.ReadFile(filepath.Join(dir, peft.ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"modules_to_save", "exclude_modules", "layers_to_transform", "layers_pattern"} {
		if _, ok := fields[k]; ok {
			t.Errorf("config has %s, which TrainableTokensConfig does not", k)
		}
	}
	if string(fields["token_indices"]) != "[1,5,7]" && string(fields["token_indices"]) != "[\n    1,\n    5,\n    7\n  ]" {
		t.Errorf("token_indices written as %s", fields["token_indices"])
	}
	fresh := build()
	m2, err := peft.Load(fresh, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := fresh.Forward(in)
	if !slices.Equal(got.Data(), want.Data()) {
		t.Fatal("reloaded adapter gives another output")
	}
	if _, err := m2.MergeAndUnload(peft.SafeMerge()); err != nil {
		t.Fatal(err)
	}
	if got, _ := fresh.Forward(in); !slices.Equal(got.Data(), want.Data()) {
		t.Fatal("merged model gives another output")
	}
}

// TestTiedHead checks weight tying: an LM head sharing the embedding's
// weight applies the same trained rows, saves nothing, and merging keeps
// the tensor shared.
func TestTiedHead(t *testing.T) {
	be := nn.DefaultBackend()
	emb := &nn.Embedding{Weight: nn.Normal(be, nn.NewRNG(1), 0, 1, 8, 3)}
	head := &nn.Linear{Weight: emb.Weight}
	root := nn.NewDict()
	root.Add("embed_tokens", emb)
	root.Add("lm_head", head)
	cfg := trainabletokens.NewConfig()
	cfg.TokenIndices, cfg.InitWeights = []int{2, 6}, false
	m, err := peft.New(root, cfg)
	if err != nil {
		t.Fatal(err)
	}
	el, ok := root.Get("embed_tokens").(*trainabletokens.Layer)
	hl, ok2 := root.Get("lm_head").(*trainabletokens.Layer)
	if !ok || !ok2 || el.Tied() || !hl.Tied() {
		t.Fatalf("embed_tokens %T, lm_head %T", root.Get("embed_tokens"), root.Get("lm_head"))
	}
	x := nn.Normal(be, nn.NewRNG(2), 0, 1, 2, 3)
	rows := el.Lookup([]int32{0, 1, 2, 3, 4, 5, 6, 7}, 8)
	want := nn.LinearOp(x, rows, nil).Data()
	if got := hl.Forward(x).Data(); !slices.Equal(got, want) {
		t.Fatal("the tied head does not use the embedding's trained rows")
	}
	sd, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		t.Fatal(err)
	}
	if len(sd) != 1 || sd["base_model.model.embed_tokens.trainable_tokens_delta"] == nil {
		t.Fatalf("state dict %v", sd)
	}
	if tp := m.TrainableParameters(); len(tp) != 1 {
		t.Fatalf("trainable parameters %v", tp)
	}
	if err := m.Merge(); err != nil {
		t.Fatal(err)
	}
	if got := head.Forward(x).Data(); !slices.Equal(got, want) {
		t.Fatal("merged head differs")
	}
	if err := m.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if got := hl.Forward(x).Data(); !slices.Equal(got, want) {
		t.Fatal("unmerged tied head differs")
	}
	if _, err := m.MergeAndUnload(); err != nil {
		t.Fatal(err)
	}
	if root.Get("lm_head") != nn.Module(head) || head.Weight != emb.Weight {
		t.Fatal("unloading did not give back the tied modules")
	}
}
