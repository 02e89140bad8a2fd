package nn

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// tinyModel builds a LLaMA-shaped tree:
//
//	model.embed_tokens, model.layers.{0,1}.self_attn.{q_proj,v_proj},
//	model.layers.{0,1}.mlp (Sequential: Linear, Activation, Dropout, Linear),
//	model.norm, lm_head (tied to embed_tokens).
func tinyModel(seed uint64) *Dict {
	rng := NewRNG(seed)
	be := testBackend()
	root := NewDict()
	model := NewDict()
	emb := NewEmbedding(be, 10, 4, rng)
	model.Add("embed_tokens", emb)
	layers := NewModuleList()
	for range 2 {
		layer := NewDict()
		attn := NewDict()
		attn.Add("q_proj", NewLinear(be, 4, 4, false, rng))
		attn.Add("v_proj", NewLinear(be, 4, 4, true, rng))
		layer.Add("self_attn", attn)
		act, _ := NewActivation("silu")
		layer.Add("mlp", NewSequential(NewLinear(be, 4, 6, true, rng), act, NewDropout(0.5, rng), NewLinear(be, 6, 4, true, rng)))
		layers.Append(layer)
	}
	model.Add("layers", layers)
	model.Add("norm", NewRMSNorm(be, 4, 1e-6))
	root.Add("model", model)
	root.Add("lm_head", &Linear{Weight: emb.Weight})
	return root
}

