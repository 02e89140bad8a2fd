package vblora

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

var _ tuners.FileFormat = (*Config)(nil)

const (
	logitsMarker  = "vblora_logits"
	indicesSuffix = "_topk_indices"
	weightsSuffix = "_topk_weights"
)

// EncodeFile writes PEFT's save_only_topk_weights form when the option is
// set (otherwise it returns tensors unchanged): every logits tensor
// K [.., .., num_vectors] becomes K_topk_indices (the indices of each
// row's topk largest logits, largest first) and K_topk_weights (their
// softmax weights without the last one, [.., .., topk-1]). PEFT stores the
// indices in the smallest integer dtype that holds num_vectors (uint8 below
// 256); gopeft writes int32 below 2^31 and int64 above, which PEFT reads
// the same way. Logits unchanged since DecodeFile are written as they were
// read.
func (c *Config) EncodeFile(tensors map[string]safetensors.Tensor) (map[string]safetensors.Tensor, error) {
	if !c.SaveOnlyTopKWeights {
		return tensors, nil
	}
	k := c.TopK
	dtype := "I32"
	if c.NumVectors >= math.MaxInt32 {
		dtype = "I64"
	}
	out := make(map[string]safetensors.Tensor, len(tensors)+len(tensors)/2)
	for key, t := range tensors {
		if !strings.Contains(key, logitsMarker) {
			out[key] = t
			continue
		}
		if e, ok := c.loaded[key]; ok && slices.Equal(e.logits, t.F32) {
			idx := e.indices
			idx.DType = dtype
			out[key+indicesSuffix], out[key+weightsSuffix] = idx, e.weight
			continue
		}
		if len(t.Shape) != 3 || t.F32 == nil || t.Shape[2] < k {
			return nil, fmt.Errorf("vblora: %s: logits of shape %v cannot keep the top %d", key, t.Shape, k)
		}
		nv := t.Shape[2]
		rows := len(t.F32) / nv
		idx := make([]int64, 0, rows*k)
		ws := make([]float32, 0, rows*(k-1))
		for r := range rows {
			row := t.F32[r*nv : (r+1)*nv]
			best := topRow(row, k)
			mx := float64(row[best[0]])
			var z float64
			for _, i := range best {
				z += math.Exp(float64(row[i]) - mx)
			}
			for j, i := range best {
				idx = append(idx, int64(i))
				if j < k-1 {
					ws = append(ws, float32(math.Exp(float64(row[i])-mx)/z))
				}
			}
		}
		out[key+indicesSuffix] = safetensors.Tensor{DType: dtype, Shape: []int{t.Shape[0], t.Shape[1], k}, I64: idx}
		out[key+weightsSuffix] = safetensors.Tensor{Shape: []int{t.Shape[0], t.Shape[1], k - 1}, F32: ws}
	}
	return out, nil
}

// DecodeFile turns a save_only_topk_weights file back into logits, as PEFT
// does when loading it: the missing last weight is 1 minus the sum of the
// others, the logits at the saved indices are the weights' logarithms, and
// every other logit is -inf. Files of the plain format pass unchanged. The
// config remembers the file's tensors: EncodeFile writes them again for
// logits that have not changed since, so a load/save round trip gives
// PEFT's file back. Not safe for concurrent use.
func (c *Config) DecodeFile(tensors map[string]safetensors.Tensor) (map[string]safetensors.Tensor, error) {
	if !c.SaveOnlyTopKWeights {
		return tensors, nil
	}
	nv := c.NumVectors
	out := make(map[string]safetensors.Tensor, len(tensors))
	for key, t := range tensors {
		switch {
		case strings.HasSuffix(key, weightsSuffix):
			if _, ok := tensors[strings.TrimSuffix(key, weightsSuffix)+indicesSuffix]; !ok {
				return nil, fmt.Errorf("vblora: %s has no matching %s", key, indicesSuffix)
			}
		case strings.HasSuffix(key, indicesSuffix):
			orig := strings.TrimSuffix(key, indicesSuffix)
			w, ok := tensors[orig+weightsSuffix]
			if !ok {
				return nil, fmt.Errorf("vblora: %s has no matching %s", key, weightsSuffix)
			}
			logits, err := decodeLogits(key, t, w, nv)
			if err != nil {
				return nil, err
			}
			out[orig] = logits
			if c.loaded == nil {
				c.loaded = map[string]topkEntry{}
			}
			c.loaded[orig] = topkEntry{logits: slices.Clone(logits.F32), indices: t, weight: w}
		default:
			out[key] = t
		}
	}
	return out, nil
}

// decodeLogits rebuilds one logits tensor from its top-k indices and
// weights.
func decodeLogits(key string, idx, w safetensors.Tensor, nv int) (safetensors.Tensor, error) {
	if len(idx.Shape) != 3 || idx.I64 == nil {
		return safetensors.Tensor{}, fmt.Errorf("vblora: %s: want an integer tensor [.., .., topk], got shape %v", key, idx.Shape)
	}
	k := idx.Shape[2]
	if len(w.Shape) != 3 || w.F32 == nil || !slices.Equal(w.Shape[:2], idx.Shape[:2]) || w.Shape[2] != k-1 {
		return safetensors.Tensor{}, fmt.Errorf("vblora: %s: weights of shape %v do not match indices of shape %v", key, w.Shape, idx.Shape)
	}
	rows := idx.Shape[0] * idx.Shape[1]
	logits := make([]float32, rows*nv)
	negInf := float32(math.Inf(-1))
	for i := range logits {
		logits[i] = negInf
	}
	for r := range rows {
		var sum float32
		for j := range k - 1 {
			sum += w.F32[r*(k-1)+j]
		}
		for j := range k {
			i := idx.I64[r*k+j]
			if i < 0 || i >= int64(nv) {
				return safetensors.Tensor{}, fmt.Errorf("vblora: %s: index %d outside [0, %d)", key, i, nv)
			}
			v := 1 - sum
			if j < k-1 {
				v = w.F32[r*(k-1)+j]
			}
			logits[r*nv+int(i)] = float32(math.Log(float64(v)))
		}
	}
	return safetensors.Tensor{Shape: []int{idx.Shape[0], idx.Shape[1], nv}, F32: logits}, nil
}

// topRow returns the indices of the k largest values of row, largest
// first, a tie keeping the lower index first.
func topRow(row []float32, k int) []int {
	best := make([]int, 0, k)
	for i, v := range row {
		if len(best) == k && !(v > row[best[k-1]]) {
			continue
		}
		if len(best) < k {
			best = append(best, i)
		} else {
			best[k-1] = i
		}
		for j := len(best) - 1; j > 0 && row[best[j]] > row[best[j-1]]; j-- {
			best[j], best[j-1] = best[j-1], best[j]
		}
	}
	return best
}
