//go:build cuda

package all

import (
	"errors"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/kernels/cuda"
)

// With -tags cuda the CUDA backend is registered with the highest priority.
func TestCudaLinked(t *testing.T) {
	names := kernels.Names()
	if len(names) == 0 || names[0] != "cuda" {
		t.Fatalf("cuda is not the first backend under -tags cuda; have %v", names)
	}
}

// Without a GPU (CI runs this against stub CUDA libraries) the CUDA
// constructor fails cleanly with cuda.ErrNoDevice and Default falls back to
// the next backend; with one, Default is cuda.
func TestCudaDefaultOrFallback(t *testing.T) {
	t.Setenv(kernels.EnvBackend, "")
	b, err := kernels.Default()
	if err != nil {
		t.Fatalf("Default(): %v", err)
	}
	_, cerr := kernels.Get("cuda")
	switch {
	case cerr == nil && b.Name() != "cuda":
		t.Errorf("cuda starts but Default() = %s", b.Name())
	case cerr != nil && b.Name() == "cuda":
		t.Errorf("cuda fails (%v) but Default() = cuda", cerr)
	case cerr != nil:
		if !errors.Is(cerr, cuda.ErrNoDevice) {
			t.Errorf("cuda failed with %v, want an error wrapping cuda.ErrNoDevice on a machine without a GPU", cerr)
		}
		want := slices.DeleteFunc(kernels.Names(), func(n string) bool { return n == "cuda" })[0]
		if b.Name() != want {
			t.Errorf("Default() = %s, want the fallback %s", b.Name(), want)
		}
		t.Logf("no GPU: Default() fell back to %s (%v)", b.Name(), cerr)
	}
}
