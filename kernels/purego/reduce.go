package purego

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/kernels"
)

// reduceBlock is how many inner columns one piece of a strided reduction
// accumulates at a time.
const reduceBlock = 256

// Reduce reduces src viewed as [outer, n, inner] over its middle axis into
// dst [outer, inner]. Sums accumulate in float64; Max and Min propagate NaN.
func (*Backend) Reduce(op kernels.ReduceOp, dst, src kernels.Buffer, outer, n, inner int) {
	if op < 0 || int(op) >= kernels.NumReduceOps {
		panic(fmt.Sprintf("purego: unknown reduce op %d", op))
	}
	if outer < 0 || n < 0 || inner < 0 {
		panic(fmt.Sprintf("purego: Reduce: negative size [%d, %d, %d]", outer, n, inner))
	}
	d, s := host(dst), host(src)
	need("Reduce dst", d, outer*inner)
	need("Reduce src", s, outer*n*inner)
	out := d[:outer*inner]
	if len(out) == 0 {
		return
	}
	if n == 0 {
		var id float32
		switch op {
		case kernels.Mean:
			id = float32(math.NaN())
		case kernels.MaxReduce:
			id = float32(math.Inf(-1))
		case kernels.MinReduce:
			id = float32(math.Inf(1))
		}
		for i := range out {
			out[i] = id
		}
		return
	}
	if inner == 1 {
		parallelFor(outer, n, func(lo, hi int) {
			for o := lo; o < hi; o++ {
				out[o] = reduceRow(op, s[o*n:(o+1)*n])
			}
		})
		return
	}
	nb := (inner + reduceBlock - 1) / reduceBlock
	parallelFor(outer*nb, n*min(inner, reduceBlock), func(lo, hi int) {
		var acc [reduceBlock]float64
		var ext [reduceBlock]float32
		for u := lo; u < hi; u++ {
			o, j0 := u/nb, (u%nb)*reduceBlock
			j1 := min(j0+reduceBlock, inner)
			w := j1 - j0
			base := o * n * inner
			switch op {
			case kernels.MaxReduce, kernels.MinReduce:
				// A NaN, once in e, stays: no comparison with it is true.
				e := ext[:w]
				copy(e, s[base+j0:base+j1])
				for r := 1; r < n; r++ {
					row := s[base+r*inner+j0 : base+r*inner+j1]
					if op == kernels.MaxReduce {
						for j, x := range row {
							if x > e[j] || x != x {
								e[j] = x
							}
						}
					} else {
						for j, x := range row {
							if x < e[j] || x != x {
								e[j] = x
							}
						}
					}
				}
				copy(out[o*inner+j0:o*inner+j1], e)
			default:
				a := acc[:w]
				for j := range a {
					a[j] = 0
				}
				for r := 0; r < n; r++ {
					row := s[base+r*inner+j0 : base+r*inner+j1]
					if op == kernels.SumSquares {
						for j, x := range row {
							a[j] += float64(x) * float64(x)
						}
					} else {
						for j, x := range row {
							a[j] += float64(x)
						}
					}
				}
				dr := out[o*inner+j0 : o*inner+j1]
				for j, v := range a {
					if op == kernels.Mean {
						v /= float64(n)
					}
					dr[j] = float32(v)
				}
			}
		}
	})
}

// reduceRow reduces one contiguous run.
func reduceRow(op kernels.ReduceOp, x []float32) float32 {
	switch op {
	case kernels.MaxReduce:
		m := x[0]
		for _, v := range x[1:] {
			if v > m || v != v {
				m = v
				if v != v {
					return v
				}
			}
		}
		return m
	case kernels.MinReduce:
		m := x[0]
		for _, v := range x[1:] {
			if v < m || v != v {
				m = v
				if v != v {
					return v
				}
			}
		}
		return m
	case kernels.SumSquares:
		return float32(sumSquares(x))
	case kernels.Mean:
		return float32(sum(x) / float64(len(x)))
	default:
		return float32(sum(x))
	}
}

// sum adds x in float64 with four independent accumulators.
func sum(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
		s2 += float64(x[i+2])
		s3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// sumSquares adds x*x in float64.
func sumSquares(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		a := float64(x[i])
		s0 += a * a
	}
	return (s0 + s1) + (s2 + s3)
}

// CountNonFinite counts the NaN and infinite elements of src.
func (*Backend) CountNonFinite(src kernels.Buffer) int {
	s := host(src)
	k := chunks(len(s), 1)
	counts := make([]int, k)
	split(len(s), k, func(p, lo, hi int) {
		c := 0
		for _, x := range s[lo:hi] {
			if x-x != 0 {
				c++
			}
		}
		counts[p] = c
	})
	total := 0
	for _, c := range counts {
		total += c
	}
	return total
}

// checkRows panics unless every buffer holds rows x cols elements.
func checkRows(kernel string, rows, cols int, bufs ...kernels.Host) {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("purego: %s: negative size %d x %d", kernel, rows, cols))
	}
	for _, b := range bufs {
		need(kernel, b, rows*cols)
	}
}

// Softmax writes the softmax, or log-softmax, of each row of src.
func (*Backend) Softmax(dst, src kernels.Buffer, rows, cols int, log bool) {
	d, s := host(dst), host(src)
	checkRows("Softmax", rows, cols, d, s)
	if cols == 0 {
		return
	}
	parallelFor(rows, cols*8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x, y := s[r*cols:(r+1)*cols], d[r*cols:(r+1)*cols]
			m := float64(reduceRow(kernels.MaxReduce, x))
			var z float64
			for j, v := range x {
				e := math.Exp(float64(v) - m)
				z += e
				if !log {
					y[j] = float32(e)
				}
			}
			if log {
				lz := m + math.Log(z)
				for j, v := range x {
					y[j] = float32(float64(v) - lz)
				}
				continue
			}
			inv := 1 / z
			for j, v := range y {
				y[j] = float32(float64(v) * inv)
			}
		}
	})
}

// SoftmaxGrad writes dx for y = softmax(x) (dx = y*(dy - <dy, y>)) or
// y = log-softmax(x) (dx = dy - exp(y)*sum(dy)).
func (*Backend) SoftmaxGrad(dx, dy, y kernels.Buffer, rows, cols int, log bool) {
	d, g, ys := host(dx), host(dy), host(y)
	checkRows("SoftmaxGrad", rows, cols, d, g, ys)
	if cols == 0 {
		return
	}
	parallelFor(rows, cols*4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dr, gr, yr := d[r*cols:(r+1)*cols], g[r*cols:(r+1)*cols], ys[r*cols:(r+1)*cols]
			if log {
				s := sum(gr)
				for j := range dr {
					dr[j] = float32(float64(gr[j]) - math.Exp(float64(yr[j]))*s)
				}
				continue
			}
			var dot float64
			for j := range gr {
				dot += float64(gr[j]) * float64(yr[j])
			}
			for j := range dr {
				dr[j] = float32(float64(yr[j]) * (float64(gr[j]) - dot))
			}
		}
	})
}
