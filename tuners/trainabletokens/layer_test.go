package trainabletokens

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

const vocab, dim = 10, 4

// adapters: a and b are disjoint, c overlaps a.
var indices = map[string][]int{"a": {1, 5, 7}, "b": {9, 2}, "c": {3, 5}}

// build wraps base with adapters a, b and c (random rows).
func build(t *testing.T, base nn.Module) *Layer {
	t.Helper()
	var l tuners.Layer
	m := base
	for _, n := range []string{"a", "b", "c"} {
		cfg := NewConfig()
		cfg.TokenIndices, cfg.InitWeights = indices[n], false
		var err error
		l, err = Method{}.Wrap(tuners.Target{Path: "embed_tokens", Module: m, Config: cfg, Adapter: n})
		if err != nil {
			t.Fatal(err)
		}
		m = l
	}
	return l.(*Layer)
}

// patched returns the base matrix with the rows of the adapters swapped in.
func patched(l *Layer, names ...string) []float32 {
	w := l.weight.Data()
	for _, n := range names {
		d := l.adapters[n].delta.Data()
		for j, id := range indices[n] {
			copy(w[id*dim:(id+1)*dim], d[j*dim:(j+1)*dim])
		}
	}
	return w
}

func TestLookupMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	l := build(t, &nn.Embedding{Weight: randT(r, vocab, dim)})
	ids := []int32{1, 0, 9, 1, 4, 2, 7, 4}
	for _, active := range [][]string{{"a"}, {"a", "b"}, {"c"}, nil} {
		l.SetActive(active)
		got, err := l.LookupChecked(ids, 2, 4)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Shape(), []int{2, 4, dim}) {
			t.Fatalf("shape %v", got.Shape())
		}
		w := patched(l, active...)
		var want []float32
		for _, id := range ids {
			want = append(want, w[int(id)*dim:(int(id)+1)*dim]...)
		}
		if !slices.Equal(got.Data(), want) {
			t.Fatalf("active %v: lookup differs from the patched matrix", active)
		}
	}
	l.SetActive([]string{"a"})
	l.SetDisabled(true)
	got := l.Lookup([]int32{1, 5})
	if !slices.Equal(got.Data(), nn.EmbeddingOp(l.weight, []int32{1, 5}).Data()) {
		t.Fatal("disabled layer does not look up the base matrix")
	}
	if _, err := l.LookupChecked([]int32{vocab}, 1); err == nil {
		t.Fatal("an id outside the vocabulary was accepted")
	}
	if _, err := l.LookupChecked([]int32{1, 2}, 3); err == nil {
		t.Fatal("a shape that does not hold the ids was accepted")
	}
}

func TestLinearMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	base := &nn.Linear{Weight: randT(r, vocab, dim), Bias: randT(r, vocab)}
	l := build(t, base)
	l.SetActive([]string{"a", "b"})
	x := randT(r, 3, dim)
	got := l.Forward(x).Data()
	w, xs, b := patched(l, "a", "b"), x.Data(), base.Bias.Data()
	for i := range 3 {
		for v := range vocab {
			s := float64(b[v])
			for k := range dim {
				s += float64(xs[i*dim+k]) * float64(w[v*dim+k])
			}
			if math.Abs(float64(got[i*vocab+v])-s) > 1e-5*(1+math.Abs(s)) {
				t.Fatalf("logit [%d,%d] = %v, want %v", i, v, got[i*vocab+v], s)
			}
		}
	}
}

func TestGradCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	l := build(t, &nn.Embedding{Weight: randT(r, vocab, dim)})
	l.SetActive([]string{"a", "b"})
	ids := []int32{1, 1, 9, 3, 5}
	params := []*nn.Tensor{l.adapters["a"].delta, l.adapters["b"].delta}
	if err := nn.GradCheck(func() *nn.Tensor { return l.Lookup(ids, 5) }, params, 1e-2, 1e-2); err != nil {
		t.Fatal(err)
	}
	h := build(t, &nn.Linear{Weight: randT(r, vocab, dim)})
	h.SetActive([]string{"a", "b"})
	x := randT(r, 2, dim)
	params = []*nn.Tensor{h.adapters["a"].delta, h.adapters["b"].delta}
	if err := nn.GradCheck(func() *nn.Tensor { return h.Forward(x) }, params, 1e-2, 1e-2); err != nil {
		t.Fatal(err)
	}
}

