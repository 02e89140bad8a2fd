package waveft

import (
	"fmt"
	"math"
	"strings"
)

// reconstructionFilters returns PEFT's float32 reconstruction filters of
// a wavelet family: rec_lo = the table's taps (coiflets times sqrt(2),
// in float64 first), rec_hi[i] = (-1)^i rec_lo[L-1-i].
func reconstructionFilters(family string) (lo, hi []float32, err error) {
	base, ok := filterTable[family]
	if !ok {
		return nil, nil, fmt.Errorf("wavelet_family %q has no filter in PEFT 0.20 (it has db1-db10, sym2-sym10, coif1-coif5)", family)
	}
	scale := 1.0
	if strings.HasPrefix(family, "coif") {
		scale = math.Sqrt(2)
	}
	n := len(base)
	lo, hi = make([]float32, n), make([]float32, n)
	for i := range n {
		lo[i] = float32(base[i] * scale)
		v := base[n-1-i] * scale
		if i%2 == 1 {
			v = -v
		}
		hi[i] = float32(v)
	}
	return lo, hi, nil
}

// axis describes one axis of the single-level 2-D inverse transform PEFT
// runs (waverec2d of (cA, (cH, cV, cD)) followed by its centred crop):
// a padded coefficient axis of even length n, split into a low half and a
// high half, is synthesised with filters of length L by a stride-2
// transposed convolution (output n + L - 2), cropped by (2L-3)/2 on both
// sides and then centred on size entries.
type axis struct {
	n, size   int
	offset    int // where the original axis starts in the padded one
	shift     int // output index i reads transposed-convolution row i + shift
	lo, hi    []float32
	transform bool
}

// newAxis returns the synthesis of an axis of size entries for the family
// (transform false: the identity placement of use_idwt=False).
func newAxis(size int, family string, transform bool) (axis, error) {
	if !transform {
		return axis{n: size, size: size}, nil
	}
	red, ok := reduction(family)
	if !ok {
		return axis{}, fmt.Errorf("wavelet_family %q is not supported", family)
	}
	lo, hi, err := reconstructionFilters(family)
	if err != nil {
		return axis{}, err
	}
	n := size + red
	if n%2 != 0 {
		n++
	}
	L := len(lo)
	pad := (2*L - 3) / 2
	cropped := n + L - 2 - 2*pad
	if cropped < size {
		return axis{}, fmt.Errorf("wavelet_family %q: its filter (length %d) does not fit PEFT's padding of %d, the reconstruction is smaller than the layer (PEFT fails on it too)", family, L, red)
	}
	start := (cropped - size) / 2
	return axis{n: n, size: size, offset: (n - size) / 2, shift: start + pad, lo: lo, hi: hi, transform: true}, nil
}

// column writes into dst (length size) the synthesis of a unit coefficient
// at padded position p of this axis, using the high-pass filter if high.
func (a axis) column(dst []float32, p int, high bool) {
	if !a.transform {
		dst[p] = 1
		return
	}
	f := a.lo
	if high {
		f = a.hi
	}
	h := p % (a.n / 2)
	for i := range dst {
		if k := i + a.shift - 2*h; k >= 0 && k < len(f) {
			dst[i] = f[k]
		}
	}
}

// factors returns the synthesis factors of coefficients at (rows, cols)
// of an [out, in] update: left [out, n] and right [in, n] with
// delta = left diag(s) right^T. The inverse transform maps a coefficient
// in the top-right block (cH) through the high-pass filter along rows and
// the low-pass along columns, one in the bottom-left block (cV) the other
// way round, and cA / cD through low / high on both.
func factors(rowAxis, colAxis axis, rows, cols []int) (left, right []float32) {
	n := len(rows)
	left = make([]float32, rowAxis.size*n)
	right = make([]float32, colAxis.size*n)
	lcol := make([]float32, rowAxis.size)
	rcol := make([]float32, colAxis.size)
	for k := range n {
		pr, pc := rows[k]+rowAxis.offset, cols[k]+colAxis.offset
		clear(lcol)
		clear(rcol)
		rowAxis.column(lcol, pr, rowAxis.transform && pc >= colAxis.n/2)
		colAxis.column(rcol, pc, colAxis.transform && pr >= rowAxis.n/2)
		for i, v := range lcol {
			left[i*n+k] = v
		}
		for j, v := range rcol {
			right[j*n+k] = v
		}
	}
	return left, right
}
