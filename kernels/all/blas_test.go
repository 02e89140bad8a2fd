//go:build blas

package all

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// With -tags blas the OpenBLAS backend is linked in.
func TestBlasLinked(t *testing.T) {
	if !slices.Contains(kernels.Names(), "blas") {
		t.Fatalf("blas not registered under -tags blas; have %v", kernels.Names())
	}
}
