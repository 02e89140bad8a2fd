//go:build blas

package blas

import (
	"testing"

	"github.com/gopeft/gopeft/kernels/kerneltest"
)

// TestConformance runs the shared kernel suite against a float64 reference.
func TestConformance(t *testing.T) {
	kerneltest.Run(t, New())
}
