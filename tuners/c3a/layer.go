package c3a

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named C3A adapter of a layer.
type adapter struct {
	b int // block size
	// kernel is c3a_kernel, [out/b, in/b, b].
	kernel *nn.Tensor
	// fwd is [C | -S] ([b, 2b]), the forward DFT of size b as a real
	// product; inv is [C; -S] ([2b, b]), which takes the real part of the
	// inverse DFT (without its 1/b). C[j, k] = cos(2 pi jk / b),
	// S[j, k] = sin(2 pi jk / b).
	fwd, inv *nn.Tensor
	// ext holds (k + 1) mod b for k < 2b-1 (see addDelta); reverse holds
	// (b - t) mod b.
	ext, reverse []int32
}

// Layer is an nn.Linear with C3A adapters: Forward returns base(x) plus, for
// every active adapter, the block-circulant product of its input with the
// kernel divided by the input size (see the package doc). Active adapters are
// chained as in PEFT.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    *nn.Linear
	in, out int
}

var (
	_ tuners.Layer         = (*Layer)(nil)
	_ tuners.ActiveChecker = (*Layer)(nil)
	_ nn.Layer             = (*Layer)(nil)
)

// newLayer wraps a base module; only nn.Linear is supported, as in PEFT.
func newLayer(base nn.Module) (*Layer, error) {
	lin, ok := base.(*nn.Linear)
	if !ok {
		return nil, fmt.Errorf("c3a: cannot adapt a %T: C3A supports Linear layers only", base)
	}
	return &Layer{Set: adapters.NewSet[*adapter](0), base: lin, out: lin.Weight.Dim(0), in: lin.Weight.Dim(1)}, nil
}

// dftTables returns [C | -S] and [C; -S] for size b. The angle of (j, k)
// is 2 pi ((j*k) mod b) / b, reduced exactly before the float64 cos/sin.
func dftTables(be kernels.Backend, b int) (fwd, inv *nn.Tensor) {
	f := make([]float32, b*2*b)
	v := make([]float32, 2*b*b)
	for j := range b {
		for k := range b {
			ang := 2 * math.Pi * float64((j*k)%b) / float64(b)
			c, s := float32(math.Cos(ang)), float32(math.Sin(ang))
			f[j*2*b+k], f[j*2*b+b+k] = c, -s
			v[j*b+k], v[(b+j)*b+k] = c, -s
		}
	}
	return nn.New(be, f, b, 2*b), nn.New(be, v, 2*b, b)
}

