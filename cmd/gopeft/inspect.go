package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// inspectReport is the result of gopeft inspect (its --json output).
type inspectReport struct {
	Dir         string          `json:"dir"`
	Method      string          `json:"method"`
	TaskType    string          `json:"task_type,omitempty"`
	BaseModel   string          `json:"base_model_name_or_path,omitempty"`
	PeftVersion string          `json:"peft_version,omitempty"`
	Targets     json.RawMessage `json:"target_modules,omitempty"`
	Settings    map[string]any  `json:"settings,omitempty"`
	Modules     []string        `json:"modules"`
	Ranks       map[string]int  `json:"ranks,omitempty"`
	Other       []string        `json:"other_tensors,omitempty"`
	Tensors     int             `json:"tensors"`
	Params      int             `json:"parameters"`
	DTypes      map[string]int  `json:"dtypes"`
	Bytes       int64           `json:"bytes"`
	SubAdapters []string        `json:"sub_adapters,omitempty"`
	Base        string          `json:"base,omitempty"`
	Mismatches  []string        `json:"mismatches,omitempty"`
}

// settingKeys are the config fields inspect shows when present.
var settingKeys = []string{"r", "lora_alpha", "alpha", "init_r", "target_r", "rank_pattern", "alpha_pattern",
	"use_dora", "use_rslora", "oft_block_size", "boft_block_size", "vera_dropout", "lora_dropout",
	"feedforward_modules", "num_virtual_tokens", "modules_to_save", "bias"}

func runInspect(e *env, args []string) error {
	fs := e.newFlags("inspect")
	base := fs.String("base", "", "base checkpoint to check the adapter against (every key must target a module of it with the right shape)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one adapter folder, got %d arguments", len(pos))
	}
	dir := pos[0]
	rep, err := inspectAdapter(dir)
	if err != nil {
		return err
	}
	if *base != "" {
		rep.Base = *base
		if rep.Mismatches, err = checkAgainstBase(dir, *base); err != nil {
			return err
		}
	}
	if !e.json {
		printInspect(e, rep)
	} else if err := e.emit(rep); err != nil {
		return err
	}
	if len(rep.Mismatches) > 0 {
		return fmt.Errorf("%s does not fit %s: %d mismatch(es)", dir, *base, len(rep.Mismatches))
	}
	return nil
}

