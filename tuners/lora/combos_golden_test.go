package lora_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// combosCase is the part of a golden case.json the combos check reads.
type combosCase struct {
	AdapterNames []string          `json:"adapter_names"`
	AdapterDirs  map[string]string `json:"adapter_dirs"`
	Checks       []string          `json:"checks"`
	Atol         float64           `json:"atol"`
	Rtol         float64           `json:"rtol"`
	Combos       []struct {
		Name     string    `json:"name"`
		Adapters []string  `json:"adapters"`
		Weights  []float64 `json:"weights"`
		Type     string    `json:"combination_type"`
		Density  float64   `json:"density"`
	} `json:"combos"`
}

// goldenDir is $GOPEFT_GOLDEN_DIR or shared/golden beside the repository.
func goldenDir(t *testing.T) string {
	if d := os.Getenv("GOPEFT_GOLDEN_DIR"); d != "" {
		return d
	}
	d := filepath.Join("..", "..", "..", "shared", "golden")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("no golden suite at %s (set GOPEFT_GOLDEN_DIR): %v", d, err)
	}
	return d
}

// TestGoldenCombos replays PEFT's add_weighted_adapter calls of every golden
// case with a "combos" check (lora_mlp_multi_adapter) and compares the
// combined adapters' outputs and weights with what PEFT recorded. svd is
// compared through B A (singular-vector signs are arbitrary) and the
// output; dare_linear's random masks cannot be replayed, so its weights are
// checked for the structure both implementations must produce, and PEFT's
// recorded dare adapter is loaded and run.
func TestGoldenCombos(t *testing.T) {
	dir := goldenDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, e := range entries {
		cdir := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(filepath.Join(cdir, "case.json"))
		if err != nil || !strings.HasPrefix(e.Name(), "lora") {
			continue
		}
		var c combosCase
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if !slices.Contains(c.Checks, "combos") {
			continue
		}
		ran++
		t.Run(e.Name(), func(t *testing.T) { runCombos(t, cdir, &c) })
	}
	if ran == 0 {
		t.Fatal("no golden case has a combos check")
	}
}

