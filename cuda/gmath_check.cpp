// gmath_check.cpp compiles gmath.h for the host and compares every function
// with the C library's double-precision one, after rounding both to float32
// as the kernels do, over float32 inputs spread across each function's
// range. build/ptx.sh runs it (with clang++ or g++) before writing the PTX:
//
//	c++ -O1 -std=c++17 -DGMATH_HOST -Icuda cuda/gmath_check.cpp -o gmath_check && ./gmath_check
//
// It fails when a rounded result differs from the C library's by more than
// one float32 ulp, or when more than 1 in 10^4 results differ at all.
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>

#include "gmath.h"

static double ulps(float a, float b) {
	if (a == b || (a != a && b != b)) return 0;
	if (std::isinf(a) || std::isinf(b) || a != a || b != b) return 1e30;
	int32_t ia, ib;
	std::memcpy(&ia, &a, 4);
	std::memcpy(&ib, &b, 4);
	if (ia < 0) ia = INT32_MIN - ia;
	if (ib < 0) ib = INT32_MIN - ib;
	return std::fabs((double)ia - (double)ib);
}

static double phi(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752440); }

struct Fn {
	const char *name;
	double (*g)(double);
	double (*ref)(double);
	double lo, hi;
};

static double lg(double x) { return std::log(x); }
static double ex(double x) { return std::exp(x); }
static double em(double x) { return std::expm1(x); }
static double th(double x) { return std::tanh(x); }
static double sn(double x) { return std::sin(x); }
static double cs(double x) { return std::cos(x); }
static double ef(double x) { return std::erf(x); }
static double sg(double x) { return 1 / (1 + std::exp(-x)); }

int main() {
	Fn fns[] = {
	    {"exp", g_exp, ex, -104, 89},     {"expm1", g_expm1, em, -20, 20}, {"log", g_log, lg, 1e-38, 1e38},
	    {"tanh", g_tanh, th, -30, 30},    {"sin", g_sin, sn, -1e4, 1e4},   {"cos", g_cos, cs, -1e4, 1e4},
	    {"erf", g_erf, ef, -7, 7},        {"phi", g_phi, phi, -40, 40},    {"sigmoid", g_sigmoid, sg, -90, 90},
	};
	int bad = 0;
	for (const Fn &f : fns) {
		const int n = 2000003;
		int diff = 0;
		double worst = 0, at = 0;
		for (int i = 0; i <= n; i++) {
			double t = (double)i / n;
			double x;
			if (f.lo > 0) // log: geometric spacing
				x = f.lo * std::pow(f.hi / f.lo, t);
			else
				x = f.lo + (f.hi - f.lo) * t;
			float xf = (float)x;
			// also hit small magnitudes, where relative accuracy matters most
			if (i % 3 == 1 && f.lo < 0) xf = (float)(x * 1e-6);
			float got = (float)f.g(xf), want = (float)f.ref(xf);
			double u = ulps(got, want);
			if (u > 0) diff++;
			if (u > worst) worst = u, at = xf;
		}
		int ok = worst <= 1 && diff <= n / 10000;
		std::printf("gmath_check: %-8s max %g ulp (at %.9g), %d of %d differ  %s\n", f.name, worst, at, diff, n + 1,
		            ok ? "ok" : "FAIL");
		if (!ok) bad++;
	}
	struct { double x, y; } pw[] = {{2, 10}, {2.5, -3.25}, {-2, 3}, {-2, 0.5}, {0, -1}, {0, 2}, {-0.0, -3}, {1e-3, 0.37},
	                                 {7, 0}, {1, 1e30}, {0.5, 1e30}, {3, -1e30}, {10, 30}};
	for (auto &c : pw) {
		float got = (float)g_pow(c.x, c.y), want = (float)std::pow(c.x, c.y);
		double u = ulps(got, want);
		if (u > 1) {
			std::printf("gmath_check: pow(%g, %g) = %.9g, want %.9g  FAIL\n", c.x, c.y, got, want);
			bad++;
		}
	}
	std::printf("gmath_check: %s\n", bad ? "FAILED" : "all ok");
	return bad != 0;
}
