package lokr

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lycoris"
)

// Prefix is the prefix of LoKr's parameter names.
const Prefix = "lokr_"

// Method is LoKr as a tuners.Method: it wraps nn.Linear, nn.Conv1d and
// nn.Conv2d modules. The zero value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "LOKR".
func (Method) Type() string { return PeftType }

// Prefix returns "lokr_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path: to the LoKr layer
// there, or to a new one wrapping the module. The rank and alpha come from
// rank_pattern / alpha_pattern when a pattern matches the path, else from r
// and alpha. Initial values are drawn from a Philox stream seeded by the
// adapter name and path: reproducible, with torch's distributions but not
// its values. The new adapter's tensors require gradients and, on a new
// layer, it is the active adapter.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("lokr: module %q: config is a %T, not a *lokr.Config", t.Path, t.Config)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		base, err := lycoris.New(spec, t.Module, t.Path)
		if err != nil {
			return nil, fmt.Errorf("lokr: module %q: %w", t.Path, err)
		}
		l = &Layer{Layer: *base}
	}
	r, alpha := cfg.RankAlpha(t.Path)
	if r <= 0 {
		return nil, fmt.Errorf("lokr: module %q: r must be a positive integer, got %d", t.Path, r)
	}
	rng := nn.NewRNG(lycoris.SeedFor(t.Adapter, t.Path))
	f := newFactors(l.Backend(), l.Geometry(), r, cfg, rng)
	s := lycoris.Settings{
		R: r, Alpha: alpha,
		RankDropout: cfg.RankDropout, RankDropoutScale: cfg.RankDropoutScale,
		ModuleDropout: cfg.ModuleDropout,
	}
	if err := l.AddAdapter(t.Adapter, s, f, true); err != nil {
		return nil, fmt.Errorf("lokr: module %q: %w", t.Path, err)
	}
	return l, nil
}
