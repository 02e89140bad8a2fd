package kerneltest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// im2colRef unfolds one image in float64-free exact arithmetic.
func im2colRef(x []float32, g kernels.ConvGeom) []float32 {
	oh, ow := g.OutH(), g.OutW()
	out := make([]float32, g.C*g.KH*g.KW*oh*ow)
	for c := 0; c < g.C; c++ {
		for kh := 0; kh < g.KH; kh++ {
			for kw := 0; kw < g.KW; kw++ {
				row := (c*g.KH+kh)*g.KW + kw
				for y := 0; y < oh; y++ {
					for xo := 0; xo < ow; xo++ {
						ih := y*g.StrideH - g.PadH + kh*g.DilH
						iw := xo*g.StrideW - g.PadW + kw*g.DilW
						if ih >= 0 && ih < g.H && iw >= 0 && iw < g.W {
							out[row*oh*ow+y*ow+xo] = x[(c*g.H+ih)*g.W+iw]
						}
					}
				}
			}
		}
	}
	return out
}

func geom(c, h, w, kh, kw, sh, sw, ph, pw, dh, dw int) kernels.ConvGeom {
	return kernels.ConvGeom{C: c, H: h, W: w, KH: kh, KW: kw, StrideH: sh, StrideW: sw,
		PadH: ph, PadW: pw, DilH: dh, DilW: dw}
}

// Im2Col is exact. Col2Im accumulates into a random image; per element
// |err| <= (k+1) * 2 eps * (|x0| + sum of |contributions|), k contributions.
// The adjoint identity <Im2Col(x), y> == <x, Col2Im(y)> holds to
// 1e-5 * sum |x_i * y_j| over the pairs involved.
func testIm2Col(t *testing.T, be kernels.Backend) {
	geoms := []kernels.ConvGeom{
		geom(1, 4, 5, 3, 3, 1, 1, 0, 0, 1, 1),
		geom(2, 5, 6, 3, 2, 2, 2, 1, 1, 1, 1),
		geom(3, 7, 7, 3, 3, 2, 2, 2, 2, 2, 2),
		geom(2, 1, 10, 1, 3, 1, 1, 0, 1, 1, 1), // 1-d
		geom(2, 1, 17, 1, 4, 1, 3, 0, 2, 1, 2), // 1-d, stride 3, dilation 2
		geom(4, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1),  // 1x1 kernel
		geom(1, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1),  // kernel larger than the image
		geom(2, 6, 9, 2, 3, 2, 1, 0, 1, 1, 3),  // mixed strides and dilations
		geom(16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1),
	}
	for _, g := range geoms {
		name := fmt.Sprintf("c%d_%dx%d_k%dx%d_s%dx%d_p%dx%d_d%dx%d", g.C, g.H, g.W, g.KH, g.KW,
			g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilH, g.DilW)
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			nx := g.C * g.H * g.W
			rows, cols := g.C*g.KH*g.KW, g.OutH()*g.OutW()
			x := e.uniform(nx, -1, 1)
			w := e.out(rows*cols, nil)
			be.Im2Col(w.buf, e.in(x), g)
			cols2 := w.get()
			e.exact("Im2Col", cols2, im2colRef(x, g))

			// Col2Im: accumulate y into x0, against a reference that
			// scatters through the same index map.
			y := e.uniform(rows*cols, -1, 1)
			x0 := e.uniform(nx, -1, 1)
			want, mag := f64(x0), make([]float64, nx)
			hits := make([]int, nx)
			for i := range mag {
				mag[i] = math.Abs(want[i])
			}
			idx := make([]float32, nx)
			for i := range idx {
				idx[i] = float32(i)
			}
			where := im2colRef(idx, g) // the source pixel of each column entry
			// im2colRef writes 0 for padding; mark padding separately.
			ones := make([]float32, nx)
			for i := range ones {
				ones[i] = 1
			}
			inside := im2colRef(ones, g)
			for k := range where {
				if inside[k] == 0 {
					continue
				}
				p := int(where[k])
				want[p] += float64(y[k])
				mag[p] += math.Abs(float64(y[k]))
				hits[p]++
			}
			wi := e.out(nx, x0)
			be.Col2Im(wi.buf, e.in(y), g)
			e.close("Col2Im", wi.get(), want, func(i int) float64 { return float64(hits[i]+1) * 2 * eps * mag[i] })

			// Adjoint identity, Col2Im into zeros.
			z := e.out(nx, make([]float32, nx))
			be.Col2Im(z.buf, e.in(y), g)
			back := z.get()
			var lhs, rhs, scale float64
			for k := range cols2 {
				lhs += float64(cols2[k]) * float64(y[k])
				scale += math.Abs(float64(cols2[k]) * float64(y[k]))
			}
			for i := range x {
				rhs += float64(x[i]) * float64(back[i])
			}
			if math.Abs(lhs-rhs) > 1e-5*scale+1e-30 {
				t.Errorf("<Im2Col(x), y> = %v but <x, Col2Im(y)> = %v", lhs, rhs)
			}
		})
	}
}

