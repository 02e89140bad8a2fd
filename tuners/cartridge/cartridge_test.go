package cartridge_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners/cartridge"
	"github.com/gopeft/gopeft/tuners/internal/prompttest"
	"github.com/gopeft/gopeft/tuners/prefixtuning"
)

func config(tokens, frozen int) *cartridge.Config {
	c := cartridge.NewConfig()
	c.NumVirtualTokens, c.NumFrozenTokens = tokens, frozen
	return c
}

func newModel(t *testing.T, c *cartridge.Config) *peft.Model {
	t.Helper()
	m, err := peft.New(prompttest.Base(t, 7), c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParts(t *testing.T) {
	for _, tc := range []struct {
		tokens, frozen int
		names          []string
	}{
		{3, 1, []string{"frozen_embedding", "trainable_embedding"}},
		{3, 0, []string{"trainable_embedding"}},
		{2, 2, []string{"frozen_embedding"}},
	} {
		m := newModel(t, config(tc.tokens, tc.frozen))
		enc := m.PromptEncoder("default").(*cartridge.Encoder)
		var names []string
		for _, p := range enc.Params() {
			names = append(names, p.Name)
			if (p.Name == "trainable_embedding") != p.T.RequiresGrad() {
				t.Errorf("%+v: %s requires grad %v", tc, p.Name, p.T.RequiresGrad())
			}
			// KV-head width: 2 layers x 2 x (2 kv heads x head_dim 4).
			if p.T.Dim(1) != 2*2*8 {
				t.Errorf("%+v: %s shape %v", tc, p.Name, p.T.Shape())
			}
		}
		if !slices.Equal(names, tc.names) {
			t.Errorf("%+v: parameters %v, want %v", tc, names, tc.names)
		}
	}
}

// TestSameAsPrefixTuning checks that a cartridge is served exactly as the
// same table given to prefix tuning without projection.
func TestSameAsPrefixTuning(t *testing.T) {
	m := newModel(t, config(3, 1))
	saved, err := m.PromptEncoder("default").SavedTensors()
	if err != nil {
		t.Fatal(err)
	}
	pc := prefixtuning.NewConfig()
	pc.NumVirtualTokens = 3
	pm, err := peft.New(prompttest.Base(t, 7), pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := pm.PromptEncoder("default").LoadSaved(saved); err != nil {
		t.Fatal(err)
	}
	a, err := m.Forward(prompttest.Input())
	if err != nil {
		t.Fatal(err)
	}
	b, err := pm.Forward(prompttest.Input())
	if err != nil {
		t.Fatal(err)
	}
	if err := prompttest.Close(a.Data(), b.Data(), 0); err != nil {
		t.Error(err)
	}
}

// TestFrozenRowsGetNoGradient checks that training moves only the
// trainable rows.
func TestFrozenRowsGetNoGradient(t *testing.T) {
	m := newModel(t, config(3, 1))
	enc := m.PromptEncoder("default").(*cartridge.Encoder)
	frozen := enc.FrozenEmbedding.Data()
	prompttest.Train(t, m, nil)
	if err := prompttest.Close(enc.FrozenEmbedding.Data(), frozen, 0); err != nil {
		t.Errorf("frozen rows changed: %v", err)
	}
	f := func() *nn.Tensor {
		out, err := m.Forward(prompttest.Input())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := nn.GradCheck(f, []*nn.Tensor{enc.TrainableEmbedding}, 1e-3, 2e-2); err != nil {
		t.Error(err)
	}
}

func TestGeneration(t *testing.T) {
	prompttest.Generation(t, newModel(t, config(3, 1)), -1)
}

func TestSaveLoad(t *testing.T) {
	m := newModel(t, config(3, 1))
	prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 7) }, nil)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit  func(c *cartridge.Config)
		field string
	}{
		{func(c *cartridge.Config) { c.NumFrozenTokens = -1 }, "num_frozen_tokens"},
		{func(c *cartridge.Config) { c.NumFrozenTokens = 4 }, "num_frozen_tokens"},
		{func(c *cartridge.Config) { c.NumTransformerSubmodules = 2 }, "num_transformer_submodules"},
	} {
		c := config(3, 1)
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%v, want an error naming %s", err, tc.field)
		}
	}
	enc := newModel(t, config(3, 1)).PromptEncoder("default")
	if err := enc.LoadSaved(map[string]*nn.Tensor{"prompt_embeddings": nn.Zeros(nil, 2, 32)}); err == nil || !strings.Contains(err.Error(), "prompt_embeddings") {
		t.Errorf("mis-shaped prompt_embeddings: %v", err)
	}
}
