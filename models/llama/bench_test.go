package llama

import (
	"testing"
)

// benchConfig is a small but GEMM-bound model (a 1/8-width TinyLlama).
func benchConfig() Config {
	return Config{VocabSize: 4000, HiddenSize: 256, IntermediateSize: 704, NumHiddenLayers: 4,
		NumAttentionHeads: 8, NumKeyValueHeads: 2, RMSNormEps: 1e-5}
}

// BenchmarkForward measures a full forward pass over batch 2 x 128 tokens.
func BenchmarkForward(b *testing.B) {
	m, err := New(backend(b), benchConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	ids := randomIDs(2*128, m.cfg.VocabSize, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Forward(ids, 2, 128); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*2*128)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkGenerate measures cached greedy decoding of 32 tokens after a
// 32-token prompt.
func BenchmarkGenerate(b *testing.B) {
	m, err := New(backend(b), benchConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	prompt := randomIDs(32, m.cfg.VocabSize, 2)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 32}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*32)/b.Elapsed().Seconds(), "new-tokens/s")
}
