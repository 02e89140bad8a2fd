package oft

import (
	"math"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// adapter is one OFT adapter of a layer: the packed skew-symmetric blocks
// oft_R.weight [blocks (1 when shared), b(b-1)/2] and how to turn them into
// rotations.
type adapter struct {
	weight  *nn.Tensor
	r, b    int // blocks along the rotated axis, block size
	shared  bool
	coft    bool
	eps     float64
	neumann bool
	terms   int
	// gather maps the b*b entries of a block to [0, vec..., -vec...]:
	// 0 on the diagonal, 1+k above it, 1+p+k below it.
	gather     []int32
	rows, cols []int64
}

// newAdapter builds the adapter's index tables (PEFT's triu_indices order:
// row by row, strictly above the diagonal).
func newAdapter(w *nn.Tensor, r, b int, cfg *Config) *adapter {
	a := &adapter{
		weight: w, r: r, b: b, shared: cfg.BlockShare, coft: cfg.COFT, eps: cfg.Eps,
		neumann: cfg.UseCayleyNeumann, terms: cfg.NumCayleyNeumannTerms,
	}
	p := b * (b - 1) / 2
	a.gather = make([]int32, b*b)
	k := 0
	for i := 0; i < b; i++ {
		for j := i + 1; j < b; j++ {
			a.rows = append(a.rows, int64(i))
			a.cols = append(a.cols, int64(j))
			a.gather[i*b+j] = int32(1 + k)
			a.gather[j*b+i] = int32(1 + p + k)
			k++
		}
	}
	return a
}

// projected returns the packed vectors v with COFT's constraint applied:
// each block's skew matrix scaled into the Frobenius ball of radius
// eps/sqrt(blocks) (the matrix norm is sqrt(2) times the packed norm).
func (a *adapter) projected(v *nn.Tensor) *nn.Tensor {
	e := float32(a.eps / math.Sqrt(float64(v.Dim(0))))
	norm := nn.Sqrt(nn.Scale(nn.SumSquares(v, 1, true), 2))
	f := nn.Div(nn.Full(v.Backend(), e, 1), nn.Maximum(norm, nn.Full(v.Backend(), e, 1)))
	return nn.Mul(v, f)
}

// skew returns the skew-symmetric blocks [n, b, b] of the packed vectors.
func (a *adapter) skew(v *nn.Tensor) *nn.Tensor {
	n := v.Dim(0)
	ext := nn.Concat(1, nn.Zeros(v.Backend(), n, 1), v, nn.Neg(v))
	return nn.Index(ext, 1, a.gather).Reshape(n, a.b, a.b)
}

// cayley returns PEFT's rotation blocks of the skew blocks q: with the
// Neumann series I + 2Q + 2Q² + … + 2Q^(t-2) + Q^(t-1) (t terms; t = 3
// and 4 both end in Q³), else the exact (I - Q)(I + Q)⁻¹.
func (a *adapter) cayley(q *nn.Tensor) *nn.Tensor {
	n := q.Dim(0)
	eye := orth.Eye(q, n, a.b)
	if !a.neumann {
		return nn.MatMul(nn.Sub(eye, q), nn.Inverse(nn.Add(eye, q)))
	}
	r := eye
	if a.terms > 1 {
		r = nn.Add(r, nn.Scale(q, 2))
	}
	if a.terms > 2 {
		pw := nn.MatMul(q, q)
		r = nn.Add(r, nn.Scale(pw, 2))
		for i := 3; i < a.terms-1; i++ {
			pw = nn.MatMul(pw, q)
			r = nn.Add(r, nn.Scale(pw, 2))
		}
		pw = nn.MatMul(pw, q)
		r = nn.Add(r, pw)
	}
	return r
}

// blocksOf returns the rotation blocks [n, b, b]. With COFT the stored
// weight is first projected (outside autograd, as PEFT does) and the
// projection written back into oft_R.weight like PEFT, except in an
// evaluation forward of a frozen adapter, which uses it without writing so
// that concurrent inference stays safe.
func (a *adapter) blocksOf(m orth.Mode) *nn.Tensor {
	if a.coft {
		p := a.projected(a.weight.Detach())
		if m.Training || m.Detach || a.weight.RequiresGrad() {
			a.weight.CopyFrom(p)
		} else {
			return a.rotationBlocks(p)
		}
	}
	v := a.weight
	if m.Detach {
		v = v.Detach()
	}
	return a.rotationBlocks(v)
}

// rotationBlocks returns the rotation blocks of packed vectors v.
func (a *adapter) rotationBlocks(v *nn.Tensor) *nn.Tensor {
	if a.b == 1 {
		return orth.Eye(v, v.Dim(0), 1)
	}
	return a.cayley(a.skew(v))
}

// Rotation returns x -> x·blockdiag(R). OFT has no training-only behaviour
// (PEFT 0.20.0 never applies module_dropout).
func (a *adapter) Rotation(m orth.Mode) orth.Rotation {
	return &orth.Blocks{Factors: []orth.Factor{{Blocks: a.blocksOf(m)}}}
}

// InverseRotation returns the inverse used to unmerge: block inverses for
// the Neumann series, which is not exactly orthogonal (PEFT inverts too),
// transposed blocks for the exact Cayley transform.
func (a *adapter) InverseRotation() orth.Rotation {
	r := a.Rotation(orth.Mode{Detach: true}).(*orth.Blocks)
	if a.neumann {
		return orth.InverseBlocks(r)
	}
	return orth.TransposeBlocks(r)
}

// Saved returns oft_R.weight.
func (a *adapter) Saved() []nn.Param { return []nn.Param{{Name: "oft_R.weight", T: a.weight}} }

// Live returns oft_R.<adapter>.weight.
func (a *adapter) Live() []orth.Entry {
	return []orth.Entry{{Container: "oft_R", Sub: "weight", T: a.weight}}
}

// Trainable returns the packed blocks.
func (a *adapter) Trainable() []*nn.Tensor { return []*nn.Tensor{a.weight} }

// Buffers returns PEFT's oft_R.<adapter>.rows / .cols index buffers.
func (a *adapter) Buffers(name string) []tuners.Buffer {
	p := len(a.rows)
	return []tuners.Buffer{
		{Name: "oft_R." + name + ".rows", Shape: []int{p}, I64: append([]int64{}, a.rows...)},
		{Name: "oft_R." + name + ".cols", Shape: []int{p}, I64: append([]int64{}, a.cols...)},
	}
}
