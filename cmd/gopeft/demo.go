package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gopeft/gopeft/internal/demo"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/train"
	"github.com/gopeft/gopeft/tuners"
)

// Seeds of the demo's data: training and evaluation draw different prompts.
const (
	trainSeed = 11
	evalSeed  = 12345
)

// demoPreset is a method's adapter config and learning rate for the demo.
type demoPreset struct {
	peftType string // the registry entry it needs
	config   string // adapter_config.json fields besides peft_type
	lr       float64
}

// demoPresets maps --method values (upper case) to presets. Every preset
// adapts the attention and MLP projections of both layers.
var demoPresets = map[string]demoPreset{
	"LORA":    {"LORA", `"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]`, 3e-3},
	"DORA":    {"LORA", `"r": 8, "lora_alpha": 16, "use_dora": true, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]`, 3e-3},
	"IA3":     {"IA3", `"target_modules": ["k_proj", "v_proj", "up_proj", "down_proj"], "feedforward_modules": ["down_proj"]`, 6e-2},
	"LOHA":    {"LOHA", `"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]`, 3e-3},
	"LOKR":    {"LOKR", `"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]`, 3e-3},
	"OFT":     {"OFT", `"r": 0, "oft_block_size": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]`, 3e-3},
	"VERA":    {"VERA", `"r": 64, "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]`, 2e-2},
	"ADALORA": {"ADALORA", `"init_r": 12, "target_r": 8, "lora_alpha": 16, "tinit": 20, "tfinal": 40, "deltaT": 10, "total_step": %d, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]`, 3e-3},
}

// demoMethods returns the --method values whose method is registered.
func demoMethods() []string {
	var out []string
	for name, p := range demoPresets {
		if _, ok := peft.Method(p.peftType); ok {
			out = append(out, strings.ToLower(name))
		}
	}
	sort.Strings(out)
	return out
}

// demoConfig returns the adapter config of method for a run of steps.
func demoConfig(method string, steps int) (cfgJSON []byte, lr float64, err error) {
	p, ok := demoPresets[strings.ToUpper(method)]
	if _, reg := peft.Method(p.peftType); !ok || !reg {
		return nil, 0, usagef("--method %q is not available; available: %s", method, strings.Join(demoMethods(), ", "))
	}
	fields := p.config
	if strings.Contains(fields, "%d") {
		fields = fmt.Sprintf(fields, steps)
	}
	// Start from every field of the method's defaults, as PEFT writes
	// them, so that the saved adapter_config.json has PEFT's full key set.
	meth, _ := peft.Method(p.peftType)
	defaults, err := tuners.MarshalConfig(meth.NewConfig())
	if err != nil {
		return nil, 0, err
	}
	doc := map[string]json.RawMessage{}
	if err := json.Unmarshal(defaults, &doc); err != nil {
		return nil, 0, err
	}
	preset := fmt.Sprintf(`{"task_type": "CAUSAL_LM", "base_model_name_or_path": "gopeft-demo-tiny-llama", %s}`, fields)
	if err := json.Unmarshal([]byte(preset), &doc); err != nil {
		return nil, 0, fmt.Errorf("demo preset %s: %w", method, err)
	}
	out, err := json.Marshal(doc)
	return out, p.lr, err
}

// demoReport is the result of gopeft demo (its --json output).
type demoReport struct {
	Method          string  `json:"method"`
	Task            string  `json:"task"`
	AccuracyBefore  float64 `json:"accuracy_before"`
	AccuracyAfter   float64 `json:"accuracy_after"`
	AccuracyMerged  float64 `json:"accuracy_merged"`
	Trainable       int     `json:"trainable_params"`
	Total           int     `json:"total_params"`
	TrainableShare  float64 `json:"trainable_share"`
	Steps           int     `json:"steps"`
	FinalLoss       float64 `json:"final_loss"`
	EvalLoss        float64 `json:"eval_loss"`
	MergeMaxAbsDiff float64 `json:"merge_max_abs_diff"`
	Adapter         string  `json:"adapter_dir"`
	LossPNG         string  `json:"loss_png"`
	Seconds         float64 `json:"seconds"`
}

