package peft_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
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

// goldenCase is the part of a golden case.json the suite reads.
type goldenCase struct {
	Method                  string            `json:"method"`
	Model                   string            `json:"model"`
	AdapterNames            []string          `json:"adapter_names"`
	ActiveAdapter           string            `json:"active_adapter"`
	AdapterDirs             map[string]string `json:"adapter_dirs"`
	InputKey                string            `json:"input_key"`
	Checks                  []string          `json:"checks"`
	Atol                    float64           `json:"atol"`
	Rtol                    float64           `json:"rtol"`
	GradAtol                float64           `json:"grad_atol"`
	GradRtol                float64           `json:"grad_rtol"`
	MergeAtol               float64           `json:"merge_atol"`
	WithoutSavedKey         []string          `json:"trainable_params_without_saved_key"`
	WithoutGrad             []string          `json:"trainable_params_without_grad"`
	Combos                  []json.RawMessage `json:"combos"`
	dir, name               string
	io                      map[string]safetensors.Tensor
	base                    map[string]safetensors.Tensor
	failures, checks, whyNo []string
}

func (c *goldenCase) failf(format string, args ...any) {
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

// goldenDir returns the golden suite folder: $GOPEFT_GOLDEN_DIR, or
// shared/golden beside the repository.
func goldenDir(t *testing.T) string {
	if d := os.Getenv("GOPEFT_GOLDEN_DIR"); d != "" {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("GOPEFT_GOLDEN_DIR: %v", err)
		}
		return d
	}
	d := filepath.Join("..", "..", "shared", "golden")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("no golden suite at %s (set GOPEFT_GOLDEN_DIR): %v", d, err)
	}
	return d
}

// TestGolden runs every case of the golden suite (see DESIGN.md, "Where the
// truth is") and prints one line per case and a closing count.
func TestGolden(t *testing.T) {
	dir := goldenDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "case.json")); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("no golden cases in %s", dir)
	}
	var passed, failed, skipped int
	for _, name := range names {
		c, status, why := runGoldenCase(filepath.Join(dir, name), name)
		line := fmt.Sprintf("golden: %s %s %s checks=%s", name, c.Method, status, strings.Join(c.checks, ","))
		if why != "" {
			line += " " + why
		}
		fmt.Println(line)
		switch status {
		case "PASS":
			passed++
		case "FAIL":
			failed++
			t.Errorf("golden case %s (%s) failed:\n  %s", name, c.Method, strings.Join(c.failures, "\n  "))
		default:
			skipped++
		}
	}
	fmt.Printf("golden: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
}

// runGoldenCase runs one case and returns its status and the reason for a
// SKIP or for checks left out.
func runGoldenCase(dir, name string) (*goldenCase, string, string) {
	c := &goldenCase{dir: dir, name: name}
	data, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err == nil {
		err = json.Unmarshal(data, c)
	}
	if err != nil {
		c.failf("case.json: %v", err)
		return c, "FAIL", ""
	}
	// The method is registered when the peft_type of its adapter files is.
	for _, a := range c.AdapterNames {
		cfgData, err := os.ReadFile(filepath.Join(dir, c.AdapterDirs[a], peft.ConfigName))
		if err != nil {
			c.failf("adapter %q: %v", a, err)
			return c, "FAIL", ""
		}
		typ, err := tuners.PeekType(cfgData)
		if err != nil {
			c.failf("adapter %q: %v", a, err)
			return c, "FAIL", ""
		}
		if !slices.Contains(peft.Methods(), strings.ToUpper(typ)) {
			return c, "SKIP", fmt.Sprintf("(peft_type %s is not registered)", typ)
		}
	}
	if c.io, _, err = safetensors.ReadAll(filepath.Join(dir, "io.safetensors")); err != nil {
		c.failf("%v", err)
		return c, "FAIL", ""
	}
	if c.base, _, err = safetensors.ReadAll(filepath.Join(dir, "base.safetensors")); err != nil {
		c.failf("%v", err)
		return c, "FAIL", ""
	}
	c.run()
	var why []string
	if len(c.whyNo) > 0 {
		why = append(why, "(not run: "+strings.Join(c.whyNo, "; ")+")")
	}
	if len(c.failures) > 0 {
		return c, "FAIL", strings.Join(append(why, c.failures[0]), " ")
	}
	return c, "PASS", strings.Join(why, " ")
}

// has reports whether the case lists check.
func (c *goldenCase) has(check string) bool { return slices.Contains(c.Checks, check) }

func (c *goldenCase) ran(check string) { c.checks = append(c.checks, check) }

