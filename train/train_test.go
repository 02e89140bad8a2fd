package train_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/internal/demo"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/train"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// tinyModel returns a LoRA model on a fresh tiny LLaMA (the demo's
// architecture, random weights from seed 7).
func tinyModel(t testing.TB, dropout float64) *peft.Model {
	t.Helper()
	base, err := llama.New(nil, demo.ModelConfig(), 7)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha, cfg.Dropout = 4, 8, dropout
	cfg.TargetModules = tuners.Names("q_proj", "v_proj", "down_proj")
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// snapshot copies every trainable tensor's values.
func snapshot(m *peft.Model) map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range m.TrainableParameters() {
		out[p.Name] = p.T.Data()
	}
	return out
}

func bitsEqual(t *testing.T, what string, a, b map[string][]float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d vs %d tensors", what, len(a), len(b))
	}
	for k, va := range a {
		vb := b[k]
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				t.Fatalf("%s: %s[%d] = %v vs %v", what, k, i, va[i], vb[i])
			}
		}
	}
}

func maxDiff(a, b map[string][]float32) float64 {
	d := 0.0
	for k, va := range a {
		for i := range va {
			d = math.Max(d, math.Abs(float64(va[i]-b[k][i])))
		}
	}
	return d
}

// TestSchedules checks every schedule against the float64 formulas of
// transformers' schedule functions, written out independently here.
func TestSchedules(t *testing.T) {
	ref := map[train.Schedule]func(s, w, n int) float64{
		train.Constant: func(int, int, int) float64 { return 1 },
		train.ConstantWithWarmup: func(s, w, n int) float64 {
			if s < w {
				return float64(s) / math.Max(1, float64(w))
			}
			return 1
		},
		train.Linear: func(s, w, n int) float64 {
			if s < w {
				return float64(s) / math.Max(1, float64(w))
			}
			return math.Max(0, float64(n-s)/math.Max(1, float64(n-w)))
		},
		train.Cosine: func(s, w, n int) float64 {
			if s < w {
				return float64(s) / math.Max(1, float64(w))
			}
			p := float64(s-w) / math.Max(1, float64(n-w))
			return math.Max(0, (1+math.Cos(math.Pi*p))/2)
		},
	}
	for _, sch := range train.Schedules {
		for _, c := range [][2]int{{0, 10}, {3, 10}, {10, 10}, {1, 1}, {5, 100}} {
			w, n := c[0], c[1]
			for s := 0; s <= n+2; s++ {
				got, want := sch.Factor(s, w, n), ref[sch](s, w, n)
				if math.Abs(got-want) > 1e-15 {
					t.Errorf("%s warmup %d total %d step %d: %v, want %v", sch, w, n, s, got, want)
				}
			}
		}
	}
	// Spot values: the middle of a cosine decay is one half, warm-up ramps.
	if f := train.Cosine.Factor(5, 0, 10); math.Abs(f-0.5) > 1e-15 {
		t.Errorf("cosine middle = %v", f)
	}
	if f := train.Linear.Factor(2, 4, 10); f != 0.5 {
		t.Errorf("linear warm-up at 2 of 4 = %v", f)
	}
	if _, err := train.ParseSchedule("exponential"); err == nil {
		t.Error("ParseSchedule accepted an unknown name")
	}
}