func TestMergeUnmerge(t *testing.T) {
	for _, safe := range []bool{false, true} {
		r := rand.New(rand.NewPCG(7, 8))
		emb := &nn.Embedding{Weight: randT(r, vocab, dim)}
		orig := emb.Weight.Data()
		l := build(t, emb)
		l.SetActive([]string{"a", "b"})
		ids := []int32{0, 1, 2, 5, 9}
		want := l.Lookup(ids).Data()
		if err := l.Merge(nil, safe); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(emb.Weight.Data(), patched(l, "a", "b")) {
			t.Fatal("merge did not write the trained rows into the matrix")
		}
		if !slices.Equal(l.Lookup(ids).Data(), want) {
			t.Fatal("merged lookup differs")
		}
		if err := l.Merge([]string{"c"}, safe); err == nil || !strings.Contains(err.Error(), "token 5") {
			t.Fatalf("merging an overlapping adapter: %v", err)
		}
		if err := l.Delete("a"); err == nil {
			t.Fatal("deleting a merged adapter succeeded")
		}
		if err := l.Unmerge(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(emb.Weight.Data(), orig) {
			t.Fatal("unmerge did not restore the matrix exactly")
		}
		if err := l.Merge([]string{"a", "c"}, safe); err == nil {
			t.Fatal("merging overlapping adapters together succeeded")
		}
	}
}

func TestSafeMergeRefusesNonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	emb := &nn.Embedding{Weight: randT(r, vocab, dim)}
	orig := emb.Weight.Data()
	l := build(t, emb)
	d := l.adapters["b"].delta
	v := d.Data()
	v[3] = float32(math.Inf(-1))
	d.CopyFrom(nn.New(nn.DefaultBackend(), v, d.Shape()...))
	if err := l.Merge([]string{"a", "b"}, true); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("err = %v", err)
	}
	if !slices.Equal(emb.Weight.Data(), orig) || len(l.Merged()) != 0 {
		t.Fatal("a refused merge changed the matrix")
	}
}

func TestCheckActiveBuffersAndNames(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	emb := &nn.Embedding{Weight: randT(r, vocab, dim)}
	l := build(t, emb)
	if err := l.CheckActive([]string{"a", "c"}); err == nil {
		t.Fatal("overlapping active adapters accepted")
	}
	if err := l.CheckActive([]string{"a", "b", "other"}); err != nil {
		t.Fatal(err)
	}
	bufs := l.Buffers("b")
	w := emb.Weight.Data()
	want := append(slices.Clone(w[9*dim:10*dim]), w[2*dim:3*dim]...)
	if len(bufs) != 1 || bufs[0].Name != "trainable_tokens_original.b" || !slices.Equal(bufs[0].Shape, []int{2, dim}) || !slices.Equal(bufs[0].F32, want) {
		t.Fatalf("buffers %+v", bufs)
	}
	ps := l.AdapterParams("c")
	if len(ps) != 1 || ps[0].Name != "trainable_tokens_delta" || !slices.Equal(ps[0].T.Shape(), []int{2, dim}) {
		t.Fatalf("params %+v", ps)
	}
	var names []string
	for _, p := range nn.NamedParameters(l) {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"base_layer.weight", "trainable_tokens_delta.a", "trainable_tokens_delta.b", "trainable_tokens_delta.c"}) {
		t.Fatalf("live names %q", names)
	}
}

func TestWrapErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	cfg := NewConfig()
	cfg.TokenIndices = []int{3, vocab}
	_, err := Method{}.Wrap(tuners.Target{Path: "embed_tokens", Module: &nn.Embedding{Weight: randT(r, vocab, dim)}, Config: cfg, Adapter: "a"})
	if err == nil || !strings.Contains(err.Error(), "token_indices[1]") {
		t.Fatalf("out-of-range index: %v", err)
	}
	cfg.TokenIndices = []int{1}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "conv", Module: &nn.Conv2d{Weight: randT(r, 2, 2, 1, 1)}, Config: cfg, Adapter: "a"}); err == nil || !strings.Contains(err.Error(), `"conv"`) {
		t.Fatalf("a Conv2d: %v", err)
	}
	l := build(t, &nn.Embedding{Weight: randT(r, vocab, dim)})
	init := NewConfig()
	init.TokenIndices = []int{4, 6}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "embed_tokens", Module: l, Config: init, Adapter: "fresh"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.adapters["fresh"].delta.Data(), l.adapters["fresh"].original.Data()) || !l.adapters["fresh"].delta.RequiresGrad() {
		t.Fatal("init_weights=true does not start from the current rows, or the rows are frozen")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mut   func(c *Config)
	}{
		{"token_indices", func(c *Config) { c.TokenIndices = nil }},
		{"token_indices[1]", func(c *Config) { c.TokenIndices = []int{1, -2} }},
		{"modules_to_save", func(c *Config) { c.ModulesToSave = []string{"lm_head"} }},
		{"exclude_modules", func(c *Config) { c.ExcludeModules = tuners.Names("x") }},
		{"layers_to_transform", func(c *Config) { c.LayersToTransform = tuners.LayerIndexes{0} }},
		{"peft_type", func(c *Config) { c.PeftType = "LORA" }},
	} {
		c := NewConfig()
		c.TokenIndices = []int{1}
		tc.mut(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v", tc.field, err)
		}
	}
}
