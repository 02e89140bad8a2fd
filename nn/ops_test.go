package nn

import (
	"math"
	"slices"
	"testing"
)

// ref64 is a float64 reference tensor for checking forward results.
type ref64 struct {
	shape []int
	v     []float64
}

func refOf(t *Tensor) ref64 { return ref64{t.Shape(), f64(t.Data())} }

func (r ref64) at(idx ...int) float64 {
	off := 0
	for i, x := range idx {
		off = off*r.shape[i] + x
	}
	return r.v[off]
}

// forEachIndex calls fn with every multi-index of shape in row-major order.
func forEachIndex(shape []int, fn func(idx []int)) {
	n := numel(shape)
	idx := make([]int, len(shape))
	for k := 0; k < n; k++ {
		rem := k
		for i := len(shape) - 1; i >= 0; i-- {
			idx[i] = rem % shape[i]
			rem /= shape[i]
		}
		fn(idx)
	}
}

// bcastAt reads r at the broadcast position of out index idx.
func (r ref64) bcastAt(idx []int) float64 {
	off := len(idx) - len(r.shape)
	j := make([]int, len(r.shape))
	for i := range j {
		if r.shape[i] != 1 {
			j[i] = idx[i+off]
		}
	}
	return r.at(j...)
}

func TestBinaryBroadcastForward(t *testing.T) {
	r := newTestRand(2)
	ops := []struct {
		name string
		fn   func(a, b *Tensor) *Tensor
		ref  func(x, y float64) float64
	}{
		{"Add", Add, func(x, y float64) float64 { return x + y }},
		{"Sub", Sub, func(x, y float64) float64 { return x - y }},
		{"Mul", Mul, func(x, y float64) float64 { return x * y }},
		{"Div", Div, func(x, y float64) float64 { return x / y }},
		{"Maximum", Maximum, math.Max},
		{"Minimum", Minimum, math.Min},
	}
	shapes := [][2][]int{{{2, 3}, {2, 3}}, {{4, 1, 3}, {2, 1}}, {{3}, {2, 2, 3}}, {{2, 3}, {}}, {{1, 5}, {4, 1}}}
	for _, op := range ops {
		for _, sh := range shapes {
			a, b := r.t(sh[0]...), r.pos(sh[1]...)
			got := op.fn(a, b)
			want := broadcastShapes("test", sh[0], sh[1])
			if !slices.Equal(got.Shape(), want) {
				t.Fatalf("%s%v%v: shape %v, want %v", op.name, sh[0], sh[1], got.Shape(), want)
			}
			ra, rb := refOf(a), refOf(b)
			var exp []float64
			forEachIndex(want, func(idx []int) { exp = append(exp, op.ref(ra.bcastAt(idx), rb.bcastAt(idx))) })
			closeTo(t, op.name+fmtShapes(sh[0], sh[1]), got.Data(), exp, 1e-6)
		}
	}
}

func refMatMul(a, b ref64, m, k, n int, ta, tb bool) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				x := a.v[i*k+p]
				if ta {
					x = a.v[p*m+i]
				}
				y := b.v[p*n+j]
				if tb {
					y = b.v[j*k+p]
				}
				s += x * y
			}
			out[i*n+j] = s
		}
	}
	return out
}

