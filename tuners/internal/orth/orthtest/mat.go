package orthtest

// Dense float64 helpers for the references. Matrices are row-major.

// Eye returns the n x n identity.
func Eye(n int) []float64 {
	e := make([]float64, n*n)
	for i := 0; i < n; i++ {
		e[i*n+i] = 1
	}
	return e
}

// Mul returns a [m, k] times b [k, n].
func Mul(a, b []float64, m, k, n int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			v := a[i*k+p]
			for j := 0; j < n; j++ {
				out[i*n+j] += v * b[p*n+j]
			}
		}
	}
	return out
}

// T returns the transpose of a [m, n].
func T(a []float64, m, n int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			out[j*m+i] = a[i*n+j]
		}
	}
	return out
}

// Inv returns the inverse of the n x n matrix a (Gauss-Jordan with partial
// pivoting; a must be invertible).
func Inv(a []float64, n int) []float64 {
	m := append([]float64(nil), a...)
	inv := Eye(n)
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if abs(m[r*n+c]) > abs(m[p*n+c]) {
				p = r
			}
		}
		for j := 0; j < n; j++ {
			m[c*n+j], m[p*n+j] = m[p*n+j], m[c*n+j]
			inv[c*n+j], inv[p*n+j] = inv[p*n+j], inv[c*n+j]
		}
		f := 1 / m[c*n+c]
		for j := 0; j < n; j++ {
			m[c*n+j] *= f
			inv[c*n+j] *= f
		}
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			g := m[r*n+c]
			for j := 0; j < n; j++ {
				m[r*n+j] -= g * m[c*n+j]
				inv[r*n+j] -= g * inv[c*n+j]
			}
		}
	}
	return inv
}

// BlockDiag returns the dense block-diagonal matrix of the n blocks [n, b, b]
// (one block repeated reps times when n is 1).
func BlockDiag(blocks []float64, n, b, reps int) []float64 {
	dim := b * max(n, reps)
	out := make([]float64, dim*dim)
	for k := 0; k < dim/b; k++ {
		src := blocks[(k%n)*b*b:]
		for i := 0; i < b; i++ {
			for j := 0; j < b; j++ {
				out[(k*b+i)*dim+k*b+j] = src[i*b+j]
			}
		}
	}
	return out
}

// Linear returns x [rows, in] times wᵀ (w [out, in]) plus bias (may be nil).
func Linear(x, w, bias []float64, rows, in, out int) []float64 {
	y := Mul(x, T(w, out, in), rows, in, out)
	if bias != nil {
		for i := 0; i < rows; i++ {
			for j := 0; j < out; j++ {
				y[i*out+j] += bias[j]
			}
		}
	}
	return y
}

// Conv2d is a direct cross-correlation of x [N, C, H, W] with w [O, C, KH,
// KW] (stride, padding, one group) plus bias.
func Conv2d(x []float64, n, c, h, wd int, w []float64, o, kh, kw int, stride, pad [2]int, bias []float64) []float64 {
	oh := (h+2*pad[0]-kh)/stride[0] + 1
	ow := (wd+2*pad[1]-kw)/stride[1] + 1
	out := make([]float64, n*o*oh*ow)
	for b := 0; b < n; b++ {
		for f := 0; f < o; f++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					s := 0.0
					if bias != nil {
						s = bias[f]
					}
					for ch := 0; ch < c; ch++ {
						for i := 0; i < kh; i++ {
							for j := 0; j < kw; j++ {
								yy, xc := y*stride[0]-pad[0]+i, xx*stride[1]-pad[1]+j
								if yy < 0 || yy >= h || xc < 0 || xc >= wd {
									continue
								}
								s += x[((b*c+ch)*h+yy)*wd+xc] * w[((f*c+ch)*kh+i)*kw+j]
							}
						}
					}
					out[((b*o+f)*oh+y)*ow+xx] = s
				}
			}
		}
	}
	return out
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
