package lokr_test

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lokr"
)

// Wrapping one Linear layer by hand (peft.New does this for every targeted
// module of a model): the 64 x 32 weight splits into 4 x 16 and 4 x 8
// Kronecker factors (decompose_factor 4), of which r = 2 decomposes the
// second; then the adapter is merged into the base weight.
func ExampleMethod_Wrap() {
	be := nn.DefaultBackend()
	base := nn.NewLinear(be, 32, 64, false, nn.NewRNG(1))

	cfg := lokr.NewConfig()
	cfg.R, cfg.Alpha, cfg.DecomposeFactor = 2, 4, 4
	cfg.InitWeights = lokr.InitRandom // a non-trivial update, for the example
	l, err := lokr.Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		panic(err)
	}
	layer := l.(*lokr.Layer)
	for _, p := range layer.AdapterParams("default") {
		fmt.Println(p.Name, p.T.Shape())
	}

	x := nn.Uniform(be, nn.NewRNG(2), -1, 1, 3, 32)
	before := layer.Forward(x).Data()
	if err := layer.Merge(nil, true); err != nil {
		panic(err)
	}
	after := layer.Forward(x).Data()
	fmt.Println("merged:", layer.Merged(), "same output:", near(before, after))
	// Output:
	// lokr_w1 [4 4]
	// lokr_w2_a [16 2]
	// lokr_w2_b [2 8]
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
