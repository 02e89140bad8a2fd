package peft

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// ptConfig is a minimal prompt tuning config for exercising the
// prompt-learning path of the Model (the real method lives in its own
// package).
type ptConfig struct {
	tuners.BaseConfig
	tuners.PromptConfig
}

func (c *ptConfig) Validate() error { return nil }

// ptMethod is prompt tuning with a randomly initialised embedding: the
// prompt is the embedding of the virtual-token indices. With prefix set it
// stands for prefix tuning without projection (same encoder, other use).
type ptMethod struct{ prefix bool }

func (p ptMethod) Type() string {
	if p.prefix {
		return "PREFIX_TUNING"
	}
	return "PROMPT_TUNING"
}

func (p ptMethod) NewConfig() tuners.Config {
	return &ptConfig{BaseConfig: tuners.BaseConfig{PeftType: p.Type()}}
}

func (p ptMethod) NewEncoder(_ nn.Module, cfg tuners.Config, _ string, words *nn.Tensor) (tuners.PromptEncoder, error) {
	pc := cfg.(*ptConfig).Prompting()
	dim := pc.TokenDim
	if p.prefix {
		dim = pc.NumLayers * 2 * pc.TokenDim
	}
	w := nn.Normal(words.Backend(), nn.NewRNG(3), 0, 1, pc.NumVirtualTokens, dim).SetRequiresGrad(true)
	return &ptEncoder{emb: &nn.Embedding{Weight: w}, prefix: p.prefix}, nil
}

type ptEncoder struct {
	emb    *nn.Embedding
	prefix bool
}

func (e *ptEncoder) Children() []nn.Child { return []nn.Child{{Name: "embedding", Module: e.emb}} }
func (e *ptEncoder) Params() []nn.Param   { return nil }
func (e *ptEncoder) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("no child %q", name)
}
func (e *ptEncoder) Kind() tuners.PromptKind {
	if e.prefix {
		return tuners.PromptPrefix
	}
	return tuners.PromptPrepend
}
func (e *ptEncoder) Encode(indices []int32, batch int, _ []int32) (*nn.Tensor, error) {
	return e.emb.LookupChecked(indices, batch, len(indices)/batch)
}
func (e *ptEncoder) SavedTensors() (map[string]*nn.Tensor, error) {
	return map[string]*nn.Tensor{"prompt_embeddings": e.emb.Weight}, nil
}
func (e *ptEncoder) LoadSaved(ts map[string]*nn.Tensor) error {
	for k, t := range ts {
		if k != "prompt_embeddings" {
			return fmt.Errorf("unexpected key %q", k)
		}
		if !slices.Equal(t.Shape(), e.emb.Weight.Shape()) {
			return fmt.Errorf("prompt_embeddings: shape %v, want %v", t.Shape(), e.emb.Weight.Shape())
		}
		e.emb.Weight.CopyFrom(t)
	}
	if _, ok := ts["prompt_embeddings"]; !ok {
		return fmt.Errorf("missing key %q", "prompt_embeddings")
	}
	return nil
}
func (e *ptEncoder) SetTrainable(on bool) { e.emb.Weight.SetRequiresGrad(on) }

func registerPrompt(t *testing.T, m ptMethod) {
	prev, had := promptMethods[m.Type()]
	promptMethods[m.Type()] = m
	t.Cleanup(func() {
		if had {
			promptMethods[m.Type()] = prev
		} else {
			delete(promptMethods, m.Type())
		}
	})
}

func goldenCaseDir(t *testing.T, name string) string {
	dir := os.Getenv("GOPEFT_GOLDEN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "golden")
	}
	dir = filepath.Join(dir, name)
	if _, err := os.Stat(filepath.Join(dir, "case.json")); err != nil {
		t.Skipf("golden case %s not available: %v", name, err)
	}
	return dir
}

