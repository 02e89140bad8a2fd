package torchrand

import (
	"math"
	"slices"
	"testing"
)

// TestMT19937 checks the generator core against the value the C++ standard
// requires of std::mt19937: the 10000th draw after the default seed 5489.
func TestMT19937(t *testing.T) {
	g := New(5489)
	var v uint32
	for range 10000 {
		v = g.Random()
	}
	if v != 4123659995 {
		t.Fatalf("10000th draw = %d, want 4123659995", v)
	}
}

// TestKnownTorchDraws compares with values torch 1.x prints after
// torch.manual_seed(0) (as printed, to four decimals).
func TestKnownTorchDraws(t *testing.T) {
	tests := []struct {
		name string
		draw func(g *Generator) []float32
		want []float64
	}{
		{"rand(5)", func(g *Generator) []float32 { return g.Rand(5) }, []float64{0.4963, 0.7682, 0.0885, 0.1320, 0.3074}},
		{"randn(3) scalar path", func(g *Generator) []float32 { return g.Randn(3) }, []float64{1.5410, -0.2934, -2.1788}},
		{"randn(2,3) cached sample", func(g *Generator) []float32 { return g.Randn(6) }, []float64{1.5410, -0.2934, -2.1788, 0.5684, -1.0845, -1.3986}},
		{"randn(4,4) vector path", func(g *Generator) []float32 { return g.Randn(16) }, []float64{
			-1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.6920, -0.3160, -2.1152,
			0.3223, -1.2633, 0.3500, 0.3081, 0.1198, 1.2377, 1.1168, -0.2473}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.draw(New(0))
			for i, w := range tt.want {
				if math.Abs(float64(got[i])-w) > 0.6e-4 {
					t.Fatalf("draw %d = %v, want %v (all: %v)", i, got[i], w, got)
				}
			}
		})
	}
}

// TestNormalTail checks the tail rule of the vector path: the last 16
// values are redrawn, so a 17-element fill shares nothing but the first
// value with the 16-element fill of the same seed... except that value.
func TestNormalTail(t *testing.T) {
	a := New(3).Randn(16)
	b := New(3).Randn(17)
	if a[0] != b[0] {
		t.Fatalf("first value differs: %v vs %v", a[0], b[0])
	}
	// b's tail (positions 1..16) comes from 16 fresh uniforms after 17.
	g := New(3)
	u := g.Rand(17)
	_ = u
	tail := make([]float32, 16)
	for i := range tail {
		tail[i] = float32From(g.Random())
	}
	boxMuller16(tail, 0, 1)
	if !slices.Equal(tail, b[1:]) {
		t.Fatalf("tail %v, want %v", b[1:], tail)
	}
}

func TestRandperm(t *testing.T) {
	for _, n := range []int{0, 1, 2, 10, 200, 1000} {
		p := New(int64(n)).Randperm(n)
		seen := make([]bool, n)
		for _, v := range p {
			if v < 0 || int(v) >= n || seen[v] {
				t.Fatalf("n=%d: not a permutation: %v", n, p)
			}
			seen[v] = true
		}
	}
	// Deterministic for a seed, different across seeds.
	if !slices.Equal(New(777).Randperm(400), New(777).Randperm(400)) {
		t.Fatal("same seed, different permutations")
	}
	if slices.Equal(New(1).Randperm(400), New(2).Randperm(400)) {
		t.Fatal("different seeds, same permutation")
	}
}

// TestRandpermDraws checks that the small-n shuffle uses one 32-bit draw
// per step (n-1 draws), as ATen does.
func TestRandpermDraws(t *testing.T) {
	g := New(9)
	g.Randperm(50)
	h := New(9)
	for range 49 {
		h.Random()
	}
	if g.Random() != h.Random() {
		t.Fatal("randperm(50) did not consume exactly 49 draws")
	}
}

