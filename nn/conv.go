package nn

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/kernels"
)

// ConvOptions are the hyper-parameters of a convolution. Index 0 is the
// height axis and index 1 the width axis of a 2-d convolution; a 1-d
// convolution uses index 0 only. Zero values mean PyTorch's defaults:
// stride 1, padding 0, dilation 1, one group.
type ConvOptions struct {
	Stride, Padding, Dilation [2]int
	Groups                    int
}

func (o ConvOptions) normalised() ConvOptions {
	for i := range 2 {
		if o.Stride[i] == 0 {
			o.Stride[i] = 1
		}
		if o.Dilation[i] == 0 {
			o.Dilation[i] = 1
		}
	}
	if o.Groups == 0 {
		o.Groups = 1
	}
	return o
}

// Conv2dOp returns the 2-d convolution (cross-correlation, as in PyTorch) of
// x [N, C, H, W] (or [C, H, W]) with w [OC, C/groups, KH, KW] plus the
// optional bias b [OC]: [N, OC, OH, OW]. Each image is unfolded with Im2Col
// and multiplied by the weight in one (group-batched) GEMM; the backward
// pass is GEMMs plus Col2Im.
func Conv2dOp(x, w, b *Tensor, o ConvOptions) *Tensor {
	o = o.normalised()
	if len(w.shape) != 4 {
		panic(fmt.Sprintf("nn.Conv2d: weight of shape %v is not [OC, C/groups, KH, KW]", w.shape))
	}
	unbatched := len(x.shape) == 3
	xs := x.shape
	if unbatched {
		xs = append([]int{1}, xs...)
	}
	if len(xs) != 4 {
		panic(fmt.Sprintf("nn.Conv2d: input of shape %v is not [N, C, H, W]", x.shape))
	}
	g := kernels.ConvGeom{C: xs[1], H: xs[2], W: xs[3], KH: w.shape[2], KW: w.shape[3],
		StrideH: o.Stride[0], StrideW: o.Stride[1], PadH: o.Padding[0], PadW: o.Padding[1],
		DilH: o.Dilation[0], DilW: o.Dilation[1]}
	out := conv("Conv2d", x, w, b, xs[0], g, o.Groups)
	if unbatched {
		return out.Reshape(out.shape[1:]...)
	}
	return out
}

// Conv1dOp returns the 1-d convolution of x [N, C, L] (or [C, L]) with
// w [OC, C/groups, K] plus the optional bias b [OC]: [N, OC, OL]. It uses
// index 0 of the options' Stride, Padding and Dilation.
func Conv1dOp(x, w, b *Tensor, o ConvOptions) *Tensor {
	o = o.normalised()
	if len(w.shape) != 3 {
		panic(fmt.Sprintf("nn.Conv1d: weight of shape %v is not [OC, C/groups, K]", w.shape))
	}
	unbatched := len(x.shape) == 2
	xs := x.shape
	if unbatched {
		xs = append([]int{1}, xs...)
	}
	if len(xs) != 3 {
		panic(fmt.Sprintf("nn.Conv1d: input of shape %v is not [N, C, L]", x.shape))
	}
	g := kernels.ConvGeom{C: xs[1], H: 1, W: xs[2], KH: 1, KW: w.shape[2],
		StrideH: 1, StrideW: o.Stride[0], PadW: o.Padding[0], DilH: 1, DilW: o.Dilation[0]}
	out := conv("Conv1d", x, w, b, xs[0], g, o.Groups)
	if unbatched {
		return out.Reshape(out.shape[1], out.shape[3])
	}
	return out.Reshape(out.shape[0], out.shape[1], out.shape[3])
}

