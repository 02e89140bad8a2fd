package frod

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// inject prepares and wraps adapter name on the modules at paths.
func inject(t *testing.T, cfg *Config, name string, paths []string, mods []nn.Module) []*Layer {
	t.Helper()
	ts := make([]tuners.Target, len(mods))
	for i, m := range mods {
		ts[i] = tuners.Target{Path: paths[i], Module: m, Config: cfg, Adapter: name}
	}
	sh, err := Method{}.Prepare(nil, cfg, name, ts)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*Layer, len(ts))
	for i, tg := range ts {
		tg.Shared = sh
		l, err := Method{}.Wrap(tg)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = l.(*Layer)
	}
	return out
}

// refWeight returns U (S + diag L) V^T [out, in] in float64.
func refWeight(l *Layer, a *adapter, out, in int) *mat.Dense {
	if err := l.ensure(a); err != nil {
		panic(err)
	}
	U := mat.NewDense(out, in, layertest.To64(a.u.Data()))
	V := mat.NewDense(in, in, layertest.To64(a.cat.v.Data()))
	S := mat.NewDense(in, in, nil)
	for j, v := range layertest.To64(a.lambdaL.Data()) {
		S.Set(j, j, v)
	}
	for k, v := range layertest.To64(a.sValues.Data()) {
		S.Set(int(a.rows[k]), int(a.cols[k]), S.At(int(a.rows[k]), int(a.cols[k]))+v)
	}
	var us, w mat.Dense
	us.Mul(U, S)
	w.Mul(&us, V.T())
	return &w
}

func TestLayer(t *testing.T) {
	for _, conv := range []bool{false, true} {
		const in, out = 6, 7
		rng := rand.New(rand.NewPCG(1, 2))
		var base nn.Layer
		var weight *nn.Tensor
		if conv {
			c := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, in, out), Bias: layertest.Rand(rng, 0.1, out)}
			base, weight = c, c.Weight
		} else {
			l := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
			base, weight = l, l.Weight
		}
		cfg := NewConfig()
		cfg.SparseRate = 0.2
		l := inject(t, cfg, "default", []string{"layers.0.proj"}, []nn.Module{base})[0]
		a, _ := l.Get("default")
		if len(a.rows) != 7 { // int(36 * 0.2)
			t.Fatalf("nnz %d", len(a.rows))
		}
		x := layertest.Rand(rng, 1, 2, 3, in)
		// At init the reconstruction is the base weight.
		if err := layertest.Close(l.Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 1e-4, 1e-4); err != nil {
			t.Fatalf("conv=%v: init is not a no-op: %v", conv, err)
		}
		a.sValues.CopyFrom(layertest.Rand(rng, 0.3, a.sValues.Len()))
		a.lambdaL.CopyFrom(nn.Add(a.lambdaL.Detach(), layertest.Rand(rng, 0.3, in)))
		w := refWeight(l, a, out, in)
		xs := layertest.To64(x.Data())
		bias := layertest.To64(l.bias.Data())
		y := make([]float64, 6*out)
		for s := range 6 {
			for o := range out {
				v := bias[o]
				for i := range in {
					v += xs[s*in+i] * w.At(o, i)
				}
				y[s*out+o] = v
			}
		}
		if err := layertest.Close(l.Forward(x).Data(), y, 1e-4, 1e-4); err != nil {
			t.Fatalf("conv=%v: forward vs float64 reference: %v", conv, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.lambdaL, a.sValues})
		layertest.Disable(t, l, base, x)
		layertest.MergeUnmerge(t, l, weight, x, 1e-4)
	}
}

