package boft

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// Prefix is the prefix of BOFT's parameter names.
const Prefix = "boft_"

var spec = &orth.Spec{
	Type: PeftType, Name: "boft", Containers: []string{"boft_R", "boft_s"},
	ReverseActive: true, SquareConv: true,
}

// Layer is a Linear or Conv2d base module with BOFT adapters: the input is
// multiplied by the butterfly orthogonal matrix of every active adapter
// (accumulated as PEFT does, the first active adapter applied last) and the
// base output, bias excluded, is scaled by boft_s per output feature. Linear
// layers rotate the input rows or the weight, whichever is smaller;
// Conv2d layers rotate the flattened weight and convolve with it.
type Layer = orth.Layer

// Method is BOFT as a tuners.Method. The zero value is ready to use.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "BOFT".
func (Method) Type() string { return PeftType }

// Prefix returns "boft_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path (an existing BOFT
// layer, or a new one wrapping an nn.Linear or nn.Conv2d). Random initial
// values (init_weights=false) come from a Philox stream seeded by the
// adapter name and path.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("boft: module %q: config is a %T, not a *boft.Config", t.Path, t.Config)
	}
	l, isLayer := t.Module.(*orth.Layer)
	if isLayer && l.Method() != PeftType {
		return nil, fmt.Errorf("boft: module %q is already adapted by %s", t.Path, l.Method())
	}
	if !isLayer {
		var err error
		l, err = orth.NewLayer(spec, t.Module, false, seedFor("dropout", t.Path))
		if err != nil {
			return nil, fmt.Errorf("boft: module %q: %w", t.Path, err)
		}
		if l.Kind() == orth.KindLinear {
			cfg.FanInFanOut = false
		}
	}
	g, err := cfg.geometryFor(l.Dim())
	if err != nil {
		return nil, fmt.Errorf("boft: module %q: %w", t.Path, err)
	}
	be := l.Weight().Backend()
	sShape := []int{l.Out(), 1}
	if l.Kind() == orth.KindConv2d {
		sShape = []int{1, l.Out()}
	}
	var r, s *nn.Tensor
	if cfg.InitWeights {
		r = nn.Zeros(be, g.f+1, g.n, g.b, g.b)
		s = nn.Ones(be, sShape...)
	} else {
		rng := nn.NewRNG(seedFor(t.Adapter, t.Path))
		r = nn.Normal(be, rng, 0, 0.1, g.f+1, g.n, g.b, g.b)
		s = nn.Normal(be, rng, 1, 0.1, sShape...)
	}
	r.SetRequiresGrad(true)
	s.SetRequiresGrad(true)
	a, err := newAdapter(r, s, g, l.Dim(), l.Out(), cfg.Dropout)
	if err != nil {
		return nil, fmt.Errorf("boft: module %q: %w", t.Path, err)
	}
	if err := l.Add(t.Adapter, a); err != nil {
		return nil, fmt.Errorf("boft: module %q: %w", t.Path, err)
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
