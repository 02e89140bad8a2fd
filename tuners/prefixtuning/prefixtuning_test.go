package prefixtuning_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/prompttest"
	"github.com/gopeft/gopeft/tuners/prefixtuning"
)

func config(tokens int, projection bool) *prefixtuning.Config {
	c := prefixtuning.NewConfig()
	c.NumVirtualTokens, c.PrefixProjection, c.EncoderHiddenSize = tokens, projection, 6
	return c
}

func newModel(t *testing.T, cfg *prefixtuning.Config) (*peft.Model, *llama.Model) {
	t.Helper()
	base := prompttest.Base(t, 3)
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, base
}

// TestSizesFromGroupedQueryModel checks that token_dim and
// num_attention_heads are those of the key/value heads, as PEFT sets them.
func TestSizesFromGroupedQueryModel(t *testing.T) {
	m, base := newModel(t, config(3, false))
	c := m.Config("default").(*prefixtuning.Config)
	mc := base.Config()
	if c.TokenDim != mc.NumKeyValueHeads*mc.HiddenSize/mc.NumAttentionHeads || c.NumAttentionHeads != mc.NumKeyValueHeads || c.NumLayers != mc.NumHiddenLayers {
		t.Errorf("token_dim %d, num_attention_heads %d, num_layers %d", c.TokenDim, c.NumAttentionHeads, c.NumLayers)
	}
	enc := m.PromptEncoder("default")
	if enc.Kind() != tuners.PromptPrefix {
		t.Error("not a prefix encoder")
	}
	out, err := enc.Encode([]int32{0, 1, 2}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := out.Shape(); !slices.Equal(s, []int{1, 3, c.NumLayers * 2 * c.TokenDim}) {
		t.Errorf("encoder output %v", s)
	}
}

// TestWholeModelReference checks the whole model with the prefix against a
// float64 LLaMA fed PEFT's reshape of the encoder output.
func TestWholeModelReference(t *testing.T) {
	for _, projection := range []bool{false, true} {
		m, base := newModel(t, config(3, projection))
		got, err := m.Forward(prompttest.Input())
		if err != nil {
			t.Fatal(err)
		}
		if s := got.Shape(); !slices.Equal(s, []int{2, 5, base.Config().VocabSize}) {
			t.Fatalf("output shape %v: prefix tuning adds no positions", s)
		}
		out, err := m.PromptEncoder("default").Encode([]int32{0, 1, 2, 0, 1, 2}, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := newRef64(base).forward(prompttest.IDs, 2, 5, to64(out.Data()), 3)
		if err := prompttest.Close(got.Data(), f32(want), 1e-4); err != nil {
			t.Errorf("projection %v: %v", projection, err)
		}
		// The reference itself: without a prefix it is the base model.
		o, err := base.Forward(prompttest.IDs, 2, 5)
		if err != nil {
			t.Fatal(err)
		}
		plain := o.Data()
		if err := prompttest.Close(plain, f32(newRef64(base).forward(prompttest.IDs, 2, 5, nil, 0)), 1e-4); err != nil {
			t.Errorf("base model vs reference: %v", err)
		}
		if prompttest.Close(plain, got.Data(), 1e-3) == nil {
			t.Error("the prefix changed nothing")
		}
	}
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func TestGradCheck(t *testing.T) {
	for _, projection := range []bool{false, true} {
		m, _ := newModel(t, config(2, projection))
		prompttest.GradCheck(t, m.PromptEncoder("default"), 2, nil)
	}
}

// TestWholeModelGradient checks gradients through the past keys and values
// into the prefix.
func TestWholeModelGradient(t *testing.T) {
	m, _ := newModel(t, config(2, false))
	w := m.PromptEncoder("default").(*prefixtuning.Encoder).Embedding.Weight
	f := func() *nn.Tensor {
		out, err := m.Forward(prompttest.Input())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := nn.GradCheck(f, []*nn.Tensor{w}, 1e-3, 2e-2); err != nil {
		t.Error(err)
	}
}

func TestGeneration(t *testing.T) {
	for _, projection := range []bool{false, true} {
		m, _ := newModel(t, config(3, projection))
		prompttest.Generation(t, m, -1)
	}
}

func TestSaveLoad(t *testing.T) {
	for _, projection := range []bool{false, true} {
		m, _ := newModel(t, config(3, projection))
		prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 3) }, nil)
	}
}

func TestTrain(t *testing.T) {
	m, _ := newModel(t, config(3, true))
	prompttest.Train(t, m, nil)
}

func TestInitZero(t *testing.T) {
	zero := "zero"
	for _, projection := range []bool{false, true} {
		c := config(3, projection)
		c.InitWeights = &zero
		m, _ := newModel(t, c)
		out, err := m.PromptEncoder("default").Encode([]int32{0, 1, 2}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range out.Data() {
			if v != 0 {
				t.Fatalf("projection %v: prefix element %d = %v, want 0", projection, i, v)
			}
		}
		if n, _ := m.NumTrainableParameters(); n == 0 {
			t.Error("nothing trainable")
		}
	}
}

func TestConfigErrors(t *testing.T) {
	bad := "ones"
	for _, tc := range []struct {
		edit  func(c *prefixtuning.Config)
		field string
	}{
		{func(c *prefixtuning.Config) { c.InitWeights = &bad }, "init_weights"},
		{func(c *prefixtuning.Config) { c.EncoderHiddenSize = -2 }, "encoder_hidden_size"},
		{func(c *prefixtuning.Config) { c.NumTransformerSubmodules = 2 }, "num_transformer_submodules"},
	} {
		c := config(3, false)
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%v, want an error naming %s", err, tc.field)
		}
	}
	c := config(3, false)
	c.NumAttentionHeads, c.TokenDim, c.NumLayers = 3, 8, 2
	if _, err := (prefixtuning.Method{}).NewEncoder(nil, c, "x", nil); err == nil || !strings.Contains(err.Error(), "num_attention_heads") {
		t.Errorf("token_dim 8 with 3 heads: %v", err)
	}
}

func TestMask(t *testing.T) {
	for _, projection := range []bool{false, true} {
		m, _ := newModel(t, config(3, projection))
		prompttest.Mask(t, m, nil)
	}
}
