package nn

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
)

// lastAxis returns rows, cols for a tensor normalised over its last axis.
func lastAxis(op string, a *Tensor) (rows, cols int) {
	if len(a.shape) == 0 {
		panic(fmt.Sprintf("nn.%s: input is a scalar", op))
	}
	cols = a.shape[len(a.shape)-1]
	return numel(a.shape[:len(a.shape)-1]), cols
}

// softmaxRows normalises a viewed as [rows, cols].
func softmaxRows(a *Tensor, rows, cols int, log bool) *Tensor {
	name := "Softmax"
	if log {
		name = "LogSoftmax"
	}
	out := newTensor(a.be, slices.Clone(a.shape))
	if out.Len() > 0 {
		a.be.Softmax(out.buf, a.buf, rows, cols, log)
	}
	return record(out, name, func(g *Tensor) []*Tensor {
		dx := newTensor(g.be, slices.Clone(a.shape))
		if dx.Len() > 0 {
			g.be.SoftmaxGrad(dx.buf, g.buf, out.buf, rows, cols, log)
		}
		return []*Tensor{dx}
	}, a)
}

func softmaxAxis(a *Tensor, axis int, log bool) *Tensor {
	axis = normAxis("Softmax", axis, len(a.shape))
	outer, n, inner := axisSplit(a.shape, axis)
	if inner == 1 {
		return softmaxRows(a, outer, n, log)
	}
	last := len(a.shape) - 1
	t := Transpose(a, axis, last)
	return Transpose(softmaxRows(t, outer*inner, n, log), axis, last)
}

// Softmax returns the softmax of a along axis.
func Softmax(a *Tensor, axis int) *Tensor { return softmaxAxis(a, axis, false) }

// LogSoftmax returns the log-softmax of a along axis.
func LogSoftmax(a *Tensor, axis int) *Tensor { return softmaxAxis(a, axis, true) }

// LayerNormOp normalises x over its last axis with the biased variance:
// (x-mean)/sqrt(var+eps)*w + b. w and b ([last]) may be nil.
func LayerNormOp(x, w, b *Tensor, eps float32) *Tensor {
	be := sameBackend("LayerNorm", x, w, b)
	rows, cols := lastAxis("LayerNorm", x)
	for _, p := range []*Tensor{w, b} {
		if p != nil && p.Len() != cols {
			panic(fmt.Sprintf("nn.LayerNorm: parameter of shape %v for input of shape %v", p.shape, x.shape))
		}
	}
	out := newTensor(be, slices.Clone(x.shape))
	mean := be.Alloc(rows)
	rstd := be.Alloc(rows)
	be.LayerNorm(out.buf, mean, rstd, x.buf, bufOf(w), bufOf(b), rows, cols, eps)
	if !needs(x) && !needs(w) && !needs(b) {
		be.Free(mean)
		be.Free(rstd)
		return out
	}
	return record(out, "LayerNorm", func(g *Tensor) []*Tensor {
		gx := newTensor(be, slices.Clone(x.shape))
		var gw, gb *Tensor
		if needs(w) {
			gw = newTensor(be, slices.Clone(w.shape))
		}
		if needs(b) {
			gb = newTensor(be, slices.Clone(b.shape))
		}
		be.LayerNormGrad(gx.buf, bufOf(gw), bufOf(gb), g.buf, x.buf, mean, rstd, bufOf(w), rows, cols)
		if !needs(x) {
			be.Free(gx.buf)
			gx = nil
		}
		return []*Tensor{gx, gw, gb}
	}, x, w, b)
}

// RMSNormOp normalises x over its last axis by its root mean square:
// x/sqrt(mean(x^2)+eps)*w. w ([last]) may be nil.
func RMSNormOp(x, w *Tensor, eps float32) *Tensor {
	be := sameBackend("RMSNorm", x, w)
	rows, cols := lastAxis("RMSNorm", x)
	if w != nil && w.Len() != cols {
		panic(fmt.Sprintf("nn.RMSNorm: weight of shape %v for input of shape %v", w.shape, x.shape))
	}
	out := newTensor(be, slices.Clone(x.shape))
	rstd := be.Alloc(rows)
	be.RMSNorm(out.buf, rstd, x.buf, bufOf(w), rows, cols, eps)
	if !needs(x) && !needs(w) {
		be.Free(rstd)
		return out
	}
	return record(out, "RMSNorm", func(g *Tensor) []*Tensor {
		gx := newTensor(be, slices.Clone(x.shape))
		var gw *Tensor
		if needs(w) {
			gw = newTensor(be, slices.Clone(w.shape))
		}
		be.RMSNormGrad(gx.buf, bufOf(gw), g.buf, x.buf, rstd, bufOf(w), rows, cols)
		if !needs(x) {
			be.Free(gx.buf)
			gx = nil
		}
		return []*Tensor{gx, gw}
	}, x, w)
}

// bufOf returns t's buffer, or nil for a nil tensor.
func bufOf(t *Tensor) kernels.Buffer {
	if t == nil {
		return nil
	}
	return t.buf
}

