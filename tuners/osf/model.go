package osf

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of OSF's parameter names.
const Prefix = "osf_"

// Method is OSF as a tuners.Method: it wraps nn.Linear modules. The zero
// value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method          = Method{}
	_ tuners.TargetDefaulter = Method{}
)

// Type returns "OSF".
func (Method) Type() string { return PeftType }

// Prefix returns "osf_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// DefaultTargets gives PEFT's default target_modules: the table's entry
// for the model's model_type, and "all-linear" for model types the table
// lacks (OSF's _prepare_adapter_config).
func (Method) DefaultTargets(root nn.Module) (tuners.Targets, error) {
	mt := ""
	if t, ok := root.(tuners.ModelTyper); ok {
		mt = t.ModelType()
	}
	if d, ok := tuners.DefaultTargetModules(PeftType, mt); ok {
		return d, nil
	}
	return tuners.Pattern(tuners.AllLinear), nil
}

// Wrap adds adapter t.Adapter to the module at t.Path: it decomposes the
// Linear's weight and freezes the top effective_rank directions (from
// rank_pattern when a pattern is found in the path). The new adapter's low
// factors require gradients.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("osf: module %q: config is a %T, not a *osf.Config", t.Path, t.Config)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module); err != nil {
			return nil, fmt.Errorf("osf: module %q: %w", t.Path, err)
		}
	}
	k := cfg.effectiveRank(t.Path, min(l.in, l.out))
	if err := l.addAdapter(t.Adapter, k, true); err != nil {
		return nil, fmt.Errorf("osf: module %q: %w", t.Path, err)
	}
	return l, nil
}
