package shira

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of SHiRA's parameter names.
const Prefix = "shira_"

// Method is SHiRA as a tuners.Method: it wraps nn.Linear modules. The zero
// value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "SHIRA".
func (Method) Type() string { return PeftType }

// Prefix returns "shira_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path: to the SHiRA layer
// already there or to a new one wrapping the nn.Linear, with PEFT's random
// mask (see RandomMask). Random initial values (init_weights false) come
// from a Philox stream seeded by adapter name and path, not torch's. Like
// PEFT, wrapping a Linear sets fan_in_fan_out to false. The new adapter
// requires gradients.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("shira: module %q: config is a %T, not a *shira.Config", t.Path, t.Config)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module); err != nil {
			return nil, fmt.Errorf("shira: module %q: %w", t.Path, err)
		}
	}
	cfg.FanInFanOut = false
	if err := l.addAdapter(t.Adapter, cfg, nn.NewRNG(seedFor(t.Adapter, t.Path)), true); err != nil {
		return nil, fmt.Errorf("shira: module %q: %w", t.Path, err)
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