func TestMatMulForward(t *testing.T) {
	r := newTestRand(3)
	// Batched with broadcast: [2,1,3,4] x [3,4,5] -> [2,3,3,5].
	a, b := r.t(2, 1, 3, 4), r.t(3, 4, 5)
	got := MatMul(a, b)
	if !slices.Equal(got.Shape(), []int{2, 3, 3, 5}) {
		t.Fatalf("shape %v", got.Shape())
	}
	ra, rb := refOf(a), refOf(b)
	var want []float64
	for i := range 2 {
		for j := range 3 {
			am := ref64{[]int{3, 4}, ra.v[i*12 : i*12+12]}
			bm := ref64{[]int{4, 5}, rb.v[j*20 : j*20+20]}
			want = append(want, refMatMul(am, bm, 3, 4, 5, false, false)...)
		}
	}
	closeTo(t, "MatMul/broadcast", got.Data(), want, 1e-5)

	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			as, bs := []int{6, 7}, []int{7, 5}
			if ta {
				as = []int{7, 6}
			}
			if tb {
				bs = []int{5, 7}
			}
			a, b := r.t(as...), r.t(bs...)
			closeTo(t, "MatMulT"+fmtBools(ta, tb), MatMulT(a, b, ta, tb).Data(), refMatMul(refOf(a), refOf(b), 6, 7, 5, ta, tb), 1e-5)
		}
	}
}

func TestLinearForward(t *testing.T) {
	r := newTestRand(4)
	x, w, b := r.t(2, 3, 4), r.t(5, 4), r.t(5)
	got := LinearOp(x, w, b)
	if !slices.Equal(got.Shape(), []int{2, 3, 5}) {
		t.Fatalf("shape %v", got.Shape())
	}
	rx, rw, rb := refOf(x), refOf(w), refOf(b)
	want := refMatMul(ref64{[]int{6, 4}, rx.v}, rw, 6, 4, 5, false, true)
	for i := range want {
		want[i] += rb.v[i%5]
	}
	closeTo(t, "Linear", got.Data(), want, 1e-5)
	wio := T(w)
	closeTo(t, "LinearInOut", LinearInOut(x, wio, b).Data(), want, 1e-5)
	want2 := refMatMul(ref64{[]int{6, 4}, rx.v}, rw, 6, 4, 5, false, true)
	closeTo(t, "Linear/nobias", LinearOp(x, w, nil).Data(), want2, 1e-5)
}

func TestShapeOpsForward(t *testing.T) {
	r := newTestRand(5)
	a := r.t(2, 3, 4)
	ra := refOf(a)
	check := func(name string, got *Tensor, shape []int, at func(idx []int) float64) {
		t.Helper()
		if !slices.Equal(got.Shape(), shape) {
			t.Fatalf("%s: shape %v, want %v", name, got.Shape(), shape)
		}
		var want []float64
		forEachIndex(shape, func(idx []int) { want = append(want, at(idx)) })
		closeTo(t, name, got.Data(), want, 0)
	}
	check("Permute", Permute(a, 2, 0, 1), []int{4, 2, 3}, func(i []int) float64 { return ra.at(i[1], i[2], i[0]) })
	check("Transpose", Transpose(a, -1, 1), []int{2, 4, 3}, func(i []int) float64 { return ra.at(i[0], i[2], i[1]) })
	check("Slice/0", Slice(a, 0, 1, 2), []int{1, 3, 4}, func(i []int) float64 { return ra.at(i[0]+1, i[1], i[2]) })
	check("Slice/1", Slice(a, 1, 1, 3), []int{2, 2, 4}, func(i []int) float64 { return ra.at(i[0], i[1]+1, i[2]) })
	check("Slice/2", Slice(a, 2, 3, 4), []int{2, 3, 1}, func(i []int) float64 { return ra.at(i[0], i[1], i[2]+3) })
	b := r.t(2, 1, 4)
	rb := refOf(b)
	check("Concat", Concat(1, b, a, b), []int{2, 5, 4}, func(i []int) float64 {
		switch {
		case i[1] == 0:
			return rb.at(i[0], 0, i[2])
		case i[1] < 4:
			return ra.at(i[0], i[1]-1, i[2])
		}
		return rb.at(i[0], 0, i[2])
	})
	big, small := r.t(12, 3), r.t(12, 1)
	rbig, rsmall := refOf(big), refOf(small)
	check("Concat/many", Concat(-1, small, big), []int{12, 4}, func(i []int) float64 {
		if i[1] == 0 {
			return rsmall.at(i[0], 0)
		}
		return rbig.at(i[0], i[1]-1)
	})
	ids := []int32{3, 0, 3}
	check("Index", Index(a, 2, ids), []int{2, 3, 3}, func(i []int) float64 { return ra.at(i[0], i[1], int(ids[i[2]])) })
	check("Expand", Expand(b, 3, -1, 2, 4), []int{3, 2, 2, 4}, func(i []int) float64 { return rb.at(i[1], 0, i[3]) })
	check("Reshape", a.Reshape(-1, 6), []int{4, 6}, func(i []int) float64 { return ra.v[i[0]*6+i[1]] })
}

