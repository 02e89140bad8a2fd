package purego

import (
	"sync/atomic"

	"github.com/gopeft/gopeft/kernels"
)

// forceGenericEW makes the elementwise kernels skip their assembly.
var forceGenericEW atomic.Bool

// SetGenericElementwise forces the pure Go loops of Axpy, Affine and the
// contiguous Add, Sub, Mul and Div (on), or lets them use the CPU's vector
// assembly where there is one (off, the default). Both compute the same
// bits; tests use it to cover the loops the CPU would not run.
func SetGenericElementwise(on bool) { forceGenericEW.Store(on) }

// ElementwiseKernel names the code the elementwise kernels run now: "avx2"
// or "generic".
func ElementwiseKernel() string {
	if useElementwiseAsm() {
		return "avx2"
	}
	return "generic"
}

func useElementwiseAsm() bool { return haveElementwiseAsm && !forceGenericEW.Load() }

// vecLen is the part of an n-element run the assembly handles: n rounded
// down to a multiple of its 8-float vectors, or 0 without assembly.
func vecLen(n int) int {
	if n < 8 || !useElementwiseAsm() {
		return 0
	}
	return n &^ 7
}

// axpy32 sets d[i] += alpha*s[i] (len(s) >= len(d)).
func axpy32(d, s []float32, alpha float32) {
	if v := vecLen(len(d)); v > 0 {
		axpyAVX2(v, alpha, &s[0], &d[0])
		d, s = d[v:], s[v:len(d)]
	}
	axpyGeneric(d, s, alpha)
}

func axpyGeneric(d, s []float32, alpha float32) {
	s = s[:len(d)]
	i := 0
	for ; i+4 <= len(d); i += 4 {
		dv, sv := (*[4]float32)(d[i:]), (*[4]float32)(s[i:])
		dv[0] += float32(alpha * sv[0])
		dv[1] += float32(alpha * sv[1])
		dv[2] += float32(alpha * sv[2])
		dv[3] += float32(alpha * sv[3])
	}
	for ; i < len(d); i++ {
		d[i] += float32(alpha * s[i])
	}
}

// affine sets d[i] = s[i]*scale + shift (len(s) >= len(d)).
func affine(d, s []float32, scale, shift float32) {
	if v := vecLen(len(d)); v > 0 {
		affineAVX2(v, scale, shift, &s[0], &d[0])
		d, s = d[v:], s[v:len(d)]
	}
	s = s[:len(d)]
	i := 0
	for ; i+4 <= len(d); i += 4 {
		dv, sv := (*[4]float32)(d[i:]), (*[4]float32)(s[i:])
		dv[0] = float32(sv[0]*scale) + shift
		dv[1] = float32(sv[1]*scale) + shift
		dv[2] = float32(sv[2]*scale) + shift
		dv[3] = float32(sv[3]*scale) + shift
	}
	for ; i < len(d); i++ {
		d[i] = float32(s[i]*scale) + shift
	}
}

// binaryVec sets d[i] = a[i] op b[i] for the four arithmetic ops and reports
// true, or reports false for any other op. a and b hold at least len(d)
// elements; d may be a or b.
func binaryVec(op kernels.BinaryOp, d, a, b []float32) bool {
	var asm func(int, *float32, *float32, *float32)
	switch op {
	case kernels.Add:
		asm = addAVX2
	case kernels.Sub:
		asm = subAVX2
	case kernels.Mul:
		asm = mulAVX2
	case kernels.Div:
		asm = divAVX2
	default:
		return false
	}
	if v := vecLen(len(d)); v > 0 {
		asm(v, &d[0], &a[0], &b[0])
		d, a, b = d[v:], a[v:len(d)], b[v:len(d)]
	}
	a, b = a[:len(d)], b[:len(d)]
	n4 := len(d) &^ 3
	switch op {
	case kernels.Add:
		for i := 0; i < n4; i += 4 {
			dv, av, bv := (*[4]float32)(d[i:]), (*[4]float32)(a[i:]), (*[4]float32)(b[i:])
			dv[0], dv[1], dv[2], dv[3] = av[0]+bv[0], av[1]+bv[1], av[2]+bv[2], av[3]+bv[3]
		}
		for i := n4; i < len(d); i++ {
			d[i] = a[i] + b[i]
		}
	case kernels.Sub:
		for i := 0; i < n4; i += 4 {
			dv, av, bv := (*[4]float32)(d[i:]), (*[4]float32)(a[i:]), (*[4]float32)(b[i:])
			dv[0], dv[1], dv[2], dv[3] = av[0]-bv[0], av[1]-bv[1], av[2]-bv[2], av[3]-bv[3]
		}
		for i := n4; i < len(d); i++ {
			d[i] = a[i] - b[i]
		}
	case kernels.Mul:
		for i := 0; i < n4; i += 4 {
			dv, av, bv := (*[4]float32)(d[i:]), (*[4]float32)(a[i:]), (*[4]float32)(b[i:])
			dv[0], dv[1], dv[2], dv[3] = av[0]*bv[0], av[1]*bv[1], av[2]*bv[2], av[3]*bv[3]
		}
		for i := n4; i < len(d); i++ {
			d[i] = a[i] * b[i]
		}
	case kernels.Div:
		for i := 0; i < n4; i += 4 {
			dv, av, bv := (*[4]float32)(d[i:]), (*[4]float32)(a[i:]), (*[4]float32)(b[i:])
			dv[0], dv[1], dv[2], dv[3] = av[0]/bv[0], av[1]/bv[1], av[2]/bv[2], av[3]/bv[3]
		}
		for i := n4; i < len(d); i++ {
			d[i] = a[i] / b[i]
		}
	}
	return true
}

// splitElems is the length below which Axpy, Affine and the contiguous
// Binary run on the calling goroutine: starting goroutines costs more than
// a second core saves on these memory-bound loops until the data outgrows
// the caches.
const splitElems = 1 << 17
