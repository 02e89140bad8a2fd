package tinylora

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// wrapAll prepares and wraps adapter "default" on the modules in order.
func wrapAll(t *testing.T, cfg *Config, mods []nn.Module) []*Layer {
	t.Helper()
	ts := make([]tuners.Target, len(mods))
	for i, m := range mods {
		ts[i] = tuners.Target{Path: "m" + string(rune('0'+i)), Module: m, Config: cfg, Adapter: "default"}
	}
	sh, err := Method{}.Prepare(nil, cfg, "default", ts)
	if err != nil {
		t.Fatal(err)
	}
	var out []*Layer
	for _, tg := range ts {
		tg.Shared = sh
		l, err := Method{}.Wrap(tg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.(*Layer))
	}
	return out
}

// refDelta returns B R A [out, in] in float64 from the adapter's tensors.
func refDelta(l *Layer, a *adapter) *mat.Dense {
	l.factors(a)
	v := layertest.To64(a.v.Data())
	p := layertest.To64(a.p.Data())
	R := mat.NewDense(a.r, a.r, nil)
	for i := range a.u {
		for j := range a.r {
			for k := range a.r {
				R.Set(j, k, R.At(j, k)+v[i]*p[(i*a.r+j)*a.r+k])
			}
		}
	}
	A := mat.NewDense(a.r, a.a.Dim(1), layertest.To64(a.a.Data()))
	B := mat.NewDense(a.b.Dim(0), a.r, layertest.To64(a.b.Data()))
	var br, d mat.Dense
	br.Mul(B, R)
	d.Mul(&br, A)
	return &d
}

func TestSVDFactors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	lin := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 5, 7)}
	ls := wrapAll(t, NewConfig(), []nn.Module{lin})
	a, _ := ls[0].Get("default")
	ls[0].factors(a)
	// B A is the best rank-2 approximation of W: compare with gonum's.
	var svd mat.SVD
	svd.Factorize(mat.NewDense(5, 7, layertest.To64(lin.Weight.Data())), mat.SVDThin)
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	A, B := layertest.To64(a.a.Data()), layertest.To64(a.b.Data())
	for i := range 5 {
		for j := range 7 {
			var got, want float64
			for k := range 2 {
				got += B[i*2+k] * A[k*7+j]
				want += u.At(i, k) * s[k] * v.At(j, k)
			}
			if math.Abs(got-want) > 1e-5 {
				t.Fatalf("B A [%d,%d] = %v, want %v", i, j, got, want)
			}
		}
	}
	for k := range 2 { // singular values split evenly: |A row k| = |B col k| = sqrt(s_k)
		var na, nb float64
		for j := range 7 {
			na += A[k*7+j] * A[k*7+j]
		}
		for i := range 5 {
			nb += B[i*2+k] * B[i*2+k]
		}
		if math.Abs(na-s[k]) > 1e-5 || math.Abs(nb-s[k]) > 1e-5 {
			t.Fatalf("factor %d: |A|^2 = %v, |B|^2 = %v, want s = %v", k, na, nb, s[k])
		}
	}
}

func TestLayer(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	lin := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 5, 7), Bias: layertest.Rand(rng, 0.1, 5)}
	conv := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, 6, 4), Bias: layertest.Rand(rng, 0.1, 4)}
	cfg := NewConfig()
	cfg.U, cfg.R, cfg.InitWeights = 5, 3, InitUniform
	cfg.InitVBound = 0.5
	ls := wrapAll(t, cfg, []nn.Module{lin, conv})
	for i, tc := range []struct {
		base    nn.Layer
		weight  *nn.Tensor
		in, out int
		conv    bool
	}{{lin, lin.Weight, 7, 5, false}, {conv, conv.Weight, 6, 4, true}} {
		l := ls[i]
		a, _ := l.Get("default")
		if a.seed != 42+int64(i) {
			t.Fatalf("layer %d: projection seed %d", i, a.seed)
		}
		d := refDelta(l, a)
		x := layertest.Rand(rng, 1, 2, 3, tc.in)
		xs, bs := layertest.To64(x.Data()), layertest.To64(tc.base.Forward(x).Data())
		y := make([]float64, len(bs))
		for s := range 6 {
			for o := range tc.out {
				v := bs[s*tc.out+o]
				for j := range tc.in {
					v += xs[s*tc.in+j] * d.At(o, j)
				}
				y[s*tc.out+o] = v
			}
		}
		if err := layertest.Close(l.Forward(x).Data(), y, 1e-5, 1e-5); err != nil {
			t.Fatalf("conv=%v: forward vs float64 reference: %v", tc.conv, err)
		}
		layertest.Grad(t, l, x, []*nn.Tensor{a.v})
		layertest.Disable(t, l, tc.base, x)
		layertest.MergeUnmerge(t, l, tc.weight, x, 1e-5)
	}
}

