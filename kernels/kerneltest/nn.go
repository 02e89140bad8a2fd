package kerneltest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// softmaxRef is the float64 softmax (or log-softmax) of one row.
func softmaxRef(x []float64, log bool) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	var z float64
	for _, v := range x {
		z += math.Exp(v - m)
	}
	y := make([]float64, len(x))
	for i, v := range x {
		if log {
			y[i] = v - m - math.Log(z)
		} else {
			y[i] = math.Exp(v-m) / z
		}
	}
	return y
}

// softmaxGradRef is the float64 vector-Jacobian product of softmaxRef.
func softmaxGradRef(y, dy []float64, log bool) []float64 {
	dx := make([]float64, len(y))
	var s float64
	for i := range y {
		if log {
			s += dy[i]
		} else {
			s += dy[i] * y[i]
		}
	}
	for i := range y {
		if log {
			dx[i] = dy[i] - math.Exp(y[i])*s
		} else {
			dx[i] = y[i] * (dy[i] - s)
		}
	}
	return dx
}

// Softmax and log-softmax, forward and backward, per row. Rows may hold
// -Inf (masked) entries and large magnitudes (the row maximum must be
// subtracted). Tolerances:
//   - softmax: 4e-6*|y| + 1e-9;
//   - log-softmax: 2e-6*(1+|y|);
//   - softmax grad: 2e-6*(1+sqrt(cols)) * |y|*(|dy| + sum|dy*y|) + 1e-9;
//   - log-softmax grad: 2e-6*(1+sqrt(cols)) * (|dy| + e^y*sum|dy|) + 1e-9.
func testSoftmax(t *testing.T, be kernels.Backend) {
	shapes := []struct {
		rows, cols int
		scale      float64
		masked     bool
	}{
		{0, 5, 1, false}, {3, 0, 1, false}, {1, 1, 1, false}, {4, 7, 3, false}, {5, 9, 2, true},
		{3, 1000, 1000, false}, {200, 300, 5, true},
	}
	for _, log := range []bool{false, true} {
		name := "softmax"
		if log {
			name = "logsoftmax"
		}
		for _, s := range shapes {
			t.Run(fmt.Sprintf("%s/%dx%d", name, s.rows, s.cols), func(t *testing.T) {
				e := newEnv(t, be)
				defer catch(t)
				n := s.rows * s.cols
				x := e.uniform(n, -s.scale, s.scale)
				if s.masked {
					for r := 0; r < s.rows; r++ {
						for j := 1; j < s.cols; j += 3 {
							x[r*s.cols+j] = float32(math.Inf(-1))
						}
					}
				}
				dy := e.uniform(n, -1, 1)
				want, wantDx := make([]float64, n), make([]float64, n)
				for r := 0; r < s.rows; r++ {
					row := f64(x[r*s.cols : (r+1)*s.cols])
					y := softmaxRef(row, log)
					copy(want[r*s.cols:], y)
					copy(wantDx[r*s.cols:], softmaxGradRef(y, f64(dy[r*s.cols:(r+1)*s.cols]), log))
				}
				w := e.out(n, nil)
				be.Softmax(w.buf, e.in(x), s.rows, s.cols, log)
				got := w.get()
				if log {
					e.close(name, got, want, rel(want, 2e-6, 2e-6))
				} else {
					e.close(name, got, want, rel(want, 4e-6, 1e-9))
				}
				// The backward pass starts from the exact y, rounded, so the
				// check does not depend on the forward's error. A masked
				// log-softmax output is -Inf, whose gradient is dy.
				dw := e.out(n, nil)
				be.SoftmaxGrad(dw.buf, e.in(dy), e.in(f32(want)), s.rows, s.cols, log)
				k := 2e-6 * (1 + math.Sqrt(float64(s.cols)))
				rowSum := make([]float64, s.rows) // sum|dy| (log) or sum|dy*y|
				for i := range want {
					if log {
						rowSum[i/s.cols] += math.Abs(float64(dy[i]))
					} else {
						rowSum[i/s.cols] += math.Abs(float64(dy[i]) * want[i])
					}
				}
				e.close(name+" grad", dw.get(), wantDx, func(i int) float64 {
					sum := rowSum[i/s.cols]
					if log {
						return k*(math.Abs(float64(dy[i]))+math.Exp(want[i])*sum) + 1e-9
					}
					return k*math.Abs(want[i])*(math.Abs(float64(dy[i]))+sum) + 1e-9
				})
			})
		}
		t.Run(name+"/referenceGradient", func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			x, dy := f64(e.uniform(6, -2, 2)), f64(e.uniform(6, -1, 1))
			checkVJP(t, name, func(x []float64) []float64 { return softmaxRef(x, log) },
				x, dy, softmaxGradRef(softmaxRef(x, log), dy, log))
		})
	}
}

