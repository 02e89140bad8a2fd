package randlora

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// Prefix is the prefix of RandLoRA's parameter names.
const Prefix = "randlora_"

// Method is RandLoRA as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules. The zero value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method   = Method{}
	_ tuners.Preparer = Method{}
)

// Type returns "RANDLORA".
func (Method) Type() string { return PeftType }

// Prefix returns "randlora_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Prepare draws the adapter's shared bases for the largest target shape
// (the elementwise maximum of the targets' [out, in]), as PEFT's
// _pre_injection_hook does. With save_projection they are saved as
// "base_model.randlora_A" and "base_model.randlora_B" (and loading
// overwrites them). All adapters of a model must share
// projection_prng_key and save_projection.
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("randlora: config is a %T, not a *randlora.Config", c)
	}
	maxIn, maxOut := 0, 0
	var be kernels.Backend
	for _, t := range targets {
		if l, ok := t.Module.(*Layer); ok {
			for _, name := range l.Adapters() {
				a, _ := l.Get(name)
				if a.bases.Key != cfg.ProjectionPRNGKey {
					return nil, fmt.Errorf("randlora: projection_prng_key must be the same for all adapters: got %d, adapter %q on %q has %d", cfg.ProjectionPRNGKey, name, t.Path, a.bases.Key)
				}
				if a.bases.Saved != cfg.SaveProjection {
					return nil, fmt.Errorf("randlora: save_projection must be the same for all adapters: got %v, adapter %q on %q has %v", cfg.SaveProjection, name, t.Path, a.bases.Saved)
				}
			}
			if be == nil {
				be = l.weight.Backend()
			}
		}
		in, out, ok := inOut(t.Module)
		if !ok {
			continue
		}
		maxIn, maxOut = max(maxIn, in), max(maxOut, out)
		if be == nil {
			switch m := t.Module.(type) {
			case *nn.Linear:
				be = m.Weight.Backend()
			case *nn.Conv1D:
				be = m.Weight.Backend()
			}
		}
	}
	if be == nil {
		return nil, fmt.Errorf("randlora: no layers types compatible with RandLoRA (Linear, GPT-2 Conv1D) were found; check target_modules")
	}
	minDim, maxDim := min(maxIn, maxOut), max(maxIn, maxOut)
	sparsity := 0.0
	switch {
	case cfg.VerySparse:
		sparsity = math.Sqrt(float64(minDim))
	case cfg.Sparse:
		sparsity = 3
	}
	b := NewBases(be, cfg.ProjectionPRNGKey, cfg.R, minDim, maxDim, sparsity)
	b.Saved = cfg.SaveProjection
	s := &tuners.Shared{State: b}
	if cfg.SaveProjection {
		s.Params = []nn.Param{{Name: "randlora_A", T: b.A}, {Name: "randlora_B", T: b.B}}
	}
	return s, nil
}

// Wrap adds adapter t.Adapter to the module at t.Path on the bases
// Prepare drew. A random lambda (init_weights false) comes from a Philox
// stream seeded by adapter name and path, not torch's. Like PEFT,
// wrapping a Linear sets fan_in_fan_out to false and a Conv1D to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("randlora: module %q: config is a %T, not a *randlora.Config", t.Path, t.Config)
	}
	var b *Bases
	if t.Shared != nil {
		b, _ = t.Shared.State.(*Bases)
	}
	if b == nil {
		return nil, fmt.Errorf("randlora: module %q: adapter %q has no shared bases (Prepare did not run)", t.Path, t.Adapter)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, adapters.SeedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("randlora: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, cfg, b, nn.NewRNG(adapters.SeedFor(t.Adapter, t.Path)), true); err != nil {
		return nil, fmt.Errorf("randlora: module %q: %w", t.Path, err)
	}
	return l, nil
}
