package ia3

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of IA3's parameter names.
const Prefix = "ia3_"

// Method is IA3 as a tuners.Method: it wraps nn.Linear, GPT-2 nn.Conv1D,
// nn.Conv1d and nn.Conv2d modules. The zero value is ready to use and
// stateless.
type Method struct{}

var (
	_ tuners.Method         = Method{}
	_ tuners.ConfigResolver = Method{}
)

// Type returns "IA3".
func (Method) Type() string { return PeftType }

// Prefix returns "ia3_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// ResolveConfig fills an empty feedforward_modules with PEFT's default for
// the model's model_type; without one it returns an error naming the field.
func (Method) ResolveConfig(root nn.Module, c tuners.Config) error {
	cfg, ok := c.(*Config)
	if !ok {
		return fmt.Errorf("ia3: config is a %T, not an *ia3.Config", c)
	}
	if !cfg.FeedforwardModules.IsZero() {
		return nil
	}
	mt := ""
	if t, ok := root.(tuners.ModelTyper); ok {
		mt = t.ModelType()
	}
	def, ok := tuners.DefaultIA3FeedforwardModules(mt)
	if !ok {
		return fmt.Errorf("ia3: feedforward_modules is not set and IA3 has no default for model_type %q: set feedforward_modules", mt)
	}
	cfg.FeedforwardModules = def
	return nil
}

// Wrap adds adapter t.Adapter to the module at t.Path: to the IA3 layer
// there, or to a new one wrapping the module. A new layer is feed-forward
// when feedforward_modules selects the path (an existing layer keeps what
// it was, as in PEFT). With init_ia3_weights the vector starts as ones;
// otherwise it is drawn from N(0, 1) with a Philox stream seeded by the
// adapter name and path (reproducible, but not torch's draws). The vector
// requires gradients; on a new layer the adapter is active.
//
// Like PEFT, wrapping a Linear sets the config's fan_in_fan_out to false
// and wrapping a GPT-2 Conv1D sets it to true. nn.Conv1d is adapted like
// PEFT's Conv2d/Conv3d (PEFT 0.20.0 itself refuses Conv1d modules).
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("ia3: module %q: config is a %T, not an *ia3.Config", t.Path, t.Config)
	}
	rng := nn.NewRNG(seedFor(t.Adapter, t.Path))
	if l, ok := t.Module.(*Layer); ok {
		if err := l.addAdapter(t.Adapter, cfg.InitIA3Weights, rng, true); err != nil {
			return nil, fmt.Errorf("ia3: module %q: %w", t.Path, err)
		}
		return l, nil
	}
	ff, err := cfg.isFeedforward(t.Path)
	if err != nil {
		return nil, err
	}
	l, err := newLayer(t.Module, ff)
	if err != nil {
		return nil, fmt.Errorf("ia3: module %q: %w", t.Path, err)
	}
	switch l.kind {
	case kindLinear:
		cfg.FanInFanOut = false
	case kindConv1D:
		cfg.FanInFanOut = true
	}
	if err := l.addAdapter(t.Adapter, cfg.InitIA3Weights, rng, true); err != nil {
		return nil, fmt.Errorf("ia3: module %q: %w", t.Path, err)
	}
	l.active = []string{t.Adapter}
	return l, nil
}

// seedFor derives a layer's initialisation seed from the adapter name and
// module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}
