//go:build cuda && cudaemu

package cuda

/*
#cgo CXXFLAGS: -std=c++20 -O1 -DGOPEFT_HOST_EMU -DBLOCK=32 -I${SRCDIR} -I${SRCDIR}/../../cuda
#cgo LDFLAGS: -lstdc++ -pthread
#include <stdlib.h>
#include <string.h>
int emu_launch(const char *name, const char *buf);
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"

	"github.com/gopeft/gopeft/kernels"
)

// emuDriver runs the backend on the CPU: host memory for device memory,
// cuda/kernels.cu compiled for the host (emu_host.cpp) for the PTX, run as
// one block of 32 threads (the kernels do not depend on the block size), and a
// plain column-major GEMM behind the same cuBLAS call the GPU path makes.
// Only the cudaemu test build has it; it checks the kernels' logic and the
// backend's glue with the conformance suite on machines without a GPU.
type emuDriver struct {
	mu sync.Mutex // one launch at a time: the emulator has one barrier
}

func newEmu() *Backend { return &Backend{d: &emuDriver{}} }

func (*emuDriver) deviceName() string { return "host emulation" }

func (*emuDriver) malloc(bytes int) uint64 {
	if bytes == 0 {
		return 0
	}
	return uint64(uintptr(C.calloc(C.size_t(bytes), 1)))
}

func (*emuDriver) free(p uint64) { C.free(hostPtr(p)) }

// hostPtr turns an emulated device address (C heap memory) back into a
// pointer. The memory is C's, never Go's, so the conversion is sound.
func hostPtr(p uint64) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(nil), uintptr(p))
}

func (*emuDriver) htod(dst uint64, src unsafe.Pointer, bytes int) {
	C.memmove(hostPtr(dst), src, C.size_t(bytes))
}
func (*emuDriver) dtoh(dst unsafe.Pointer, src uint64, bytes int) {
	C.memmove(dst, hostPtr(src), C.size_t(bytes))
}
func (*emuDriver) dtod(dst, src uint64, bytes int) {
	C.memmove(hostPtr(dst), hostPtr(src), C.size_t(bytes))
}
func (*emuDriver) memset32(dst uint64, v uint32, n int) {
	s := unsafe.Slice((*uint32)(hostPtr(dst)), n)
	for i := range s {
		s[i] = v
	}
}
func (*emuDriver) sync() error { return nil }

func (e *emuDriver) launch(name string, grid, block int, a *args) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	buf := C.CBytes(a.b)
	defer C.free(buf)
	if C.emu_launch(cn, (*C.char)(buf)) != 0 {
		panic("cuda emulation: unknown kernel " + name)
	}
	runtime.KeepAlive(a)
}

func (e *emuDriver) gemm(transA, transB bool, m, n, k int, alpha float32, a uint64, lda, sa int,
	b uint64, ldb, sb int, beta float32, c uint64, ldc, sc, batch int) {
	d := new(device) // zero context and handle: emu_host.cpp's stand-ins ignore them
	d.gemm(transA, transB, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch)
}

// The emulation registers as backend "cudaemu" (never the default: priority
// below purego), so that GOPEFT_BACKEND=cudaemu runs any test, the golden
// suite included, through the CUDA backend's code on the CPU.
func init() {
	kernels.Register(kernels.Registration{
		Name:     "cudaemu",
		Priority: -10,
		New:      func() (kernels.Backend, error) { return newEmu(), nil },
	})
}