func TestWalkPaths(t *testing.T) {
	var paths []string
	if err := Walk(tinyModel(1), func(p string, _ Module) error { paths = append(paths, p); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "model", "model.embed_tokens", "model.layers", "model.layers.0",
		"model.layers.0.self_attn", "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
		"model.layers.0.mlp", "model.layers.0.mlp.0", "model.layers.0.mlp.1", "model.layers.0.mlp.2", "model.layers.0.mlp.3",
		"model.layers.1", "model.layers.1.self_attn", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
		"model.layers.1.mlp", "model.layers.1.mlp.0", "model.layers.1.mlp.1", "model.layers.1.mlp.2", "model.layers.1.mlp.3",
		"model.norm", "lm_head"}
	if !slices.Equal(paths, want) {
		t.Fatalf("paths:\n%v\nwant\n%v", paths, want)
	}
	// ErrSkipChildren prunes; other errors stop the walk.
	var top []string
	_ = Walk(tinyModel(1), func(p string, _ Module) error {
		top = append(top, p)
		if p == "model" {
			return ErrSkipChildren
		}
		return nil
	})
	if !slices.Equal(top, []string{"", "model", "lm_head"}) {
		t.Fatalf("ErrSkipChildren: %v", top)
	}
	stop := errors.New("stop")
	if err := Walk(tinyModel(1), func(p string, _ Module) error {
		if p == "model.norm" {
			return stop
		}
		return nil
	}); err != stop {
		t.Fatalf("Walk error: %v", err)
	}
}

func TestNamedParametersAndStateDict(t *testing.T) {
	m := tinyModel(1)
	var names []string
	for _, p := range NamedParameters(m) {
		names = append(names, p.Name)
	}
	if names[0] != "model.embed_tokens.weight" || slices.Contains(names, "lm_head.weight") {
		t.Fatalf("tied weight not listed once under its first name: %v", names)
	}
	if len(names) != 1+2*(1+2+2+2)+1 {
		t.Fatalf("%d parameters: %v", len(names), names)
	}
	sd := StateDict(m)
	if sd["lm_head.weight"] != sd["model.embed_tokens.weight"] || len(sd) != len(names)+1 {
		t.Fatalf("state dict keys %v", StateDictKeys(m))
	}
	if total, trainable := NumParams(m); total != trainable || total != 10*4+2*(16+20+30+28)+4 {
		t.Fatalf("NumParams = %d, %d", total, trainable)
	}
}

func TestLoadStateDictRoundTrip(t *testing.T) {
	a, b := tinyModel(1), tinyModel(2)
	ids := []int32{1, 5, 9}
	forward := func(m *Dict) []float32 {
		model := m.Get("model").(*Dict)
		x := model.Get("embed_tokens").(*Embedding).Lookup(ids)
		for _, l := range model.Get("layers").(*ModuleList).Items {
			d := l.(*Dict)
			attn := d.Get("self_attn").(*Dict)
			x = Add(attn.Get("q_proj").(Layer).Forward(x), attn.Get("v_proj").(Layer).Forward(x))
			x = d.Get("mlp").(Layer).Forward(x)
		}
		x = model.Get("norm").(Layer).Forward(x)
		return m.Get("lm_head").(Layer).Forward(x).Data()
	}
	if slices.Equal(forward(a), forward(b)) {
		t.Fatal("differently seeded models agree")
	}
	// Copy through host memory, as a checkpoint would.
	sd := map[string]*Tensor{}
	for k, v := range StateDict(a) {
		sd[k] = New(nil, v.Data(), v.Shape()...)
	}
	if err := LoadStateDict(b, sd, true); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(forward(a), forward(b)) {
		t.Fatal("outputs differ after loading the state dict")
	}
}

func TestLoadStateDictErrors(t *testing.T) {
	m := tinyModel(1)
	before := StateDict(m)["model.norm.weight"].Data()
	sd := map[string]*Tensor{}
	for k, v := range StateDict(tinyModel(2)) {
		sd[k] = v
	}
	delete(sd, "model.layers.1.self_attn.q_proj.weight")
	delete(sd, "model.layers.0.mlp.0.bias")
	sd["model.extra.weight"] = Zeros(nil, 2)
	sd["a.unexpected"] = Zeros(nil, 1)
	sd["model.layers.0.self_attn.v_proj.bias"] = Zeros(nil, 5)
	sd["lm_head.weight"] = Zeros(nil, 4, 10)
	sd["model.norm.weight"] = Full(nil, 3, 4)

	err := LoadStateDict(m, sd, true)
	var se *StateDictError
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *StateDictError", err)
	}
	if !slices.Equal(se.Missing, []string{"model.layers.0.mlp.0.bias", "model.layers.1.self_attn.q_proj.weight"}) {
		t.Errorf("missing %v", se.Missing)
	}
	if !slices.Equal(se.Unexpected, []string{"a.unexpected", "model.extra.weight"}) {
		t.Errorf("unexpected %v", se.Unexpected)
	}
	if len(se.Mismatched) != 2 || se.Mismatched[0].Key != "lm_head.weight" || se.Mismatched[1].Key != "model.layers.0.self_attn.v_proj.bias" {
		t.Errorf("mismatched %+v", se.Mismatched)
	}
	msg := err.Error()
	for _, want := range []string{"missing keys: model.layers.0.mlp.0.bias, model.layers.1.self_attn.q_proj.weight",
		"unexpected keys: a.unexpected, model.extra.weight",
		"lm_head.weight (model [10 4], state dict [4 10])"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if got := StateDict(m)["model.norm.weight"].Data(); !slices.Equal(got, before) {
		t.Error("a failed load changed the model")
	}
	// Non-strict: missing and unexpected keys are fine, shapes are not.
	err = LoadStateDict(m, sd, false)
	if !errors.As(err, &se) || len(se.Missing)+len(se.Unexpected) != 0 || len(se.Mismatched) != 2 {
		t.Fatalf("non-strict: %v", err)
	}
	delete(sd, "lm_head.weight")
	delete(sd, "model.embed_tokens.weight")
	sd["model.layers.0.self_attn.v_proj.bias"] = Zeros(nil, 4)
	if err := LoadStateDict(m, sd, false); err != nil {
		t.Fatalf("non-strict load: %v", err)
	}
	if got := StateDict(m)["model.norm.weight"].Data(); !slices.Equal(got, []float32{3, 3, 3, 3}) {
		t.Errorf("non-strict load did not copy: %v", got)
	}
}

func TestReplaceModuleAndSetTraining(t *testing.T) {
	m := tinyModel(1)
	q, err := GetModule(m, "model.layers.1.self_attn.q_proj")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q.(*Linear); !ok {
		t.Fatalf("GetModule returned %T", q)
	}
	repl := NewLinear(nil, 4, 4, false, nil)
	if err := ReplaceModule(m, "model.layers.1.self_attn.q_proj", repl); err != nil {
		t.Fatal(err)
	}
	if got, _ := GetModule(m, "model.layers.1.self_attn.q_proj"); got != Module(repl) {
		t.Fatal("ReplaceModule did not replace")
	}
	if err := ReplaceModule(m, "model.layers.0.mlp.2", repl); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"model.nothing.q_proj", "model.layers.7", "model.layers.x", "", "model.norm.weight"} {
		if err := ReplaceModule(m, bad, repl); err == nil {
			t.Errorf("ReplaceModule(%q): no error", bad)
		}
	}
	if _, err := GetModule(m, "model.layers.01"); err == nil {
		t.Error("GetModule accepted a non-canonical index")
	}
	if err := m.Get("model").(*Dict).Get("layers").(*ModuleList).At(0).(*Dict).Get("mlp").SetChild("1", NewDict()); err == nil {
		t.Error("Sequential accepted a non-Layer child")
	}

	d, _ := GetModule(m, "model.layers.1.mlp.2")
	drop := d.(*Dropout)
	x := Ones(nil, 64)
	if got := drop.Forward(x); got != x {
		t.Fatal("Dropout is not the identity in evaluation mode")
	}
	SetTraining(m, true)
	if !drop.Training() || slices.Equal(drop.Forward(x).Data(), x.Data()) {
		t.Fatal("SetTraining(true) did not enable dropout")
	}
	SetTraining(m, false)
	if drop.Training() {
		t.Fatal("SetTraining(false) left dropout on")
	}
}

