package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
)

// LoftQ (https://arxiv.org/abs/2310.08659) quantises the base weight and
// initialises A and B from the SVD of the quantisation error, alternating
// loftq_iter times. PEFT quantises with bitsandbytes: NF4 in blocks of 64
// with a float32 absmax per block (loftq_bits 4), or int8 per output row
// with absmax/127 steps (loftq_bits 8). gopeft reproduces both formats on
// the host and replaces the base weight by the dequantised weight, as PEFT
// does; it runs once, when the adapter is created (Linear layers only, as in
// PEFT).

// nf4Levels are the 16 NormalFloat4 levels of QLoRA / bitsandbytes.
var nf4Levels = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// nf4Block is bitsandbytes' default block size for 4-bit quantisation.
const nf4Block = 64

// loftqOptions is loftq_config.
type loftqOptions struct {
	Bits int `json:"loftq_bits"`
	Iter int `json:"loftq_iter"`
}

// parseLoftQ reads loftq_config with PEFT's defaults (4 bits, 1 iteration).
func parseLoftQ(raw json.RawMessage) (loftqOptions, error) {
	o := loftqOptions{Bits: 4, Iter: 1}
	if isDefaultRaw(raw) {
		return o, fmt.Errorf("lora: loftq_config must be set when init_lora_weights is \"loftq\"")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&o); err != nil {
		return o, fmt.Errorf("lora: loftq_config: %w", err)
	}
	if o.Bits != 4 && o.Bits != 8 {
		return o, fmt.Errorf("lora: loftq_config: loftq_bits must be 4 (nf4) or 8 (int8), got %d", o.Bits)
	}
	if o.Iter <= 0 {
		return o, fmt.Errorf("lora: loftq_config: loftq_iter must be positive, got %d", o.Iter)
	}
	return o, nil
}

// nf4RoundTrip quantises w (flattened, in blocks of 64) to NF4 and back.
func nf4RoundTrip(w []float32) []float32 {
	out := make([]float32, len(w))
	for start := 0; start < len(w); start += nf4Block {
		end := min(start+nf4Block, len(w))
		var absmax float32
		for _, v := range w[start:end] {
			absmax = max(absmax, float32(math.Abs(float64(v))))
		}
		if absmax == 0 {
			continue
		}
		inv := 1 / absmax
		for i := start; i < end; i++ {
			out[i] = nf4Levels[nearestNF4(w[i]*inv)] * absmax
		}
	}
	return out
}

// nearestNF4 returns the index of the NF4 level nearest to x (ties go to
// the lower level, as bitsandbytes' strict comparisons do).
func nearestNF4(x float32) int {
	lo, hi := 0, len(nf4Levels)-1
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if x > nf4Levels[mid] {
			lo = mid
		} else {
			hi = mid
		}
	}
	if x > (nf4Levels[lo]+nf4Levels[hi])/2 {
		return hi
	}
	return lo
}

// int8RoundTrip quantises each row of w [rows, cols] to int8 with step
// absmax/127 (round half to even) and back.
func int8RoundTrip(w []float32, rows, cols int) []float32 {
	out := make([]float32, len(w))
	for r := range rows {
		row := w[r*cols : (r+1)*cols]
		var absmax float32
		for _, v := range row {
			absmax = max(absmax, float32(math.Abs(float64(v))))
		}
		if absmax == 0 {
			continue
		}
		f := 127 / absmax
		for j, v := range row {
			q := float32(math.RoundToEven(float64(v * f)))
			out[r*cols+j] = q * absmax * (1.0 / 127)
		}
	}
	return out
}

// loftqInit runs LoftQ on a Linear layer's weight W [out, in]: repeatedly
// quantise the residual, take Q = dequant(quant(W - L R)) and L R the rank-r
// SVD truncation of W - Q; then A = R, B = L and W becomes Q. As in PEFT,
// the scaling is not applied to the factors.
func (c *core) loftqInit(name string, a *adapter, raw json.RawMessage) error {
	o, err := parseLoftQ(raw)
	if err != nil {
		return err
	}
	out, in := c.out, c.in
	if a.r > min(out, in) {
		return fmt.Errorf("adapter %q: LoftQ needs r <= min(out, in) = %d, got r = %d", name, min(out, in), a.r)
	}
	w := c.weight.Data()
	res := w
	var q []float32
	var lm, rm *mat.Dense
	for i := range o.Iter {
		if o.Bits == 4 {
			q = nf4RoundTrip(res)
		} else {
			q = int8RoundTrip(res, out, in)
		}
		diff := make([]float64, len(w))
		for j := range w {
			diff[j] = float64(w[j]) - float64(q[j])
		}
		var svd mat.SVD
		if !svd.Factorize(mat.NewDense(out, in, diff), mat.SVDThin) {
			return fmt.Errorf("adapter %q: LoftQ: SVD did not converge", name)
		}
		var u, v mat.Dense
		svd.UTo(&u)
		svd.VTo(&v)
		s := svd.Values(nil)
		lm, rm = mat.NewDense(out, a.r, nil), mat.NewDense(a.r, in, nil)
		for k := range a.r {
			root := math.Sqrt(s[k])
			for row := range out {
				lm.Set(row, k, u.At(row, k)*root)
			}
			for j := range in {
				rm.Set(k, j, root*v.At(j, k))
			}
		}
		if i+1 == o.Iter {
			break
		}
		var lr mat.Dense
		lr.Mul(lm, rm)
		res = make([]float32, len(w))
		for j := range w {
			res[j] = float32(float64(w[j]) - lr.RawMatrix().Data[j])
		}
	}
	a.a.CopyFrom(toTensor(rm, c.weight))
	a.b.CopyFrom(toTensor(lm, c.weight))
	c.weight.CopyFrom(nn.New(c.weight.Backend(), q, c.weight.Shape()...))
	return nil
}