func inspectAdapter(dir string) (*inspectReport, error) {
	cfgPath := filepath.Join(dir, peft.ConfigName)
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg, err := peft.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	b := cfg.Base()
	rep := &inspectReport{Dir: dir, Method: b.PeftType, TaskType: b.TaskType, BaseModel: b.BaseModelNameOrPath,
		PeftVersion: b.PeftVersion, Settings: map[string]any{}, DTypes: map[string]int{}, Ranks: map[string]int{}}
	if t, ok := raw["target_modules"]; ok && string(t) != "null" {
		rep.Targets = t
	}
	for _, k := range settingKeys {
		if v, ok := raw[k]; ok && string(v) != "null" && string(v) != "{}" && string(v) != "[]" {
			var x any
			_ = json.Unmarshal(v, &x)
			rep.Settings[k] = x
		}
	}
	wpath := filepath.Join(dir, peft.WeightsName)
	st, err := os.Stat(wpath)
	if err != nil {
		return nil, err
	}
	rep.Bytes = st.Size()
	f, err := safetensors.Open(wpath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	prefix := ""
	if m, ok := peft.Method(b.PeftType); ok {
		prefix = m.Prefix()
	}
	mods := map[string]bool{}
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		rep.Tensors++
		rep.Params += info.Len()
		rep.DTypes[info.DType]++
		mod := adapterModule(name, prefix)
		if mod == "" {
			rep.Other = append(rep.Other, name)
			continue
		}
		mods[mod] = true
		// LoRA-style factors: the rank is lora_A's first dimension.
		if strings.HasSuffix(name, ".lora_A.weight") && len(info.Shape) >= 2 {
			rep.Ranks[mod] = info.Shape[0]
		}
	}
	for m := range mods {
		rep.Modules = append(rep.Modules, m)
	}
	sort.Strings(rep.Modules)
	// Methods without LoRA-style factors: the config's r, or the rank_pattern
	// entry that matches the module (PEFT's lookup).
	var r int
	if v, ok := raw["r"]; ok && json.Unmarshal(v, &r) == nil && r > 0 {
		var pattern tuners.PatternMap[int]
		if v, ok := raw["rank_pattern"]; ok {
			_ = json.Unmarshal(v, &pattern)
		}
		for _, m := range rep.Modules {
			if _, ok := rep.Ranks[m]; ok {
				continue
			}
			rep.Ranks[m] = r
			if pr, _, ok := pattern.Lookup(m); ok {
				rep.Ranks[m] = pr
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, en := range entries {
		if _, err := os.Stat(filepath.Join(dir, en.Name(), peft.ConfigName)); en.IsDir() && err == nil {
			rep.SubAdapters = append(rep.SubAdapters, en.Name())
		}
	}
	return rep, nil
}

// adapterModule returns the module path a saved key belongs to: the part
// between "base_model.model." and the method's parameter prefix ("" for
// keys that are not a module's adapter tensors).
func adapterModule(key, prefix string) string {
	rest, ok := strings.CutPrefix(key, "base_model.model.")
	if !ok || prefix == "" {
		return ""
	}
	parts := strings.Split(rest, ".")
	for i, p := range parts {
		if strings.HasPrefix(p, prefix) && i > 0 {
			return strings.Join(parts[:i], ".")
		}
	}
	return ""
}

func printInspect(e *env, r *inspectReport) {
	e.printf("adapter:     %s\n", r.Dir)
	e.printf("method:      %s", r.Method)
	if r.TaskType != "" {
		e.printf(" (task %s)", r.TaskType)
	}
	if r.PeftVersion != "" {
		e.printf(", written by PEFT %s", r.PeftVersion)
	}
	e.printf("\n")
	if r.BaseModel != "" {
		e.printf("base model:  %s\n", r.BaseModel)
	}
	if r.Targets != nil {
		e.printf("targets:     %s\n", compactJSON(r.Targets))
	}
	keys := make([]string, 0, len(r.Settings))
	for k := range r.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := json.Marshal(r.Settings[k])
		e.printf("%-12s %s\n", k+":", v)
	}
	e.printf("modules:     %d adapted\n", len(r.Modules))
	for _, m := range r.Modules {
		if rk, ok := r.Ranks[m]; ok {
			e.printf("  %s (rank %d)\n", m, rk)
		} else {
			e.printf("  %s\n", m)
		}
	}
	if len(r.Other) > 0 {
		e.printf("other:       %s\n", strings.Join(r.Other, ", "))
	}
	var dts []string
	for d, n := range r.DTypes {
		dts = append(dts, fmt.Sprintf("%s x%d", d, n))
	}
	sort.Strings(dts)
	e.printf("parameters:  %d in %d tensors (%s)\n", r.Params, r.Tensors, strings.Join(dts, ", "))
	e.printf("size:        %d bytes (%.1f KiB)\n", r.Bytes, float64(r.Bytes)/1024)
	if len(r.SubAdapters) > 0 {
		e.printf("also:        adapters %s in sub-folders\n", strings.Join(r.SubAdapters, ", "))
	}
	if r.Base != "" {
		if len(r.Mismatches) == 0 {
			e.printf("base check:  every adapter tensor fits a module of %s\n", r.Base)
		} else {
			e.printf("base check:  %d mismatch(es) against %s:\n", len(r.Mismatches), r.Base)
			for _, m := range r.Mismatches {
				e.printf("  %s\n", m)
			}
		}
	}
}

func compactJSON(b []byte) string {
	var x any
	if json.Unmarshal(b, &x) != nil {
		return string(b)
	}
	out, _ := json.Marshal(x)
	return string(out)
}

// checkAgainstBase injects the adapter's config into the base model and
// compares the tensors the method expects with the file's, naming every
// missing, unexpected or mis-shaped key.
func checkAgainstBase(dir, baseDir string) ([]string, error) {
	cfg, err := peft.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	model, err := llama.LoadWith(baseDir, llama.LoadOptions{})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	wpath := filepath.Join(dir, peft.WeightsName)
	file, _, err := safetensors.ReadAll(wpath)
	if err != nil {
		return nil, err
	}
	if ff, ok := cfg.(tuners.FileFormat); ok {
		if file, err = ff.DecodeFile(file); err != nil {
			return nil, fmt.Errorf("%s: %w", wpath, err)
		}
	}
	cfg.Base().InferenceMode = true
	m, err := peft.New(model, cfg)
	if errors.Is(err, tuners.ErrNoTarget) {
		return []string{fmt.Sprintf("target_modules: %v", err)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", dir, baseDir, err)
	}
	want, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if meth, ok := peft.Method(cfg.Base().PeftType); ok {
		prefix = meth.Prefix()
	}
	var bad []string
	keys := make([]string, 0, len(file))
	for k := range file {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t, ok := want[k]
		if !ok {
			mod := adapterModule(k, prefix)
			if mod != "" {
				if _, err := nn.GetModule(m.Base(), mod); err != nil {
					bad = append(bad, fmt.Sprintf("%s: the base has no module %s", k, mod))
					continue
				}
				bad = append(bad, fmt.Sprintf("%s: module %s is not adapted by this config (target_modules)", k, mod))
				continue
			}
			bad = append(bad, fmt.Sprintf("%s: unexpected tensor", k))
			continue
		}
		if !slices.Equal(file[k].Shape, t.Shape()) {
			bad = append(bad, fmt.Sprintf("%s: shape %v, the base module needs %v", k, file[k].Shape, t.Shape()))
		}
	}
	var missing []string
	for k := range want {
		if _, ok := file[k]; !ok {
			missing = append(missing, fmt.Sprintf("%s: missing from %s", k, peft.WeightsName))
		}
	}
	sort.Strings(missing)
	return append(bad, missing...), nil
}
