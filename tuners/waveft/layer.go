package waveft

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named WaveFT adapter of a layer.
type adapter struct {
	n       int
	scaling float32
	// rows and cols are the coefficient locations in the [out, in] update
	// (PEFT's waveft_indices).
	rows, cols []int
	// spectrum is waveft_spectrum [n], the trainable coefficients.
	spectrum *nn.Tensor
	// left [out, n] and right [in, n] synthesise the update:
	// delta = scaling * left diag(spectrum) right^T.
	left, right *nn.Tensor
	// The same update as a sum of small patches, for merging: entry e adds
	// coef[e] * scaling * spectrum[coeff[e]] at flat position pos[e] of the
	// base weight (in its storage layout).
	coeff, pos []int32
	coef       *nn.Tensor
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with WaveFT adapters: Forward
// returns base(x) + x delta^T for every active adapter, where delta
// [out, in] is the single-level 2-D inverse wavelet transform (PEFT's
// waverec2d with its padding and centred crop) of the sparse coefficient
// matrix holding waveft_spectrum at waveft_indices, times scaling.
//
// The transform is linear in the coefficients and separable, so each
// coefficient contributes an outer product of two synthesis columns (a
// filter placed at its position, low- or high-pass by quadrant). The layer
// builds those columns once per adapter, left [out, n] and right [in, n],
// and applies delta as two GEMMs through the n coefficients (like a LoRA
// of rank n). Merging adds the coefficients' small patches (filter length
// squared entries each) into the weight with one Scatter instead.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	weight  *nn.Tensor
	conv1D  bool
	in, out int
}

var (
	_ tuners.Layer    = (*Layer)(nil)
	_ tuners.Bufferer = (*Layer)(nil)
	_ nn.Layer        = (*Layer)(nil)
)

// newLayer wraps an nn.Linear or nn.Conv1D.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed)}
	switch m := base.(type) {
	case *nn.Linear:
		l.base, l.weight, l.out, l.in = m, m.Weight, m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		l.base, l.weight, l.conv1D, l.in, l.out = m, m.Weight, true, m.Weight.Dim(0), m.Weight.Dim(1)
	default:
		return nil, fmt.Errorf("waveft: cannot adapt a %T: WaveFT supports Linear and GPT-2 Conv1D layers", base)
	}
	return l, nil
}

// Locations returns the coefficient locations of n coefficients for an
// [out, in] update as PEFT draws them: the first n entries of
// torch.randperm(out*in) under torch.Generator().manual_seed(seed), as
// (row, column) = (p / in, p mod in).
func Locations(out, in, n int, seed int64) (rows, cols []int) {
	perm := torchrand.New(seed).Randperm(out * in)[:n]
	rows, cols = make([]int, n), make([]int, n)
	for j, p := range perm {
		rows[j], cols[j] = int(p)/in, int(p)%in
	}
	return rows, cols
}

// addAdapter creates adapter name with n coefficients.
func (l *Layer) addAdapter(name string, n int, cfg *Config, rng *nn.RNG) error {
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	if n <= 0 || n > l.out*l.in {
		return fmt.Errorf("adapter %q: n_frequency must be in [1, out*in = %d], got %d", name, l.out*l.in, n)
	}
	ra, err := newAxis(l.out, cfg.WaveletFamily, cfg.UseIDWT)
	if err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	ca, err := newAxis(l.in, cfg.WaveletFamily, cfg.UseIDWT)
	if err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	rows, cols := Locations(l.out, l.in, n, cfg.RandomLocSeed)
	left, right := factors(ra, ca, rows, cols)
	be := l.weight.Backend()
	a := &adapter{n: n, scaling: float32(cfg.Scaling), rows: rows, cols: cols,
		left: nn.New(be, left, l.out, n), right: nn.New(be, right, l.in, n)}
	a.coeff, a.pos, a.coef = l.patches(be, left, right, n)
	if cfg.InitWeights {
		a.spectrum = nn.Zeros(be, n)
	} else {
		a.spectrum = nn.Normal(be, rng, 0, 0.01, n)
	}
	a.spectrum.SetRequiresGrad(true)
	return l.Add(name, a)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		h := nn.Mul(nn.MatMul(x, a.right), nn.Scale(a.spectrum, a.scaling))
		result = nn.Add(result, nn.MatMulT(h, a.left, false, true))
	}
	return result
}