// EmbeddingOpChecked looks up rows of table [num, dim] for ids and returns a
// tensor of shape shape+[dim] (shape defaults to [len(ids)]). It returns an
// error naming the first id outside [0, num) or a shape that does not hold
// len(ids) ids. Repeated ids accumulate their gradients.
func EmbeddingOpChecked(table *Tensor, ids []int32, shape ...int) (*Tensor, error) {
	if len(table.shape) != 2 {
		return nil, fmt.Errorf("nn: embedding table of shape %v is not 2-D", table.shape)
	}
	if len(shape) == 0 {
		shape = []int{len(ids)}
	}
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("nn: embedding: bad shape %v", shape)
		}
	}
	if numel(shape) != len(ids) {
		return nil, fmt.Errorf("nn: embedding: shape %v does not hold %d ids", shape, len(ids))
	}
	if err := checkIDs(ids, table.shape[0]); err != nil {
		return nil, fmt.Errorf("nn: embedding: %w", err)
	}
	dim := table.shape[1]
	ids = slices.Clone(ids)
	out := newTensor(table.be, append(slices.Clone(shape), dim))
	if out.Len() > 0 {
		table.be.Gather(out.buf, table.buf, ids, dim)
	}
	return record(out, "Embedding", func(g *Tensor) []*Tensor {
		gt := newTensor(g.be, slices.Clone(table.shape))
		if g.Len() > 0 {
			g.be.ScatterAdd(gt.buf, g.buf, ids, dim)
		}
		return []*Tensor{gt}
	}, table), nil
}

// EmbeddingOp is EmbeddingOpChecked for ids already known to be valid; it
// panics on a bad id or shape.
func EmbeddingOp(table *Tensor, ids []int32, shape ...int) *Tensor {
	out, err := EmbeddingOpChecked(table, ids, shape...)
	if err != nil {
		panic(err.Error())
	}
	return out
}

// Rope applies rotary position embeddings in the rotate-half layout to
// x [..., S, d] with cos and sin tables [S, d]:
// x*cos + rotate_half(x)*sin. Only x receives a gradient.
func Rope(x, cos, sin *Tensor) *Tensor {
	be := sameBackend("Rope", x, cos, sin)
	if len(x.shape) < 2 {
		panic(fmt.Sprintf("nn.Rope: input of shape %v needs [..., seq, dim]", x.shape))
	}
	seq, dim := x.shape[len(x.shape)-2], x.shape[len(x.shape)-1]
	if cos.Len() != seq*dim || sin.Len() != seq*dim {
		panic(fmt.Sprintf("nn.Rope: tables of shapes %v, %v for input of shape %v", cos.shape, sin.shape, x.shape))
	}
	if dim%2 != 0 {
		panic(fmt.Sprintf("nn.Rope: odd head dimension %d", dim))
	}
	batch := numel(x.shape[:len(x.shape)-2])
	out := newTensor(be, slices.Clone(x.shape))
	if out.Len() > 0 {
		be.Rope(out.buf, x.buf, cos.buf, sin.buf, batch, seq, dim, false)
	}
	return record(out, "Rope", func(g *Tensor) []*Tensor {
		gx := newTensor(be, slices.Clone(x.shape))
		if gx.Len() > 0 {
			be.Rope(gx.buf, g.buf, cos.buf, sin.buf, batch, seq, dim, true)
		}
		return []*Tensor{gx, nil, nil}
	}, x, cos, sin)
}

// DropoutOp zeroes each element of x with probability p and scales the rest
// by 1/(1-p), drawing its mask from rng. It always applies (the Dropout
// module applies it only in training mode); p <= 0 or a nil rng returns x
// unchanged, p >= 1 returns zeros.
func DropoutOp(x *Tensor, p float32, rng *RNG) *Tensor {
	if p <= 0 || rng == nil {
		return x
	}
	be := x.be
	mask := newTensor(be, slices.Clone(x.shape))
	if p >= 1 {
		return Mul(x, mask)
	}
	if mask.Len() > 0 {
		seed, off := rng.Next(mask.Len())
		be.Uniform(mask.buf, seed, off, 0, 1)
		be.ClampMask(mask.buf, mask.buf, p, 1)
		be.Affine(mask.buf, mask.buf, 1/(1-p), 0)
	}
	return Mul(x, mask)
}

// CrossEntropyChecked returns the mean negative log-likelihood of targets
// under softmax(logits) over the last axis: logits [..., C] has one row per
// target. Rows whose target equals ignoreIndex are left out of the mean
// (use -100 for PyTorch's default); when every row is ignored the result is
// NaN, as in PyTorch. It returns an error naming a target outside [0, C)
// that is not ignoreIndex, or a count of targets that disagrees with the
// rows.
func CrossEntropyChecked(logits *Tensor, targets []int32, ignoreIndex int32) (*Tensor, error) {
	if len(logits.shape) == 0 {
		return nil, fmt.Errorf("nn: cross entropy: logits are a scalar")
	}
	rows, c := lastAxis("CrossEntropy", logits)
	if len(targets) != rows {
		return nil, fmt.Errorf("nn: cross entropy: %d targets for logits of shape %v (%d rows)", len(targets), logits.shape, rows)
	}
	picks := make([]int32, 0, rows)
	for i, t := range targets {
		if t == ignoreIndex {
			continue
		}
		if t < 0 || int(t) >= c {
			return nil, fmt.Errorf("nn: cross entropy: target %d at row %d is out of range [0, %d)", t, i, c)
		}
		picks = append(picks, int32(i*c)+t)
	}
	logp := LogSoftmax(logits.Reshape(rows, c), -1)
	if len(picks) == 0 {
		return Scale(SumAll(logp), float32(math.NaN())), nil
	}
	picked := Index(logp.Reshape(rows*c), 0, picks)
	return Scale(SumAll(picked), -1/float32(len(picks))), nil
}

// CrossEntropy is CrossEntropyChecked for targets already known to be
// valid; it panics on a bad target.
func CrossEntropy(logits *Tensor, targets []int32, ignoreIndex int32) *Tensor {
	out, err := CrossEntropyChecked(logits, targets, ignoreIndex)
	if err != nil {
		panic(err.Error())
	}
	return out
}
