package poly_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/poly"
)

func tinyLlama(t *testing.T) *llama.Model {
	t.Helper()
	cfg := llama.Config{VocabSize: 32, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2}
	m, err := llama.New(nil, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLlamaSaveLoad trains nothing but fills a Poly adapter on LLaMA's
// default targets (q_proj, v_proj), checks that task ids change the output,
// saves it with PEFT's key names and loads it back.
func TestLlamaSaveLoad(t *testing.T) {
	cfg := poly.NewConfig()
	cfg.R, cfg.NTasks, cfg.NSkills, cfg.NSplits = 2, 3, 2, 2
	cfg.TaskType = "CAUSAL_LM"
	m, err := peft.New(tinyLlama(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range m.TrainableParameters() {
		p.T.CopyFrom(layertest.Rand(rng, 0.5, p.T.Shape()...))
	}
	m.SetTraining(false)
	in := models.Input{IDs: []int32{1, 2, 3, 4, 5, 6}, Shape: []int{2, 3}}
	if _, err := m.Forward(in); err == nil || !strings.Contains(err.Error(), "task id") {
		t.Fatalf("Forward without task ids: %v", err)
	}
	if _, err := m.ForwardTasks(in, []int32{0}); err == nil {
		t.Fatal("one task id for two rows")
	}
	if _, err := m.ForwardTasks(in, []int32{0, 3}); err == nil || !strings.Contains(err.Error(), "only 3 tasks") {
		t.Fatalf("task id 3 of 3: %v", err)
	}
	tasks := []int32{2, 0}
	want, err := m.ForwardTasks(in, tasks)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := m.ForwardTasks(in, []int32{1, 1})
	if slices.Equal(want.Data(), other.Data()) {
		t.Fatal("task ids do not change the output")
	}
	// Each row depends on its own task only.
	row, _ := m.ForwardTasks(models.Input{IDs: in.IDs[3:], Shape: []int{1, 3}}, tasks[1:])
	if err := layertest.Close(row.Data(), layertest.To64(want.Data()[len(want.Data())/2:]), 1e-5, 1e-4); err != nil {
		t.Fatalf("row 1 alone: %v", err)
	}
	if err := m.Merge(); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("Merge: %v", err)
	}
	// Disabled: task ids ignored, base output.
	if err := m.DisableAdapters(func() error { _, err := m.Forward(in); return err }); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	keys := f.Names()
	f.Close()
	sort.Strings(keys)
	var wantKeys []string
	for i := range 2 {
		for _, p := range []string{"q_proj", "v_proj"} {
			for _, k := range []string{"poly_lora_A", "poly_lora_B", "poly_router.module_logits"} {
				wantKeys = append(wantKeys, "base_model.model.model.layers."+string(rune('0'+i))+".self_attn."+p+"."+k)
			}
		}
	}
	sort.Strings(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("saved keys\n%q\nwant\n%q", keys, wantKeys)
	}
	js, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"peft_type": "POLY"`, `"n_splits": 2`, `"poly_type": "poly"`, `"n_tasks": 3`} {
		if !strings.Contains(string(js), k) {
			t.Fatalf("adapter_config.json lacks %s:\n%s", k, js)
		}
	}
	if strings.Contains(string(js), "layers_to_transform") {
		t.Fatalf("adapter_config.json has layers_to_transform, which PolyConfig lacks:\n%s", js)
	}

	m2, err := peft.Load(tinyLlama(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	m2.SetTraining(false)
	got, err := m2.ForwardTasks(in, tasks)
	if err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(got.Data(), layertest.To64(want.Data()), 1e-6, 0); err != nil {
		t.Fatalf("reloaded: %v", err)
	}
	// Training mode: CausalLMLoss with task ids backpropagates to every tensor.
	m3, err := peft.New(tinyLlama(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m3.SetTraining(true)
	loss, err := m3.CausalLMLoss(in, in.IDs, tasks)
	if err != nil {
		t.Fatal(err)
	}
	loss.Backward()
	for _, p := range m3.TrainableParameters() {
		if p.T.Grad() == nil {
			t.Fatalf("no gradient on %s", p.Name)
		}
	}
}

func TestGenerateTask(t *testing.T) {
	cfg := poly.NewConfig()
	cfg.NTasks = 2
	m, err := peft.New(tinyLlama(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 2))
	for _, p := range m.TrainableParameters() {
		p.T.CopyFrom(layertest.Rand(rng, 1, p.T.Shape()...))
	}
	m.SetTraining(false)
	o := llama.GenerateOptions{MaxNewTokens: 4}
	if _, err := m.Generate([]int32{1, 2}, o); err == nil {
		t.Fatal("Generate without a task id")
	}
	if _, err := m.GenerateTask([]int32{1, 2}, o, 1); err != nil {
		t.Fatal(err)
	}
}