// conv is the shared 2-d convolution over n images; the result is
// [n, OC, OH, OW].
func conv(op string, x, w, b *Tensor, n int, g kernels.ConvGeom, groups int) *Tensor {
	be := sameBackend(op, x, w, b)
	oc := w.shape[0]
	if groups < 1 || g.C%groups != 0 || oc%groups != 0 {
		panic(fmt.Sprintf("nn.%s: %d groups for %d input and %d output channels", op, groups, g.C, oc))
	}
	cg, ocg := g.C/groups, oc/groups
	if w.shape[1] != cg {
		panic(fmt.Sprintf("nn.%s: weight of shape %v for %d input channels in %d groups", op, w.shape, g.C, groups))
	}
	if b != nil && b.Len() != oc {
		panic(fmt.Sprintf("nn.%s: bias of shape %v for %d output channels", op, b.shape, oc))
	}
	oh, ow := g.OutH(), g.OutW()
	if oh <= 0 || ow <= 0 || g.StrideH < 1 || g.StrideW < 1 || g.PadH < 0 || g.PadW < 0 {
		panic(fmt.Sprintf("nn.%s: input of shape %v too small for kernel %dx%d (stride %d,%d padding %d,%d dilation %d,%d)",
			op, x.shape, g.KH, g.KW, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilH, g.DilW))
	}
	l := oh * ow
	kg := cg * g.KH * g.KW
	img := g.C * g.H * g.W
	out := newTensor(be, []int{n, oc, oh, ow})
	beta := float32(0)
	if b != nil {
		be.StridedCopy(out.buf, b.buf, []int{n, oc, l}, []int{0, 1, 0})
		beta = 1
	}
	// A 1x1 kernel with stride 1 and no padding needs no unfolding: the
	// image itself is the column matrix.
	pointwise := g.KH == 1 && g.KW == 1 && g.StrideH == 1 && g.StrideW == 1 && g.PadH == 0 && g.PadW == 0
	cols := func(col kernels.Buffer, i int) kernels.Buffer {
		if pointwise {
			return x.buf.Slice(i*img, img)
		}
		be.Im2Col(col, x.buf.Slice(i*img, img), g)
		return col
	}
	var col kernels.Buffer
	if !pointwise {
		col = be.Alloc(g.C * g.KH * g.KW * l)
	}
	fwd := kernels.GemmArgs{M: ocg, N: l, K: kg, Alpha: 1, Beta: beta,
		A: w.buf, LdA: kg, LdB: l, LdC: l,
		Batch: groups, StrideA: ocg * kg, StrideB: kg * l, StrideC: ocg * l}
	for i := range n {
		call := fwd
		call.B = cols(col, i)
		call.C = out.buf.Slice(i*oc*l, oc*l)
		be.Gemm(&call)
	}
	if col != nil {
		be.Free(col)
	}
	return record(out, op, func(gy *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		var col kernels.Buffer
		if !pointwise {
			col = be.Alloc(g.C * g.KH * g.KW * l)
		}
		if needs(x) {
			gx = newTensor(be, slices.Clone(x.shape))
			for i := range n {
				// dcol_g = W_g^T dY_g, then fold the columns back (for a
				// pointwise kernel the columns are the image gradient).
				dst := col
				if pointwise {
					dst = gx.buf.Slice(i*img, img)
				}
				be.Gemm(&kernels.GemmArgs{TransA: true, M: kg, N: l, K: ocg, Alpha: 1,
					A: w.buf, LdA: kg, B: gy.buf.Slice(i*oc*l, oc*l), LdB: l, C: dst, LdC: l,
					Batch: groups, StrideA: ocg * kg, StrideB: ocg * l, StrideC: kg * l})
				if !pointwise {
					be.Col2Im(gx.buf.Slice(i*img, img), col, g)
				}
			}
		}
		if needs(w) {
			gw = newTensor(be, slices.Clone(w.shape))
			for i := range n {
				// dW_g += dY_g col_g^T
				c := cols(col, i)
				beta := float32(1)
				if i == 0 {
					beta = 0
				}
				be.Gemm(&kernels.GemmArgs{TransB: true, M: ocg, N: kg, K: l, Alpha: 1, Beta: beta,
					A: gy.buf.Slice(i*oc*l, oc*l), LdA: l, B: c, LdB: l, C: gw.buf, LdC: kg,
					Batch: groups, StrideA: ocg * l, StrideB: kg * l, StrideC: ocg * kg})
			}
		}
		if col != nil {
			be.Free(col)
		}
		if needs(b) {
			gb = newTensor(be, slices.Clone(b.shape))
			tmp := be.Alloc(n * oc)
			be.Reduce(kernels.Sum, tmp, gy.buf, n*oc, l, 1)
			be.Reduce(kernels.Sum, gb.buf, tmp, 1, n, oc)
			be.Free(tmp)
		}
		return []*Tensor{gx, gw, gb}
	}, x, w, b)
}
