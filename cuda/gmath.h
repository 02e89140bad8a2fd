// gmath.h: double-precision elementary functions for the kernels, written
// for gopeft because libdevice (the CUDA toolkit's math library) is not
// available to the clang build that makes our PTX. Each function is accurate
// to a few units in the last place of a double, far below float32 rounding,
// so results rounded to float32 agree with the CPU backends (which evaluate
// in float64 with Go's math package) except in rare rounding ties. Only
// operations PTX has natively are used: +, *, /, fma, sqrt, rint, floor,
// fabs and bit casts.
#ifndef GOPEFT_GMATH_H
#define GOPEFT_GMATH_H

#ifdef GMATH_HOST
// Host build for cuda/gmath_check.cpp, which compares these functions with
// the C library.
#define __device__
typedef unsigned long long u64;
typedef long long i64;
#else
#include "device.h"
#endif

#define G_INF __builtin_inf()
#define G_NAN __builtin_nan("")
#define G_LN2_HI 6.93147180369123816490e-01
#define G_LN2_LO 1.90821492927058770002e-10
#define G_PI 3.14159265358979323846

static __device__ inline double g_bits2d(u64 b) { return __builtin_bit_cast(double, b); }
static __device__ inline u64 g_d2bits(double d) { return __builtin_bit_cast(u64, d); }

// g_pow2 returns 2^n for -1022 <= n <= 1023.
static __device__ inline double g_pow2(int n) { return g_bits2d((u64)(n + 1023) << 52); }

// g_ldexp returns p * 2^k for |k| <= 2098, in two steps so that neither
// factor overflows or underflows on its own.
static __device__ inline double g_ldexp(double p, int k) {
	int k1 = k / 2;
	return p * g_pow2(k1) * g_pow2(k - k1);
}

static __device__ double g_exp(double x) {
	if (x != x) return x;
	if (x > 709.8) return G_INF;
	if (x < -745.2) return 0.0;
	double k = __builtin_rint(x * 1.4426950408889634074);
	double r = (x - k * G_LN2_HI) - k * G_LN2_LO; // |r| <= 0.35
	double p = 1.0;
	for (int i = 14; i >= 1; i--) p = 1.0 + p * r * (1.0 / i); // unrolled: constant reciprocals
	return g_ldexp(p, (int)k);
}

// g_expm1 is e^x - 1 without cancellation near 0.
static __device__ double g_expm1(double x) {
	if (__builtin_fabs(x) < 0.5) {
		double p = 1.0;
		for (int i = 20; i >= 2; i--) p = 1.0 + p * x * (1.0 / i);
		return x * p;
	}
	return g_exp(x) - 1.0;
}

