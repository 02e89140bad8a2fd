package prefixtuning_test

import (
	"math"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
)

// ref64 is a float64 LLaMA forward pass written from HuggingFace's
// definition in straight loops, with prefix tuning's past keys and values
// taken from the prefix encoder's output by PEFT's reshape
// (view(B, T, 2L, H, D/H).permute(2, 0, 3, 1, 4).split(2)), done here by
// index arithmetic. The real tokens sit at rotary positions T.., after the
// prefix, which is attended to without any rotary embedding.
type ref64 struct {
	cfg llama.Config
	w   map[string][]float64
}

func newRef64(m *llama.Model) *ref64 {
	r := &ref64{cfg: m.Config(), w: map[string][]float64{}}
	for name, t := range nn.StateDict(m) {
		r.w[name] = to64(t.Data())
	}
	return r
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// linear returns x [rows, in] W^T for w [out, in].
func linear(x []float64, rows int, w []float64, out, in int) []float64 {
	y := make([]float64, rows*out)
	for r := range rows {
		for o := range out {
			s := 0.0
			for i := range in {
				s += x[r*in+i] * w[o*in+i]
			}
			y[r*out+o] = s
		}
	}
	return y
}

func rms(x []float64, rows, d int, w []float64, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := range rows {
		ss := 0.0
		for i := range d {
			ss += x[r*d+i] * x[r*d+i]
		}
		inv := 1 / math.Sqrt(ss/float64(d)+eps)
		for i := range d {
			y[r*d+i] = w[i] * x[r*d+i] * inv
		}
	}
	return y
}

// rope rotates one head vector v (length d) for position p in place.
func rope(v []float64, p int, theta float64) {
	d := len(v)
	half := d / 2
	out := make([]float64, d)
	for i := range d {
		j := i % half
		ang := float64(p) / math.Pow(theta, float64(2*j)/float64(d))
		var rot float64
		if i < half {
			rot = -v[i+half]
		} else {
			rot = v[i-half]
		}
		out[i] = v[i]*math.Cos(ang) + rot*math.Sin(ang)
	}
	copy(v, out)
}

// forward returns the logits [B, S, vocab] of ids [B, S] after the prefix
// enc [B, T, L*2*kvDim] (enc nil: no prefix).
func (r *ref64) forward(ids []int32, B, S int, enc []float64, T int) []float64 {
	c := r.cfg
	hd, nh, nkv := c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads
	d := hd / nh
	kvDim := nkv * d
	if enc == nil {
		T = 0
	}
	h := make([]float64, B*S*hd)
	emb := r.w["model.embed_tokens.weight"]
	for i, id := range ids {
		copy(h[i*hd:(i+1)*hd], emb[int(id)*hd:(int(id)+1)*hd])
	}
	for l := range c.NumHiddenLayers {
		pre := "model.layers." + itoa(l) + "."
		x := rms(h, B*S, hd, r.w[pre+"input_layernorm.weight"], c.RMSNormEps)
		q := linear(x, B*S, r.w[pre+"self_attn.q_proj.weight"], nh*d, hd)
		k := linear(x, B*S, r.w[pre+"self_attn.k_proj.weight"], kvDim, hd)
		v := linear(x, B*S, r.w[pre+"self_attn.v_proj.weight"], kvDim, hd)
		for b := range B {
			for s := range S {
				for hh := range nh {
					rope(q[(b*S+s)*nh*d+hh*d:][:d], T+s, c.RopeTheta)
				}
				for hh := range nkv {
					rope(k[(b*S+s)*kvDim+hh*d:][:d], T+s, c.RopeTheta)
				}
			}
		}
		attn := make([]float64, B*S*nh*d)
		for b := range B {
			for hh := range nh {
				g := hh / (nh / nkv)
				for s := range S {
					qv := q[(b*S+s)*nh*d+hh*d:][:d]
					var keys, vals [][]float64
					for p := range T {
						base := (b*T+p)*c.NumHiddenLayers*2*kvDim + g*d
						keys = append(keys, enc[base+(2*l)*kvDim:][:d])
						vals = append(vals, enc[base+(2*l+1)*kvDim:][:d])
					}
					for s2 := 0; s2 <= s; s2++ {
						keys = append(keys, k[(b*S+s2)*kvDim+g*d:][:d])
						vals = append(vals, v[(b*S+s2)*kvDim+g*d:][:d])
					}
					scores := make([]float64, len(keys))
					mx := math.Inf(-1)
					for i, kv := range keys {
						dot := 0.0
						for j := range d {
							dot += qv[j] * kv[j]
						}
						scores[i] = dot / math.Sqrt(float64(d))
						mx = math.Max(mx, scores[i])
					}
					z := 0.0
					for i := range scores {
						scores[i] = math.Exp(scores[i] - mx)
						z += scores[i]
					}
					out := attn[(b*S+s)*nh*d+hh*d:][:d]
					for i, vv := range vals {
						for j := range d {
							out[j] += scores[i] / z * vv[j]
						}
					}
				}
			}
		}
		o := linear(attn, B*S, r.w[pre+"self_attn.o_proj.weight"], hd, nh*d)
		for i := range h {
			h[i] += o[i]
		}
		x = rms(h, B*S, hd, r.w[pre+"post_attention_layernorm.weight"], c.RMSNormEps)
		in := c.IntermediateSize
		gate := linear(x, B*S, r.w[pre+"mlp.gate_proj.weight"], in, hd)
		up := linear(x, B*S, r.w[pre+"mlp.up_proj.weight"], in, hd)
		for i := range gate {
			gate[i] = gate[i] / (1 + math.Exp(-gate[i])) * up[i]
		}
		down := linear(gate, B*S, r.w[pre+"mlp.down_proj.weight"], hd, in)
		for i := range h {
			h[i] += down[i]
		}
	}
	x := rms(h, B*S, hd, r.w["model.norm.weight"], c.RMSNormEps)
	return linear(x, B*S, r.w["lm_head.weight"], c.VocabSize, hd)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