func TestKaimingBound(t *testing.T) {
	// a = sqrt(5): 1/sqrt(fan); a = 0: sqrt(6/fan).
	if got, want := KaimingBound(16, math.Sqrt(5)), 0.25; math.Abs(got-want) > 1e-15 {
		t.Fatalf("a=sqrt(5): %v, want %v", got, want)
	}
	if got, want := KaimingBound(6, 0), 1.0; math.Abs(got-want) > 1e-15 {
		t.Fatalf("a=0: %v, want %v", got, want)
	}
	if FanIn([]int{4, 3, 2}) != 6 || FanIn([]int{5}) != 0 {
		t.Fatal("FanIn")
	}
}

func TestUniformRange(t *testing.T) {
	d := make([]float32, 1000)
	New(1).Uniform(d, -0.5, 0.5)
	for _, v := range d {
		if v < -0.5 || v >= 0.5 {
			t.Fatalf("value %v outside [-0.5, 0.5)", v)
		}
	}
}

func TestKaimingUniform(t *testing.T) {
	d := make([]float32, 12)
	if !New(4).KaimingUniform(d, []int{3, 4}, math.Sqrt(5)) {
		t.Fatal("2-d shape refused")
	}
	e := make([]float32, 12)
	New(4).Uniform(e, -0.5, 0.5)
	if !slices.Equal(d, e) {
		t.Fatalf("kaiming_uniform(a=sqrt(5)) of [3, 4] = %v, want uniform(-1/2, 1/2) = %v", d, e)
	}
	if New(4).KaimingUniform(d, []int{12}, 0) {
		t.Fatal("1-d shape accepted")
	}
}

// TestRandnExact compares with torch.randn outputs after torch.manual_seed(0)
// printed at full precision in public code (randn(4, 4), randn(6, 4) and
// randn(3, 9)): the block path and its tail redraw, bit for bit.
func TestRandnExact(t *testing.T) {
	tests := []struct {
		n    int
		at   int
		want []float64
	}{
		{16, 0, []float64{-1.1258398294448853, -1.152360200881958, -0.2505785822868347, -0.4338788092136383,
			0.8487103581428528, 0.6920091509819031, -0.31601276993751526, -2.1152193546295166}},
		{24, 8, []float64{0.46809640526771545, -0.1577124446630478, 1.4436601400375366, 0.26604941487312317,
			0.16645534336566925, 0.8743818402290344, -0.14347384870052338, -0.1116093322634697}},
		{27, 8, []float64{0.32227492332458496, -1.2633347511291504, 0.34998318552970886, 0.26604941487312317,
			0.16645534336566925, 0.8743818402290344, -0.14347384870052338, -0.1116093322634697,
			-0.6135830879211426, 0.03159274160861969, -0.4926769733428955}},
	}
	for _, tt := range tests {
		got := New(0).Randn(tt.n)
		for i, w := range tt.want {
			if float64(got[tt.at+i]) != w {
				t.Errorf("randn(%d)[%d] = %.17g, want %.17g", tt.n, tt.at+i, got[tt.at+i], w)
			}
		}
	}
}

// TestScalarPathsExact compares with torch.randn(7) and torch.rand(5)
// after torch.manual_seed(0), printed at full precision in public code:
// the double Box-Muller with its cached sample, and the float uniform.
func TestScalarPathsExact(t *testing.T) {
	wantN := []float64{1.5409960746765137, -0.293428897857666, -2.1787893772125244, 0.5684312582015991,
		-1.0845223665237427, -1.3985954523086548, 0.40334683656692505}
	for i, v := range New(0).Randn(7) {
		if float64(v) != wantN[i] {
			t.Errorf("randn(7)[%d] = %.17g, want %.17g", i, v, wantN[i])
		}
	}
	wantU := []float64{0.49625658988952637, 0.7682217955589294, 0.08847743272781372, 0.13203048706054688, 0.30742281675338745}
	for i, v := range New(0).Rand(5) {
		if float64(v) != wantU[i] {
			t.Errorf("rand(5)[%d] = %.17g, want %.17g", i, v, wantU[i])
		}
	}
}
