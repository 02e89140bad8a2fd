package llama

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/nn"
)

// ref64 is an independent float64 implementation of the Llama forward pass
// (straight loops, no nn), used as the reference the model is checked
// against.
type ref64 struct {
	cfg Config
	w   map[string][]float64
}

func newRef64(m *Model) *ref64 {
	r := &ref64{cfg: m.cfg, w: map[string][]float64{}}
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

// linear computes x [rows, in] W^T for w [out, in].
func linear64(x []float64, rows int, w []float64, out, in int) []float64 {
	y := make([]float64, rows*out)
	for r := 0; r < rows; r++ {
		for o := 0; o < out; o++ {
			s := 0.0
			for i := 0; i < in; i++ {
				s += x[r*in+i] * w[o*in+i]
			}
			y[r*out+o] = s
		}
	}
	return y
}

func rms64(x []float64, rows, d int, w []float64, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < rows; r++ {
		s := 0.0
		for i := 0; i < d; i++ {
			s += x[r*d+i] * x[r*d+i]
		}
		inv := 1 / math.Sqrt(s/float64(d)+eps)
		for i := 0; i < d; i++ {
			y[r*d+i] = w[i] * x[r*d+i] * inv
		}
	}
	return y
}

// rope64 rotates v (one head, length d) in place for position p.
func rope64(v []float64, p int, theta float64) {
	d := len(v)
	o := append([]float64(nil), v...)
	for i := 0; i < d; i++ {
		j := i % (d / 2)
		ang := float64(p) / math.Pow(theta, float64(2*j)/float64(d))
		var rh float64
		if i < d/2 {
			rh = -o[i+d/2]
		} else {
			rh = o[i-d/2]
		}
		v[i] = o[i]*math.Cos(ang) + rh*math.Sin(ang)
	}
}

// refPast is one layer's prefix keys and values for the reference:
// [batch][kvHead][pos][d].
type refPast struct{ k, v [][][][]float64 }

// forward returns logits [B*S*V] for embeddings h [B*S*H]. past (may be
// nil) holds P prefix positions per layer; pad (may be nil) is [B, P+S].
func (r *ref64) forward(h []float64, B, S int, past []refPast, pad []int32) []float64 {
	c := r.cfg
	H, NH, KVH, D, I, V := c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize, c.VocabSize
	R := B * S
	h = append([]float64(nil), h...)
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		x := rms64(h, R, H, r.w[p+"input_layernorm.weight"], c.RMSNormEps)
		q := linear64(x, R, r.w[p+"self_attn.q_proj.weight"], NH*D, H)
		k := linear64(x, R, r.w[p+"self_attn.k_proj.weight"], KVH*D, H)
		v := linear64(x, R, r.w[p+"self_attn.v_proj.weight"], KVH*D, H)
		P := 0
		if past != nil {
			P = len(past[l].k[0][0])
		}
		for b := 0; b < B; b++ {
			for s := 0; s < S; s++ {
				for hh := 0; hh < NH; hh++ {
					rope64(q[(b*S+s)*NH*D+hh*D:][:D], P+s, c.RopeTheta)
				}
				for hh := 0; hh < KVH; hh++ {
					rope64(k[(b*S+s)*KVH*D+hh*D:][:D], P+s, c.RopeTheta)
				}
			}
		}
		key := func(b, kh, j int) []float64 {
			if j < P {
				return past[l].k[b][kh][j]
			}
			return k[(b*S+j-P)*KVH*D+kh*D:][:D]
		}
		val := func(b, kh, j int) []float64 {
			if j < P {
				return past[l].v[b][kh][j]
			}
			return v[(b*S+j-P)*KVH*D+kh*D:][:D]
		}
		att := make([]float64, R*NH*D)
		for b := 0; b < B; b++ {
			for hh := 0; hh < NH; hh++ {
				kh := hh / (NH / KVH)
				for i := 0; i < S; i++ {
					var js []int
					for j := 0; j <= P+i; j++ {
						if pad == nil || pad[b*(P+S)+j] != 0 {
							js = append(js, j)
						}
					}
					sc := make([]float64, len(js))
					mx := math.Inf(-1)
					qi := q[(b*S+i)*NH*D+hh*D:][:D]
					for n, j := range js {
						kj := key(b, kh, j)
						s := 0.0
						for t := 0; t < D; t++ {
							s += qi[t] * kj[t]
						}
						sc[n] = s / math.Sqrt(float64(D))
						mx = math.Max(mx, sc[n])
					}
					z := 0.0
					for n := range sc {
						sc[n] = math.Exp(sc[n] - mx)
						z += sc[n]
					}
					for n, j := range js {
						vj := val(b, kh, j)
						for t := 0; t < D; t++ {
							att[(b*S+i)*NH*D+hh*D+t] += sc[n] / z * vj[t]
						}
					}
				}
			}
		}
		o := linear64(att, R, r.w[p+"self_attn.o_proj.weight"], H, NH*D)
		for i := range h {
			h[i] += o[i]
		}
		x = rms64(h, R, H, r.w[p+"post_attention_layernorm.weight"], c.RMSNormEps)
		g := linear64(x, R, r.w[p+"mlp.gate_proj.weight"], I, H)
		u := linear64(x, R, r.w[p+"mlp.up_proj.weight"], I, H)
		for i := range g {
			g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		d := linear64(g, R, r.w[p+"mlp.down_proj.weight"], H, I)
		for i := range h {
			h[i] += d[i]
		}
	}
	x := rms64(h, R, H, r.w["model.norm.weight"], c.RMSNormEps)
	head := r.w["lm_head.weight"]
	if head == nil {
		head = r.w["model.embed_tokens.weight"]
	}
	return linear64(x, R, head, V, H)
}

// embed64 looks ids up in the reference's embedding table.
func (r *ref64) embed(ids []int32) []float64 {
	H := r.cfg.HiddenSize
	e := r.w["model.embed_tokens.weight"]
	out := make([]float64, 0, len(ids)*H)
	for _, id := range ids {
		out = append(out, e[int(id)*H:int(id)*H+H]...)
	}
	return out
}
