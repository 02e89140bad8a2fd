package adalora_test

import (
	"fmt"
	"log"
	"os"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adalora"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

// Train an AdaLoRA adapter with rank allocation: the orthogonality
// regulariser joins the loss, and the allocator runs after each optimizer
// step, before the gradients are zeroed. Saving writes only the kept
// singular triplets.
func ExampleAllocator() {
	base := peftcheck.MLP(4, 8, 2)
	cfg := adalora.NewConfig()
	cfg.TargetModules = tuners.Names("0", "2")
	cfg.InitR, cfg.TargetR, cfg.TotalStep, cfg.TFinal = 4, 2, 10, 2
	m, err := peft.New(base, cfg)
	if err != nil {
		log.Fatal(err)
	}
	alloc, err := adalora.NewAllocator(m.Base(), m.Config("default").(*adalora.Config), "default")
	if err != nil {
		log.Fatal(err)
	}
	var params []*nn.Tensor
	for _, p := range m.TrainableParameters() {
		params = append(params, p.T)
	}
	opt := nn.NewAdamW(nn.DefaultAdamW(), nn.ParamGroup{Params: params, LR: 0.01})
	x := nn.FromHost([]float32{1, 2, 3, 4, -1, 0, 1, 0, 0.5, 0.5, -2, 1}, 3, 4)
	y := nn.FromHost([]float32{1, -1, 0, 2, -1, 0.5}, 3, 2)
	for step := range 12 {
		d := nn.Sub(base.Forward(x), y)
		loss := nn.Add(nn.MeanAll(nn.Mul(d, d)), alloc.OrthRegLoss())
		loss.Backward()
		opt.Step()
		if err := alloc.UpdateAndAllocate(step); err != nil {
			log.Fatal(err)
		}
		opt.ZeroGrad()
	}
	kept := 0
	for _, mask := range alloc.RankPattern() {
		for _, on := range mask {
			if on {
				kept++
			}
		}
	}
	fmt.Println("triplets kept:", kept, "of", alloc.InitBudget())

	dir, err := os.MkdirTemp("", "adalora")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := m.Save(dir); err != nil {
		log.Fatal(err)
	}
	if _, err := peft.Load(peftcheck.MLP(4, 8, 2), dir); err != nil {
		log.Fatal(err)
	}
	fmt.Println("reloaded")
	// Output:
	// triplets kept: 4 of 8
	// reloaded
}