func TestReductionsForward(t *testing.T) {
	r := newTestRand(6)
	a := r.t(3, 4, 5)
	ra := refOf(a)
	for axis := range 3 {
		outShape := reducedShape(a.shape, axis, false)
		var sum, mean, mx, mn, norm []float64
		forEachIndex(outShape, func(idx []int) {
			s, m, lo, sq := 0.0, math.Inf(-1), math.Inf(1), 0.0
			for k := range a.shape[axis] {
				full := slices.Insert(slices.Clone(idx), axis, k)
				v := ra.at(full...)
				s += v
				sq += v * v
				m = math.Max(m, v)
				lo = math.Min(lo, v)
			}
			sum = append(sum, s)
			mean = append(mean, s/float64(a.shape[axis]))
			mx = append(mx, m)
			mn = append(mn, lo)
			norm = append(norm, math.Sqrt(sq))
		})
		closeTo(t, "Sum", Sum(a, axis, false).Data(), sum, 1e-6)
		closeTo(t, "Mean", Mean(a, axis, true).Data(), mean, 1e-6)
		closeTo(t, "Max", Max(a, axis, false).Data(), mx, 0)
		closeTo(t, "Min", Min(a, axis, false).Data(), mn, 0)
		closeTo(t, "Norm", Norm(a, axis, false).Data(), norm, 1e-6)
		if got := Sum(a, axis, true).Shape(); got[axis] != 1 || len(got) != 3 {
			t.Errorf("Sum keepDim shape %v", got)
		}
	}
	var total float64
	for _, v := range ra.v {
		total += v
	}
	if got := SumAll(a); got.Rank() != 0 || math.Abs(float64(got.Item())-total) > 1e-5 {
		t.Errorf("SumAll = %v, want %g", got, total)
	}
	if got := MeanAll(a).Item(); math.Abs(float64(got)-total/60) > 1e-6 {
		t.Errorf("MeanAll = %g, want %g", got, total/60)
	}
}

func TestSoftmaxForward(t *testing.T) {
	r := newTestRand(7)
	a := r.t(2, 3, 4)
	ra := refOf(a)
	for axis := range 3 {
		var sm, lsm []float64
		forEachIndex(a.shape, func(idx []int) {
			mx, z := math.Inf(-1), 0.0
			for k := range a.shape[axis] {
				j := slices.Clone(idx)
				j[axis] = k
				mx = math.Max(mx, ra.at(j...))
			}
			for k := range a.shape[axis] {
				j := slices.Clone(idx)
				j[axis] = k
				z += math.Exp(ra.at(j...) - mx)
			}
			v := ra.at(idx...)
			sm = append(sm, math.Exp(v-mx)/z)
			lsm = append(lsm, v-mx-math.Log(z))
		})
		closeTo(t, "Softmax", Softmax(a, axis).Data(), sm, 1e-6)
		closeTo(t, "LogSoftmax", LogSoftmax(a, axis).Data(), lsm, 1e-6)
	}
}

