// peakflops measures what bench/README.md's peak figures are derived from:
// the clock the cores actually run at (turbo included) and the fp32 FMA
// throughput of one core and of all cores at once, with AVX2 and AVX-512.
//
// Build and run: make peak (gcc -O2 -pthread build/peakflops.c).
// x86-64 only. Each figure comes from a register-only loop, so it is an upper
// bound that no memory traffic can reach, which is what "peak" means.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { ITERS = 100000000 };

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

// ghz times a chain of dependent integer multiplies (3 cycles each on every
// recent Intel and AMD core); additions of immediates are not used because
// newer cores can fold them away.
static double ghz(void) {
	long n = ITERS;
	double t0 = now();
	__asm__ volatile(
		"mov $3, %%rax\n\tmov $5, %%rbx\n"
		"1:\n\t"
		"imul %%rbx, %%rax\n\timul %%rbx, %%rax\n\timul %%rbx, %%rax\n\timul %%rbx, %%rax\n\timul %%rbx, %%rax\n\t"
		"imul %%rbx, %%rax\n\timul %%rbx, %%rax\n\timul %%rbx, %%rax\n\timul %%rbx, %%rax\n\timul %%rbx, %%rax\n\t"
		"dec %0\n\tjnz 1b\n"
		: "+r"(n)::"rax", "rbx", "cc");
	return ITERS * 10.0 * 3 / (now() - t0) / 1e9;
}

// FMA12 issues 12 independent FMAs per iteration, enough to cover the
// latency (4 cycles) of two FMA units.
#define FMA12(R)                                                                                   \
	"vfmadd231ps %%" R "14, %%" R "15, %%" R "0\n\tvfmadd231ps %%" R "14, %%" R "15, %%" R "1\n\t"    \
	"vfmadd231ps %%" R "14, %%" R "15, %%" R "2\n\tvfmadd231ps %%" R "14, %%" R "15, %%" R "3\n\t"    \
	"vfmadd231ps %%" R "14, %%" R "15, %%" R "4\n\tvfmadd231ps %%" R "14, %%" R "15, %%" R "5\n\t"    \
	"vfmadd231ps %%" R "14, %%" R "15, %%" R "6\n\tvfmadd231ps %%" R "14, %%" R "15, %%" R "7\n\t"    \
	"vfmadd231ps %%" R "14, %%" R "15, %%" R "8\n\tvfmadd231ps %%" R "14, %%" R "15, %%" R "9\n\t"    \
	"vfmadd231ps %%" R "14, %%" R "15, %%" R "10\n\tvfmadd231ps %%" R "14, %%" R "15, %%" R "11\n\t"

#define CLOBBERS "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm14", "xmm15"

// gflops returns the fp32 GFLOP/s of one core issuing FMAs of the given
// width (8 lanes: AVX2 ymm, 16 lanes: AVX-512 zmm).
static double gflops(int lanes) {
	long n = ITERS;
	double t0 = now();
	if (lanes == 16) {
		__asm__ volatile("vxorps %%xmm14, %%xmm14, %%xmm14\n\tvxorps %%xmm15, %%xmm15, %%xmm15\n"
				 "2:\n\t" FMA12("zmm") "dec %0\n\tjnz 2b\n\tvzeroupper\n"
				 : "+r"(n)::CLOBBERS);
	} else {
		__asm__ volatile("vxorps %%xmm14, %%xmm14, %%xmm14\n\tvxorps %%xmm15, %%xmm15, %%xmm15\n"
				 "3:\n\t" FMA12("ymm") "dec %0\n\tjnz 3b\n\tvzeroupper\n"
				 : "+r"(n)::CLOBBERS);
	}
	return ITERS * 12.0 * lanes * 2 / (now() - t0) / 1e9;
}

static int lanes_arg;

static void *worker(void *out) {
	*(double *)out = gflops(lanes_arg);
	return NULL;
}

// all runs gflops on every online CPU at once and returns the sum.
static double all(int ncpu, int lanes) {
	pthread_t th[256];
	double res[256];
	lanes_arg = lanes;
	for (int i = 0; i < ncpu; i++)
		pthread_create(&th[i], NULL, worker, &res[i]);
	double sum = 0;
	for (int i = 0; i < ncpu; i++) {
		pthread_join(th[i], NULL);
		sum += res[i];
	}
	return sum;
}

int main(void) {
	__builtin_cpu_init();
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu > 256)
		ncpu = 256;
	double f = ghz();
	printf("cpus online: %d\n", ncpu);
	printf("clock (dependent imul chain, one core busy): %.2f GHz\n", f);
	if (!__builtin_cpu_supports("fma") || !__builtin_cpu_supports("avx2")) {
		printf("no AVX2/FMA: nothing more to measure\n");
		return 0;
	}
	double g = gflops(8);
	printf("AVX2 FMA, one core:      %6.1f GFLOP/s = %.2f FMA instructions/cycle at %.2f GHz\n", g, g / 16 / f, f);
	printf("AVX2 FMA, all %d cores:  %6.1f GFLOP/s\n", ncpu, all(ncpu, 8));
	if (__builtin_cpu_supports("avx512f")) {
		g = gflops(16);
		printf("AVX-512 FMA, one core:   %6.1f GFLOP/s = %.2f FMA instructions/cycle at %.2f GHz\n", g, g / 32 / f, f);
		printf("AVX-512 FMA, all %d cores: %6.1f GFLOP/s\n", ncpu, all(ncpu, 16));
	}
	return 0;
}