// normRef is the float64 LayerNorm (centre true) or RMSNorm of one row, with
// optional weight and bias; it returns y, xhat and rstd (and the mean).
func normRef(x, w, b []float64, eps float64, centre bool) (y, xhat []float64, mean, rstd float64) {
	n := float64(len(x))
	if centre {
		for _, v := range x {
			mean += v
		}
		mean /= n
	}
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	rstd = 1 / math.Sqrt(ss/n+eps)
	y, xhat = make([]float64, len(x)), make([]float64, len(x))
	for i, v := range x {
		xhat[i] = (v - mean) * rstd
		y[i] = xhat[i]
		if w != nil {
			y[i] *= w[i]
		}
		if b != nil {
			y[i] += b[i]
		}
	}
	return y, xhat, mean, rstd
}

// normGradRef is the float64 backward pass of normRef for one row: dx, and
// the row's contributions to dweight and dbias.
func normGradRef(x, w, dy []float64, eps float64, centre bool) (dx, dw, db []float64) {
	_, xhat, _, rstd := normRef(x, nil, nil, eps, centre)
	n := float64(len(x))
	g := make([]float64, len(x))
	var mg, mgx float64
	dw, db = make([]float64, len(x)), make([]float64, len(x))
	for i := range x {
		g[i] = dy[i]
		if w != nil {
			g[i] *= w[i]
		}
		mg += g[i] / n
		mgx += g[i] * xhat[i] / n
		dw[i] = dy[i] * xhat[i]
		db[i] = dy[i]
	}
	if !centre {
		mg = 0
	}
	dx = make([]float64, len(x))
	for i := range x {
		dx[i] = rstd * (g[i] - mg - xhat[i]*mgx)
	}
	return dx, dw, db
}

type normShape struct {
	rows, cols int
	offset     float64 // added to the data: a large mean with unit spread
	constRow   bool    // first row constant (zero variance)
}

var normShapes = []normShape{
	{0, 4, 0, false}, {1, 1, 0, false}, {3, 8, 0, true}, {5, 33, 1, false}, {2, 1000, 10, false}, {300, 128, 0, false},
}

// LayerNorm and RMSNorm share one check; centre selects LayerNorm.
//
// Tolerances, with s = 1 + sqrt(cols)/8 and r = 1 + sqrt(rows)/8:
//   - y: 1e-5*s*(1+|xhat|)*|w| + 2 eps*|b|;  mean: 4 eps*s*mean|x|;
//     rstd: 1e-5*s*rstd;
//   - dx: 1e-5*s*rstd*(|g| + mean|g| + |xhat|*mean|g*xhat|), g = dy*w;
//   - dweight: 1e-5*r*sum|dy*xhat| + 4 eps*sum|dy|*|mean|*rstd (the saved
//     mean is float32, which shifts xhat by up to 2 eps*|mean|*rstd; dx gets
//     the matching term);  dbias: 4 eps*(4+sqrt(rows))*sum|dy|.
func testNorm(t *testing.T, be kernels.Backend, centre bool) {
	for _, s := range normShapes {
		for _, wb := range [][2]bool{{true, true}, {false, false}, {true, false}, {false, true}} {
			if !centre && wb[1] {
				continue // RMSNorm has no bias
			}
			name := fmt.Sprintf("%dx%d/weight%v_bias%v", s.rows, s.cols, wb[0], wb[1])
			t.Run(name, func(t *testing.T) {
				defer catch(t)
				runNorm(newEnv(t, be), s, wb[0], wb[1], centre)
			})
		}
	}
	t.Run("referenceGradient", func(t *testing.T) {
		e := newEnv(t, be)
		defer catch(t)
		x, w, dy := f64(e.uniform(7, -2, 2)), f64(e.uniform(7, 0.5, 1.5)), f64(e.uniform(7, -1, 1))
		dx, _, _ := normGradRef(x, w, dy, 1e-5, centre)
		checkVJP(t, "norm", func(x []float64) []float64 {
			y, _, _, _ := normRef(x, w, nil, 1e-5, centre)
			return y
		}, x, dy, dx)
	})
}

