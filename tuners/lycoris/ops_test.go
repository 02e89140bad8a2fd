package lycoris

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	lt "github.com/gopeft/gopeft/tuners/lycoris/lycoristest"
)

func TestKronMatchesTorchRule(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ a, b []int }{
		{[]int{2, 3}, []int{4, 5}},
		{[]int{1, 1}, []int{3, 2}},
		{[]int{3}, []int{2}},
		{[]int{2, 3}, []int{4, 2, 3}},          // 3-D right operand: left gets a leading unit axis
		{[]int{2, 1, 1, 1}, []int{4, 3, 3, 3}}, // conv kernel, W1 with trailing unit axes
		{[]int{2, 3, 1}, []int{1, 2, 2}},
	} {
		t.Run(fmt.Sprint(c.a, c.b), func(t *testing.T) {
			a, b := lt.Rand(r, 1, c.a...), lt.Rand(r, 1, c.b...)
			got := Kron(a, b)
			want := lt.Kron(lt.Of(a), lt.Of(b))
			if fmt.Sprint(got.Shape()) != fmt.Sprint(want.Shape) {
				t.Fatalf("shape %v, want %v", got.Shape(), want.Shape)
			}
			if err := lt.Close("kron", got.Data(), want.Data, 1e-6, 1e-6); err != nil {
				t.Fatal(err)
			}
			a.SetRequiresGrad(true)
			b.SetRequiresGrad(true)
			if err := nn.GradCheck(func() *nn.Tensor { return Kron(a, b) }, []*nn.Tensor{a, b}, 1e-2, 1e-2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTuckerMatchesEinsum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ r1, r2, out, in, k1, k2 int }{
		{2, 3, 4, 5, 3, 3},
		{3, 3, 8, 3, 3, 1}, // Conv1d: kernel stored as [k, 1]
		{1, 2, 2, 1, 1, 2},
	} {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			core := lt.Rand(r, 1, c.r1, c.r2, c.k1, c.k2)
			wa, wb := lt.Rand(r, 1, c.r1, c.out), lt.Rand(r, 1, c.r2, c.in)
			got := Tucker(core, wa, wb)
			want := lt.Tucker(lt.Of(core), lt.Of(wa), lt.Of(wb))
			if fmt.Sprint(got.Shape()) != fmt.Sprint(want.Shape) {
				t.Fatalf("shape %v, want %v", got.Shape(), want.Shape)
			}
			if err := lt.Close("tucker", got.Data(), want.Data, 1e-5, 1e-5); err != nil {
				t.Fatal(err)
			}
			ps := []*nn.Tensor{core, wa, wb}
			for _, p := range ps {
				p.SetRequiresGrad(true)
			}
			if err := nn.GradCheck(func() *nn.Tensor { return Tucker(core, wa, wb) }, ps, 1e-2, 1e-2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestKaimingBound(t *testing.T) {
	for _, c := range []struct {
		shape []int
		want  float32
	}{
		{[]int{7, 4}, 0.5}, {[]int{3, 2, 2}, 0.5}, {[]int{2, 1, 4, 4}, 0.25},
	} {
		if got := KaimingBound(c.shape...); got != c.want {
			t.Errorf("KaimingBound(%v) = %v, want %v", c.shape, got, c.want)
		}
	}
	x := nn.Zeros(nn.DefaultBackend(), 64, 16)
	KaimingUniform(x, nn.NewRNG(1))
	var nonzero int
	for _, v := range x.Data() {
		if v < -0.25 || v > 0.25 {
			t.Fatalf("value %v outside ±0.25", v)
		}
		if v != 0 {
			nonzero++
		}
	}
	if nonzero < 1000 {
		t.Fatalf("only %d of 1024 values drawn", nonzero)
	}
}
