package ptuning_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/prompttest"
	"github.com/gopeft/gopeft/tuners/ptuning"
)

func config(kind string, tokens, hidden int) *ptuning.Config {
	c := ptuning.NewConfig()
	c.EncoderReparameterizationType = kind
	c.NumVirtualTokens, c.EncoderHiddenSize = tokens, hidden
	return c
}

func newModel(t *testing.T, cfg *ptuning.Config) *peft.Model {
	t.Helper()
	m, err := peft.New(prompttest.Base(t, 2), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func names(enc tuners.PromptEncoder) []string {
	var out []string
	for _, p := range nn.NamedParameters(enc) {
		out = append(out, p.Name)
	}
	return out
}

func TestEncoderStructure(t *testing.T) {
	m := newModel(t, config(ptuning.EncoderMLP, 3, 0))
	got := names(m.PromptEncoder("default"))
	want := []string{"embedding.weight", "mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.2.weight", "mlp_head.2.bias", "mlp_head.4.weight", "mlp_head.4.bias"}
	if !slices.Equal(got, want) {
		t.Errorf("MLP parameters %v, want %v", got, want)
	}
	// encoder_hidden_size defaulted to token_dim (16).
	if c := m.Config("default").(*ptuning.Config); c.EncoderHiddenSize != 16 {
		t.Errorf("encoder_hidden_size %d, want token_dim 16", c.EncoderHiddenSize)
	}
	m = newModel(t, config(ptuning.EncoderLSTM, 3, 5))
	enc := m.PromptEncoder("default").(*ptuning.Encoder)
	if enc.LSTMHead == nil || len(enc.LSTMHead.Layers) != 2 || len(enc.LSTMHead.Layers[0]) != 2 {
		t.Fatalf("LSTM head: %+v", enc.LSTMHead)
	}
	for name, shape := range map[string][]int{
		"lstm_head.weight_ih_l0": {20, 16}, "lstm_head.weight_ih_l1_reverse": {20, 10},
		"mlp_head.0.weight": {10, 10}, "mlp_head.2.weight": {16, 10},
	} {
		found := false
		for _, p := range nn.NamedParameters(enc) {
			if p.Name == name {
				found = slices.Equal(p.T.Shape(), shape)
			}
		}
		if !found {
			t.Errorf("%s missing or not shaped %v", name, shape)
		}
	}
}

// TestMLPReference checks the MLP encoder against its definition.
func TestMLPReference(t *testing.T) {
	m := newModel(t, config(ptuning.EncoderMLP, 3, 6))
	enc := m.PromptEncoder("default").(*ptuning.Encoder)
	got, err := enc.Encode([]int32{2, 0, 1}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := enc.MLPHead.Layers
	x := nn.EmbeddingOp(enc.Embedding.Weight, []int32{2, 0, 1}, 3)
	for i, relu := range []bool{true, true, false} {
		lin := l[2*i].(*nn.Linear)
		x = nn.Add(nn.MatMulT(x, lin.Weight, false, true), lin.Bias)
		if relu {
			x = nn.ReLU(x)
		}
	}
	if err := prompttest.Close(got.Data(), x.Data(), 1e-6); err != nil {
		t.Error(err)
	}
}

func TestGradCheck(t *testing.T) {
	for _, kind := range []string{ptuning.EncoderMLP, ptuning.EncoderLSTM} {
		t.Run(kind, func(t *testing.T) {
			m := newModel(t, config(kind, 3, 4))
			prompttest.GradCheck(t, m.PromptEncoder("default"), 3, nil)
		})
	}
}

func TestGeneration(t *testing.T) {
	for _, kind := range []string{ptuning.EncoderMLP, ptuning.EncoderLSTM} {
		prompttest.Generation(t, newModel(t, config(kind, 3, 4)), -1)
	}
}

func TestSaveLoad(t *testing.T) {
	for _, kind := range []string{ptuning.EncoderMLP, ptuning.EncoderLSTM} {
		m := newModel(t, config(kind, 3, 4))
		prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 2) }, nil)
		// The saved prompt is the encoder's output, and a loaded adapter
		// is that prompt alone.
		saved, err := m.PromptEncoder("default").SavedTensors()
		if err != nil {
			t.Fatal(err)
		}
		out, _ := m.PromptEncoder("default").Encode([]int32{0, 1, 2}, 1, nil)
		if err := prompttest.Close(saved["prompt_embeddings"].Data(), out.Data(), 0); err != nil {
			t.Error(err)
		}
		enc := m.PromptEncoder("default")
		if err := enc.LoadSaved(saved); err != nil {
			t.Fatal(err)
		}
		if got := names(enc); !slices.Equal(got, []string{"embedding.weight"}) {
			t.Errorf("%s: loaded encoder has %v", kind, got)
		}
	}
}

func TestTrain(t *testing.T) {
	prompttest.Train(t, newModel(t, config(ptuning.EncoderLSTM, 3, 4)), nil)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit  func(c *ptuning.Config)
		field string
	}{
		{func(c *ptuning.Config) { c.EncoderReparameterizationType = "GRU" }, "encoder_reparameterization_type"},
		{func(c *ptuning.Config) { c.EncoderHiddenSize = -1 }, "encoder_hidden_size"},
		{func(c *ptuning.Config) { c.EncoderDropout = 1 }, "encoder_dropout"},
		{func(c *ptuning.Config) {
			c.EncoderReparameterizationType, c.EncoderNumLayers = ptuning.EncoderLSTM, 0
		}, "encoder_num_layers"},
	} {
		c := config(ptuning.EncoderMLP, 3, 4)
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%v, want an error naming %s", err, tc.field)
		}
	}
	data, err := tuners.MarshalConfig(config(ptuning.EncoderLSTM, 3, 4))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"encoder_reparameterization_type": "LSTM"`, `"encoder_hidden_size": 4`, `"encoder_num_layers": 2`, `"encoder_dropout": 0`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("adapter_config.json lacks %s:\n%s", key, data)
		}
	}
}

// TestRows checks that equal rows (encoded once and repeated) and
// different rows (encoded each) give each row its own encoding.
func TestRows(t *testing.T) {
	for _, kind := range []string{ptuning.EncoderMLP, ptuning.EncoderLSTM} {
		enc := newModel(t, config(kind, 3, 4)).PromptEncoder("default")
		one, err := enc.Encode([]int32{0, 1, 2}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := enc.Encode([]int32{2, 1, 0}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		same, err := enc.Encode([]int32{0, 1, 2, 0, 1, 2}, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		mixed, err := enc.Encode([]int32{0, 1, 2, 2, 1, 0}, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := append(one.Data(), one.Data()...)
		if err := prompttest.Close(same.Data(), want, 1e-6); err != nil {
			t.Errorf("%s equal rows: %v", kind, err)
		}
		want = append(one.Data(), rev.Data()...)
		if err := prompttest.Close(mixed.Data(), want, 1e-6); err != nil {
			t.Errorf("%s different rows: %v", kind, err)
		}
		if _, err := enc.Encode([]int32{0, 1, 2}, 2, nil); err == nil {
			t.Errorf("%s: ragged indices accepted", kind)
		}
	}
}