func testLayerNorm(t *testing.T, be kernels.Backend) { testNorm(t, be, true) }
func testRMSNorm(t *testing.T, be kernels.Backend)   { testNorm(t, be, false) }

func runNorm(e *env, s normShape, hasW, hasB, centre bool) {
	const epsNorm = 1e-5
	n := s.rows * s.cols
	x := e.uniform(n, s.offset-1.5, s.offset+1.5)
	if s.constRow && s.rows > 0 {
		for j := 0; j < s.cols; j++ {
			x[j] = 0.75
		}
	}
	dy := e.uniform(n, -1, 1)
	var w, b []float32
	var w64, b64 []float64
	if hasW {
		w = e.uniform(s.cols, 0.5, 1.5)
		w64 = f64(w)
	}
	if hasB {
		b = e.uniform(s.cols, -1, 1)
		b64 = f64(b)
	}
	y, xh := make([]float64, n), make([]float64, n)
	mean, rstd := make([]float64, s.rows), make([]float64, s.rows)
	dx := make([]float64, n)
	dw, db := make([]float64, s.cols), make([]float64, s.cols)
	dwMag, dbMag := make([]float64, s.cols), make([]float64, s.cols)
	// The saved mean is a float32: rounding it shifts every xhat by up to
	// shift = 2 eps*|mean|*rstd, which dweight sums over the rows.
	dwShift := make([]float64, s.cols)
	dxTol := make([]float64, n)
	sc := 1 + math.Sqrt(float64(s.cols))/8
	for r := 0; r < s.rows; r++ {
		row := f64(x[r*s.cols : (r+1)*s.cols])
		yr, xhr, m, rs := normRef(row, w64, b64, epsNorm, centre)
		copy(y[r*s.cols:], yr)
		copy(xh[r*s.cols:], xhr)
		mean[r], rstd[r] = m, rs
		dyr := f64(dy[r*s.cols : (r+1)*s.cols])
		dxr, dwr, dbr := normGradRef(row, w64, dyr, epsNorm, centre)
		copy(dx[r*s.cols:], dxr)
		var mg, mgx float64
		for j := range dyr {
			g := dyr[j]
			if w64 != nil {
				g *= w64[j]
			}
			mg += math.Abs(g) / float64(s.cols)
			mgx += math.Abs(g*xhr[j]) / float64(s.cols)
			dw[j] += dwr[j]
			db[j] += dbr[j]
			dwMag[j] += math.Abs(dwr[j])
			dwShift[j] += math.Abs(dyr[j]) * 2 * eps * math.Abs(m) * rs
			dbMag[j] += math.Abs(dbr[j])
		}
		for j := range dyr {
			g := dyr[j]
			if w64 != nil {
				g *= w64[j]
			}
			shift := 2 * eps * math.Abs(m) * rs
			dxTol[r*s.cols+j] = 1e-5*sc*rs*(math.Abs(g)+mg+math.Abs(xhr[j])*mgx) + 2*rs*shift*(mgx+math.Abs(xhr[j])*mg)
		}
	}
	be := e.be
	up := func(v []float32) kernels.Buffer {
		if v == nil {
			return nil
		}
		return e.in(v)
	}
	out := e.out(n, nil)
	rs := e.out(s.rows, nil)
	xb := e.in(x)
	var mu *window
	if centre {
		mu = e.out(s.rows, nil)
		be.LayerNorm(out.buf, mu.buf, rs.buf, xb, up(w), up(b), s.rows, s.cols, epsNorm)
	} else {
		be.RMSNorm(out.buf, rs.buf, xb, up(w), s.rows, s.cols, epsNorm)
	}
	e.close("y", out.get(), y, func(i int) float64 {
		wv, bv := 1.0, 0.0
		if w64 != nil {
			wv = math.Abs(w64[i%s.cols])
		}
		if b64 != nil {
			bv = math.Abs(b64[i%s.cols])
		}
		return 1e-5*sc*(1+math.Abs(xh[i]))*wv + 2*eps*bv
	})
	gotRstd := rs.get()
	e.close("rstd", gotRstd, rstd, rel(rstd, 1e-5*sc, 0))
	var gotMean []float32
	if centre {
		gotMean = mu.get()
		e.close("mean", gotMean, mean, func(r int) float64 {
			var m float64
			for j := 0; j < s.cols; j++ {
				m += math.Abs(float64(x[r*s.cols+j]))
			}
			return 4 * eps * sc * m / float64(s.cols)
		})
	}

	// Backward, from the backend's own saved statistics, once with every
	// output and once with only dx.
	for _, all := range []bool{true, false} {
		gx := e.out(n, nil)
		var gw, gb *window
		var gwb, gbb kernels.Buffer
		if all {
			gw, gb = e.out(s.cols, nil), e.out(s.cols, nil)
			gwb, gbb = gw.buf, gb.buf
		}
		if centre {
			be.LayerNormGrad(gx.buf, gwb, gbb, e.in(dy), xb, e.in(gotMean), e.in(gotRstd), up(w), s.rows, s.cols)
		} else {
			be.RMSNormGrad(gx.buf, gwb, e.in(dy), xb, e.in(gotRstd), up(w), s.rows, s.cols)
		}
		e.close("dx", gx.get(), dx, func(i int) float64 { return dxTol[i] })
		if !all {
			continue
		}
		sr := 1 + math.Sqrt(float64(s.rows))/8
		e.close("dweight", gw.get(), dw, func(j int) float64 { return 1e-5*sr*dwMag[j] + 2*dwShift[j] })
		if centre {
			e.close("dbias", gb.get(), db, func(j int) float64 { return 4 * eps * (4 + math.Sqrt(float64(s.rows))) * dbMag[j] })
		}
	}
}

