package poly

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// refForward is PEFT's Poly Linear forward in float64, written from
// layer.py and router.py (eval mode): base(x) + x A_w B_w / r per batch row.
func refForward(l *Layer, a *adapter, x []float64, bs, seq int, tasks []int32) []float64 {
	in, out := l.in, l.out
	w := layertest.To64(l.base.Weight.Data())
	bias := layertest.To64(l.base.Bias.Data())
	A, B, lg := layertest.To64(a.a.Data()), layertest.To64(a.b.Data()), layertest.To64(a.logits.Data())
	q, s, r := a.splits, a.skills, a.r
	di, do := in/q, out/q
	res := make([]float64, bs*seq*out)
	for b := range bs {
		// mixing weights [q, s]
		mw := make([]float64, q*s)
		for qi := range q {
			var sum float64
			for si := range s {
				v := 1 / (1 + math.Exp(-lg[int(tasks[b])*q*s+qi*s+si]))
				mw[qi*s+si] = v
				sum += v
			}
			for si := range s {
				mw[qi*s+si] /= sum + eps
			}
		}
		// Am [in, r] with row qi*di+d; Bm [r, out] with column qi*do+d.
		Am := make([]float64, in*r)
		Bm := make([]float64, r*out)
		for qi := range q {
			for si := range s {
				m := mw[qi*s+si]
				for d := range di {
					for k := range r {
						Am[(qi*di+d)*r+k] += m * A[((qi*s+si)*di+d)*r+k]
					}
				}
				for k := range r {
					for d := range do {
						Bm[k*out+qi*do+d] += m * B[((qi*s+si)*r+k)*do+d]
					}
				}
			}
		}
		for t := range seq {
			xr := x[(b*seq+t)*in : (b*seq+t+1)*in]
			h := make([]float64, r)
			for k := range r {
				for i := range in {
					h[k] += xr[i] * Am[i*r+k]
				}
			}
			for o := range out {
				v := bias[o]
				for i := range in {
					v += xr[i] * w[o*in+i]
				}
				for k := range r {
					v += h[k] * Bm[k*out+o] / float64(r)
				}
				res[(b*seq+t)*out+o] = v
			}
		}
	}
	return res
}

func newTestLayer(t *testing.T, in, out int, cfg *Config) *Layer {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	// Non-trivial banks and router.
	a.b.CopyFrom(layertest.Rand(rng, 0.5, a.b.Shape()...))
	a.logits.CopyFrom(layertest.Rand(rng, 1, a.logits.Shape()...))
	return l
}

func TestForwardReference(t *testing.T) {
	for _, c := range []struct{ r, tasks, skills, splits int }{{2, 3, 4, 1}, {3, 2, 2, 2}, {1, 1, 1, 1}, {2, 4, 3, 3}} {
		cfg := NewConfig()
		cfg.R, cfg.NTasks, cfg.NSkills, cfg.NSplits = c.r, c.tasks, c.skills, c.splits
		l := newTestLayer(t, 6, 12, cfg)
		nn.SetTraining(l, false)
		const bs, seq = 3, 2
		x := layertest.Rand(rand.New(rand.NewPCG(5, 6)), 1, bs, seq, 6)
		tasks := []int32{int32(c.tasks - 1), 0, int32(c.tasks / 2)}
		if err := l.SetTaskIDs(tasks); err != nil {
			t.Fatal(err)
		}
		a, _ := l.Get("default")
		got := l.Forward(x)
		if sh := got.Shape(); len(sh) != 3 || sh[0] != bs || sh[1] != seq || sh[2] != 12 {
			t.Fatalf("%+v: shape %v", c, sh)
		}
		if err := layertest.Close(got.Data(), refForward(l, a, layertest.To64(x.Data()), bs, seq, tasks), 1e-5, 1e-4); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

func TestInitNoOpAndTaskIDs(t *testing.T) {
	cfg := NewConfig()
	cfg.NTasks = 2
	rng := rand.New(rand.NewPCG(1, 1))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 4, 8)}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	a, _ := l.Get("default")
	if sh := a.a.Shape(); sh[0] != 1 || sh[1] != 4 || sh[2] != 8 || sh[3] != 8 {
		t.Fatalf("poly_lora_A shape %v", sh)
	}
	for _, v := range a.logits.Data() {
		if math.Abs(float64(v)) > 1e-3 {
			t.Fatalf("router logit %v outside [-1e-3, 1e-3]", v)
		}
	}
	bound := 1 / math.Sqrt(8)
	for _, v := range a.a.Data() {
		if math.Abs(float64(v)) > bound {
			t.Fatalf("poly_lora_A entry %v outside the Kaiming bound %v", v, bound)
		}
	}
	if !l.NeedsTaskIDs() {
		t.Fatal("an active Poly layer must need task ids")
	}
	if err := l.SetTaskIDs([]int32{2}); err == nil || !strings.Contains(err.Error(), "only 2 tasks") {
		t.Fatalf("out-of-range task id: %v", err)
	}
	x := layertest.Rand(rng, 1, 2, 3, 8)
	if err := l.SetTaskIDs([]int32{1, 0}); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(l.Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 1e-6, 0); err != nil {
		t.Fatalf("init_weights=true is not a no-op: %v", err)
	}
	l.SetDisabled(true)
	if l.NeedsTaskIDs() {
		t.Fatal("a disabled layer needs no task ids")
	}
}

