package adamss

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of AdaMSS's parameter names.
const Prefix = "adamss_"

// Method is AdaMSS as a tuners.Method: it wraps nn.Linear modules. The zero
// value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "ADAMSS".
func (Method) Type() string { return PeftType }

// Prefix returns "adamss_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path: to the AdaMSS layer
// already there or to a new one wrapping the nn.Linear, deriving its
// projection and subspaces from the base weight (a host SVD and K-means,
// see the package doc). Random B blocks (init_weights null) come from a
// Philox stream seeded by the adapter name and path, not torch's draws. The
// new adapter's A and B blocks require gradients.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("adamss: module %q: config is a %T, not a *adamss.Config", t.Path, t.Config)
	}
	rng := nn.NewRNG(seedFor(t.Adapter, t.Path))
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("adamss: module %q: %w", t.Path, err)
		}
	}
	if err := l.addAdapter(t.Adapter, cfg, rng, true); err != nil {
		return nil, fmt.Errorf("adamss: module %q: %w", t.Path, err)
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
