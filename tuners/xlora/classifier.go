package xlora

import (
	"fmt"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
)

// Classifier is PEFT's XLoraClassifier: an MLP over the base model's last
// hidden state that predicts, per token, a scaling of every expert at every
// adapted layer. Its nn view is PEFT's: the child "layers" is a Sequential
// of Linear(hidden, size), ReLU, [Dropout], ... and the last
// Linear(size or hidden, n_experts [* n_layers]), so its tensors are
// "layers.<i>.weight" and "layers.<i>.bias".
//
// Not safe for concurrent use while training (dropout draws).
type Classifier struct {
	// Layers is the MLP.
	Layers *nn.Sequential
	// Experts is the number of LoRA experts (n_classes).
	Experts int
	// NLayers is the number of adapted layers that take scalings.
	NLayers int
	cfg     *Config
}

// NewClassifier builds the classifier for cfg with n experts over nLayers
// adapted layers, its Linear layers initialised as torch's nn.Linear (uniform
// in ±1/sqrt(fan_in)) from rng, on be (nil: the default backend).
func NewClassifier(be kernels.Backend, cfg *Config, n, nLayers int, rng *nn.RNG) (*Classifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if n <= 0 || nLayers <= 0 {
		return nil, fmt.Errorf("xlora: a classifier needs at least one expert and one adapted layer, got %d experts and %d layers", n, nLayers)
	}
	outs := n
	if cfg.LayerwiseScalings {
		outs = n * nLayers
	}
	h := cfg.Hidden()
	var layers []nn.Layer
	in := h
	if cfg.XLoRADepth > 1 {
		for i := range cfg.XLoRADepth - 1 {
			layers = append(layers, nn.NewLinear(be, in, cfg.XLoRASize, true, rng))
			relu, err := nn.NewActivation("relu")
			if err != nil {
				return nil, err
			}
			layers = append(layers, relu)
			if cfg.XLoRADropoutP > 0 {
				layers = append(layers, nn.NewDropout(float32(cfg.XLoRADropoutP), nn.NewRNG(rng.Seed()+uint64(i)+1)))
			}
			in = cfg.XLoRASize
		}
	}
	layers = append(layers, nn.NewLinear(be, in, outs, true, rng))
	return &Classifier{Layers: nn.NewSequential(layers...), Experts: n, NLayers: nLayers, cfg: cfg}, nil
}

// Children returns the MLP as "layers".
func (c *Classifier) Children() []nn.Child { return []nn.Child{{Name: "layers", Module: c.Layers}} }

// Params returns nil: the tensors live in the MLP.
func (c *Classifier) Params() []nn.Param { return nil }

// SetChild fails: the MLP is fixed by the config.
func (c *Classifier) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("xlora: cannot replace child %q of the classifier", name)
}

// Scalings maps the last hidden state [batch, seq, hidden_size] to the
// scalings [batch, seq, n_layers, n_experts]: the MLP's logits, broadcast
// to every layer unless layerwise_scalings, then (enable_softmax) a softmax
// over the experts of logits / softmax_temperature.
func (c *Classifier) Scalings(hidden *nn.Tensor) (*nn.Tensor, error) {
	if hidden.Rank() != 3 || hidden.Dim(2) != c.cfg.Hidden() {
		return nil, fmt.Errorf("xlora: hidden states of shape %v: want [batch, seq, %d] (hidden_size)", hidden.Shape(), c.cfg.Hidden())
	}
	b, s := hidden.Dim(0), hidden.Dim(1)
	logits := c.Layers.Forward(hidden)
	if c.cfg.LayerwiseScalings {
		logits = logits.Reshape(b, s, c.NLayers, c.Experts)
	} else {
		logits = nn.Expand(logits.Reshape(b, s, 1, c.Experts), b, s, c.NLayers, c.Experts)
	}
	if c.cfg.EnableSoftmax {
		logits = nn.Softmax(nn.Scale(logits, float32(1/c.cfg.SoftmaxTemperature)), -1)
	}
	return logits, nil
}

// LayerScalings returns the scalings of adapted layer i, [batch, seq,
// n_experts], as PEFT's get_maybe_topk_scalings: with top_k_lora, all but
// the k largest per token are zeroed (ties go to the lower expert number);
// with enable_softmax_topk, a softmax over the nonzero entries replaces them
// (zero entries stay zero).
//
// The top-k and nonzero masks are constants read from the values (no
// gradient flows through the selection, as in torch).
func LayerScalings(cfg *Config, scalings *nn.Tensor, i int) *nn.Tensor {
	s := nn.Slice(scalings, 2, i, i+1)
	b, t, n := s.Dim(0), s.Dim(1), s.Dim(3)
	s = s.Reshape(b, t, n)
	if cfg.TopKLoRA != nil {
		s = nn.Mul(s, topKMask(s, *cfg.TopKLoRA))
	}
	if cfg.EnableSoftmaxTopK {
		nz := nonzeroMask(s)
		// softmax over the masked entries: masked ones get -1e30 first.
		shifted := nn.Add(s, nn.Scale(nn.AddScalar(nz, -1), 1e30))
		s = nn.Mul(nn.Softmax(shifted, -1), nz)
	}
	return s
}

// topKMask returns a 0/1 mask of the k largest entries along the last axis.
func topKMask(s *nn.Tensor, k int) *nn.Tensor {
	v := s.Data()
	n := s.Dim(s.Rank() - 1)
	m := make([]float32, len(v))
	for row := 0; row < len(v); row += n {
		for range min(k, n) {
			best := -1
			for j := range n {
				if m[row+j] == 0 && (best < 0 || v[row+j] > v[row+best]) {
					best = j
				}
			}
			m[row+best] = 1
		}
	}
	return nn.New(s.Backend(), m, s.Shape()...)
}

// nonzeroMask returns 1 where s is nonzero, 0 elsewhere.
func nonzeroMask(s *nn.Tensor) *nn.Tensor {
	v := s.Data()
	m := make([]float32, len(v))
	for i, x := range v {
		if x != 0 {
			m[i] = 1
		}
	}
	return nn.New(s.Backend(), m, s.Shape()...)
}
