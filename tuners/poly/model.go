package poly

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of Poly's parameter names.
const Prefix = "poly_"

// Method is Poly as a tuners.Method: it wraps nn.Linear modules. The zero
// value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "POLY".
func (Method) Type() string { return PeftType }

// Prefix returns "poly_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the nn.Linear at t.Path. Initial values
// come from gopeft's Philox stream seeded by adapter name and path.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("poly: module %q: config is a %T, not a *poly.Config", t.Path, t.Config)
	}
	seed := seedFor(t.Adapter, t.Path)
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seed); err != nil {
			return nil, fmt.Errorf("poly: module %q: %w", t.Path, err)
		}
	}
	if err := l.addAdapter(t.Adapter, cfg, nn.NewRNG(seed), true); err != nil {
		return nil, fmt.Errorf("poly: module %q: %w", t.Path, err)
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
