package lora

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
)

// The data-driven initialisations (PiSSA, OLoRA) factorise the base weight
// once, when an adapter is created. nn has no SVD or QR kernel, so the
// factorisation runs in float64 on a host copy of the weight (gonum for the
// SVD, a Householder QR here); everything after it (the factors' products
// and the residual weight) is computed with nn operations on the weight's
// backend. This is an exception to "tuners do no arithmetic on raw slices"
// and stays out of the forward/backward hot path.

// hostMatrix copies a 2-D tensor into a gonum matrix, transposed if asked.
func hostMatrix(t *nn.Tensor, transpose bool) *mat.Dense {
	rows, cols := t.Dim(0), t.Dim(1)
	data := t.Data()
	f := make([]float64, len(data))
	for i, v := range data {
		f[i] = float64(v)
	}
	m := mat.NewDense(rows, cols, f)
	if !transpose {
		return m
	}
	var tm mat.Dense
	tm.CloneFrom(m.T())
	return &tm
}

// toTensor converts a float64 host matrix to a tensor on like's backend.
func toTensor(m mat.Matrix, like *nn.Tensor) *nn.Tensor {
	rows, cols := m.Dims()
	data := make([]float32, rows*cols)
	for i := range rows {
		for j := range cols {
			data[i*cols+j] = float32(m.At(i, j))
		}
	}
	return nn.New(like.Backend(), data, rows, cols)
}

// weightOut returns the base weight as [out, in] (transposing GPT-2 Conv1D's
// [in, out]) and a function that writes an [out, in] residual back.
func (c *core) weightOut() (*nn.Tensor, func(*nn.Tensor)) {
	if c.kind == kindConv1D {
		return nn.T(c.weight.Detach()), func(w *nn.Tensor) { c.weight.CopyFrom(nn.T(w)) }
	}
	return c.weight.Detach(), func(w *nn.Tensor) { c.weight.CopyFrom(w) }
}