func runDemo(e *env, args []string) error {
	fs := e.newFlags("demo")
	method := fs.String("method", "lora", "adapter method: "+strings.Join(demoMethods(), ", "))
	out := fs.String("out", filepath.Join("out", "demo"), "folder for the adapter, loss.png and log_history.json (replaced if it exists)")
	steps := fs.Int("steps", 200, "optimizer steps")
	seed := fs.Uint64("seed", 1, "training seed")
	nEval := fs.Int("eval", 200, "held-out prompts the accuracy is measured on")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *steps <= 0 {
		return usagef("--steps must be positive, got %d", *steps)
	}
	if err := checkOut(*out); err != nil {
		return err
	}
	start := time.Now()
	cfgJSON, lr, err := demoConfig(*method, *steps)
	if err != nil {
		return err
	}
	base, err := demo.LoadBase()
	if err != nil {
		return err
	}
	trainData := demo.Examples(demo.Shift, 4000, trainSeed)
	if *nEval < 1 {
		return usagef("--eval must be positive, got %d", *nEval)
	}
	evalData := demo.Examples(demo.Shift, *nEval, evalSeed)
	rep := demoReport{Method: strings.ToLower(*method), Task: "shift each of 6 digits by one (the base model was pre-trained to copy them)", Steps: *steps}

	nn.SetTraining(base, false)
	if rep.AccuracyBefore, err = demo.Accuracy(base, evalData); err != nil {
		return err
	}
	cfg, err := peft.ParseConfig(cfgJSON)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	m, err := peft.New(base, cfg)
	if err != nil {
		return err
	}
	rep.Trainable, rep.Total = m.NumTrainableParameters()
	rep.TrainableShare = float64(rep.Trainable) / float64(rep.Total)
	e.printf("gopeft demo: %s adapter on a tiny LLaMA (%d parameters, embedded), new task: %s\n", strings.ToUpper(rep.Method), rep.Total, rep.Task)
	e.printf("trainable parameters: %d of %d (%.2f%%)\n", rep.Trainable, rep.Total, 100*rep.TrainableShare)
	e.printf("exact-match accuracy before fine-tuning: %5.1f%%\n", 100*rep.AccuracyBefore)

	b := e.newBar(*steps, "fine-tuning")
	tr, err := train.New(m, train.Config{
		LR: lr, Steps: *steps, BatchSize: 32, WarmupSteps: *steps / 10, Schedule: train.Linear,
		MaxGradNorm: 1, Seed: *seed, EvalEvery: max(1, *steps/10), EvalBatchSize: 100,
		OnStep: func(s train.StepInfo) {
			b.add(1)
			b.describe(fmt.Sprintf("fine-tuning (loss %.3f)", s.Loss))
		},
	}, trainData, evalData)
	if err != nil {
		return err
	}
	res, err := tr.Run()
	b.finish()
	if err != nil {
		return err
	}
	rep.FinalLoss, rep.EvalLoss = res.Loss, res.EvalLoss
	m.SetTraining(false)
	if rep.AccuracyAfter, err = demo.Accuracy(m, evalData); err != nil {
		return err
	}
	e.printf("exact-match accuracy after %d steps:    %5.1f%%  (train loss %.4f, eval loss %.4f)\n", *steps, 100*rep.AccuracyAfter, rep.FinalLoss, rep.EvalLoss)

	// Write the adapter and the loss curve under a temporary name; rename
	// when complete.
	tmp, err := tempDirBeside(*out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := m.Save(filepath.Join(tmp, "adapter")); err != nil {
		return err
	}
	var lossCurve, evalCurve []float64
	for _, h := range res.History {
		lossCurve = append(lossCurve, h.Loss)
		evalCurve = append(evalCurve, h.EvalLoss)
	}
	if err := lossPNG(filepath.Join(tmp, "loss.png"), lossCurve, evalCurve); err != nil {
		return err
	}
	if err := writeHistory(filepath.Join(tmp, "log_history.json"), res.History); err != nil {
		return err
	}

	// Merge: the plain model with the adapter folded in must give the
	// adapter model's logits.
	probe := train.Collate(evalData[:min(32, len(evalData))], demo.Pad)
	before, err := base.Forward(probe.IDs, probe.Rows, probe.Seq)
	if err != nil {
		return err
	}
	merged, err := m.MergeAndUnload()
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	mm := merged.(*llama.Model)
	after, err := mm.Forward(probe.IDs, probe.Rows, probe.Seq)
	if err != nil {
		return err
	}
	rep.MergeMaxAbsDiff = maxAbsDiff(before.Data(), after.Data())
	if rep.AccuracyMerged, err = demo.Accuracy(mm, evalData); err != nil {
		return err
	}
	if err := replaceDir(tmp, *out); err != nil {
		return err
	}
	rep.Adapter = filepath.Join(*out, "adapter")
	rep.LossPNG = filepath.Join(*out, "loss.png")
	rep.Seconds = time.Since(start).Seconds()
	e.printf("merged into the base weights: max |logits(adapter) - logits(merged)| = %.3g, merged accuracy %.1f%%\n", rep.MergeMaxAbsDiff, 100*rep.AccuracyMerged)
	e.printf("adapter (PEFT format): %s\nloss curve: %s\ntime: %.1fs\n", rep.Adapter, rep.LossPNG, rep.Seconds)
	return e.emit(rep)
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// writeHistory writes the per-step log as JSON (NaN evaluation losses as null).
func writeHistory(path string, h []train.StepInfo) error {
	type row struct {
		Step     int      `json:"step"`
		Loss     float64  `json:"loss"`
		LR       float64  `json:"learning_rate"`
		EvalLoss *float64 `json:"eval_loss,omitempty"`
	}
	rows := make([]row, len(h))
	for i, s := range h {
		rows[i] = row{Step: s.Step, Loss: s.Loss, LR: s.LR}
		if !math.IsNaN(s.EvalLoss) {
			v := s.EvalLoss
			rows[i].EvalLoss = &v
		}
	}
	data, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

// replaceDir renames the folder tmp to dir, replacing a folder already there.
func replaceDir(tmp, dir string) error {
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s exists and is not a folder", dir)
		}
		old := tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("replacing %s: %w", dir, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			_ = os.Rename(old, dir)
			return fmt.Errorf("replacing %s: %w", dir, err)
		}
		return os.RemoveAll(old)
	}
	return os.Rename(tmp, dir)
}