func TestEmbedding(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	emb := &nn.Embedding{Weight: layertest.Rand(rng, 1, 9, 6)}
	cfg := NewConfig()
	cfg.U, cfg.InitWeights, cfg.InitVBound = 4, InitUniform, 0.5
	l := wrapAll(t, cfg, []nn.Module{emb})[0]
	a, _ := l.Get("default")
	d := refDelta(l, a)
	ids := []int32{3, 0, 8, 3}
	got := l.Lookup(ids, 2, 2).Data()
	w := layertest.To64(emb.Weight.Data())
	want := make([]float64, 0, 24)
	for _, id := range ids {
		for j := range 6 {
			want = append(want, w[int(id)*6+j]+d.At(int(id), j))
		}
	}
	if err := layertest.Close(got, want, 1e-5, 1e-5); err != nil {
		t.Fatalf("lookup vs float64 reference: %v", err)
	}
	before := emb.Weight.Data()
	if err := l.Merge(nil, true); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(nn.Index(emb.Weight.Detach(), 0, ids).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("merged rows: %v", err)
	}
	_ = l.Unmerge()
	if err := layertest.Close(emb.Weight.Data(), layertest.To64(before), 1e-6, 1e-6); err != nil {
		t.Fatalf("unmerge: %v", err)
	}
	if _, err := l.LookupChecked([]int32{9}); err == nil {
		t.Fatal("out-of-range id accepted")
	}
}

func TestGroups(t *testing.T) {
	for _, tc := range []struct {
		n      int
		tying  float64
		count  int
		groups []int
	}{
		{4, 0, 4, []int{0, 1, 2, 3}},
		{4, 1, 1, []int{0, 0, 0, 0}},
		{5, 0.5, 2, []int{0, 0, 1, 1, 1}}, // round(2.5) = 2 (half to even)
		{7, 0.5, 4, []int{0, 1, 2, 3, 3, 3, 3}},
	} {
		count, group := Groups(tc.n, tc.tying)
		if count != tc.count {
			t.Fatalf("%v: %d groups", tc, count)
		}
		for i, g := range tc.groups {
			if group(i) != g {
				t.Fatalf("%v: layer %d in group %d, want %d", tc, i, group(i), g)
			}
		}
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"init_weights": "uniform"}`), c); err != nil || c.InitWeights != InitUniform {
		t.Fatalf("init_weights uniform: %v %q", err, c.InitWeights)
	}
	b, err := tuners.MarshalConfig(c)
	if err != nil || !strings.Contains(string(b), `"init_weights": "uniform"`) {
		t.Fatalf("marshal: %v %s", err, b)
	}
	for _, js := range []string{`{"r": 0}`, `{"u": 0}`, `{"weight_tying": 1.5}`, `{"init_weights": "normal"}`,
		`{"tinylora_dropout": -1}`, `{"bias": "lora_only"}`} {
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

// TestLoadSkipsSVD checks that factors an adapter file provides are not
// overwritten by the lazy SVD.
func TestLoadSkipsSVD(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	lin := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 4, 5)}
	l := wrapAll(t, NewConfig(), []nn.Module{lin})[0]
	if err := (Method{}).PrepareLoad(l, nil, "default"); err != nil {
		t.Fatal(err)
	}
	a, _ := l.Get("default")
	a.a.CopyFrom(nn.Ones(nil, a.r, 5))
	if A, _ := l.factors(a); A.Data()[0] != 1 {
		t.Fatal("loaded tinylora_A was replaced by the SVD")
	}
}
