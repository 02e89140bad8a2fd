package lora_test

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// Wrapping one Linear layer by hand (peft.New does this for every targeted
// module of a model), then merging the adapter into the base weight.
func ExampleMethod_Wrap() {
	be := nn.DefaultBackend()
	base := nn.NewLinear(be, 16, 8, true, nn.NewRNG(1))

	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha = 4, 8
	cfg.UseDoRA = true
	l, err := lora.Method{}.Wrap(tuners.Target{Path: "proj", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		panic(err)
	}
	layer := l.(*lora.Layer)
	for _, p := range layer.AdapterParams("default") {
		fmt.Println(p.Name, p.T.Shape())
	}

	x := nn.Uniform(be, nn.NewRNG(2), -1, 1, 3, 16)
	before := layer.Forward(x).Data()
	if err := layer.Merge(nil, true); err != nil {
		panic(err)
	}
	after := layer.Forward(x).Data()
	fmt.Println("merged:", layer.Merged(), "same output:", near(before, after))
	// Output:
	// lora_A.weight [4 16]
	// lora_B.weight [8 4]
	// lora_magnitude_vector [8]
	// merged: [default] same output: true
}

func near(a, b []float32) bool {
	for i := range a {
		if d := a[i] - b[i]; d > 1e-5 || d < -1e-5 {
			return false
		}
	}
	return true
}
