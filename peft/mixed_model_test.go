package peft_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adalora"
	"github.com/gopeft/gopeft/tuners/ia3"
	"github.com/gopeft/gopeft/tuners/loha"
	"github.com/gopeft/gopeft/tuners/lokr"
	"github.com/gopeft/gopeft/tuners/lora"
	"github.com/gopeft/gopeft/tuners/oft"
	"github.com/gopeft/gopeft/tuners/shira"
)

// mixedAdapter is one adapter of the mixed-model tests.
type mixedAdapter struct {
	name string
	cfg  func() tuners.Config
}

// mixedAdapters are adapters of five methods on overlapping modules of the
// tiny LLaMA (q_proj carries four methods, v_proj three).
var mixedAdapters = []mixedAdapter{
	{"lo", func() tuners.Config {
		c := lora.NewConfig()
		c.R, c.Alpha, c.TargetModules = 4, 8, tuners.Names("q_proj", "v_proj", "embed_tokens")
		return c
	}},
	{"ha", func() tuners.Config {
		c := loha.NewConfig()
		c.R, c.Alpha, c.TargetModules = 2, 4, tuners.Names("q_proj", "k_proj")
		return c
	}},
	{"kr", func() tuners.Config {
		c := lokr.NewConfig()
		c.R, c.Alpha, c.TargetModules = 2, 3, tuners.Names("q_proj", "v_proj", "down_proj")
		return c
	}},
	{"sh", func() tuners.Config {
		c := shira.NewConfig()
		c.R, c.TargetModules = 2, tuners.Names("q_proj", "o_proj")
		return c
	}},
	{"ada", func() tuners.Config {
		c := adalora.NewConfig()
		c.InitR, c.TargetR, c.TotalStep, c.TargetModules = 4, 2, 100, tuners.Names("v_proj", "up_proj", "q_proj")
		return c
	}},
}

// newMixedLlama builds the tiny LLaMA with every mixedAdapter added (random
// weights, frozen), all active.
func newMixedLlama(t *testing.T) *peft.Model {
	t.Helper()
	var m *peft.Model
	var names []string
	for i, a := range mixedAdapters {
		var err error
		if m == nil {
			m, err = peft.NewMixed(hsLlama(t), a.cfg(), peft.AdapterName(a.name), peft.Trainable(false))
		} else {
			err = m.AddAdapter(a.cfg(), peft.AdapterName(a.name), peft.Trainable(false))
		}
		if err != nil {
			t.Fatalf("adding %s: %v", a.name, err)
		}
		perturbSmall(t, m, a.name, uint64(60+i))
		names = append(names, a.name)
	}
	if err := m.SetAdapter(names...); err != nil {
		t.Fatal(err)
	}
	m.SetTraining(false)
	return m
}

// perturbSmall gives an adapter's tensors small random values (AdaLoRA's
// ranknum excepted).
func perturbSmall(t *testing.T, m *peft.Model, adapter string, seed uint64) {
	t.Helper()
	sd, err := m.StateDict(adapter)
	if err != nil {
		t.Fatal(err)
	}
	rng := nn.NewRNG(seed)
	for _, k := range sortedKeys(sd) {
		if strings.Contains(k, "ranknum") {
			continue
		}
		tt := sd[k]
		tt.CopyFrom(nn.Normal(tt.Backend(), rng, 0, 0.3, tt.Shape()...))
	}
}

func sortedKeys(m map[string]*nn.Tensor) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// baseWeights returns the base model's weights by name (no adapters).
func baseWeights(t *testing.T, root nn.Module) map[string][]float64 {
	t.Helper()
	out := map[string][]float64{}
	for k, v := range nn.StateDict(root) {
		d := v.Data()
		f := make([]float64, len(d))
		for i, x := range d {
			f[i] = float64(x)
		}
		out[k] = f
	}
	return out
}

