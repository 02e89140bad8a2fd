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
// loaded into the model: the loaded adapter derived them. A buffer with a
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
	_ = tuners.WalkTargets(m.Base(), func(n tuners.Node) error {
		l, ok := n.Module.(tuners.Layer)
		if !ok {
			return nil
		}
		b, ok := l.(tuners.Bufferer)
		if !ok {
			return nil
		}
		for _, a := range l.Adapters() {
			for _, buf := range b.Buffers(a) {
				derived["buffer.base_model.model."+n.Path+"."+buf.Name] = buf
			}
		}
		return nil
	})
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
