package lora

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
)

// TestTokenScalings checks X-LoRA's per-token scaling of each adapter's
// input: with s set, the output is base(x) + sum_i B_i(A_i(x * s_i)) *
// scaling_i * weight, computed here from single-adapter outputs (LoRA is
// linear in x, so scaling the input of adapter i by a constant token by
// token equals scaling its delta).
func TestTokenScalings(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	base := &nn.Linear{Weight: randTensor(r, 0.5, 5, 6), Bias: randTensor(r, 0.1, 5)}
	c := NewConfig()
	c.R, c.Alpha, c.InitLoRAWeights = 2, 3, InitRandom
	l := wrap(t, base, c, "0").(*Layer)
	wrap(t, l, c, "1")
	l.SetActive([]string{"0", "1"})
	x := randTensor(r, 1, 2, 3, 6)
	s := randTensor(r, 1, 2, 3, 2)
	const w = 0.7
	if err := l.SetTokenScalings(s, []string{"0", "1"}, w); err != nil {
		t.Fatal(err)
	}
	got := l.Forward(x).Data()
	if err := l.SetTokenScalings(nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	y0 := base.Forward(x).Data()
	want := make([]float64, len(y0))
	for i := range want {
		want[i] = float64(y0[i])
	}
	sd := s.Data()
	for k, name := range []string{"0", "1"} {
		l.SetActive([]string{name})
		yk := l.Forward(x).Data()
		for row := range 6 { // batch*seq tokens
			for o := range 5 {
				want[row*5+o] += (float64(yk[row*5+o]) - float64(y0[row*5+o])) * float64(sd[row*2+k]) * w
			}
		}
	}
	for i := range want {
		if d := float64(got[i]) - want[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("entry %d: got %v want %v", i, got[i], want[i])
		}
	}
	if err := l.SetTokenScalings(randTensor(r, 1, 2, 3, 3), []string{"0", "1"}, 1); err == nil {
		t.Fatal("scalings with 3 columns for 2 adapters")
	}
}
