package all

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// The pure Go backend is always linked in.
func TestPureGoLinked(t *testing.T) {
	if !slices.Contains(kernels.Names(), "purego") {
		t.Fatalf("purego not registered; have %v", kernels.Names())
	}
	b, err := kernels.Get("purego")
	if err != nil || b.Name() != "purego" {
		t.Fatalf("Get(purego) = %v, %v", b, err)
	}
}

// Default picks the highest-priority backend that starts.
func TestDefaultStarts(t *testing.T) {
	t.Setenv(kernels.EnvBackend, "")
	b, err := kernels.Default()
	if err != nil {
		t.Fatalf("Default(): %v", err)
	}
	if names := kernels.Names(); b.Name() != names[0] {
		// Only a backend that fails to start may be passed over.
		for _, n := range names {
			if n == b.Name() {
				break
			}
			if _, err := kernels.Get(n); err == nil {
				t.Errorf("Default() = %s, but %s has higher priority and starts", b.Name(), n)
			}
		}
	}
}