// run performs every check the case supports.
func (c *goldenCase) run() {
	for _, ch := range c.Checks {
		switch ch {
		case "forward", "base", "grad", "merge", "encoder_forward", "encoder_grad", "loss", "loss_grad":
		case "combos":
		default:
			c.whyNo = append(c.whyNo, ch+": not implemented yet")
		}
	}
	if c.has("encoder_forward") {
		c.checkEncoder()
	}
	if c.has("loss") {
		c.checkLoss()
	}
	if c.has("forward") {
		c.ran("forward")
		c.checkForward()
	}
	if c.has("base") {
		c.ran("base")
		c.checkBase()
	}
	if c.has("grad") {
		c.ran("grad")
		c.checkGrad()
	}
	if c.has("merge") {
		c.ran("merge")
		c.checkMerge()
		c.ran("unmerge")
		c.checkUnmerge()
	}
	c.ran("save")
	c.checkSaveAndReload()
	c.checkBuffers()
	if c.has("combos") {
		c.ran("combos")
		c.checkCombos()
	}
}

// input returns the model input of the case.
func (c *goldenCase) input() (models.Input, error) {
	key := c.InputKey
	if key == "" {
		key = "input"
	}
	in, ok := c.io[key]
	if !ok {
		return models.Input{}, fmt.Errorf("io.safetensors has no %q", key)
	}
	if in.I64 != nil {
		ids := make([]int32, len(in.I64))
		for i, v := range in.I64 {
			ids[i] = int32(v)
		}
		return models.Input{IDs: ids, Shape: in.Shape}, nil
	}
	return models.Input{X: nn.FromHost(slices.Clone(in.F32), in.Shape...), Shape: in.Shape}, nil
}

// baseModel builds a fresh base model with base.safetensors loaded.
func (c *goldenCase) baseModel() (models.Model, error) {
	return fixtures.Load(nil, c.dir)
}

// loaded builds a fresh base model and loads every trained adapter of the
// case into it (the first with Load, the others with LoadAdapter), all
// trainable, with the case's active adapter active.
func (c *goldenCase) loaded() (models.Model, *peft.Model, error) {
	return c.loadFrom(func(a string) string { return filepath.Join(c.dir, c.AdapterDirs[a]) })
}

func (c *goldenCase) loadFrom(dirOf func(adapter string) string) (models.Model, *peft.Model, error) {
	base, err := c.baseModel()
	if err != nil {
		return nil, nil, err
	}
	if len(c.AdapterNames) == 0 {
		return nil, nil, errors.New("case lists no adapter")
	}
	first := c.AdapterNames[0]
	m, err := peft.Load(base, dirOf(first), peft.AdapterName(first), peft.Trainable(true))
	if err != nil {
		return nil, nil, err
	}
	for _, a := range c.AdapterNames[1:] {
		if err := m.LoadAdapter(dirOf(a), a, peft.Trainable(true)); err != nil {
			return nil, nil, err
		}
	}
	if err := m.SetAdapter(c.ActiveAdapter); err != nil {
		return nil, nil, err
	}
	return base, m, nil
}

// forward runs the model on the case input.
// forward runs a bare base model, or a peft.Model (with the case's task_ids
// for multitask prompt tuning).
func (c *goldenCase) forward(model interface {
	Forward(models.Input) (*nn.Tensor, error)
}) (*nn.Tensor, error) {
	in, err := c.input()
	if err != nil {
		return nil, err
	}
	if m, ok := model.(*peft.Model); ok {
		return m.ForwardTasks(in, c.int32s("task_ids"))
	}
	return model.Forward(in)
}

// int32s returns the io integer tensor key as int32s, or nil.
func (c *goldenCase) int32s(key string) []int32 {
	t, ok := c.io[key]
	if !ok {
		return nil
	}
	out := make([]int32, len(t.I64))
	for i, v := range t.I64 {
		out[i] = int32(v)
	}
	return out
}

// compare checks got against the io tensor want with |got-want| <= atol +
// rtol*|want| and records a failure naming what.
func (c *goldenCase) compare(what string, got *nn.Tensor, want safetensors.Tensor, atol, rtol float64) {
	if got == nil {
		c.failf("%s: no result", what)
		return
	}
	if !sameShape(got.Shape(), want.Shape) {
		c.failf("%s: shape %v, want %v", what, got.Shape(), want.Shape)
		return
	}
	if msg := closeEnough(got.Data(), want.F32, atol, rtol); msg != "" {
		c.failf("%s: %s", what, msg)
	}
}

func sameShape(a, b []int) bool {
	if slices.Equal(a, b) {
		return true
	}
	n := func(s []int) int {
		p := 1
		for _, d := range s {
			p *= d
		}
		return p
	}
	return (len(a) == 0 || len(b) == 0) && n(a) == 1 && n(b) == 1
}

// closeEnough returns "" or a description of the worst violation.
func closeEnough(got, want []float32, atol, rtol float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d values, want %d", len(got), len(want))
	}
	worst, at, bad := 0.0, -1, 0
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		d := math.Abs(g - w)
		lim := atol + rtol*math.Abs(w)
		if d > lim || math.IsNaN(g) != math.IsNaN(w) {
			bad++
			if d-lim > worst || at < 0 {
				worst, at = d-lim, i
			}
		}
	}
	if bad == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d values out of tolerance (atol %g, rtol %g); worst at %d: got %g, want %g", bad, len(got), atol, rtol, at, got[at], want[at])
}

