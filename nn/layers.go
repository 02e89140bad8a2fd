package nn

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/kernels"
)

// kaimingUniform returns a parameter drawn from U(-1/sqrt(fanIn),
// 1/sqrt(fanIn)), which is what PyTorch's default initialisation of Linear
// and Conv weights (kaiming_uniform_ with a = sqrt(5)) and biases amounts
// to. With a nil rng the parameter is zero (for weights loaded right after).
func kaimingUniform(be kernels.Backend, rng *RNG, fanIn int, shape ...int) *Tensor {
	if rng == nil {
		return Zeros(be, shape...).SetRequiresGrad(true)
	}
	bound := float32(0)
	if fanIn > 0 {
		bound = float32(1 / math.Sqrt(float64(fanIn)))
	}
	return Uniform(be, rng, -bound, bound, shape...).SetRequiresGrad(true)
}

// normalParam returns a parameter drawn from N(0, std²), zero for a nil rng.
func normalParam(be kernels.Backend, rng *RNG, std float32, shape ...int) *Tensor {
	if rng == nil {
		return Zeros(be, shape...).SetRequiresGrad(true)
	}
	return Normal(be, rng, 0, std, shape...).SetRequiresGrad(true)
}

// Linear is torch.nn.Linear: y = x W^T + b with Weight [out, in] and an
// optional Bias [out].
type Linear struct {
	leaf
	Weight, Bias *Tensor
}

// NewLinear returns a Linear layer on be (the default backend when nil)
// initialised as PyTorch does: weight and bias uniform in ±1/sqrt(in),
// drawn from rng; with a nil rng they are zero. Parameters require
// gradients.
func NewLinear(be kernels.Backend, in, out int, bias bool, rng *RNG) *Linear {
	be = orDefault(be)
	l := &Linear{Weight: kaimingUniform(be, rng, in, out, in)}
	if bias {
		l.Bias = kaimingUniform(be, rng, in, out)
	}
	return l
}

// Forward returns LinearOp(x, Weight, Bias).
func (l *Linear) Forward(x *Tensor) *Tensor { return LinearOp(x, l.Weight, l.Bias) }

// Params returns "weight" and, when present, "bias".
func (l *Linear) Params() []Param { return weightBias(l.Weight, l.Bias) }

// InFeatures returns the input width.
func (l *Linear) InFeatures() int { return l.Weight.shape[1] }

// OutFeatures returns the output width.
func (l *Linear) OutFeatures() int { return l.Weight.shape[0] }

func weightBias(w, b *Tensor) []Param {
	ps := []Param{{Name: "weight", T: w}}
	if b != nil {
		ps = append(ps, Param{Name: "bias", T: b})
	}
	return ps
}

// Conv1D is GPT-2's Conv1D (transformers.pytorch_utils.Conv1D), a linear
// layer whose Weight is stored [in, out]: y = x W + b.
type Conv1D struct {
	leaf
	Weight, Bias *Tensor
}

// NewConv1D returns a GPT-2 Conv1D layer initialised as HuggingFace does:
// weight normal with standard deviation 0.02 drawn from rng, bias zero
// (everything zero with a nil rng).
func NewConv1D(be kernels.Backend, in, out int, rng *RNG) *Conv1D {
	be = orDefault(be)
	return &Conv1D{Weight: normalParam(be, rng, 0.02, in, out), Bias: Zeros(be, out).SetRequiresGrad(true)}
}

// Forward returns LinearInOut(x, Weight, Bias).
func (l *Conv1D) Forward(x *Tensor) *Tensor { return LinearInOut(x, l.Weight, l.Bias) }

// Params returns "weight" and, when present, "bias".
func (l *Conv1D) Params() []Param { return weightBias(l.Weight, l.Bias) }

// InFeatures returns the input width.
func (l *Conv1D) InFeatures() int { return l.Weight.shape[0] }

// OutFeatures returns the output width.
func (l *Conv1D) OutFeatures() int { return l.Weight.shape[1] }

// Embedding is torch.nn.Embedding: a table Weight [num, dim] of rows looked
// up by id.
type Embedding struct {
	leaf
	Weight *Tensor
}

