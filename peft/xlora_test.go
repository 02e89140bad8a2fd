package peft_test

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
	"github.com/gopeft/gopeft/tuners/xlora"
)

func xloraBase(t *testing.T) *llama.Model {
	t.Helper()
	cfg := llama.Config{VocabSize: 32, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2}
	m, err := llama.New(nil, cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randFill(r *rand.Rand, t *nn.Tensor, std float64) {
	v := make([]float32, t.Len())
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	t.CopyFromHost(v)
}

// xloraExperts saves n LoRA experts with random A and B under dir/e<i>.
func xloraExperts(t *testing.T, dir string, n int) []string {
	t.Helper()
	var dirs []string
	r := rand.New(rand.NewPCG(11, 12))
	for i := range n {
		cfg := lora.NewConfig()
		cfg.R, cfg.Alpha = 2, 4
		cfg.TargetModules = tuners.Names("q_proj", "v_proj", "down_proj")
		m, err := peft.New(xloraBase(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m.TrainableParameters() {
			randFill(r, p.T, 0.3)
		}
		d := filepath.Join(dir, "e"+strconv.Itoa(i))
		if err := m.Save(d); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	return dirs
}

func xloraConfig(dirs []string) *xlora.Config {
	cfg := xlora.NewConfig()
	h := 16
	cfg.HiddenSize = &h
	for i, d := range dirs {
		cfg.Adapters = append(cfg.Adapters, xlora.Expert{Name: "expert" + strconv.Itoa(i), Path: d})
	}
	return cfg
}

// scaledLoRA loads the experts as a plain LoRA model with every expert's B
// multiplied by c[i]: what X-LoRA computes when the scalings of expert i
// are c[i] at every token and layer (LoRA is linear in its input).
func scaledLoRA(t *testing.T, dirs []string, c []float64) *peft.Model {
	t.Helper()
	m, err := peft.Load(xloraBase(t), dirs[0], peft.AdapterName("0"))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range dirs[1:] {
		if err := m.LoadAdapter(d, strconv.Itoa(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for i := range dirs {
		name := strconv.Itoa(i)
		names = append(names, name)
		sd, err := m.StateDict(name)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range sd {
			if strings.Contains(k, "lora_B") {
				d := v.Data()
				s := make([]float32, len(d))
				for j := range d {
					s[j] = float32(float64(d[j]) * c[i])
				}
				v.CopyFromHost(s)
			}
		}
	}
	if err := m.SetAdapter(names...); err != nil {
		t.Fatal(err)
	}
	m.SetTraining(false)
	return m
}

func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > tol*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("%s: entry %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

var xloraIn = models.Input{IDs: []int32{1, 5, 9, 2, 3, 30, 7, 7}, Shape: []int{2, 4}}

// TestXLoRAConstantScalings: a classifier whose last layer has zero weight
// and bias b gives every token the scalings softmax(b); X-LoRA's output is
// then the LoRA model with expert i's B scaled by softmax(b)_i *
// global_scaling_weight.
func TestXLoRAConstantScalings(t *testing.T) {
	dirs := xloraExperts(t, t.TempDir(), 3)
	cfg := xloraConfig(dirs)
	cfg.GlobalScalingWeight = 0.7
	x, err := peft.NewXLoRA(xloraBase(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	last := x.Classifier().Layers.Layers[0].(*nn.Linear)
	last.Weight.CopyFrom(nn.Zeros(nil, last.Weight.Shape()...))
	bias := []float64{0.3, -1, 0.8}
	last.Bias.CopyFromHost([]float32{0.3, -1, 0.8})
	var sum float64
	for _, b := range bias {
		sum += math.Exp(b)
	}
	c := make([]float64, 3)
	for i, b := range bias {
		c[i] = math.Exp(b) / sum * 0.7
	}
	got, err := x.Forward(xloraIn)
	if err != nil {
		t.Fatal(err)
	}
	want, err := scaledLoRA(t, dirs, c).Forward(xloraIn)
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "logits", got.Data(), want.Data(), 1e-4)
	ones, _ := scaledLoRA(t, dirs, []float64{1, 1, 1}).Forward(xloraIn)
	if d := xloraMaxDiff(got.Data(), ones.Data()); d < 1e-3 {
		t.Fatalf("the scalings change the logits by only %v: the test would not see them", d)
	}
	if s := x.LatestScalings(); s == nil || !slices.Equal(s.Shape(), []int{2, 4, 6, 3}) {
		t.Fatalf("latest scalings %v: want [batch 2, seq 4, 6 adapted layers, 3 experts]", s)
	}
	// top_k_lora 1 with softmax over the top-k: only expert 2 (bias 0.8),
	// with scaling 1.
	k := 1
	cfg.TopKLoRA, cfg.EnableSoftmaxTopK = &k, true
	got, err = x.Forward(xloraIn)
	if err != nil {
		t.Fatal(err)
	}
	want, _ = scaledLoRA(t, dirs, []float64{0, 0, 0.7}).Forward(xloraIn)
	closeTo(t, "top-1 logits", got.Data(), want.Data(), 1e-4)
	// The layers are left without scalings: the inner LoRA model runs all
	// experts plainly again.
	plain, _ := x.Model().Forward(xloraIn)
	ref, _ := scaledLoRA(t, dirs, []float64{1, 1, 1}).Forward(xloraIn)
	closeTo(t, "after Forward", plain.Data(), ref.Data(), 1e-5)
	if err := x.Merge(); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("Merge: %v", err)
	}
}

// TestXLoRAScalingPass: the classifier reads the last hidden state of the
// scaling pass, where every expert is scaled by scaling_pass_value (times
// global_scaling_weight, as in PEFT).
func TestXLoRAScalingPass(t *testing.T) {
	dirs := xloraExperts(t, t.TempDir(), 2)
	for _, v := range []float64{0, 0.5} {
		cfg := xloraConfig(dirs)
		cfg.ScalingPassValue, cfg.GlobalScalingWeight, cfg.LayerwiseScalings, cfg.XLoRADepth, cfg.XLoRASize = v, 2, true, 2, 8
		x, err := peft.NewXLoRA(xloraBase(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.Forward(xloraIn); err != nil {
			t.Fatal(err)
		}
		ref := scaledLoRA(t, dirs, []float64{v * 2, v * 2})
		b := ref.Base().(*llama.Model)
		h, _ := b.Embed(xloraIn.IDs, 2, 4)
		hidden, err := b.HiddenStates(h, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := x.Classifier().Scalings(hidden)
		if err != nil {
			t.Fatal(err)
		}
		closeTo(t, "scalings", x.LatestScalings().Data(), want.Data(), 1e-5)
	}
}

// TestXLoRASaveLoadTrain: PEFT's layout (classifier keys in the folder,
// experts in sub-folders "0", "1", ...), a reload giving the same logits,
// and gradients reaching the classifier only.
func TestXLoRASaveLoadTrain(t *testing.T) {
	tmp := t.TempDir()
	dirs := xloraExperts(t, tmp, 2)
	cfg := xloraConfig(dirs)
	cfg.XLoRADepth, cfg.XLoRASize = 2, 8
	x, err := peft.NewXLoRA(xloraBase(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	params := x.TrainableParameters()
	var names []string
	for _, p := range params {
		names = append(names, p.Name)
	}
	wantNames := []string{"base_model.internal_xlora_classifier.layers.0.weight", "base_model.internal_xlora_classifier.layers.0.bias",
		"base_model.internal_xlora_classifier.layers.3.weight", "base_model.internal_xlora_classifier.layers.3.bias"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("trainable %q, want %q", names, wantNames)
	}
	x.SetTraining(true)
	logits, err := x.Forward(xloraIn)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := llama.CausalLMLoss(logits, xloraIn.IDs)
	if err != nil {
		t.Fatal(err)
	}
	loss.Backward()
	for _, p := range params {
		if p.T.Grad() == nil {
			t.Fatalf("no gradient on %s", p.Name)
		}
	}
	for _, p := range x.Model().TrainableParameters() {
		if p.T.RequiresGrad() {
			t.Fatalf("expert tensor %s trains without use_trainable_adapters", p.Name)
		}
	}
	x.SetTraining(false)
	want, _ := x.Forward(xloraIn)

	out := filepath.Join(tmp, "xlora")
	if err := x.Save(out); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(out, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	keys := f.Names()
	f.Close()
	slices.Sort(keys)
	slices.Sort(wantNames)
	if !slices.Equal(keys, wantNames) {
		t.Fatalf("saved keys %q, want %q", keys, wantNames)
	}
	for _, sub := range []string{"0", "1"} {
		if _, err := os.Stat(filepath.Join(out, sub, "adapter_model.safetensors")); err != nil {
			t.Fatalf("expert folder %s: %v", sub, err)
		}
	}
	js, _ := os.ReadFile(filepath.Join(out, "adapter_config.json"))
	if !strings.Contains(string(js), `"peft_type": "XLORA"`) || !strings.Contains(string(js), `"expert0"`) {
		t.Fatalf("adapter_config.json:\n%s", js)
	}
	y, err := peft.LoadXLoRA(xloraBase(t), out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := y.Forward(xloraIn)
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "reloaded", got.Data(), want.Data(), 1e-6)
	// A classifier file that does not fit is refused by key.
	cfg2 := xloraConfig(dirs)
	if _, err := peft.NewXLoRA(xloraBase(t), cfg2); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "adapter_config.json"), []byte(strings.Replace(string(js), `"xlora_depth": 2`, `"xlora_depth": 1`, 1)), 0o644)
	if _, err := peft.LoadXLoRA(xloraBase(t), out); err == nil || !strings.Contains(err.Error(), "internal_xlora_classifier") {
		t.Fatalf("mismatched classifier: %v", err)
	}
}

// TestXLoRAGradCheck checks the classifier's gradients through both passes
// of the whole model against finite differences.
func TestXLoRAGradCheck(t *testing.T) {
	dirs := xloraExperts(t, t.TempDir(), 2)
	cfg := xloraConfig(dirs)
	cfg.LayerwiseScalings = true
	x, err := peft.NewXLoRA(xloraBase(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ps []*nn.Tensor
	for _, p := range x.TrainableParameters() {
		ps = append(ps, p.T)
	}
	in := models.Input{IDs: []int32{4, 8, 15}, Shape: []int{1, 3}}
	err = nn.GradCheck(func() *nn.Tensor {
		logits, err := x.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		return nn.MeanAll(nn.Square(logits))
	}, ps, 1e-2, 5e-2)
	if err != nil {
		t.Fatal(err)
	}
}

func xloraMaxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

func TestXLoRAPlainLoadPointsToLoadXLoRA(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(`{"peft_type": "XLORA", "hidden_size": 16, "adapters": {}}`), 0o644)
	if _, err := peft.Load(xloraBase(t), dir); err == nil || !strings.Contains(err.Error(), "LoadXLoRA") {
		t.Fatalf("peft.Load of an X-LoRA folder: %v", err)
	}
}

func TestXLoRASetScalingPassValue(t *testing.T) {
	dirs := xloraExperts(t, t.TempDir(), 4)
	x, err := peft.NewXLoRA(xloraBase(t), xloraConfig(dirs))
	if err != nil {
		t.Fatal(err)
	}
	x.SetScalingPassValue(nil)
	if x.Config().ScalingPassValue != 0.25 {
		t.Fatalf("scaling_pass_value %v after nil, want 1/4", x.Config().ScalingPassValue)
	}
	v := 0.1
	x.SetScalingPassValue(&v)
	if x.Config().ScalingPassValue != 0.1 {
		t.Fatal("scaling_pass_value not set")
	}
}