// TestTwoAdapters checks the several-adapter path: base output plus each
// adapter's reconstruction minus the base product.
func TestTwoAdapters(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	lin := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 5, 4), Bias: layertest.Rand(rng, 0.1, 5)}
	cfg := NewConfig()
	cfg.SparseRate = 0.25
	l := inject(t, cfg, "a", []string{"lin"}, []nn.Module{lin})[0]
	cfg2 := NewConfig()
	cfg2.SparseRate = 0.25
	if got := inject(t, cfg2, "b", []string{"lin"}, []nn.Module{l})[0]; got != l {
		t.Fatal("second adapter made a new layer")
	}
	for _, n := range []string{"a", "b"} {
		a, _ := l.Get(n)
		a.sValues.CopyFrom(layertest.Rand(rng, 0.3, a.sValues.Len()))
	}
	l.SetActive([]string{"a", "b"})
	x := layertest.Rand(rng, 1, 3, 4)
	xs := layertest.To64(x.Data())
	w := layertest.To64(lin.Weight.Data())
	wa, _ := l.Get("a")
	wb, _ := l.Get("b")
	ra, rb := refWeight(l, wa, 5, 4), refWeight(l, wb, 5, 4)
	bias := layertest.To64(lin.Bias.Data())
	y := make([]float64, 15)
	for s := range 3 {
		for o := range 5 {
			v := bias[o]
			for i := range 4 {
				v += xs[s*4+i] * (ra.At(o, i) + rb.At(o, i) - w[o*4+i])
			}
			y[s*5+o] = v
		}
	}
	if err := layertest.Close(l.Forward(x).Data(), y, 1e-4, 1e-4); err != nil {
		t.Fatalf("two adapters: %v", err)
	}
	layertest.MergeUnmerge(t, l, lin.Weight, x, 1e-4)
}

