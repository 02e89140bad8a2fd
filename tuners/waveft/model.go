package waveft

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// Prefix is the prefix of WaveFT's parameter names.
const Prefix = "waveft_"

// Method is WaveFT as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules. Its Preparer computes the proportional n_frequency
// allocation. The zero value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method   = Method{}
	_ tuners.Preparer = Method{}
)

// Type returns "WAVEFT".
func (Method) Type() string { return PeftType }

// Prefix returns "waveft_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// allocation maps module paths to their n_frequency under
// proportional_parameters.
type allocation map[string]int

// size returns in*out of a module WaveFT can adapt.
func size(m nn.Module) (int, bool) {
	switch b := m.(type) {
	case *nn.Linear:
		return b.Weight.Len(), true
	case *nn.Conv1D:
		return b.Weight.Len(), true
	case *Layer:
		return b.in * b.out, true
	}
	return 0, false
}

// Prepare computes, with proportional_parameters, each target's share of
// n_frequency * (number of targets): max(1, round(n_frequency * count *
// in*out / total)) with Python's round (half to even).
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("waveft: config is a %T, not a *waveft.Config", c)
	}
	if !cfg.ProportionalParameters {
		return nil, nil
	}
	total, count := 0, 0
	for _, t := range targets {
		if s, ok := size(t.Module); ok {
			total += s
			count++
		}
	}
	if count == 0 {
		return nil, fmt.Errorf("waveft: proportional_parameters: no target module is a Linear or GPT-2 Conv1D")
	}
	budget := float64(cfg.NFrequency * count)
	alloc := allocation{}
	for _, t := range targets {
		if s, ok := size(t.Module); ok {
			alloc[t.Path] = max(1, int(math.RoundToEven(float64(s)/float64(total)*budget)))
		}
	}
	return &tuners.Shared{State: alloc}, nil
}

// Wrap adds adapter t.Adapter to the module at t.Path, with n_frequency
// from the proportional allocation, else n_frequency_pattern, else
// n_frequency. A random spectrum (init_weights false) comes from gopeft's
// Philox stream seeded by adapter name and path, not torch's. Like PEFT,
// wrapping a Linear sets fan_in_fan_out to false and a Conv1D to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("waveft: module %q: config is a %T, not a *waveft.Config", t.Path, t.Config)
	}
	n := cfg.nFrequency(t.Path)
	if t.Shared != nil {
		if alloc, ok := t.Shared.State.(allocation); ok {
			if v, ok := alloc[t.Path]; ok {
				n = v
			}
		}
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, 0); err != nil {
			return nil, fmt.Errorf("waveft: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, n, cfg, nn.NewRNG(adapters.SeedFor(t.Adapter, t.Path))); err != nil {
		return nil, fmt.Errorf("waveft: module %q: %w", t.Path, err)
	}
	return l, nil
}
