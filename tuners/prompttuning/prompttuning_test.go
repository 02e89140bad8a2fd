package prompttuning_test

import (
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/prompttest"
	"github.com/gopeft/gopeft/tuners/prompttuning"
)

func newModel(t *testing.T, cfg *prompttuning.Config) (*peft.Model, *llama.Model) {
	t.Helper()
	base := prompttest.Base(t, 1)
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, base
}

func config(tokens int) *prompttuning.Config {
	c := prompttuning.NewConfig()
	c.NumVirtualTokens = tokens
	return c
}

func textConfig(tokens int, ids []int32) *prompttuning.Config {
	text, tokenizer := "some text", "some-tokenizer"
	c := config(tokens)
	c.PromptTuningInit, c.InitTokenIDs = prompttuning.InitText, ids
	c.PromptTuningInitText, c.TokenizerNameOrPath = &text, &tokenizer
	return c
}

// TestTextLoad checks that a saved TEXT adapter loads (trainable or not)
// without token ids: its weights are in the file.
func TestTextLoad(t *testing.T) {
	m, _ := newModel(t, textConfig(3, []int32{2, 5}))
	prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 1) }, nil)
}

func TestConfigDefaultsAndJSON(t *testing.T) {
	c := prompttuning.NewConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"peft_type": "PROMPT_TUNING"`, `"prompt_tuning_init": "RANDOM"`, `"prompt_tuning_init_text": null`, `"tokenizer_kwargs": null`, `"num_virtual_tokens"`, `"token_dim"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("adapter_config.json lacks %s:\n%s", key, data)
		}
	}
	if strings.Contains(string(data), "InitTokenIDs") {
		t.Errorf("InitTokenIDs written:\n%s", data)
	}
	back := prompttuning.NewConfig()
	if err := tuners.UnmarshalConfig(data, back); err != nil {
		t.Fatal(err)
	}
	if back.PromptTuningInit != c.PromptTuningInit || back.PromptTuningInitText != nil {
		t.Errorf("round trip: %+v", back)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(c *prompttuning.Config)
		field string
	}{
		{"bad init", func(c *prompttuning.Config) { c.PromptTuningInit = "ZERO" }, "prompt_tuning_init"},
		{"text without text", func(c *prompttuning.Config) { c.PromptTuningInit = prompttuning.InitText }, "prompt_tuning_init_text"},
		{"kwargs without text", func(c *prompttuning.Config) { c.TokenizerKwargs = []byte(`{"a": 1}`) }, "tokenizer_kwargs"},
		{"peft type", func(c *prompttuning.Config) { c.PeftType = "LORA" }, "peft_type"},
		{"negative tokens", func(c *prompttuning.Config) { c.NumVirtualTokens = -1 }, "num_virtual_tokens"},
	} {
		c := config(3)
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.field)
		}
	}
	// TEXT with the text and tokenizer (PEFT's form): a valid config, but
	// gopeft has no tokenizer, so a new adapter's prompt needs the ids.
	c := textConfig(3, nil)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.TokenizerNameOrPath = nil
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tokenizer_name_or_path") {
		t.Errorf("TEXT without tokenizer: %v", err)
	}
	m, err := peft.New(prompttest.Base(t, 1), textConfig(3, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Forward(prompttest.Input()); err == nil || !strings.Contains(err.Error(), "InitTokenIDs") {
		t.Errorf("TEXT without token ids: %v", err)
	}
	if err := m.Save(t.TempDir()); err == nil || !strings.Contains(err.Error(), "InitTokenIDs") {
		t.Errorf("TEXT without token ids saved: %v", err)
	}
	c = textConfig(3, []int32{1, 99})
	if _, err := peft.New(prompttest.Base(t, 1), c); err == nil || !strings.Contains(err.Error(), "99") {
		t.Errorf("TEXT with an id outside the vocabulary: %v", err)
	}
}

// rows returns the rows ids of the table words.
func rows(words *nn.Tensor, ids []int32) []float32 {
	d := words.Dim(1)
	all := words.Data()
	var out []float32
	for _, id := range ids {
		out = append(out, all[int(id)*d:int(id+1)*d]...)
	}
	return out
}

func TestInit(t *testing.T) {
	// TEXT: the ids are repeated (or truncated) to T rows of the word
	// embeddings, as PEFT does.
	for _, tc := range []struct {
		ids, want []int32
	}{
		{[]int32{4, 7}, []int32{4, 7, 4, 7, 4}},
		{[]int32{1, 2, 3, 5, 8, 13, 2}, []int32{1, 2, 3, 5, 8}},
	} {
		c := textConfig(5, tc.ids)
		m, base := newModel(t, c)
		got := m.PromptEncoder("default").(*prompttuning.Encoder).Embedding.Weight
		words := nn.StateDict(base)["model.embed_tokens.weight"]
		if err := prompttest.Close(got.Data(), rows(words, tc.want), 0); err != nil {
			t.Errorf("TEXT %v: %v", tc.ids, err)
		}
		if !got.RequiresGrad() {
			t.Error("prompt is frozen")
		}
	}
	// SAMPLE_VOCAB: every row is some word's embedding.
	c := config(6)
	c.PromptTuningInit = prompttuning.InitSampleVocab
	m, base := newModel(t, c)
	words := nn.StateDict(base)["model.embed_tokens.weight"]
	got := m.PromptEncoder("default").(*prompttuning.Encoder).Embedding.Weight.Data()
	d := words.Dim(1)
	for r := range 6 {
		found := false
		for id := range words.Dim(0) {
			if prompttest.Close(got[r*d:(r+1)*d], rows(words, []int32{int32(id)}), 0) == nil {
				found = true
			}
		}
		if !found {
			t.Errorf("SAMPLE_VOCAB row %d is no word's embedding", r)
		}
	}
	// RANDOM: N(0, 1) draws, not all equal.
	m, _ = newModel(t, config(4))
	w := m.PromptEncoder("default").(*prompttuning.Encoder).Embedding.Weight.Data()
	if w[0] == w[1] {
		t.Error("RANDOM init gave equal values")
	}
}

// TestForwardPrepends checks the whole model: the output is the base
// model's run on the prompt rows followed by the token embeddings.
func TestForwardPrepends(t *testing.T) {
	m, base := newModel(t, config(3))
	got, err := m.Forward(prompttest.Input())
	if err != nil {
		t.Fatal(err)
	}
	w := m.PromptEncoder("default").(*prompttuning.Encoder).Embedding.Weight.Detach()
	h, err := base.Embed(prompttest.IDs, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	p := nn.Concat(0, w.Reshape(1, 3, -1), w.Reshape(1, 3, -1))
	want, err := base.ForwardEmbeds(nn.Concat(1, p, h), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := prompttest.Close(got.Data(), want.Data(), 1e-6); err != nil {
		t.Error(err)
	}
	if s := got.Shape(); s[0] != 2 || s[1] != 8 {
		t.Errorf("output shape %v, want [2, 8, vocab]", s)
	}
}

func TestGradCheck(t *testing.T) {
	m, _ := newModel(t, config(3))
	prompttest.GradCheck(t, m.PromptEncoder("default"), 3, nil)
}

func TestGeneration(t *testing.T) {
	m, _ := newModel(t, config(3))
	prompttest.Generation(t, m, -1)
}

func TestSaveLoad(t *testing.T) {
	m, _ := newModel(t, config(3))
	prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 1) }, nil)
}

func TestTrain(t *testing.T) {
	m, _ := newModel(t, config(3))
	prompttest.Train(t, m, nil)
}

func TestLoadErrors(t *testing.T) {
	enc := &prompttuning.Encoder{Embedding: &nn.Embedding{Weight: nn.Zeros(nil, 3, 4)}}
	for name, ts := range map[string]map[string]*nn.Tensor{
		"prompt_embeddings": {},
		"extra":             {"prompt_embeddings": nn.Zeros(nil, 3, 4), "extra": nn.Zeros(nil, 1)},
		"[3 4]":             {"prompt_embeddings": nn.Zeros(nil, 2, 4)},
	} {
		if err := enc.LoadSaved(ts); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("LoadSaved: %v, want an error naming %s", err, name)
		}
	}
}

func TestMask(t *testing.T) {
	m, _ := newModel(t, config(3))
	prompttest.Mask(t, m, nil)
	// With the adapter disabled the mask reaches the base model too.
	if err := m.DisableAdapters(func() error {
		prompttest.Mask(t, m, nil)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
