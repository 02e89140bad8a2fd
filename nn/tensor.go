package nn

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/kernels"
)

// Tensor is a contiguous row-major float32 array on a backend, with an
// optional autograd record. See the package documentation for the model.
type Tensor struct {
	be    kernels.Backend
	buf   kernels.Buffer
	shape []int
	// base is the tensor whose allocation t shares (Reshape, Detach, leading
	// axis Slice), nil when t owns its buffer.
	base *Tensor

	requiresGrad bool
	grad         *Tensor
	gradOwned    bool // grad was allocated by Backward and may be freed
	node         *node
}

// newTensor allocates a zero-filled tensor of the given shape on be.
func newTensor(be kernels.Backend, shape []int) *Tensor {
	return &Tensor{be: be, buf: be.Alloc(numel(shape)), shape: shape}
}

// viewOf returns a tensor sharing buf with src's allocation.
func viewOf(src *Tensor, buf kernels.Buffer, shape []int) *Tensor {
	return &Tensor{be: src.be, buf: buf, shape: shape, base: src.storage()}
}

// storage returns the tensor that owns t's allocation.
func (t *Tensor) storage() *Tensor {
	if t.base != nil {
		return t.base
	}
	return t
}

func checkShape(op string, shape []int) []int {
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("nn.%s: negative dimension in shape %v", op, shape))
		}
	}
	return slices.Clone(shape)
}

// New returns a tensor on be (the default backend when nil) holding a copy
// of data with the given shape (the shape of a vector when none is given).
func New(be kernels.Backend, data []float32, shape ...int) *Tensor {
	be = orDefault(be)
	if len(shape) == 0 {
		shape = []int{len(data)}
	}
	shape = checkShape("New", shape)
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("nn.New: %d values for shape %v", len(data), shape))
	}
	return &Tensor{be: be, buf: be.FromHost(data), shape: shape}
}

// FromHost returns a tensor on the default backend holding data with the
// given shape. On a host backend the tensor uses data's memory without
// copying (writes through either are visible in both); on a device backend
// it holds a copy.
func FromHost(data []float32, shape ...int) *Tensor {
	be := DefaultBackend()
	if len(shape) == 0 {
		shape = []int{len(data)}
	}
	shape = checkShape("FromHost", shape)
	if numel(shape) != len(data) {
		panic(fmt.Sprintf("nn.FromHost: %d values for shape %v", len(data), shape))
	}
	buf, ok := be.Wrap(data)
	if !ok {
		buf = be.FromHost(data)
	}
	return &Tensor{be: be, buf: buf, shape: shape}
}

// Zeros returns a zero-filled tensor on be (the default backend when nil).
func Zeros(be kernels.Backend, shape ...int) *Tensor {
	return newTensor(orDefault(be), checkShape("Zeros", shape))
}

// Ones returns a tensor of ones on be (the default backend when nil).
func Ones(be kernels.Backend, shape ...int) *Tensor { return Full(be, 1, shape...) }

// Full returns a tensor on be (the default backend when nil) with every
// element set to v.
func Full(be kernels.Backend, v float32, shape ...int) *Tensor {
	t := newTensor(orDefault(be), checkShape("Full", shape))
	if v != 0 {
		t.be.Fill(t.buf, v)
	}
	return t
}

// Scalar returns a 0-d tensor holding v on be (the default backend when nil).
func Scalar(be kernels.Backend, v float32) *Tensor { return Full(be, v) }

// ZerosLike returns a zero-filled tensor with t's backend and shape.
func ZerosLike(t *Tensor) *Tensor { return newTensor(t.be, slices.Clone(t.shape)) }

// FromBuffer returns a tensor over buf without copying. buf must have been
// made by be and hold exactly as many elements as the shape.
func FromBuffer(be kernels.Backend, buf kernels.Buffer, shape ...int) *Tensor {
	if len(shape) == 0 {
		shape = []int{buf.Len()}
	}
	shape = checkShape("FromBuffer", shape)
	if numel(shape) != buf.Len() {
		panic(fmt.Sprintf("nn.FromBuffer: buffer of %d elements for shape %v", buf.Len(), shape))
	}
	return &Tensor{be: be, buf: buf, shape: shape}
}

