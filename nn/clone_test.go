package nn

import (
	"slices"
	"strings"
	"testing"
)

// TestCloneModule checks that every known layer is copied into new tensors
// with equal values (writing the copy leaves the original alone) and that
// an unknown type is an error naming it.
func TestCloneModule(t *testing.T) {
	rng := NewRNG(1)
	ln := NewLayerNorm(nil, 4, 1e-5)
	for _, tc := range []struct {
		name string
		m    Module
	}{
		{"linear", NewLinear(nil, 3, 4, true, rng)},
		{"linear no bias", NewLinear(nil, 3, 4, false, rng)},
		{"conv1D", NewConv1D(nil, 3, 4, rng)},
		{"embedding", NewEmbedding(nil, 5, 4, rng)},
		{"layernorm", ln},
		{"rmsnorm", NewRMSNorm(nil, 4, 1e-6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CloneModule(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			orig, copied := NamedParameters(tc.m), NamedParameters(c)
			if len(orig) != len(copied) || len(orig) == 0 {
				t.Fatalf("%d params copied, want %d", len(copied), len(orig))
			}
			for i, p := range orig {
				q := copied[i]
				if p.Name != q.Name || p.T == q.T || !slices.Equal(p.T.Data(), q.T.Data()) {
					t.Fatalf("param %s: not an equal, separate copy", p.Name)
				}
				before := p.T.Data()
				q.T.CopyFromHost(make([]float32, q.T.Len()))
				if !slices.Equal(p.T.Data(), before) {
					t.Fatalf("param %s: writing the copy changed the original", p.Name)
				}
			}
		})
	}
	if _, err := CloneModule(NewSequential()); err == nil || !strings.Contains(err.Error(), "*nn.Sequential") {
		t.Errorf("unknown type: err = %v, want one naming *nn.Sequential", err)
	}
}
