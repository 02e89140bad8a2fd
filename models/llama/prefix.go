package llama

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
)

// PrefixKV turns a prefix-tuning encoder output into per-layer past keys
// and values, as PEFT does for a causal LM: enc [batch, T, layers*2*kv_heads*
// head_dim] is viewed as [batch, T, 2*layers, kv_heads, head_dim], permuted
// to [2*layers, batch, kv_heads, T, head_dim] and split in pairs, so that
// entry 2l is layer l's keys and 2l+1 its values. The result feeds
// ForwardOptions.PastKV (or GenerateOptions.Prefix) and is differentiable in
// enc.
func (m *Model) PrefixKV(enc *nn.Tensor) ([]KV, error) {
	c := m.cfg
	width := c.NumHiddenLayers * 2 * c.NumKeyValueHeads * c.HeadDim
	if enc.Rank() != 3 || enc.Dim(2) != width {
		return nil, fmt.Errorf("llama: prefix encoder output has shape %v, want [batch, tokens, %d] (layers %d x 2 x kv_heads %d x head_dim %d)",
			enc.Shape(), width, c.NumHiddenLayers, c.NumKeyValueHeads, c.HeadDim)
	}
	b, t := enc.Dim(0), enc.Dim(1)
	if b == 0 || t == 0 {
		return nil, fmt.Errorf("llama: prefix encoder output has shape %v, want a non-empty batch and prefix", enc.Shape())
	}
	all := nn.Permute(enc.Reshape(b, t, 2*c.NumHiddenLayers, c.NumKeyValueHeads, c.HeadDim), 2, 0, 3, 1, 4)
	out := make([]KV, c.NumHiddenLayers)
	for l := range out {
		// Slices along the leading axis are windows, not copies.
		k := nn.Slice(all, 0, 2*l, 2*l+1).Reshape(b, c.NumKeyValueHeads, t, c.HeadDim)
		v := nn.Slice(all, 0, 2*l+1, 2*l+2).Reshape(b, c.NumKeyValueHeads, t, c.HeadDim)
		out[l] = KV{K: k, V: v}
	}
	return out, nil
}
