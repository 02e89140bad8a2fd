package boft

import (
	"sort"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/orth"
)

// adapter is one BOFT adapter of a layer: boft_R [factors, blocks, b, b],
// boft_s ([out, 1] for Linear, [1, out] for Conv2d) and the butterfly
// permutations of each factor.
type adapter struct {
	r, s    *nn.Tensor
	g       geometry
	out     int
	dropout float64
	// perms[i] is factor i's permutation (P_i[k, perms[i][k]] = 1) and
	// invs[i] its inverse; nil for the identity.
	perms, invs [][]int32
	dim         int
}

// newAdapter computes the permutations of every factor.
func newAdapter(r, s *nn.Tensor, g geometry, dim, out int, dropout float64) (*adapter, error) {
	a := &adapter{r: r, s: s, g: g, dim: dim, out: out, dropout: dropout}
	for i := 0; i <= g.f; i++ {
		p, err := butterflyPerm(dim, g.n>>i, g.b/2, g.f)
		if err != nil {
			return nil, err
		}
		identity := true
		inv := make([]int32, dim)
		for k, v := range p {
			inv[v] = int32(k)
			identity = identity && v == int32(k)
		}
		if identity {
			p, inv = nil, nil
		}
		a.perms = append(a.perms, p)
		a.invs = append(a.invs, inv)
	}
	return a, nil
}

// cayley returns the orthogonal blocks (I - S)(I + S)⁻¹ of S = (R - Rᵀ)/2,
// for R [k, b, b].
func cayley(r *nn.Tensor) *nn.Tensor {
	k, b := r.Dim(0), r.Dim(1)
	s := nn.Scale(nn.Sub(r, nn.Transpose(r, 1, 2)), 0.5)
	eye := orth.Eye(r, k, b)
	return nn.MatMul(nn.Sub(eye, s), nn.Inverse(nn.Add(eye, s)))
}

// dropBlocks replaces a share of the blocks of one randomly chosen factor by
// the identity (PEFT's multiplicative dropout, drawn from the layer's
// stream).
func (a *adapter) dropBlocks(q *nn.Tensor, rng *nn.RNG) *nn.Tensor {
	nf, d, b := a.g.f+1, a.g.n, a.g.b
	u := nn.Uniform(q.Backend(), rng, 0, 1, 1+d).Data()
	pick := min(int(u[0]*float32(nf)), nf-1)
	order := make([]int, d)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return u[1+order[i]] < u[1+order[j]] })
	mask := make([]float32, nf*d)
	for _, blk := range order[:int(a.dropout*float64(d))] {
		mask[pick*d+blk] = 1
	}
	m := nn.New(q.Backend(), mask, nf*d, 1, 1)
	keep := nn.Sub(nn.Ones(q.Backend(), nf*d, 1, 1), m)
	return nn.Add(nn.Mul(q, keep), nn.Mul(orth.Eye(q, nf*d, b), m))
}

// Rotation returns x -> x·M with M = G_f·…·G_0, G_i = P_i·BD_i·P_iᵀ, and the
// output scale boft_s.
func (a *adapter) Rotation(m orth.Mode) orth.Rotation {
	r, s := a.r, a.s
	if m.Detach {
		r, s = r.Detach(), s.Detach()
	}
	nf, d, b := a.g.f+1, a.g.n, a.g.b
	q := cayley(r.Reshape(nf*d, b, b))
	if m.Training && a.dropout > 0 {
		q = a.dropBlocks(q, m.RNG)
	}
	q = q.Reshape(nf, d, b, b)
	rot := &orth.Blocks{S: s.Reshape(a.out)}
	for i := nf - 1; i >= 0; i-- {
		blk := nn.Slice(q, 0, i, i+1).Reshape(d, b, b)
		rot.Factors = append(rot.Factors, orth.Factor{Blocks: blk, Perm: a.perms[i], InvPerm: a.invs[i]})
	}
	return rot
}

// InverseRotation returns the inverse of the evaluation rotation: the
// transposed blocks (Cayley blocks are orthogonal) and 1/boft_s, as PEFT
// unmerges.
func (a *adapter) InverseRotation() orth.Rotation {
	return orth.TransposeBlocks(a.Rotation(orth.Mode{Detach: true}).(*orth.Blocks))
}

// Saved returns boft_R and boft_s.
func (a *adapter) Saved() []nn.Param {
	return []nn.Param{{Name: "boft_R", T: a.r}, {Name: "boft_s", T: a.s}}
}

// Live returns boft_R.<adapter> and boft_s.<adapter>.
func (a *adapter) Live() []orth.Entry {
	return []orth.Entry{{Container: "boft_R", T: a.r}, {Container: "boft_s", T: a.s}}
}

// Trainable returns boft_R and boft_s.
func (a *adapter) Trainable() []*nn.Tensor { return []*nn.Tensor{a.r, a.s} }

// Buffers returns PEFT's boft_P [factors, dim, dim], the permutation
// matrices (one buffer per layer in PEFT, rebuilt by each added adapter).
func (a *adapter) Buffers(string) []tuners.Buffer {
	nf, n := a.g.f+1, a.dim
	p := make([]float32, nf*n*n)
	for i := 0; i < nf; i++ {
		for k := 0; k < n; k++ {
			c := k
			if a.perms[i] != nil {
				c = int(a.perms[i][k])
			}
			p[i*n*n+k*n+c] = 1
		}
	}
	return []tuners.Buffer{{Name: "boft_P", Shape: []int{nf, n, n}, F32: p}}
}
