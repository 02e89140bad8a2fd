package peft_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// exampleModel builds a small MLP, Sequential(Linear(4,8), ReLU, Linear(8,2)),
// whose modules are named "0", "1" and "2". A real program loads a
// checkpoint instead (models/llama).
func exampleModel() *nn.Sequential {
	rng := nn.NewRNG(42)
	relu, err := nn.NewActivation("relu")
	if err != nil {
		log.Fatal(err)
	}
	return nn.NewSequential(nn.NewLinear(nil, 4, 8, true, rng), relu, nn.NewLinear(nil, 8, 2, true, rng))
}

// exampleAdapter writes a LoRA adapter folder to dir, as a training run
// would, and returns nothing but errors.
func exampleAdapter(dir string) error {
	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha = 2, 4
	cfg.TargetModules = tuners.Names("0", "2")
	m, err := peft.New(exampleModel(), cfg)
	if err != nil {
		return err
	}
	return m.Save(dir)
}

// Load an adapter folder written by PEFT (or by Save) and run the model.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "adapter")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := exampleAdapter(dir); err != nil {
		log.Fatal(err)
	}

	m, err := peft.Load(exampleModel(), dir)
	if err != nil {
		log.Fatal(err)
	}
	x := nn.FromHost([]float32{1, 2, 3, 4, -1, 0, 1, 0}, 2, 4)
	out, err := m.Forward(models.Input{X: x, Shape: []int{2, 4}})
	if err != nil {
		log.Fatal(err)
	}
	trainable, all := m.NumTrainableParameters()
	fmt.Println("adapters:", m.Adapters(), "output shape:", out.Shape())
	fmt.Printf("trainable %d of %d parameters (loaded for inference)\n", trainable, all)
	// Output:
	// adapters: [default] output shape: [2 2]
	// trainable 0 of 102 parameters (loaded for inference)
}

// Merge the adapter into the base weights and save the plain model.
func ExampleModel_MergeAndUnload() {
	dir, err := os.MkdirTemp("", "merged")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := exampleAdapter(filepath.Join(dir, "adapter")); err != nil {
		log.Fatal(err)
	}
	m, err := peft.Load(exampleModel(), filepath.Join(dir, "adapter"))
	if err != nil {
		log.Fatal(err)
	}
	merged, err := m.MergeAndUnload(peft.SafeMerge())
	if err != nil {
		log.Fatal(err)
	}
	tensors := map[string]safetensors.Tensor{}
	for name, t := range nn.StateDict(merged) {
		tensors[name] = safetensors.Tensor{Shape: t.Shape(), F32: t.Data()}
	}
	if err := safetensors.Save(filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
		log.Fatal(err)
	}
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Println(names)
	// Output:
	// [0.bias 0.weight 2.bias 2.weight]
}

// Train a new LoRA adapter for a few steps and save it.
func ExampleNew() {
	base := exampleModel()
	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha = 4, 8
	cfg.TargetModules = tuners.Names("0", "2")
	m, err := peft.New(base, cfg)
	if err != nil {
		log.Fatal(err)
	}
	var params []*nn.Tensor
	for _, p := range m.TrainableParameters() {
		params = append(params, p.T)
	}
	opt := nn.NewAdamW(nn.AdamWConfig{LR: 0.05, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
		nn.ParamGroup{Params: params, LR: 0.05})

	x := nn.FromHost([]float32{1, 2, 3, 4, -1, 0, 1, 0, 0.5, 0.5, -2, 1}, 3, 4)
	target := nn.FromHost([]float32{1, -1, 0, 2, -1, 0.5}, 3, 2)
	loss := func() *nn.Tensor {
		d := nn.Sub(base.Forward(x), target)
		return nn.MeanAll(nn.Mul(d, d))
	}
	first := loss().Item()
	for step := 0; step < 20; step++ {
		opt.ZeroGrad()
		l := loss()
		l.Backward()
		if err := m.AfterBackward(step); err != nil {
			log.Fatal(err)
		}
		opt.Step()
	}
	fmt.Println("loss went down:", loss().Item() < first)

	dir, err := os.MkdirTemp("", "trained")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := m.Save(dir); err != nil {
		log.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println(e.Name())
	}
	// Output:
	// loss went down: true
	// adapter_config.json
	// adapter_model.safetensors
}
