package purego

// transpose8, when the CPU has one, transposes k8 consecutive 8x8 blocks:
// element (r, c) of block g, src[r*lds + g*8 + c], goes to
// dst[(g*8+c)*ldd + r]. Packing uses it wherever it gathers 8 rows of the
// source into one step of a panel.
var transpose8 func(dst *float32, ldd int, src *float32, lds int, k8 int)

// packA copies rows [i0, i0+mc) and depth [p0, p0+kc) of op(A) into dst as
// panels of mr rows: panel q holds, for each depth step p, the mr values
// A(i0+q*mr+r, p0+p) at dst[q*kc*mr + p*mr + r]. Rows past mc are zero.
func packA(dst, a []float32, lda int, trans bool, mr, i0, p0, mc, kc int) {
	for q := 0; q < mc; q += mr {
		rows := min(mr, mc-q)
		d := dst[q*kc : (q+mr)*kc]
		i := i0 + q
		switch {
		case trans:
			// A is stored k x m: the mr values of one step are adjacent.
			for p := 0; p < kc; p++ {
				src := a[(p0+p)*lda+i:]
				dd := d[p*mr : p*mr+mr : p*mr+mr]
				copy(dd, src[:rows])
				clear(dd[rows:])
			}
		case rows == 6 && mr == 6:
			r0 := a[(i+0)*lda+p0:][:kc]
			r1 := a[(i+1)*lda+p0:][:kc]
			r2 := a[(i+2)*lda+p0:][:kc]
			r3 := a[(i+3)*lda+p0:][:kc]
			r4 := a[(i+4)*lda+p0:][:kc]
			r5 := a[(i+5)*lda+p0:][:kc]
			for p := range r0 {
				dd := d[p*6 : p*6+6 : p*6+6]
				dd[0], dd[1], dd[2], dd[3], dd[4], dd[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
			}
		default:
			// A is stored m x k: gather each row into every mr-th slot,
			// four rows at a time so that each pass writes more per line.
			if rows < mr {
				clear(d)
			}
			r := 0
			if k8 := kc / 8; transpose8 != nil && k8 > 0 {
				for ; r+8 <= rows; r += 8 {
					_ = a[(i+r+7)*lda+p0+k8*8-1] // the last element read
					transpose8(&d[r], mr, &a[(i+r)*lda+p0], lda, k8)
					for p := k8 * 8; p < kc; p++ {
						for x := 0; x < 8; x++ {
							d[p*mr+r+x] = a[(i+r+x)*lda+p0+p]
						}
					}
				}
			}
			for ; r+4 <= rows; r += 4 {
				s0 := a[(i+r)*lda+p0:][:kc]
				s1 := a[(i+r+1)*lda+p0:][:kc]
				s2 := a[(i+r+2)*lda+p0:][:kc]
				s3 := a[(i+r+3)*lda+p0:][:kc]
				for p := range s0 {
					dd := d[p*mr+r : p*mr+r+4 : p*mr+r+4]
					dd[0], dd[1], dd[2], dd[3] = s0[p], s1[p], s2[p], s3[p]
				}
			}
			for ; r < rows; r++ {
				src := a[(i+r)*lda+p0:][:kc]
				for p, v := range src {
					d[p*mr+r] = v
				}
			}
		}
	}
}

// packB copies depth [p0, p0+kc) of panels [lo, hi) of columns [j0, j0+nc)
// of op(B) into dst as panels of nr columns: panel q holds, for each depth
// step p, the values B(p0+p, j0+q*nr+c) at dst[q*kc*nr + p*nr + c]. Columns
// past nc are zero.
func packB(dst, b []float32, ldb int, trans bool, nr, p0, j0, kc, nc, lo, hi int) {
	for q := lo; q < hi; q++ {
		cols := min(nr, nc-q*nr)
		d := dst[q*kc*nr : (q+1)*kc*nr]
		j := j0 + q*nr
		switch {
		case !trans && cols == 16 && nr == 16:
			for p := 0; p < kc; p++ {
				*(*[16]float32)(d[p*16:]) = *(*[16]float32)(b[(p0+p)*ldb+j:])
			}
		case !trans && cols == 32 && nr == 32:
			for p := 0; p < kc; p++ {
				*(*[32]float32)(d[p*32:]) = *(*[32]float32)(b[(p0+p)*ldb+j:])
			}
		case !trans:
			// B is stored k x n: the nr values of one step are adjacent.
			for p := 0; p < kc; p++ {
				dd := d[p*nr : p*nr+nr : p*nr+nr]
				copy(dd, b[(p0+p)*ldb+j:][:cols])
				clear(dd[cols:])
			}
		default:
			// B is stored n x k: each column of op(B) is a row of b;
			// four at a time so that each pass writes more per line.
			if cols < nr {
				clear(d)
			}
			c := 0
			if k8 := kc / 8; transpose8 != nil && k8 > 0 {
				for ; c+8 <= cols; c += 8 {
					_ = b[(j+c+7)*ldb+p0+k8*8-1] // the last element read
					transpose8(&d[c], nr, &b[(j+c)*ldb+p0], ldb, k8)
					for p := k8 * 8; p < kc; p++ {
						for x := 0; x < 8; x++ {
							d[p*nr+c+x] = b[(j+c+x)*ldb+p0+p]
						}
					}
				}
			}
			for ; c+4 <= cols; c += 4 {
				s0 := b[(j+c)*ldb+p0:][:kc]
				s1 := b[(j+c+1)*ldb+p0:][:kc]
				s2 := b[(j+c+2)*ldb+p0:][:kc]
				s3 := b[(j+c+3)*ldb+p0:][:kc]
				for p := range s0 {
					dd := d[p*nr+c : p*nr+c+4 : p*nr+c+4]
					dd[0], dd[1], dd[2], dd[3] = s0[p], s1[p], s2[p], s3[p]
				}
			}
			for ; c < cols; c++ {
				src := b[(j+c)*ldb+p0:][:kc]
				for p, v := range src {
					d[p*nr+c] = v
				}
			}
		}
	}
}