// Uniform returns a tensor of numbers drawn uniformly from [lo, hi) with the
// next values of rng's stream.
func Uniform(be kernels.Backend, rng *RNG, lo, hi float32, shape ...int) *Tensor {
	t := newTensor(orDefault(be), checkShape("Uniform", shape))
	seed, off := rng.Next(t.Len())
	t.be.Uniform(t.buf, seed, off, lo, hi)
	return t
}

// Normal returns a tensor of normal numbers with the given mean and standard
// deviation, drawn with the next values of rng's stream.
func Normal(be kernels.Backend, rng *RNG, mean, std float32, shape ...int) *Tensor {
	t := newTensor(orDefault(be), checkShape("Normal", shape))
	seed, off := rng.Next(t.Len())
	t.be.Normal(t.buf, seed, off, mean, std)
	return t
}

// Backend returns the backend that holds t's data.
func (t *Tensor) Backend() kernels.Backend { return t.be }

// Buffer returns t's backend buffer (shared, not copied).
func (t *Tensor) Buffer() kernels.Buffer { return t.buf }

// Shape returns a copy of t's shape.
func (t *Tensor) Shape() []int { return slices.Clone(t.shape) }

// Dim returns the extent of axis i; a negative i counts from the end.
func (t *Tensor) Dim(i int) int { return t.shape[normAxis("Dim", i, len(t.shape))] }

// Rank returns the number of axes (0 for a scalar).
func (t *Tensor) Rank() int { return len(t.shape) }

// Len returns the number of elements.
func (t *Tensor) Len() int { return t.buf.Len() }

// Data returns a host copy of t's elements in row-major order.
func (t *Tensor) Data() []float32 {
	out := make([]float32, t.Len())
	t.be.ToHost(out, t.buf)
	return out
}

// Item returns the value of a one-element tensor.
func (t *Tensor) Item() float32 {
	if t.Len() != 1 {
		panic(fmt.Sprintf("nn.Item: tensor of shape %v has %d elements", t.shape, t.Len()))
	}
	var v [1]float32
	t.be.ToHost(v[:], t.buf)
	return v[0]
}

// String describes t's shape and, for small tensors, its values.
func (t *Tensor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Tensor%v", t.shape)
	if t.Len() <= 16 {
		fmt.Fprintf(&b, "%v", t.Data())
	}
	if t.requiresGrad {
		b.WriteString(" requires_grad")
	}
	return b.String()
}

// RequiresGrad reports whether gradients flow to t: it is a leaf marked with
// SetRequiresGrad, or the result of an operation on such tensors.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// SetRequiresGrad marks a leaf tensor as a parameter whose gradient Backward
// accumulates (or unmarks it). It panics on the result of a recorded
// operation, which is not a leaf. It returns t.
func (t *Tensor) SetRequiresGrad(on bool) *Tensor {
	if t.node != nil {
		panic("nn.SetRequiresGrad: tensor is the result of a recorded operation, not a leaf (Detach it first)")
	}
	t.requiresGrad = on
	return t
}

// IsLeaf reports whether t is not the result of a recorded operation.
func (t *Tensor) IsLeaf() bool { return t.node == nil }

// Grad returns the gradient accumulated into the leaf t, or nil.
func (t *Tensor) Grad() *Tensor { return t.grad }

// SetGrad replaces t's accumulated gradient (nil clears it). The gradient
// must have t's number of elements and live on t's backend.
func (t *Tensor) SetGrad(g *Tensor) {
	if g != nil && g.Len() != t.Len() {
		panic(fmt.Sprintf("nn.SetGrad: gradient of shape %v for tensor of shape %v", g.shape, t.shape))
	}
	t.grad = g
	t.gradOwned = false
}