// patches lists the nonzero products left[i, k] * right[j, k] (a few per
// coefficient: the filters' supports) with their flat positions in the
// base weight.
func (l *Layer) patches(be kernels.Backend, left, right []float32, n int) (coeff, pos []int32, coef *nn.Tensor) {
	type entry struct {
		at int
		v  float32
	}
	lcols, rcols := make([][]entry, n), make([][]entry, n)
	for i := range l.out {
		for k := range n {
			if v := left[i*n+k]; v != 0 {
				lcols[k] = append(lcols[k], entry{i, v})
			}
		}
	}
	for j := range l.in {
		for k := range n {
			if v := right[j*n+k]; v != 0 {
				rcols[k] = append(rcols[k], entry{j, v})
			}
		}
	}
	var lv, rv []float32
	for k := range n {
		for _, li := range lcols[k] {
			for _, rj := range rcols[k] {
				p := li.at*l.in + rj.at
				if l.conv1D {
					p = rj.at*l.out + li.at
				}
				coeff = append(coeff, int32(k))
				pos = append(pos, int32(p))
				lv, rv = append(lv, li.v), append(rv, rj.v)
			}
		}
	}
	return coeff, pos, nn.Mul(nn.New(be, lv, len(lv)), nn.New(be, rv, len(rv)))
}

// delta returns the adapter's update in the base weight's layout, without
// gradient, built from its patches with one Scatter.
func (l *Layer) delta(a *adapter) *nn.Tensor {
	return nn.Scatter(patchValues(a, 1), 0, a.pos, l.out*l.in).Reshape(l.weight.Shape()...)
}

// patchValues returns sign * scaling * spectrum[coeff[e]] * coef[e], the
// patches' entries, without gradient.
func patchValues(a *adapter, sign float32) *nn.Tensor {
	s := nn.Scale(a.spectrum.Detach(), a.scaling*sign)
	return nn.Mul(nn.Index(s, 0, a.coeff), a.coef)
}

// addDelta adds sign * delta to the base weight in place by accumulating
// the patches' entries at their positions (one ScatterAdd of a few
// entries per coefficient, no dense temporary); false means safe found
// NaN/Inf and left the weight alone.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	v := patchValues(a, sign)
	if !safe {
		l.weight.Backend().ScatterAdd(l.weight.Buffer(), v.Buffer(), a.pos, 1)
		return true
	}
	c := l.weight.Detach().Clone()
	c.Backend().ScatterAdd(c.Buffer(), v.Buffer(), a.pos, 1)
	if c.Backend().CountNonFinite(c.Buffer()) > 0 {
		return false
	}
	l.weight.CopyFrom(c)
	return true
}

// DeltaWeight returns adapter name's weight update in the layout of the
// base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("waveft: no adapter %q on this layer", name)
	}
	return l.delta(a), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is checked for NaN/Inf first. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	return l.MergeWith("waveft", names, safe, l.addDelta)
}

// Unmerge subtracts every merged adapter again, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	l.UnmergeWith(l.addDelta)
	return nil
}

// Buffers returns the coefficient locations PEFT draws from
// random_loc_seed, "waveft_indices.<adapter>" [2, n] (rows, then columns).
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	v := make([]int64, 0, 2*a.n)
	for _, r := range a.rows {
		v = append(v, int64(r))
	}
	for _, c := range a.cols {
		v = append(v, int64(c))
	}
	return []tuners.Buffer{{Name: "waveft_indices." + adapter, Shape: []int{2, a.n}, I64: v}}
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "WAVEFT".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's spectrum require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) { saved.SetTrainable(&l.Set, adapter, on) }

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("waveft: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's spectrum under its saved name
// "waveft_spectrum", or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param { return saved.Params(&l.Set, adapter) }

// saved lists the adapter tensors the layer saves, under their PEFT names.
var saved = adapters.Saved[*adapter]{
	Names:   []string{"waveft_spectrum"},
	Tensors: func(a *adapter) []*nn.Tensor { return []*nn.Tensor{a.spectrum} },
}

// Children lists "base_layer" and the waveft_spectrum container.
func (l *Layer) Children() []nn.Child { return saved.Children(&l.Set, l.base) }

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("waveft: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("waveft: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight = nl.base, nl.weight
	return nil
}
