package pvera

import (
	"fmt"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
	"github.com/gopeft/gopeft/tuners/vera"
)

// Prefix is the prefix of PVeRA's parameter names.
const Prefix = "pvera_lambda_"

// Method is PVeRA as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules and shares one pair of frozen projections per adapter
// (a tuners.Preparer). The zero value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method   = Method{}
	_ tuners.Preparer = Method{}
)

// Type returns "PVERA".
func (Method) Type() string { return PeftType }

// Prefix returns "pvera_lambda_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Projections are an adapter's shared frozen matrices, VeRA's type:
// A = pvera_A [2r, max in] (its first r rows give the mean, the last r the
// log-variance) and B = pvera_B [max out, r].
type Projections = vera.Projections

// NewProjections draws the projections as PEFT does: a torch CPU generator
// seeded with key draws A [2r, in], then B [out, r], each with torch's
// kaiming_uniform_ (a = 0: uniform in ±sqrt(6 / fan_in)), bit for bit
// torch's values (VeRA's DrawProjections).
func NewProjections(be kernels.Backend, key int64, r, in, out int) *Projections {
	return vera.NewProjectionsRows(be, key, 2*r, r, in, out)
}

// Prepare sizes and draws the adapter's projections for the largest
// (out, in) among the targets PVeRA can adapt. As in PEFT, every PVeRA
// adapter on the model must use the same projection_prng_key and
// save_projection (checked against the adapters already on the targeted
// layers). With save_projection they are
// the adapter's method-level tensors "pvera_A" and "pvera_B" (saved and
// loaded); without, they live only in the shared state and are
// regenerated from projection_prng_key on every load.
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("pvera: config is a %T, not a *pvera.Config", c)
	}
	maxIn, maxOut := 0, 0
	var be kernels.Backend
	for _, t := range targets {
		if l, ok := t.Module.(*Layer); ok {
			for _, name := range l.Adapters() {
				a, _ := l.Get(name)
				if a.proj.Key != cfg.ProjectionPRNGKey {
					return nil, fmt.Errorf("pvera: projection_prng_key must be the same for all adapters: got %d, adapter %q on %q has %d", cfg.ProjectionPRNGKey, name, t.Path, a.proj.Key)
				}
				if a.proj.Saved != cfg.SaveProjection {
					return nil, fmt.Errorf("pvera: save_projection must be the same for all adapters: got %v, adapter %q on %q has %v", cfg.SaveProjection, name, t.Path, a.proj.Saved)
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
		return nil, fmt.Errorf("pvera: no target module is a layer type PVeRA supports (Linear, GPT-2 Conv1D); check target_modules")
	}
	p := NewProjections(be, cfg.ProjectionPRNGKey, cfg.R, maxIn, maxOut)
	p.Saved = cfg.SaveProjection
	s := &tuners.Shared{State: p}
	if cfg.SaveProjection {
		s.Params = []nn.Param{{Name: "pvera_A", T: p.A}, {Name: "pvera_B", T: p.B}}
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
		return nil, fmt.Errorf("pvera: module %q: config is a %T, not a *pvera.Config", t.Path, t.Config)
	}
	var p *Projections
	if t.Shared != nil {
		p, _ = t.Shared.State.(*Projections)
	}
	if p == nil {
		return nil, fmt.Errorf("pvera: module %q: adapter %q has no shared projections (Prepare did not run)", t.Path, t.Adapter)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, adapters.SeedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("pvera: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, t.Path, cfg, p, nn.NewRNG(adapters.SeedFor(t.Adapter, t.Path)), true); err != nil {
		return nil, fmt.Errorf("pvera: module %q: %w", t.Path, err)
	}
	return l, nil
}
