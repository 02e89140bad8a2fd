package lntuning

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

func randT(r *rand.Rand, shape ...int) *nn.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return nn.New(nn.DefaultBackend(), v, shape...)
}

func wrap(t *testing.T, m nn.Module, names ...string) *Layer {
	t.Helper()
	var l tuners.Layer
	for _, n := range names {
		var err error
		l, err = Method{}.Wrap(tuners.Target{Path: "norm", Module: m, Config: NewConfig(), Adapter: n})
		if err != nil {
			t.Fatal(err)
		}
		m = l
	}
	return l.(*Layer)
}

// perturb sets every tensor of adapter's copy to fresh random values.
func perturb(l *Layer, adapter string, r *rand.Rand) {
	for _, p := range nn.NamedParameters(l.copies[adapter]) {
		p.T.CopyFrom(randT(r, p.T.Shape()...))
	}
}

// refNorm is LayerNorm (bias != nil or rms false) or RMSNorm in float64
// over the last axis of x [rows, dim].
func refNorm(x, w, b []float32, dim int, eps float64, rms bool) []float64 {
	out := make([]float64, len(x))
	for r := 0; r < len(x)/dim; r++ {
		row := x[r*dim : (r+1)*dim]
		mean, ss := 0.0, 0.0
		if !rms {
			for _, v := range row {
				mean += float64(v)
			}
			mean /= float64(dim)
		}
		for _, v := range row {
			ss += (float64(v) - mean) * (float64(v) - mean)
		}
		inv := 1 / math.Sqrt(ss/float64(dim)+eps)
		for i, v := range row {
			y := (float64(v) - mean) * inv * float64(w[i])
			if b != nil {
				y += float64(b[i])
			}
			out[r*dim+i] = y
		}
	}
	return out
}

func maxDiff(got []float32, want []float64) float64 {
	worst := 0.0
	for i := range got {
		worst = max(worst, math.Abs(float64(got[i])-want[i])/(1+math.Abs(want[i])))
	}
	return worst
}

type normCase struct {
	name string
	make func(r *rand.Rand) nn.Module
	rms  bool
}

var normCases = []normCase{
	{"LayerNorm", func(r *rand.Rand) nn.Module {
		return &nn.LayerNorm{Weight: randT(r, 6), Bias: randT(r, 6), Eps: 1e-5}
	}, false},
	{"RMSNorm", func(r *rand.Rand) nn.Module { return &nn.RMSNorm{Weight: randT(r, 6), Eps: 1e-6} }, true},
}

func params(m nn.Module) (w, b *nn.Tensor) {
	switch v := m.(type) {
	case *nn.LayerNorm:
		return v.Weight, v.Bias
	case *nn.RMSNorm:
		return v.Weight, nil
	}
	return nil, nil
}

func TestForwardMatchesReference(t *testing.T) {
	for _, nc := range normCases {
		t.Run(nc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			base := nc.make(r)
			l := wrap(t, base, "a", "b")
			perturb(l, "a", r)
			perturb(l, "b", r)
			x := randT(r, 4, 6)
			for _, active := range []string{"a", "b"} {
				l.SetActive([]string{active})
				w, b := params(l.copies[active])
				var bd []float32
				if b != nil {
					bd = b.Data()
				}
				eps := 1e-5
				if nc.rms {
					eps = 1e-6
				}
				want := refNorm(x.Data(), w.Data(), bd, 6, eps, nc.rms)
				if d := maxDiff(l.Forward(x).Data(), want); d > 1e-5 {
					t.Fatalf("adapter %s: forward differs from the reference by %g", active, d)
				}
			}
			l.SetDisabled(true)
			if !slices.Equal(l.Forward(x).Data(), base.(nn.Layer).Forward(x).Data()) {
				t.Fatal("disabled layer differs from the base module")
			}
		})
	}
}