func TestNormsForward(t *testing.T) {
	r := newTestRand(8)
	x, w, b := r.t(3, 6), r.t(6), r.t(6)
	rx, rw, rb := refOf(x), refOf(w), refOf(b)
	var ln, rms []float64
	for i := range 3 {
		row := rx.v[i*6 : i*6+6]
		var mean, ss float64
		for _, v := range row {
			mean += v
			ss += v * v
		}
		mean /= 6
		var vr float64
		for _, v := range row {
			vr += (v - mean) * (v - mean)
		}
		vr /= 6
		for j, v := range row {
			ln = append(ln, (v-mean)/math.Sqrt(vr+1e-5)*rw.v[j]+rb.v[j])
			rms = append(rms, v/math.Sqrt(ss/6+1e-6)*rw.v[j])
		}
	}
	closeTo(t, "LayerNorm", LayerNormOp(x, w, b, 1e-5).Data(), ln, 1e-5)
	closeTo(t, "RMSNorm", RMSNormOp(x, w, 1e-6).Data(), rms, 1e-5)
}

func TestEmbeddingAndCrossEntropy(t *testing.T) {
	r := newTestRand(9)
	table := r.t(5, 3)
	rt := refOf(table)
	ids := []int32{4, 1, 1, 0}
	got := EmbeddingOp(table, ids, 2, 2)
	if !slices.Equal(got.Shape(), []int{2, 2, 3}) {
		t.Fatalf("shape %v", got.Shape())
	}
	var want []float64
	for _, id := range ids {
		want = append(want, rt.v[int(id)*3:int(id)*3+3]...)
	}
	closeTo(t, "Embedding", got.Data(), want, 0)
	for _, bad := range [][]int32{{5}, {-1}, {0, 7}} {
		if _, err := EmbeddingOpChecked(table, bad); err == nil {
			t.Errorf("ids %v: no error", bad)
		}
	}
	if _, err := EmbeddingOpChecked(table, ids, 3); err == nil {
		t.Error("shape [3] for 4 ids: no error")
	}

	logits := r.t(4, 5)
	rl := refOf(logits)
	targets := []int32{2, -100, 0, 4}
	var loss float64
	for i, tg := range targets {
		if tg == -100 {
			continue
		}
		row := rl.v[i*5 : i*5+5]
		mx := slices.Max(row)
		var z float64
		for _, v := range row {
			z += math.Exp(v - mx)
		}
		loss -= row[tg] - mx - math.Log(z)
	}
	loss /= 3
	closeTo(t, "CrossEntropy", []float32{CrossEntropy(logits, targets, -100).Item()}, []float64{loss}, 1e-6)
	if _, err := CrossEntropyChecked(logits, []int32{0, 5, 0, 0}, -100); err == nil {
		t.Error("target 5 of 5 classes: no error")
	}
	if _, err := CrossEntropyChecked(logits, []int32{0}, -100); err == nil {
		t.Error("1 target for 4 rows: no error")
	}
	if v := CrossEntropy(logits, []int32{-100, -100, -100, -100}, -100).Item(); !math.IsNaN(float64(v)) {
		t.Errorf("all ignored: %g, want NaN", v)
	}
}