// pissaInit sets A = sqrt(S_r/scaling) V_r^T and B = U_r sqrt(S_r/scaling)
// from the top-r singular triplets of W = U S V^T, and replaces W by the
// residual W - scaling * B A. "pissa_niter_<n>" (PEFT's randomized SVD) is
// computed with the same exact SVD: the randomized one approximates it.
func (c *core) pissaInit(name string, a *adapter) error {
	w, store := c.weightOut()
	out, in := w.Dim(0), w.Dim(1)
	if a.r > min(out, in) {
		return fmt.Errorf("adapter %q: PiSSA needs r <= min(out, in) = %d, got r = %d", name, min(out, in), a.r)
	}
	if !(a.scale > 0) {
		return fmt.Errorf("adapter %q: PiSSA needs a positive scaling, got %v", name, a.scale)
	}
	var svd mat.SVD
	if ok := svd.Factorize(hostMatrix(w, false), mat.SVDThin); !ok {
		return fmt.Errorf("adapter %q: PiSSA: SVD of the base weight did not converge", name)
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	am := mat.NewDense(a.r, in, nil)
	bm := mat.NewDense(out, a.r, nil)
	for i := range a.r {
		root := math.Sqrt(s[i] / a.scale)
		for j := range in {
			am.Set(i, j, root*v.At(j, i))
		}
		for o := range out {
			bm.Set(o, i, u.At(o, i)*root)
		}
	}
	a.a.CopyFrom(toTensor(am, w))
	a.b.CopyFrom(toTensor(bm, w))
	store(nn.Sub(w, nn.Scale(nn.MatMul(a.b.Detach(), a.a.Detach()), float32(a.scale))))
	return nil
}

// oloraInit sets B = Q[:, :r] and A = R[:r] from the QR decomposition of the
// base weight W (as stored, [out, in]) and replaces W by W - scaling * B A.
func (c *core) oloraInit(name string, a *adapter) error {
	w := c.weight.Detach()
	out, in := w.Dim(0), w.Dim(1)
	if a.r > min(out, in) {
		return fmt.Errorf("adapter %q: OLoRA needs r <= min(out, in) = %d, got r = %d", name, min(out, in), a.r)
	}
	q, r := householderQR(hostMatrix(w, false))
	a.b.CopyFrom(toTensor(q.Slice(0, out, 0, a.r), w))
	a.a.CopyFrom(toTensor(r.Slice(0, a.r, 0, in), w))
	c.weight.CopyFrom(nn.Sub(w, nn.Scale(nn.MatMul(a.b.Detach(), a.a.Detach()), float32(a.scale))))
	return nil
}

// householderQR returns the reduced QR decomposition of the m x n matrix a:
// Q (m x k, orthonormal columns) and R (k x n, upper trapezoidal), k =
// min(m, n), with LAPACK's sign convention (the one torch.linalg.qr
// inherits): each reflector maps its column onto -sign(alpha)*||x|| e1.
func householderQR(a *mat.Dense) (q, r *mat.Dense) {
	m, n := a.Dims()
	k := min(m, n)
	w := mat.DenseCopyOf(a)
	vs := make([][]float64, k)
	taus := make([]float64, k)
	for j := range k {
		alpha := w.At(j, j)
		xnorm := 0.0
		for i := j + 1; i < m; i++ {
			xnorm = math.Hypot(xnorm, w.At(i, j))
		}
		if xnorm == 0 {
			continue // H = I
		}
		beta := -math.Copysign(math.Hypot(alpha, xnorm), alpha)
		tau := (beta - alpha) / beta
		v := make([]float64, m-j)
		v[0] = 1
		for i := j + 1; i < m; i++ {
			v[i-j] = w.At(i, j) / (alpha - beta)
		}
		// w[j:, j:] -= tau v (v^T w[j:, j:])
		for col := j; col < n; col++ {
			dot := 0.0
			for i := j; i < m; i++ {
				dot += v[i-j] * w.At(i, col)
			}
			for i := j; i < m; i++ {
				w.Set(i, col, w.At(i, col)-tau*v[i-j]*dot)
			}
		}
		vs[j], taus[j] = v, tau
	}
	r = mat.NewDense(k, n, nil)
	for i := range k {
		for col := i; col < n; col++ {
			r.Set(i, col, w.At(i, col))
		}
	}
	// Q = H_0 H_1 ... H_{k-1} applied to the first k columns of I.
	q = mat.NewDense(m, k, nil)
	for i := range k {
		q.Set(i, i, 1)
	}
	for j := k - 1; j >= 0; j-- {
		v, tau := vs[j], taus[j]
		if v == nil {
			continue
		}
		for col := range k {
			dot := 0.0
			for i := j; i < m; i++ {
				dot += v[i-j] * q.At(i, col)
			}
			for i := j; i < m; i++ {
				q.Set(i, col, q.At(i, col)-tau*v[i-j]*dot)
			}
		}
	}
	return q, r
}

// micaInit sets B to the r left singular vectors of the base weight (as
// [out, in]; [dim, vocab] for embeddings) with the smallest singular values
// and leaves A zero, so the adapter starts as a no-op; B is then frozen.
func (c *core) micaInit(name string, a *adapter) error {
	w := c.weight.Detach()
	rows, cols := c.out, c.in
	if a.r > min(rows, cols) {
		return fmt.Errorf("adapter %q: MiCA needs r <= min(out, in) = %d, got r = %d", name, min(rows, cols), a.r)
	}
	var svd mat.SVD
	if ok := svd.Factorize(hostMatrix(w, c.kind == kindConv1D || c.kind == kindEmbedding), mat.SVDThin); !ok {
		return fmt.Errorf("adapter %q: MiCA: SVD of the base weight did not converge", name)
	}
	var u mat.Dense
	svd.UTo(&u)
	k := min(rows, cols)
	a.b.CopyFrom(toTensor(u.Slice(0, rows, k-a.r, k), w))
	return nil
}

// orthogonalInit draws a random orthogonal r x r matrix Q and sets, as PEFT
// does, A = (G1 @ Q[0::2])^T / 10 and B = (G2^T @ Q[1::2]) / 10 with G1 [in, r/2] and G2 [r/2, out] standard
// normal. The two row sets of Q are orthogonal, so B A = 0.
func (c *core) orthogonalInit(name string, a *adapter, rng *nn.RNG) error {
	r := a.r
	if r%2 != 0 {
		return fmt.Errorf("adapter %q: orthogonal init needs an even r, got %d", name, r)
	}
	be := c.weight.Backend()
	q, _ := householderQR(hostMatrix(nn.Normal(be, rng, 0, 1, r, r), false))
	odd := mat.NewDense(r/2, r, nil)
	even := mat.NewDense(r/2, r, nil)
	for i := range r / 2 {
		for j := range r {
			odd.Set(i, j, q.At(2*i, j))
			even.Set(i, j, q.At(2*i+1, j))
		}
	}
	g1 := nn.Normal(be, rng, 0, 1, c.in, r/2)
	g2 := nn.Normal(be, rng, 0, 1, r/2, c.out)
	a.a.CopyFrom(nn.Scale(nn.T(nn.MatMul(g1, toTensor(odd, c.weight))), 0.1))
	a.b.CopyFrom(nn.Scale(nn.MatMulT(g2, toTensor(even, c.weight), true, false), 0.1))
	return nil
}
