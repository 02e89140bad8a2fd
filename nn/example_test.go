package nn_test

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
)

func ExampleTensor_Backward() {
	x := nn.FromHost([]float32{1, 2, 3}).SetRequiresGrad(true)
	loss := nn.SumAll(nn.Square(x)) // sum of x²
	loss.Backward()
	fmt.Println(loss.Item(), x.Grad().Data())
	// Output: 14 [2 4 6]
}

func ExampleLinear() {
	l := nn.NewLinear(nil, 2, 1, true, nil) // nil rng: zero init, weights loaded next
	l.Weight.CopyFromHost([]float32{2, -1})
	l.Bias.CopyFromHost([]float32{0.5})
	x := nn.FromHost([]float32{1, 1, 3, 2}, 2, 2) // two rows
	fmt.Println(l.Forward(x).Data())
	// Output: [1.5 4.5]
}

func ExampleMatMul() {
	a := nn.FromHost([]float32{1, 2, 3, 4}, 2, 2)
	b := nn.FromHost([]float32{1, 0, 0, 1, 1, 1, 1, 1}, 2, 2, 2) // a batch of two
	y := nn.MatMul(a, b)                                         // a broadcasts over the batch
	fmt.Println(y.Shape(), y.Data())
	// Output: [2 2 2] [1 2 3 4 3 3 7 7]
}

func ExampleGradCheck() {
	w := nn.FromHost([]float32{0.5, -0.3, 0.8, 0.1}, 2, 2).SetRequiresGrad(true)
	x := nn.FromHost([]float32{1, 2, 3, 4, 5, 6}, 3, 2)
	err := nn.GradCheck(func() *nn.Tensor { return nn.Tanh(nn.LinearOp(x, w, nil)) }, []*nn.Tensor{w}, 1e-3, 1e-2)
	fmt.Println(err)
	// Output: <nil>
}

func ExampleWalk() {
	root := nn.NewDict()
	attn := nn.NewDict()
	attn.Add("q_proj", nn.NewLinear(nil, 4, 4, false, nil))
	layers := nn.NewModuleList(attn)
	root.Add("layers", layers)
	_ = nn.Walk(root, func(path string, m nn.Module) error {
		fmt.Printf("%q %T\n", path, m)
		return nil
	})
	for _, p := range nn.NamedParameters(root) {
		fmt.Println(p.Name, p.T.Shape())
	}
	// Output:
	// "" *nn.Dict
	// "layers" *nn.ModuleList
	// "layers.0" *nn.Dict
	// "layers.0.q_proj" *nn.Linear
	// layers.0.q_proj.weight [4 4]
}

func ExampleLoadStateDict() {
	m := nn.NewDict()
	m.Add("proj", nn.NewLinear(nil, 2, 2, true, nil))
	err := nn.LoadStateDict(m, map[string]*nn.Tensor{
		"proj.weight": nn.Zeros(nil, 2, 3),
		"proj.extra":  nn.Zeros(nil, 1),
	}, true)
	fmt.Println(err)
	// Output: nn: load state dict: missing keys: proj.bias; unexpected keys: proj.extra; shape mismatch: proj.weight (model [2 2], state dict [2 3])
}

func ExampleNewAdamW() {
	w := nn.FromHost([]float32{1, -1}).SetRequiresGrad(true)
	cfg := nn.DefaultAdamW()
	cfg.WeightDecay = 0
	opt := nn.NewAdamW(cfg, cfg.Group(w))
	for range 3 {
		opt.ZeroGrad()
		nn.SumAll(nn.Square(w)).Backward() // pulls w towards 0
		opt.Step()
	}
	fmt.Printf("%.3f\n", w.Data())
	// Output: [0.997 -0.997]
}