// ropeRef applies the rotate-half rotation to one row (forward), or its
// transpose (inverse).
func ropeRef(x, c, s []float64, inverse bool) []float64 {
	h := len(x) / 2
	y := make([]float64, len(x))
	for j := 0; j < h; j++ {
		a, b := x[j], x[j+h]
		if inverse {
			y[j] = a*c[j] + b*s[j+h]
			y[j+h] = b*c[j+h] - a*s[j]
		} else {
			y[j] = a*c[j] - b*s[j]
			y[j+h] = b*c[j+h] + a*s[j+h]
		}
	}
	return y
}

// hfTables builds the usual rotary tables: angle p*theta_j repeated over
// both halves, theta_j = 10000^(-2j/dim).
func hfTables(seq, dim int) (cos, sin []float32) {
	h := dim / 2
	cos, sin = make([]float32, seq*dim), make([]float32, seq*dim)
	for p := 0; p < seq; p++ {
		for j := 0; j < h; j++ {
			a := float64(p) * math.Pow(10000, -2*float64(j)/float64(dim))
			for _, k := range []int{j, j + h} {
				cos[p*dim+k] = float32(math.Cos(a))
				sin[p*dim+k] = float32(math.Sin(a))
			}
		}
	}
	return cos, sin
}

// Rope forward and inverse on arbitrary tables, against ropeRef: the
// inverse is the transpose of the forward map (so it is the backward pass
// for any tables), checked also through <rope(x), y> == <x, rope^-1(y)>.
// With the usual tables the inverse undoes the forward. Tolerance per
// element 4 eps * (|x_j c_j| + |x_k s_k|); round trip 1e-6 * max|x|.
func testRope(t *testing.T, be kernels.Backend) {
	for _, s := range []struct{ batch, seq, dim int }{{0, 3, 4}, {1, 1, 2}, {2, 5, 8}, {3, 7, 64}, {32, 16, 128}} {
		t.Run(fmt.Sprintf("b%d_s%d_d%d", s.batch, s.seq, s.dim), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			n := s.batch * s.seq * s.dim
			x := e.uniform(n, -2, 2)
			c, sn := e.uniform(s.seq*s.dim, -1, 1), e.uniform(s.seq*s.dim, -1, 1)
			for _, inverse := range []bool{false, true} {
				want, tol := make([]float64, n), make([]float64, n)
				for r := 0; r < s.batch*s.seq; r++ {
					p := r % s.seq
					row := f64(x[r*s.dim : (r+1)*s.dim])
					cr, sr := f64(c[p*s.dim:(p+1)*s.dim]), f64(sn[p*s.dim:(p+1)*s.dim])
					copy(want[r*s.dim:], ropeRef(row, cr, sr, inverse))
					mag := ropeRef(absAll(row), absAll(cr), absAll(sr), false)
					magInv := ropeRef(absAll(row), absAll(cr), absAll(sr), true)
					for j := range mag {
						tol[r*s.dim+j] = 4 * eps * math.Max(math.Abs(mag[j]), math.Abs(magInv[j])) * 2
					}
				}
				w := e.out(n, nil)
				be.Rope(w.buf, e.in(x), e.in(c), e.in(sn), s.batch, s.seq, s.dim, inverse)
				e.close(fmt.Sprintf("Rope inverse=%v", inverse), w.get(), want, func(i int) float64 { return tol[i] })
			}
			// Adjoint identity.
			y := e.uniform(n, -2, 2)
			fw, bw := e.out(n, nil), e.out(n, nil)
			be.Rope(fw.buf, e.in(x), e.in(c), e.in(sn), s.batch, s.seq, s.dim, false)
			be.Rope(bw.buf, e.in(y), e.in(c), e.in(sn), s.batch, s.seq, s.dim, true)
			fx, by := fw.get(), bw.get()
			var lhs, rhs, scale float64
			for i := range x {
				lhs += float64(fx[i]) * float64(y[i])
				rhs += float64(x[i]) * float64(by[i])
				scale += math.Abs(float64(fx[i]) * float64(y[i]))
			}
			if math.Abs(lhs-rhs) > 1e-5*scale+1e-30 {
				t.Errorf("<rope(x), y> = %v but <x, rope^-1(y)> = %v", lhs, rhs)
			}
			// Round trip with the usual tables.
			hc, hs := hfTables(s.seq, s.dim)
			rt := e.out(n, nil)
			tmp := be.Alloc(n)
			be.Rope(tmp, e.in(x), e.in(hc), e.in(hs), s.batch, s.seq, s.dim, false)
			be.Rope(rt.buf, tmp, e.in(hc), e.in(hs), s.batch, s.seq, s.dim, true)
			want := f64(x)
			e.close("Rope round trip", rt.get(), want, func(int) float64 { return 1e-6 * 2 })
		})
	}
}

func absAll(x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = math.Abs(v)
	}
	return y
}
