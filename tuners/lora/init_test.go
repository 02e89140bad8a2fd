package lora

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

func initConfig(init InitWeights, r int, alpha float64) *Config {
	c := NewConfig()
	c.R, c.Alpha, c.InitLoRAWeights = r, alpha, init
	return c
}

func stats(d []float32) (mean, std, maxAbs float64) {
	for _, v := range d {
		mean += float64(v)
		maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
	}
	mean /= float64(len(d))
	for _, v := range d {
		std += (float64(v) - mean) * (float64(v) - mean)
	}
	return mean, math.Sqrt(std / float64(len(d))), maxAbs
}

func allZero(d []float32) bool {
	for _, v := range d {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestDefaultInit(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	in := 400
	base := &nn.Linear{Weight: randTensor(r, 0.1, 64, in)}
	l := wrap(t, base, initConfig(InitDefault, 16, 16), "default")
	a := l.coreOf().adapters["default"]
	if !allZero(a.b.Data()) {
		t.Fatal("default init: B is not zero")
	}
	mean, std, maxAbs := stats(a.a.Data())
	bound := 1 / math.Sqrt(float64(in))
	if maxAbs > bound || math.Abs(mean) > 0.1*bound || math.Abs(std-bound/math.Sqrt(3)) > 0.05*bound {
		t.Fatalf("default init: A mean %g std %g max %g, want U(-%g, %g)", mean, std, maxAbs, bound, bound)
	}
	// Deterministic: the same adapter on the same path draws the same values.
	l2 := wrap(t, &nn.Linear{Weight: base.Weight.Clone()}, initConfig(InitDefault, 16, 16), "default")
	if !slicesEqual(l2.coreOf().adapters["default"].a.Data(), a.a.Data()) {
		t.Fatal("default init is not reproducible")
	}
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGaussianInit(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	l := wrap(t, &nn.Linear{Weight: randTensor(r, 0.1, 32, 300)}, initConfig(InitGaussian, 8, 8), "default")
	a := l.coreOf().adapters["default"]
	if !allZero(a.b.Data()) {
		t.Fatal("gaussian init: B is not zero")
	}
	if _, std, _ := stats(a.a.Data()); math.Abs(std-1.0/8) > 0.01 {
		t.Fatalf("gaussian init: A std %g, want 1/r = %g", std, 1.0/8)
	}
}

func TestRandomInitIsNotNoop(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	l := wrap(t, &nn.Linear{Weight: randTensor(r, 0.1, 8, 6)}, initConfig(InitRandom, 4, 4), "default")
	a := l.coreOf().adapters["default"]
	if allZero(a.a.Data()) || allZero(a.b.Data()) {
		t.Fatal("init_lora_weights=false left a factor at zero")
	}
	if _, _, m := stats(a.b.Data()); m > 1/math.Sqrt(4) {
		t.Fatalf("init_lora_weights=false: B exceeds the kaiming bound 1/sqrt(r): %g", m)
	}
}

func TestEmbeddingInit(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, init := range []InitWeights{InitDefault, InitGaussian, InitPiSSA} {
		l := wrap(t, &nn.Embedding{Weight: randTensor(r, 1, 500, 8)}, initConfig(init, 4, 4), "default")
		a := l.coreOf().adapters["default"]
		if !allZero(a.a.Data()) {
			t.Errorf("%s: embedding A is not zero", init)
		}
		if _, std, _ := stats(a.b.Data()); math.Abs(std-1) > 0.35 {
			t.Errorf("%s: embedding B std %g, want about 1", init, std)
		}
	}
	l := wrap(t, &nn.Embedding{Weight: randTensor(r, 1, 500, 8)}, initConfig(InitRandom, 4, 4), "default")
	if allZero(l.coreOf().adapters["default"].a.Data()) {
		t.Error("false: embedding A is zero")
	}
}

// TestResidualInits checks PiSSA and OLoRA: the base weight becomes the
// residual W - s B A, so the layer's output is unchanged, and the factors
// have their defining structure.
func TestResidualInits(t *testing.T) {
	cases := []struct {
		init     InitWeights
		gpt2     bool
		out, in  int
		r        int
		alpha    float64
		orthoB   bool // B's columns orthonormal (OLoRA)
		balanced bool // A A^T and B^T B are the same diagonal (PiSSA)
	}{
		{init: InitPiSSA, out: 12, in: 9, r: 4, alpha: 8, balanced: true},
		{init: InitPiSSA, out: 7, in: 10, r: 3, alpha: 2, balanced: true, gpt2: true},
		{init: "pissa_niter_4", out: 9, in: 9, r: 2, alpha: 4, balanced: true},
		{init: InitOLoRA, out: 12, in: 8, r: 5, alpha: 5, orthoB: true},
		{init: InitOLoRA, out: 6, in: 10, r: 3, alpha: 6, orthoB: true},
	}
	for _, tc := range cases {
		t.Run(string(tc.init), func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 5))
			var base nn.Module
			var w *nn.Tensor
			if tc.gpt2 {
				w = randTensor(r, 0.5, tc.in, tc.out)
				base = &nn.Conv1D{Weight: w}
			} else {
				w = randTensor(r, 0.5, tc.out, tc.in)
				base = &nn.Linear{Weight: w}
			}
			w0 := from32(w).d
			x := randTensor(r, 1, 3, tc.in)
			y0 := base.(nn.Layer).Forward(x).Data()
			l := wrap(t, base, initConfig(tc.init, tc.r, tc.alpha), "default")
			if slicesEqual(w.Data(), to32(w0)) {
				t.Fatal("the base weight was not replaced by the residual")
			}
			// W_res + s B A == W
			c := l.coreOf()
			d, err := l.DeltaWeight("default")
			if err != nil {
				t.Fatal(err)
			}
			sum := nn.Add(c.weight, d).Data()
			closeTo(t, "W_res + s*BA", sum, w0, 1e-5, 1e-5)
			y := run(l, x, nil).Data()
			closeTo(t, "output", y, to64(y0), 1e-5, 1e-4)

			a := c.adapters["default"]
			A, B := from32(a.a).d, from32(a.b).d
			aat := matmulT64(A, tc.r, tc.in, A, tc.r)
			btb := matmulT64(transpose64(B, tc.out, tc.r), tc.r, tc.out, transpose64(B, tc.out, tc.r), tc.r)
			for i := range tc.r {
				for j := range tc.r {
					if tc.orthoB {
						want := 0.0
						if i == j {
							want = 1
						}
						if math.Abs(btb[i*tc.r+j]-want) > 1e-5 {
							t.Fatalf("OLoRA: B^T B[%d,%d] = %g, want %g", i, j, btb[i*tc.r+j], want)
						}
					}
					if tc.balanced {
						if math.Abs(aat[i*tc.r+j]-btb[i*tc.r+j]) > 1e-4 || (i != j && math.Abs(aat[i*tc.r+j]) > 1e-4) {
							t.Fatalf("PiSSA: A A^T and B^T B differ or are not diagonal at [%d,%d]: %g vs %g", i, j, aat[i*tc.r+j], btb[i*tc.r+j])
						}
					}
				}
			}
			if tc.balanced {
				// The kept singular values are the largest: the residual's
				// spectral norm is the (r+1)-th singular value of W.
				var svd mat.SVD
				wm := mat.NewDense(len(w0)/tc.in, tc.in, w0)
				if tc.gpt2 {
					wm = mat.NewDense(tc.in, tc.out, w0)
				}
				svd.Factorize(wm, mat.SVDNone)
				sv := svd.Values(nil)
				var res mat.SVD
				rd := from32(c.weight)
				res.Factorize(mat.NewDense(rd.shape[0], rd.shape[1], rd.d), mat.SVDNone)
				if got := res.Values(nil)[0]; math.Abs(got-sv[tc.r]) > 1e-4 {
					t.Fatalf("PiSSA residual spectral norm %g, want sigma_%d = %g", got, tc.r+1, sv[tc.r])
				}
			}
		})
	}
}

