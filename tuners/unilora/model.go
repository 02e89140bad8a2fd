package unilora

import (
	"fmt"

	"github.com/gopeft/gopeft/internal/numpyrand"
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// Prefix is the prefix of UniLoRA's parameter names.
const Prefix = "unilora_"

// Method is UniLoRA as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules, all drawing their low-rank factors from one shared
// trainable vector per adapter (a tuners.Preparer). The zero value is
// ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method   = Method{}
	_ tuners.Preparer = Method{}
)

// Type returns "UNILORA".
func (Method) Type() string { return PeftType }

// Prefix returns "unilora_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// assignment is one layer's share of the index assignment.
type assignment struct {
	idxA, idxB       []int64 // [r, in] and [out, r], row-major
	scalesA, scalesB *nn.Tensor
}

// Shared is an adapter's method-level state: theta_d and every layer's
// derived indices and scales.
type Shared struct {
	// Theta is unilora_theta_d [theta_d_length], the trainable vector.
	Theta  *nn.Tensor
	layers map[string]*assignment
}

// GenerateIndex returns UniLoRA's balanced index assignment of count
// positions into theta_d of length d, as PEFT draws it with
// numpy.random.default_rng(seed): every index floor(count/d) times, the
// remainder drawn without replacement, then the whole list shuffled.
func GenerateIndex(count, d int, seed uint64) []int64 {
	g := numpyrand.New(seed)
	base, rem := count/d, count%d
	data := make([]int64, 0, count)
	for i := range d {
		for range base {
			data = append(data, int64(i))
		}
	}
	if rem > 0 {
		data = append(data, g.ChoiceNoReplace(d, rem)...)
	}
	g.Shuffle(data)
	return data
}

// inOut returns the in and out features of a module UniLoRA can adapt.
func inOut(m nn.Module) (in, out int, be kernels.Backend, ok bool) {
	switch b := m.(type) {
	case *nn.Linear:
		return b.Weight.Dim(1), b.Weight.Dim(0), b.Weight.Backend(), true
	case *nn.Conv1D:
		return b.Weight.Dim(0), b.Weight.Dim(1), b.Weight.Backend(), true
	case *Layer:
		return b.in, b.out, b.weight.Backend(), true
	}
	return 0, 0, nil, false
}

// Prepare creates theta_d (uniform in [-init_theta_d_bound, bound], or
// N(0, 1) without init_weights, from gopeft's Philox stream seeded by the
// adapter name) and assigns every target's A and B entries, in model order
// and A before B, an index into it with GenerateIndex; each entry's scale
// is 1/sqrt(number of entries sharing its index).
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("unilora: config is a %T, not a *unilora.Config", c)
	}
	var be kernels.Backend
	total := 0
	for _, t := range targets {
		in, out, b, ok := inOut(t.Module)
		if !ok {
			continue
		}
		be = b
		total += cfg.R*in + out*cfg.R
	}
	if be == nil {
		return nil, fmt.Errorf("unilora: no target module is a layer type UniLoRA supports (Linear, GPT-2 Conv1D); check target_modules")
	}
	rng := nn.NewRNG(adapters.SeedFor(adapter, "unilora_theta_d"))
	var theta *nn.Tensor
	if cfg.InitWeights {
		theta = nn.Uniform(be, rng, -float32(cfg.InitThetaDBound), float32(cfg.InitThetaDBound), cfg.ThetaDLength)
	} else {
		theta = nn.Normal(be, rng, 0, 1, cfg.ThetaDLength)
	}
	theta.SetRequiresGrad(true)
	idx := GenerateIndex(total, cfg.ThetaDLength, uint64(cfg.ProjSeed))
	counts := make([]float32, cfg.ThetaDLength)
	for _, v := range idx {
		counts[v]++
	}
	// 1/sqrt(count) for used entries (0 for unused ones, which no layer reads).
	inv := nn.Rsqrt(nn.Maximum(nn.New(be, counts, cfg.ThetaDLength), nn.Scalar(be, 1)))
	s := &Shared{Theta: theta, layers: map[string]*assignment{}}
	pos := 0
	for _, t := range targets {
		in, out, _, ok := inOut(t.Module)
		if !ok {
			continue
		}
		a := &assignment{}
		a.idxA = idx[pos : pos+cfg.R*in]
		pos += cfg.R * in
		a.idxB = idx[pos : pos+out*cfg.R]
		pos += out * cfg.R
		a.scalesA = nn.Index(inv, 0, ids32(a.idxA)).Reshape(cfg.R, in)
		a.scalesB = nn.Index(inv, 0, ids32(a.idxB)).Reshape(out, cfg.R)
		s.layers[t.Path] = a
	}
	return &tuners.Shared{Params: []nn.Param{{Name: "unilora_theta_d", T: theta}}, State: s}, nil
}

// ids32 converts indices to the int32 ids nn.Index takes.
func ids32(v []int64) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}

// Wrap adds adapter t.Adapter to the module at t.Path on the shared
// theta_d and the indices Prepare assigned to the path. Like PEFT, wrapping
// a Linear sets fan_in_fan_out to false and a Conv1D to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("unilora: module %q: config is a %T, not a *unilora.Config", t.Path, t.Config)
	}
	var s *Shared
	if t.Shared != nil {
		s, _ = t.Shared.State.(*Shared)
	}
	if s == nil {
		return nil, fmt.Errorf("unilora: module %q: adapter %q has no shared theta_d (Prepare did not run)", t.Path, t.Adapter)
	}
	asg := s.layers[t.Path]
	if asg == nil {
		return nil, fmt.Errorf("unilora: module %q: no index assignment for this module (not a Linear or GPT-2 Conv1D?)", t.Path)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, adapters.SeedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("unilora: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, cfg, s.Theta, asg); err != nil {
		return nil, fmt.Errorf("unilora: module %q: %w", t.Path, err)
	}
	return l, nil
}
