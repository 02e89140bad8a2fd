/* cudastub.c: stand-ins for libcuda.so and libcublas.so with every symbol
 * the CUDA backend binds (kernels/cuda/cuda_api.h), each failing as a
 * machine without a GPU would: the driver calls return
 * CUDA_ERROR_NO_DEVICE (100), the cuBLAS calls CUBLAS_STATUS_NOT_INITIALIZED
 * (1). CI builds them (build/cudastub.sh) to compile, vet, link and run the
 * -tags cuda build on machines without CUDA, so the GPU path cannot rot
 * unseen, and to check that kernels.Default falls back when the CUDA
 * backend cannot start. Compile with -DSTUB_CUBLAS for the cuBLAS half.
 */
#include "../kernels/cuda/cuda_api.h"

#ifndef STUB_CUBLAS
#define NODEV 100
CUresult cuInit(unsigned int flags) { (void)flags; return NODEV; }
CUresult cuDeviceGetCount(int *count) { *count = 0; return NODEV; }
CUresult cuDeviceGet(CUdevice *dev, int ordinal) { (void)dev; (void)ordinal; return NODEV; }
CUresult cuDeviceGetName(char *name, int len, CUdevice dev) { (void)name; (void)len; (void)dev; return NODEV; }
CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) { (void)ctx; (void)dev; return NODEV; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) { (void)dev; return NODEV; }
CUresult cuCtxSetCurrent(CUcontext ctx) { (void)ctx; return NODEV; }
CUresult cuCtxSynchronize(void) { return NODEV; }
CUresult cuModuleLoadData(CUmodule *mod, const void *image) { (void)mod; (void)image; return NODEV; }
CUresult cuModuleGetFunction(CUfunction *fn, CUmodule mod, const char *name) { (void)fn; (void)mod; (void)name; return NODEV; }
CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                        unsigned int by, unsigned int bz, unsigned int sharedMem, CUstream stream, void **params,
                        void **extra) {
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)sharedMem; (void)stream;
	(void)params; (void)extra;
	return NODEV;
}
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) { (void)p; (void)bytes; return NODEV; }
CUresult cuMemFree_v2(CUdeviceptr p) { (void)p; return NODEV; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes) { (void)dst; (void)src; (void)bytes; return NODEV; }
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes) { (void)dst; (void)src; (void)bytes; return NODEV; }
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) { (void)dst; (void)src; (void)bytes; return NODEV; }
CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned int v, size_t n) { (void)dst; (void)v; (void)n; return NODEV; }
CUresult cuGetErrorString(CUresult err, const char **s) {
	*s = err == NODEV ? "CUDA_ERROR_NO_DEVICE (gopeft stub libcuda: no driver)" : "gopeft stub libcuda";
	return 0;
}
#else
#define NOTINIT 1
cublasStatus_t cublasCreate_v2(cublasHandle_t *h) { (void)h; return NOTINIT; }
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) { (void)h; return NOTINIT; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, CUstream s) { (void)h; (void)s; return NOTINIT; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, int mode) { (void)h; (void)mode; return NOTINIT; }
cublasStatus_t cublasSgemm_v2(cublasHandle_t h, int transa, int transb, int m, int n, int k, const float *alpha,
                              const float *A, int lda, const float *B, int ldb, const float *beta, float *C, int ldc) {
	(void)h; (void)transa; (void)transb; (void)m; (void)n; (void)k; (void)alpha; (void)A; (void)lda; (void)B;
	(void)ldb; (void)beta; (void)C; (void)ldc;
	return NOTINIT;
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, int transa, int transb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda, long long strideA,
                                         const float *B, int ldb, long long strideB, const float *beta, float *C,
                                         int ldc, long long strideC, int batch) {
	(void)h; (void)transa; (void)transb; (void)m; (void)n; (void)k; (void)alpha; (void)A; (void)lda; (void)strideA;
	(void)B; (void)ldb; (void)strideB; (void)beta; (void)C; (void)ldc; (void)strideC; (void)batch;
	return NOTINIT;
}
#endif
