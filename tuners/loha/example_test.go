package loha_test

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/loha"
)

// Wrapping one Conv2d by hand (peft.New does this for every targeted module
// of a model) with Tucker-factored LoHa, then merging the adapter into the
// base weight.
func ExampleMethod_Wrap() {
	be := nn.DefaultBackend()
	base := nn.NewConv2d(be, 3, 8, 3, 3, nn.ConvOptions{Padding: [2]int{1, 1}}, true, nn.NewRNG(1))

	cfg := loha.NewConfig()
	cfg.R, cfg.Alpha, cfg.UseEffectiveConv2d = 2, 4, true
	cfg.InitWeights = false // a non-trivial update, for the example
	l, err := loha.Method{}.Wrap(tuners.Target{Path: "conv", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		panic(err)
	}
	layer := l.(*loha.Layer)
	for _, p := range layer.AdapterParams("default") {
		fmt.Println(p.Name, p.T.Shape())
	}

	x := nn.Uniform(be, nn.NewRNG(2), -1, 1, 1, 3, 5, 5)
	before := layer.Forward(x).Data()
	if err := layer.Merge(nil, true); err != nil {
		panic(err)
	}
	after := layer.Forward(x).Data()
	fmt.Println("merged:", layer.Merged(), "same output:", near(before, after))
	// Output:
	// hada_w1_a [2 8]
	// hada_w1_b [2 3]
	// hada_w2_a [2 8]
	// hada_w2_b [2 3]
	// hada_t1 [2 2 3 3]
	// hada_t2 [2 2 3 3]
	// merged: [default] same output: true
}

func near(a, b []float32) bool {
	for i := range a {
		if d := a[i] - b[i]; d > 1e-4 || d < -1e-4 {
			return false
		}
	}
	return true
}
