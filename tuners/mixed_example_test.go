package tuners_test

import (
	"fmt"
	"log"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/loha"
	"github.com/gopeft/gopeft/tuners/lora"
)

// A LoRA and a LoHa layer over the same Linear, combined by a stack (the
// peft package builds stacks for mixed models; see peft.NewMixed).
func ExampleNewStack() {
	base := nn.NewLinear(nil, 4, 3, true, nn.NewRNG(1))
	lo, err := lora.Method{}.Wrap(tuners.Target{Path: "fc", Module: base, Config: lora.NewConfig(), Adapter: "lo"})
	if err != nil {
		log.Fatal(err)
	}
	ha, err := loha.Method{}.Wrap(tuners.Target{Path: "fc", Module: base, Config: loha.NewConfig(), Adapter: "ha"})
	if err != nil {
		log.Fatal(err)
	}
	s := tuners.NewStack(base)
	if err := s.Put(lo); err != nil {
		log.Fatal(err)
	}
	if err := s.Put(ha); err != nil {
		log.Fatal(err)
	}
	s.SetActive([]string{"lo", "ha"})
	y := s.Forward(nn.FromHost([]float32{1, 2, 3, 4}, 1, 4))
	fmt.Println(s.Adapters(), s.Active(), y.Shape())
	// Output: [lo ha] [lo ha] [1 3]
}