// NewEmbedding returns an Embedding initialised as PyTorch does: standard
// normal entries drawn from rng (zero with a nil rng).
func NewEmbedding(be kernels.Backend, num, dim int, rng *RNG) *Embedding {
	return &Embedding{Weight: normalParam(orDefault(be), rng, 1, num, dim)}
}

// Lookup returns the rows for ids, shaped shape+[dim] (shape defaults to
// [len(ids)]). It panics on an id outside the table; use LookupChecked for
// ids that come from users.
func (e *Embedding) Lookup(ids []int32, shape ...int) *Tensor {
	return EmbeddingOp(e.Weight, ids, shape...)
}

// LookupChecked is Lookup returning an error for a bad id or shape.
func (e *Embedding) LookupChecked(ids []int32, shape ...int) (*Tensor, error) {
	return EmbeddingOpChecked(e.Weight, ids, shape...)
}

// Params returns "weight".
func (e *Embedding) Params() []Param { return []Param{{Name: "weight", T: e.Weight}} }

// NumEmbeddings returns the number of rows.
func (e *Embedding) NumEmbeddings() int { return e.Weight.shape[0] }

// EmbeddingDim returns the width of a row.
func (e *Embedding) EmbeddingDim() int { return e.Weight.shape[1] }

// Conv1d is torch.nn.Conv1d: Weight [out, in/groups, k], optional Bias [out].
type Conv1d struct {
	leaf
	Weight, Bias *Tensor
	Opts         ConvOptions
}

// NewConv1d returns a Conv1d layer initialised as PyTorch does (uniform in
// ±1/sqrt(in/groups*k), zero with a nil rng).
func NewConv1d(be kernels.Backend, in, out, k int, o ConvOptions, bias bool, rng *RNG) *Conv1d {
	be = orDefault(be)
	o = o.normalised()
	fan := in / o.Groups * k
	c := &Conv1d{Weight: kaimingUniform(be, rng, fan, out, in/o.Groups, k), Opts: o}
	if bias {
		c.Bias = kaimingUniform(be, rng, fan, out)
	}
	return c
}

// Forward returns Conv1dOp(x, Weight, Bias, Opts).
func (c *Conv1d) Forward(x *Tensor) *Tensor { return Conv1dOp(x, c.Weight, c.Bias, c.Opts) }

// Params returns "weight" and, when present, "bias".
func (c *Conv1d) Params() []Param { return weightBias(c.Weight, c.Bias) }

// Conv2d is torch.nn.Conv2d: Weight [out, in/groups, kh, kw], optional
// Bias [out].
type Conv2d struct {
	leaf
	Weight, Bias *Tensor
	Opts         ConvOptions
}

// NewConv2d returns a Conv2d layer initialised as PyTorch does (uniform in
// ±1/sqrt(in/groups*kh*kw), zero with a nil rng).
func NewConv2d(be kernels.Backend, in, out, kh, kw int, o ConvOptions, bias bool, rng *RNG) *Conv2d {
	be = orDefault(be)
	o = o.normalised()
	fan := in / o.Groups * kh * kw
	c := &Conv2d{Weight: kaimingUniform(be, rng, fan, out, in/o.Groups, kh, kw), Opts: o}
	if bias {
		c.Bias = kaimingUniform(be, rng, fan, out)
	}
	return c
}

// Forward returns Conv2dOp(x, Weight, Bias, Opts).
func (c *Conv2d) Forward(x *Tensor) *Tensor { return Conv2dOp(x, c.Weight, c.Bias, c.Opts) }

// Params returns "weight" and, when present, "bias".
func (c *Conv2d) Params() []Param { return weightBias(c.Weight, c.Bias) }

// LayerNorm is torch.nn.LayerNorm over the last axis, with optional Weight
// and Bias [dim].
type LayerNorm struct {
	leaf
	Weight, Bias *Tensor
	Eps          float32
}

// NewLayerNorm returns a LayerNorm with weight one and bias zero.
func NewLayerNorm(be kernels.Backend, dim int, eps float32) *LayerNorm {
	be = orDefault(be)
	return &LayerNorm{Weight: Ones(be, dim).SetRequiresGrad(true), Bias: Zeros(be, dim).SetRequiresGrad(true), Eps: eps}
}

// Forward returns LayerNormOp(x, Weight, Bias, Eps).
func (l *LayerNorm) Forward(x *Tensor) *Tensor { return LayerNormOp(x, l.Weight, l.Bias, l.Eps) }