// Gather: exact, with repeated ids.
func testGather(t *testing.T, be kernels.Backend) {
	for _, s := range []struct{ vocab, dim, count int }{{5, 3, 0}, {1, 1, 1}, {7, 5, 10}, {50, 64, 3000}, {4, 0, 6}} {
		t.Run(fmt.Sprintf("vocab%d_dim%d_ids%d", s.vocab, s.dim, s.count), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			table := e.uniform(s.vocab*s.dim, -1, 1)
			ids := make([]int32, s.count)
			want := make([]float32, 0, s.count*s.dim)
			for i := range ids {
				ids[i] = int32(e.rng.IntN(s.vocab))
				want = append(want, table[int(ids[i])*s.dim:int(ids[i]+1)*s.dim]...)
			}
			w := e.out(s.count*s.dim, nil)
			be.Gather(w.buf, e.in(table), ids, s.dim)
			e.exact("Gather", w.get(), want)
		})
	}
}

// ScatterAdd: many repeated ids. Tolerance per element
// (k+1) * 2 eps * (|t0| + sum of |contributions|), k contributions.
func testScatterAdd(t *testing.T, be kernels.Backend) {
	for _, s := range []struct{ vocab, dim, count int }{{5, 3, 0}, {1, 1, 1}, {4, 5, 20}, {50, 32, 5000}, {3, 200, 400}, {4, 0, 6}} {
		t.Run(fmt.Sprintf("vocab%d_dim%d_ids%d", s.vocab, s.dim, s.count), func(t *testing.T) {
			e := newEnv(t, be)
			defer catch(t)
			t0 := e.uniform(s.vocab*s.dim, -1, 1)
			src := e.uniform(s.count*s.dim, -1, 1)
			ids := make([]int32, s.count)
			want, mag := f64(t0), make([]float64, len(t0))
			hits := make([]int, s.vocab)
			for i := range mag {
				mag[i] = math.Abs(want[i])
			}
			for i := range ids {
				id := e.rng.IntN(s.vocab)
				ids[i] = int32(id)
				hits[id]++
				for j := 0; j < s.dim; j++ {
					v := float64(src[i*s.dim+j])
					want[id*s.dim+j] += v
					mag[id*s.dim+j] += math.Abs(v)
				}
			}
			w := e.out(len(t0), t0)
			be.ScatterAdd(w.buf, e.in(src), ids, s.dim)
			e.close("ScatterAdd", w.get(), want, func(i int) float64 {
				return float64(hits[i/s.dim]+1) * 2 * eps * mag[i]
			})
		})
	}
}
