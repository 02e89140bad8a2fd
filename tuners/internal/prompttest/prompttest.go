// Package prompttest holds the checks every prompt-learning method package
// runs in its tests on a tiny LLaMA: the encoder's gradients match finite
// differences, greedy generation through the KV cache equals the argmax of
// full forward passes, a saved adapter reloads to the same outputs, and a
// few training steps lower the loss.
package prompttest

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
)

// Config is the tiny grouped-query LLaMA the checks run on.
func Config() llama.Config {
	return llama.Config{
		VocabSize: 19, HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, RMSNormEps: 1e-6, RopeTheta: 10000,
	}
}

// Base returns a tiny LLaMA with weights large enough to make attention
// non-uniform, the same for the same seed.
func Base(t testing.TB, seed uint64) *llama.Model {
	t.Helper()
	m, err := llama.New(nil, Config(), seed)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.NamedParameters(m) {
		if strings.HasSuffix(p.Name, "norm.weight") {
			continue
		}
		p.T.CopyFrom(nn.Scale(p.T, 25))
	}
	return m
}

// IDs are the inputs the checks use: [2, 5].
var IDs = []int32{3, 1, 4, 1, 5, 9, 2, 6, 5, 3}

// Input returns IDs as a [2, 5] model input.
func Input() models.Input { return models.Input{IDs: IDs, Shape: []int{2, 5}} }

// GradCheck checks the encoder's gradients for Encode(0..T-1) of a batch of
// two rows (taskIDs for multitask prompt tuning) against finite
// differences.
func GradCheck(t *testing.T, enc tuners.PromptEncoder, tokens int, taskIDs []int32) {
	t.Helper()
	indices := make([]int32, 2*tokens)
	for i := range indices {
		indices[i] = int32(i % tokens)
	}
	var params []*nn.Tensor
	for _, p := range nn.NamedParameters(enc) {
		if p.T.RequiresGrad() {
			params = append(params, p.T)
		}
	}
	if len(params) == 0 {
		t.Fatal("the encoder has no trainable parameter")
	}
	f := func() *nn.Tensor {
		out, err := enc.Encode(indices, 2, taskIDs)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := nn.GradCheck(f, params, 1e-3, 2e-2); err != nil {
		t.Error(err)
	}
}

// Generation checks that greedy generation with the model's active adapter
// (task taskID, or -1 for none) equals the argmax of full forward passes
// over the growing sequence.
func Generation(t *testing.T, m *peft.Model, taskID int32) {
	t.Helper()
	prompt := []int32{2, 7, 1}
	var got []int32
	var err error
	o := llama.GenerateOptions{MaxNewTokens: 4}
	if taskID >= 0 {
		got, err = m.GenerateTask(prompt, o, taskID)
	} else {
		got, err = m.Generate(prompt, o)
	}
	if err != nil {
		t.Fatal(err)
	}
	seq := append([]int32(nil), prompt...)
	for step, tok := range got {
		var tasks []int32
		if taskID >= 0 {
			tasks = []int32{taskID}
		}
		logits, err := m.ForwardTasks(models.Input{IDs: seq, Shape: []int{1, len(seq)}}, tasks)
		if err != nil {
			t.Fatal(err)
		}
		v := logits.Dim(2)
		last := logits.Data()[(logits.Dim(1)-1)*v:]
		best := 0
		for i, x := range last {
			if x > last[best] {
				best = i
			}
		}
		if int32(best) != tok {
			t.Fatalf("step %d: generated %d, full forward's argmax %d", step, tok, best)
		}
		seq = append(seq, tok)
	}
}

// SaveLoad saves adapter "default" of m, loads the folder into a fresh
// base from newBase and checks the outputs agree (task ids for multitask
// prompt tuning), trainable and frozen.
func SaveLoad(t *testing.T, m *peft.Model, newBase func() *llama.Model, taskIDs []int32) {
	t.Helper()
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	want, err := m.ForwardTasks(Input(), taskIDs)
	if err != nil {
		t.Fatal(err)
	}
	for _, trainable := range []bool{false, true} {
		m2, err := peft.Load(newBase(), dir, peft.Trainable(trainable))
		if err != nil {
			t.Fatal(err)
		}
		got, err := m2.ForwardTasks(Input(), taskIDs)
		if err != nil {
			t.Fatal(err)
		}
		if err := Close(got.Data(), want.Data(), 1e-5); err != nil {
			t.Errorf("reloaded (trainable %v): %v", trainable, err)
		}
		n, _ := m2.NumTrainableParameters()
		if trainable != (n > 0) {
			t.Errorf("reloaded (trainable %v): %d trainable parameters", trainable, n)
		}
	}
}

// Train runs a few AdamW steps of the causal-LM loss on the adapter's
// trainable parameters and checks that the loss falls and that the base
// model is unchanged.
func Train(t *testing.T, m *peft.Model, taskIDs []int32) {
	t.Helper()
	var params []*nn.Tensor
	for _, p := range m.TrainableParameters() {
		params = append(params, p.T)
	}
	if len(params) == 0 {
		t.Fatal("no trainable parameters")
	}
	baseBefore := nn.StateDict(m.Base())["model.embed_tokens.weight"].Data()
	c := nn.DefaultAdamW()
	c.LR, c.WeightDecay = 0.05, 0
	opt := nn.NewAdamW(c, c.Group(params...))
	var first, last float32
	for step := range 8 {
		opt.ZeroGrad()
		loss, err := m.CausalLMLoss(Input(), IDs, taskIDs)
		if err != nil {
			t.Fatal(err)
		}
		loss.Backward()
		opt.Step()
		if step == 0 {
			first = loss.Item()
		}
		last = loss.Item()
	}
	if !(last < first) {
		t.Errorf("loss did not fall: %v -> %v", first, last)
	}
	if err := Close(nn.StateDict(m.Base())["model.embed_tokens.weight"].Data(), baseBefore, 0); err != nil {
		t.Errorf("training changed the base model: %v", err)
	}
}

// Close reports the first element where |got - want| > tol*(1+|want|).
func Close(got, want []float32, tol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if d := math.Abs(g - w); !(d <= tol*(1+math.Abs(w))) {
			return fmt.Errorf("element %d: got %v, want %v", i, g, w)
		}
	}
	return nil
}

