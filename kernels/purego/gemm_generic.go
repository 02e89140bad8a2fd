package purego

import "unsafe"

// The tile of the pure Go kernel.
const (
	genMR = 6
	genNR = 16
)

// gemmKernelGeneric is the pure Go micro-kernel (see gemmKernelFunc). It
// walks its 6 x 16 tile in 2 x 4 blocks, whose eight sums fit in
// registers alongside the six operands of one step, re-reading the packed
// panels (which sit in L1) for every block.
func gemmKernelGeneric(kc int, ap, bp, cp *float32, ldc int, alpha, beta float32) {
	a := unsafe.Slice(ap, kc*genMR)
	b := unsafe.Slice(bp, kc*genNR)
	c := unsafe.Slice(cp, (genMR-1)*ldc+genNR)
	for i := 0; i < genMR; i += 2 {
		for j := 0; j < genNR; j += 4 {
			var c00, c01, c02, c03, c10, c11, c12, c13 float32
			as, bs := a[i:], b[j:]
			for p := 0; p < kc; p++ {
				x := (*[2]float32)(as[p*genMR:])
				y := (*[4]float32)(bs[p*genNR:])
				a0, a1 := x[0], x[1]
				b0, b1, b2, b3 := y[0], y[1], y[2], y[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
			}
			r0 := c[i*ldc+j : i*ldc+j+4 : i*ldc+j+4]
			r1 := c[(i+1)*ldc+j : (i+1)*ldc+j+4 : (i+1)*ldc+j+4]
			if beta == 0 {
				r0[0], r0[1], r0[2], r0[3] = alpha*c00, alpha*c01, alpha*c02, alpha*c03
				r1[0], r1[1], r1[2], r1[3] = alpha*c10, alpha*c11, alpha*c12, alpha*c13
			} else {
				r0[0] = alpha*c00 + beta*r0[0]
				r0[1] = alpha*c01 + beta*r0[1]
				r0[2] = alpha*c02 + beta*r0[2]
				r0[3] = alpha*c03 + beta*r0[3]
				r1[0] = alpha*c10 + beta*r1[0]
				r1[1] = alpha*c11 + beta*r1[1]
				r1[2] = alpha*c12 + beta*r1[2]
				r1[3] = alpha*c13 + beta*r1[3]
			}
		}
	}
}
