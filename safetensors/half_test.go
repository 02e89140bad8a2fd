package safetensors

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// halfValues returns every finite non-negative binary16 value in
// increasing order, as float64, with its bit pattern.
func halfValues() ([]float64, []uint16) {
	var vals []float64
	var bits []uint16
	for h := range uint16(0x7c00) {
		e := int(h >> 10)
		m := float64(h & 0x3ff)
		var v float64
		if e == 0 {
			v = m * math.Pow(2, -24) // subnormal, computed independently
		} else {
			v = (1 + m/1024) * math.Pow(2, float64(e-15))
		}
		vals = append(vals, v)
		bits = append(bits, h)
	}
	return vals, bits
}

// nearestRef rounds x to the nearest value of a sorted grid of
// non-negative values (ties to the even bit pattern); beyond the last
// value it rounds to infinity when at or past the midpoint to the next
// (unrepresentable) step, given as overflow.
func nearestRef(x float64, vals []float64, bits []uint16, overflow float64, inf uint16) uint16 {
	if x >= overflow {
		return inf
	}
	i, _ := slices.BinarySearch(vals, x)
	if i == len(vals) {
		return bits[len(bits)-1]
	}
	if vals[i] == x || i == 0 {
		return bits[i]
	}
	lo, hi := vals[i-1], vals[i]
	switch {
	case x-lo < hi-x:
		return bits[i-1]
	case x-lo > hi-x:
		return bits[i]
	case bits[i-1]&1 == 0:
		return bits[i-1]
	}
	return bits[i]
}

func TestFloat16Exhaustive(t *testing.T) {
	vals, bits := halfValues()
	for i, h := range bits {
		for _, sign := range []uint16{0, 0x8000} {
			f := Float16ToFloat32(h | sign)
			want := vals[i]
			if sign != 0 {
				want = -want
			}
			if float64(f) != want || math.Signbit(float64(f)) != (sign != 0) {
				t.Fatalf("Float16ToFloat32(%#04x) = %v, want %v", h|sign, f, want)
			}
			if back := Float32ToFloat16(f); back != h|sign {
				t.Fatalf("Float32ToFloat16(%v) = %#04x, want %#04x", f, back, h|sign)
			}
		}
	}
	for _, sign := range []uint16{0, 0x8000} {
		if f := Float16ToFloat32(0x7c00 | sign); !math.IsInf(float64(f), 0) || math.Signbit(float64(f)) != (sign != 0) {
			t.Errorf("infinity %#04x decoded as %v", 0x7c00|sign, f)
		}
		for m := uint16(1); m < 0x400; m++ {
			f := Float16ToFloat32(0x7c00 | sign | m)
			if !math.IsNaN(float64(f)) {
				t.Fatalf("NaN %#04x decoded as %v", 0x7c00|sign|m, f)
			}
			back := Float32ToFloat16(f)
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != sign || back&0x1ff != m&0x1ff {
				t.Fatalf("NaN %#04x came back as %#04x", 0x7c00|sign|m, back)
			}
		}
	}
}

func TestFloat32ToFloat16Rounding(t *testing.T) {
	vals, bits := halfValues()
	// The value halfway between the largest finite binary16 (65504) and
	// the next step (65536) rounds to infinity.
	overflow := 65520.0
	var probes []float32
	for i := 0; i+1 < len(vals); i++ {
		mid := float32((vals[i] + vals[i+1]) / 2) // exact in float32
		probes = append(probes, float32(vals[i]), mid,
			math.Nextafter32(mid, 0), math.Nextafter32(mid, math.MaxFloat32))
	}
	probes = append(probes, 65504, 65519.99, 65520, 65536, 1e10, math.MaxFloat32,
		math.SmallestNonzeroFloat32, 1e-8, 2.9802322e-08, 2.9802326e-08, 5.960464e-08)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		probes = append(probes, math.Float32frombits(r.Uint32()&0x7fffffff))
	}
	for _, p := range probes {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			continue
		}
		want := nearestRef(float64(p), vals, bits, overflow, 0x7c00)
		for _, sign := range []float32{1, -1} {
			w := want
			if sign < 0 {
				w |= 0x8000
			}
			if got := Float32ToFloat16(sign * p); got != w {
				t.Fatalf("Float32ToFloat16(%g) = %#04x, want %#04x", sign*p, got, w)
			}
		}
	}
	if got := Float32ToFloat16(float32(math.Inf(-1))); got != 0xfc00 {
		t.Errorf("-Inf gave %#04x", got)
	}
}

func TestBFloat16(t *testing.T) {
	// Every bfloat16 pattern converts exactly and back.
	for h := range 1 << 16 {
		f := BFloat16ToFloat32(uint16(h))
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BFloat16ToFloat32(%#04x) bits %#08x", h, math.Float32bits(f))
		}
		back := Float32ToBFloat16(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(BFloat16ToFloat32(back))) {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("Float32ToBFloat16(%v) = %#04x, want %#04x", f, back, h)
		}
	}
	// Rounding, checked against float64 arithmetic: find the two
	// neighbouring bfloat16 values and pick the nearer, ties to even.
	r := rand.New(rand.NewPCG(3, 4))
	probes := []uint32{0x3f808000, 0x3f818000, 0x3f80c000, 0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, 0x00008000, 0x00018000}
	for range 200000 {
		probes = append(probes, r.Uint32())
	}
	for _, b := range probes {
		f := math.Float32frombits(b)
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		lo := uint16(b >> 16) // truncation: toward zero
		hi := lo + 1          // next magnitude (may be infinity)
		x := math.Abs(float64(f))
		vlo := math.Abs(float64(BFloat16ToFloat32(lo)))
		vhi := math.Abs(float64(BFloat16ToFloat32(hi)))
		if hi&0x7fff == 0x7f80 { // the step past the largest finite value
			vhi = math.Ldexp(1, 128)
		}
		want := lo
		switch {
		case x-vlo > vhi-x:
			want = hi
		case x-vlo == vhi-x && lo&1 == 1:
			want = hi
		}
		if got := Float32ToBFloat16(f); got != want {
			t.Fatalf("Float32ToBFloat16(%g [%#08x]) = %#04x, want %#04x", f, b, got, want)
		}
	}
	if got := Float32ToBFloat16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("NaN gave %#04x", got)
	}
}
