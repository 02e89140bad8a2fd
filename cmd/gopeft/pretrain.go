package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/gopeft/gopeft/internal/demo"
)

// runPretrainDemo regenerates the demo's base model: a fresh tiny LLaMA
// trained on the copy task from a fixed seed, saved as config.json and
// model.safetensors.
func runPretrainDemo(e *env, args []string) error {
	fs := e.newFlags("pretrain-demo")
	out := fs.String("out", filepath.Join("internal", "demo", "base"), "folder to write config.json and model.safetensors to")
	seed := fs.Uint64("seed", demo.PretrainSeed, "seed of the initial weights, the data and its order")
	steps := fs.Int("steps", demo.PretrainSteps, "AdamW steps")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *steps <= 0 {
		return usagef("--steps must be positive, got %d", *steps)
	}
	start := time.Now()
	b := e.newBar(*steps, "pre-training")
	var last float64
	m, err := demo.Pretrain(*seed, *steps, func(_ int, loss float64) { last = loss; b.add(1) })
	b.finish()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	// llama's Save writes each file atomically.
	if err := m.Save(*out); err != nil {
		return err
	}
	acc, err := demo.Accuracy(m, demo.Examples(demo.Copy, 200, evalSeed))
	if err != nil {
		return err
	}
	e.printf("pre-trained the demo base model on the copy task: %d steps, seed %d, final loss %.4f, copy accuracy %.1f%%, %.1fs\n",
		*steps, *seed, last, 100*acc, time.Since(start).Seconds())
	e.printf("wrote %s\n", *out)
	return e.emit(map[string]any{"out": *out, "seed": *seed, "steps": *steps, "loss": last, "copy_accuracy": acc})
}