func TestSharedBasis(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	gram := func(m *mat.Dense) *mat.Dense {
		var g mat.Dense
		g.Mul(m, m.T())
		return &g
	}
	// QR path (stacked rows >= cols): V V^T is the stack's Gram matrix.
	w1, w2 := layertest.To64(layertest.Rand(rng, 1, 4, 5).Data()), layertest.To64(layertest.Rand(rng, 1, 3, 5).Data())
	v, err := sharedBasis([][]float64{w1, w2}, []int{4, 3}, 5, 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	st := mat.NewDense(7, 5, append(append([]float64{}, w1...), w2...))
	var sts mat.Dense
	sts.Mul(st.T(), st)
	if !mat.EqualApprox(gram(v), &sts, 1e-9) {
		t.Fatal("V V^T is not the stacked Gram matrix")
	}
	// SVD path (fewer rows): V is orthogonal.
	v, err = sharedBasis([][]float64{w2}, []int{3}, 5, 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	if !mat.EqualApprox(gram(v), eye(5), 1e-9) {
		t.Fatal("V is not orthogonal on the SVD path")
	}
}

func eye(n int) *mat.Dense {
	m := mat.NewDense(n, n, nil)
	for i := range n {
		m.Set(i, i, 1)
	}
	return m
}

func TestUAndLambda(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	w := layertest.To64(layertest.Rand(rng, 1, 3, 4).Data())
	v := mat.NewDense(4, 4, layertest.To64(layertest.Rand(rng, 1, 4, 4).Data()))
	u, lambda := uAndLambda(w, 3, 4, v)
	// U diag(lambda) V^T = W.
	U := mat.NewDense(3, 4, u)
	for j, l := range lambda {
		for i := range 3 {
			U.Set(i, j, U.At(i, j)*l)
		}
	}
	var got mat.Dense
	got.Mul(U, v.T())
	if !mat.EqualApprox(&got, mat.NewDense(3, 4, w), 1e-9) {
		t.Fatal("U diag(lambda) V^T != W")
	}
	// A singular V falls back to the pseudo-inverse without failing.
	vs := mat.NewDense(4, 4, nil)
	vs.Set(0, 0, 1)
	if u, _ := uAndLambda(w, 3, 4, vs); len(u) != 12 {
		t.Fatal("singular V")
	}
}

func TestCategoryAndLayerIndex(t *testing.T) {
	for _, tc := range []struct {
		path, cat string
		idx       int
	}{
		{"lin0", "lin0", 9},
		{"model.layers.3.self_attn.q_proj", "self_attn_q_proj", 3},
		{"model.layers.12.q", "q", 12},
		{"encoder.layer.11.attention.output.dense", "attention_output", 11},
		{"encoder.layer.2.output.dense", "output_dense", 2},
	} {
		if c := Category(tc.path); c != tc.cat {
			t.Errorf("Category(%q) = %q, want %q", tc.path, c, tc.cat)
		}
		if i := layerIndex(tc.path, 9); i != tc.idx {
			t.Errorf("layerIndex(%q) = %d, want %d", tc.path, i, tc.idx)
		}
	}
}

func TestRotationPattern(t *testing.T) {
	rows, cols := rotationPattern(20, 0.01, torchrand.New(0).Randperm)
	if len(rows) != 4 {
		t.Fatalf("nnz %d, want int(400*0.01) = 4", len(rows))
	}
	seen := map[[2]int64]bool{}
	for k := range rows {
		if rows[k] == cols[k] || rows[k] < 0 || rows[k] >= 20 || cols[k] < 0 || cols[k] >= 20 || seen[[2]int64{rows[k], cols[k]}] {
			t.Fatalf("entry %d: (%d, %d)", k, rows[k], cols[k])
		}
		seen[[2]int64{rows[k], cols[k]}] = true
	}
	if r, _ := rotationPattern(3, 0.001, torchrand.New(0).Randperm); len(r) != 1 {
		t.Fatal("a positive rate gives at least one entry")
	}
	if r, _ := rotationPattern(3, 0, torchrand.New(0).Randperm); len(r) != 0 {
		t.Fatal("rate 0 gives entries")
	}
	if r, _ := rotationPattern(3, 1, torchrand.New(0).Randperm); len(r) != 6 {
		t.Fatal("rate 1 is capped at the off-diagonal count")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"sparse_rate": 2}`, `{"frod_dropout": -1}`, `{"runtime_offload_base_weight": true}`,
		`{"bias": "lora_only"}`, `{"regularization_alpha": 1e400}`} {
		c := NewConfig()
		err := tuners.UnmarshalConfig([]byte(js), c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: no error", js)
		}
	}
}

// TestSparseProductPaths checks the dense fallback against the gathered
// product, both for z S^T and z S.
func TestSparseProductPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	const in = 3
	rows, cols := []int32{0, 2, 1}, []int32{1, 0, 2}
	vals := layertest.Rand(rng, 1, 3)
	for _, n := range []int{2, 40} { // 2*3 <= 36 gathers, 40*3 > 36 goes dense
		z := layertest.Rand(rng, 1, n, in)
		zd, vd := layertest.To64(z.Data()), layertest.To64(vals.Data())
		for _, transposed := range []bool{true, false} {
			from, to := cols, rows
			if !transposed {
				from, to = rows, cols
			}
			want := make([]float64, n*in)
			for s := range n {
				for k := range rows {
					want[s*in+int(to[k])] += zd[s*in+int(from[k])] * vd[k]
				}
			}
			if err := layertest.Close(sparseProduct(z, vals, from, to, in).Data(), want, 1e-6, 1e-6); err != nil {
				t.Fatalf("n=%d transposed=%v: %v", n, transposed, err)
			}
		}
	}
}

// TestLoadDerivesOnlyU checks that PrepareLoad keeps the file's lambda_l
// and basis, and Reload derives U from that basis.
func TestLoadDerivesOnlyU(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	lin := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 5, 4)}
	cfg := NewConfig()
	l := inject(t, cfg, "default", []string{"lin"}, []nn.Module{lin})[0]
	if err := (Method{}).PrepareLoad(l, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	a, _ := l.Get("default")
	v := mat.NewDense(4, 4, layertest.To64(layertest.Rand(rng, 1, 4, 4).Data()))
	a.cat.v.CopyFrom(nn.New(nil, toF32(v.RawMatrix().Data), 4, 4))
	a.lambdaL.CopyFrom(nn.Full(nil, 3, 4))
	if err := l.Reload("default"); err != nil {
		t.Fatal(err)
	}
	if got := a.lambdaL.Data()[0]; got != 3 {
		t.Fatalf("lambda_l = %v, want the loaded 3", got)
	}
	u, _ := uAndLambda(layertest.To64(lin.Weight.Data()), 5, 4, v)
	if err := layertest.Close(a.u.Data(), u, 1e-5, 1e-5); err != nil {
		t.Fatalf("U not derived from the loaded basis: %v", err)
	}
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
