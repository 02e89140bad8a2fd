package ptuning

import (
	"fmt"
	"math"
	"strconv"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// LSTM is PyTorch's torch.nn.LSTM with batch_first=True, composed of nn
// operations (so it trains and runs on every backend): NumLayers stacked
// layers, each optionally bidirectional, gates in PyTorch's order input,
// forget, cell, output:
//
//	g = x W_ih^T + b_ih + h W_hh^T + b_hh = [i | f | g | o]
//	c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(c')
//
// starting from zero states. The output of a bidirectional layer is the
// forward and backward hidden states concatenated; between layers (not
// after the last) dropout applies in training mode. Parameters carry
// PyTorch's names: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
// bias_hh_l{k}, with the suffix "_reverse" for the backward direction.
//
// Forward in evaluation mode is safe for concurrent use; training is not.
type LSTM struct {
	// InputSize and HiddenSize are the widths of x and of h.
	InputSize, HiddenSize int
	// Layers holds each layer's directions (forward, then backward).
	Layers [][]*LSTMCell
	// Dropout is the dropout probability between layers.
	Dropout float32

	training bool
	rng      *nn.RNG
}

// LSTMCell holds one direction of one layer: W_ih [4h, in], W_hh [4h, h],
// b_ih and b_hh [4h].
type LSTMCell struct {
	WeightIH, WeightHH, BiasIH, BiasHH *nn.Tensor
}

// NewLSTM returns an LSTM initialised as PyTorch does: every parameter
// uniform in [-1/sqrt(hidden), 1/sqrt(hidden)), drawn from rng in
// parameter order. The dropout stream is seeded with seed.
func NewLSTM(be kernels.Backend, input, hidden, layers int, bidirectional bool, dropout float32, rng *nn.RNG, seed uint64) (*LSTM, error) {
	if input <= 0 || hidden <= 0 || layers <= 0 {
		return nil, fmt.Errorf("LSTM sizes must be positive: input %d, hidden %d, layers %d", input, hidden, layers)
	}
	if dropout < 0 || dropout >= 1 {
		return nil, fmt.Errorf("LSTM dropout must be in [0, 1), got %v", dropout)
	}
	dirs := 1
	if bidirectional {
		dirs = 2
	}
	k := float32(1 / math.Sqrt(float64(hidden)))
	l := &LSTM{InputSize: input, HiddenSize: hidden, Dropout: dropout, rng: nn.NewRNG(seed)}
	for layer := range layers {
		in := input
		if layer > 0 {
			in = hidden * dirs
		}
		var cells []*LSTMCell
		for range dirs {
			cells = append(cells, &LSTMCell{
				WeightIH: nn.Uniform(be, rng, -k, k, 4*hidden, in).SetRequiresGrad(true),
				WeightHH: nn.Uniform(be, rng, -k, k, 4*hidden, hidden).SetRequiresGrad(true),
				BiasIH:   nn.Uniform(be, rng, -k, k, 4*hidden).SetRequiresGrad(true),
				BiasHH:   nn.Uniform(be, rng, -k, k, 4*hidden).SetRequiresGrad(true),
			})
		}
		l.Layers = append(l.Layers, cells)
	}
	return l, nil
}

// Children returns nil: the LSTM owns its parameters.
func (l *LSTM) Children() []nn.Child { return nil }

// Params returns the parameters in PyTorch's order and names.
func (l *LSTM) Params() []nn.Param {
	var out []nn.Param
	for k, cells := range l.Layers {
		for d, c := range cells {
			suffix := "_l" + strconv.Itoa(k)
			if d == 1 {
				suffix += "_reverse"
			}
			out = append(out,
				nn.Param{Name: "weight_ih" + suffix, T: c.WeightIH},
				nn.Param{Name: "weight_hh" + suffix, T: c.WeightHH},
				nn.Param{Name: "bias_ih" + suffix, T: c.BiasIH},
				nn.Param{Name: "bias_hh" + suffix, T: c.BiasHH})
		}
	}
	return out
}

// SetChild returns an error: the LSTM has no children.
func (l *LSTM) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("ptuning: LSTM has no child %q", name)
}

// SetTraining switches dropout between layers on or off.
func (l *LSTM) SetTraining(on bool) { l.training = on }

// Forward runs the LSTM on x [batch, seq, input] and returns the last
// layer's hidden states [batch, seq, directions*hidden] (PyTorch's
// output[0]).
func (l *LSTM) Forward(x *nn.Tensor) *nn.Tensor {
	if x.Rank() != 3 || x.Dim(2) != l.InputSize {
		panic(fmt.Sprintf("ptuning: LSTM.Forward: input shape %v, want [batch, seq, %d]", x.Shape(), l.InputSize))
	}
	for k, cells := range l.Layers {
		outs := make([]*nn.Tensor, len(cells))
		for d, c := range cells {
			outs[d] = l.direction(x, c, d == 1)
		}
		x = outs[0]
		if len(outs) > 1 {
			x = nn.Concat(2, outs...)
		}
		if l.training && l.Dropout > 0 && k < len(l.Layers)-1 {
			x = nn.DropoutOp(x, l.Dropout, l.rng)
		}
	}
	return x
}

// direction runs one cell over the sequence, forwards or backwards, and
// returns its hidden states in sequence order [batch, seq, hidden].
func (l *LSTM) direction(x *nn.Tensor, c *LSTMCell, reverse bool) *nn.Tensor {
	batch, seq, hid := x.Dim(0), x.Dim(1), l.HiddenSize
	// The input projection of every step at once: [batch, seq, 4h].
	xp := nn.Add(nn.LinearOp(x, c.WeightIH, c.BiasIH), c.BiasHH)
	steps := make([]*nn.Tensor, seq)
	var h, cell *nn.Tensor
	for s := range seq {
		t := s
		if reverse {
			t = seq - 1 - s
		}
		g := nn.Slice(xp, 1, t, t+1).Reshape(batch, 4*hid)
		if h != nil {
			g = nn.Add(g, nn.LinearOp(h, c.WeightHH, nil))
		}
		in := nn.Sigmoid(nn.Slice(g, 1, 0, hid))
		cand := nn.Tanh(nn.Slice(g, 1, 2*hid, 3*hid))
		out := nn.Sigmoid(nn.Slice(g, 1, 3*hid, 4*hid))
		if cell == nil {
			cell = nn.Mul(in, cand)
		} else {
			forget := nn.Sigmoid(nn.Slice(g, 1, hid, 2*hid))
			cell = nn.Add(nn.Mul(forget, cell), nn.Mul(in, cand))
		}
		h = nn.Mul(out, nn.Tanh(cell))
		steps[t] = h.Reshape(batch, 1, hid)
	}
	if seq == 1 {
		return steps[0]
	}
	return nn.Concat(1, steps...)
}
