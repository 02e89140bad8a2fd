package deft

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of DEFT's parameter names.
const Prefix = "deft_"

// Method is DEFT as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules. The zero value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "DEFT".
func (Method) Type() string { return PeftType }

// Prefix returns "deft_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path. deft_P (and a
// random deft_R) come from gopeft's Philox stream seeded by adapter name
// and path, not torch's global generator. Like PEFT, wrapping a Linear sets
// fan_in_fan_out to false and a Conv1D to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("deft: module %q: config is a %T, not a *deft.Config", t.Path, t.Config)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("deft: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, cfg, nn.NewRNG(seedFor(t.Adapter, t.Path))); err != nil {
		return nil, fmt.Errorf("deft: module %q: %w", t.Path, err)
	}
	return l, nil
}

// seedFor derives a seed from the adapter name and module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}
