// shim.h: small C helpers around cuda_api.h for the cgo code. Every helper
// makes the backend's context current first, because a goroutine may move
// between OS threads between two cgo calls and CUDA contexts are per thread.
#ifndef GOPEFT_CUDA_SHIM_H
#define GOPEFT_CUDA_SHIM_H

#include "cuda_api.h"

static inline CUresult g_alloc(CUcontext c, CUdeviceptr *p, size_t bytes) {
	CUresult r = cuCtxSetCurrent(c);
	if (r) return r;
	r = cuMemAlloc_v2(p, bytes);
	if (r) return r;
	return cuMemsetD32_v2(*p, 0, bytes / 4);
}

// g_free waits for the device first: the garbage collector may free a
// buffer that a kernel launched earlier (asynchronously) still reads.
static inline CUresult g_free(CUcontext c, CUdeviceptr p) {
	CUresult r = cuCtxSetCurrent(c);
	if (!r) r = cuCtxSynchronize();
	return r ? r : cuMemFree_v2(p);
}

static inline CUresult g_htod(CUcontext c, CUdeviceptr d, const void *s, size_t bytes) {
	CUresult r = cuCtxSetCurrent(c);
	return r ? r : cuMemcpyHtoD_v2(d, s, bytes);
}

static inline CUresult g_dtoh(CUcontext c, void *d, CUdeviceptr s, size_t bytes) {
	CUresult r = cuCtxSetCurrent(c);
	return r ? r : cuMemcpyDtoH_v2(d, s, bytes);
}

static inline CUresult g_dtod(CUcontext c, CUdeviceptr d, CUdeviceptr s, size_t bytes) {
	CUresult r = cuCtxSetCurrent(c);
	return r ? r : cuMemcpyDtoD_v2(d, s, bytes);
}

static inline CUresult g_memset32(CUcontext c, CUdeviceptr d, unsigned int v, size_t n) {
	CUresult r = cuCtxSetCurrent(c);
	return r ? r : cuMemsetD32_v2(d, v, n);
}

static inline CUresult g_sync(CUcontext c) {
	CUresult r = cuCtxSetCurrent(c);
	return r ? r : cuCtxSynchronize();
}

// g_launch launches f on the legacy default stream with its parameters
// packed in args (laid out as the kernel's parameter list, natural
// alignment), which saves building a void* per parameter in Go.
static inline CUresult g_launch(CUcontext c, CUfunction f, unsigned int grid, unsigned int block,
                                void *args, size_t size) {
	CUresult r = cuCtxSetCurrent(c);
	if (r) return r;
	void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, args, CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
	                 CU_LAUNCH_PARAM_END};
	return cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, (CUstream)0, NULL, extra);
}

static inline const char *g_errstr(CUresult e) {
	const char *s = 0;
	if (cuGetErrorString(e, &s) != CUDA_SUCCESS || !s) return "unknown CUDA error";
	return s;
}

// g_gemm is a row-major (batched) GEMM on cuBLAS's column-major interface:
// C = op(A) op(B) row-major is C^T = op(B)^T op(A)^T column-major, so the
// operands are swapped and no data is transposed.
static inline cublasStatus_t g_gemm(CUcontext c, cublasHandle_t h, int transA, int transB, int m,
                                    int n, int k, float alpha, CUdeviceptr A, int lda, long long sA,
                                    CUdeviceptr B, int ldb, long long sB, float beta, CUdeviceptr C,
                                    int ldc, long long sC, int batch) {
	if (cuCtxSetCurrent(c)) return -1;
	int ta = transB ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
	if (batch <= 1)
		return cublasSgemm_v2(h, ta, tb, n, m, k, &alpha, (const float *)B, ldb, (const float *)A, lda,
		                      &beta, (float *)C, ldc);
	return cublasSgemmStridedBatched(h, ta, tb, n, m, k, &alpha, (const float *)B, ldb, sB,
	                                 (const float *)A, lda, sA, &beta, (float *)C, ldc, sC, batch);
}

// g_sgemm_raw is a plain column-major cublasSgemm_v2, C = A B with
// alpha 1 and beta 0, for the benchmark baseline.
static inline cublasStatus_t g_sgemm_raw(CUcontext c, cublasHandle_t h, int m, int n, int k, CUdeviceptr A,
                                         CUdeviceptr B, CUdeviceptr C) {
	if (cuCtxSetCurrent(c)) return -1;
	float alpha = 1, beta = 0;
	return cublasSgemm_v2(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, (const float *)A, m, (const float *)B, k,
	                      &beta, (float *)C, m);
}

#endif
