// Package demo holds the tiny LLaMA that `gopeft demo` fine-tunes, and the two
// synthetic sequence tasks around it.
//
// The base model (folder base/, embedded in the binary) was pre-trained by
// gopeft itself on the copy task: given BOS x1..xL SEP, continue with x1..xL.
// The demo fine-tunes an adapter on a different task, the shift task: the
// same prompt must continue with (x1+1)..(xL+1) modulo the digit count. The
// metric is exact-match accuracy of greedy decoding on held-out prompts.
//
// `go run ./cmd/gopeft pretrain-demo` regenerates base/ (see base/README.md
// for the command and seed); Pretrain is deterministic, so it rewrites the
// same bytes.
package demo

import (
	"embed"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/train"
)

// Token ids of the demo vocabulary.
const (
	Pad = 0 // padding
	BOS = 1 // start of a sequence
	SEP = 2 // end of the prompt
	// FirstDigit is the id of digit 0; digit d is FirstDigit+d.
	FirstDigit = 3
	// Digits is the number of distinct digits.
	Digits = 10
	// Vocab is the vocabulary size.
	Vocab = 16
	// Length is the number of digits of a prompt.
	Length = 6
)

// Task is a synthetic sequence transformation: it maps a prompt's digits to
// the answer's digits.
type Task int

// The tasks.
const (
	// Copy repeats the digits (the pre-training task).
	Copy Task = iota
	// Shift adds one to every digit, modulo Digits (the fine-tuning task).
	Shift
)

// String names the task.
func (t Task) String() string {
	if t == Shift {
		return "shift"
	}
	return "copy"
}

// Answer returns the answer to digits.
func (t Task) Answer(digits []int32) []int32 {
	out := make([]int32, len(digits))
	for i, d := range digits {
		if t == Shift {
			d = (d-FirstDigit+1)%Digits + FirstDigit
		}
		out[i] = d
	}
	return out
}

// Examples returns n training sequences BOS x SEP answer with random digits
// from the Philox stream of seed; the labels cover the answer only (the
// prompt is IgnoreIndex), so the loss is that of the answer.
func Examples(t Task, n int, seed uint64) []train.Example {
	out := make([]train.Example, n)
	for i := range out {
		digits := make([]int32, Length)
		for j := range digits {
			x := kernels.Philox4x32(seed, uint64(i*Length+j))
			digits[j] = FirstDigit + int32(x[0]%Digits)
		}
		ids := append([]int32{BOS}, digits...)
		ids = append(ids, SEP)
		ids = append(ids, t.Answer(digits)...)
		labels := make([]int32, len(ids))
		for j := range labels {
			labels[j] = train.IgnoreIndex
			if j > Length+1 {
				labels[j] = ids[j]
			}
		}
		// The SEP position predicts the first answer digit: label it too.
		labels[Length+1] = train.IgnoreIndex
		out[i] = train.Example{IDs: ids, Labels: labels}
	}
	return out
}

// Prompt returns the prompt part (BOS x SEP) of an example made by Examples.
func Prompt(e train.Example) []int32 { return e.IDs[:Length+2] }

// Generator decodes greedily (a llama model or a peft.Model over one).
type Generator interface {
	Generate(prompt []int32, o llama.GenerateOptions) ([]int32, error)
}

// Accuracy returns the share of examples whose greedy continuation of the
// prompt equals the answer exactly. Run it in evaluation mode.
func Accuracy(g Generator, examples []train.Example) (float64, error) {
	right := 0
	for _, e := range examples {
		got, err := g.Generate(Prompt(e), llama.GenerateOptions{MaxNewTokens: Length})
		if err != nil {
			return 0, err
		}
		want := e.IDs[Length+2:]
		ok := len(got) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = got[i] == want[i]
		}
		if ok {
			right++
		}
	}
	return float64(right) / float64(len(examples)), nil
}

// ModelConfig is the architecture of the demo base model: two layers,
// hidden size 64, grouped-query attention with 4 query and 2 key/value heads.
func ModelConfig() llama.Config {
	return llama.Config{
		VocabSize: Vocab, HiddenSize: 64, IntermediateSize: 128, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, RMSNormEps: 1e-6, RopeTheta: 10000,
		MaxPositionEmbeddings: 64, HiddenAct: "silu", TorchDtype: "float32",
	}.WithDefaults()
}

// PretrainSeed is the seed base/ was made with.
const PretrainSeed = 20261126

// PretrainSteps is the number of AdamW steps of Pretrain.
const PretrainSteps = 600

// Pretrain trains a fresh ModelConfig model on the copy task from seed: the
// initial weights, the data and the order are all drawn from it, so a seed
// always gives the same model. progress, when set, is called after each step
// with the step (from 1) and its loss.
func Pretrain(seed uint64, steps int, progress func(step int, loss float64)) (*llama.Model, error) {
	m, err := llama.New(nil, ModelConfig(), seed)
	if err != nil {
		return nil, err
	}
	params := nn.Parameters(m)
	for _, p := range params {
		p.SetRequiresGrad(true)
	}
	const batch = 32
	data := Examples(Copy, steps*batch, seed+1)
	ac := nn.DefaultAdamW()
	ac.LR, ac.WeightDecay = 3e-3, 0
	opt := nn.NewAdamW(ac, ac.Group(params...))
	warmup := steps / 20
	for s := range steps {
		opt.Groups[0].LR = float32(3e-3 * train.Cosine.Factor(s, warmup, steps))
		b := train.Collate(data[s*batch:(s+1)*batch], Pad)
		logits, err := m.Forward(b.IDs, b.Rows, b.Seq)
		if err != nil {
			return nil, err
		}
		loss, err := llama.CausalLMLoss(logits, b.Labels)
		if err != nil {
			return nil, err
		}
		l := float64(loss.Item())
		if math.IsNaN(l) {
			return nil, fmt.Errorf("demo: pre-training diverged at step %d", s+1)
		}
		loss.Backward()
		nn.ClipGradNorm(params, 1)
		opt.Step()
		opt.ZeroGrad()
		if progress != nil {
			progress(s+1, l)
		}
	}
	for _, p := range params {
		p.SetRequiresGrad(false)
	}
	return m, nil
}

//go:embed base/config.json base/model.safetensors
var baseFS embed.FS

// BaseFiles returns the embedded checkpoint folder (config.json and
// model.safetensors).
func BaseFiles() fs.FS {
	sub, err := fs.Sub(baseFS, "base")
	if err != nil {
		panic(err) // the embedded tree always has base/
	}
	return sub
}

// LoadBase returns the embedded base model. It writes the two small files to
// a temporary folder, loads them into memory and removes the folder.
func LoadBase() (*llama.Model, error) {
	dir, err := os.MkdirTemp("", "gopeft-demo-base-")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := WriteBase(dir); err != nil {
		return nil, err
	}
	return llama.LoadWith(dir, llama.LoadOptions{Copy: true})
}

// WriteBase copies the embedded checkpoint into dir (which must exist).
func WriteBase(dir string) error {
	for _, name := range []string{llama.ConfigFile, "model.safetensors"} {
		data, err := fs.ReadFile(BaseFiles(), name)
		if err != nil {
			return fmt.Errorf("demo: embedded %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

//go:generate go run ../../cmd/gopeft pretrain-demo --out base --seed 20261126 --steps 600
