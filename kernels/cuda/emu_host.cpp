//go:build cuda && cudaemu

// emu_host.cpp runs cuda/kernels.cu on the CPU for the cudaemu test build
// (go test -tags 'cuda cudaemu' ./kernels/cuda): one block of BLOCK (32) threads per
// launch, __syncthreads as a barrier, and the launch's packed parameter
// buffer unpacked by the kernel's own C++ signature with the same alignment
// rules the GPU uses. It also stands in for the few driver and cuBLAS calls
// the GEMM path makes (cuCtxSetCurrent, a plain column-major Sgemm), so the
// row-major-to-cuBLAS operand swap in shim.h is exercised too. Nothing here
// is linked into a normal -tags cuda build.
#include <barrier>
#include <cstring>
#include <mutex>
#include <thread>
#include <tuple>

#include "../../cuda/kernels.cu"

extern "C" {
#include "cuda_api.h"
}

thread_local int emu_tid;

// A persistent block of BLOCK worker threads: each launch releases them
// through start, they meet at inner for __syncthreads, and at done when the
// kernel returns.
static std::barrier<> emu_start(BLOCK + 1), emu_done(BLOCK + 1), emu_inner(BLOCK);
static void (*emu_thunk)(const char *);
static const char *emu_buf;
static std::once_flag emu_once;

void emu_sync(void) { emu_inner.arrive_and_wait(); }

static void emu_workers() {
	for (int t = 0; t < BLOCK; t++)
		std::thread([t] {
			emu_tid = t;
			for (;;) {
				emu_start.arrive_and_wait();
				emu_thunk(emu_buf);
				emu_done.arrive_and_wait();
			}
		}).detach();
}

template <typename T> static T emu_read(const char *b, size_t &off) {
	off = (off + alignof(T) - 1) & ~(alignof(T) - 1);
	T v;
	std::memcpy(&v, b + off, sizeof(T));
	off += sizeof(T);
	return v;
}

template <typename... A> static void emu_call(void (*f)(A...), const char *buf) {
	size_t off = 0;
	std::tuple<A...> t{emu_read<A>(buf, off)...}; // braced lists evaluate left to right
	std::apply(f, t);
}

#define EMU_KERNELS(X) \
	X(k_strided_copy) X(k_unary) X(k_unary_grad) X(k_binary) X(k_affine) X(k_axpy) X(k_clamp_mask) X(k_reduce) \
	X(k_count_nonfinite) X(k_softmax) X(k_softmax_grad) X(k_norm) X(k_norm_grad_dx) X(k_norm_grad_w) X(k_gather) \
	X(k_scatter_add) X(k_im2col) X(k_col2im) X(k_rope) X(k_uniform) X(k_normal) X(k_adamw) X(k_inverse) \
	X(k_gemm_beta)

extern "C" int emu_launch(const char *name, const char *buf) {
	void (*thunk)(const char *) = nullptr;
#define EMU_CASE(k) \
	if (!std::strcmp(name, #k)) thunk = [](const char *b) { emu_call(k, b); };
	EMU_KERNELS(EMU_CASE)
#undef EMU_CASE
	if (!thunk) return 1;
	std::call_once(emu_once, emu_workers);
	emu_thunk = thunk;
	emu_buf = buf;
	emu_start.arrive_and_wait();
	emu_done.arrive_and_wait();
	return 0;
}

// The driver and cuBLAS calls the GEMM path makes, defined here so that they
// take precedence over the (stub) shared libraries in the emulation build.
extern "C" CUresult cuCtxSetCurrent(CUcontext) { return 0; }

static void emu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc) {
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			double s = 0;
			for (int p = 0; p < k; p++) {
				double a = ta ? A[p + (long)i * lda] : A[i + (long)p * lda];
				double b = tb ? B[j + (long)p * ldb] : B[p + (long)j * ldb];
				s += a * b;
			}
			float *c = &C[i + (long)j * ldc];
			*c = beta == 0 ? (float)(alpha * s) : (float)(alpha * s + (double)beta * *c);
		}
}

extern "C" cublasStatus_t cublasSgemm_v2(cublasHandle_t, int ta, int tb, int m, int n, int k, const float *alpha,
                                         const float *A, int lda, const float *B, int ldb, const float *beta,
                                         float *C, int ldc) {
	emu_sgemm(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
	return 0;
}

extern "C" cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, int ta, int tb, int m, int n, int k,
                                                    const float *alpha, const float *A, int lda, long long sA,
                                                    const float *B, int ldb, long long sB, const float *beta,
                                                    float *C, int ldc, long long sC, int batch) {
	for (int i = 0; i < batch; i++)
		emu_sgemm(ta, tb, m, n, k, *alpha, A + i * sA, lda, B + i * sB, ldb, *beta, C + i * sC, ldc);
	return 0;
}
