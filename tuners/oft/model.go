package oft

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// Prefix is the prefix of OFT's parameter names.
const Prefix = "oft_"

var spec = &orth.Spec{Type: PeftType, Name: "oft", Containers: []string{"oft_R"}}

// Layer is a Linear, Conv2d (1x1 kernels) or Embedding base module with OFT
// adapters. Forward rotates the input blocks by each active adapter's
// orthogonal block-diagonal matrix, in the active order, then runs the base
// layer (Embedding: rotates the looked-up rows). It is computed as one
// rotation of the input rows or of the weight, whichever is smaller.
type Layer = orth.Layer

// Method is OFT as a tuners.Method. The zero value is ready to use.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "OFT".
func (Method) Type() string { return PeftType }

// Prefix returns "oft_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path (an existing OFT
// layer, or a new one wrapping an nn.Linear, nn.Conv2d with a 1x1 kernel or
// nn.Embedding). Initial values come from a Philox stream seeded by the
// adapter name and path (init_weights=false only).
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("oft: module %q: config is a %T, not an *oft.Config", t.Path, t.Config)
	}
	l, isLayer := t.Module.(*orth.Layer)
	if isLayer && l.Method() != PeftType {
		return nil, fmt.Errorf("oft: module %q is already adapted by %s", t.Path, l.Method())
	}
	if !isLayer {
		var err error
		l, err = orth.NewLayer(spec, t.Module, true, seedFor("dropout", t.Path))
		if err != nil {
			return nil, fmt.Errorf("oft: module %q: %w", t.Path, err)
		}
		if l.Kind() == orth.KindLinear {
			cfg.FanInFanOut = false
		}
	}
	if kh, kw := l.KernelSize(); kh != 1 || kw != 1 {
		// PEFT 0.20.0 rotates unfolded input patches and folds them back
		// by summing overlaps, which for kernels above 1x1 is not the
		// rotation its own merge applies; gopeft does not reproduce it.
		return nil, fmt.Errorf("oft: module %q: Conv2d with a %dx%d kernel is not supported (only 1x1): PEFT's unmerged OFT convolution sums overlapping patches", t.Path, kh, kw)
	}
	r, b, err := cfg.blocks(l.Dim())
	if err != nil {
		return nil, fmt.Errorf("oft: module %q: %w", t.Path, err)
	}
	n := r
	if cfg.BlockShare {
		n = 1
	}
	be := l.Weight().Backend()
	p := b * (b - 1) / 2
	var w *nn.Tensor
	if cfg.InitWeights {
		w = nn.Zeros(be, n, p)
	} else {
		w = nn.Normal(be, nn.NewRNG(seedFor(t.Adapter, t.Path)), 0, 0.1, n, p)
	}
	w.SetRequiresGrad(true)
	if err := l.Add(t.Adapter, newAdapter(w, r, b, cfg)); err != nil {
		return nil, fmt.Errorf("oft: module %q: %w", t.Path, err)
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
