package bench

import (
	"fmt"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// tinyLlama is a small but GEMM-bound LLaMA (a 1/8-width TinyLlama, as in
// models/llama's benchmarks).
var tinyLlama = llama.Config{VocabSize: 4000, HiddenSize: 256, IntermediateSize: 704, NumHiddenLayers: 4,
	NumAttentionHeads: 8, NumKeyValueHeads: 2, RMSNormEps: 1e-5}

// mixedBatch, mixedSeq: the batch BenchmarkMixedBatch runs (16 rows, so that
// 16 adapters give each row its own).
const mixedBatch, mixedSeq = 16, 64

// BenchmarkMixedBatch times one forward pass of a 16 x 64 token batch
// through the tiny LLaMA with 16 rank-16 LoRA adapters on every linear
// layer, the rows spread evenly over 1, 4 or 16 of them (Model.ForwardMixed,
// PEFT's adapter_names), on each compiled backend, and reports tokens/s.
// "active" is the plain Forward of the same batch with one active adapter.
// The bar: 16adapters runs at least 0.7x the tokens/s of 1adapters.
func BenchmarkMixedBatch(b *testing.B) {
	for _, n := range []int{0, 1, 4, 16} {
		label := fmt.Sprintf("%dadapters", n)
		if n == 0 {
			label = "active"
		}
		b.Run("llama-tiny/"+label, func(b *testing.B) {
			for _, name := range kernels.Names() {
				b.Run(name, func(b *testing.B) {
					be, err := kernels.Get(name)
					if err != nil {
						b.Skipf("backend %s cannot start here: %v", name, err)
					}
					benchMixed(b, be, n)
				})
			}
		})
	}
}

// mixedModel returns the tiny LLaMA on be with adapters "a0".."a15".
func mixedModel(b *testing.B, be kernels.Backend) *peft.Model {
	base, err := llama.New(be, tinyLlama, 1)
	if err != nil {
		b.Fatal(err)
	}
	var m *peft.Model
	for i := range 16 {
		c := lora.NewConfig()
		c.R, c.Alpha, c.InferenceMode = 16, 32, true
		c.TargetModules = tuners.Names("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
		name := fmt.Sprintf("a%d", i)
		if m == nil {
			m, err = peft.New(base, c, peft.AdapterName(name))
		} else {
			err = m.AddAdapter(c, peft.AdapterName(name))
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	m.SetTraining(false)
	return m
}

func benchMixed(b *testing.B, be kernels.Backend, n int) {
	m := mixedModel(b, be)
	ids := make([]int32, mixedBatch*mixedSeq)
	for i := range ids {
		ids[i] = int32((i*2654435761 + 17) % tinyLlama.VocabSize)
	}
	in := models.Input{IDs: ids, Shape: []int{mixedBatch, mixedSeq}}
	names := make([]string, mixedBatch)
	for i := range names {
		names[i] = fmt.Sprintf("a%d", i%max(n, 1))
	}
	run := func() *nn.Tensor {
		var out *nn.Tensor
		var err error
		if n == 0 {
			out, err = m.Forward(in)
		} else {
			out, err = m.ForwardMixed(in, names)
		}
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	probe := run() // warm up
	_ = probe.Dim(0)
	b.ResetTimer()
	var out *nn.Tensor
	for i := 0; i < b.N; i++ {
		out = run()
	}
	_ = out.Data()[:1] // a device backend finishes before the clock stops
	b.StopTimer()
	b.ReportMetric(float64(b.N*mixedBatch*mixedSeq)/b.Elapsed().Seconds(), "tokens/s")
}
