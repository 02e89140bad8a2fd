package peft_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
	"github.com/gopeft/gopeft/tuners/prefixtuning"
	"github.com/gopeft/gopeft/tuners/prompttuning"
)

func tinyLlama(t *testing.T) *llama.Model {
	t.Helper()
	m, err := llama.New(nil, llama.Config{
		VocabSize: 17, HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2,
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.NamedParameters(m) {
		if !strings.HasSuffix(p.Name, "norm.weight") {
			p.T.CopyFrom(nn.Scale(p.T, 25))
		}
	}
	return m
}

// TestGeneratePrompt checks Generate with prompt adapters: it differs from
// the base model's, equals it with adapters disabled, and rejects options
// the adapter supplies.
func TestGeneratePrompt(t *testing.T) {
	pt := prompttuning.NewConfig()
	pt.NumVirtualTokens = 3
	pf := prefixtuning.NewConfig()
	pf.NumVirtualTokens = 2
	prompt := []int32{3, 1, 4}
	o := llama.GenerateOptions{MaxNewTokens: 5}
	for _, cfg := range []interface{ Validate() error }{pt, pf} {
		base := tinyLlama(t)
		plain, err := base.Generate(prompt, o)
		if err != nil {
			t.Fatal(err)
		}
		var m *peft.Model
		switch c := cfg.(type) {
		case *prompttuning.Config:
			m, err = peft.New(base, c)
		case *prefixtuning.Config:
			m, err = peft.New(base, c)
		}
		if err != nil {
			t.Fatal(err)
		}
		with, err := m.Generate(prompt, o)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(with, plain) {
			t.Errorf("%T: the prompt changed nothing (%v)", cfg, with)
		}
		if err := m.DisableAdapters(func() error {
			got, err := m.Generate(prompt, o)
			if err == nil && !slices.Equal(got, plain) {
				t.Errorf("%T disabled: %v, base %v", cfg, got, plain)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		bad := o
		bad.Prefix = []llama.KV{{}}
		if _, err := m.Generate(prompt, bad); err == nil {
			t.Errorf("%T: a Prefix option was accepted with a prompt adapter", cfg)
		}
	}
}

// TestGenerateInjected checks Generate with an injected adapter: it runs
// inside the base model, and task ids are refused.
func TestGenerateInjected(t *testing.T) {
	base := tinyLlama(t)
	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha = 2, 4
	cfg.TargetModules = tuners.Names("q_proj", "v_proj")
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	o := llama.GenerateOptions{MaxNewTokens: 3}
	got, err := m.Generate([]int32{1, 2}, o)
	if err != nil {
		t.Fatal(err)
	}
	want, err := base.Generate([]int32{1, 2}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Generate %v, base model's own %v", got, want)
	}
	if _, err := m.GenerateTask([]int32{1, 2}, o, 0); err == nil || !strings.Contains(err.Error(), "task") {
		t.Errorf("task id with a LoRA adapter: %v", err)
	}
}
