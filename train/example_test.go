package train_test

import (
	"fmt"
	"log"

	"github.com/gopeft/gopeft/internal/demo"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/train"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// A learning-rate schedule is a factor of the base rate per optimizer step.
func ExampleSchedule_Factor() {
	for _, step := range []int{0, 5, 10, 55, 100} {
		fmt.Printf("step %3d: linear %.2f cosine %.2f\n", step,
			train.Linear.Factor(step, 10, 100), train.Cosine.Factor(step, 10, 100))
	}
	// Output:
	// step   0: linear 0.00 cosine 0.00
	// step   5: linear 0.50 cosine 0.50
	// step  10: linear 1.00 cosine 1.00
	// step  55: linear 0.50 cosine 0.50
	// step 100: linear 0.00 cosine 0.00
}

// Fine-tune a LoRA adapter on a causal-LM task and save it.
func ExampleTrainer() {
	base, err := llama.New(nil, demo.ModelConfig(), 1) // llama.Load(dir) for a real checkpoint
	if err != nil {
		log.Fatal(err)
	}
	cfg := lora.NewConfig()
	cfg.R, cfg.Alpha = 8, 16
	cfg.TargetModules = tuners.Names("q_proj", "v_proj")
	m, err := peft.New(base, cfg)
	if err != nil {
		log.Fatal(err)
	}
	data := demo.Examples(demo.Shift, 64, 1) // or train.ReadJSONL("data.jsonl", vocab)
	tr, err := train.New(m, train.Config{
		LR: 3e-3, Steps: 10, BatchSize: 8, WarmupSteps: 2, Schedule: train.Cosine,
		MaxGradNorm: 1, Seed: 42,
	}, data, data[:16])
	if err != nil {
		log.Fatal(err)
	}
	res, err := tr.Run()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("steps:", res.Steps, "loss fell:", res.History[len(res.History)-1].Loss < res.History[0].Loss)
	// m.Save("out/adapter") writes the adapter in PEFT's format.
	// Output:
	// steps: 10 loss fell: true
}
