package purego

// transposeFunc transposes k8 consecutive 8x8 blocks: element (r, c) of
// block g, src[r*lds + g*8 + c], goes to dst[(g*8+c)*ldd + r]. Packing uses
// one, when it is given one, wherever it gathers 8 rows of the source into
// one step of a panel.
type transposeFunc func(dst *float32, ldd int, src *float32, lds int, k8 int)

// transpose8 is the CPU's transposeFunc, or nil. Products on the pure Go
// micro-kernel pack without it, so that SetGenericGEMM tests the code that
// other architectures run.
var transpose8 transposeFunc

// packA copies rows [i0, i0+mc) and depth [p0, p0+kc) of op(A) into dst as
// panels of mr rows: panel q holds, for each depth step p, the mr values
// A(i0+q*mr+r, p0+p) at dst[q*kc*mr + p*mr + r]. Rows past mc are zero. t8
// may be nil.
func packA(dst, a []float32, lda int, trans bool, mr, i0, p0, mc, kc int, t8 transposeFunc) {
	if trans {
		packAT(dst, a, lda, mr, i0, p0, mc, kc)
		return
	}
	for q := 0; q < mc; q += mr {
		rows := min(mr, mc-q)
		d := dst[q*kc : (q+mr)*kc]
		i := i0 + q
		switch {
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
			if k8 := kc / 8; t8 != nil && k8 > 0 {
				for ; r+8 <= rows; r += 8 {
					_ = a[(i+r+7)*lda+p0+k8*8-1] // the last element read
					t8(&d[r], mr, &a[(i+r)*lda+p0], lda, k8)
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

// packAT is packA for A stored k x m. It reads A a row at a time (the
// values of one depth step for all mc rows lie together) and hands each
// panel its mr values, rather than walking down A once per panel.
func packAT(dst, a []float32, lda int, mr, i0, p0, mc, kc int) {
	full := mc / mr * mr
	for p := 0; p < kc; p++ {
		src := a[(p0+p)*lda+i0:][:mc]
		q := 0
		// Element by element: for these short runs that beats both copy
		// and array assignment (which becomes a call to memmove).
		switch mr {
		case 12:
			for ; q < full; q += 12 {
				d, s := dst[q*kc+p*12:][:12:12], src[q:q+12:q+12]
				d[0], d[1], d[2], d[3], d[4], d[5] = s[0], s[1], s[2], s[3], s[4], s[5]
				d[6], d[7], d[8], d[9], d[10], d[11] = s[6], s[7], s[8], s[9], s[10], s[11]
			}
		case 6:
			for ; q < full; q += 6 {
				d, s := dst[q*kc+p*6:][:6:6], src[q:q+6:q+6]
				d[0], d[1], d[2], d[3], d[4], d[5] = s[0], s[1], s[2], s[3], s[4], s[5]
			}
		default:
			for ; q < full; q += mr {
				copy(dst[q*kc+p*mr:q*kc+p*mr+mr], src[q:q+mr])
			}
		}
		if q < mc {
			d := dst[q*kc+p*mr : q*kc+p*mr+mr]
			copy(d, src[q:])
			clear(d[mc-q:])
		}
	}
}

// packB copies depth [p0, p0+kc) of panels [lo, hi) of columns [j0, j0+nc)
// of op(B) into dst as panels of nr columns: panel q holds, for each depth
// step p, the values B(p0+p, j0+q*nr+c) at dst[q*kc*nr + p*nr + c]. Columns
// past nc are zero. t8 may be nil.
func packB(dst, b []float32, ldb int, trans bool, nr, p0, j0, kc, nc, lo, hi int, t8 transposeFunc) {
	for q := lo; q < hi; q++ {
		cols := min(nr, nc-q*nr)
		d := dst[q*kc*nr : (q+1)*kc*nr]
		j := j0 + q*nr
		switch {
		case !trans:
			// B is stored k x n: the nr values of one step are adjacent.
			for p := 0; p < kc; p++ {
				dd := d[p*nr : p*nr+nr : p*nr+nr]
				copy(dd, b[(p0+p)*ldb+j:][:cols])
				if cols < nr {
					clear(dd[cols:])
				}
			}
		default:
			// B is stored n x k: each column of op(B) is a row of b;
			// four at a time so that each pass writes more per line.
			if cols < nr {
				clear(d)
			}
			c := 0
			if k8 := kc / 8; t8 != nil && k8 > 0 {
				for ; c+8 <= cols; c += 8 {
					_ = b[(j+c+7)*ldb+p0+k8*8-1] // the last element read
					t8(&d[c], nr, &b[(j+c)*ldb+p0], ldb, k8)
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
