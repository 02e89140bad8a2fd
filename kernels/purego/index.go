package purego

import (
	"fmt"

	"github.com/gopeft/gopeft/kernels"
)

// Gather copies rows ids[i] of table into row i of dst.
func (*Backend) Gather(dst, table kernels.Buffer, ids []int32, dim int) {
	d, t := host(dst), host(table)
	need("Gather dst", d, len(ids)*dim)
	parallelFor(len(ids), dim, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			id := int(ids[i])
			copy(d[i*dim:(i+1)*dim], t[id*dim:(id+1)*dim])
		}
	})
}

// ScatterAdd accumulates row i of src into row ids[i] of table. Repeated ids
// accumulate in index order. Work is split by destination row (id modulo the
// number of pieces), so no two goroutines touch the same row.
func (*Backend) ScatterAdd(table, src kernels.Buffer, ids []int32, dim int) {
	t, s := host(table), host(src)
	need("ScatterAdd src", s, len(ids)*dim)
	k := chunks(len(ids), dim)
	split(k, k, func(p, _, _ int) {
		for i, id := range ids {
			if int(id)%k != p {
				continue
			}
			row := t[int(id)*dim : (int(id)+1)*dim]
			for j, v := range s[i*dim : (i+1)*dim] {
				row[j] += v
			}
		}
	})
}

// checkGeom panics on a geometry no convolution has.
func checkGeom(g kernels.ConvGeom) {
	if g.C < 0 || g.H < 0 || g.W < 0 || g.KH < 1 || g.KW < 1 || g.StrideH < 1 || g.StrideW < 1 ||
		g.PadH < 0 || g.PadW < 0 || g.DilH < 1 || g.DilW < 1 {
		panic(fmt.Sprintf("purego: invalid convolution geometry %+v", g))
	}
}

// Im2Col unfolds the image src [C, H, W] into dst [C*KH*KW, OutH*OutW].
func (*Backend) Im2Col(dst, src kernels.Buffer, g kernels.ConvGeom) {
	checkGeom(g)
	d, s := host(dst), host(src)
	oh, ow := max(g.OutH(), 0), max(g.OutW(), 0)
	rows, cols := g.C*g.KH*g.KW, oh*ow
	need("Im2Col src", s, g.C*g.H*g.W)
	need("Im2Col dst", d, rows*cols)
	if cols == 0 {
		return
	}
	parallelFor(rows, cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			c, kh, kw := r/(g.KH*g.KW), r/g.KW%g.KH, r%g.KW
			img := s[c*g.H*g.W : (c+1)*g.H*g.W]
			out := d[r*cols : (r+1)*cols]
			for y := 0; y < oh; y++ {
				line := out[y*ow : (y+1)*ow]
				ih := y*g.StrideH - g.PadH + kh*g.DilH
				if ih < 0 || ih >= g.H {
					for x := range line {
						line[x] = 0
					}
					continue
				}
				in := img[ih*g.W : (ih+1)*g.W]
				for x := range line {
					iw := x*g.StrideW - g.PadW + kw*g.DilW
					if iw < 0 || iw >= g.W {
						line[x] = 0
					} else {
						line[x] = in[iw]
					}
				}
			}
		}
	})
}

// Col2Im accumulates the columns src [C*KH*KW, OutH*OutW] into the image dst
// [C, H, W]: the adjoint of Im2Col. Channels are split across goroutines.
func (*Backend) Col2Im(dst, src kernels.Buffer, g kernels.ConvGeom) {
	checkGeom(g)
	d, s := host(dst), host(src)
	oh, ow := max(g.OutH(), 0), max(g.OutW(), 0)
	kk, cols := g.KH*g.KW, oh*ow
	need("Col2Im dst", d, g.C*g.H*g.W)
	need("Col2Im src", s, g.C*kk*cols)
	if cols == 0 {
		return
	}
	parallelFor(g.C, kk*cols, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			img := d[c*g.H*g.W : (c+1)*g.H*g.W]
			for kh := 0; kh < g.KH; kh++ {
				for kw := 0; kw < g.KW; kw++ {
					r := c*kk + kh*g.KW + kw
					col := s[r*cols : (r+1)*cols]
					for y := 0; y < oh; y++ {
						ih := y*g.StrideH - g.PadH + kh*g.DilH
						if ih < 0 || ih >= g.H {
							continue
						}
						in := img[ih*g.W : (ih+1)*g.W]
						line := col[y*ow : (y+1)*ow]
						for x, v := range line {
							iw := x*g.StrideW - g.PadW + kw*g.DilW
							if iw >= 0 && iw < g.W {
								in[iw] += v
							}
						}
					}
				}
			}
		}
	})
}

// Rope rotates src [batch, seq, dim] by the tables cos and sin [seq, dim] in
// the rotate-half layout: with h = dim/2, for j < h
//
//	y[j]   = x[j]*cos[j]     - x[j+h]*sin[j]
//	y[j+h] = x[j+h]*cos[j+h] + x[j]*sin[j+h]
//
// With inverse set it applies the transpose of that map,
//
//	y[j]   = x[j]*cos[j]     + x[j+h]*sin[j+h]
//	y[j+h] = x[j+h]*cos[j+h] - x[j]*sin[j]
//
// which is the backward pass for any tables and, for the usual tables whose
// halves repeat (cos[j] == cos[j+h], sin[j] == sin[j+h]), the inverse
// rotation: the forward map with sin negated.
func (*Backend) Rope(dst, src, cos, sin kernels.Buffer, batch, seq, dim int, inverse bool) {
	d, s, cs, sn := host(dst), host(src), host(cos), host(sin)
	if dim%2 != 0 || batch < 0 || seq < 0 || dim < 0 {
		panic(fmt.Sprintf("purego: Rope: bad sizes batch=%d seq=%d dim=%d (dim must be even)", batch, seq, dim))
	}
	checkRows("Rope", batch*seq, dim, d, s)
	checkRows("Rope tables", seq, dim, cs, sn)
	h := dim / 2
	parallelFor(batch*seq, dim*2, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			p := r % seq
			x, y := s[r*dim:(r+1)*dim], d[r*dim:(r+1)*dim]
			c, sv := cs[p*dim:(p+1)*dim], sn[p*dim:(p+1)*dim]
			for j := 0; j < h; j++ {
				a, b := x[j], x[j+h]
				if inverse {
					y[j] = float32(a*c[j]) + float32(b*sv[j+h])
					y[j+h] = float32(b*c[j+h]) - float32(a*sv[j])
				} else {
					y[j] = float32(a*c[j]) - float32(b*sv[j])
					y[j+h] = float32(b*c[j+h]) + float32(a*sv[j+h])
				}
			}
		}
	})
}
