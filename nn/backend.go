package nn

import (
	"github.com/gopeft/gopeft/kernels"
	// Every compiled backend is linked, so a default backend always exists.
	_ "github.com/gopeft/gopeft/kernels/all"
)

// DefaultBackend returns the backend FromHost and the module constructors
// use when none is given: kernels.Default(), which honours GOPEFT_BACKEND.
// It panics when no backend can start, which only happens when
// GOPEFT_BACKEND names a backend that is not compiled in.
func DefaultBackend() kernels.Backend { return kernels.MustDefault() }

// orDefault returns be, or the default backend when be is nil.
func orDefault(be kernels.Backend) kernels.Backend {
	if be == nil {
		return DefaultBackend()
	}
	return be
}