func (c *goldenCase) want(key string) (safetensors.Tensor, bool) {
	t, ok := c.io[key]
	if !ok {
		c.failf("io.safetensors has no %q", key)
	}
	return t, ok
}

// checkOutputs compares the forward output of every adapter (via
// SetAdapter) and of the active one.
func (c *goldenCase) checkOutputs(stage string, m *peft.Model) {
	if !c.has("forward") {
		// Prefix tuning cases record the encoder only: the reloaded adapter
		// is checked through its saved file.
		return
	}
	if len(c.AdapterNames) > 1 {
		for _, a := range c.AdapterNames {
			want, ok := c.want("output_adapter." + a)
			if !ok {
				continue
			}
			if err := m.SetAdapter(a); err != nil {
				c.failf("%s: SetAdapter(%q): %v", stage, a, err)
				continue
			}
			out, err := c.forward(m)
			if err != nil {
				c.failf("%s: forward with adapter %q: %v", stage, a, err)
				continue
			}
			c.compare(stage+": output_adapter."+a, out, want, c.Atol, c.Rtol)
		}
		if err := m.SetAdapter(c.ActiveAdapter); err != nil {
			c.failf("%s: SetAdapter(%q): %v", stage, c.ActiveAdapter, err)
			return
		}
	}
	want, ok := c.want("output_adapter")
	if !ok {
		return
	}
	out, err := c.forward(m)
	if err != nil {
		c.failf("%s: forward: %v", stage, err)
		return
	}
	c.compare(stage+": output_adapter", out, want, c.Atol, c.Rtol)
}

func (c *goldenCase) checkForward() {
	_, m, err := c.loaded()
	if err != nil {
		c.failf("forward: loading: %v", err)
		return
	}
	c.checkOutputs("forward", m)
}

func (c *goldenCase) checkBase() {
	_, m, err := c.loaded()
	if err != nil {
		c.failf("base: loading: %v", err)
		return
	}
	want, ok := c.want("output_base")
	if !ok {
		return
	}
	err = m.DisableAdapters(func() error {
		out, err := c.forward(m)
		if err != nil {
			return err
		}
		c.compare("base: output_base", out, want, c.Atol, c.Rtol)
		return nil
	})
	if err != nil {
		c.failf("base: %v", err)
	}
	if orig, ok := c.io["output_base_original"]; ok {
		pristine, err := c.baseModel()
		if err != nil {
			c.failf("base: %v", err)
			return
		}
		out, err := c.forward(pristine)
		if err != nil {
			c.failf("base: forward of the pristine base: %v", err)
			return
		}
		c.compare("base: output_base_original", out, orig, c.Atol, c.Rtol)
	}
	// Disabling must not stick.
	out, err := c.forward(m)
	if err != nil {
		c.failf("base: forward after re-enabling: %v", err)
		return
	}
	if w, ok := c.io["output_adapter"]; ok {
		c.compare("base: output_adapter after DisableAdapters", out, w, c.Atol, c.Rtol)
	}
}

func (c *goldenCase) checkGrad() {
	_, m, err := c.loaded()
	if err != nil {
		c.failf("grad: loading: %v", err)
		return
	}
	probe, ok := c.want("probe")
	if !ok {
		return
	}
	out, err := c.forward(m)
	if err != nil {
		c.failf("grad: forward: %v", err)
		return
	}
	p := nn.New(out.Backend(), probe.F32, probe.Shape...)
	if !sameShape(out.Shape(), probe.Shape) {
		c.failf("grad: output shape %v, probe %v", out.Shape(), probe.Shape)
		return
	}
	nn.SumAll(nn.Mul(out, p.Reshape(out.Shape()...))).Backward()

	sd, err := m.StateDict(c.ActiveAdapter)
	if err != nil {
		c.failf("grad: %v", err)
		return
	}
	trainableKeys := map[*nn.Tensor]string{}
	for key, t := range sd {
		if t.RequiresGrad() {
			trainableKeys[t] = key
		}
	}
	noGrad := map[string]bool{}
	for _, k := range c.WithoutGrad {
		noGrad[k] = true
	}
	// Every trainable saved tensor has its recorded gradient.
	for t, key := range trainableKeys {
		if noGrad[key] {
			continue
		}
		want, ok := c.io["grad."+key]
		if !ok {
			c.failf("grad: %s is trainable but io.safetensors has no grad for it", key)
			continue
		}
		g := t.Grad()
		if g == nil {
			c.failf("grad: %s: no gradient", key)
			continue
		}
		c.compare("grad: "+key, g, want, c.GradAtol, c.GradRtol)
	}
	// Every recorded gradient belongs to a trainable saved tensor.
	for name := range c.io {
		key, ok := strings.CutPrefix(name, "grad.")
		if !ok {
			continue
		}
		if t, ok := sd[key]; !ok || !t.RequiresGrad() {
			c.failf("grad: io has %s but gopeft has no trainable tensor saved as %s", name, key)
		}
	}
	// The trainable tensors PEFT does not save are the ones the case lists.
	var unsaved []string
	for _, tp := range m.TrainableParameters() {
		if _, ok := trainableKeys[tp.T]; !ok {
			unsaved = append(unsaved, tp.Name)
		}
	}
	want := slices.Clone(c.WithoutSavedKey)
	sort.Strings(unsaved)
	sort.Strings(want)
	if !slices.Equal(unsaved, want) {
		c.failf("grad: trainable tensors without a saved key: %q, want %q", unsaved, want)
	}
}

