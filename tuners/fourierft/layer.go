package fourierft

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named FourierFT adapter of a layer.
type adapter struct {
	n     int
	scale float64 // scaling
	seed  int64
	// rows and cols are the spectral locations (row into out, column into
	// in), PEFT's indices buffer.
	rows, cols []int
	// spectrum is fourierft_spectrum, [n].
	spectrum *nn.Tensor
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with FourierFT adapters:
// Forward returns base(x) + x delta^T for every active adapter, where
// delta = Re(ifft2(S)) * scaling is the [out, in] real part of the 2-D
// inverse DFT of the sparse spectrum S (the n trainable coefficients at
// torch.randperm(out*in, seed)[:n]).
//
// The inverse DFT of a sparse spectrum is a product of rank 2n:
// delta = (1/(out*in)) (Cr diag(s) Cc^T - Sr diag(s) Sc^T) with
// Cr[m, j] = cos(2 pi m row_j / out), Cc[p, j] = cos(2 pi p col_j / in) and
// Sr, Sc the sines. Forward applies it as two GEMMs through the 2n
// frequencies (like a LoRA of rank 2n); merging builds delta with one GEMM.
// The cosine and sine factors are gathered from tables of one period,
// indexed by (m*row mod out), so every angle is exact before rounding.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	weight  *nn.Tensor
	conv1D  bool // GPT-2 Conv1D: weight [in, out]
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
		return nil, fmt.Errorf("fourierft: cannot adapt a %T: FourierFT supports Linear and GPT-2 Conv1D layers", base)
	}
	return l, nil
}

// Locations returns the spectral locations of n coefficients for an
// [out, in] weight as PEFT draws them: the first n entries of
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
func (l *Layer) addAdapter(name string, n int, cfg *Config, rng *nn.RNG, trainable bool) error {
	if n <= 0 {
		return fmt.Errorf("adapter %q: n_frequency must be positive, got %d", name, n)
	}
	if n > l.in*l.out {
		return fmt.Errorf("adapter %q: n_frequency %d exceeds the %d entries of the [%d, %d] weight", name, n, l.in*l.out, l.out, l.in)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	a := &adapter{n: n, scale: cfg.Scaling, seed: *cfg.RandomLocSeed}
	a.rows, a.cols = Locations(l.out, l.in, n, a.seed)
	be := l.weight.Backend()
	if cfg.InitWeights {
		a.spectrum = nn.Zeros(be, n)
	} else {
		a.spectrum = nn.Normal(be, rng, 0, 1, n)
	}
	a.spectrum.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// periodTables returns cos(2 pi j / size) and sin(2 pi j / size) for
// j in [0, size), as [size] tensors: constants, computed in float64.
func periodTables(be kernels.Backend, size int) (cos, sin *nn.Tensor) {
	c, s := make([]float32, size), make([]float32, size)
	for j := range size {
		ang := 2 * math.Pi * float64(j) / float64(size)
		c[j], s[j] = float32(math.Cos(ang)), float32(math.Sin(ang))
	}
	return nn.New(be, c, size), nn.New(be, s, size)
}

// factor returns the [size, 2n] matrix [cos | sin] of the angles
// 2 pi p f_j / size for p in [0, size) and the frequencies f.
func factor(be kernels.Backend, size int, f []int) *nn.Tensor {
	ct, st := periodTables(be, size)
	n := len(f)
	ids := make([]int32, size*n)
	for p := range size {
		for j, fj := range f {
			ids[p*n+j] = int32(p * fj % size)
		}
	}
	c := nn.Index(ct, 0, ids).Reshape(size, n)
	s := nn.Index(st, 0, ids).Reshape(size, n)
	return nn.Concat(1, c, s)
}

// factors returns L [out, 2n] and R [in, 2n] with
// delta = L diag(w) R^T for w = [s, -s] * scaling / (out*in).
func (l *Layer) factors(a *adapter) (left, right *nn.Tensor) {
	be := l.weight.Backend()
	return factor(be, l.out, a.rows), factor(be, l.in, a.cols)
}

// weights returns [s, -s] * scaling / (out*in), [2n], differentiable in s.
func (l *Layer) weights(a *adapter, s *nn.Tensor) *nn.Tensor {
	k := float32(a.scale / float64(l.out*l.in))
	return nn.Scale(nn.Concat(0, s, nn.Neg(s)), k)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		left, right := l.factors(a)
		h := nn.MatMul(x, right)                                  // [..., 2n]
		h = nn.Mul(h, l.weights(a, a.spectrum))                   // scale per frequency
		result = nn.Add(result, nn.MatMulT(h, left, false, true)) // [..., out]
	}
	return result
}

// delta returns adapter a's weight update in the base weight's layout
// ([out, in], or [in, out] for Conv1D), without gradient.
func (l *Layer) delta(a *adapter) *nn.Tensor {
	left, right := l.factors(a)
	lw := nn.Mul(left, l.weights(a, a.spectrum.Detach()))
	if l.conv1D {
		return nn.MatMulT(right, lw, false, true)
	}
	return nn.MatMulT(lw, right, false, true)
}

// addDelta adds sign * delta to the base weight in place with one GEMM of
// inner size 2n (see adapters.MergeProduct); false means safe found
// NaN/Inf and left the weight alone.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	left, right := l.factors(a)
	lw := nn.Mul(left, l.weights(a, a.spectrum.Detach()))
	if l.conv1D {
		return adapters.MergeProduct(l.weight, right, lw, false, true, sign, safe)
	}
	return adapters.MergeProduct(l.weight, lw, right, false, true, sign, safe)
}

// DeltaWeight returns adapter name's weight update Re(ifft2(S)) * scaling
// in the layout of the base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("fourierft: no adapter %q on this layer", name)
	}
	return l.delta(a), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is checked for NaN/Inf before it replaces the base weight. Not safe for
// concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	return l.MergeWith("fourierft", names, safe, l.addDelta)
}

// Unmerge subtracts every merged adapter again, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	l.UnmergeWith(l.addDelta)
	return nil
}

// Buffers returns adapter's spectral locations as PEFT's "indices.<adapter>"
// buffer: int64 [2, n], rows then columns.
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	idx := make([]int64, 0, 2*a.n)
	for _, r := range a.rows {
		idx = append(idx, int64(r))
	}
	for _, c := range a.cols {
		idx = append(idx, int64(c))
	}
	return []tuners.Buffer{{Name: "indices." + adapter, Shape: []int{2, a.n}, I64: idx}}
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "FOURIERFT".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's spectrum require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) { saved.SetTrainable(&l.Set, adapter, on) }

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("fourierft: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensor under its saved name
// "fourierft_spectrum", or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param { return saved.Params(&l.Set, adapter) }

// saved lists the adapter tensors the layer saves, under their PEFT names.
var saved = adapters.Saved[*adapter]{
	Names:   []string{"fourierft_spectrum"},
	Tensors: func(a *adapter) []*nn.Tensor { return []*nn.Tensor{a.spectrum} },
}

// Children lists "base_layer" and the fourierft_spectrum container.
func (l *Layer) Children() []nn.Child { return saved.Children(&l.Set, l.base) }

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("fourierft: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("fourierft: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight = nl.base, nl.weight
	return nil
}