// TestScheduleDrivesOptimizer checks the learning rate each step used.
func TestScheduleDrivesOptimizer(t *testing.T) {
	m := tinyModel(t, 0)
	var lrs []float64
	tr, err := train.New(m, train.Config{LR: 1e-2, Steps: 6, WarmupSteps: 2, BatchSize: 2, Schedule: train.Cosine,
		OnStep: func(s train.StepInfo) { lrs = append(lrs, s.LR) }}, demo.Examples(demo.Shift, 20, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(); err != nil {
		t.Fatal(err)
	}
	for s, lr := range lrs {
		if want := 1e-2 * train.Cosine.Factor(s, 2, 6); math.Abs(lr-want) > 1e-12 {
			t.Errorf("step %d lr %v, want %v", s, lr, want)
		}
	}
	if got := float64(tr.Optimizer().Groups[0].LR); math.Abs(got-1e-2*train.Cosine.Factor(5, 2, 6)) > 1e-9 {
		t.Errorf("optimizer group lr %v after the last step", got)
	}
}

// TestAccumulation: two micro-batches of 4 accumulate to one batch of 8,
// even when the micro-batches hold different numbers of label tokens.
func TestAccumulation(t *testing.T) {
	data := demo.Examples(demo.Shift, 40, 3)
	for i := range data { // uneven label counts
		if i%3 == 0 {
			data[i].Labels = slices.Clone(data[i].Labels)
			data[i].Labels[len(data[i].Labels)-1] = train.IgnoreIndex
		}
	}
	run := func(batch, accum int) map[string][]float32 {
		m := tinyModel(t, 0)
		tr, err := train.New(m, train.Config{LR: 1e-2, Steps: 4, BatchSize: batch, GradAccum: accum, Seed: 5}, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Run(); err != nil {
			t.Fatal(err)
		}
		return snapshot(m)
	}
	one, two := run(8, 1), run(4, 2)
	if d := maxDiff(one, two); d > 2e-5 {
		t.Errorf("accumulated run differs from the full batch by %g", d)
	}
	if d := maxDiff(one, run(8, 2)); d < 1e-4 {
		t.Errorf("a different effective batch gave the same weights (diff %g): accumulation is not used", d)
	}
}

// TestClipping: the first AdamW step (bias-corrected moments m = g, v = g²)
// moves each parameter by -lr * g/(|g| + eps) with g the clipped gradient.
// With eps = 1 that depends on the gradient's scale, so it shows clipping.
func TestClipping(t *testing.T) {
	data := demo.Examples(demo.Shift, 8, 9)
	for _, maxNorm := range []float64{0, 1e-3} {
		// The gradient, computed independently.
		ref := tinyModel(t, 0)
		// B is zero at init: give it values so that A has a gradient too.
		for _, p := range ref.TrainableParameters() {
			if strings.Contains(p.Name, "lora_B") {
				p.T.CopyFrom(nn.Full(nil, 0.01, p.T.Shape()...))
			}
		}
		before := snapshot(ref)
		b := train.Collate(data, demo.Pad)
		loss, err := train.Loss(ref, b)
		if err != nil {
			t.Fatal(err)
		}
		loss.Backward()
		grads := map[string][]float32{}
		norm := 0.0
		for _, p := range ref.TrainableParameters() {
			grads[p.Name] = p.T.Grad().Data()
			for _, g := range grads[p.Name] {
				norm += float64(g) * float64(g)
			}
		}
		norm = math.Sqrt(norm)
		scale := 1.0
		if maxNorm > 0 {
			scale = math.Min(1, maxNorm/(norm+1e-6))
		}
		ref.Base() // the reference model is not stepped

		m := tinyModel(t, 0)
		for _, p := range m.TrainableParameters() {
			p.T.CopyFrom(nn.New(nil, before[p.Name], p.T.Shape()...))
		}
		var info train.StepInfo
		tr, err := train.New(m, train.Config{LR: 0.1, Eps: 1, Beta1: 0.9, Beta2: 0.999, Steps: 1, BatchSize: 8,
			NoShuffle: true, MaxGradNorm: maxNorm, Schedule: train.Constant}, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		if info, err = tr.Step(); err != nil {
			t.Fatal(err)
		}
		if maxNorm > 0 && math.Abs(info.GradNorm-norm) > 1e-4*norm {
			t.Errorf("reported grad norm %v, want %v", info.GradNorm, norm)
		}
		after := snapshot(m)
		for name, g := range grads {
			for i := range g {
				gc := float64(g[i]) * scale
				want := float64(before[name][i]) - 0.1*gc/(math.Abs(gc)+1)
				if d := math.Abs(float64(after[name][i]) - want); d > 1e-6 {
					t.Fatalf("max norm %v: %s[%d] = %v, want %v", maxNorm, name, i, after[name][i], want)
				}
			}
		}
	}
}

// TestResume: stopping after a checkpoint and resuming from it gives the
// same adapter, bit for bit, as an uninterrupted run (with dropout on, so
// the random streams must line up too).
func TestResume(t *testing.T) {
	data := demo.Examples(demo.Shift, 30, 4)
	eval := demo.Examples(demo.Shift, 6, 5)
	cfg := func(dir string) train.Config {
		return train.Config{LR: 5e-3, Steps: 6, BatchSize: 4, GradAccum: 2, WarmupSteps: 2, MaxGradNorm: 1,
			Seed: 11, CheckpointEvery: 3, CheckpointDir: dir, EvalEvery: 2}
	}
	dirA := t.TempDir()
	full := tinyModel(t, 0.1)
	tr, err := train.New(full, cfg(dirA), data, eval)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(); err != nil {
		t.Fatal(err)
	}
	want := snapshot(full)

	// The checkpoint is a PEFT adapter folder plus the trainer's files.
	ck := train.CheckpointPath(dirA, 3)
	for _, f := range []string{peft.ConfigName, peft.WeightsName, train.OptimizerFile, train.StateFile} {
		if _, err := os.Stat(filepath.Join(ck, f)); err != nil {
			t.Fatal(err)
		}
	}
	if latest, err := train.LatestCheckpoint(dirA); err != nil || latest != train.CheckpointPath(dirA, 6) {
		t.Fatalf("LatestCheckpoint = %q, %v", latest, err)
	}

	resumed := tinyModel(t, 0.1)
	tr2, err := train.New(resumed, cfg(t.TempDir()), data, eval)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.Resume(ck); err != nil {
		t.Fatal(err)
	}
	if tr2.StepCount() != 3 {
		t.Fatalf("resumed at step %d", tr2.StepCount())
	}
	if _, err := tr2.Run(); err != nil {
		t.Fatal(err)
	}
	bitsEqual(t, "resumed vs uninterrupted", want, snapshot(resumed))

	// A checkpoint of another seed is refused, naming the field.
	bad := cfg(t.TempDir())
	bad.Seed = 12
	tr3, err := train.New(tinyModel(t, 0.1), bad, data, eval)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr3.Resume(ck); err == nil || !strings.Contains(err.Error(), "seed") {
		t.Errorf("resume with another seed: %v", err)
	}
}

// TestDeterminism: the same seed gives the same adapter bit for bit, another
// seed (another data order and dropout masks) a different one: 200 steps of
// LoRA (batch 4, dropout 0.05) on the tiny LLaMA. (gopeft demo's 200 steps
// of batch 32 run the same loop.)
func TestDeterminism(t *testing.T) {
	data := demo.Examples(demo.Shift, 64, 8)
	run := func(seed uint64, steps int) map[string][]float32 {
		m := tinyModel(t, 0.05)
		tr, err := train.New(m, train.Config{LR: 3e-3, Steps: steps, BatchSize: 4, Seed: seed, MaxGradNorm: 1, WarmupSteps: 20}, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Run(); err != nil {
			t.Fatal(err)
		}
		return snapshot(m)
	}
	bitsEqual(t, "same seed", run(1, 200), run(1, 200))
	if maxDiff(run(1, 10), run(2, 10)) == 0 {
		t.Error("another seed gave the same adapter")
	}
}

// TestLoRAPlusGroups checks PEFT's create_loraplus_optimizer grouping.
func TestLoRAPlusGroups(t *testing.T) {
	base, err := llama.New(nil, demo.ModelConfig(), 7)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lora.NewConfig()
	cfg.TargetModules = tuners.Names("q_proj", "embed_tokens")
	cfg.Bias = "lora_only"
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.New(m, train.Config{LR: 1e-3, LoRAPlusRatio: 16, WeightDecay: 0.1, Steps: 1, BatchSize: 2},
		demo.Examples(demo.Shift, 4, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	byTensor := map[*nn.Tensor]nn.ParamGroup{}
	for _, g := range tr.Optimizer().Groups {
		for _, p := range g.Params {
			byTensor[p] = g
		}
	}
	seen := map[string]bool{}
	for _, p := range m.TrainableParameters() {
		g := byTensor[p.T]
		var lr, wd float32
		switch {
		case strings.Contains(p.Name, "lora_embedding_"):
			lr, wd = 1e-6, 0.1
			seen["embedding"] = true
		case strings.Contains(p.Name, "lora_B"):
			lr, wd = 16e-3, 0.1
			seen["B"] = true
		default:
			lr, wd = 1e-3, 0.1
			seen["A"] = true
		}
		if math.Abs(float64(g.LR-lr)) > 1e-9 || g.WeightDecay != wd {
			t.Errorf("%s: lr %v wd %v, want %v %v", p.Name, g.LR, g.WeightDecay, lr, wd)
		}
	}
	if len(seen) != 3 {
		t.Errorf("groups seen: %v", seen)
	}
}

func TestReadJSONL(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	if err := os.WriteFile(good, []byte("{\"input_ids\": [1, 2, 3]}\n\n{\"input_ids\": [4, 5], \"labels\": [-100, 5]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ex, err := train.ReadJSONL(good, 16)
	if err != nil || len(ex) != 2 || ex[1].Labels[0] != train.IgnoreIndex {
		t.Fatalf("ReadJSONL = %v, %v", ex, err)
	}
	for _, c := range []struct{ text, want string }{
		{"{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 2\n", "line 2"},
		{"{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 99]}\n", "line 2: input_ids[1] = 99"},
		{"{\"input_ids\": [1, 2], \"labels\": [1]}\n", "line 1: labels has 1 entries"},
		{"{\"input_ids\": [1, 2], \"label\": [1, 2]}\n", "line 1: json: unknown field \"label\""},
		{"\n\n{\"input_ids\": [3]}\n", "line 3: input_ids has 1 tokens"},
		{"{\"input_ids\": [1, 2], \"input_type_mask\": [1]}\n", "line 1: input_type_mask has 1 entries"},
		{"{\"input_ids\": [1, 2], \"task_id\": -1}\n", "line 1: task_id -1 is negative"},
	} {
		_, err := train.DecodeJSONL(bytes.NewReader([]byte(c.text)), 16)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
	}
	if _, err := train.ReadJSONL(filepath.Join(dir, "missing.jsonl"), 0); err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("missing file: %v", err)
	}
}

func TestCollate(t *testing.T) {
	b := train.Collate([]train.Example{{IDs: []int32{1, 2, 3}}, {IDs: []int32{4, 5}, Labels: []int32{-100, 5}}}, 0)
	if b.Rows != 2 || b.Seq != 3 || b.Tokens != 3 {
		t.Fatalf("batch %+v", b)
	}
	if !slices.Equal(b.IDs, []int32{1, 2, 3, 4, 5, 0}) || !slices.Equal(b.Labels, []int32{1, 2, 3, -100, 5, -100}) {
		t.Errorf("ids %v labels %v", b.IDs, b.Labels)
	}
	if b.TypeMask != nil || !slices.Equal(b.TaskIDs, []int32{0, 0}) {
		t.Errorf("type mask %v task ids %v without them in the examples", b.TypeMask, b.TaskIDs)
	}
	b = train.Collate([]train.Example{{IDs: []int32{1, 2}, TypeMask: []int32{1, 4}, TaskID: 1}, {IDs: []int32{4, 5, 6}}}, 0)
	if !slices.Equal(b.TypeMask, []int32{1, 4, 0, 0, 0, 0}) || !slices.Equal(b.TaskIDs, []int32{1, 0}) {
		t.Errorf("type mask %v task ids %v", b.TypeMask, b.TaskIDs)
	}
}

func TestConfigErrors(t *testing.T) {
	m := tinyModel(t, 0)
	data := demo.Examples(demo.Shift, 4, 1)
	for _, c := range []struct {
		cfg  train.Config
		want string
	}{
		{train.Config{LR: -1}, "learning rate"},
		{train.Config{Schedule: "exp"}, "unknown schedule"},
		{train.Config{CheckpointEvery: 2}, "checkpoint folder"},
		{train.Config{BatchSize: -2}, "negative"},
	} {
		if _, err := train.New(m, c.cfg, data, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	bad := []train.Example{{IDs: []int32{1, 2, 300}}}
	if _, err := train.New(m, train.Config{}, bad, nil); err == nil || !strings.Contains(err.Error(), "example 0: input_ids[2] = 300") {
		t.Errorf("out-of-vocabulary id: %v", err)
	}
}

// TestStepHooks: AdaLoRA's rank allocation runs through the model's step
// hooks after every backward pass; by the end of the run only the target
// budget of singular values is left non-zero (without the hooks, every lora_E
// entry trains away from zero).
func TestStepHooks(t *testing.T) {
	if _, ok := peft.Method("ADALORA"); !ok {
		t.Fatal("ADALORA is not registered")
	}
	base, err := llama.New(nil, demo.ModelConfig(), 7)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := peft.ParseConfig([]byte(`{"peft_type": "ADALORA", "init_r": 4, "target_r": 1, "lora_alpha": 8,
		"tinit": 1, "tfinal": 2, "deltaT": 1, "total_step": 8, "target_modules": ["q_proj", "v_proj"]}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.New(m, train.Config{LR: 1e-2, Steps: 8, BatchSize: 4, Seed: 1}, demo.Examples(demo.Shift, 40, 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(); err != nil {
		t.Fatal(err)
	}
	sd, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		t.Fatal(err)
	}
	nonzero, total := 0, 0
	for k, v := range sd {
		if !strings.Contains(k, "lora_E") {
			continue
		}
		for _, x := range v.Data() {
			total++
			if x != 0 {
				nonzero++
			}
		}
	}
	// 4 adapted modules: 16 singular values, a budget of 4.
	if total != 16 || nonzero > 4 || nonzero == 0 {
		t.Errorf("%d of %d lora_E entries are non-zero, want at most the budget of 4", nonzero, total)
	}
}

// TestTaskIDs: multitask prompt tuning trains with each example's task id.
func TestTaskIDs(t *testing.T) {
	base, err := llama.New(nil, demo.ModelConfig(), 7)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := peft.ParseConfig([]byte(`{"peft_type": "MULTITASK_PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 2, "num_tasks": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := demo.Examples(demo.Shift, 8, 2)
	for i := range data {
		data[i].TaskID = int32(i % 2)
	}
	tr, err := train.New(m, train.Config{LR: 1e-2, Steps: 2, BatchSize: 4}, data, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(); err != nil {
		t.Fatal(err)
	}
	data[0].TaskID = 5
	tr, err = train.New(m, train.Config{LR: 1e-2, Steps: 1, BatchSize: 4, NoShuffle: true}, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(); err == nil {
		t.Error("task id 5 of a 2-task adapter trained without an error")
	}
}