// weights returns a host copy of every base-model parameter by HF name.
func weights(root nn.Module) map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range nn.NamedParameters(root) {
		out[p.Name] = p.T.Data()
	}
	return out
}

func (c *goldenCase) checkMerge() {
	base, m, err := c.loaded()
	if err != nil {
		c.failf("merge: loading: %v", err)
		return
	}
	merged, err := m.MergeAndUnload(peft.SafeMerge())
	if err != nil {
		c.failf("merge: MergeAndUnload: %v", err)
		return
	}
	if merged != nn.Module(base) {
		c.failf("merge: MergeAndUnload returned a different root than the base model")
	}
	if want, ok := c.want("output_merged"); ok {
		out, err := c.forward(base)
		if err != nil {
			c.failf("merge: forward: %v", err)
		} else {
			c.compare("merge: output_merged", out, want, c.MergeAtol, c.Rtol)
		}
	}
	got := nn.NamedParameters(merged)
	seen := map[string]bool{}
	for _, p := range got {
		seen[p.Name] = true
		if w, ok := c.io["merged."+p.Name]; ok {
			c.compare("merge: merged."+p.Name, p.T, w, c.MergeAtol, c.Rtol)
			continue
		}
		w, ok := c.base[p.Name]
		if !ok {
			c.failf("merge: the unloaded model has %s, which the base model has not", p.Name)
			continue
		}
		c.compare("merge: unchanged "+p.Name, p.T, w, c.MergeAtol, 0)
	}
	for name := range c.base {
		if !seen[name] {
			c.failf("merge: the unloaded model lacks %s", name)
		}
	}
}

func (c *goldenCase) checkUnmerge() {
	base, m, err := c.loaded()
	if err != nil {
		c.failf("unmerge: loading: %v", err)
		return
	}
	before := weights(base)
	if err := m.Merge(peft.SafeMerge()); err != nil {
		c.failf("unmerge: Merge: %v", err)
		return
	}
	if want, ok := c.want("output_merged"); ok {
		out, err := c.forward(m)
		if err != nil {
			c.failf("unmerge: forward while merged: %v", err)
		} else {
			c.compare("unmerge: output while merged", out, want, c.MergeAtol, c.Rtol)
		}
	}
	if err := m.Unmerge(); err != nil {
		c.failf("unmerge: Unmerge: %v", err)
		return
	}
	after := weights(base)
	for name, w := range before {
		if msg := closeEnough(after[name], w, c.MergeAtol, 0); msg != "" {
			c.failf("unmerge: %s not restored: %s", name, msg)
		}
	}
	c.checkOutputs("unmerge", m)
}

// checkSaveAndReload saves the adapters through the public API, compares
// the files with the case's, and reloads them into a fresh base model.
func (c *goldenCase) checkSaveAndReload() {
	_, m, err := c.loaded()
	if err != nil {
		c.failf("save: loading: %v", err)
		return
	}
	tmp, err := os.MkdirTemp("", "golden-"+c.name+"-")
	if err != nil {
		c.failf("save: %v", err)
		return
	}
	defer os.RemoveAll(tmp)
	if err := m.Save(tmp); err != nil {
		c.failf("save: %v", err)
		return
	}
	if out := os.Getenv("GOPEFT_GOLDEN_SAVE_DIR"); out != "" {
		if err := m.Save(filepath.Join(out, c.name)); err != nil {
			c.failf("save to GOPEFT_GOLDEN_SAVE_DIR: %v", err)
		}
	}
	savedDir := func(a string) string {
		if a == peft.DefaultAdapterName {
			return tmp
		}
		return filepath.Join(tmp, a)
	}
	for _, a := range c.AdapterNames {
		c.compareAdapterFiles(a, savedDir(a), filepath.Join(c.dir, c.AdapterDirs[a]))
	}
	_, m2, err := c.loadFrom(savedDir)
	if err != nil {
		c.failf("reload: %v", err)
		return
	}
	if c.has("forward") {
		c.checkOutputs("reload", m2)
	}
}

