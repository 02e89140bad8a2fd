package delora

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of DeLoRA's parameter names.
const Prefix = "delora_"

// Method is DeLoRA as a tuners.Method: it wraps nn.Linear modules. The zero
// value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "DELORA".
func (Method) Type() string { return PeftType }

// Prefix returns "delora_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path: to the DeLoRA layer
// already there or to a new one wrapping the nn.Linear, with r and lambda
// from rank_pattern / lambda_pattern when a pattern matches the path. The
// base weight's column norms are taken now. Random initial values come from
// a Philox stream seeded by the adapter name and path. A, B and lambda
// require gradients.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("delora: module %q: config is a %T, not a *delora.Config", t.Path, t.Config)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("delora: module %q: %w", t.Path, err)
		}
	}
	r, lambda := cfg.rankLambda(t.Path)
	if err := l.addAdapter(t.Adapter, r, lambda, cfg, nn.NewRNG(seedFor(t.Adapter, t.Path)), true); err != nil {
		return nil, fmt.Errorf("delora: module %q: %w", t.Path, err)
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
