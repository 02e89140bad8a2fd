package lntuning

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of LN tuning's parameter names.
const Prefix = "ln_tuning_"

// Method is LN tuning as a tuners.Method: it wraps any module it can copy
// (LayerNorm and RMSNorm in practice; also Linear, convolutions, Embedding
// and modules with a CloneModule method, which PEFT's defaults for some
// model types name). The zero value is ready to use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "LN_TUNING".
func (Method) Type() string { return PeftType }

// Prefix returns "ln_tuning_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter, a trainable deep copy of the module at
// t.Path, to the LN tuning layer there or to a new one wrapping the module;
// on a new layer the adapter is active.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	if _, ok := t.Config.(*Config); !ok {
		return nil, fmt.Errorf("lntuning: module %q: config is a %T, not an *lntuning.Config", t.Path, t.Config)
	}
	if l, ok := t.Module.(*Layer); ok {
		if err := l.addAdapter(t.Adapter, true); err != nil {
			return nil, fmt.Errorf("lntuning: module %q: %w", t.Path, err)
		}
		return l, nil
	}
	l, err := newLayer(t.Module)
	if err != nil {
		return nil, fmt.Errorf("lntuning: module %q: %w", t.Path, err)
	}
	if err := l.addAdapter(t.Adapter, true); err != nil {
		return nil, fmt.Errorf("lntuning: module %q: %w", t.Path, err)
	}
	l.active = []string{t.Adapter}
	return l, nil
}