// ZeroGrad drops t's accumulated gradient (the next Backward starts a new
// one), like PyTorch's zero_grad(set_to_none=True).
func (t *Tensor) ZeroGrad() {
	if t.grad != nil {
		if t.gradOwned && t.grad.base == nil {
			t.be.Free(t.grad.buf)
		}
		t.grad = nil
		t.gradOwned = false
	}
}

// Detach returns a tensor sharing t's buffer with no autograd record.
func (t *Tensor) Detach() *Tensor { return viewOf(t, t.buf, slices.Clone(t.shape)) }

// Reshape returns a view of t with a new shape holding the same number of
// elements; one dimension may be -1. It is differentiable.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	shape = resolveShape("Reshape", t.Len(), shape)
	out := viewOf(t, t.buf, shape)
	inShape := t.shape
	return record(out, "Reshape", func(g *Tensor) []*Tensor {
		return []*Tensor{g.view(inShape)}
	}, t)
}

// view is Reshape without a record.
func (t *Tensor) view(shape []int) *Tensor { return viewOf(t, t.buf, slices.Clone(shape)) }

// Flatten returns t reshaped to 2-D [prod(shape[:-1]), shape[-1]].
func (t *Tensor) Flatten() *Tensor {
	if len(t.shape) == 0 {
		return t.Reshape(1, 1)
	}
	return t.Reshape(-1, t.shape[len(t.shape)-1])
}

// CopyFrom overwrites t's elements with src's, in place and without an
// autograd record (for loading and merging weights). The element counts
// must agree; src may live on another backend.
func (t *Tensor) CopyFrom(src *Tensor) {
	if src.Len() != t.Len() {
		panic(fmt.Sprintf("nn.CopyFrom: source of shape %v into tensor of shape %v", src.shape, t.shape))
	}
	if src.be == t.be {
		t.be.Copy(t.buf, src.buf)
		return
	}
	tmp := t.be.FromHost(src.Data())
	t.be.Copy(t.buf, tmp)
	t.be.Free(tmp)
}

// CopyFromHost overwrites t's elements with data (len(data) == t.Len()).
func (t *Tensor) CopyFromHost(data []float32) {
	if len(data) != t.Len() {
		panic(fmt.Sprintf("nn.CopyFromHost: %d values into tensor of shape %v", len(data), t.shape))
	}
	if w, ok := t.be.Wrap(data); ok {
		t.be.Copy(t.buf, w)
		return
	}
	tmp := t.be.FromHost(data)
	t.be.Copy(t.buf, tmp)
	t.be.Free(tmp)
}

// Clone returns a copy of t in a new buffer; it is differentiable.
func (t *Tensor) Clone() *Tensor {
	out := cloneRaw(t)
	return record(out, "Clone", func(g *Tensor) []*Tensor { return []*Tensor{g} }, t)
}

func cloneRaw(t *Tensor) *Tensor {
	out := newTensor(t.be, slices.Clone(t.shape))
	t.be.Copy(out.buf, t.buf)
	return out
}

// sameBackend panics unless every non-nil tensor lives on the same backend.
func sameBackend(op string, ts ...*Tensor) kernels.Backend {
	var be kernels.Backend
	for _, t := range ts {
		if t == nil {
			continue
		}
		if be == nil {
			be = t.be
		} else if t.be != be {
			panic(fmt.Sprintf("nn.%s: tensors on different backends (%s, %s)", op, be.Name(), t.be.Name()))
		}
	}
	return be
}

// Free releases t's buffer now rather than when the garbage collector finds
// it, which matters for device memory. Neither t nor any tensor sharing its
// buffer may be used afterwards. On a view (Reshape, Detach, a leading-axis
// Slice) it does nothing: free the tensor that owns the buffer.
func (t *Tensor) Free() {
	if t.base != nil || t.buf == nil {
		return
	}
	t.be.Free(t.buf)
	t.buf = nil
}