func to32(d []float64) []float32 {
	out := make([]float32, len(d))
	for i, v := range d {
		out[i] = float32(v)
	}
	return out
}

func to64(d []float32) []float64 {
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = float64(v)
	}
	return out
}

func TestInitErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	cases := []struct {
		name string
		m    nn.Module
		cfg  *Config
		want string
	}{
		{"pissa rank too large", &nn.Linear{Weight: randTensor(r, 1, 3, 5)}, initConfig(InitPiSSA, 4, 4), "r <="},
		{"olora on conv", &nn.Conv2d{Weight: randTensor(r, 1, 4, 3, 3, 3)}, initConfig(InitOLoRA, 2, 2), "olora"},
		{"pissa on conv", &nn.Conv1d{Weight: randTensor(r, 1, 4, 3, 3)}, initConfig(InitPiSSA, 2, 2), "pissa"},
		{"olora on gpt2", &nn.Conv1D{Weight: randTensor(r, 1, 4, 4)}, initConfig(InitOLoRA, 2, 2), "olora"},
	}
	for _, tc := range cases {
		_, err := Method{}.Wrap(tuners.Target{Path: "p", Module: tc.m, Config: tc.cfg, Adapter: "default"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestHouseholderQR(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, dims := range [][2]int{{6, 4}, {4, 6}, {5, 5}} {
		m, n := dims[0], dims[1]
		d := make([]float64, m*n)
		for i := range d {
			d[i] = r.NormFloat64()
		}
		a := mat.NewDense(m, n, d)
		q, rr := householderQR(a)
		var prod mat.Dense
		prod.Mul(q, rr)
		if !mat.EqualApprox(&prod, a, 1e-12) {
			t.Fatalf("%dx%d: Q R != A", m, n)
		}
		var qtq mat.Dense
		qtq.Mul(q.T(), q)
		k := min(m, n)
		for i := range k {
			for j := range k {
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(qtq.At(i, j)-want) > 1e-12 {
					t.Fatalf("%dx%d: Q^T Q not identity", m, n)
				}
			}
			for j := range i {
				if rr.At(i, j) != 0 {
					t.Fatalf("%dx%d: R not upper triangular", m, n)
				}
			}
			// LAPACK convention: R's diagonal has the opposite sign of
			// the column's leading entry after the earlier reflections;
			// for the first column that is A[0,0].
		}
		if math.Signbit(rr.At(0, 0)) == math.Signbit(a.At(0, 0)) {
			t.Fatalf("%dx%d: R[0,0] = %g has the sign of A[0,0] = %g, LAPACK gives the opposite", m, n, rr.At(0, 0), a.At(0, 0))
		}
	}
}

func TestOrthogonalInit(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, lc := range []int{0, 2} { // Linear, GPT-2 Conv1D
		l := wrap(t, layerCases[lc].base(r), initConfig(InitOrthogonal, 4, 4), "default")
		a := l.coreOf().adapters["default"]
		if allZero(a.a.Data()) || allZero(a.b.Data()) {
			t.Fatalf("%s: orthogonal init left a factor zero", layerCases[lc].name)
		}
		d, err := l.DeltaWeight("default")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, m := stats(d.Data()); m > 1e-6 {
			t.Fatalf("%s: orthogonal init: B A is not zero (max %g)", layerCases[lc].name, m)
		}
	}
	if err := initConfig(InitOrthogonal, 3, 3).Validate(); err == nil || !strings.Contains(err.Error(), "even") {
		t.Errorf("odd rank: Validate err = %v", err)
	}
	_, err := Method{}.Wrap(tuners.Target{Path: "c", Module: layerCases[5].base(r), Config: initConfig(InitOrthogonal, 2, 2), Adapter: "default"})
	if err == nil {
		t.Error("orthogonal init on a Conv2d succeeded")
	}
}

func TestMiCAInit(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, lc := range []int{0, 2, 3} { // Linear, GPT-2 Conv1D, Embedding
		name := layerCases[lc].name
		l := wrap(t, layerCases[lc].base(r), initConfig(InitMiCA, 2, 4), "default")
		c := l.coreOf()
		a := c.adapters["default"]
		if !allZero(a.a.Data()) {
			t.Fatalf("%s: MiCA A is not zero", name)
		}
		if a.b.RequiresGrad() || !a.a.RequiresGrad() {
			t.Fatalf("%s: MiCA: B trainable %v, A trainable %v; want frozen B, trainable A", name, a.b.RequiresGrad(), a.a.RequiresGrad())
		}
		l.SetTrainable("default", true)
		if a.b.RequiresGrad() {
			t.Fatalf("%s: SetTrainable made MiCA's B trainable", name)
		}
		// B^T W (W as [out, in]) has the r smallest singular values of W.
		w := from32(c.weight)
		rows, cols := c.out, c.in
		wd := w.d
		if c.kind != kindLinear {
			wd = transpose64(w.d, cols, rows)
		}
		B := from32(a.b).d
		btw := matmulT64(transpose64(B, rows, 2), 2, rows, transpose64(wd, rows, cols), cols)
		var got, all mat.SVD
		got.Factorize(mat.NewDense(2, cols, btw), mat.SVDNone)
		all.Factorize(mat.NewDense(rows, cols, wd), mat.SVDNone)
		sv, gv := all.Values(nil), got.Values(nil)
		k := len(sv)
		if math.Abs(gv[0]-sv[k-2]) > 1e-4 || math.Abs(gv[1]-sv[k-1]) > 1e-4 {
			t.Fatalf("%s: singular values of B^T W %v, want the smallest of W %v", name, gv, sv[k-2:])
		}
	}
	if err := func() error { c := initConfig(InitMiCA, 2, 2); c.UseDoRA = true; return c.Validate() }(); err == nil {
		t.Error("MiCA with DoRA validated")
	}
}

// TestEVAAndLoRAGAInit checks the layer-level behaviour PEFT has for these
// data-driven inits without their data step: A kaiming, B zero (Embedding:
// A zero, B normal); EVA on a convolution is an error, as in PEFT.
func TestEVAAndLoRAGAInit(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for _, init := range []InitWeights{InitEVA, InitLoRAGA} {
		l := wrap(t, &nn.Linear{Weight: randTensor(r, 0.1, 8, 50)}, initConfig(init, 4, 4), "default")
		a := l.coreOf().adapters["default"]
		if !allZero(a.b.Data()) || allZero(a.a.Data()) {
			t.Errorf("%s: want A random, B zero", init)
		}
		if _, _, m := stats(a.a.Data()); m > 1/math.Sqrt(50) {
			t.Errorf("%s: A exceeds the kaiming bound", init)
		}
		e := wrap(t, &nn.Embedding{Weight: randTensor(r, 1, 30, 4)}, initConfig(init, 2, 2), "default")
		if !allZero(e.coreOf().adapters["default"].a.Data()) {
			t.Errorf("%s: embedding A is not zero", init)
		}
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "c", Module: layerCases[5].base(r), Config: initConfig(InitEVA, 2, 2), Adapter: "default"}); err == nil {
		t.Error("eva on a Conv2d succeeded")
	}
	l := wrap(t, layerCases[5].base(r), initConfig(InitLoRAGA, 2, 2), "default")
	if !allZero(l.coreOf().adapters["default"].b.Data()) {
		t.Error("lora_ga on a Conv2d: B not zero")
	}
}