// TestMixedModelCompositional checks a model mixing LoRA, LoHa, LoKr,
// SHiRA and AdaLoRA against the composition PEFT's nested wrappers
// compute: the base model whose weights are W plus the sum of every
// method's weight update, each update taken (in float64) from that adapter
// merged alone into a fresh base. It then checks merging, unmerging,
// MergeAndUnload, saving every adapter to its own folder and loading them
// back, and deleting.
func TestMixedModelCompositional(t *testing.T) {
	m := newMixedLlama(t)
	in := llamaInput(3)
	got := forward(t, m, in)

	// Layers are stacks: q_proj holds four methods.
	var q *tuners.Stack
	_ = nn.Walk(m.Base(), func(p string, mod nn.Module) error {
		if s, ok := mod.(*tuners.Stack); ok && strings.HasSuffix(p, "layers.0.self_attn.q_proj") {
			q = s
		}
		return nil
	})
	if q == nil || len(q.Layers()) != 5 {
		t.Fatalf("q_proj is %v, want a stack of five method layers", q)
	}

	dir := t.TempDir()
	var names []string
	for _, a := range mixedAdapters {
		names = append(names, a.name)
	}
	if err := m.Save(dir, peft.SaveAdapters(names...)); err != nil {
		t.Fatal(err)
	}
	folder := func(n string) string { return filepath.Join(dir, n) }

	want := composedOutput(t, folder, names, in)
	base := baseOutput(t, m, in)
	if d := maxDiff(got, base); d < 1e-3 {
		t.Fatalf("the adapters change nothing (diff %g)", d)
	}
	if d := maxDiff(got, want); d > 2e-4 {
		t.Errorf("mixed output differs from base + each method's update by %g", d)
	}

	// Merged forward equals the unmerged one; unmerging restores it.
	if err := m.Merge(); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(forward(t, m, in), got); d > 2e-4 {
		t.Errorf("merged mixed output differs by %g", d)
	}
	if err := m.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(forward(t, m, in), got); d > 1e-4 {
		t.Errorf("after unmerging the output differs by %g", d)
	}

	// Saved adapters load back into a fresh mixed model.
	back, err := peft.LoadMixed(hsLlama(t), folder(names[0]), peft.AdapterName(names[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		if err := back.LoadAdapter(folder(n), n); err != nil {
			t.Fatalf("loading %s into the mixed model: %v", n, err)
		}
	}
	if err := back.SetAdapter(names...); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(forward(t, back, in), got); d > 1e-5 {
		t.Errorf("reloaded mixed model differs by %g", d)
	}

	// A subset of active adapters: only those methods' updates.
	if err := back.SetAdapter("lo", "kr"); err != nil {
		t.Fatal(err)
	}
	sub := forward(t, back, in)
	if d := maxDiff(sub, got); d < 1e-4 {
		t.Errorf("deactivating adapters changed nothing (diff %g)", d)
	}

	// MergeAndUnload gives a plain model with the same output.
	plain, err := m.MergeAndUnload()
	if err != nil {
		t.Fatal(err)
	}
	_ = nn.Walk(plain, func(p string, mod nn.Module) error {
		if _, ok := mod.(tuners.Layer); ok {
			t.Errorf("%s is still adapted after MergeAndUnload", p)
		}
		return nil
	})
	pm, ok := plain.(models.Model)
	if !ok {
		t.Fatalf("MergeAndUnload returned a %T", plain)
	}
	out, err := pm.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(out, got); d > 2e-4 {
		t.Errorf("merged and unloaded model differs by %g", d)
	}

	// Deleting every other adapter leaves LoRA alone, as if loaded alone.
	for _, n := range names[1:] {
		if err := back.DeleteAdapter(n); err != nil {
			t.Fatal(err)
		}
	}
	alone, err := peft.Load(hsLlama(t), folder("lo"))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(forward(t, back, in), forward(t, alone, in)); d > 1e-5 {
		t.Errorf("after deleting the others the LoRA adapter's output differs by %g", d)
	}
}

// TestMixedModelRefuses checks what a mixed model does not take, and that a
// plain model still refuses a second method.
func TestMixedModelRefuses(t *testing.T) {
	m, err := peft.NewMixed(hsLlama(t), mixedAdapters[0].cfg(), peft.AdapterName("lo"))
	if err != nil {
		t.Fatal(err)
	}
	dora := lora.NewConfig()
	dora.UseDoRA, dora.TargetModules = true, tuners.Names("q_proj")
	o := oft.NewConfig()
	o.TargetModules = tuners.Names("q_proj")
	ia := ia3.NewConfig()
	ia.TargetModules, ia.FeedforwardModules = tuners.Names("q_proj"), tuners.Names()
	cases := []struct {
		name string
		cfg  tuners.Config
		want string
	}{
		{"dora", dora, "DoRA"},
		{"oft", o, "OFT"},
		{"ia3", ia, "IA3"},
	}
	in := llamaInput(1)
	before := forward(t, m, in)
	for _, tc := range cases {
		if err := m.AddAdapter(tc.cfg, peft.AdapterName(tc.name)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("adding %s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	if d := maxDiff(forward(t, m, in), before); d != 0 {
		t.Errorf("refused adapters changed the output by %g", d)
	}
	if got := m.Adapters(); len(got) != 1 {
		t.Errorf("adapters %q after refusals", got)
	}

	plain, err := peft.New(hsLlama(t), mixedAdapters[0].cfg())
	if err != nil {
		t.Fatal(err)
	}
	if plain.Mixed() || !m.Mixed() {
		t.Errorf("Mixed() = %v for New, %v for NewMixed", plain.Mixed(), m.Mixed())
	}
	if err := plain.AddAdapter(mixedAdapters[1].cfg(), peft.AdapterName("ha")); err == nil || !strings.Contains(err.Error(), "mixing methods") {
		t.Errorf("a plain model took a LoHa adapter next to LoRA: %v", err)
	}
}

// composedOutput is the output PEFT's nested wrappers give for the adapter
// folders' adapters stacked in order (the first of each module possibly
// not additive): the base model whose weights are W plus the sum over the
// adapters of (W merged with that adapter alone) - W, in float64.
func composedOutput(t *testing.T, folder func(string) string, names []string, in models.Input) *nn.Tensor {
	t.Helper()
	w0 := baseWeights(t, hsLlama(t))
	sum := map[string][]float64{}
	for k, v := range w0 {
		sum[k] = append([]float64(nil), v...)
	}
	for _, n := range names {
		single, err := peft.Load(hsLlama(t), folder(n))
		if err != nil {
			t.Fatalf("loading %s alone: %v", n, err)
		}
		merged, err := single.MergeAndUnload()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range baseWeights(t, merged) {
			for i := range v {
				sum[k][i] += v[i] - w0[k][i]
			}
		}
	}
	ref := hsLlama(t)
	for k, tt := range nn.StateDict(ref) {
		d := make([]float32, len(sum[k]))
		for i, v := range sum[k] {
			d[i] = float32(v)
		}
		tt.CopyFromHost(d)
	}
	want, err := ref.(models.Model).Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// TestMixedModelOFTFirst stacks LoRA and LoKr on OFT (OFT first, PEFT's
// innermost wrapper) and checks the output, merged and unmerged, against
// the composition.
func TestMixedModelOFTFirst(t *testing.T) {
	oc := oft.NewConfig()
	oc.R, oc.BlockSize, oc.TargetModules = 0, 8, tuners.Names("q_proj", "v_proj")
	lc := lora.NewConfig()
	lc.R, lc.Alpha, lc.TargetModules = 4, 8, tuners.Names("q_proj")
	kc := lokr.NewConfig()
	kc.R, kc.Alpha, kc.TargetModules = 2, 3, tuners.Names("v_proj", "k_proj")
	m, err := peft.NewMixed(hsLlama(t), oc, peft.AdapterName("oft"), peft.Trainable(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddAdapter(lc, peft.AdapterName("lo"), peft.Trainable(false)); err != nil {
		t.Fatal(err)
	}
	if err := m.AddAdapter(kc, peft.AdapterName("kr"), peft.Trainable(false)); err != nil {
		t.Fatal(err)
	}
	names := []string{"oft", "lo", "kr"}
	for i, n := range names {
		perturbSmall(t, m, n, uint64(80+i))
	}
	if err := m.SetAdapter(names...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.Save(dir, peft.SaveAdapters(names...)); err != nil {
		t.Fatal(err)
	}
	in := llamaInput(2)
	got := forward(t, m, in)
	want := composedOutput(t, func(n string) string { return filepath.Join(dir, n) }, names, in)
	if d := maxDiff(got, want); d > 2e-4 {
		t.Errorf("OFT-first mixed output differs from the composition by %g", d)
	}
	if d := maxDiff(got, baseOutput(t, m, in)); d < 1e-3 {
		t.Errorf("the adapters change nothing (diff %g)", d)
	}
	if err := m.Merge(); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(forward(t, m, in), got); d > 2e-4 {
		t.Errorf("merged OFT-first mixed output differs by %g", d)
	}

	// Unload (without merging) gives the base model back.
	back, err := peft.LoadMixed(hsLlama(t), filepath.Join(dir, "oft"), peft.AdapterName("oft"))
	if err != nil {
		t.Fatal(err)
	}
	if err := back.LoadAdapter(filepath.Join(dir, "lo"), "lo"); err != nil {
		t.Fatal(err)
	}
	plain, err := back.Unload()
	if err != nil {
		t.Fatal(err)
	}
	out, err := plain.(models.Model).Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	want0, err := hsLlama(t).Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(out, want0); d != 0 {
		t.Errorf("the unloaded model differs from the base model by %g", d)
	}
}