// compareAdapterFiles checks that gopeft's saved adapter folder holds the
// same tensors (keys, shapes, values) as PEFT's, and a config of the same
// method with the same target modules.
func (c *goldenCase) compareAdapterFiles(adapter, got, want string) {
	g, gm, err := safetensors.ReadAll(filepath.Join(got, peft.WeightsName))
	if err != nil {
		c.failf("save: adapter %q: %v", adapter, err)
		return
	}
	w, _, err := safetensors.ReadAll(filepath.Join(want, peft.WeightsName))
	if err != nil {
		c.failf("save: adapter %q: %v", adapter, err)
		return
	}
	if gm["format"] != "pt" {
		c.failf("save: adapter %q: metadata %v, want format pt", adapter, gm)
	}
	for k, wt := range w {
		gt, ok := g[k]
		if !ok {
			c.failf("save: adapter %q: saved file lacks %s", adapter, k)
			continue
		}
		if !slices.Equal(gt.Shape, wt.Shape) {
			c.failf("save: adapter %q: %s has shape %v, want %v", adapter, k, gt.Shape, wt.Shape)
			continue
		}
		if msg := closeEnough(gt.F32, wt.F32, 0, 0); msg != "" || !slices.Equal(gt.I64, wt.I64) {
			c.failf("save: adapter %q: %s differs: %s", adapter, k, msg)
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			c.failf("save: adapter %q: saved file has %s, which PEFT's has not", adapter, k)
		}
	}
	gotCfg, err := peft.LoadConfig(got)
	if err != nil {
		c.failf("save: adapter %q: %v", adapter, err)
		return
	}
	wantCfg, err := peft.LoadConfig(want)
	if err != nil {
		c.failf("save: adapter %q: %v", adapter, err)
		return
	}
	if gotCfg.Base().PeftType != wantCfg.Base().PeftType || !gotCfg.Base().InferenceMode {
		c.failf("save: adapter %q: config peft_type %q inference_mode %v, want %q true", adapter, gotCfg.Base().PeftType, gotCfg.Base().InferenceMode, wantCfg.Base().PeftType)
	}
	gt, gok := gotCfg.(tuners.TargetedConfig)
	wt, wok := wantCfg.(tuners.TargetedConfig)
	if gok && wok {
		a, b := gt.Targeting().TargetModules, wt.Targeting().TargetModules
		an, bn := slices.Clone(a.Names), slices.Clone(b.Names)
		sort.Strings(an)
		sort.Strings(bn)
		if a.Pattern != b.Pattern || !slices.Equal(an, bn) {
			c.failf("save: adapter %q: target_modules %v, want %v", adapter, a, b)
		}
	}
}

// combo is one entry of case.json's combos (PEFT's add_weighted_adapter
// arguments).
type combo struct {
	Name               string    `json:"name"`
	Adapters           []string  `json:"adapters"`
	Weights            []float64 `json:"weights"`
	CombinationType    string    `json:"combination_type"`
	Density            *float64  `json:"density"`
	SVDRank            *int      `json:"svd_rank"`
	SVDClamp           *float64  `json:"svd_clamp"`
	MajoritySignMethod *string   `json:"majority_sign_method"`
}

func (cb combo) options() lora.WeightedOptions {
	o := lora.WeightedOptions{CombinationType: cb.CombinationType}
	if cb.Density != nil {
		o.Density = *cb.Density
	}
	if cb.SVDRank != nil {
		o.SVDRank = *cb.SVDRank
	}
	if cb.SVDClamp != nil {
		o.SVDClamp = *cb.SVDClamp
	}
	if cb.MajoritySignMethod != nil {
		o.MajoritySignMethod = *cb.MajoritySignMethod
	}
	return o
}

