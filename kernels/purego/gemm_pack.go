package purego

// packA copies rows [i0, i0+mc) and depth [p0, p0+kc) of op(A) into dst as
// panels of gemmMR rows: panel q holds, for each depth step p, the gemmMR
// values A(i0+q*gemmMR+r, p0+p) at dst[q*kc*gemmMR + p*gemmMR + r]. Rows past
// mc are zero.
func packA(dst, a []float32, lda int, trans bool, i0, p0, mc, kc int) {
	for q := 0; q < mc; q += gemmMR {
		rows := min(gemmMR, mc-q)
		d := dst[q*kc : (q+gemmMR)*kc]
		i := i0 + q
		switch {
		case trans:
			// A is stored k x m: the gemmMR values of one step are adjacent.
			for p := 0; p < kc; p++ {
				src := a[(p0+p)*lda+i:]
				dd := d[p*gemmMR : p*gemmMR+gemmMR : p*gemmMR+gemmMR]
				if rows == gemmMR {
					*(*[gemmMR]float32)(dd) = *(*[gemmMR]float32)(src)
					continue
				}
				copy(dd, src[:rows])
				clear(dd[rows:])
			}
		case rows == gemmMR:
			r0 := a[(i+0)*lda+p0:][:kc]
			r1 := a[(i+1)*lda+p0:][:kc]
			r2 := a[(i+2)*lda+p0:][:kc]
			r3 := a[(i+3)*lda+p0:][:kc]
			r4 := a[(i+4)*lda+p0:][:kc]
			r5 := a[(i+5)*lda+p0:][:kc]
			for p := range r0 {
				dd := d[p*gemmMR : p*gemmMR+gemmMR : p*gemmMR+gemmMR]
				dd[0], dd[1], dd[2], dd[3], dd[4], dd[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
			}
		default:
			clear(d)
			for r := 0; r < rows; r++ {
				src := a[(i+r)*lda+p0:][:kc]
				for p, v := range src {
					d[p*gemmMR+r] = v
				}
			}
		}
	}
}

// packB copies depth [p0, p0+kc) of panels [lo, hi) of columns [j0, j0+nc)
// of op(B) into dst as panels of gemmNR columns: panel q holds, for each depth
// step p, the values B(p0+p, j0+q*gemmNR+c) at dst[q*kc*gemmNR + p*gemmNR + c].
// Columns past nc are zero.
func packB(dst, b []float32, ldb int, trans bool, p0, j0, kc, nc, lo, hi int) {
	for q := lo; q < hi; q++ {
		cols := min(gemmNR, nc-q*gemmNR)
		d := dst[q*kc*gemmNR : (q+1)*kc*gemmNR]
		j := j0 + q*gemmNR
		switch {
		case !trans:
			// B is stored k x n: the gemmNR values of one step are adjacent.
			for p := 0; p < kc; p++ {
				src := b[(p0+p)*ldb+j:]
				dd := d[p*gemmNR : p*gemmNR+gemmNR : p*gemmNR+gemmNR]
				if cols == gemmNR {
					*(*[gemmNR]float32)(dd) = *(*[gemmNR]float32)(src)
					continue
				}
				copy(dd, src[:cols])
				clear(dd[cols:])
			}
		default:
			// B is stored n x k: each column of op(B) is a row of b.
			if cols < gemmNR {
				clear(d)
			}
			for c := 0; c < cols; c++ {
				src := b[(j+c)*ldb+p0:][:kc]
				for p, v := range src {
					d[p*gemmNR+c] = v
				}
			}
		}
	}
}