// Mask checks the attention mask with the model's active adapter: an
// all-ones mask changes nothing (the virtual tokens stay visible), and the
// token at a masked position influences no other position's output.
func Mask(t *testing.T, m *peft.Model, taskIDs []int32) {
	t.Helper()
	in := Input()
	plain, err := m.ForwardTasks(in, taskIDs)
	if err != nil {
		t.Fatal(err)
	}
	ones := make([]int32, len(IDs))
	for i := range ones {
		ones[i] = 1
	}
	in.Mask = ones
	got, err := m.ForwardTasks(in, taskIDs)
	if err != nil {
		t.Fatal(err)
	}
	if err := Close(got.Data(), plain.Data(), 0); err != nil {
		t.Errorf("all-ones mask: %v", err)
	}
	// Mask position 1 of row 0, then change its token.
	mask := append([]int32(nil), ones...)
	mask[1] = 0
	a, err := m.ForwardTasks(models.Input{IDs: IDs, Shape: []int{2, 5}, Mask: mask}, taskIDs)
	if err != nil {
		t.Fatal(err)
	}
	ids := append([]int32(nil), IDs...)
	ids[1] = (ids[1] + 7) % int32(Config().VocabSize)
	b, err := m.ForwardTasks(models.Input{IDs: ids, Shape: []int{2, 5}, Mask: mask}, taskIDs)
	if err != nil {
		t.Fatal(err)
	}
	n, v := a.Dim(1), a.Dim(2)
	masked := n - 5 + 1 // output position of input position 1
	ad, bd := a.Data(), b.Data()
	for p := range n {
		if p == masked {
			continue
		}
		if err := Close(bd[p*v:(p+1)*v], ad[p*v:(p+1)*v], 1e-5); err != nil {
			t.Errorf("position %d depends on a masked token: %v", p, err)
		}
	}
	if Close(ad, plain.Data(), 1e-4) == nil {
		t.Error("masking a token changed nothing")
	}
	if _, err := m.ForwardTasks(models.Input{IDs: IDs, Shape: []int{2, 5}, Mask: ones[:3]}, taskIDs); err == nil {
		t.Error("a mask of the wrong length was accepted")
	}
}
