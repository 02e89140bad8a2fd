package trainabletokens

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// BenchmarkMerge merges and unmerges 16 trained rows of a 4096x4096
// embedding on every compiled backend (one row copy per token each way),
// and times a lookup of 512 ids with the rows swapped in. Compare the merge
// with BenchmarkLoRA/merge in tuners/lora.
func BenchmarkMerge(b *testing.B) {
	const vocab, dim, k = 4096, 4096, 16
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			b.Logf("backend %s: %v", name, err)
			continue
		}
		emb := &nn.Embedding{Weight: nn.Uniform(be, nn.NewRNG(1), -1, 1, vocab, dim)}
		cfg := NewConfig()
		for i := range k {
			cfg.TokenIndices = append(cfg.TokenIndices, i*97)
		}
		l, err := Method{}.Wrap(tuners.Target{Path: "embed_tokens", Module: emb, Config: cfg, Adapter: "default"})
		if err != nil {
			b.Fatal(err)
		}
		layer := l.(*Layer)
		b.Run("trainable_tokens/4096x4096k16/"+name, func(b *testing.B) {
			for b.Loop() {
				if err := layer.Merge(nil, false); err != nil {
					b.Fatal(err)
				}
				if err := layer.Unmerge(); err != nil {
					b.Fatal(err)
				}
			}
		})
		ids := make([]int32, 512)
		for i := range ids {
			ids[i] = int32(i * 7 % vocab)
		}
		layer.SetTrainable("default", false)
		b.Run("lookup/512x4096k16/"+name, func(b *testing.B) {
			for b.Loop() {
				_ = layer.Lookup(ids).Len()
			}
		})
	}
}

// BenchmarkLookupBase is the lookup of BenchmarkMerge without adapter.
func BenchmarkLookupBase(b *testing.B) {
	const vocab, dim = 4096, 4096
	for _, name := range kernels.Names() {
		be, err := kernels.Get(name)
		if err != nil {
			continue
		}
		emb := &nn.Embedding{Weight: nn.Uniform(be, nn.NewRNG(1), -1, 1, vocab, dim)}
		ids := make([]int32, 512)
		for i := range ids {
			ids[i] = int32(i * 7 % vocab)
		}
		b.Run("lookup/512x4096/"+name, func(b *testing.B) {
			for b.Loop() {
				_ = emb.Lookup(ids).Len()
			}
		})
	}
}