func within(t *testing.T, what string, got []float32, want []float32, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > atol+rtol*math.Abs(float64(want[i])) {
			t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

// TestPromptTuningGolden runs the prompt-learning path of Model (config
// sizes from the model, loading prompt_embeddings, prepending the prompt,
// disabling, saving) on the golden prompt tuning case, with the test
// encoder above.
func TestPromptTuningGolden(t *testing.T) {
	registerPrompt(t, ptMethod{})
	dir := goldenCaseDir(t, "prompt_tuning_llama")
	var c struct {
		Atol, Rtol float64
	}
	data, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	io, _, err := safetensors.ReadAll(filepath.Join(dir, "io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, len(io["input_ids"].I64))
	for i, v := range io["input_ids"].I64 {
		ids[i] = int32(v)
	}
	in := models.Input{IDs: ids, Shape: io["input_ids"].Shape}

	base, err := fixtures.Load(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(base, filepath.Join(dir, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Shape(), io["output_adapter"].Shape) {
		t.Fatalf("output shape %v, want %v", out.Shape(), io["output_adapter"].Shape)
	}
	within(t, "output_adapter", out.Data(), io["output_adapter"].F32, c.Atol, c.Rtol)
	err = m.DisableAdapters(func() error {
		out, err := m.Forward(in)
		if err != nil {
			return err
		}
		within(t, "output_base", out.Data(), io["output_base"].F32, c.Atol, c.Rtol)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Merge(); err == nil {
		t.Error("merging a prompt-learning adapter succeeded")
	}
	if n, _ := m.NumTrainableParameters(); n != 0 {
		t.Errorf("a loaded prompt is trainable (%d)", n)
	}

	// Save writes the same file and a config with the model's sizes.
	out2 := t.TempDir()
	if err := m.Save(out2); err != nil {
		t.Fatal(err)
	}
	got, _, err := safetensors.ReadAll(filepath.Join(out2, WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := safetensors.ReadAll(filepath.Join(dir, "adapter", WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !slices.Equal(got["prompt_embeddings"].F32, want["prompt_embeddings"].F32) {
		t.Errorf("saved %d tensors; prompt_embeddings equal: %v", len(got), slices.Equal(got["prompt_embeddings"].F32, want["prompt_embeddings"].F32))
	}

	// A new adapter gets its sizes from the model and trains the prompt.
	fresh, err := fixtures.Load(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ptConfig{BaseConfig: tuners.BaseConfig{PeftType: "PROMPT_TUNING"}, PromptConfig: tuners.PromptConfig{NumVirtualTokens: 4}}
	m2, err := New(fresh, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc := m2.Config("default").(*ptConfig).PromptConfig
	if pc.TokenDim != 32 || pc.NumLayers != 2 || pc.NumAttentionHeads != 4 || pc.NumTransformerSubmodules != 1 {
		t.Errorf("sizes from the model: %+v", pc)
	}
	var names []string
	for _, p := range m2.TrainableParameters() {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"prompt_encoder.default.embedding.weight"}) {
		t.Errorf("trainable %q", names)
	}
	out, err = m2.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	nn.SumAll(out).Backward()
	if g := m2.PromptEncoder("default").(*ptEncoder).emb.Weight.Grad(); g == nil {
		t.Error("no gradient reached the prompt")
	}
}

// TestPrefixPastKV checks the prefix path against the golden prefix tuning
// case's sizes: the config gets the key/value sizes of the grouped-query
// model, and a forward pass with past keys and values runs.
func TestPrefixPastKV(t *testing.T) {
	registerPrompt(t, ptMethod{prefix: true})
	dir := goldenCaseDir(t, "prefix_tuning_llama")
	base, err := fixtures.Load(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ptConfig{BaseConfig: tuners.BaseConfig{PeftType: "PREFIX_TUNING"}, PromptConfig: tuners.PromptConfig{NumVirtualTokens: 3}}
	m, err := New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc := m.Config("default").(*ptConfig).PromptConfig
	// PEFT wrote the key/value sizes into this case's config.
	raw, err := os.ReadFile(filepath.Join(dir, "adapter", ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		TokenDim          int `json:"token_dim"`
		NumAttentionHeads int `json:"num_attention_heads"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if pc.TokenDim != want.TokenDim || pc.NumAttentionHeads != want.NumAttentionHeads {
		t.Errorf("prefix sizes %d/%d, PEFT's %d/%d", pc.TokenDim, pc.NumAttentionHeads, want.TokenDim, want.NumAttentionHeads)
	}
	out, err := m.Forward(models.Input{IDs: []int32{1, 2, 3, 4, 5, 6}, Shape: []int{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Shape(); !slices.Equal(got, []int{2, 3, 64}) {
		t.Errorf("prefix output shape %v, want [2 3 64]", got)
	}
}

// manualLoss is the causal-LM loss computed by hand in float64 from logits
// [batch, n, vocab] whose first virtual positions carry no label.
func manualLoss(logits []float32, batch, n, vocab, virtual int, labels []int32, seq int) float64 {
	var sum float64
	count := 0
	for b := range batch {
		for i := range n - 1 {
			pos := i + 1 - virtual
			if pos < 0 || labels[b*seq+pos] == IgnoreIndex {
				continue
			}
			row := logits[(b*n+i)*vocab : (b*n+i+1)*vocab]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			var z float64
			for _, v := range row {
				z += math.Exp(float64(v) - mx)
			}
			sum += -(float64(row[labels[b*seq+pos]]) - mx - math.Log(z))
			count++
		}
	}
	return sum / float64(count)
}

func TestCausalLMLoss(t *testing.T) {
	registerPrompt(t, ptMethod{})
	dir := goldenCaseDir(t, "prompt_tuning_llama")
	base, err := fixtures.Load(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{3, 9, 27, 1, 5, 60, 2, 8}
	labels := []int32{3, 9, IgnoreIndex, 1, 5, 60, 2, IgnoreIndex}
	in := models.Input{IDs: ids, Shape: []int{2, 4}}
	for _, withPrompt := range []bool{false, true} {
		var m *Model
		if withPrompt {
			m, err = Load(base, filepath.Join(dir, "adapter"))
		} else {
			m = &Model{root: base, adapters: map[string]*adapterState{}}
		}
		if err != nil {
			t.Fatal(err)
		}
		loss, err := m.CausalLMLoss(in, labels, nil)
		if err != nil {
			t.Fatal(err)
		}
		logits, err := m.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		n, vocab := logits.Dim(1), logits.Dim(2)
		want := manualLoss(logits.Data(), 2, n, vocab, n-4, labels, 4)
		if d := math.Abs(float64(loss.Item()) - want); d > 1e-5*math.Max(1, want) {
			t.Errorf("prompt %v: loss %g, by hand %g", withPrompt, loss.Item(), want)
		}
	}
	m := &Model{root: base, adapters: map[string]*adapterState{}}
	if _, err := m.CausalLMLoss(in, labels[:3], nil); err == nil {
		t.Error("labels of the wrong length accepted")
	}
	if _, err := m.CausalLMLoss(in, []int32{0, 0, 0, 0, 0, 0, 0, 999}, nil); err == nil {
		t.Error("a label outside the vocabulary accepted")
	}
}

// trainFlag records SetTraining calls.
type trainFlag struct {
	ptEncoder
	training bool
}

func (f *trainFlag) SetTraining(on bool) { f.training = on }

func TestSetTrainingReachesPromptEncoders(t *testing.T) {
	enc := &trainFlag{ptEncoder: ptEncoder{emb: &nn.Embedding{Weight: nn.Zeros(nil, 1, 1)}}}
	m := &Model{root: nn.NewSequential(), adapters: map[string]*adapterState{"p": {encoder: enc}}, order: []string{"p"}}
	m.SetTraining(true)
	if !enc.training {
		t.Error("SetTraining(true) did not reach the prompt encoder")
	}
	m.SetTraining(false)
	if enc.training {
		t.Error("SetTraining(false) did not reach the prompt encoder")
	}
}

// lossEncoder is a prompt tuning encoder with a loss of its own: the mean
// of the logits, recording what it was given.
type lossEncoder struct {
	ptEncoder
	gotShape    []int
	gotMask     []int32
	batch, seqN int
}

func (e *lossEncoder) Loss(logits *nn.Tensor, labels, typeMask []int32, batch, seq int) (*nn.Tensor, error) {
	e.gotShape, e.gotMask, e.batch, e.seqN = logits.Shape(), typeMask, batch, seq
	return nn.MeanAll(logits), nil
}

func TestPromptLossDispatch(t *testing.T) {
	registerPrompt(t, ptMethod{})
	dir := goldenCaseDir(t, "prompt_tuning_llama")
	base, err := fixtures.Load(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(base, filepath.Join(dir, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	in := models.Input{IDs: []int32{1, 2, 3, 4, 5, 6}, Shape: []int{2, 3}}
	labels := []int32{1, 2, 3, 4, 5, 6}
	mask := []int32{1, 2, 2, 1, 2, 4}
	// Without a loss of its own the encoder trains with the causal-LM loss.
	got, err := m.PromptLoss(in, labels, mask)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.CausalLMLoss(in, labels, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Item() != want.Item() {
		t.Errorf("PromptLoss %g, CausalLMLoss %g", got.Item(), want.Item())
	}
	// An encoder with a loss of its own gets the full logits and the mask.
	pt := m.adapters["default"].encoder.(*ptEncoder)
	le := &lossEncoder{ptEncoder: *pt}
	m.adapters["default"].encoder = le
	if _, err := m.PromptLoss(in, labels, mask); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(le.gotShape, []int{2, 7, 64}) || !slices.Equal(le.gotMask, mask) || le.batch != 2 || le.seqN != 3 {
		t.Errorf("the encoder's loss got logits %v, mask %v, batch %d, seq %d", le.gotShape, le.gotMask, le.batch, le.seqN)
	}
	if _, err := m.PromptLoss(in, labels, mask[:2]); err == nil {
		t.Error("a short type mask was accepted")
	}
}