// Params returns "weight" and "bias" when present.
func (l *LayerNorm) Params() []Param {
	var ps []Param
	if l.Weight != nil {
		ps = append(ps, Param{Name: "weight", T: l.Weight})
	}
	if l.Bias != nil {
		ps = append(ps, Param{Name: "bias", T: l.Bias})
	}
	return ps
}

// RMSNorm is root-mean-square normalisation over the last axis (LLaMA's
// LlamaRMSNorm) with an optional Weight [dim].
type RMSNorm struct {
	leaf
	Weight *Tensor
	Eps    float32
}

// NewRMSNorm returns an RMSNorm with weight one.
func NewRMSNorm(be kernels.Backend, dim int, eps float32) *RMSNorm {
	return &RMSNorm{Weight: Ones(orDefault(be), dim).SetRequiresGrad(true), Eps: eps}
}

// Forward returns RMSNormOp(x, Weight, Eps).
func (l *RMSNorm) Forward(x *Tensor) *Tensor { return RMSNormOp(x, l.Weight, l.Eps) }

// Params returns "weight" when present.
func (l *RMSNorm) Params() []Param {
	if l.Weight == nil {
		return nil
	}
	return []Param{{Name: "weight", T: l.Weight}}
}

// Dropout is torch.nn.Dropout: in training mode it zeroes elements with
// probability P (scaling the rest by 1/(1-P)) using masks drawn from its
// RNG; in evaluation mode, the default, it is the identity.
type Dropout struct {
	leaf
	P        float32
	rng      *RNG
	training bool
}

// NewDropout returns a Dropout layer in evaluation mode drawing from rng
// (a nil rng makes it the identity in both modes).
func NewDropout(p float32, rng *RNG) *Dropout { return &Dropout{P: p, rng: rng} }

// Forward applies dropout in training mode and returns x otherwise.
func (d *Dropout) Forward(x *Tensor) *Tensor {
	if !d.training || d.P <= 0 {
		return x
	}
	return DropoutOp(x, d.P, d.rng)
}

// Params returns nil.
func (d *Dropout) Params() []Param { return nil }

// SetTraining switches between training and evaluation mode.
func (d *Dropout) SetTraining(on bool) { d.training = on }

// Training reports whether the layer is in training mode.
func (d *Dropout) Training() bool { return d.training }

// RNG returns the layer's random stream.
func (d *Dropout) RNG() *RNG { return d.rng }

// Activation is a parameter-free layer applying an elementwise function.
type Activation struct {
	leaf
	// Name is the HuggingFace name it was made from ("silu", "gelu", ...).
	Name string
	fn   func(*Tensor) *Tensor
}

// activations maps HuggingFace's hidden_act names to operations.
var activations = map[string]func(*Tensor) *Tensor{
	"relu":              ReLU,
	"gelu":              GELU,
	"gelu_new":          GELUTanh,
	"gelu_pytorch_tanh": GELUTanh,
	"gelu_fast":         GELUTanh,
	"silu":              SiLU,
	"swish":             SiLU,
	"tanh":              Tanh,
	"sigmoid":           Sigmoid,
	"linear":            func(x *Tensor) *Tensor { return x },
	"identity":          func(x *Tensor) *Tensor { return x },
}

// NewActivation returns the activation HuggingFace configs call name
// (relu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, silu, swish, tanh,
// sigmoid, linear, identity).
func NewActivation(name string) (*Activation, error) {
	fn, ok := activations[name]
	if !ok {
		return nil, fmt.Errorf("nn: unknown activation %q", name)
	}
	return &Activation{Name: name, fn: fn}, nil
}

// Forward applies the activation. It panics for an unknown Name.
func (a *Activation) Forward(x *Tensor) *Tensor {
	if a.fn == nil {
		fn, ok := activations[a.Name]
		if !ok {
			panic(fmt.Sprintf("nn: unknown activation %q", a.Name))
		}
		return fn(x)
	}
	return a.fn(x)
}

// Params returns nil.
func (a *Activation) Params() []Param { return nil }

// Identity is a layer that returns its input.
type Identity struct{ leaf }

// Forward returns x.
func (Identity) Forward(x *Tensor) *Tensor { return x }

// Params returns nil.
func (Identity) Params() []Param { return nil }
