package purego

import (
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/kernels/kerneltest"
)

// The shared conformance suite, with whichever GEMM kernel the CPU selects.
func TestConformance(t *testing.T) {
	kerneltest.Run(t, New())
}

// The suite again with the portable GEMM micro-kernel forced, so that it is
// covered on machines whose CPU selects an assembly kernel.
func TestConformanceGenericGEMM(t *testing.T) {
	SetGenericGEMM(true)
	defer SetGenericGEMM(false)
	kerneltest.Run(t, New())
}

// The suite again with the pure Go elementwise loops forced, so that they
// are covered on machines whose CPU runs the assembly.
func TestConformanceGenericElementwise(t *testing.T) {
	SetGenericElementwise(true)
	defer SetGenericElementwise(false)
	kerneltest.Run(t, New())
}

// Importing the package registers it under its name.
func TestRegistered(t *testing.T) {
	b, err := kernels.Get(Name)
	if err != nil {
		t.Fatalf("kernels.Get(%q): %v", Name, err)
	}
	if b.Name() != Name {
		t.Errorf("Name() = %q, want %q", b.Name(), Name)
	}
}
