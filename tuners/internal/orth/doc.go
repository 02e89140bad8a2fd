// Package orth is the layer machinery shared by the multiplicative
// orthogonal fine-tuning methods (OFT, BOFT, HRA): methods whose adapter is
// a square matrix M acting on the input side of a base weight, optionally
// with a per-output scale s:
//
//	y = (x·M) Wᵀ · s + b        (unmerged: rotate the input)
//	  = x (diag(s) W Mᵀ)ᵀ + b    (merged: rotate the weight)
//
// For an Embedding (OFT only) the matrix acts on the looked-up rows:
// y = E[ids]·M, merged E' = E·M.
//
// A Layer computes each adapter's M once per forward (Adapter.Rotation) and
// then multiplies whichever side is cheaper: the input rows when there are
// no more of them than output features, else the weight, followed by one
// product with the base layer. Conv2d layers always rotate the flattened
// weight [out, in·kh·kw].
//
// Nothing here is safe for concurrent use except Forward in evaluation
// mode.
package orth
