package supertuning

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of Super-Tuning's parameter names.
const Prefix = "supertuning_"

// Method is Super-Tuning as a tuners.Method: it wraps nn.Linear modules. The zero
// value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "SUPERTUNING".
func (Method) Type() string { return PeftType }

// Prefix returns "supertuning_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path: to the Super-Tuning
// layer already there or to a new one wrapping the nn.Linear, with the
// support chosen by magnitude. Random initial values come from a Philox
// stream seeded by the adapter name and path: reproducible, but not
// torch's draws. The new adapter's tensors require gradients.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("supertuning: module %q: config is a %T, not a *supertuning.Config", t.Path, t.Config)
	}
	rng := nn.NewRNG(seedFor(t.Adapter, t.Path))
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("supertuning: module %q: %w", t.Path, err)
		}
	}
	if err := l.addAdapter(t.Adapter, cfg, rng, true); err != nil {
		return nil, fmt.Errorf("supertuning: module %q: %w", t.Path, err)
	}
	return l, nil
}

// DefaultTargets returns PEFT's default target_modules, LoRA's for the
// model's model_type (TRANSFORMERS_MODELS_TO_SUPERTUNING_TARGET_MODULES_MAPPING
// is a copy of LoRA's).
func (Method) DefaultTargets(root nn.Module) (tuners.Targets, error) {
	mt, ok := root.(tuners.ModelTyper)
	if !ok {
		return tuners.Targets{}, fmt.Errorf("supertuning: target_modules is not set and the base model does not say its model_type; set target_modules")
	}
	t, ok := tuners.DefaultTargetModules("LORA", mt.ModelType())
	if !ok {
		return tuners.Targets{}, fmt.Errorf("supertuning: target_modules is not set and model_type %q has no default; set target_modules", mt.ModelType())
	}
	return t, nil
}

// seedFor derives a seed from the adapter name and module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}