// checkCombos creates every combination of the case with
// AddWeightedAdapter and compares it with PEFT's: the weights (the product
// B@A for the svd types, whose factor signs are arbitrary; for dare types,
// whose masks are random, that every value is one that some mask gives), the
// output with the combination active (not for dare), and the saved files.
func (c *goldenCase) checkCombos() {
	base, m, err := c.loaded()
	if err != nil {
		c.failf("combos: loading: %v", err)
		return
	}
	var combos []combo
	for _, raw := range c.Combos {
		var cb combo
		if err := json.Unmarshal(raw, &cb); err != nil {
			c.failf("combos: %v", err)
			return
		}
		combos = append(combos, cb)
	}
	for _, cb := range combos {
		what := "combos: " + cb.Name
		if err := m.AddWeightedAdapter(cb.Adapters, cb.Weights, cb.Name, cb.options()); err != nil {
			c.failf("%s: AddWeightedAdapter: %v", what, err)
			continue
		}
		sd, err := m.StateDict(cb.Name)
		if err != nil {
			c.failf("%s: %v", what, err)
			continue
		}
		prefix := "combo." + cb.Name + "."
		for k := range c.io {
			if key, ok := strings.CutPrefix(k, prefix); ok && key != "output" {
				if _, ok := sd[key]; !ok {
					c.failf("%s: gopeft's combination has no %s", what, key)
				}
			}
		}
		random := strings.HasPrefix(cb.CombinationType, "dare")
		switch {
		case strings.HasSuffix(cb.CombinationType, "svd"):
			c.compareProducts(what, sd, prefix)
		case random:
			c.checkDare(what, m, base, cb, sd, prefix)
		default:
			for key, t := range sd {
				if w, ok := c.want(prefix + key); ok {
					c.compare(what+": "+key, t, w, c.Atol, c.Rtol)
				}
			}
		}
		if !random {
			if err := m.SetAdapter(cb.Name); err != nil {
				c.failf("%s: SetAdapter: %v", what, err)
				continue
			}
			if want, ok := c.want(prefix + "output"); ok {
				out, err := c.forward(m)
				if err != nil {
					c.failf("%s: forward: %v", what, err)
				} else {
					c.compare(what+": output", out, want, c.Atol, c.Rtol)
				}
			}
		}
	}
	// Save: the combinations go to sub-folders beside the trained adapters.
	tmp, err := os.MkdirTemp("", "golden-combos-")
	if err != nil {
		c.failf("combos: %v", err)
		return
	}
	defer os.RemoveAll(tmp)
	if err := m.Save(tmp); err != nil {
		c.failf("combos: save: %v", err)
		return
	}
	if out := os.Getenv("GOPEFT_GOLDEN_SAVE_DIR"); out != "" {
		if err := m.Save(filepath.Join(out, c.name)); err != nil {
			c.failf("combos: save to GOPEFT_GOLDEN_SAVE_DIR: %v", err)
		}
	}
	for _, cb := range combos {
		got, _, err := safetensors.ReadAll(filepath.Join(tmp, cb.Name, peft.WeightsName))
		if err != nil {
			c.failf("combos: %s: %v", cb.Name, err)
			continue
		}
		want, _, err := safetensors.ReadAll(filepath.Join(c.dir, "adapter", cb.Name, peft.WeightsName))
		if err != nil {
			c.failf("combos: %s: %v", cb.Name, err)
			continue
		}
		var gk, wk []string
		for k, t := range got {
			gk = append(gk, fmt.Sprint(k, t.Shape))
		}
		for k, t := range want {
			wk = append(wk, fmt.Sprint(k, t.Shape))
		}
		sort.Strings(gk)
		sort.Strings(wk)
		if !slices.Equal(gk, wk) {
			c.failf("combos: %s: saved keys and shapes %q, PEFT's %q", cb.Name, gk, wk)
		}
	}
}

// compareProducts compares B@A of every layer of a combination with PEFT's.
func (c *goldenCase) compareProducts(what string, sd map[string]*nn.Tensor, prefix string) {
	for key, a := range sd {
		head, ok := strings.CutSuffix(key, "lora_A.weight")
		if !ok {
			continue
		}
		b := sd[head+"lora_B.weight"]
		wa, okA := c.want(prefix + key)
		wb, okB := c.want(prefix + head + "lora_B.weight")
		if b == nil || !okA || !okB {
			continue
		}
		got := product(b.Data(), b.Shape(), a.Data(), a.Shape())
		want := product(wb.F32, wb.Shape, wa.F32, wa.Shape)
		if got == nil || want == nil {
			c.failf("%s: %s: factors are not matrices (%v, %v)", what, head, b.Shape(), a.Shape())
			continue
		}
		if msg := closeEnough(got, want, c.Atol, c.Rtol); msg != "" {
			c.failf("%s: B@A of %s: %s", what, strings.TrimSuffix(head, "."), msg)
		}
	}
}

// product returns B@A of 2-D factors B [out, r] and A [r, in] in float32.
func product(b []float32, bs []int, a []float32, as []int) []float32 {
	if len(bs) != 2 || len(as) != 2 || bs[1] != as[0] {
		return nil
	}
	out, r, in := bs[0], bs[1], as[1]
	p := make([]float32, out*in)
	for i := range out {
		for j := range in {
			var s float64
			for k := range r {
				s += float64(b[i*r+k]) * float64(a[k*in+j])
			}
			p[i*in+j] = float32(s)
		}
	}
	return p
}

