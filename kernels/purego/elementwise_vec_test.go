package purego

import (
	"fmt"
	"math"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// The assembly and the pure Go loops compute the same bits, at every length
// around the vector and unrolling boundaries, at every offset, and in place.
func TestElementwiseAsmMatchesGeneric(t *testing.T) {
	if !haveElementwiseAsm {
		t.Log("no elementwise assembly on this CPU: both runs use the pure Go loops")
	}
	defer SetGenericElementwise(false)
	be := New()
	x, y := benchData(300), benchData(301)
	for i := range y {
		if y[i] == 0 {
			y[i] = 1
		}
	}
	y[7] = float32(math.Inf(1))
	run := func(generic bool, name string, n, off int) kernels.Host {
		SetGenericElementwise(generic)
		a, b := append(kernels.Host(nil), x[off:off+n]...), y[off:off+n]
		d := make(kernels.Host, n)
		switch name {
		case "axpy":
			copy(d, b)
			be.Axpy(d, a, -0.37)
		case "affine":
			be.Affine(d, a, 1.7, -0.25)
		case "neg":
			be.Unary(kernels.Neg, d, a)
		case "square":
			be.Unary(kernels.Square, d, a)
		case "addScalar", "subScalar", "mulScalar":
			op := map[string]kernels.BinaryOp{"addScalar": kernels.Add, "subScalar": kernels.Sub, "mulScalar": kernels.Mul}[name]
			be.Binary(op, d, []int{n}, a, []int{1}, b, []int{0})
		case "mulInPlace":
			be.Binary(kernels.Mul, a, []int{n}, a, []int{1}, b, []int{1})
			d = a
		default:
			var op kernels.BinaryOp
			for o := kernels.Add; o <= kernels.Div; o++ {
				if o.String() == name {
					op = o
				}
			}
			be.Binary(op, d, []int{n}, a, []int{1}, b, []int{1})
		}
		return d
	}
	for _, name := range []string{"axpy", "affine", "add", "sub", "mul", "div", "neg", "square", "addScalar", "subScalar", "mulScalar", "mulInPlace"} {
		for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 40, 63, 64, 65, 200} {
			for _, off := range []int{0, 1, 3} {
				want, got := run(true, name, n, off), run(false, name, n, off)
				for i := range want {
					if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
						t.Fatalf("%s n=%d off=%d: element %d is %v with assembly, %v without", name, n, off, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// Throughput of the elementwise kernels the merges of LoHa, HiRA, C3A and
// GLoRA run over a weight, with the assembly and with the pure Go loops.
// Bytes count every float read or written once.
func BenchmarkElementwise(b *testing.B) {
	be := New()
	defer SetGenericElementwise(false)
	for _, n := range []int{4096, 1 << 16, 1 << 18, 1 << 20, 1 << 24} {
		x, y, d := benchData(n), benchData(n), benchData(n) // d touched: no page faults in the first run
		shape, st := []int{n}, []int{1}
		cols := 4096
		if n < cols {
			cols = n
		}
		rowShape, rowA, rowB := []int{n / cols, cols}, []int{cols, 1}, []int{0, 1}
		cases := []struct {
			name  string
			bytes int
			fn    func()
		}{
			{"axpy", 12, func() { be.Axpy(d, x, 1e-3) }},
			{"affine", 8, func() { be.Affine(d, x, 0.5, 1) }},
			{"add", 12, func() { be.Binary(kernels.Add, d, shape, x, st, y, st) }},
			{"mul", 12, func() { be.Binary(kernels.Mul, d, shape, x, st, y, st) }},
			{"div", 12, func() { be.Binary(kernels.Div, d, shape, x, st, y, st) }},
			{"mulRowBroadcast", 8, func() { be.Binary(kernels.Mul, d, rowShape, x, rowA, y, rowB) }},
			{"square", 8, func() { be.Unary(kernels.Square, d, x) }},
			{"neg", 8, func() { be.Unary(kernels.Neg, d, x) }},
		}
		for _, c := range cases {
			for _, generic := range []bool{false, true} {
				path := "asm"
				if generic {
					path = "generic"
				}
				b.Run(fmt.Sprintf("%s/%d/%s", c.name, n, path), func(b *testing.B) {
					SetGenericElementwise(generic)
					b.SetBytes(int64(c.bytes * n))
					for b.Loop() {
						c.fn()
					}
				})
			}
		}
	}
}
