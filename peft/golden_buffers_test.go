package peft_test

import (
	"slices"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// checkBuffers compares the state the adapter layers derive themselves
// (tuners.Bufferer: seeded projections, permutations) with PEFT's recorded
// "buffer.*" tensors of io.safetensors, exactly. The buffers are never
// loaded into the model: the loaded adapter derived them. Layer buffers and
// method-level ones (peft.Model.Buffers) are both covered; a buffer defined
// only up to a right orthogonal factor (tuners.Buffer.Gram) is compared
// through B B^T. A buffer with a
// Tol (SVD factors) is compared within it. The check counts
// as run when every recorded buffer was derived; buffers no layer derives
// are named in the case's reason instead.
func (c *goldenCase) checkBuffers() {
	var recorded []string
	for k := range c.io {
		if strings.HasPrefix(k, "buffer.") {
			recorded = append(recorded, k)
		}
	}
	if len(recorded) == 0 {
		return
	}
	sort.Strings(recorded)
	_, m, err := c.loaded()
	if err != nil {
		c.failf("buffers: loading: %v", err)
		return
	}
	derived := map[string]tuners.Buffer{}
	for _, a := range m.Adapters() {
		for k, buf := range m.Buffers(a) {
			derived["buffer."+k] = buf
		}
	}
	var missing []string
	for _, k := range recorded {
		got, ok := derived[k]
		if !ok {
			missing = append(missing, k)
			continue
		}
		want := c.io[k]
		switch {
		case !slices.Equal(got.Shape, want.Shape):
			c.failf("buffers: %s has shape %v, want %v", k, got.Shape, want.Shape)
		case want.I64 != nil:
			if !slices.Equal(got.I64, want.I64) {
				c.failf("buffers: %s = %v, want %v", k, got.I64, want.I64)
			}
		case got.Gram:
			g, w := gram(got.F32, got.Shape), gram(want.F32, want.Shape)
			if msg := closeEnough(g, w, got.Tol, got.Tol); msg != "" || len(got.F32) != len(want.F32) {
				c.failf("buffers: %s differs (compared as B B^T): %s", k, msg)
			}
		default:
			if msg := closeEnough(got.F32, want.F32, got.Tol, got.Tol); msg != "" || len(got.F32) != len(want.F32) {
				c.failf("buffers: %s differs: %s", k, msg)
			}
		}
	}
	if len(missing) > 0 {
		c.whyNo = append(c.whyNo, "buffers: not derived: "+strings.Join(missing, ", "))
		return
	}
	c.ran("buffers")
}

// gram returns B B^T (float32) of the row-major matrix b whose last axis
// is the column axis.
func gram(b []float32, shape []int) []float32 {
	if len(shape) == 0 {
		return b
	}
	cols := shape[len(shape)-1]
	if cols == 0 {
		return nil
	}
	rows := len(b) / cols
	out := make([]float32, rows*rows)
	for i := range rows {
		for j := range rows {
			var s float64
			for k := range cols {
				s += float64(b[i*cols+k]) * float64(b[j*cols+k])
			}
			out[i*rows+j] = float32(s)
		}
	}
	return out
}