// checkDare checks a dare combination without redrawing its masks: the
// recorded factors, loaded as an adapter, give the recorded output; and for
// dare_linear every value of both gopeft's and PEFT's factors is one that
// some mask gives (sum over a subset S of the adapters of w_i*t_i/density,
// with PEFT's weights w = ±sqrt(|weight*scaling|)).
func (c *goldenCase) checkDare(what string, m *peft.Model, base models.Model, cb combo, sd map[string]*nn.Tensor, prefix string) {
	recorded := cb.Name + "_recorded"
	if err := m.LoadAdapter(filepath.Join(c.dir, "adapter", cb.Name), recorded); err != nil {
		c.failf("%s: loading PEFT's factors: %v", what, err)
		return
	}
	defer func() {
		if err := m.SetAdapter(c.ActiveAdapter); err != nil {
			c.failf("%s: %v", what, err)
		}
		if err := m.DeleteAdapter(recorded); err != nil {
			c.failf("%s: %v", what, err)
		}
	}()
	if err := m.SetAdapter(recorded); err != nil {
		c.failf("%s: %v", what, err)
		return
	}
	if want, ok := c.want(prefix + "output"); ok {
		out, err := c.forward(m)
		if err != nil {
			c.failf("%s: forward: %v", what, err)
		} else {
			c.compare(what+": output of PEFT's factors", out, want, c.Atol, c.Rtol)
		}
	}
	if cb.CombinationType != lora.CombineDareLinear || cb.Density == nil {
		return
	}
	density := *cb.Density
	sources := make([]map[string]*nn.Tensor, len(cb.Adapters))
	for i, a := range cb.Adapters {
		var err error
		if sources[i], err = m.StateDict(a); err != nil {
			c.failf("%s: %v", what, err)
			return
		}
	}
	for key, t := range sd {
		isA := strings.Contains(key, "lora_A") || strings.Contains(key, "lora_embedding_A")
		path := strings.TrimPrefix(key[:strings.Index(key, ".lora_")], "base_model.model.")
		layer := moduleAt(base, path)
		sc, ok := layer.(interface{ Scaling(string) float64 })
		if !ok {
			c.failf("%s: no LoRA layer at %s", what, path)
			continue
		}
		var terms [][]float32
		var ws []float64
		for i, a := range cb.Adapters {
			src, ok := sources[i][key]
			if !ok {
				continue
			}
			f := cb.Weights[i] * sc.Scaling(a)
			w := math.Sqrt(math.Abs(f))
			if isA && f < 0 {
				w = -w
			}
			terms = append(terms, src.Data())
			ws = append(ws, w/density)
		}
		want, ok := c.want(prefix + key)
		if !ok {
			continue
		}
		for _, side := range []struct {
			who  string
			vals []float32
		}{{"gopeft", t.Data()}, {"PEFT", want.F32}} {
			if msg := maskSums(side.vals, terms, ws, c.Atol, c.Rtol); msg != "" {
				c.failf("%s: %s's %s: %s", what, side.who, key, msg)
			}
		}
	}
}

// maskSums checks that every vals[j] equals sum over some subset S of
// ws[i]*terms[i][j].
func maskSums(vals []float32, terms [][]float32, ws []float64, atol, rtol float64) string {
	for j, v := range vals {
		found := false
		for mask := 0; mask < 1<<len(terms) && !found; mask++ {
			var s float64
			for i := range terms {
				if mask&(1<<i) != 0 {
					s += ws[i] * float64(terms[i][j])
				}
			}
			found = math.Abs(float64(v)-s) <= atol+rtol*math.Abs(s)
		}
		if !found {
			return fmt.Sprintf("value %g at %d is no masked sum of the adapters", v, j)
		}
	}
	return ""
}

// moduleAt returns the module at path under root, or nil.
func moduleAt(root nn.Module, path string) nn.Module {
	var found nn.Module
	_ = tuners.WalkTargets(root, func(n tuners.Node) error {
		if n.Path == path {
			found = n.Module
		}
		return nil
	})
	return found
}

// checkEncoder runs a prompt-learning case's encoder checks: PEFT's encoder
// parameters (param.*) are copied into a new trainable adapter's encoder by
// name, which must give encoder_output for the virtual tokens (one row per
// task for multitask prompt tuning) and, for encoder_grad, the gradients of
// sum(encoder_output * encoder_probe).
// encoderModel builds a new trainable adapter of the case's first adapter
// config on a fresh base model and copies PEFT's encoder parameters
// (param.*) into its prompt encoder by name. It returns the model, the
// encoder and its parameters under PEFT's names; ok is false after a
// recorded failure.
func (c *goldenCase) encoderModel(stage string) (m *peft.Model, enc tuners.PromptEncoder, params map[string]*nn.Tensor, ok bool) {
	name := c.AdapterNames[0]
	base, err := c.baseModel()
	if err != nil {
		c.failf("%s: %v", stage, err)
		return nil, nil, nil, false
	}
	cfg, err := peft.LoadConfig(filepath.Join(c.dir, c.AdapterDirs[name]))
	if err != nil {
		c.failf("%s: %v", stage, err)
		return nil, nil, nil, false
	}
	cfg.Base().InferenceMode = false
	m, err = peft.New(base, cfg, peft.AdapterName(name))
	if err != nil {
		c.failf("%s: %v", stage, err)
		return nil, nil, nil, false
	}
	enc = m.PromptEncoder(name)
	if enc == nil {
		c.failf("%s: adapter %q has no prompt encoder", stage, name)
		return nil, nil, nil, false
	}
	prefix := "prompt_encoder." + name + "."
	params = map[string]*nn.Tensor{}
	for _, p := range nn.NamedParameters(enc) {
		params[prefix+p.Name] = p.T
	}
	seen := map[string]bool{}
	failed := false
	for k, v := range c.io {
		pname, isParam := strings.CutPrefix(k, "param.")
		if !isParam {
			continue
		}
		seen[pname] = true
		t, found := params[pname]
		switch {
		case !found:
			c.failf("%s: PEFT's encoder has %s, gopeft's has not", stage, pname)
			failed = true
		case !sameShape(t.Shape(), v.Shape):
			c.failf("%s: %s has shape %v, PEFT's %v", stage, pname, t.Shape(), v.Shape)
			failed = true
		default:
			t.CopyFromHost(v.F32)
		}
	}
	for pname := range params {
		if !seen[pname] {
			c.failf("%s: gopeft's encoder has %s, PEFT's has not", stage, pname)
			failed = true
		}
	}
	return m, enc, params, !failed
}

