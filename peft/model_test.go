package peft_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// tinyMLP returns Sequential(Linear(4,6), ReLU, Linear(6,3)) with weights
// drawn from seed: children "0", "1", "2".
func tinyMLP(t testing.TB, seed uint64) *nn.Sequential {
	t.Helper()
	rng := nn.NewRNG(seed)
	relu, err := nn.NewActivation("relu")
	if err != nil {
		t.Fatal(err)
	}
	return nn.NewSequential(nn.NewLinear(nil, 4, 6, true, rng), relu, nn.NewLinear(nil, 6, 3, true, rng))
}

func tinyInput() *nn.Tensor {
	return nn.FromHost([]float32{0.5, -1, 2, 0.25, 1, 0, -0.5, 1.5}, 2, 4)
}

// loraConfig returns a LoRA config of rank 2 on the given modules.
func loraConfig(targets ...string) *lora.Config {
	c := lora.NewConfig()
	c.R = 2
	c.Alpha = 4
	c.TargetModules = tuners.Names(targets...)
	return c
}

// perturb gives every trainable adapter tensor non-trivial values (LoRA's B
// starts at zero, which would make the adapter a no-op).
func perturb(t testing.TB, m *peft.Model, adapter string, seed uint64) {
	t.Helper()
	sd, err := m.StateDict(adapter)
	if err != nil {
		t.Fatal(err)
	}
	rng := nn.NewRNG(seed)
	keys := make([]string, 0, len(sd))
	for k := range sd {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		tt := sd[k]
		tt.CopyFrom(nn.Normal(tt.Backend(), rng, 0, 0.5, tt.Shape()...))
	}
}

func maxDiff(a, b *nn.Tensor) float64 {
	x, y := a.Data(), b.Data()
	d := 0.0
	for i := range x {
		v := float64(x[i] - y[i])
		if v < 0 {
			v = -v
		}
		d = max(d, v)
	}
	return d
}

func TestNewFreezesBaseAndTrainsAdapter(t *testing.T) {
	base := tinyMLP(t, 1)
	m, err := peft.New(base, loraConfig("0", "2"))
	if err != nil {
		t.Fatal(err)
	}
	trainable, all := m.NumTrainableParameters()
	// lin0: A [2,4] + B [6,2]; lin2: A [2,6] + B [3,2].
	wantTrainable := 2*4 + 6*2 + 2*6 + 3*2
	wantAll := wantTrainable + 6*4 + 6 + 3*6 + 3
	if trainable != wantTrainable || all != wantAll {
		t.Errorf("NumTrainableParameters = %d, %d; want %d, %d", trainable, all, wantTrainable, wantAll)
	}
	var names []string
	for _, p := range m.TrainableParameters() {
		names = append(names, p.Name)
	}
	want := []string{
		"base_model.model.0.lora_A.default.weight", "base_model.model.0.lora_B.default.weight",
		"base_model.model.2.lora_A.default.weight", "base_model.model.2.lora_B.default.weight",
	}
	if !slices.Equal(names, want) {
		t.Errorf("TrainableParameters = %q, want %q", names, want)
	}
	if got := m.ActiveAdapters(); !slices.Equal(got, []string{"default"}) {
		t.Errorf("ActiveAdapters = %q", got)
	}
	// The caller's config is not modified; the model's copy is.
	if m.Config("default") == nil || m.Config("nope") != nil {
		t.Error("Config lookup")
	}
}

