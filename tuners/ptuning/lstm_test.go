package ptuning

import (
	"math"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/nn"
)

// refLSTM is a float64 LSTM written from the equations (PyTorch's gate
// order i, f, g, o; zero initial states; bidirectional layers concatenate
// forward and backward states).
func refLSTM(l *LSTM, x []float64, batch, seq int) []float64 {
	in := l.InputSize
	h := l.HiddenSize
	f64 := func(t *nn.Tensor) []float64 {
		var out []float64
		for _, v := range t.Data() {
			out = append(out, float64(v))
		}
		return out
	}
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	for _, cells := range l.Layers {
		dirs := len(cells)
		out := make([]float64, batch*seq*dirs*h)
		for d, c := range cells {
			wih, whh, bih, bhh := f64(c.WeightIH), f64(c.WeightHH), f64(c.BiasIH), f64(c.BiasHH)
			for b := range batch {
				hs := make([]float64, h)
				cs := make([]float64, h)
				for s := range seq {
					t := s
					if d == 1 {
						t = seq - 1 - s
					}
					g := make([]float64, 4*h)
					for r := range 4 * h {
						v := bih[r] + bhh[r]
						for k := range in {
							v += wih[r*in+k] * x[(b*seq+t)*in+k]
						}
						for k := range h {
							v += whh[r*h+k] * hs[k]
						}
						g[r] = v
					}
					for k := range h {
						i, f, gg, o := sig(g[k]), sig(g[h+k]), math.Tanh(g[2*h+k]), sig(g[3*h+k])
						cs[k] = f*cs[k] + i*gg
						hs[k] = o * math.Tanh(cs[k])
						out[((b*seq+t)*dirs+d)*h+k] = hs[k]
					}
				}
			}
		}
		x, in = out, dirs*h
	}
	return x
}

func TestLSTMReference(t *testing.T) {
	for _, tc := range []struct {
		in, hid, layers, batch, seq int
		bi                          bool
	}{
		{3, 2, 1, 1, 1, false},
		{3, 2, 1, 2, 4, false},
		{4, 3, 2, 2, 3, true},
		{5, 2, 3, 1, 5, true},
	} {
		l, err := NewLSTM(nil, tc.in, tc.hid, tc.layers, tc.bi, 0, nn.NewRNG(7), 1)
		if err != nil {
			t.Fatal(err)
		}
		// Larger weights than PyTorch's init exercise saturation.
		for _, p := range l.Params() {
			p.T.CopyFrom(nn.Scale(p.T, 3))
		}
		x := nn.Normal(nil, nn.NewRNG(9), 0, 1, tc.batch, tc.seq, tc.in)
		got := l.Forward(x)
		dirs := 1
		if tc.bi {
			dirs = 2
		}
		if s := got.Shape(); !slices.Equal(s, []int{tc.batch, tc.seq, dirs * tc.hid}) {
			t.Fatalf("%+v: shape %v", tc, s)
		}
		var xs []float64
		for _, v := range x.Data() {
			xs = append(xs, float64(v))
		}
		want := refLSTM(l, xs, tc.batch, tc.seq)
		for i, g := range got.Data() {
			if math.Abs(float64(g)-want[i]) > 1e-5 {
				t.Fatalf("%+v: element %d: got %v, want %v", tc, i, g, want[i])
			}
		}
	}
}

func TestLSTMGradCheck(t *testing.T) {
	l, err := NewLSTM(nil, 3, 2, 2, true, 0, nn.NewRNG(3), 1)
	if err != nil {
		t.Fatal(err)
	}
	x := nn.Normal(nil, nn.NewRNG(4), 0, 1, 2, 3, 3).SetRequiresGrad(true)
	params := []*nn.Tensor{x}
	for _, p := range l.Params() {
		params = append(params, p.T)
	}
	if err := nn.GradCheck(func() *nn.Tensor { return l.Forward(x) }, params, 1e-2, 1e-2); err != nil {
		t.Error(err)
	}
}

func TestLSTMNamesAndShapes(t *testing.T) {
	l, err := NewLSTM(nil, 6, 4, 2, true, 0, nn.NewRNG(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	shapes := map[string][]int{}
	for _, p := range l.Params() {
		names = append(names, p.Name)
		shapes[p.Name] = p.T.Shape()
	}
	want := []string{
		"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
		"weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
		"weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
		"weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse",
	}
	if !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	for name, s := range map[string][]int{"weight_ih_l0": {16, 6}, "weight_hh_l0": {16, 4}, "weight_ih_l1_reverse": {16, 8}, "bias_hh_l1": {16}} {
		if !slices.Equal(shapes[name], s) {
			t.Errorf("%s: shape %v, want %v", name, shapes[name], s)
		}
	}
	// PyTorch's init: uniform within 1/sqrt(hidden).
	for _, p := range l.Params() {
		for _, v := range p.T.Data() {
			if math.Abs(float64(v)) > 0.5 {
				t.Fatalf("%s: %v outside [-0.5, 0.5]", p.Name, v)
			}
		}
	}
}

func TestLSTMDropout(t *testing.T) {
	l, err := NewLSTM(nil, 3, 4, 2, true, 0.5, nn.NewRNG(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	x := nn.Normal(nil, nn.NewRNG(2), 0, 1, 1, 3, 3)
	a, b := l.Forward(x).Data(), l.Forward(x).Data()
	if !slices.Equal(a, b) {
		t.Error("evaluation mode is not deterministic")
	}
	l.SetTraining(true)
	if c := l.Forward(x).Data(); slices.Equal(a, c) {
		t.Error("dropout between layers had no effect in training mode")
	}
	for _, bad := range []struct {
		in, hid, layers int
		p               float32
	}{{0, 1, 1, 0}, {1, 0, 1, 0}, {1, 1, 0, 0}, {1, 1, 1, 1}} {
		if _, err := NewLSTM(nil, bad.in, bad.hid, bad.layers, true, bad.p, nn.NewRNG(1), 1); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
