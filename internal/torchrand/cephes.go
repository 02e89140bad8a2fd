package torchrand

import "math"

// This file evaluates log, sin and cos the way torch's AVX2 CPU kernels
// do for normal_ (the Cephes-derived float32 approximations of the AVX
// math routines ATen uses), with every multiply-add the compiler contracts
// there done as one fused operation, so that normal draws come out bit for
// bit.

// fma32 returns a*b+c rounded once to float32. The product of two float32
// values is exact in float64; the sum is rounded to float64 first, which
// differs from a single float32 rounding only in vanishingly rare halfway
// cases.
func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

// Cephes constants (float32).
const (
	sqrtHalf = float32(0.707106781186547524)
	logP0    = float32(7.0376836292e-2)
	logP1    = float32(-1.1514610310e-1)
	logP2    = float32(1.1676998740e-1)
	logP3    = float32(-1.2420140846e-1)
	logP4    = float32(1.4249322787e-1)
	logP5    = float32(-1.6668057665e-1)
	logP6    = float32(2.0000714765e-1)
	logP7    = float32(-2.4999993993e-1)
	logP8    = float32(3.3333331174e-1)
	logQ1    = float32(-2.12194440e-4)
	logQ2    = float32(0.693359375)

	fourOverPi = float32(1.27323954473516)
	dp1        = float32(-0.78515625)
	dp2        = float32(-2.4187564849853515625e-4)
	dp3        = float32(-3.77489497744594108e-8)
	cosP0      = float32(2.443315711809948e-5)
	cosP1      = float32(-1.388731625493765e-3)
	cosP2      = float32(4.166664568298827e-2)
	sinP0      = float32(-1.9515295891e-4)
	sinP1      = float32(8.3321608736e-3)
	sinP2      = float32(-1.6666654611e-1)
)

// cephesLog is log(x) for x in (0, 1] (Box-Muller's 1-u).
func cephesLog(x float32) float32 {
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23)-0x7f) + 1
	x = math.Float32frombits(bits&^(0xff<<23) | math.Float32bits(0.5)) // mantissa in [0.5, 1)
	if x < sqrtHalf {
		e--
		x = x - 1 + x
	} else {
		x = x - 1
	}
	z := x * x
	y := fma32(logP0, x, logP1)
	for _, p := range [...]float32{logP2, logP3, logP4, logP5, logP6, logP7, logP8} {
		y = fma32(y, x, p)
	}
	y = y * x
	y = fma32(y, z, e*logQ1)
	y = y - z*0.5
	return fma32(e, logQ2, x+y)
}

// cephesSincos returns sin(x) and cos(x).
func cephesSincos(x float32) (sin, cos float32) {
	signSin := math.Float32bits(x) & (1 << 31)
	x = float32(math.Abs(float64(x)))
	j := int32(x * fourOverPi)
	j = (j + 1) &^ 1
	y := float32(j)
	swapSin := uint32(j&4) << 29
	poly := j&2 == 0
	x = fma32(y, dp1, x)
	x = fma32(y, dp2, x)
	x = fma32(y, dp3, x)
	signCos := uint32(^(j-2)&4) << 29
	signSin ^= swapSin
	z := x * x
	yc := fma32(cosP0, z, cosP1)
	yc = fma32(yc, z, cosP2)
	yc = yc * z
	yc = fma32(yc, z, -(z * 0.5))
	yc = yc + 1
	ys := fma32(sinP0, z, sinP1)
	ys = fma32(ys, z, sinP2)
	ys = ys * z
	ys = fma32(ys, x, x)
	if poly {
		sin, cos = ys, yc
	} else {
		sin, cos = yc, ys
	}
	return math.Float32frombits(math.Float32bits(sin) ^ signSin), math.Float32frombits(math.Float32bits(cos) ^ signCos)
}