func TestNoTargetNamesThePattern(t *testing.T) {
	_, err := peft.New(tinyMLP(t, 1), loraConfig("q_proj"))
	if !errors.Is(err, tuners.ErrNoTarget) || !strings.Contains(err.Error(), "q_proj") {
		t.Errorf("err = %v, want ErrNoTarget naming q_proj", err)
	}
	cfg := lora.NewConfig()
	if _, err := peft.New(tinyMLP(t, 1), cfg); err == nil || !strings.Contains(err.Error(), "target_modules") {
		t.Errorf("err = %v, want an error about target_modules (no default for this model)", err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	base := tinyMLP(t, 1)
	m, err := peft.New(base, loraConfig("0", "2"))
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 7)
	x := tinyInput()
	want := base.Forward(x)
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	gotKeys := f.Names()
	meta := f.Metadata()
	f.Close()
	wantKeys := []string{
		"base_model.model.0.lora_A.weight", "base_model.model.0.lora_B.weight",
		"base_model.model.2.lora_A.weight", "base_model.model.2.lora_B.weight",
	}
	if !slices.Equal(gotKeys, wantKeys) || meta["format"] != "pt" {
		t.Errorf("saved keys %q metadata %v; want %q and format pt", gotKeys, meta, wantKeys)
	}
	cfg, err := peft.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Base().InferenceMode || cfg.Base().PeftVersion == "" || cfg.Base().PeftType != "LORA" {
		t.Errorf("saved config: %+v", cfg.Base())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("adapter folder holds %d entries, want 2 (no temporary files)", len(entries))
	}

	fresh := tinyMLP(t, 1)
	m2, err := peft.Load(fresh, dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(fresh.Forward(x), want); d > 1e-6 {
		t.Errorf("reloaded output differs by %g", d)
	}
	if n, _ := m2.NumTrainableParameters(); n != 0 {
		t.Errorf("Load without Trainable: %d trainable, want 0", n)
	}
	m3, err := peft.Load(tinyMLP(t, 1), dir, peft.Trainable(true), peft.AdapterName("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := m3.NumTrainableParameters(); n == 0 {
		t.Error("Load with Trainable(true): nothing trainable")
	}
	if got := m3.Adapters(); !slices.Equal(got, []string{"mine"}) {
		t.Errorf("Adapters = %q", got)
	}
}

// writeAdapter saves a config and the given tensors as an adapter folder.
func writeAdapter(t *testing.T, dir string, cfg tuners.Config, tensors map[string]safetensors.Tensor) {
	t.Helper()
	if err := peft.SaveConfig(dir, cfg); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Save(filepath.Join(dir, peft.WeightsName), tensors, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoadIsStrict(t *testing.T) {
	good := func() map[string]safetensors.Tensor {
		return map[string]safetensors.Tensor{
			"base_model.model.0.lora_A.weight": {Shape: []int{2, 4}, F32: make([]float32, 8)},
			"base_model.model.0.lora_B.weight": {Shape: []int{6, 2}, F32: make([]float32, 12)},
		}
	}
	tests := []struct {
		name   string
		change func(map[string]safetensors.Tensor)
		want   string
	}{
		{"ok", func(map[string]safetensors.Tensor) {}, ""},
		{"missing", func(m map[string]safetensors.Tensor) { delete(m, "base_model.model.0.lora_B.weight") }, "missing keys [\"base_model.model.0.lora_B.weight\"]"},
		{"unexpected", func(m map[string]safetensors.Tensor) {
			m["base_model.model.2.lora_A.weight"] = safetensors.Tensor{Shape: []int{1}, F32: []float32{0}}
		}, "unexpected keys [\"base_model.model.2.lora_A.weight\"]"},
		{"shape", func(m map[string]safetensors.Tensor) {
			m["base_model.model.0.lora_A.weight"] = safetensors.Tensor{Shape: []int{4, 2}, F32: make([]float32, 8)}
		}, "base_model.model.0.lora_A.weight: file [4 2], model [2 4]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tensors := good()
			tt.change(tensors)
			writeAdapter(t, dir, loraConfig("0"), tensors)
			_, err := peft.Load(tinyMLP(t, 1), dir)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Load error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := peft.Load(tinyMLP(t, 1), t.TempDir()); err == nil || !strings.Contains(err.Error(), peft.ConfigName) {
		t.Errorf("Load of an empty folder: %v, want an error naming %s", err, peft.ConfigName)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ json, want string }{
		{`{"peft_type": "NOPE"}`, `"NOPE" is not supported`},
		{`{"r": 2}`, "peft_type"},
		{`{"peft_type": "LORA", "r": "x"}`, "r"},
		{`[`, "JSON"},
	}
	for _, tt := range tests {
		if _, err := peft.ParseConfig([]byte(tt.json)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%s) = %v, want an error containing %q", tt.json, err, tt.want)
		}
	}
}

func TestMultipleAdapters(t *testing.T) {
	base := tinyMLP(t, 1)
	m, err := peft.New(base, loraConfig("0"))
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 1)
	if err := m.AddAdapter(loraConfig("2"), peft.AdapterName("other")); err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "other", 2)
	if err := m.AddAdapter(loraConfig("2"), peft.AdapterName("other")); err == nil {
		t.Error("AddAdapter with a taken name succeeded")
	}
	x := tinyInput()
	outDefault := base.Forward(x)
	// The new adapter is not active, and not trainable.
	for _, p := range m.TrainableParameters() {
		if strings.Contains(p.Name, ".other.") {
			t.Errorf("inactive adapter tensor %s is trainable", p.Name)
		}
	}
	if err := m.SetAdapter("other"); err != nil {
		t.Fatal(err)
	}
	outOther := base.Forward(x)
	if maxDiff(outDefault, outOther) < 1e-4 {
		t.Error("switching adapters did not change the output")
	}
	for _, p := range m.TrainableParameters() {
		if !strings.Contains(p.Name, ".other.") {
			t.Errorf("after SetAdapter(other), %s is trainable", p.Name)
		}
	}
	if err := m.SetAdapter("missing"); err == nil {
		t.Error("SetAdapter of an unknown adapter succeeded")
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{peft.ConfigName, peft.WeightsName, "other/" + peft.ConfigName, "other/" + peft.WeightsName} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("saved layout: %v", err)
		}
	}
	// Load both back and compare outputs.
	fresh := tinyMLP(t, 1)
	m2, err := peft.Load(fresh, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.LoadAdapter(filepath.Join(dir, "other"), "other"); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(fresh.Forward(x), outDefault); d > 1e-6 {
		t.Errorf("reloaded default differs by %g", d)
	}
	if err := m2.SetAdapter("other"); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(fresh.Forward(x), outOther); d > 1e-6 {
		t.Errorf("reloaded other differs by %g", d)
	}

	if err := m.DeleteAdapter("other"); err != nil {
		t.Fatal(err)
	}
	if got := m.ActiveAdapters(); !slices.Equal(got, []string{"default"}) {
		t.Errorf("after deleting the active adapter, active = %q", got)
	}
	if d := maxDiff(base.Forward(x), outDefault); d > 1e-6 {
		t.Errorf("after DeleteAdapter, default output differs by %g", d)
	}
	if err := m.DeleteAdapter("other"); err == nil {
		t.Error("deleting twice succeeded")
	}
}

func TestDisableAdapters(t *testing.T) {
	base := tinyMLP(t, 1)
	x := tinyInput()
	plain := base.Forward(x)
	m, err := peft.New(base, loraConfig("0", "2"))
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 3)
	adapted := base.Forward(x)
	sentinel := errors.New("inside")
	err = m.DisableAdapters(func() error {
		if d := maxDiff(base.Forward(x), plain); d > 1e-6 {
			t.Errorf("disabled output differs from the base by %g", d)
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("DisableAdapters returned %v, want fn's error", err)
	}
	if d := maxDiff(base.Forward(x), adapted); d > 1e-6 {
		t.Errorf("adapters not re-enabled: output differs by %g", d)
	}
}

func TestMergeUnmergeUnload(t *testing.T) {
	base := tinyMLP(t, 1)
	x := tinyInput()
	m, err := peft.New(base, loraConfig("0", "2"))
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 4)
	adapted := base.Forward(x)
	w0 := nn.NamedParameters(base)[0].T.Data()
	if err := m.Merge(peft.SafeMerge()); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(base.Forward(x), adapted); d > 1e-5 {
		t.Errorf("merged output differs by %g", d)
	}
	if err := m.Unmerge(); err != nil {
		t.Fatal(err)
	}
	w0after := nn.NamedParameters(base)[0].T.Data()
	for i := range w0 {
		if d := w0[i] - w0after[i]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("unmerge did not restore the base weight: %g", d)
		}
	}
	out, err := m.MergeAndUnload()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.NamedParameters(out) {
		if strings.Contains(p.Name, "lora") || strings.Contains(p.Name, "base_layer") {
			t.Errorf("unloaded model still has %s", p.Name)
		}
	}
	if d := maxDiff(out.(*nn.Sequential).Forward(x), adapted); d > 1e-5 {
		t.Errorf("merged-and-unloaded output differs by %g", d)
	}
	if err := m.SetAdapter("default"); err == nil {
		t.Error("the model is usable after MergeAndUnload")
	}
}

func TestModulesToSave(t *testing.T) {
	base := tinyMLP(t, 1)
	x := tinyInput()
	plain := base.Forward(x)
	cfg := loraConfig("0")
	cfg.ModulesToSave = []string{"2"}
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"base_model.model.2.weight", "base_model.model.2.bias"} {
		tt, ok := sd[k]
		if !ok || !tt.RequiresGrad() {
			t.Errorf("modules_to_save copy %s: present %v", k, ok)
		}
	}
	// Training the copy changes the output; the original stays.
	sd["base_model.model.2.bias"].CopyFromHost([]float32{1, 2, 3})
	if maxDiff(base.Forward(x), plain) < 0.5 {
		t.Error("the copy is not used by Forward")
	}
	_ = m.DisableAdapters(func() error {
		if d := maxDiff(base.Forward(x), plain); d > 1e-6 {
			t.Errorf("disabled: output differs from the original by %g", d)
		}
		return nil
	})
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	fresh := tinyMLP(t, 1)
	if _, err := peft.Load(fresh, dir); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(fresh.Forward(x), base.Forward(x)); d > 1e-6 {
		t.Errorf("reloaded modules_to_save output differs by %g", d)
	}
	out, err := m.MergeAndUnload()
	if err != nil {
		t.Fatal(err)
	}
	if got := out.(*nn.Sequential).Layers[2].(*nn.Linear).Bias.Data(); !slices.Equal(got, []float32{1, 2, 3}) {
		t.Errorf("MergeAndUnload did not put the trained copy in place: bias %v", got)
	}
}

func TestFailedLoadLeavesBaseUnchanged(t *testing.T) {
	dir := t.TempDir()
	writeAdapter(t, dir, loraConfig("0", "2"), map[string]safetensors.Tensor{
		"base_model.model.0.lora_A.weight": {Shape: []int{2, 4}, F32: make([]float32, 8)},
	})
	base := tinyMLP(t, 1)
	if _, err := peft.Load(base, dir); err == nil {
		t.Fatal("Load of an adapter with missing keys succeeded")
	}
	for i, l := range base.Layers {
		if _, ok := l.(tuners.Layer); ok {
			t.Errorf("after a failed Load, module %d is still wrapped (%T)", i, l)
		}
	}
	// A failed LoadAdapter leaves the loaded adapters alone.
	m, err := peft.New(base, loraConfig("0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadAdapter(dir, "bad"); err == nil {
		t.Fatal("LoadAdapter of an adapter with missing keys succeeded")
	}
	if got := m.Adapters(); !slices.Equal(got, []string{"default"}) {
		t.Errorf("adapters after a failed LoadAdapter: %q", got)
	}
	if _, ok := base.Layers[2].(tuners.Layer); ok {
		t.Error("module 2, adapted only by the failed adapter, is still wrapped")
	}
	if _, ok := base.Layers[0].(tuners.Layer); !ok {
		t.Error("module 0 lost the default adapter")
	}
}

func TestDisableUnmerges(t *testing.T) {
	base := tinyMLP(t, 1)
	x := tinyInput()
	plain := base.Forward(x)
	m, err := peft.New(base, loraConfig("0"))
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 5)
	adapted := base.Forward(x)
	if err := m.Merge(); err != nil {
		t.Fatal(err)
	}
	_ = m.DisableAdapters(func() error {
		if d := maxDiff(base.Forward(x), plain); d > 1e-5 {
			t.Errorf("disabled while merged: output differs from the base by %g", d)
		}
		return nil
	})
	if d := maxDiff(base.Forward(x), adapted); d > 1e-5 {
		t.Errorf("after DisableAdapters the adapter output differs by %g", d)
	}
}

func TestForwardMixed(t *testing.T) {
	base := tinyMLP(t, 1)
	m, err := peft.New(base, loraConfig("0", "2"))
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 8)
	if err := m.AddAdapter(loraConfig("0"), peft.AdapterName("other")); err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "other", 9)
	x := tinyInput() // two rows
	in := models.Input{X: x, Shape: x.Shape()}
	row := func(out *nn.Tensor, i int) []float32 { return out.Data()[3*i : 3*i+3] }

	want := map[string]*nn.Tensor{}
	for _, a := range []string{"default", "other"} {
		if err := m.SetAdapter(a); err != nil {
			t.Fatal(err)
		}
		want[a] = base.Forward(x)
	}
	var plain *nn.Tensor
	_ = m.DisableAdapters(func() error { plain = base.Forward(x); return nil })
	want[tuners.BaseAdapterName] = plain
	if err := m.SetAdapter("default"); err != nil {
		t.Fatal(err)
	}

	for _, names := range [][]string{{"other", "default"}, {tuners.BaseAdapterName, "other"}} {
		out, err := m.ForwardMixed(in, names)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range names {
			got, w := row(out, i), row(want[n], i)
			for j := range got {
				if d := got[j] - w[j]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("rows %q: row %d differs from adapter %q alone by %g", names, i, n, d)
				}
			}
		}
	}
	// Afterwards the active adapter applies to every row again.
	if d := maxDiff(base.Forward(x), want["default"]); d > 1e-6 {
		t.Errorf("after ForwardMixed the output differs by %g", d)
	}
	for _, bad := range [][]string{{"default"}, {"default", "nope"}, nil} {
		if _, err := m.ForwardMixed(in, bad); err == nil {
			t.Errorf("ForwardMixed(%q) succeeded", bad)
		}
	}
}