func (c *goldenCase) checkEncoder() {
	_, enc, params, ok := c.encoderModel("encoder")
	if !ok {
		return
	}
	tokens := c.int32s("prompt_tokens")
	taskIDs := c.int32s("encoder_task_ids")
	batch, indices := 1, tokens
	if taskIDs != nil {
		batch, indices = len(taskIDs), nil
		for range taskIDs {
			indices = append(indices, tokens...)
		}
	}
	out, err := enc.Encode(indices, batch, taskIDs)
	if err != nil {
		c.failf("encoder: Encode: %v", err)
		return
	}
	c.ran("encoder_forward")
	if want, ok := c.want("encoder_output"); ok {
		c.compare("encoder: encoder_output", out, want, c.Atol, c.Rtol)
	}
	// CPT records its projection radii and the delta after the first
	// projection (which the forward pass wrote back).
	if want, ok := c.io["cpt_epsilon"]; ok {
		if e, ok := enc.(interface{ Epsilon() *nn.Tensor }); !ok {
			c.failf("encoder: io has cpt_epsilon but the encoder has no Epsilon")
		} else {
			c.compare("encoder: cpt_epsilon", e.Epsilon().Reshape(-1), want, c.Atol, c.Rtol)
		}
	}
	if want, ok := c.io["cpt_delta_projected"]; ok {
		if d := params["prompt_encoder."+c.AdapterNames[0]+".delta_embedding.weight"]; d == nil {
			c.failf("encoder: io has cpt_delta_projected but the encoder has no delta_embedding.weight")
		} else {
			c.compare("encoder: cpt_delta_projected", d, want, c.Atol, c.Rtol)
		}
	}
	if !c.has("encoder_grad") {
		return
	}
	c.ran("encoder_grad")
	probe, ok := c.want("encoder_probe")
	if !ok {
		return
	}
	if !sameShape(out.Shape(), probe.Shape) {
		c.failf("encoder: output shape %v, probe %v", out.Shape(), probe.Shape)
		return
	}
	nn.SumAll(nn.Mul(out, nn.New(out.Backend(), probe.F32, out.Shape()...))).Backward()
	for pname, t := range params {
		want, ok := c.io["grad."+pname]
		switch {
		case !ok && t.RequiresGrad():
			c.failf("encoder: %s is trainable but io.safetensors has no grad for it", pname)
		case ok && !t.RequiresGrad():
			c.failf("encoder: io has grad.%s but gopeft's %s is frozen", pname, pname)
		case ok:
			if g := t.Grad(); g == nil {
				c.failf("encoder: %s: no gradient", pname)
			} else {
				c.compare("encoder: grad."+pname, g, want, c.GradAtol, c.GradRtol)
			}
		}
	}
}

// checkLoss runs a case's training loss (PEFT's model(input_ids, labels,
// input_type_mask)) on a new adapter holding PEFT's encoder parameters,
// through Model.PromptLoss, and for loss_grad the gradients of that loss.
func (c *goldenCase) checkLoss() {
	m, _, params, ok := c.encoderModel("loss")
	if !ok {
		return
	}
	in, err := c.input()
	if err != nil {
		c.failf("loss: %v", err)
		return
	}
	loss, err := m.PromptLoss(in, c.int32s("labels"), c.int32s("input_type_mask"))
	if err != nil {
		c.failf("loss: %v", err)
		return
	}
	c.ran("loss")
	if want, ok := c.want("output_loss"); ok {
		c.compare("loss: output_loss", loss, want, c.Atol, c.Rtol)
	}
	if !c.has("loss_grad") {
		return
	}
	c.ran("loss_grad")
	loss.Backward()
	for pname, t := range params {
		want, ok := c.io["loss_grad."+pname]
		switch {
		case !ok && t.RequiresGrad():
			c.failf("loss: %s is trainable but io.safetensors has no loss_grad for it", pname)
		case ok:
			if g := t.Grad(); g == nil {
				c.failf("loss: %s: no gradient", pname)
			} else {
				c.compare("loss: loss_grad."+pname, g, want, c.GradAtol, c.GradRtol)
			}
		}
	}
}
