package vblora

import (
	"fmt"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// Prefix is the prefix of VB-LoRA's parameter names.
const Prefix = "vblora_"

// Method is VB-LoRA as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules and shares one trainable vector bank per adapter (a
// tuners.Preparer). The zero value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method   = Method{}
	_ tuners.Preparer = Method{}
)

// Type returns "VBLORA".
func (Method) Type() string { return PeftType }

// Prefix returns "vblora_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Bank is an adapter's shared vector bank, vblora_vector_bank
// [num_vectors, vector_length].
type Bank struct {
	T *nn.Tensor
}

// Prepare creates the adapter's vector bank, U(-bound, bound) with
// init_vector_bank_bound, drawn from gopeft's Philox stream seeded by the
// adapter name (not torch's global generator). It is the adapter's
// method-level tensor "vblora_vector_bank", trained with the logits.
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("vblora: config is a %T, not a *vblora.Config", c)
	}
	var be kernels.Backend
	for _, t := range targets {
		switch m := t.Module.(type) {
		case *nn.Linear:
			be = m.Weight.Backend()
		case *nn.Conv1D:
			be = m.Weight.Backend()
		case *Layer:
			be = m.weight.Backend()
		}
		if be != nil {
			break
		}
	}
	if be == nil {
		return nil, fmt.Errorf("vblora: no target module is a layer type VB-LoRA supports (Linear, GPT-2 Conv1D); check target_modules")
	}
	b := float32(cfg.InitVectorBankBound)
	bank := nn.Uniform(be, nn.NewRNG(adapters.SeedFor(adapter, "vblora_vector_bank")), -b, b, cfg.NumVectors, cfg.VectorLength)
	bank.SetRequiresGrad(true)
	return &tuners.Shared{Params: []nn.Param{{Name: "vblora_vector_bank", T: bank}}, State: &Bank{T: bank}}, nil
}

// Wrap adds adapter t.Adapter to the module at t.Path on the bank Prepare
// made. The logits start N(0, init_logits_std^2) from gopeft's Philox
// stream seeded by adapter name and path. Like PEFT, wrapping a Linear sets
// fan_in_fan_out to false and a Conv1D to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("vblora: module %q: config is a %T, not a *vblora.Config", t.Path, t.Config)
	}
	var b *Bank
	if t.Shared != nil {
		b, _ = t.Shared.State.(*Bank)
	}
	if b == nil {
		return nil, fmt.Errorf("vblora: module %q: adapter %q has no vector bank (Prepare did not run)", t.Path, t.Adapter)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, adapters.SeedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("vblora: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, cfg, b, nn.NewRNG(adapters.SeedFor(t.Adapter, t.Path)), true); err != nil {
		return nil, fmt.Errorf("vblora: module %q: %w", t.Path, err)
	}
	return l, nil
}
