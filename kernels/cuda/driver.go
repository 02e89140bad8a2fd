//go:build cuda

package cuda

/*
#cgo CFLAGS: -I${SRCDIR}
#cgo LDFLAGS: -L/usr/local/cuda/lib64 -L/usr/local/cuda/lib64/stubs -lcublas -lcuda
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// ptx is cuda/kernels.cu compiled by build/ptx.sh.
//
//go:embed kernels.ptx
var ptx string

// ErrNoDevice is returned by New when the CUDA driver reports no usable
// device (or the library linked is a stub without a driver behind it).
var ErrNoDevice = errors.New("cuda: no CUDA device")

// cudaErrorNoDevice and cudaErrorNotInitialized... are the driver's codes
// that mean "no GPU here" rather than "something is broken".
const (
	cudaErrorNoDevice      = 100
	cudaErrorStubLibrary   = 34
	cudaErrorNotSupported  = 801
	cudaErrorInvalidDevice = 101
)

// cuErr turns a CUresult into an error naming the call.
func cuErr(what string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return fmt.Errorf("cuda: %s: %s (CUresult %d)", what, C.GoString(C.g_errstr(r)), int(r))
}

// check panics on a failed driver call inside a kernel: the Backend interface
// has no error results, and a failing launch or copy on a working device is
// a programming error (bad sizes) or a lost device, not bad user input.
func check(what string, r C.CUresult) {
	if err := cuErr(what, r); err != nil {
		panic(err)
	}
}

// device is the driver state of one backend: the primary context of device
// 0, the loaded module with its kernels, and a cuBLAS handle.
type device struct {
	ctx    C.CUcontext
	dev    C.CUdevice
	name   string
	mod    C.CUmodule
	fns    map[string]C.CUfunction
	blas   C.cublasHandle_t
	closed bool
	// blasMu serialises cuBLAS calls on the shared handle (kernel launches
	// need no lock: they all go to the legacy default stream).
	blasMu sync.Mutex
}

// kernelNames are the entry points of kernels.ptx.
var kernelNames = []string{
	"k_strided_copy", "k_unary", "k_unary_grad", "k_binary", "k_affine", "k_axpy",
	"k_clamp_mask", "k_reduce", "k_count_nonfinite", "k_softmax", "k_softmax_grad", "k_norm",
	"k_norm_grad_dx", "k_norm_grad_w", "k_gather", "k_scatter_add", "k_im2col", "k_col2im",
	"k_rope", "k_uniform", "k_normal", "k_adamw", "k_inverse", "k_gemm_beta",
}

// openDevice initialises the driver, retains device 0's primary context
// (shared with the CUDA runtime that cuBLAS uses), loads the PTX and makes a
// cuBLAS handle with FP32 math (no TF32).
func openDevice() (*device, error) {
	if r := C.cuInit(0); r != C.CUDA_SUCCESS {
		err := cuErr("cuInit", r)
		switch r {
		case cudaErrorNoDevice, cudaErrorStubLibrary, cudaErrorNotSupported, cudaErrorInvalidDevice:
			return nil, fmt.Errorf("%w: %v", ErrNoDevice, err)
		}
		return nil, err
	}
	var count C.int
	if err := cuErr("cuDeviceGetCount", C.cuDeviceGetCount(&count)); err != nil {
		return nil, err
	}
	if count < 1 {
		return nil, fmt.Errorf("%w: the driver reports 0 devices", ErrNoDevice)
	}
	d := &device{fns: map[string]C.CUfunction{}}
	if err := cuErr("cuDeviceGet", C.cuDeviceGet(&d.dev, 0)); err != nil {
		return nil, err
	}
	var name [256]C.char
	if C.cuDeviceGetName(&name[0], C.int(len(name)), d.dev) == C.CUDA_SUCCESS {
		d.name = C.GoString(&name[0])
	}
	if err := cuErr("cuDevicePrimaryCtxRetain", C.cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return nil, err
	}
	if err := d.init(); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *device) init() error {
	if err := cuErr("cuCtxSetCurrent", C.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	img := C.CString(ptx)
	defer C.free(unsafe.Pointer(img))
	if err := cuErr("cuModuleLoadData (kernels.ptx)", C.cuModuleLoadData(&d.mod, unsafe.Pointer(img))); err != nil {
		return err
	}
	for _, n := range kernelNames {
		cn := C.CString(n)
		var f C.CUfunction
		r := C.cuModuleGetFunction(&f, d.mod, cn)
		C.free(unsafe.Pointer(cn))
		if err := cuErr("cuModuleGetFunction "+n, r); err != nil {
			return err
		}
		d.fns[n] = f
	}
	if s := C.cublasCreate_v2(&d.blas); s != C.CUBLAS_STATUS_SUCCESS {
		d.blas = nil
		return fmt.Errorf("cuda: cublasCreate: status %d", int(s))
	}
	if s := C.cublasSetMathMode(d.blas, C.CUBLAS_DEFAULT_MATH); s != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cuda: cublasSetMathMode: status %d", int(s))
	}
	if s := C.cublasSetStream_v2(d.blas, nil); s != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cuda: cublasSetStream: status %d", int(s))
	}
	return nil
}

// close releases the cuBLAS handle and the primary context.
func (d *device) close() {
	if d.closed {
		return
	}
	d.closed = true
	C.cuCtxSetCurrent(d.ctx)
	if d.blas != nil {
		C.cublasDestroy_v2(d.blas)
	}
	C.cuDevicePrimaryCtxRelease_v2(d.dev)
}

func (d *device) deviceName() string { return d.name }

// malloc returns n zeroed bytes of device memory (0 for n == 0).
func (d *device) malloc(bytes int) uint64 {
	if bytes == 0 {
		return 0
	}
	var p C.CUdeviceptr
	check(fmt.Sprintf("cuMemAlloc(%d bytes)", bytes), C.g_alloc(d.ctx, &p, C.size_t(bytes)))
	return uint64(p)
}

func (d *device) free(p uint64) {
	if p != 0 {
		check("cuMemFree", C.g_free(d.ctx, cptr(p)))
	}
}

func (d *device) htod(dst uint64, src unsafe.Pointer, bytes int) {
	if bytes > 0 {
		check("cuMemcpyHtoD", C.g_htod(d.ctx, cptr(dst), src, C.size_t(bytes)))
	}
}

func (d *device) dtoh(dst unsafe.Pointer, src uint64, bytes int) {
	if bytes > 0 {
		check("cuMemcpyDtoH", C.g_dtoh(d.ctx, dst, cptr(src), C.size_t(bytes)))
	}
}

func (d *device) dtod(dst, src uint64, bytes int) {
	if bytes > 0 {
		check("cuMemcpyDtoD", C.g_dtod(d.ctx, cptr(dst), cptr(src), C.size_t(bytes)))
	}
}

func (d *device) memset32(dst uint64, v uint32, n int) {
	if n > 0 {
		check("cuMemsetD32", C.g_memset32(d.ctx, cptr(dst), C.uint(v), C.size_t(n)))
	}
}

func (d *device) sync() error { return cuErr("cuCtxSynchronize", C.g_sync(d.ctx)) }

// launch runs kernel name on grid blocks of block threads with the packed
// parameters a. The buffer's size is exactly that of the parameter list
// (no tail padding), as the driver computes it from the PTX.
func (d *device) launch(name string, grid, block int, a *args) {
	f, ok := d.fns[name]
	if !ok {
		panic("cuda: unknown kernel " + name)
	}
	check("cuLaunchKernel "+name, C.g_launch(d.ctx, f, C.uint(grid), C.uint(block), unsafe.Pointer(&a.b[0]), C.size_t(len(a.b))))
	runtime.KeepAlive(a)
}

// gemm calls cuBLAS on device pointers; see g_gemm in shim.h.
func (d *device) gemm(transA, transB bool, m, n, k int, alpha float32, a uint64, lda, sa int,
	b uint64, ldb, sb int, beta float32, c uint64, ldc, sc, batch int) {
	d.blasMu.Lock()
	defer d.blasMu.Unlock()
	s := C.g_gemm(d.ctx, d.blas, cbool(transA), cbool(transB), C.int(m), C.int(n), C.int(k), C.float(alpha),
		cptr(a), C.int(lda), C.longlong(sa), cptr(b), C.int(ldb), C.longlong(sb), C.float(beta), cptr(c), C.int(ldc), C.longlong(sc), C.int(batch))
	if s != C.CUBLAS_STATUS_SUCCESS {
		panic(fmt.Sprintf("cuda: cublasSgemm m=%d n=%d k=%d batch=%d: status %d", m, n, k, batch, int(s)))
	}
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// cptr converts a device address to the driver's CUdeviceptr.
func cptr(p uint64) C.CUdeviceptr { return C.CUdeviceptr(p) }

// sgemmRaw calls cublasSgemm_v2 directly (column-major, no transposes,
// alpha 1, beta 0) on device addresses, without the backend's argument
// handling: the baseline the GEMM benchmark compares Gemm against.
func (d *device) sgemmRaw(m, n, k int, a, b, c uint64) error {
	if s := C.g_sgemm_raw(d.ctx, d.blas, C.int(m), C.int(n), C.int(k), cptr(a), cptr(b), cptr(c)); s != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cuda: cublasSgemm: status %d", int(s))
	}
	return nil
}
