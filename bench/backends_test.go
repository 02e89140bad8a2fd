package bench

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
)

// TestBackendsCompiled checks that every backend this build should time is
// registered, so that a benchmark table never silently lacks a column.
func TestBackendsCompiled(t *testing.T) {
	names := kernels.Names()
	for _, want := range wantBackends {
		if !slices.Contains(names, want) {
			t.Errorf("backend %q is not registered (have %v)", want, names)
		}
	}
}
