package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/internal/demo"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/loha"
	"github.com/gopeft/gopeft/tuners/lora"
)

// gopeft runs the command line in-process.
func gopeft(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e, false)
	return o.String(), e.String(), code
}

// tinyCheckpoint writes the demo architecture with random weights (seed) to
// dir, split into the given number of shards (1: model.safetensors alone).
func tinyCheckpoint(t *testing.T, dir string, seed uint64, shards int) {
	t.Helper()
	m, err := llama.New(nil, demo.ModelConfig(), seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"demo": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if shards == 1 {
		return
	}
	single := filepath.Join(dir, safetensors.SingleFile)
	all, meta, err := safetensors.ReadAll(single)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	weightMap := map[string]string{}
	var total int64
	for s := range shards {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		part := map[string]safetensors.Tensor{}
		for i, n := range names {
			if i*shards/len(names) == s {
				part[n] = all[n]
				weightMap[n] = file
				total += int64(4 * len(all[n].F32))
			}
		}
		if err := safetensors.Save(filepath.Join(dir, file), part, meta); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(single); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.SaveIndex(dir, weightMap, total); err != nil {
		t.Fatal(err)
	}
}

// randomAdapter saves an adapter of cfg on the checkpoint in baseDir, with
// every adapter tensor set to small seeded values (so that merging changes the
// weights).
func randomAdapter(t *testing.T, baseDir, dir string, cfg tuners.Config, seed uint64) {
	t.Helper()
	base, err := llama.Load(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := nn.NewRNG(seed)
	for _, p := range m.TrainableParameters() {
		p.T.CopyFrom(nn.Normal(nil, rng, 0, 0.05, p.T.Shape()...))
	}
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
}

func loraConfig(targets ...string) *lora.Config {
	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha = 4, 8
	cfg.TargetModules = tuners.Names(targets...)
	return cfg
}

// inMemoryMerge merges adapters (weight 1 each, in order) the ordinary way and
// returns the merged state dict.
func inMemoryMerge(t *testing.T, baseDir string, adapters ...string) map[string][]float32 {
	t.Helper()
	var model nn.Module
	model, err := llama.Load(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range adapters {
		m, err := peft.Load(model, a)
		if err != nil {
			t.Fatal(err)
		}
		if model, err = m.MergeAndUnload(); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string][]float32{}
	for k, v := range nn.StateDict(model) {
		out[k] = v.Data()
	}
	return out
}

func readCheckpoint(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	out := map[string][]float32{}
	for _, n := range ck.Names() {
		d, err := ck.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = slices.Clone(d)
	}
	return out
}

// TestMergeStreamingEqualsInMemory: merging shard by shard gives, bit for
// bit, the weights of peft's in-memory MergeAndUnload, keeps the sharding
// and index, and copies the other files.
func TestMergeStreamingEqualsInMemory(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "base")
	tinyCheckpoint(t, base, 3, 3)
	ad1, ad2 := filepath.Join(root, "lora"), filepath.Join(root, "loha")
	randomAdapter(t, base, ad1, loraConfig("q_proj", "v_proj", "down_proj", "lm_head"), 1)
	lh := loha.NewConfig()
	lh.R, lh.Alpha = 2, 4
	lh.TargetModules = tuners.Names("o_proj", "up_proj")
	randomAdapter(t, base, ad2, lh, 2)

	// One module per chunk: the chunked path must give the same bytes.
	defer func(c int) { chunkBytes = c }(chunkBytes)
	chunkBytes = 1
	chunked := filepath.Join(root, "chunked")
	if _, stderr, code := gopeft(t, "merge", "--base", base, "--adapter", ad1, "--adapter", ad2, "--out", chunked); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	chunkBytes = 32 << 20
	out := filepath.Join(root, "merged")
	stdout, stderr, code := gopeft(t, "merge", "--base", base, "--adapter", ad1, "--adapter", ad2, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	var rep mergeReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	if rep.Shards != 3 || len(rep.Merged) != 2*3+2*2+1 {
		t.Errorf("report: %d shards, merged %v", rep.Shards, rep.Merged)
	}
	want := inMemoryMerge(t, base, ad1, ad2)
	got := readCheckpoint(t, out)
	if len(got) != len(want) {
		t.Fatalf("%d tensors, want %d", len(got), len(want))
	}
	orig := readCheckpoint(t, base)
	changed := 0
	for k, w := range want {
		g := got[k]
		for i := range w {
			if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
				t.Fatalf("%s[%d] = %v, in-memory merge %v", k, i, g[i], w[i])
			}
		}
		if !slices.Equal(g, orig[k]) {
			changed++
		}
	}
	if changed != 11 {
		t.Errorf("%d tensors changed by merging, want 11", changed)
	}
	for _, f := range []string{safetensors.IndexFile, "config.json", "tokenizer.json", "model-00002-of-00003.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if c := readCheckpoint(t, chunked); len(c) != len(got) {
		t.Errorf("chunked merge: %d tensors, want %d", len(c), len(got))
	} else {
		for k, v := range got {
			if !slices.Equal(c[k], v) {
				t.Errorf("chunked merge differs in %s", k)
			}
		}
	}
	// The merged folder loads as a model.
	if _, err := llama.Load(out); err != nil {
		t.Fatal(err)
	}
}

func TestMergeWeightAndDType(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "base")
	tinyCheckpoint(t, base, 4, 1)
	ad := filepath.Join(root, "lora")
	randomAdapter(t, base, ad, loraConfig("q_proj"), 5)
	half, full := filepath.Join(root, "half"), filepath.Join(root, "full")
	if _, e, code := gopeft(t, "merge", "--base", base, "--adapter", ad, "--weight", "0.5", "--out", half, "--dtype", "bf16"); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := gopeft(t, "merge", "--base", base, "--adapter", ad, "--out", full); code != 0 {
		t.Fatal(e)
	}
	f, err := safetensors.Open(filepath.Join(half, safetensors.SingleFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range f.Names() {
		if info, _ := f.Info(n); info.DType != safetensors.BF16 {
			t.Fatalf("%s is %s, want BF16", n, info.DType)
		}
	}
	if c, err := llama.ReadConfig(half); err != nil || c.TorchDtype != "bfloat16" {
		t.Errorf("merged config.json: torch_dtype %q, %v", c.TorchDtype, err)
	}
	o, h, w := readCheckpoint(t, base), readCheckpoint(t, half), readCheckpoint(t, full)
	k := "model.layers.1.self_attn.q_proj.weight"
	for i := range o[k] {
		want := o[k][i] + 0.5*(w[k][i]-o[k][i])
		if math.Abs(float64(h[k][i]-want)) > 1e-2*math.Abs(float64(want))+1e-6 {
			t.Fatalf("%s[%d] = %v, want about %v", k, i, h[k][i], want)
		}
	}
}

func TestMergeErrors(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "base")
	tinyCheckpoint(t, base, 3, 2)
	// An adapter of a wider model: every tensor has the wrong shape.
	wide := filepath.Join(root, "wide")
	cfg := demo.ModelConfig()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim = 32, 64, 2, 1, 0
	wm, err := llama.New(nil, cfg.WithDefaults(), 1)
	if err != nil {
		t.Fatal(err)
	}
	wideBase := filepath.Join(root, "widebase")
	if err := wm.Save(wideBase); err != nil {
		t.Fatal(err)
	}
	randomAdapter(t, wideBase, wide, loraConfig("q_proj"), 1)
	// An adapter for modules the base does not have.
	other := filepath.Join(root, "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	oc := loraConfig("c_attn")
	if err := peft.SaveConfig(other, oc); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Save(filepath.Join(other, peft.WeightsName), map[string]safetensors.Tensor{
		"base_model.model.h.0.c_attn.lora_A.weight": {Shape: []int{4, 64}, F32: make([]float32, 256)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(root, "good")
	randomAdapter(t, base, good, loraConfig("v_proj"), 1)

	out := filepath.Join(root, "out")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--base", filepath.Join(root, "nope"), "--adapter", good}, 1, "nope"},
		{[]string{"--base", base, "--adapter", filepath.Join(root, "missing")}, 1, "missing/adapter_config.json"},
		{[]string{"--base", base, "--adapter", wide}, 1, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has shape [4 32]"},
		{[]string{"--base", base, "--adapter", other}, 1, "match no module"},
		{[]string{"--base", base, "--adapter", good, "--dtype", "f8"}, 2, "--dtype"},
		{[]string{"--base", base}, 2, "--adapter is required"},
		{[]string{"--adapter", good, "--weight"}, 2, "needs a value"},
	} {
		args := append([]string{"merge", "--out", out}, c.args...)
		_, stderr, code := gopeft(t, args...)
		if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") > 1 && c.code == 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: a failed merge left %s", c.args, out)
		}
	}
	// An output folder that cannot be created (its parent is a file).
	blocker := filepath.Join(root, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := gopeft(t, "merge", "--base", base, "--adapter", good, "--out", filepath.Join(blocker, "out")); code != 1 || !strings.Contains(stderr, "not a directory") {
		t.Errorf("unwritable output: exit %d %q", code, stderr)
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, ".out.tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary folders left: %v", leftovers)
	}
}

func TestInspect(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "base")
	tinyCheckpoint(t, base, 3, 1)
	ad := filepath.Join(root, "lora")
	randomAdapter(t, base, ad, loraConfig("q_proj", "v_proj"), 1)
	stdout, stderr, code := gopeft(t, "inspect", ad, "--base", base, "--json")
	if code != 0 {
		t.Fatal(stderr)
	}
	var rep inspectReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Method != "LORA" || len(rep.Modules) != 4 || rep.Ranks["model.layers.1.self_attn.v_proj"] != 4 ||
		rep.Params != 4*(4*64+4*64)-2*(4*64-4*32) || rep.DTypes["F32"] != 8 || len(rep.Mismatches) != 0 {
		t.Errorf("report %+v", rep)
	}
	text, _, code := gopeft(t, "inspect", ad)
	if code != 0 || !strings.Contains(text, "model.layers.0.self_attn.q_proj (rank 4)") {
		t.Errorf("text output (exit %d):\n%s", code, text)
	}

	// Against a base of another shape every key is reported by name.
	small := filepath.Join(root, "small")
	cfg := demo.ModelConfig()
	cfg.HiddenSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim, cfg.NumHiddenLayers = 32, 2, 1, 0, 1
	sm, err := llama.New(nil, cfg.WithDefaults(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Save(small); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = gopeft(t, "inspect", ad, "--base", small)
	if code != 1 || !strings.Contains(stderr, "mismatch") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight: shape [4 64], the base module needs [4 32]",
		"base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight: the base has no module model.layers.1.self_attn.v_proj",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if _, stderr, code := gopeft(t, "inspect", filepath.Join(root, "none")); code != 1 || !strings.Contains(stderr, "none/adapter_config.json") {
		t.Errorf("missing folder: exit %d %q", code, stderr)
	}
}

func writeJSONL(t *testing.T, path string, rows ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTrain(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "base")
	tinyCheckpoint(t, base, 3, 2)
	cfgPath := filepath.Join(root, "cfg")
	if err := peft.SaveConfig(cfgPath, loraConfig("q_proj", "v_proj")); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(root, "d.jsonl")
	var rows []string
	for _, e := range demo.Examples(demo.Shift, 24, 1) {
		b, _ := json.Marshal(e)
		rows = append(rows, string(b))
	}
	writeJSONL(t, data, rows...)
	out := filepath.Join(root, "ad")
	args := []string{"train", "--base", base, "--data", data, "--config", cfgPath, "--out", out, "--steps", "4",
		"--batch", "4", "--lr", "1e-3", "--checkpoint-every", "2", "--eval-data", data, "--json", "--schedule", "cosine", "--warmup", "1"}
	stdout, stderr, code := gopeft(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep trainReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Steps != 4 || rep.EvalLoss <= 0 {
		t.Fatalf("report %q: %v", stdout, err)
	}
	if _, err := peft.Load(mustLoad(t, base), out); err != nil {
		t.Fatalf("the trained adapter does not load: %v", err)
	}
	// Resuming from the step-2 checkpoint reproduces the adapter.
	out2 := filepath.Join(root, "ad2")
	args2 := slices.Clone(args)
	args2[8] = out2
	args2 = append(args2, "--checkpoint-dir", out+"-checkpoints", "--resume", filepath.Join(out+"-checkpoints", "checkpoint-2"))
	if _, stderr, code := gopeft(t, args2...); code != 0 {
		t.Fatalf("resume: %s", stderr)
	}
	a, _ := os.ReadFile(filepath.Join(out, peft.WeightsName))
	b, _ := os.ReadFile(filepath.Join(out2, peft.WeightsName))
	if !bytes.Equal(a, b) {
		t.Error("resumed run saved a different adapter")
	}

	// Errors: one line naming the file and line, exit 1, no output folder.
	bad := filepath.Join(root, "bad.jsonl")
	writeJSONL(t, bad, rows[0], rows[1], `{"input_ids": [1, 2, "x"]}`)
	oob := filepath.Join(root, "oob.jsonl")
	writeJSONL(t, oob, rows[0], `{"input_ids": [1, 2, 999]}`)
	wrong := filepath.Join(root, "wrongcfg")
	if err := peft.SaveConfig(wrong, loraConfig("c_attn")); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(root, "fresh")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data", bad}, 1, "bad.jsonl: line 3: json: cannot unmarshal string"},
		{[]string{"--data", oob}, 1, "oob.jsonl: line 2: input_ids[2] = 999 is outside the vocabulary [0, 16)"},
		{[]string{"--data", filepath.Join(root, "none.jsonl")}, 1, "none.jsonl: no such file"},
		{[]string{"--config", wrong}, 1, "target_modules"},
		{[]string{"--base", root}, 1, "config.json"},
		{[]string{"--schedule", "exp"}, 2, "unknown schedule"},
		{[]string{"--lr", "-1"}, 1, "learning rate"},
		{[]string{"--out", data}, 1, "d.jsonl exists and is not a folder"},
	} {
		a := []string{"train", "--base", base, "--data", data, "--config", cfgPath, "--out", fresh, "--steps", "1"}
		a = append(a, c.args...)
		if _, err := os.Stat(data); err != nil {
			t.Fatalf("%v removed the data file", c.args)
		}
		_, stderr, code := gopeft(t, a...)
		if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 && c.code == 1 {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.want)
		}
		if _, err := os.Stat(fresh); err == nil {
			t.Fatalf("%v left %s behind", c.args, fresh)
		}
	}
}

func mustLoad(t *testing.T, dir string) *llama.Model {
	t.Helper()
	m, err := llama.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDemo runs a short demo: the adapter it saves has PEFT's keys and config
// fields, and the merged model reproduces the adapter model.
func TestDemo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	stdout, stderr, code := gopeft(t, "demo", "--steps", "40", "--eval", "20", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep demoReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.AccuracyAfter <= rep.AccuracyBefore || rep.MergeMaxAbsDiff > 1e-3 || rep.AccuracyMerged != rep.AccuracyAfter {
		t.Errorf("report %+v", rep)
	}
	f, _, err := safetensors.ReadAll(filepath.Join(out, "adapter", peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for l := range 2 {
		for _, p := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			for _, ab := range []string{"A", "B"} {
				want = append(want, fmt.Sprintf("base_model.model.model.layers.%d.%s.lora_%s.weight", l, p, ab))
			}
		}
	}
	var got []string
	for k := range f {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("adapter keys %v\nwant %v", got, want)
	}
	var cfg map[string]any
	data, err := os.ReadFile(filepath.Join(out, "adapter", peft.ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"peft_type": "LORA", "r": 8.0, "lora_alpha": 16.0, "task_type": "CAUSAL_LM",
		"inference_mode": true, "bias": "none", "lora_dropout": 0.0, "peft_version": peft.PEFTVersion} {
		if cfg[k] != v {
			t.Errorf("adapter_config.json %s = %v, want %v", k, cfg[k], v)
		}
	}
	for _, k := range []string{"target_modules", "base_model_name_or_path", "fan_in_fan_out", "init_lora_weights", "use_dora", "rank_pattern", "alpha_pattern", "modules_to_save"} {
		if _, ok := cfg[k]; !ok {
			t.Errorf("adapter_config.json lacks %s", k)
		}
	}
	if pf, err := os.Open(filepath.Join(out, "loss.png")); err != nil {
		t.Error(err)
	} else {
		img, err := png.Decode(pf)
		pf.Close()
		if err != nil || img.Bounds().Dx() != 640 {
			t.Errorf("loss.png: %v", err)
		}
	}
	_, stderr, code = gopeft(t, "demo", "--method", "nosuch", "--out", out+"2")
	if code != 2 || !strings.Contains(stderr, "available: ") || !strings.Contains(stderr, "lora") {
		t.Errorf("unknown method: exit %d %q", code, stderr)
	}
}

func TestUsage(t *testing.T) {
	if _, stderr, code := gopeft(t, "frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("exit %d %q", code, stderr)
	}
	if _, _, code := gopeft(t); code != 2 {
		t.Errorf("no arguments: exit %d", code)
	}
	if _, stderr, code := gopeft(t, "train", "--bogus"); code != 2 || !strings.Contains(stderr, "bogus") {
		t.Errorf("unknown flag: exit %d %q", code, stderr)
	}
	if _, _, code := gopeft(t, "inspect", "-h"); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}

func TestBench(t *testing.T) {
	stdout, stderr, code := gopeft(t, "bench", "--bench", "^64x256x256$", "--benchtime", "5ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []benchRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || rows[0].Case != "Gemm/64x256x256" || !(rows[0].GFLOPS > 0) {
		t.Errorf("rows %+v", rows)
	}
	text, _, code := gopeft(t, "bench", "--bench", "^64x256x256$", "--benchtime", "5ms")
	if code != 0 || !strings.Contains(text, "64x256x256") || !strings.Contains(text, "purego") {
		t.Errorf("table (exit %d):\n%s", code, text)
	}
	if _, stderr, code := gopeft(t, "bench", "--bench", "nothing"); code != 2 || !strings.Contains(stderr, "selects none") {
		t.Errorf("empty selection: exit %d %q", code, stderr)
	}
}

// TestMergeMethods: the streaming merge equals the in-memory one for methods
// of every kind (additive, multiplicative, orthogonal, shared projections,
// magnitude vectors), each on a 2-shard checkpoint.
func TestMergeMethods(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "base")
	tinyCheckpoint(t, base, 3, 2)
	targets := `"target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]`
	for name, cfg := range map[string]string{
		"dora":    `{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": true, ` + targets + `}`,
		"ia3":     `{"peft_type": "IA3", "feedforward_modules": ["down_proj"], ` + targets + `}`,
		"lokr":    `{"peft_type": "LOKR", "r": 4, "alpha": 8, ` + targets + `}`,
		"oft":     `{"peft_type": "OFT", "r": 0, "oft_block_size": 8, ` + targets + `}`,
		"vera":    `{"peft_type": "VERA", "r": 8, ` + targets + `}`,
		"adalora": `{"peft_type": "ADALORA", "init_r": 4, "target_r": 2, "total_step": 10, ` + targets + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := peft.ParseConfig([]byte(cfg))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ad := filepath.Join(root, name)
			randomAdapter(t, base, ad, c, 9)
			out := filepath.Join(root, name+"-merged")
			if _, stderr, code := gopeft(t, "merge", "--base", base, "--adapter", ad, "--out", out); code != 0 {
				t.Fatal(stderr)
			}
			want, got := inMemoryMerge(t, base, ad), readCheckpoint(t, out)
			for k, w := range want {
				for i := range w {
					if math.Float32bits(got[k][i]) != math.Float32bits(w[i]) {
						t.Fatalf("%s[%d] = %v, in-memory merge %v", k, i, got[k][i], w[i])
					}
				}
			}
		})
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	e := &env{stderr: &buf, tty: true}
	b := e.newBar(3, "work")
	b.add(1) // within the delay: nothing drawn
	if buf.Len() != 0 {
		t.Fatalf("drawn before the delay: %q", buf.String())
	}
	b.start = b.start.Add(-2 * barDelay)
	b.add(1)
	b.describe("more work")
	b.add(1)
	b.finish()
	if !strings.Contains(buf.String(), "work") {
		t.Errorf("no bar drawn after the delay: %q", buf.String())
	}
	for _, quiet := range []*env{{stderr: &buf, tty: false}, {stderr: &buf, tty: true, json: true}} {
		buf.Reset()
		b := quiet.newBar(2, "x")
		b.start = b.start.Add(-2 * barDelay)
		b.add(2)
		b.finish()
		if buf.Len() != 0 {
			t.Errorf("tty %v json %v: drawn %q", quiet.tty, quiet.json, buf.String())
		}
	}
}
