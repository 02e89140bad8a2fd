package adamss

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// newTestLayer wraps a random Linear(in, out) (with or without bias) with
// one adapter whose B blocks are random (so that it is not a no-op).
func newTestLayer(t *testing.T, in, out int, bias bool, cfg *Config) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in)}
	if bias {
		base.Bias = layertest.Rand(rng, 0.3, out)
	}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	for _, b := range a.bs {
		b.CopyFrom(layertest.Rand(rng, 0.5, b.Shape()...))
	}
	return l, base
}

// reference computes PEFT's AdaMSS forward in float64 from the layer's
// tensors: y = base(x) + scatter(concat_i([x,1] newB^T A_i^T B_i^T)).
func reference(l *Layer, x *nn.Tensor) []float64 {
	a, _ := l.Get("default")
	inp, q := l.inp(), a.q
	nb := layertest.To64(a.newB.Data())
	xs := layertest.To64(x.Data())
	base := layertest.To64(l.base.Forward(x).Data())
	n := len(xs) / l.in
	y := make([]float64, len(base))
	copy(y, base)
	for s := range n {
		proj := make([]float64, q)
		for c := range q {
			for j := range inp {
				v := 1.0
				if j < l.in {
					v = xs[s*l.in+j]
				}
				proj[c] += v * nb[c*inp+j]
			}
		}
		for i, seg := range a.st.segs {
			A, B := layertest.To64(a.as[i].Data()), layertest.To64(a.bs[i].Data())
			r := a.st.ranks[i]
			h := make([]float64, r)
			for k := range r {
				for c := range q {
					h[k] += proj[c] * A[k*q+c]
				}
			}
			for row, o := range seg {
				for k := range r {
					y[s*l.out+o] += h[k] * B[row*r+k]
				}
			}
		}
	}
	return y
}

func TestLayer(t *testing.T) {
	for _, c := range []struct {
		name          string
		in, out, r, k int
		bias, dynamic bool
		rank          int
	}{
		{"bias", 6, 9, 100, 3, true, false, 2},
		{"nobias_truncated", 8, 10, 4, 4, false, false, 1},
		{"dynamic", 7, 12, 5, 2, true, true, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.R, cfg.NumSubspaces, cfg.SubspaceRank, cfg.UseDynamicRank = c.r, c.k, c.rank, c.dynamic
			l, base := newTestLayer(t, c.in, c.out, c.bias, cfg)
			a, _ := l.Get("default")
			checkStructure(t, l, a)
			x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, c.in)
			if err := layertest.Close(l.Forward(x).Data(), reference(l, x), 1e-5, 1e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			layertest.Grad(t, l, x, a.trainable())
			layertest.Disable(t, l, base, x)
			var bias []float32
			if c.bias {
				bias = base.Bias.Data()
			}
			layertest.MergeUnmerge(t, l, base.Weight, x, 1e-5)
			if c.bias {
				if err := layertest.Close(base.Bias.Data(), layertest.To64(bias), 1e-6, 0); err != nil {
					t.Fatalf("unmerge did not restore the bias: %v", err)
				}
			}
		})
	}
}

// checkStructure checks what AdaMSS derives: newB has orthonormal rows,
// the subspaces partition the output rows, each A has orthonormal rows
// with a positive largest entry, and the B blocks are sized by them.
func checkStructure(t *testing.T, l *Layer, a *adapter) {
	t.Helper()
	orthonormal(t, "newB", a.newB.Data(), a.q, l.inp())
	seen := make([]bool, l.out)
	for i, seg := range a.st.segs {
		for _, o := range seg {
			if seen[o] {
				t.Fatalf("row %d in two subspaces", o)
			}
			seen[o] = true
		}
		r := a.st.ranks[i]
		if s := a.bs[i].Shape(); s[0] != len(seg) || s[1] != r {
			t.Fatalf("B.%d shape %v, want [%d, %d]", i, s, len(seg), r)
		}
		A := a.as[i].Data()
		orthonormal(t, "A", A, r, a.q)
		for k := range r {
			big := 0
			for c := range a.q {
				if math.Abs(float64(A[k*a.q+c])) > math.Abs(float64(A[k*a.q+big])) {
					big = c
				}
			}
			if A[k*a.q+big] < 0 {
				t.Fatalf("A.%d row %d: largest entry negative", i, k)
			}
		}
	}
	for o, s := range seen {
		if !s {
			t.Fatalf("row %d in no subspace", o)
		}
	}
}

