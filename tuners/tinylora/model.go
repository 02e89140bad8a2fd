package tinylora

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of TinyLoRA's parameter names.
const Prefix = "tinylora_"

// Method is TinyLoRA as a tuners.Method: it wraps nn.Linear, GPT-2
// nn.Conv1D and nn.Embedding modules and keeps the trainable vectors v at
// the model level (a tuners.Preparer). The zero value is ready to use and
// stateless.
type Method struct{}

var (
	_ tuners.Method       = Method{}
	_ tuners.Preparer     = Method{}
	_ tuners.LoadPreparer = Method{}
)

// PrepareLoad marks the factors of adapter's layers as coming from the
// adapter file (PEFT always saves tinylora_A and tinylora_B), so loading
// runs no SVD.
func (Method) PrepareLoad(root nn.Module, _ tuners.Config, adapter string) error {
	return tuners.WalkTargets(root, func(n tuners.Node) error {
		if l, ok := n.Module.(*Layer); ok {
			l.skipSVD(adapter)
		}
		return nil
	})
}

// Type returns "TINYLORA".
func (Method) Type() string { return PeftType }

// Prefix returns "tinylora_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// slot is one target's place in the adapter: its index among the
// adapter's targets (which seeds its projections) and its group's v.
type slot struct {
	index int
	v     *nn.Tensor
}

// Shared is an adapter's method-level state: the vectors v of its groups
// and every target's slot.
type Shared struct {
	// V holds the trainable vectors tinylora_v.<group>, [u] each.
	V     []*nn.Tensor
	slots map[string]slot
}

// supported reports whether TinyLoRA can adapt m, and its backend.
func supported(m nn.Module) (kernels.Backend, bool) {
	switch b := m.(type) {
	case *nn.Linear:
		return b.Weight.Backend(), true
	case *nn.Conv1D:
		return b.Weight.Backend(), true
	case *nn.Embedding:
		return b.Weight.Backend(), true
	case *Layer:
		return b.weight.Backend(), true
	}
	return nil, false
}

// Groups returns PEFT's weight-tying groups for n targets: the number of
// groups max(1, round(n (1 - tying))) (Python's round, half to even) and
// the group of target i.
func Groups(n int, tying float64) (count int, group func(i int) int) {
	count = max(1, int(math.RoundToEven(float64(n)*(1-tying))))
	size := max(1, n/count)
	return count, func(i int) int { return min(i/size, count-1) }
}

// Prepare numbers the targets TinyLoRA can adapt in model order, splits
// them into weight-tying groups and creates one trainable v [u] per group,
// saved as "tinylora_v.<group>". v starts at zero (init_weights true or
// false) or uniform in [-init_v_bound, init_v_bound] from gopeft's Philox
// stream seeded by the adapter name ("uniform").
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("tinylora: config is a %T, not a *tinylora.Config", c)
	}
	var paths []string
	var be kernels.Backend
	for _, t := range targets {
		if l, ok := t.Module.(*Layer); ok {
			for _, name := range l.Adapters() {
				if a, _ := l.Get(name); a.saveP != cfg.SaveProjection {
					return nil, fmt.Errorf("tinylora: save_projection must be the same for all adapters: got %v, adapter %q on %q has %v", cfg.SaveProjection, name, t.Path, a.saveP)
				}
			}
		}
		if b, ok := supported(t.Module); ok {
			paths = append(paths, t.Path)
			be = b
		}
	}
	if be == nil {
		return nil, fmt.Errorf("tinylora: no target module is a layer type TinyLoRA supports (Linear, GPT-2 Conv1D, Embedding); check target_modules")
	}
	count, group := Groups(len(paths), cfg.WeightTying)
	s := &Shared{slots: map[string]slot{}}
	sh := &tuners.Shared{State: s}
	rng := nn.NewRNG(seedFor(adapter, "tinylora_v"))
	for g := range count {
		var v *nn.Tensor
		if cfg.InitWeights == InitUniform {
			v = nn.Uniform(be, rng, -float32(cfg.InitVBound), float32(cfg.InitVBound), cfg.U)
		} else {
			v = nn.Zeros(be, cfg.U)
		}
		v.SetRequiresGrad(true)
		s.V = append(s.V, v)
		sh.Params = append(sh.Params, nn.Param{Name: "tinylora_v." + strconv.Itoa(g), T: v})
	}
	for i, p := range paths {
		s.slots[p] = slot{index: i, v: s.V[group(i)]}
	}
	return sh, nil
}

// Wrap adds adapter t.Adapter to the module at t.Path with its group's v.
// Like PEFT, wrapping a Linear sets fan_in_fan_out to false and a Conv1D to
// true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("tinylora: module %q: config is a %T, not a *tinylora.Config", t.Path, t.Config)
	}
	var s *Shared
	if t.Shared != nil {
		s, _ = t.Shared.State.(*Shared)
	}
	if s == nil {
		return nil, fmt.Errorf("tinylora: module %q: adapter %q has no shared vectors (Prepare did not run)", t.Path, t.Adapter)
	}
	sl, ok := s.slots[t.Path]
	if !ok {
		return nil, fmt.Errorf("tinylora: cannot adapt module %q (a %T): TinyLoRA supports Linear, GPT-2 Conv1D and Embedding layers", t.Path, t.Module)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("tinylora: module %q: %w", t.Path, err)
		}
		if l.kind != kindEmbedding {
			cfg.FanInFanOut = l.kind == kindConv1D
		}
	}
	if err := l.addAdapter(t.Adapter, cfg, sl); err != nil {
		return nil, fmt.Errorf("tinylora: module %q: %w", t.Path, err)
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
