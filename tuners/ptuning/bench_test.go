package ptuning_test

import (
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners/ptuning"
)

// benchEncode times one forward and backward pass of a P-tuning encoder
// for 20 virtual tokens of width 256 (hidden size 128).
func benchEncode(b *testing.B, kind string) {
	const tokens, dim, hidden = 20, 256, 128
	cfg := ptuning.NewConfig()
	cfg.EncoderReparameterizationType = kind
	cfg.NumVirtualTokens, cfg.TokenDim, cfg.EncoderHiddenSize, cfg.NumLayers = tokens, dim, hidden, 2
	cfg.NumAttentionHeads, cfg.NumTransformerSubmodules = 4, 1
	enc, err := ptuning.Method{}.NewEncoder(nil, cfg, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	idx := make([]int32, tokens)
	for i := range idx {
		idx[i] = int32(i)
	}
	b.ResetTimer()
	for b.Loop() {
		out, err := enc.Encode(idx, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		nn.SumAll(out).Backward()
	}
}

func BenchmarkEncodeMLP(b *testing.B)  { benchEncode(b, ptuning.EncoderMLP) }
func BenchmarkEncodeLSTM(b *testing.B) { benchEncode(b, ptuning.EncoderLSTM) }