func TestSafeMergeRefusesNonFinite(t *testing.T) {
	base := tinyMLP(t, 1)
	m, err := peft.New(base, loraConfig("0", "2"))
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 10)
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	b := sd["base_model.model.2.lora_B.weight"]
	vals := b.Data()
	vals[0] = float32(math.Inf(1))
	b.CopyFromHost(vals)
	before := weightsOf(base)
	err = m.Merge(peft.SafeMerge())
	if err == nil || !strings.Contains(err.Error(), `"2"`) {
		t.Fatalf("SafeMerge with an infinite factor: %v, want an error naming module 2", err)
	}
	// Layers merged before the failure are unmerged again (up to rounding).
	after := weightsOf(base)
	for name, w := range before {
		for i := range w {
			if d := math.Abs(float64(w[i] - after[name][i])); d > 1e-5 {
				t.Fatalf("a failed safe merge changed %s[%d] by %g", name, i, d)
			}
		}
	}
}

func weightsOf(root nn.Module) map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range nn.NamedParameters(root) {
		if !strings.Contains(p.Name, "lora_") {
			out[p.Name] = p.T.Data()
		}
	}
	return out
}

func TestLoadConvertsHalfPrecision(t *testing.T) {
	dir := t.TempDir()
	a := []float32{0.5, -1, 2, 0.25, 1, 0, -0.5, 1.5}
	writeAdapter(t, dir, loraConfig("0"), map[string]safetensors.Tensor{
		"base_model.model.0.lora_A.weight": {DType: "BF16", Shape: []int{2, 4}, F32: a},
		"base_model.model.0.lora_B.weight": {DType: "F16", Shape: []int{6, 2}, F32: make([]float32, 12)},
	})
	m, err := peft.Load(tinyMLP(t, 1), dir)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	if got := sd["base_model.model.0.lora_A.weight"].Data(); !slices.Equal(got, a) {
		t.Errorf("BF16 lora_A loaded as %v, want %v", got, a)
	}
}

