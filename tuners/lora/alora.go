package lora

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/gopeft/gopeft/nn"
)

// Activated LoRA (aLoRA, https://arxiv.org/abs/2504.12397): an adapter with
// alora_invocation_tokens applies only to the tokens from the last
// occurrence of its invocation sequence on, so the key/value cache of the
// prompt before it stays the base model's. The model computes, per batch
// row, how many trailing tokens the adapter covers (ALoRAOffsets) and hands
// them to the layers (SetALoRAOffsets) before the forward pass.

// parseInvocation reads alora_invocation_tokens (nil when unset).
func parseInvocation(raw json.RawMessage) ([]int64, error) {
	if isDefaultRaw(raw) {
		return nil, nil
	}
	var toks []int64
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&toks); err != nil {
		return nil, fmt.Errorf("lora: alora_invocation_tokens must be a list of token ids: %w", err)
	}
	return toks, nil
}

// InvocationTokens returns alora_invocation_tokens, or nil for an adapter
// that is not an aLoRA.
func (c *Config) InvocationTokens() []int64 {
	toks, _ := parseInvocation(c.AloraInvocationTokens)
	return toks
}

// ALoRAOffsets computes PEFT's alora_offsets for one aLoRA adapter: ids
// holds batch rows of seq token ids each; row i's offset is seq minus the
// start of the last occurrence of invocation in it (so the adapter covers
// the invocation and everything after), or 0 when it does not occur.
func ALoRAOffsets(invocation []int64, ids []int32, batch, seq int) []int {
	out := make([]int, batch)
	if len(invocation) == 0 || batch*seq != len(ids) {
		return out
	}
	for b := range batch {
		row := ids[b*seq : (b+1)*seq]
		best := -1
		for start := 0; start+len(invocation) <= seq; start++ {
			match := true
			for k, tok := range invocation {
				if int64(row[start+k]) != tok {
					match = false
					break
				}
			}
			if match {
				best = start
			}
		}
		if best >= 0 {
			out[b] = seq - best
		}
	}
	return out
}

// SetALoRAOffsets sets, for each batch row, how many trailing tokens the
// aLoRA adapters apply to (0: none); nil, the default, turns aLoRA adapters
// off entirely, as PEFT does when no offsets are given. Plain adapters are
// not affected. The input's batch size must then equal len(offsets); a
// mismatch is a programming error and panics. Not safe for concurrent use
// with Forward.
func (c *core) SetALoRAOffsets(offsets []int) {
	if offsets == nil {
		c.aloraOffsets = nil
		return
	}
	c.aloraOffsets = append([]int{}, offsets...)
}

// aloraRows returns the flat (row*T + t) indices of the tokens an aLoRA
// adapter covers for an output of shape [B, T, D] (or [B, D], T = 1).
func aloraRows(offsets []int, shape []int) []int32 {
	b := shape[0]
	t := 1
	if len(shape) == 3 {
		t = shape[1]
	}
	if len(offsets) != b {
		panic(fmt.Sprintf("lora: input batch of %d rows, but %d aLoRA offsets are set", b, len(offsets)))
	}
	var rows []int32
	for i, off := range offsets {
		off = min(max(off, 0), t)
		for p := t - off; p < t; p++ {
			rows = append(rows, int32(i*t+p))
		}
	}
	return rows
}

// aloraAdd adds aLoRA adapter a's output to result on the covered tokens
// only, computing the adapter on those tokens alone.
func (c *core) aloraAdd(a *adapter, x, result *nn.Tensor, offsets []int) *nn.Tensor {
	if offsets == nil {
		return result
	}
	shape := result.Shape()
	rows := aloraRows(offsets, shape)
	if len(rows) == 0 {
		return result
	}
	xs := nn.Index(x.Reshape(-1, x.Dim(-1)), 0, rows)
	if c.dropoutOn(a) {
		xs = nn.DropoutOp(xs, a.dropout, c.rng)
	}
	y := nn.Scale(c.loraB(a, c.loraA(a, xs)), float32(a.scale))
	flat := result.Reshape(-1, shape[len(shape)-1])
	return scatterRows(flat, []*nn.Tensor{y}, [][]int32{rows}).Reshape(shape...)
}
