// device.h is gopeft's own minimal CUDA device header. The kernels are
// compiled with clang in CUDA device-only mode without the CUDA toolkit's
// headers or libdevice (-nocudainc -nocudalib), so this file supplies the few
// things they use: the function-space attributes, thread indices, barriers
// and atomics, all as clang NVPTX builtins. Math functions come from
// math.h in this folder (our own double-precision implementations), because
// libdevice is part of the non-free CUDA toolkit and is not linked.
#ifndef GOPEFT_DEVICE_H
#define GOPEFT_DEVICE_H

#ifndef BLOCK
#define BLOCK 256
#endif

#ifdef GOPEFT_HOST_EMU
// Host emulation (kernels/cuda/emu_host.cpp, build tag cudaemu): the kernels
// compiled for the CPU and run as one block of BLOCK threads, so that the
// conformance suite can check their logic without a GPU. Every kernel loops
// grid-stride over rows and elements, so one block computes any launch.
// __shared__ becomes static: blocks run one at a time.
#define __global__
#define __device__
#define __shared__ static
#define KERNEL extern "C" void

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

extern thread_local int emu_tid;
void emu_sync(void);
static inline int tid(void) { return emu_tid; }
static inline int ntid(void) { return BLOCK; }
static inline int bid(void) { return 0; }
static inline int nbid(void) { return 1; }
static inline void sync_threads(void) { emu_sync(); }
static inline void atomic_add_f32(float *p, float v) {
	float old, sum;
	__atomic_load(p, &old, __ATOMIC_RELAXED);
	do {
		sum = old + v;
	} while (!__atomic_compare_exchange(p, &old, &sum, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}
static inline void atomic_add_i32(int *p, int v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
#else
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define KERNEL extern "C" __global__ void

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

static __device__ inline int tid(void) { return __nvvm_read_ptx_sreg_tid_x(); }
static __device__ inline int ntid(void) { return __nvvm_read_ptx_sreg_ntid_x(); }
static __device__ inline int bid(void) { return __nvvm_read_ptx_sreg_ctaid_x(); }
static __device__ inline int nbid(void) { return __nvvm_read_ptx_sreg_nctaid_x(); }

static __device__ inline void sync_threads(void) { __syncthreads(); }
static __device__ inline void atomic_add_f32(float *p, float v) { __nvvm_atom_add_gen_f(p, v); }
static __device__ inline void atomic_add_i32(int *p, int v) { __nvvm_atom_add_gen_i(p, v); }

#endif

// gid and gstride drive grid-stride loops over 64-bit element counts.
static __device__ inline i64 gid(void) { return (i64)bid() * ntid() + tid(); }
static __device__ inline i64 gstride(void) { return (i64)nbid() * ntid(); }

// Every block-wide reduction below assumes this many threads per block
// (kernels/cuda launches with 256; the host emulation uses fewer).


// block_sum returns the sum of v over the block to every thread. sh must
// hold BLOCK doubles.
static __device__ inline double block_sum(double v, double *sh) {
	int t = tid();
	sh[t] = v;
	sync_threads();
	for (int s = BLOCK / 2; s > 0; s >>= 1) {
		if (t < s) sh[t] += sh[t + s];
		sync_threads();
	}
	double r = sh[0];
	sync_threads();
	return r;
}

// block_max returns the largest v over the block (NaN wins) to every thread.
static __device__ inline double block_max(double v, double *sh) {
	int t = tid();
	sh[t] = v;
	sync_threads();
	for (int s = BLOCK / 2; s > 0; s >>= 1) {
		if (t < s) {
			double o = sh[t + s];
			if (o != o || o > sh[t]) sh[t] = o;
		}
		sync_threads();
	}
	double r = sh[0];
	sync_threads();
	return r;
}

#endif