func TestGradCheck(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.NTasks, cfg.NSkills, cfg.NSplits = 2, 3, 3, 2
	l := newTestLayer(t, 4, 6, cfg)
	nn.SetTraining(l, false)
	if err := l.SetTaskIDs([]int32{2, 0}); err != nil {
		t.Fatal(err)
	}
	a, _ := l.Get("default")
	x := layertest.Rand(rand.New(rand.NewPCG(7, 8)), 1, 2, 3, 4)
	layertest.Grad(t, l, x, []*nn.Tensor{a.a, a.b, a.logits})
}

func TestTrainingRelaxedBernoulli(t *testing.T) {
	cfg := NewConfig()
	cfg.NTasks, cfg.NSkills = 2, 3
	l := newTestLayer(t, 4, 4, cfg)
	a, _ := l.Get("default")
	nn.SetTraining(l, true)
	w := l.mixingWeights(a, []int32{0, 1, 1})
	nn.SetTraining(l, false)
	we := l.mixingWeights(a, []int32{0, 1, 1})
	d, de := layertest.To64(w.Data()), layertest.To64(we.Data())
	differ := false
	for i := 0; i < len(d); i += 3 {
		sum := d[i] + d[i+1] + d[i+2]
		if math.Abs(sum-1) > 1e-5 {
			t.Fatalf("training mixing weights sum to %v", sum)
		}
		for j := range 3 {
			if d[i+j] <= 0 {
				t.Fatalf("training mixing weight %v not positive", d[i+j])
			}
			if math.Abs(d[i+j]-de[i+j]) > 1e-6 {
				differ = true
			}
		}
	}
	if !differ {
		t.Fatal("training mixing weights equal the eval ones: no relaxed Bernoulli noise")
	}
	// Gradients reach the router through the sample.
	a.logits.ZeroGrad()
	nn.SetTraining(l, true)
	nn.SumAll(nn.Square(l.mixingWeights(a, []int32{0, 1}))).Backward()
	if g := a.logits.Grad(); g == nil {
		t.Fatal("no gradient on the router logits in training")
	}
}

func TestTwoAdaptersAndMerge(t *testing.T) {
	cfg := NewConfig()
	cfg.NTasks = 2
	l := newTestLayer(t, 4, 4, cfg)
	cfg2 := NewConfig()
	cfg2.R, cfg2.NTasks, cfg2.NSkills = 3, 3, 2
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: l, Config: cfg2, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	o, _ := l.Get("other")
	o.b.CopyFrom(layertest.Rand(rand.New(rand.NewPCG(9, 9)), 0.5, o.b.Shape()...))
	nn.SetTraining(l, false)
	x := layertest.Rand(rand.New(rand.NewPCG(2, 2)), 1, 2, 1, 4)
	tasks := []int32{1, 0}
	a, _ := l.Get("default")
	ra := refForward(l, a, layertest.To64(x.Data()), 2, 1, tasks)
	rb := refForward(l, o, layertest.To64(x.Data()), 2, 1, tasks)
	base := layertest.To64(l.base.Forward(x).Data())
	want := make([]float64, len(ra))
	for i := range want {
		want[i] = ra[i] + rb[i] - base[i]
	}
	l.SetActive([]string{"default", "other"})
	if err := l.SetTaskIDs(tasks); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-4); err != nil {
		t.Fatal(err)
	}
	if err := l.SetTaskIDs([]int32{2, 0}); err == nil || !strings.Contains(err.Error(), `"default"`) {
		t.Fatalf("task 2 of a 2-task adapter: %v", err)
	}
	if err := l.Merge(nil, false); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("Merge: %v", err)
	}
	if len(l.Merged()) != 0 || l.Unmerge() != nil {
		t.Fatal("Unmerge after a refused merge")
	}
	if err := l.Delete("other"); err != nil {
		t.Fatal(err)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.R = 0 }, "r should"},
		{func(c *Config) { c.PolyType = "mhr" }, "poly_type"},
		{func(c *Config) { c.NTasks = 0 }, "n_tasks"},
		{func(c *Config) { c.NSkills = -1 }, "n_skills"},
		{func(c *Config) { c.NSplits = 0 }, "n_splits"},
	} {
		cfg := NewConfig()
		c.mod(cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error naming %s, got %v", c.want, err)
		}
	}
	cfg := NewConfig()
	cfg.NSplits = 3
	rng := rand.New(rand.NewPCG(1, 1))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 4, 8)}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"}); err == nil || !strings.Contains(err.Error(), "n_splits") {
		t.Fatalf("n_splits not dividing the features: %v", err)
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "emb", Module: &nn.Embedding{Weight: layertest.Rand(rng, 1, 3, 2)}, Config: NewConfig(), Adapter: "default"}); err == nil || !strings.Contains(err.Error(), "emb") {
		t.Fatalf("embedding: %v", err)
	}
}