// addAdapter creates adapter name with block size b; rng draws the init.
func (l *Layer) addAdapter(name string, b int, cfg *Config, rng *nn.RNG, trainable bool) error {
	switch {
	case b <= 0:
		return fmt.Errorf("adapter %q: block_size must be positive, got %d", name, b)
	case l.in%b != 0:
		return fmt.Errorf("adapter %q: block_size %d must divide the input size %d", name, b, l.in)
	case l.out%b != 0:
		return fmt.Errorf("adapter %q: block_size %d must divide the output size %d", name, b, l.out)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.base.Weight.Backend()
	shape := []int{l.out / b, l.in / b, b}
	a := &adapter{b: b}
	switch cfg.InitWeights.effective() {
	case InitZeros:
		a.kernel = nn.Zeros(be, shape...)
	case InitGaussian:
		a.kernel = nn.Normal(be, rng, 0, 1, shape...)
	case InitKaiming:
		bound := float32(math.Sqrt(1 / float64(l.in)))
		a.kernel = nn.Uniform(be, rng, -bound, bound, shape...)
	case InitXavier, InitFalse:
		bound := float32(math.Sqrt(3) * math.Sqrt(2/float64(l.in+l.out)))
		a.kernel = nn.Uniform(be, rng, -bound, bound, shape...)
	default:
		return fmt.Errorf("adapter %q: unknown init_weights %q", name, cfg.InitWeights)
	}
	a.fwd, a.inv = dftTables(be, b)
	a.ext, a.reverse = make([]int32, 2*b-1), make([]int32, b)
	for k := range a.ext {
		a.ext[k] = int32((k + 1) % b)
	}
	for t := range b {
		a.reverse[t] = int32((b - t) % b)
	}
	a.kernel.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// CheckActive refuses several active adapters of this layer when its input
// and output sizes differ: PEFT feeds each active adapter the previous one's
// output.
func (l *Layer) CheckActive(names []string) error {
	held := 0
	for _, n := range names {
		if _, ok := l.Get(n); ok {
			held++
		}
	}
	if held > 1 && l.in != l.out {
		return fmt.Errorf("c3a: %d adapters of a [%d, %d] Linear cannot be active together: each active C3A adapter takes the previous one's output as input, which needs in == out", held, l.out, l.in)
	}
	return nil
}

// convolve returns the block-circular cross-correlation of x [..., n*b]
// with kernel [m, n, b], [..., m*b], computed through the DFT of size b:
// Z_p = sum_q conj(W_pq) X_q per frequency, then the real inverse DFT.
func convolve(a *adapter, x, kernel *nn.Tensor) *nn.Tensor {
	m, n, b := kernel.Dim(0), kernel.Dim(1), a.b
	shape := x.Shape()
	rows := x.Len() / (n * b)
	// Input spectra, [b, rows, 2n]: (real | imaginary) parts per frequency.
	xf := nn.MatMul(x.Reshape(rows*n, b), a.fwd).Reshape(rows, n, 2, b)
	xf = nn.Permute(xf, 3, 0, 2, 1).Reshape(b, rows, 2*n)
	// Kernel spectra, [b, 2, n, m].
	wf := nn.MatMul(kernel.Reshape(m*n, b), a.fwd).Reshape(m, n, 2, b)
	wf = nn.Permute(wf, 3, 2, 1, 0)
	wr := nn.Slice(wf, 1, 0, 1).Reshape(b, n, m)
	wi := nn.Slice(wf, 1, 1, 2).Reshape(b, n, m)
	// [Zr | Zi] = [Xr | Xi] [[Wr, -Wi], [Wi, Wr]] per frequency.
	big := nn.Concat(1, nn.Concat(2, wr, nn.Neg(wi)), nn.Concat(2, wi, wr)) // [b, 2n, 2m]
	z := nn.MatMul(xf, big).Reshape(b, rows, 2, m)
	z = nn.Permute(z, 1, 3, 2, 0).Reshape(rows*m, 2*b)
	y := nn.MatMul(z, a.inv) // [rows*m, b], b times the inverse transform
	shape[len(shape)-1] = m * b
	return y.Reshape(shape...)
}

// apply returns the adapter's output for x (b times its circulant product,
// before the division) with the gradients PEFT's BlockCircularConvolution
// gives: the kernel's gradient is the true one, but PEFT's hand-written
// backward for the input computes fft(fft(g) * ifft(w)), which is the
// gradient of x -> R(conv(x, w)), R reversing each output block
// (t -> -t mod b), not of conv itself. gopeft reproduces it, so that
// training matches PEFT: the value is conv(x, w); when x carries a gradient
// the input path is the zero-valued R(conv(x, w')) - R(conv(x, w')).Detach()
// with the kernel w' detached, which costs a second transform in training.
func (l *Layer) apply(a *adapter, x *nn.Tensor) *nn.Tensor {
	if !x.RequiresGrad() {
		return convolve(a, x, a.kernel)
	}
	y := convolve(a, x.Detach(), a.kernel)
	p := convolve(a, x, a.kernel.Detach())
	shape := p.Shape()
	p = nn.Index(p.Reshape(-1, a.b), 1, a.reverse).Reshape(shape...)
	return nn.Add(y, nn.Sub(p, p.Detach()))
}

// Forward returns base(x) plus the active adapters' contributions, each
// adapter taking the previous one's output as its input, as in PEFT.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		size := x.Dim(-1)
		x = nn.Scale(l.apply(a, x), float32(1/float64(a.b))/float32(size))
		result = nn.Add(result, x)
	}
	return result
}

