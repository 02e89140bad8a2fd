package llama

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// GenerateOptions control Generate.
type GenerateOptions struct {
	// MaxNewTokens is the most tokens generated (required, > 0).
	MaxNewTokens int
	// Temperature divides the logits before sampling; 0 means greedy
	// decoding (the most likely token, the lowest id on ties).
	Temperature float32
	// TopP, in (0, 1], keeps the smallest set of most likely tokens whose
	// probabilities add up to at least TopP (nucleus sampling); 0 means 1.
	TopP float32
	// Seed selects the Philox stream sampling draws from: step i uses
	// counter i of the stream, so a seed always gives the same text.
	Seed uint64
	// EOS lists the end-of-sequence ids: generation stops after producing
	// one of them (it is included in the result).
	EOS []int32
	// Prefix, when set, is a per-layer key/value prefix ([1, kv_heads, P,
	// head_dim]) seen before the prompt, as prefix tuning supplies.
	Prefix []KV
	// Embeds, when set, are input embeddings [1, P, hidden] placed before
	// the prompt's token embeddings (the virtual tokens of prompt tuning,
	// P-tuning and CPT): they occupy positions after Prefix and before the
	// prompt, and the result holds new tokens only.
	Embeds *nn.Tensor
}

// Generate continues prompt (a single sequence) and returns the new tokens
// only. It encodes the prompt once, then decodes one token per step with a
// KV cache. The model should be in evaluation mode; Generate records no
// gradients unless some weight requires them.
func (m *Model) Generate(prompt []int32, o GenerateOptions) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("llama: generate: empty prompt")
	}
	if o.MaxNewTokens <= 0 {
		return nil, fmt.Errorf("llama: generate: MaxNewTokens must be positive, got %d", o.MaxNewTokens)
	}
	if o.Temperature < 0 || math.IsNaN(float64(o.Temperature)) || math.IsInf(float64(o.Temperature), 0) {
		return nil, fmt.Errorf("llama: generate: Temperature must be finite and non-negative, got %v", o.Temperature)
	}
	topP := o.TopP
	if topP == 0 {
		topP = 1
	}
	if !(topP > 0 && topP <= 1) {
		return nil, fmt.Errorf("llama: generate: TopP must be in (0, 1], got %v", o.TopP)
	}
	cache := NewCacheFrom(o.Prefix)
	input := prompt
	var out []int32
	for step := 0; step < o.MaxNewTokens; step++ {
		h, err := m.Embed(input, 1, len(input))
		if err != nil {
			return nil, fmt.Errorf("llama: generate: %w", err)
		}
		if step == 0 && o.Embeds != nil {
			if o.Embeds.Rank() != 3 || o.Embeds.Dim(0) != 1 || o.Embeds.Dim(2) != h.Dim(2) {
				return nil, fmt.Errorf("llama: generate: Embeds has shape %v, want [1, P, %d]", o.Embeds.Shape(), h.Dim(2))
			}
			h = nn.Concat(1, o.Embeds, h)
		}
		logits, err := m.ForwardEmbeds(h, &ForwardOptions{Cache: cache, LastOnly: true})
		if err != nil {
			return nil, fmt.Errorf("llama: generate: %w", err)
		}
		// Generation never backpropagates: drop the graph the cache would
		// otherwise keep alive when some weight requires gradients.
		for i := range cache.layers {
			cache.layers[i].K = cache.layers[i].K.Detach()
			cache.layers[i].V = cache.layers[i].V.Detach()
		}
		row := logits.Data()
		var next int32
		if o.Temperature == 0 {
			next = int32(argmax(row))
		} else {
			next = int32(sample(row, o.Temperature, topP, kernels.UniformAt(o.Seed, uint64(step))))
		}
		out = append(out, next)
		if slices.Contains(o.EOS, next) {
			break
		}
		input = []int32{next}
	}
	return out, nil
}

// argmax returns the index of the largest value, the first on ties (NaNs
// are never chosen unless every value is NaN).
func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] || (math.IsNaN(float64(v[best])) && !math.IsNaN(float64(x))) {
			best = i
		}
	}
	return best
}

// sample draws a token from softmax(logits/temperature) restricted to the
// top-p nucleus, using the uniform number u in [0, 1). Probabilities are
// computed in float64.
func sample(logits []float32, temperature, topP float32, u float32) int {
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	maxL := float64(logits[idx[0]])
	p := make([]float64, len(idx))
	var z float64
	for i, j := range idx {
		p[i] = math.Exp((float64(logits[j]) - maxL) / float64(temperature))
		z += p[i]
	}
	// Keep the most likely tokens until their mass reaches topP.
	keep, mass := 0, 0.0
	for keep < len(p) {
		mass += p[keep] / z
		keep++
		if mass >= float64(topP) {
			break
		}
	}
	var kept float64
	for _, q := range p[:keep] {
		kept += q
	}
	target := float64(u) * kept
	for i := 0; i < keep; i++ {
		target -= p[i]
		if target < 0 {
			return idx[i]
		}
	}
	return idx[keep-1]
}
