package fourierft

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// Prefix is the prefix of FourierFT's parameter names.
const Prefix = "fourierft_"

// Method is FourierFT as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules. The zero value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "FOURIERFT".
func (Method) Type() string { return PeftType }

// Prefix returns "fourierft_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path, with n_frequency
// from n_frequency_pattern when a pattern matches the path. The spectral
// locations are torch's (see Locations); a random spectrum (init_weights
// false) comes from gopeft's Philox stream seeded by adapter name and path,
// not torch's. Like PEFT, wrapping a Linear sets fan_in_fan_out to false
// and wrapping a Conv1D sets it to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("fourierft: module %q: config is a %T, not a *fourierft.Config", t.Path, t.Config)
	}
	if cfg.RandomLocSeed == nil {
		return nil, fmt.Errorf("fourierft: module %q: random_loc_seed is null", t.Path)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, 0); err != nil {
			return nil, fmt.Errorf("fourierft: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	rng := nn.NewRNG(adapters.SeedFor(t.Adapter, t.Path))
	if err := l.addAdapter(t.Adapter, cfg.nFrequency(t.Path), cfg, rng, true); err != nil {
		return nil, fmt.Errorf("fourierft: module %q: %w", t.Path, err)
	}
	return l, nil
}