func runCombos(t *testing.T, dir string, c *combosCase) {
	io, _, err := safetensors.ReadAll(filepath.Join(dir, "io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	in := io["input"]
	input := models.Input{X: nn.FromHost(slices.Clone(in.F32), in.Shape...), Shape: in.Shape}
	for _, combo := range c.Combos {
		t.Run(combo.Name, func(t *testing.T) {
			base, err := fixtures.Load(nil, dir)
			if err != nil {
				t.Fatal(err)
			}
			first := c.AdapterNames[0]
			m, err := peft.Load(base, filepath.Join(dir, c.AdapterDirs[first]), peft.AdapterName(first))
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range c.AdapterNames[1:] {
				if err := m.LoadAdapter(filepath.Join(dir, c.AdapterDirs[a]), a); err != nil {
					t.Fatal(err)
				}
			}
			var cfgs []*lora.Config
			for _, a := range combo.Adapters {
				cfgs = append(cfgs, m.Config(a).(*lora.Config))
			}
			o := lora.WeightedOptions{CombinationType: combo.Type, Density: combo.Density, Seed: 1}
			cfg, ctype, err := lora.WeightedConfig(cfgs, o)
			if err != nil {
				t.Fatal(err)
			}
			checkCombinedConfig(t, filepath.Join(dir, "adapter", combo.Name), cfg)
			if err := m.AddAdapter(cfg, peft.AdapterName(combo.Name), peft.Trainable(false)); err != nil {
				t.Fatal(err)
			}
			if err := lora.AddWeighted(m.Base(), combo.Adapters, combo.Weights, combo.Name, ctype, o); err != nil {
				t.Fatal(err)
			}
			if err := m.SetAdapter(combo.Name); err != nil {
				t.Fatal(err)
			}
			got := map[string]*nn.Tensor{}
			for _, p := range peftParams(t, m, combo.Name) {
				got[p.Name] = p.T
			}
			prefix := "combo." + combo.Name + "."
			switch combo.Type {
			case lora.CombineDareLinear:
				checkDare(t, m, io, prefix, got, combo.Adapters, combo.Weights, combo.Density)
				// PEFT's own dare adapter, loaded, must reproduce its output.
				if err := m.LoadAdapter(filepath.Join(dir, "adapter", combo.Name), combo.Name+"_recorded"); err != nil {
					t.Fatal(err)
				}
				if err := m.SetAdapter(combo.Name + "_recorded"); err != nil {
					t.Fatal(err)
				}
				compareOut(t, base, input, io[prefix+"output"], c.Atol, c.Rtol)
				return
			case lora.CombineSVD:
				for key := range got {
					if !strings.HasSuffix(key, "lora_A.weight") {
						continue
					}
					bkey := strings.TrimSuffix(key, "lora_A.weight") + "lora_B.weight"
					gotBA := nn.MatMul(got[bkey], got[key]).Data()
					want := nn.MatMul(fromST(io[prefix+bkey]), fromST(io[prefix+key])).Data()
					closeF32(t, "B A of "+key, gotBA, want, 1e-5, 1e-4)
				}
			default:
				for key, w := range got {
					want, ok := io[prefix+key]
					if !ok {
						t.Fatalf("io.safetensors has no %s", prefix+key)
					}
					closeF32(t, key, w.Data(), want.F32, 1e-6, 1e-5)
				}
			}
			compareOut(t, base, input, io[prefix+"output"], c.Atol, c.Rtol)
		})
	}
}

// peftParams returns adapter's saved tensors keyed as in an adapter file.
func peftParams(t *testing.T, m *peft.Model, adapter string) []nn.Param {
	t.Helper()
	var out []nn.Param
	err := nn.Walk(m.Base(), func(path string, mod nn.Module) error {
		if l, ok := mod.(lora.AdapterLayer); ok {
			for _, p := range l.AdapterParams(adapter) {
				out = append(out, nn.Param{Name: "base_model.model." + path + "." + p.Name, T: p.T})
			}
			return nn.ErrSkipChildren
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("adapter %q has no tensors", adapter)
	}
	return out
}

// checkDare verifies that every element of a dare_linear factor is a
// subset sum of the weighted input factors divided by the density, for
// gopeft's result and for PEFT's recorded one.
func checkDare(t *testing.T, m *peft.Model, io map[string]safetensors.Tensor, prefix string, got map[string]*nn.Tensor, adapters []string, weights []float64, density float64) {
	t.Helper()
	inputs := make([]map[string][]float32, len(adapters))
	scales := make([]float64, len(adapters))
	for i, a := range adapters {
		inputs[i] = map[string][]float32{}
		for _, p := range peftParams(t, m, a) {
			inputs[i][p.Name] = p.T.Data()
		}
		cfg := m.Config(a).(*lora.Config)
		scales[i] = cfg.Alpha / float64(cfg.R)
	}
	for key, g := range got {
		want, ok := io[prefix+key]
		if !ok {
			t.Fatalf("io.safetensors has no %s", prefix+key)
		}
		isA := strings.Contains(key, "lora_A")
		for who, vals := range map[string][]float32{"gopeft": g.Data(), "PEFT": want.F32} {
			for j, v := range vals {
				var terms []float64
				for i := range adapters {
					f := weights[i] * scales[i]
					c := math.Sqrt(math.Abs(f))
					if isA && f < 0 {
						c = -c
					}
					terms = append(terms, c*float64(inputs[i][key][j])/density)
				}
				if !subsetSum(float64(v), terms) {
					t.Fatalf("%s dare %s[%d] = %v is no subset sum of %v", who, key, j, v, terms)
				}
			}
		}
	}
}

func subsetSum(v float64, terms []float64) bool {
	for mask := range 1 << len(terms) {
		s := 0.0
		for i, x := range terms {
			if mask&(1<<i) != 0 {
				s += x
			}
		}
		if math.Abs(s-v) <= 1e-5+1e-5*math.Abs(v) {
			return true
		}
	}
	return false
}

func compareOut(t *testing.T, base models.Model, in models.Input, want safetensors.Tensor, atol, rtol float64) {
	t.Helper()
	out, err := base.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	closeF32(t, "output", out.Data(), want.F32, atol, rtol)
}

func fromST(t safetensors.Tensor) *nn.Tensor { return nn.FromHost(slices.Clone(t.F32), t.Shape...) }

func closeF32(t *testing.T, what string, got, want []float32, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= atol+rtol*math.Abs(float64(want[i]))) {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// checkCombinedConfig compares WeightedConfig's result with the config PEFT
// saved for the combined adapter.
func checkCombinedConfig(t *testing.T, dir string, got *lora.Config) {
	t.Helper()
	want := lora.NewConfig()
	data, err := os.ReadFile(filepath.Join(dir, peft.ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	if err := tuners.UnmarshalConfig(data, want); err != nil {
		t.Fatal(err)
	}
	if got.R != want.R || got.Alpha != want.Alpha || len(got.RankPattern) != 0 || len(got.AlphaPattern) != 0 {
		t.Errorf("combined config r %d alpha %v patterns %v %v; PEFT wrote r %d alpha %v", got.R, got.Alpha, got.RankPattern, got.AlphaPattern, want.R, want.Alpha)
	}
	g, w := slices.Sorted(slices.Values(got.TargetModules.Names)), slices.Sorted(slices.Values(want.TargetModules.Names))
	if !slices.Equal(g, w) || got.TargetModules.Pattern != want.TargetModules.Pattern {
		t.Errorf("combined target_modules %v, PEFT wrote %v", got.TargetModules, want.TargetModules)
	}
}

// TestGoldenMixedBatch runs the multi-adapter golden case with one adapter
// per batch row (PEFT's adapter_names) and compares each row with PEFT's
// output for that adapter alone (or the base model).
func TestGoldenMixedBatch(t *testing.T) {
	dir := filepath.Join(goldenDir(t), "lora_mlp_multi_adapter")
	data, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		t.Skipf("no multi-adapter case: %v", err)
	}
	var c combosCase
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	io, _, err := safetensors.ReadAll(filepath.Join(dir, "io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := fixtures.Load(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := peft.Load(base, filepath.Join(dir, c.AdapterDirs[c.AdapterNames[0]]), peft.AdapterName(c.AdapterNames[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.AdapterNames[1:] {
		if err := m.LoadAdapter(filepath.Join(dir, c.AdapterDirs[a]), a); err != nil {
			t.Fatal(err)
		}
	}
	in := io["input"]
	rows := in.Shape[0]
	names := make([]string, rows)
	choices := append(slices.Clone(c.AdapterNames), tuners.BaseAdapterName)
	for i := range names {
		names[i] = choices[(i+1)%len(choices)]
	}
	out, err := m.ForwardMixed(models.Input{X: nn.FromHost(slices.Clone(in.F32), in.Shape...), Shape: in.Shape}, names)
	if err != nil {
		t.Fatal(err)
	}
	got := out.Data()
	per := len(got) / rows
	for i, n := range names {
		key := "output_adapter." + n
		if n == tuners.BaseAdapterName {
			key = "output_base"
		}
		want := io[key].F32[i*per : (i+1)*per]
		closeF32(t, fmt.Sprintf("row %d (%s)", i, n), got[i*per:(i+1)*per], want, c.Atol, c.Rtol)
	}
}
