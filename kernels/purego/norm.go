package purego

import (
	"math"

	"github.com/gopeft/gopeft/kernels"
)

// LayerNorm normalises each row of src to zero mean and unit (biased)
// variance, then applies weight and bias when they are given. Statistics are
// computed in float64 with two passes; mean and rstd may be nil.
func (*Backend) LayerNorm(dst, mean, rstd, src, weight, bias kernels.Buffer, rows, cols int, eps float32) {
	d, mu, rs, s, w, b := host(dst), host(mean), host(rstd), host(src), host(weight), host(bias)
	checkRows("LayerNorm", rows, cols, d, s)
	if mu != nil {
		need("LayerNorm mean", mu, rows)
	}
	if rs != nil {
		need("LayerNorm rstd", rs, rows)
	}
	if w != nil {
		need("LayerNorm weight", w, cols)
	}
	if b != nil {
		need("LayerNorm bias", b, cols)
	}
	parallelFor(rows, cols*4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x, y := s[r*cols:(r+1)*cols], d[r*cols:(r+1)*cols]
			m := math.NaN()
			var v float64
			if cols > 0 {
				m = sum(x) / float64(cols)
				for _, xv := range x {
					dv := float64(xv) - m
					v += dv * dv
				}
				v /= float64(cols)
			}
			inv := 1 / math.Sqrt(v+float64(eps))
			if mu != nil {
				mu[r] = float32(m)
			}
			if rs != nil {
				rs[r] = float32(inv)
			}
			for j, xv := range x {
				o := (float64(xv) - m) * inv
				if w != nil {
					o *= float64(w[j])
				}
				if b != nil {
					o += float64(b[j])
				}
				y[j] = float32(o)
			}
		}
	})
}

// LayerNormGrad back-propagates dy through LayerNorm, using the saved mean
// and rstd. dx, dweight and dbias are each written when not nil.
func (*Backend) LayerNormGrad(dx, dweight, dbias, dy, src, mean, rstd, weight kernels.Buffer, rows, cols int) {
	d, dw, db, g, s, mu, rs, w := host(dx), host(dweight), host(dbias), host(dy), host(src), host(mean), host(rstd), host(weight)
	checkRows("LayerNormGrad", rows, cols, g, s)
	need("LayerNormGrad mean", mu, rows)
	need("LayerNormGrad rstd", rs, rows)
	for _, v := range []kernels.Host{w, dw, db} {
		if v != nil {
			need("LayerNormGrad weight/dweight/dbias", v, cols)
		}
	}
	if d != nil {
		need("LayerNormGrad dx", d, rows*cols)
	}
	normGrad(d, dw, db, g, s, mu, rs, w, rows, cols)
}

// RMSNorm scales each row of src by 1/sqrt(mean(x^2)+eps) and by weight when
// it is given; rstd (may be nil) receives the scale.
func (*Backend) RMSNorm(dst, rstd, src, weight kernels.Buffer, rows, cols int, eps float32) {
	d, rs, s, w := host(dst), host(rstd), host(src), host(weight)
	checkRows("RMSNorm", rows, cols, d, s)
	if rs != nil {
		need("RMSNorm rstd", rs, rows)
	}
	if w != nil {
		need("RMSNorm weight", w, cols)
	}
	parallelFor(rows, cols*3, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x, y := s[r*cols:(r+1)*cols], d[r*cols:(r+1)*cols]
			ms := math.NaN()
			if cols > 0 {
				ms = sumSquares(x) / float64(cols)
			}
			inv := 1 / math.Sqrt(ms+float64(eps))
			if rs != nil {
				rs[r] = float32(inv)
			}
			for j, xv := range x {
				o := float64(xv) * inv
				if w != nil {
					o *= float64(w[j])
				}
				y[j] = float32(o)
			}
		}
	})
}

// RMSNormGrad back-propagates dy through RMSNorm, using the saved rstd.
func (*Backend) RMSNormGrad(dx, dweight, dy, src, rstd, weight kernels.Buffer, rows, cols int) {
	d, dw, g, s, rs, w := host(dx), host(dweight), host(dy), host(src), host(rstd), host(weight)
	checkRows("RMSNormGrad", rows, cols, g, s)
	need("RMSNormGrad rstd", rs, rows)
	for _, v := range []kernels.Host{w, dw} {
		if v != nil {
			need("RMSNormGrad weight/dweight", v, cols)
		}
	}
	if d != nil {
		need("RMSNormGrad dx", d, rows*cols)
	}
	normGrad(d, dw, nil, g, s, nil, rs, w, rows, cols)
}

// normGrad is the backward pass shared by LayerNorm (mu given) and RMSNorm
// (mu nil: no centring). With xhat = (x-mu)*rstd and g = dy*w:
//
//	dx = rstd * (g - mean(g) - xhat*mean(g*xhat))   (LayerNorm)
//	dx = rstd * (g - xhat*mean(g*xhat))             (RMSNorm)
//	dweight = sum over rows of dy*xhat, dbias = sum over rows of dy.
//
// Rows are split across goroutines; each piece sums its own float64 partial
// dweight/dbias, and the partials are added at the end.
func normGrad(d, dw, db, g, s, mu, rs, w kernels.Host, rows, cols int) {
	k := chunks(rows, cols*6)
	var pw, pb [][]float64
	if dw != nil {
		pw = make([][]float64, k)
	}
	if db != nil {
		pb = make([][]float64, k)
	}
	split(rows, k, func(p, lo, hi int) {
		var aw, ab []float64
		if dw != nil {
			aw = make([]float64, cols)
			pw[p] = aw
		}
		if db != nil {
			ab = make([]float64, cols)
			pb[p] = ab
		}
		for r := lo; r < hi; r++ {
			x, gy := s[r*cols:(r+1)*cols], g[r*cols:(r+1)*cols]
			var m float64
			if mu != nil {
				m = float64(mu[r])
			}
			inv := float64(rs[r])
			var sg, sgx float64
			for j, xv := range x {
				xh := (float64(xv) - m) * inv
				gj := float64(gy[j])
				if aw != nil {
					aw[j] += gj * xh
				}
				if ab != nil {
					ab[j] += gj
				}
				if w != nil {
					gj *= float64(w[j])
				}
				sg += gj
				sgx += gj * xh
			}
			if d == nil {
				continue
			}
			n := float64(cols)
			mg, mgx := sg/n, sgx/n
			if mu == nil {
				mg = 0
			}
			dr := d[r*cols : (r+1)*cols]
			for j, xv := range x {
				xh := (float64(xv) - m) * inv
				gj := float64(gy[j])
				if w != nil {
					gj *= float64(w[j])
				}
				dr[j] = float32(inv * (gj - mg - xh*mgx))
			}
		}
	})
	for _, pair := range []struct {
		dst   kernels.Host
		parts [][]float64
	}{{dw, pw}, {db, pb}} {
		if pair.dst == nil {
			continue
		}
		for j := 0; j < cols; j++ {
			var t float64
			for _, part := range pair.parts {
				if part != nil {
					t += part[j]
				}
			}
			pair.dst[j] = float32(t)
		}
	}
}