// addDelta adds alpha times the circulant update of adapter a (without the
// 1/in) to w in place. Block row p of the update, with its rows in reverse
// order, is the Hankel tensor H[t', q, j] = kernel[p, q, (t' + j + 1) mod b]
// (row t of the update is row t' = b-1-t of H, since
// (j - t) mod b = (t' + j + 1) mod b). A Hankel matrix is a strided view of
// one extended row f[k] = kernel[(k+1) mod b], k < 2b-1, so H is gathered by
// one strided copy into a scratch of b*in values, reused for every block
// row, and each row of it is added to its row of w: no index arrays or
// temporaries the size of the weight.
func (l *Layer) addDelta(w *nn.Tensor, a *adapter, alpha float32) {
	m, n, b := l.out/a.b, l.in/a.b, a.b
	f := nn.Index(a.kernel.Detach(), 2, a.ext) // [m, n, 2b-1]
	h := nn.Zeros(f.Backend(), b, n, b)
	be, fb, hb, wb := w.Backend(), f.Buffer(), h.Buffer(), w.Buffer()
	shape, strides := []int{b, n, b}, []int{1, 2*b - 1, 1}
	for p := range m {
		off := p * n * (2*b - 1)
		be.StridedCopy(hb, fb.Slice(off, fb.Len()-off), shape, strides)
		for t := range b {
			be.Axpy(wb.Slice((p*b+t)*l.in, l.in), hb.Slice((b-1-t)*l.in, l.in), alpha)
		}
	}
}

// DeltaWeight returns adapter name's weight update [out, in]:
// delta[p*b+t, q*b+j] = kernel[p, q, (j-t) mod b] / in.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("c3a: no adapter %q on this layer", name)
	}
	d := nn.Zeros(l.base.Weight.Backend(), l.out, l.in)
	l.addDelta(d, a, 1/float32(l.in))
	return d, nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place, one row at a time from the gathered blocks (see addDelta); adapters
// already merged are skipped. With safe, the merged weight is computed aside
// and checked for NaN/Inf first, and nothing changes on failure. Not safe
// for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	w := l.base.Weight
	for _, name := range l.ToMerge(names) {
		a, _ := l.Get(name)
		if safe {
			merged := w.Detach().Clone()
			l.addDelta(merged, a, 1/float32(l.in))
			if merged.Backend().CountNonFinite(merged.Buffer()) > 0 {
				return fmt.Errorf("c3a: adapter %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", name)
			}
			w.CopyFrom(merged)
		} else {
			l.addDelta(w, a, 1/float32(l.in))
		}
		l.MarkMerged(name)
	}
	return nil
}

// Unmerge subtracts every merged adapter's update again, the last merged
// first. Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	for l.AnyMerged() {
		merged := l.Merged()
		a, _ := l.Get(merged[len(merged)-1])
		l.addDelta(l.base.Weight, a, -1/float32(l.in))
		l.PopMerged()
	}
	return nil
}

// Base returns the wrapped nn.Linear.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "C3A".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's kernel require gradients or not.
func (l *Layer) SetTrainable(adapter string, on bool) {
	if a, ok := l.Get(adapter); ok {
		a.kernel.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("c3a: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's kernel under its saved name "c3a_kernel",
// or nil if the layer does not hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	a, ok := l.Get(adapter)
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "c3a_kernel", T: a.kernel}}
}

// Children lists "base_layer" and the c3a_kernel container (one parameter
// per adapter, PEFT's ParameterDict).
func (l *Layer) Children() []nn.Child {
	d := &adapters.ParamDict{}
	for _, n := range l.Adapters() {
		a, _ := l.Get(n)
		d.Entries = append(d.Entries, nn.Param{Name: n, T: a.kernel})
	}
	return []nn.Child{{Name: "base_layer", Module: l.base}, {Name: "c3a_kernel", Module: d}}
}

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by another nn.Linear of the same shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("c3a: cannot replace child %q of an adapted layer", name)
	}
	lin, ok := m.(*nn.Linear)
	if !ok || !slices.Equal(lin.Weight.Shape(), l.base.Weight.Shape()) {
		return fmt.Errorf("c3a: new base_layer %T does not match the adapted Linear [%d, %d]", m, l.out, l.in)
	}
	l.base = lin
	return nil
}