func TestGradCheck(t *testing.T) {
	for _, nc := range normCases {
		t.Run(nc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			l := wrap(t, nc.make(r), "a")
			perturb(l, "a", r)
			x := randT(r, 3, 6)
			var ps []*nn.Tensor
			for _, p := range nn.NamedParameters(l.copies["a"]) {
				if !p.T.RequiresGrad() {
					t.Fatalf("%s of the copy does not require gradients", p.Name)
				}
				ps = append(ps, p.T)
			}
			for _, p := range nn.NamedParameters(l.base) {
				if p.T.RequiresGrad() {
					t.Fatalf("wrapping made the base %s trainable", p.Name)
				}
			}
			if err := nn.GradCheck(func() *nn.Tensor { return l.Forward(x) }, ps, 1e-2, 1e-2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func data(m nn.Module) [][]float32 {
	var out [][]float32
	for _, p := range nn.NamedParameters(m) {
		out = append(out, p.T.Data())
	}
	return out
}

func equalData(a, b [][]float32) bool {
	return slices.EqualFunc(a, b, func(x, y []float32) bool { return slices.Equal(x, y) })
}

func TestMergeUnmerge(t *testing.T) {
	for _, nc := range normCases {
		for _, safe := range []bool{false, true} {
			t.Run(nc.name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(5, 6))
				base := nc.make(r)
				orig := data(base)
				l := wrap(t, base, "a", "b")
				perturb(l, "a", r)
				perturb(l, "b", r)
				aVals, bVals := data(l.copies["a"]), data(l.copies["b"])
				x := randT(r, 4, 6)
				l.SetActive([]string{"a"})
				want := l.Forward(x).Data()
				if err := l.Merge(nil, safe); err != nil {
					t.Fatal(err)
				}
				if !equalData(data(base), aVals) || !slices.Equal(l.Forward(x).Data(), want) {
					t.Fatal("merging did not give the base module the adapter's values")
				}
				if err := l.Merge([]string{"a", "b"}, safe); err != nil {
					t.Fatalf("merging an already merged adapter with one more: %v", err)
				}
				// b replaced a: a was unmerged first.
				if !slices.Equal(l.Merged(), []string{"b"}) || !equalData(data(base), bVals) || !equalData(data(l.copies["a"]), aVals) {
					t.Fatalf("after merging b: merged %v", l.Merged())
				}
				if err := l.Delete("b"); err == nil {
					t.Fatal("deleting a merged adapter succeeded")
				}
				if err := l.Unmerge(); err != nil {
					t.Fatal(err)
				}
				if !equalData(data(base), orig) || !equalData(data(l.copies["b"]), bVals) {
					t.Fatal("unmerge did not restore the base values exactly")
				}
				if err := l.Merge([]string{"a", "b"}, safe); err == nil {
					t.Fatal("merging two adapters at once succeeded")
				}
			})
		}
	}
}

func TestSafeMergeRefusesNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	base := normCases[0].make(r)
	orig := data(base)
	l := wrap(t, base, "a")
	w, _ := params(l.copies["a"])
	d := w.Data()
	d[2] = float32(math.NaN())
	w.CopyFrom(nn.New(nn.DefaultBackend(), d, 6))
	if err := l.Merge(nil, true); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("err = %v", err)
	}
	if !equalData(data(base), orig) || len(l.Merged()) != 0 {
		t.Fatal("a refused merge changed the layer")
	}
}

func TestCheckActiveAndNames(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	l := wrap(t, normCases[0].make(r), "default", "other")
	if err := l.CheckActive([]string{"default", "other"}); err == nil {
		t.Fatal("two active adapters accepted")
	}
	if err := l.CheckActive([]string{"default", "elsewhere"}); err != nil {
		t.Fatalf("one held active adapter refused: %v", err)
	}
	var names []string
	for _, p := range l.AdapterParams("other") {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"ln_tuning_layers.weight", "ln_tuning_layers.bias"}) {
		t.Fatalf("saved names %q", names)
	}
	names = names[:0]
	for _, p := range nn.NamedParameters(l) {
		names = append(names, p.Name)
	}
	want := []string{"base_layer.weight", "base_layer.bias", "ln_tuning_layers.default.weight", "ln_tuning_layers.default.bias", "ln_tuning_layers.other.weight", "ln_tuning_layers.other.bias"}
	if !slices.Equal(names, want) {
		t.Fatalf("live names %q, want %q", names, want)
	}
	if err := l.Delete("other"); err != nil || slices.Contains(l.Adapters(), "other") {
		t.Fatalf("Delete: %v, adapters %v", err, l.Adapters())
	}
}

// opaque is a module LN tuning cannot copy.
type opaque struct{}

func (opaque) Children() []nn.Child              { return nil }
func (opaque) Params() []nn.Param                { return nil }
func (opaque) SetChild(string, nn.Module) error  { return nil }
func (opaque) Forward(x *nn.Tensor) *nn.Tensor   { return x }
func (o opaque) CloneModule() nn.Module          { return o }
func (opaque2) Children() []nn.Child             { return nil }
func (opaque2) Params() []nn.Param               { return nil }
func (opaque2) SetChild(string, nn.Module) error { return nil }
func (opaque2) Forward(x *nn.Tensor) *nn.Tensor  { return x }

type opaque2 struct{}

func TestWrapModules(t *testing.T) {
	if _, err := (Method{}).Wrap(tuners.Target{Path: "x", Module: opaque2{}, Config: NewConfig(), Adapter: "a"}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("err = %v, want one naming the module", err)
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "x", Module: opaque{}, Config: NewConfig(), Adapter: "a"}); err != nil {
		t.Fatalf("a module with CloneModule: %v", err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	emb := &nn.Embedding{Weight: randT(r, 5, 3)}
	l := wrap(t, emb, "a")
	perturb(l, "a", r)
	got, err := l.LookupChecked([]int32{1, 4}, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l.copies["a"].(*nn.Embedding).LookupChecked([]int32{1, 4}, 2)
	if !slices.Equal(got.Data(), want.Data()) {
		t.Fatal("an adapted embedding does not look up its copy")
	}
	if _, err := l.LookupChecked([]int32{9}, 1); err == nil {
		t.Fatal("an id outside the vocabulary was accepted")
	}
}
