package kernels

import (
	"math"
	"testing"
)

// The Philox4x32-10 known-answer vectors published with Random123
// (tests/kat_vectors): counter words, key words, expected output words.
func TestPhilox4x32KnownAnswers(t *testing.T) {
	tests := []struct {
		name string
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{"zeros", [4]uint32{}, [2]uint32{},
			[4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{"ones", [4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff},
			[4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{"pi", [4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0},
			[4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := philox4x32R(10, tc.ctr, tc.key); got != tc.want {
				t.Errorf("philox4x32R(10, %08x, %08x) = %08x, want %08x", tc.ctr, tc.key, got, tc.want)
			}
		})
	}
}

// Rounds worked out by hand from the round function: with counter (1,0,0,0)
// and a zero key the first round yields (0, 0, 0, M0); the second round, under
// the key bumped once to (W0, W1), yields (W0, 0, M0^W1, 0).
func TestPhiloxRoundsByHand(t *testing.T) {
	if got, want := philox4x32R(1, [4]uint32{1, 0, 0, 0}, [2]uint32{}), [4]uint32{0, 0, 0, philoxM0}; got != want {
		t.Errorf("one round = %08x, want %08x", got, want)
	}
	if got, want := philox4x32R(2, [4]uint32{1, 0, 0, 0}, [2]uint32{}), [4]uint32{philoxW0, 0, philoxM0 ^ philoxW1, 0}; got != want {
		t.Errorf("two rounds = %08x, want %08x", got, want)
	}
}

func TestPhilox4x32Mapping(t *testing.T) {
	// Seed 0, counter 0 is the all-zero known answer.
	if got, want := Philox4x32(0, 0), [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}; got != want {
		t.Errorf("Philox4x32(0, 0) = %08x, want %08x", got, want)
	}
	seed, ctr := uint64(0x0123456789abcdef), uint64(0xfedcba9876543210)
	want := philox4x32R(10, [4]uint32{0x76543210, 0xfedcba98, 0, 0}, [2]uint32{0x89abcdef, 0x01234567})
	if got := Philox4x32(seed, ctr); got != want {
		t.Errorf("Philox4x32 word order: got %08x, want %08x", got, want)
	}
	// The high counter word and the high seed word both matter.
	if Philox4x32(1, 0) == Philox4x32(1, 1<<32) {
		t.Error("counter high word ignored")
	}
	if Philox4x32(1, 0) == Philox4x32(1|1<<32, 0) {
		t.Error("seed high word ignored")
	}
}

func TestUniformAtDefinition(t *testing.T) {
	for i := uint64(0); i < 100; i++ {
		x := Philox4x32(7, i)
		want := float32(float64(x[0]>>8) / (1 << 24))
		got := UniformAt(7, i)
		if got != want || got < 0 || got >= 1 {
			t.Fatalf("UniformAt(7, %d) = %v, want %v", i, got, want)
		}
		if UniformAt(7, i) != got {
			t.Fatal("UniformAt is not deterministic")
		}
	}
}

func TestNormalAtDefinition(t *testing.T) {
	for i := uint64(0); i < 100; i++ {
		x := Philox4x32(11, i)
		u1 := (float64(x[0]>>8) + 1) / (1 << 24)
		u2 := float64(x[1]>>8) / (1 << 24)
		want := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
		got := NormalAt(11, i)
		if math.Abs(float64(got)-want) > 1e-7*math.Max(1, math.Abs(want)) {
			t.Fatalf("NormalAt(11, %d) = %v, want %v", i, got, want)
		}
	}
}

// The streams look like what they claim to be: moments within about six
// standard errors and a chi-square test over 64 bins at a generous level.
func TestStreamStatistics(t *testing.T) {
	const n = 1 << 16
	var su, su2, sn, sn2 float64
	var bins [64]int
	for i := uint64(0); i < n; i++ {
		u := float64(UniformAt(42, i))
		if u < 0 || u >= 1 {
			t.Fatalf("uniform %v outside [0,1)", u)
		}
		su += u
		su2 += u * u
		bins[int(u*64)]++
		z := float64(NormalAt(42, i))
		if math.IsNaN(z) || math.IsInf(z, 0) {
			t.Fatalf("normal %v not finite", z)
		}
		sn += z
		sn2 += z * z
	}
	mu := su / n
	varU := su2/n - mu*mu
	if math.Abs(mu-0.5) > 6*math.Sqrt(1.0/12/n) || math.Abs(varU-1.0/12) > 0.005 {
		t.Errorf("uniform mean %v var %v, want 0.5, 1/12", mu, varU)
	}
	mn := sn / n
	varN := sn2/n - mn*mn
	if math.Abs(mn) > 6/math.Sqrt(n) || math.Abs(varN-1) > 0.05 {
		t.Errorf("normal mean %v var %v, want 0, 1", mn, varN)
	}
	var chi2 float64
	exp := float64(n) / 64
	for _, c := range bins {
		d := float64(c) - exp
		chi2 += d * d / exp
	}
	// 63 degrees of freedom: mean 63, sd ~11.2; 130 is far in the tail.
	if chi2 > 130 {
		t.Errorf("uniform chi-square over 64 bins = %v, too large", chi2)
	}
	// Different seeds give different streams.
	same := 0
	for i := uint64(0); i < 1000; i++ {
		if UniformAt(1, i) == UniformAt(2, i) {
			same++
		}
	}
	if same > 5 {
		t.Errorf("seeds 1 and 2 agree on %d of 1000 draws", same)
	}
}

var sinkF float32

func BenchmarkUniformAt(b *testing.B) {
	var s float32
	for i := uint64(0); b.Loop(); i++ {
		s += UniformAt(42, i)
	}
	sinkF = s
}

func BenchmarkNormalAt(b *testing.B) {
	var s float32
	for i := uint64(0); b.Loop(); i++ {
		s += NormalAt(42, i)
	}
	sinkF = s
}
