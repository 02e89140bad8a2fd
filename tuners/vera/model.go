package vera

import (
	"fmt"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// Prefix is the prefix of VeRA's parameter names.
const Prefix = "vera_lambda_"

// Method is VeRA as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules and shares one pair of frozen projections per adapter
// (a tuners.Preparer). The zero value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method   = Method{}
	_ tuners.Preparer = Method{}
)

// Type returns "VERA".
func (Method) Type() string { return PeftType }

// Prefix returns "vera_lambda_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Projections are an adapter's shared frozen matrices: A = vera_A
// [r, max in] and B = vera_B [max out, r], sized for the largest adapted
// layer; each layer uses their leading slices.
type Projections struct {
	A, B *nn.Tensor
	// Key and Saved are the projection_prng_key and save_projection the
	// projections were made for; PEFT requires every adapter of a model to
	// agree on both.
	Key   int64
	Saved bool
}

// NewProjections draws the projections as PEFT does: a torch CPU
// generator seeded with key draws A, then B, each kaiming-uniform with
// gain sqrt(2) over its fan-in (in for A, r for B), bit for bit torch's
// values.
func NewProjections(be kernels.Backend, key int64, r, in, out int) *Projections {
	return NewProjectionsRows(be, key, r, r, in, out)
}

// NewProjectionsRows is NewProjections with rowsA rows in A (PVeRA draws
// A [2r, in] and B [out, r] from one generator, in that order).
func NewProjectionsRows(be kernels.Backend, key int64, rowsA, r, in, out int) *Projections {
	a, b := DrawProjections(key, rowsA, r, in, out)
	return &Projections{A: nn.New(be, a, rowsA, in), B: nn.New(be, b, out, r), Key: key}
}

// DrawProjections returns the values of A [rowsA, in] and B [out, r] for
// key, row-major: a torch CPU generator seeded with key draws A, then B,
// each uniform in ±sqrt(6 / fan_in) (torch's kaiming_uniform_ with a = 0,
// which is also PEFT's _kaiming_init for VeRA).
func DrawProjections(key int64, rowsA, r, in, out int) (a, b []float32) {
	g := torchrand.New(key)
	a = make([]float32, rowsA*in)
	bound := torchrand.KaimingBound(in, 0)
	g.Uniform(a, -bound, bound)
	b = make([]float32, out*r)
	bound = torchrand.KaimingBound(r, 0)
	g.Uniform(b, -bound, bound)
	return a, b
}

// Prepare sizes and draws the adapter's projections for the largest
// (out, in) among the targets VeRA can adapt. As in PEFT, every VeRA
// adapter on the model must use the same projection_prng_key and
// save_projection (checked against the adapters already on the targeted
// layers). With save_projection they are
// the adapter's method-level tensors "vera_A" and "vera_B" (saved and
// loaded); without, they live only in the shared state and are
// regenerated from projection_prng_key on every load.
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("vera: config is a %T, not a *vera.Config", c)
	}
	maxIn, maxOut := 0, 0
	var be kernels.Backend
	for _, t := range targets {
		if l, ok := t.Module.(*Layer); ok {
			for _, name := range l.Adapters() {
				a, _ := l.Get(name)
				if a.proj.Key != cfg.ProjectionPRNGKey {
					return nil, fmt.Errorf("vera: projection_prng_key must be the same for all adapters: got %d, adapter %q on %q has %d", cfg.ProjectionPRNGKey, name, t.Path, a.proj.Key)
				}
				if a.proj.Saved != cfg.SaveProjection {
					return nil, fmt.Errorf("vera: save_projection must be the same for all adapters: got %v, adapter %q on %q has %v", cfg.SaveProjection, name, t.Path, a.proj.Saved)
				}
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
			case *Layer:
				be = m.weight.Backend()
			}
		}
	}
	if be == nil {
		return nil, fmt.Errorf("vera: no target module is a layer type VeRA supports (Linear, GPT-2 Conv1D); check target_modules")
	}
	p := NewProjections(be, cfg.ProjectionPRNGKey, cfg.R, maxIn, maxOut)
	p.Saved = cfg.SaveProjection
	s := &tuners.Shared{State: p}
	if cfg.SaveProjection {
		s.Params = []nn.Param{{Name: "vera_A", T: p.A}, {Name: "vera_B", T: p.B}}
	}
	return s, nil
}

// Wrap adds adapter t.Adapter to the module at t.Path on the projections
// Prepare made. A random lambda_d (init_weights false) comes from gopeft's
// Philox stream seeded by adapter name and path, not torch's. Like PEFT,
// wrapping a Linear sets fan_in_fan_out to false and a Conv1D to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("vera: module %q: config is a %T, not a *vera.Config", t.Path, t.Config)
	}
	var p *Projections
	if t.Shared != nil {
		p, _ = t.Shared.State.(*Projections)
	}
	if p == nil {
		return nil, fmt.Errorf("vera: module %q: adapter %q has no shared projections (Prepare did not run)", t.Path, t.Adapter)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, adapters.SeedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("vera: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, cfg, p, nn.NewRNG(adapters.SeedFor(t.Adapter, t.Path)), true); err != nil {
		return nil, fmt.Errorf("vera: module %q: %w", t.Path, err)
	}
	return l, nil
}
