package hira

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of HiRA's parameter names.
const Prefix = "hira_"

// Method is HiRA as a tuners.Method: it wraps Linear, GPT-2 Conv1D,
// Conv1d, Conv2d and Embedding modules. The zero value is ready to use and
// stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "HIRA".
func (Method) Type() string { return PeftType }

// Prefix returns "hira_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path, with its rank from
// rank_pattern when a pattern matches. Initial values come from a Philox
// stream seeded by adapter name and path, not torch's. The new adapter
// requires gradients.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("hira: module %q: config is a %T, not a *hira.Config", t.Path, t.Config)
	}
	var c *core
	var l tuners.Layer
	switch m := t.Module.(type) {
	case *Layer:
		c, l = &m.core, m
	case *Embedding:
		c, l = &m.core, m
	default:
		var err error
		if c, err = newCore(t.Module); err != nil {
			return nil, fmt.Errorf("hira: module %q: %w", t.Path, err)
		}
		c.SetSeed(seedFor("dropout", t.Path))
		if c.kind == embedding {
			l = &Embedding{core: *c}
			c = &l.(*Embedding).core
		} else {
			l = &Layer{core: *c}
			c = &l.(*Layer).core
		}
	}
	if err := c.addAdapter(t.Adapter, cfg.rank(t.Path), cfg, nn.NewRNG(seedFor(t.Adapter, t.Path)), true); err != nil {
		return nil, fmt.Errorf("hira: module %q: %w", t.Path, err)
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