func orthonormal(t *testing.T, name string, m []float32, rows, cols int) {
	t.Helper()
	for i := range rows {
		for j := range rows {
			var s float64
			for c := range cols {
				s += float64(m[i*cols+c]) * float64(m[j*cols+c])
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(s-want) > 1e-4 {
				t.Fatalf("%s rows %d,%d: dot %v, want %v", name, i, j, s, want)
			}
		}
	}
}

// TestInit: the default adapter is a no-op; init_weights null is not.
func TestInit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 8, 5), Bias: layertest.Rand(rng, 1, 8)}
	x := layertest.Rand(rng, 1, 3, 5)
	want := layertest.To64(base.Forward(x).Data())
	for _, init := range []Init{InitOrthogonal, InitNone} {
		cfg := NewConfig()
		cfg.InitWeights = init
		l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: string(init)})
		if err != nil {
			t.Fatal(err)
		}
		l.SetActive([]string{string(init)})
		err = layertest.Close(l.(*Layer).Forward(x).Data(), want, 1e-6, 0)
		if (init == InitOrthogonal) != (err == nil) {
			t.Fatalf("init %s: no-op check: %v", init, err)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"num_subspaces": 0}`, `{"subspace_rank": 0}`, `{"init_weights": "gaussian"}`, `{"use_asa": true}`, `{"layers_pattern": "layers"}`} {
		c := NewConfig()
		if err := tuners.UnmarshalConfig([]byte(js), c); err == nil && c.Validate() == nil {
			t.Errorf("%s: no error", js)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"init_weights": false}`), c); err != nil || c.InitWeights != InitNone {
		t.Fatalf("init_weights false: %v %q", err, c.InitWeights)
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	d := NewConfig()
	if err := tuners.UnmarshalConfig(out, d); err != nil || d.InitWeights != InitNone {
		t.Fatalf("round trip %s: %v", out, err)
	}
}

// TestFitShapes: file blocks of other shapes replace the layer's (as
// PEFT's _load_from_state_dict does), and Reload refuses blocks that do not
// fit the clustering of the file's newB.
func TestFitShapes(t *testing.T) {
	cfg := NewConfig()
	cfg.NumSubspaces = 2
	l, _ := newTestLayer(t, 6, 9, true, cfg)
	a, _ := l.Get("default")
	n0 := a.bs[0].Dim(0)
	shapes := map[string][]int{"adamss_newB": a.newB.Shape()}
	for i := range a.bs {
		shapes["adamss_A."+string(rune('0'+i))] = a.as[i].Shape()
		shapes["adamss_B."+string(rune('0'+i))] = a.bs[i].Shape()
	}
	if err := l.FitShapes("default", shapes); err != nil {
		t.Fatal(err)
	}
	if err := l.Reload("default"); err != nil {
		t.Fatalf("matching shapes: %v", err)
	}
	shapes["adamss_B.0"] = []int{n0 + 1, 1}
	if err := l.FitShapes("default", shapes); err != nil {
		t.Fatal(err)
	}
	if a.bs[0].Dim(0) != n0+1 {
		t.Fatalf("B.0 not refitted: %v", a.bs[0].Shape())
	}
	if err := l.Reload("default"); err == nil {
		t.Fatal("blocks that do not fit the clustering were accepted")
	}
	delete(shapes, "adamss_B.1")
	if err := l.FitShapes("default", shapes); err == nil {
		t.Fatal("a file with fewer blocks was accepted")
	}
}