func TestLayers(t *testing.T) {
	r := newTestRand(12)
	rng := NewRNG(5)
	l := NewLinear(nil, 9, 7, true, rng)
	if l.InFeatures() != 9 || l.OutFeatures() != 7 || l.Bias.Len() != 7 || !l.Weight.RequiresGrad() {
		t.Fatalf("NewLinear: %v %v", l.Weight, l.Bias)
	}
	bound := 1 / math.Sqrt(9)
	var nonzero bool
	for _, v := range append(l.Weight.Data(), l.Bias.Data()...) {
		if math.Abs(float64(v)) > bound {
			t.Fatalf("init %g outside ±%g", v, bound)
		}
		nonzero = nonzero || v != 0
	}
	if !nonzero {
		t.Fatal("init is all zeros")
	}
	if z := NewLinear(nil, 3, 2, true, nil); slices.ContainsFunc(z.Weight.Data(), func(v float32) bool { return v != 0 }) {
		t.Fatal("nil rng did not give zeros")
	}
	x := r.t(3, 9)
	closeTo(t, "Linear module", l.Forward(x).Data(), f64(LinearOp(x, l.Weight, l.Bias).Data()), 0)

	c := NewConv1D(nil, 9, 5, rng)
	if c.InFeatures() != 9 || c.OutFeatures() != 5 {
		t.Fatalf("Conv1D features %d %d", c.InFeatures(), c.OutFeatures())
	}
	c.Bias.CopyFrom(r.t(5))
	want := refMatMul(refOf(x), refOf(c.Weight), 3, 9, 5, false, false)
	for i := range want {
		want[i] += float64(c.Bias.Data()[i%5])
	}
	closeTo(t, "Conv1D", c.Forward(x).Data(), want, 1e-5)

	e := NewEmbedding(nil, 6, 3, rng)
	if e.NumEmbeddings() != 6 || e.EmbeddingDim() != 3 {
		t.Fatal("Embedding dims")
	}
	if _, err := e.LookupChecked([]int32{6}); err == nil {
		t.Fatal("LookupChecked accepted id 6 of 6")
	}
	got, err := e.LookupChecked([]int32{5, 0}, 1, 2)
	if err != nil || !slices.Equal(got.Shape(), []int{1, 2, 3}) {
		t.Fatalf("LookupChecked: %v %v", got, err)
	}
	closeTo(t, "Lookup", got.Data(), f64(append(e.Weight.Data()[15:18], e.Weight.Data()[0:3]...)), 0)

	cv := NewConv2d(nil, 4, 6, 3, 2, ConvOptions{Groups: 2, Padding: [2]int{1, 0}}, true, rng)
	if !slices.Equal(cv.Weight.Shape(), []int{6, 2, 3, 2}) {
		t.Fatalf("Conv2d weight %v", cv.Weight.Shape())
	}
	xi := r.t(1, 4, 5, 5)
	closeTo(t, "Conv2d module", cv.Forward(xi).Data(), f64(Conv2dOp(xi, cv.Weight, cv.Bias, cv.Opts).Data()), 0)
	c1 := NewConv1d(nil, 4, 2, 3, ConvOptions{}, false, rng)
	if !slices.Equal(c1.Weight.Shape(), []int{2, 4, 3}) || c1.Bias != nil || len(c1.Params()) != 1 {
		t.Fatalf("Conv1d %v", c1.Weight.Shape())
	}
	if got := c1.Forward(r.t(4, 6)).Shape(); !slices.Equal(got, []int{2, 4}) {
		t.Fatalf("Conv1d unbatched output %v", got)
	}

	ln := NewLayerNorm(nil, 9, 1e-5)
	closeTo(t, "LayerNorm module", ln.Forward(x).Data(), f64(LayerNormOp(x, nil, nil, 1e-5).Data()), 1e-6)
	rms := NewRMSNorm(nil, 9, 1e-6)
	closeTo(t, "RMSNorm module", rms.Forward(x).Data(), f64(RMSNormOp(x, nil, 1e-6).Data()), 1e-6)

	for name, op := range map[string]func(*Tensor) *Tensor{"relu": ReLU, "gelu": GELU, "gelu_new": GELUTanh, "silu": SiLU, "swish": SiLU, "tanh": Tanh, "sigmoid": Sigmoid} {
		a, err := NewActivation(name)
		if err != nil {
			t.Fatal(err)
		}
		closeTo(t, name, a.Forward(x).Data(), f64(op(x).Data()), 0)
	}
	if _, err := NewActivation("nope"); err == nil {
		t.Fatal("unknown activation accepted")
	}
	if got := (Identity{}).Forward(x); got != x {
		t.Fatal("Identity")
	}
	seq := NewSequential(l, &Activation{Name: "relu"})
	closeTo(t, "Sequential", seq.Forward(x).Data(), f64(ReLU(l.Forward(x)).Data()), 0)
}

func TestDictOrderAndParams(t *testing.T) {
	d := NewDict()
	d.Add("b", Identity{})
	d.Add("a", Identity{})
	d.Add("b", NewRMSNorm(nil, 2, 1e-6)) // replaces in place
	d.AddParam("scale", Ones(nil, 1))
	if !slices.Equal(d.Names(), []string{"b", "a"}) || d.Len() != 2 {
		t.Fatalf("names %v", d.Names())
	}
	if keys := StateDictKeys(d); !slices.Equal(keys, []string{"scale", "b.weight"}) {
		t.Fatalf("keys %v", keys)
	}
	d.Delete("b")
	if !slices.Equal(d.Names(), []string{"a"}) || d.Get("b") != nil {
		t.Fatalf("after Delete: %v", d.Names())
	}
	if err := d.SetChild("zzz", Identity{}); err == nil {
		t.Fatal("SetChild of a missing name succeeded")
	}
}
