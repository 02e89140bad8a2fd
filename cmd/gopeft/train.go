package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/train"
	"github.com/gopeft/gopeft/tuners"
)

// trainReport is the result of gopeft train (its --json output).
type trainReport struct {
	Out            string  `json:"out"`
	Method         string  `json:"method"`
	Steps          int     `json:"steps"`
	Loss           float64 `json:"final_loss"`
	EvalLoss       float64 `json:"eval_loss"`
	Trainable      int     `json:"trainable_params"`
	Total          int     `json:"total_params"`
	ResumedFrom    string  `json:"resumed_from,omitempty"`
	CheckpointsDir string  `json:"checkpoints_dir,omitempty"`
	Seconds        float64 `json:"seconds"`
}

func runTrain(e *env, args []string) error {
	fs := e.newFlags("train")
	base := fs.String("base", "", "base checkpoint folder (HF LLaMA: config.json and safetensors)")
	data := fs.String("data", "", "training data: JSON Lines of {\"input_ids\": [...], \"labels\": [...]} (labels optional)")
	cfgPath := fs.String("config", "", "adapter_config.json of the adapter to train (any registered method), or a folder holding one")
	out := fs.String("out", "", "folder to write the trained adapter to (PEFT format; replaced if it exists)")
	evalData := fs.String("eval-data", "", "evaluation data, same format as --data")
	var c train.Config
	fs.Float64Var(&c.LR, "lr", 2e-4, "peak learning rate")
	fs.IntVar(&c.Epochs, "epochs", 1, "passes over the data (when --steps is 0)")
	fs.IntVar(&c.Steps, "steps", 0, "optimizer steps (0: --epochs decides)")
	fs.IntVar(&c.BatchSize, "batch", 8, "examples per micro-batch")
	fs.IntVar(&c.GradAccum, "grad-accum", 1, "micro-batches accumulated per optimizer step")
	schedule := fs.String("schedule", "linear", "learning-rate schedule: constant, constant_with_warmup, linear, cosine")
	fs.IntVar(&c.WarmupSteps, "warmup", 0, "warm-up steps")
	fs.Float64Var(&c.MaxGradNorm, "clip", 1, "clip the gradient norm to this (0: off)")
	fs.Float64Var(&c.WeightDecay, "weight-decay", 0, "AdamW weight decay")
	fs.Float64Var(&c.LoRAPlusRatio, "loraplus-lr-ratio", 0, "LoRA+: learning-rate ratio of B matrices (0: off)")
	fs.Float64Var(&c.LoRAPlusLREmbedding, "loraplus-lr-embedding", 1e-6, "LoRA+: learning rate of LoRA embedding factors")
	fs.Uint64Var(&c.Seed, "seed", 42, "seed of the data order and dropout")
	pad := fs.Int("pad-id", 0, "token id that pads short sequences")
	fs.IntVar(&c.EvalEvery, "eval-every", 0, "evaluate every N steps (0: at the end)")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", 0, "save a resumable checkpoint every N steps (0: never)")
	ckDir := fs.String("checkpoint-dir", "", "where checkpoints go (default: OUT-checkpoints)")
	resume := fs.String("resume", "", "resume from a checkpoint folder, or \"latest\" in --checkpoint-dir")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *base == "":
		return usagef("--base is required")
	case *data == "":
		return usagef("--data is required")
	case *cfgPath == "":
		return usagef("--config is required")
	case *out == "":
		return usagef("--out is required")
	}
	if err := checkOut(*out); err != nil {
		return err
	}
	sch, err := train.ParseSchedule(*schedule)
	if err != nil {
		return usagef("--schedule: %v", err)
	}
	c.Schedule = sch
	c.PadID = int32(*pad)
	if *ckDir == "" {
		*ckDir = filepath.Clean(*out) + "-checkpoints"
	}
	c.CheckpointDir = *ckDir
	start := time.Now()

	cfg, err := readAdapterConfig(*cfgPath)
	if err != nil {
		return err
	}
	model, err := llama.Load(*base)
	if err != nil {
		return err
	}
	defer model.Close()
	vocab := model.Config().VocabSize
	trainSet, err := train.ReadJSONL(*data, vocab)
	if err != nil {
		return err
	}
	var evalSet []train.Example
	if *evalData != "" {
		if evalSet, err = train.ReadJSONL(*evalData, vocab); err != nil {
			return err
		}
	}
	if cfg.Base().BaseModelNameOrPath == "" {
		cfg.Base().BaseModelNameOrPath = *base
	}
	// A config copied from a saved adapter says inference_mode true.
	cfg.Base().InferenceMode = false
	m, err := peft.New(model, cfg)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", *cfgPath, *base, err)
	}
	rep := trainReport{Method: cfg.Base().PeftType, Out: *out}
	rep.Trainable, rep.Total = m.NumTrainableParameters()
	var b *bar
	c.OnStep = func(s train.StepInfo) {
		b.add(1)
		b.describe(fmt.Sprintf("training (loss %.4f)", s.Loss))
	}
	tr, err := train.New(m, c, trainSet, evalSet)
	if err != nil {
		return err
	}
	if *resume != "" {
		dir := *resume
		if dir == "latest" {
			if dir, err = train.LatestCheckpoint(*ckDir); err != nil {
				return err
			}
		}
		if err := tr.Resume(dir); err != nil {
			return err
		}
		rep.ResumedFrom = dir
	}
	if c.CheckpointEvery > 0 {
		rep.CheckpointsDir = *ckDir
	}
	e.printf("training %s (%d of %d parameters trainable, %.3f%%) on %d examples for %d steps\n",
		rep.Method, rep.Trainable, rep.Total, 100*float64(rep.Trainable)/float64(rep.Total), len(trainSet), tr.TotalSteps())
	if rep.ResumedFrom != "" {
		e.printf("resumed from %s at step %d\n", rep.ResumedFrom, tr.StepCount())
	}
	b = e.newBar(tr.TotalSteps()-tr.StepCount(), "training")
	res, err := tr.Run()
	b.finish()
	if err != nil {
		return err
	}
	rep.Steps, rep.Loss, rep.EvalLoss = res.Steps, res.Loss, res.EvalLoss

	// The adapter folder appears complete or not at all.
	tmp, err := tempDirBeside(*out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := m.Save(tmp); err != nil {
		return err
	}
	if err := writeHistory(filepath.Join(tmp, "log_history.json"), res.History); err != nil {
		return err
	}
	if len(res.History) >= 2 {
		var lc, ec []float64
		for _, h := range res.History {
			lc, ec = append(lc, h.Loss), append(ec, h.EvalLoss)
		}
		if err := lossPNG(filepath.Join(tmp, "loss.png"), lc, ec); err != nil {
			return err
		}
	}
	if err := replaceDir(tmp, *out); err != nil {
		return err
	}
	rep.Seconds = time.Since(start).Seconds()
	e.printf("final loss %.4f", rep.Loss)
	if !math.IsNaN(rep.EvalLoss) {
		e.printf(", eval loss %.4f", rep.EvalLoss)
	}
	e.printf("\nwrote %s (%.1fs)\n", *out, rep.Seconds)
	if math.IsNaN(rep.EvalLoss) {
		rep.EvalLoss = 0
	}
	return e.emit(rep)
}

// readAdapterConfig reads an adapter_config.json file, or the one in a
// folder. Errors name the file.
func readAdapterConfig(path string) (tuners.Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, peft.ConfigName)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := peft.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// tempDirBeside makes a temporary folder next to path (same file system, so
// that renaming it to path is atomic), readable like a normal folder.
func tempDirBeside(path string) (string, error) {
	parent := filepath.Dir(filepath.Clean(path))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// checkOut fails early when the output path exists and is not a folder
// (replacing it would destroy a file).
func checkOut(path string) error {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return fmt.Errorf("%s exists and is not a folder", path)
	}
	return nil
}
