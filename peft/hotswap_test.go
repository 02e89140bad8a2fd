package peft_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// llamaDims are the golden LLaMA cases' dimensions.
var llamaDims = map[string]float64{"heads": 4, "hidden": 32, "intermediate": 64, "kv_heads": 2, "layers": 2, "rms_eps": 1e-6, "rope_theta": 10000, "vocab": 64}

// hsLlama builds a fresh LLaMA of the golden cases' size; every call with
// the same seed gives the same weights.
func hsLlama(t testing.TB) models.Model {
	t.Helper()
	m, err := fixtures.Build(nil, "llama", llamaDims, 7)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// llamaInput is a [batch, 6] batch of token ids.
func llamaInput(batch int) models.Input {
	ids := make([]int32, batch*6)
	for i := range ids {
		ids[i] = int32((i*7 + 3) % 64)
	}
	return models.Input{IDs: ids, Shape: []int{batch, 6}}
}

// loraSpec describes an adapter saveLoRA writes.
type loraSpec struct {
	r       int
	alpha   float64
	targets []string
	pattern map[string]int
	rslora  bool
	seed    uint64
}

// saveLoRA writes a LoRA adapter with random (non-zero) weights for the
// tiny LLaMA to a new folder and returns it.
func saveLoRA(t testing.TB, s loraSpec) string {
	t.Helper()
	c := lora.NewConfig()
	c.R, c.Alpha, c.UseRSLoRA = s.r, s.alpha, s.rslora
	c.TargetModules = tuners.Names(s.targets...)
	if s.pattern != nil {
		c.RankPattern = s.pattern
	}
	m, err := peft.New(hsLlama(t), c)
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, peft.DefaultAdapterName, s.seed)
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// layerPointers maps each adapter layer's path to the layer.
func layerPointers(t testing.TB, m *peft.Model) map[string]tuners.Layer {
	t.Helper()
	out := map[string]tuners.Layer{}
	err := nn.Walk(m.Base(), func(path string, mod nn.Module) error {
		if l, ok := mod.(tuners.Layer); ok {
			out[path] = l
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func forward(t testing.TB, m *peft.Model, in models.Input) *nn.Tensor {
	t.Helper()
	out, err := m.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHotSwapMatchesFreshLoad swaps adapters of the same, smaller and
// (after PrepareHotSwap) larger rank, subsets of targets and other scalings
// into a loaded adapter and compares with loading the swapped-in adapter
// fresh: same outputs, same layer objects, same adapter tensors.
func TestHotSwapMatchesFreshLoad(t *testing.T) {
	qv := []string{"q_proj", "v_proj"}
	first := loraSpec{r: 8, alpha: 16, targets: qv, seed: 1}
	cases := []struct {
		name    string
		prepare int
		next    loraSpec
	}{
		{"same rank", 0, loraSpec{r: 8, alpha: 16, targets: qv, seed: 2}},
		{"other alpha", 0, loraSpec{r: 8, alpha: 3, targets: qv, seed: 3}},
		{"smaller rank", 0, loraSpec{r: 4, alpha: 8, targets: qv, seed: 4}},
		{"subset of targets", 0, loraSpec{r: 8, alpha: 16, targets: []string{"q_proj"}, seed: 5}},
		{"rank pattern", 0, loraSpec{r: 8, alpha: 5, targets: qv, pattern: map[string]int{"v_proj": 2}, seed: 6}},
		{"prepared larger rank", 16, loraSpec{r: 16, alpha: 4, targets: qv, seed: 7}},
		{"prepared smaller rank", 16, loraSpec{r: 2, alpha: 4, targets: qv, seed: 8}},
	}
	firstDir := saveLoRA(t, first)
	in := llamaInput(2)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nextDir := saveLoRA(t, tc.next)
			m, err := peft.Load(hsLlama(t), firstDir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.prepare > 0 {
				if err := m.PrepareHotSwap(tc.prepare); err != nil {
					t.Fatal(err)
				}
			}
			before := layerPointers(t, m)
			tensorsBefore := map[string][]*nn.Tensor{}
			for p, l := range before {
				for _, q := range l.AdapterParams(peft.DefaultAdapterName) {
					tensorsBefore[p] = append(tensorsBefore[p], q.T)
				}
			}
			if err := m.HotSwapAdapter(nextDir, peft.DefaultAdapterName); err != nil {
				t.Fatal(err)
			}
			after := layerPointers(t, m)
			if len(after) != len(before) {
				t.Fatalf("%d adapter layers after the swap, %d before", len(after), len(before))
			}
			for p, l := range before {
				if after[p] != l {
					t.Errorf("layer %q was replaced by the swap", p)
				}
			}
			for p, ts := range tensorsBefore {
				for i, q := range before[p].AdapterParams(peft.DefaultAdapterName) {
					if q.T != ts[i] {
						t.Errorf("%s.%s is a new tensor after the swap", p, q.Name)
					}
				}
			}
			got := forward(t, m, in)
			fresh, err := peft.Load(hsLlama(t), nextDir)
			if err != nil {
				t.Fatal(err)
			}
			want := forward(t, fresh, in)
			if d := maxDiff(got, want); d > 1e-5 {
				t.Errorf("hot-swapped output differs from a fresh load by %g", d)
			}
			base := baseOutput(t, fresh, in)
			if d := maxDiff(got, base); d < 1e-4 {
				t.Errorf("swapped adapter has no effect (diff to base %g)", d)
			}
		})
	}
}

// baseOutput is m's output with its adapters disabled.
func baseOutput(t testing.TB, m *peft.Model, in models.Input) *nn.Tensor {
	t.Helper()
	var out *nn.Tensor
	if err := m.DisableAdapters(func() error {
		var err error
		out, err = m.Forward(in)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPrepareHotSwapKeepsOutputs pads adapters of several ranks (one with
// rsLoRA, one with a rank pattern) and checks that outputs, unmerged and
// merged, do not change and that the padded ranks are reported.
func TestPrepareHotSwapKeepsOutputs(t *testing.T) {
	specs := []loraSpec{
		{r: 4, alpha: 8, targets: []string{"q_proj", "v_proj"}, seed: 11},
		{r: 3, alpha: 5, targets: []string{"o_proj", "up_proj"}, rslora: true, seed: 12},
		{r: 6, alpha: 2, targets: []string{"q_proj", "down_proj"}, pattern: map[string]int{"down_proj": 2}, seed: 13},
	}
	in := llamaInput(3)
	for i, s := range specs {
		m, err := peft.Load(hsLlama(t), saveLoRA(t, s))
		if err != nil {
			t.Fatal(err)
		}
		want := forward(t, m, in)
		if err := m.PrepareHotSwap(12); err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(forward(t, m, in), want); d > 1e-5 {
			t.Errorf("spec %d: padding changed the output by %g", i, d)
		}
		for p, l := range layerPointers(t, m) {
			if r := l.(lora.AdapterLayer).Rank(peft.DefaultAdapterName); r != 12 {
				t.Errorf("spec %d: %s has rank %d after padding to 12", i, p, r)
			}
		}
		if err := m.Merge(); err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(forward(t, m, in), want); d > 1e-5 {
			t.Errorf("spec %d: merged padded adapter differs by %g", i, d)
		}
		if err := m.PrepareHotSwap(12); err == nil {
			t.Errorf("spec %d: padding a merged adapter succeeded", i)
		}
	}
}

// TestHotSwapErrors checks that incompatible adapters are refused with an
// error naming the key or field, and that a refused swap leaves the model
// unchanged.
func TestHotSwapErrors(t *testing.T) {
	qv := []string{"q_proj", "v_proj"}
	firstDir := saveLoRA(t, loraSpec{r: 4, alpha: 8, targets: qv, seed: 21})
	in := llamaInput(2)
	cases := []struct {
		name    string
		dir     func(t *testing.T) string
		adapter string
		want    string
	}{
		{"larger rank", func(t *testing.T) string {
			return saveLoRA(t, loraSpec{r: 8, alpha: 8, targets: qv, seed: 22})
		}, "default", "model.layers.0.self_attn.q_proj.lora_A.weight"},
		{"new target", func(t *testing.T) string {
			return saveLoRA(t, loraSpec{r: 4, alpha: 8, targets: []string{"q_proj", "k_proj"}, seed: 23})
		}, "default", "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"},
		{"rslora differs", func(t *testing.T) string {
			return saveLoRA(t, loraSpec{r: 4, alpha: 8, targets: qv, rslora: true, seed: 24})
		}, "default", "use_rslora"},
		{"no such adapter", func(t *testing.T) string {
			return saveLoRA(t, loraSpec{r: 4, alpha: 8, targets: qv, seed: 25})
		}, "other", `no adapter "other"`},
		{"no folder", func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }, "default", "missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := peft.Load(hsLlama(t), firstDir)
			if err != nil {
				t.Fatal(err)
			}
			want := forward(t, m, in)
			err = m.HotSwapAdapter(tc.dir(t), tc.adapter)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if d := maxDiff(forward(t, m, in), want); d != 0 {
				t.Errorf("a refused swap changed the output by %g", d)
			}
		})
	}
	t.Run("merged", func(t *testing.T) {
		m, err := peft.Load(hsLlama(t), firstDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Merge(); err != nil {
			t.Fatal(err)
		}
		if err := m.HotSwapAdapter(firstDir, "default"); err == nil || !strings.Contains(err.Error(), "merged") {
			t.Fatalf("swapping a merged adapter: %v", err)
		}
	})
	t.Run("prepare smaller target", func(t *testing.T) {
		m, err := peft.Load(hsLlama(t), firstDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.PrepareHotSwap(2); err == nil || !strings.Contains(err.Error(), "larger than the target rank") {
			t.Fatalf("padding to a smaller rank: %v", err)
		}
	})
}

// TestHotSwapMixedModel hot-swaps the LoRA adapter of a mixed model whose
// modules also carry a LoHa adapter.
func TestHotSwapMixedModel(t *testing.T) {
	qv := []string{"q_proj", "v_proj"}
	first := saveLoRA(t, loraSpec{r: 4, alpha: 8, targets: qv, seed: 31})
	next := saveLoRA(t, loraSpec{r: 2, alpha: 3, targets: qv, seed: 32})
	build := func(dir string) *peft.Model {
		m, err := peft.LoadMixed(hsLlama(t), dir, peft.AdapterName("lo"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.AddAdapter(mixedAdapters[1].cfg(), peft.AdapterName("ha")); err != nil {
			t.Fatal(err)
		}
		perturbSmall(t, m, "ha", 33)
		if err := m.SetAdapter("lo", "ha"); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := build(first)
	if err := m.PrepareHotSwap(8); err != nil {
		t.Fatal(err)
	}
	if err := m.HotSwapAdapter(next, "lo"); err != nil {
		t.Fatal(err)
	}
	in := llamaInput(2)
	if d := maxDiff(forward(t, m, in), forward(t, build(next), in)); d > 1e-5 {
		t.Errorf("hot-swapped mixed model differs from a fresh one by %g", d)
	}
	if err := m.HotSwapAdapter(next, "ha"); err == nil || !strings.Contains(err.Error(), "only LoRA") {
		t.Errorf("hot-swapping the LoHa adapter: %v", err)
	}
}