static __device__ double g_log(double x) {
	if (x != x || x < 0) return G_NAN;
	if (x == 0) return -G_INF;
	if (x == G_INF) return x;
	int e = 0;
	if (x < 2.2250738585072014e-308) { // subnormal
		x *= 18014398509481984.0;     // 2^54
		e = -54;
	}
	u64 b = g_d2bits(x);
	e += (int)((b >> 52) & 0x7ff) - 1023;
	double m = g_bits2d((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL); // [1, 2)
	if (m > 1.4142135623730951) {
		m *= 0.5;
		e++;
	}
	double s = (m - 1.0) / (m + 1.0), s2 = s * s; // |s| < 0.1716
	double t = 0.0;
	for (int i = 27; i >= 3; i -= 2) t = (1.0 / i + t) * s2;
	double ser = 2.0 * s + 2.0 * s * t;
	return e * G_LN2_HI + (e * G_LN2_LO + ser);
}

static __device__ double g_tanh(double x) {
	if (x != x) return x;
	double a = __builtin_fabs(x);
	double t;
	if (a > 22) {
		t = 1.0;
	} else {
		double e = g_expm1(2 * a);
		t = e / (e + 2.0);
	}
	return x < 0 ? -t : t;
}

static __device__ double g_sigmoid(double x) { return 1.0 / (1.0 + g_exp(-x)); }

// g_sincos_red reduces x to r in [-pi/4, pi/4] and the quadrant q.
static __device__ inline double g_sincos_red(double x, int *q) {
	double k = __builtin_rint(x * 0.63661977236758134308);
	*q = (int)((i64)k & 3);
	return ((x - k * 1.57079632673412561417e+00) - k * 6.07710050630396597660e-11) - k * 2.02226624879595063154e-21;
}

static __device__ inline double g_sin_poly(double r) {
	double r2 = r * r, p = 1.0;
	for (int i = 19; i >= 3; i -= 2) p = 1.0 - p * r2 * (1.0 / (i * (i - 1)));
	return r * p;
}

static __device__ inline double g_cos_poly(double r) {
	double r2 = r * r, p = 1.0;
	for (int i = 20; i >= 2; i -= 2) p = 1.0 - p * r2 * (1.0 / (i * (i - 1)));
	return p;
}

static __device__ double g_sin(double x) {
	if (x != x || __builtin_fabs(x) == G_INF) return G_NAN;
	int q;
	double r = g_sincos_red(x, &q);
	switch (q) {
	case 0: return g_sin_poly(r);
	case 1: return g_cos_poly(r);
	case 2: return -g_sin_poly(r);
	default: return -g_cos_poly(r);
	}
}

static __device__ double g_cos(double x) {
	if (x != x || __builtin_fabs(x) == G_INF) return G_NAN;
	int q;
	double r = g_sincos_red(x, &q);
	switch (q) {
	case 0: return g_cos_poly(r);
	case 1: return -g_sin_poly(r);
	case 2: return -g_cos_poly(r);
	default: return g_sin_poly(r);
	}
}

// g_erfc_big is erfc(a) for a >= 2.5, by its continued fraction.
static __device__ double g_erfc_big(double a) {
	double f = a;
	for (int k = 60; k >= 1; k--) f = a + (k * 0.5) / f;
	return g_exp(-a * a) * 0.56418958354775628695 / f; // 1/sqrt(pi)
}

// g_erf_series is erf(x) by its Taylor series, for |x| < 2.5.
static __device__ double g_erf_series(double x) {
	double x2 = x * x, t = x, s = x;
	for (int n = 1; n < 120; n++) {
		t *= -x2 / n;
		double d = t / (2 * n + 1);
		s += d;
		if (__builtin_fabs(d) < 1e-17 * __builtin_fabs(s)) break;
	}
	return s * 1.12837916709551257390; // 2/sqrt(pi)
}

static __device__ double g_erf(double x) {
	if (x != x) return x;
	double a = __builtin_fabs(x);
	if (a < 2.5) return g_erf_series(x);
	double r = a > 6 ? 1.0 : 1.0 - g_erfc_big(a);
	return x < 0 ? -r : r;
}

// g_phi is the standard normal CDF 0.5*(1+erf(v/sqrt2)) without
// cancellation in the lower tail.
static __device__ double g_phi(double x) {
	double v = x * 0.70710678118654752440;
	if (v != v) return v;
	if (v <= -2.5) return v < -27 ? 0.0 : 0.5 * g_erfc_big(-v);
	return 0.5 * (1.0 + g_erf(v));
}

static __device__ inline int g_is_int(double y) { return __builtin_floor(y) == y; }
static __device__ inline int g_is_odd(double y) {
	return g_is_int(y) && __builtin_fabs(y) < 9007199254740992.0 && __builtin_floor(y * 0.5) * 2.0 != y;
}

// g_pow follows C's pow for the special cases the CPU backends meet.
static __device__ double g_pow(double x, double y) {
	if (y == 0 || x == 1) return 1.0;
	if (x != x || y != y) return G_NAN;
	double ax = __builtin_fabs(x);
	int neg = __builtin_signbit(x) && g_is_odd(y);
	if (__builtin_fabs(y) == G_INF) {
		if (ax == 1) return 1.0;
		return ((ax < 1) == (y > 0)) ? 0.0 : G_INF;
	}
	if (x == 0 || ax == G_INF) {
		double r = ((x == 0) == (y < 0)) ? G_INF : 0.0;
		return neg ? -r : r;
	}
	if (x < 0 && !g_is_int(y)) return G_NAN;
	double r = g_exp(y * g_log(ax));
	return neg ? -r : r;
}

#endif
