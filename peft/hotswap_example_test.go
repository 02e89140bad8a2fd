package peft_test

import (
	"fmt"
	"log"
	"os"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// exampleRankAdapter writes a LoRA adapter of rank r with weights drawn
// from seed to a new temporary folder.
func exampleRankAdapter(r int, seed uint64) string {
	dir, err := os.MkdirTemp("", "adapter")
	if err != nil {
		log.Fatal(err)
	}
	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha = r, 4
	cfg.TargetModules = tuners.Names("0", "2")
	m, err := peft.New(exampleModel(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	sd, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		log.Fatal(err)
	}
	rng := nn.NewRNG(seed)
	for _, t := range sd {
		t.CopyFrom(nn.Normal(nil, rng, 0, 0.5, t.Shape()...))
	}
	if err := m.Save(dir); err != nil {
		log.Fatal(err)
	}
	return dir
}

// Serve one adapter after another without rebuilding the model: pad the
// loaded adapter to the largest rank once, then swap each new adapter's
// weights in place between requests.
func ExampleModel_HotSwapAdapter() {
	first, second := exampleRankAdapter(2, 1), exampleRankAdapter(4, 2)
	defer os.RemoveAll(first)
	defer os.RemoveAll(second)

	m, err := peft.Load(exampleModel(), first)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.PrepareHotSwap(4); err != nil { // the largest rank to come
		log.Fatal(err)
	}
	if err := m.HotSwapAdapter(second, peft.DefaultAdapterName); err != nil {
		log.Fatal(err)
	}

	x := nn.FromHost([]float32{1, 2, 3, 4}, 1, 4)
	in := models.Input{X: x, Shape: []int{1, 4}}
	swapped, err := m.Forward(in)
	if err != nil {
		log.Fatal(err)
	}
	fresh, err := peft.Load(exampleModel(), second)
	if err != nil {
		log.Fatal(err)
	}
	want, err := fresh.Forward(in)
	if err != nil {
		log.Fatal(err)
	}
	same := true
	for i, v := range want.Data() {
		if d := v - swapped.Data()[i]; d > 1e-5 || d < -1e-5 {
			same = false
		}
	}
	fmt.Println("same as a fresh load:", same)
	// Output: same as a fresh load: true
}

// Pad every LoRA adapter to rank 8 up front; the outputs do not change.
func ExampleModel_PrepareHotSwap() {
	dir := exampleRankAdapter(2, 3)
	defer os.RemoveAll(dir)
	m, err := peft.Load(exampleModel(), dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.PrepareHotSwap(8); err != nil {
		log.Fatal(err)
	}
	fmt.Println("r:", m.Config(peft.DefaultAdapterName).(*lora.Config).R)
	// Output: r: 8
}