func TestConvForward(t *testing.T) {
	r := newTestRand(10)
	x, w, b := r.t(2, 4, 5, 6), r.t(6, 2, 3, 2), r.t(6)
	o := ConvOptions{Stride: [2]int{2, 1}, Padding: [2]int{1, 1}, Dilation: [2]int{1, 2}, Groups: 2}
	got := Conv2dOp(x, w, b, o)
	rx, rw, rb := refOf(x), refOf(w), refOf(b)
	oh := (5+2-1*(3-1)-1)/2 + 1
	ow := (6+2-2*(2-1)-1)/1 + 1
	if !slices.Equal(got.Shape(), []int{2, 6, oh, ow}) {
		t.Fatalf("shape %v", got.Shape())
	}
	var want []float64
	forEachIndex([]int{2, 6, oh, ow}, func(i []int) {
		n, oc, y, xx := i[0], i[1], i[2], i[3]
		g := oc / 3
		s := rb.v[oc]
		for c := range 2 {
			for ky := range 3 {
				for kx := range 2 {
					iy, ix := y*2-1+ky, xx-1+kx*2
					if iy < 0 || iy >= 5 || ix < 0 || ix >= 6 {
						continue
					}
					s += rw.at(oc, c, ky, kx) * rx.at(n, g*2+c, iy, ix)
				}
			}
		}
		want = append(want, s)
	})
	closeTo(t, "Conv2d", got.Data(), want, 1e-5)

	// A pointwise kernel skips the unfolding: compare with a 1x1 kernel
	// that takes the Im2Col path through padding cropped away by a stride.
	wp := r.t(6, 2, 1, 1)
	gotP := Conv2dOp(x, wp, b, ConvOptions{Groups: 2})
	var wantP []float64
	rwp := refOf(wp)
	forEachIndex([]int{2, 6, 5, 6}, func(i []int) {
		n, oc, y, xx := i[0], i[1], i[2], i[3]
		s := rb.v[oc]
		for c := range 2 {
			s += rwp.at(oc, c, 0, 0) * rx.at(n, oc/3*2+c, y, xx)
		}
		wantP = append(wantP, s)
	})
	closeTo(t, "Conv2d/pointwise", gotP.Data(), wantP, 1e-5)

	// Conv1d is Conv2d with a height of one.
	x1, k1, b1 := r.t(2, 4, 7), r.t(4, 2, 3), r.t(4)
	o1 := ConvOptions{Stride: [2]int{2}, Padding: [2]int{2}, Dilation: [2]int{2}, Groups: 2}
	got1 := Conv1dOp(x1, k1, b1, o1)
	o2 := ConvOptions{Stride: [2]int{1, 2}, Padding: [2]int{0, 2}, Dilation: [2]int{1, 2}, Groups: 2}
	want1 := Conv2dOp(x1.Reshape(2, 4, 1, 7), k1.Reshape(4, 2, 1, 3), b1, o2)
	closeTo(t, "Conv1d", got1.Data(), f64(want1.Data()), 0)
	if !slices.Equal(got1.Shape(), []int{2, 4, want1.Dim(-1)}) {
		t.Errorf("Conv1d shape %v", got1.Shape())
	}
}

func TestRopeForward(t *testing.T) {
	r := newTestRand(11)
	x, cos, sin := r.t(2, 1, 3, 4), r.t(3, 4), r.t(3, 4)
	rx, rc, rs := refOf(x), refOf(cos), refOf(sin)
	var want []float64
	forEachIndex(x.shape, func(i []int) {
		s, d := i[2], i[3]
		var rot float64
		if d < 2 {
			rot = -rx.at(i[0], i[1], s, d+2)
		} else {
			rot = rx.at(i[0], i[1], s, d-2)
		}
		want = append(want, rx.at(i...)*rc.at(s, d)+rot*rs.at(s, d))
	})
	closeTo(t, "Rope", Rope(x, cos, sin).Data(), want, 1e-6)
}

func TestDropoutOp(t *testing.T) {
	x := Ones(nil, 1000)
	y := DropoutOp(x, 0.25, NewRNG(1)).Data()
	zeros := 0
	for _, v := range y {
		switch v {
		case 0:
			zeros++
		case 1 / 0.75:
		default:
			t.Fatalf("dropout value %g", v)
		}
	}
	if zeros < 180 || zeros > 320 {
		t.Errorf("%d of 1000 dropped with p=0.25", zeros)
	}
	// Same seed, same mask; the stream advances between calls.
	rng := NewRNG(1)
	a, b := DropoutOp(x, 0.25, rng).Data(), DropoutOp(x, 0.25, rng).Data()
	if !slices.Equal(a, y) || slices.Equal(a, b) {
		t.Error("dropout masks are not reproducible from the seed or do not advance")
	}
	if rng.Offset() != 2000 {
		t.Errorf("offset %d after two draws of 1000", rng.Offset())
	}
	if got := DropoutOp(x, 0, NewRNG(1)); got != x {
		t.Error("p=0 did not return x")
	}
}