func TestNilInputs(t *testing.T) {
	if _, err := peft.New(nil, loraConfig("0")); err == nil {
		t.Error("New(nil base) succeeded")
	}
	if _, err := peft.New(tinyMLP(t, 1), nil); err == nil {
		t.Error("New(nil config) succeeded")
	}
	for _, name := range []string{"", "a.b", "../x", `a\b`, "__base__"} {
		if _, err := peft.New(tinyMLP(t, 1), loraConfig("0"), peft.AdapterName(name)); err == nil {
			t.Errorf("New with adapter name %q succeeded", name)
		}
	}
}

// embModel is a Dict with an input embedding "embed_tokens" [vocab, 4] and a
// Linear "lin".
func embModel(vocab int, seed uint64) *nn.Dict {
	rng := nn.NewRNG(seed)
	d := nn.NewDict()
	d.Add("embed_tokens", nn.NewEmbedding(nil, vocab, 4, rng))
	d.Add("lin", nn.NewLinear(nil, 4, 3, false, rng))
	return d
}

func TestSaveEmbeddingLayers(t *testing.T) {
	trained := embModel(10, 1)
	m, err := peft.New(trained, loraConfig("lin"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.Save(dir, peft.SaveEmbeddingLayers()); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	names := f.Names()
	f.Close()
	if !slices.Contains(names, "base_model.model.embed_tokens.weight") {
		t.Fatalf("saved keys %q lack the embedding", names)
	}
	// The embedding loads into a fresh base model with other weights.
	fresh := embModel(10, 2)
	if _, err := peft.Load(fresh, dir); err != nil {
		t.Fatal(err)
	}
	want := trained.Get("embed_tokens").(*nn.Embedding).Weight.Data()
	if got := fresh.Get("embed_tokens").(*nn.Embedding).Weight.Data(); !slices.Equal(got, want) {
		t.Error("the saved embedding was not loaded into the base model")
	}
	// A base model with another vocabulary size is refused, naming the key.
	if _, err := peft.Load(embModel(12, 2), dir); err == nil || !strings.Contains(err.Error(), "base_model.model.embed_tokens.weight") {
		t.Errorf("loading into a model with another vocabulary: %v", err)
	}
	// Without the option (PEFT's "auto"), an untargeted embedding is not saved.
	dir2 := t.TempDir()
	if err := m.Save(dir2); err != nil {
		t.Fatal(err)
	}
	f, err = safetensors.Open(filepath.Join(dir2, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if slices.Contains(f.Names(), "base_model.model.embed_tokens.weight") {
		t.Error("the embedding was saved without SaveEmbeddingLayers")
	}
}

// TestConcurrentForward runs inference from several goroutines at once on a
// model with a LoRA adapter and a modules_to_save copy (run with -race).
func TestConcurrentForward(t *testing.T) {
	base := tinyMLP(t, 1)
	cfg := loraConfig("0")
	cfg.ModulesToSave = []string{"2"}
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	perturb(t, m, "default", 11)
	nn.SetTraining(base, false)
	x := tinyInput()
	want := base.Forward(x).Data()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 20 {
				out, err := m.Forward(models.Input{X: x, Shape: x.Shape()})
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(out.Data(), want) {
					errs <- errors.New("concurrent forward gave another result")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestSetAdapterKeepsBaseTrainability(t *testing.T) {
	base := tinyMLP(t, 1)
	m, err := peft.New(base, loraConfig("0"))
	if err != nil {
		t.Fatal(err)
	}
	head := base.Layers[2].(*nn.Linear).Bias
	if head.RequiresGrad() {
		t.Fatal("New left a base tensor trainable")
	}
	head.SetRequiresGrad(true) // the caller also trains the head's bias
	if err := m.SetAdapter("default"); err != nil {
		t.Fatal(err)
	}
	if !head.RequiresGrad() {
		t.Error("SetAdapter froze a base tensor the caller made trainable")
	}
	// Adding an adapter freezes the base model again, as PEFT's injection does.
	if err := m.AddAdapter(loraConfig("2"), peft.AdapterName("other")); err != nil {
		t.Fatal(err)
	}
	if head.RequiresGrad() {
		t.Error("AddAdapter left a base tensor trainable")
	}
}
