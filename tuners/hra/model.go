package hra

import (
	"fmt"
	"hash/fnv"
	"math"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// Prefix is the prefix of HRA's parameter names.
const Prefix = "hra_"

var spec = &orth.Spec{
	Type: PeftType, Name: "hra", Containers: []string{"hra_u"},
	ReverseActive: true, SquareConv: true,
}

// Layer is a Linear or Conv2d base module with HRA adapters: the base
// weight W becomes W·H_a·H_b… for the active adapters a, b, … (H the
// product of an adapter's Householder reflections). Linear layers apply the
// reflections to the input rows or to the weight, whichever is smaller, in
// compact form (two thin products); Conv2d layers to the flattened weight.
type Layer = orth.Layer

// Method is HRA as a tuners.Method. The zero value is ready to use.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "HRA".
func (Method) Type() string { return PeftType }

// Prefix returns "hra_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path (an existing HRA
// layer, or a new one wrapping an nn.Linear or nn.Conv2d). Initial values
// come from a Philox stream seeded by the adapter name and path
// (kaiming-uniform bounds as PEFT's, not torch's draws).
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("hra: module %q: config is a %T, not an *hra.Config", t.Path, t.Config)
	}
	if cfg.R <= 0 {
		return nil, fmt.Errorf("hra: module %q: r should be a positive integer, got %d", t.Path, cfg.R)
	}
	l, isLayer := t.Module.(*orth.Layer)
	if isLayer && l.Method() != PeftType {
		return nil, fmt.Errorf("hra: module %q is already adapted by %s", t.Path, l.Method())
	}
	if !isLayer {
		var err error
		l, err = orth.NewLayer(spec, t.Module, false, seedFor("dropout", t.Path))
		if err != nil {
			return nil, fmt.Errorf("hra: module %q: %w", t.Path, err)
		}
	}
	dim, r := l.Dim(), cfg.R
	be := l.Weight().Backend()
	rng := nn.NewRNG(seedFor(t.Adapter, t.Path))
	var u *nn.Tensor
	if cfg.InitWeights && r%2 == 0 {
		// Half the vectors, each repeated: the pairs of reflections cancel.
		bound := float32(1 / math.Sqrt(float64(r/2)))
		half := nn.Uniform(be, rng, -bound, bound, dim, r/2)
		ids := make([]int32, r)
		for i := range ids {
			ids[i] = int32(i / 2)
		}
		u = nn.Index(half, 1, ids).Detach()
	} else {
		bound := float32(1 / math.Sqrt(float64(r)))
		u = nn.Uniform(be, rng, -bound, bound, dim, r)
	}
	u.SetRequiresGrad(true)
	if err := l.Add(t.Adapter, &adapter{u: u, r: r, gs: cfg.ApplyGS}); err != nil {
		return nil, fmt.Errorf("hra: module %q: %w", t.Path, err)
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
