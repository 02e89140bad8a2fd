//go:build cuda && cudaemu

package cuda

import (
	"testing"

	"github.com/gopeft/gopeft/kernels/kerneltest"
)

// TestEmulatedConformance runs the conformance suite on the backend with
// cuda/kernels.cu compiled for the host (go test -tags 'cuda cudaemu'): the
// kernels' arithmetic, indexing, block reductions and the Go glue are
// checked here without a GPU; PTX compilation, the real driver and cuBLAS
// are left to TestConformance on a device.
func TestEmulatedConformance(t *testing.T) {
	kerneltest.Run(t, newEmu())
}
