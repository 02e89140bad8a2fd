package peft_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/loha"
	"github.com/gopeft/gopeft/tuners/lora"
)

// Stack a LoHa adapter on a LoRA adapter in one model and run both.
func ExampleNewMixed() {
	lc := lora.NewConfig()
	lc.R, lc.Alpha, lc.TargetModules = 2, 4, tuners.Names("0", "2")
	m, err := peft.NewMixed(exampleModel(), lc, peft.AdapterName("lora"))
	if err != nil {
		log.Fatal(err)
	}
	hc := loha.NewConfig()
	hc.R, hc.Alpha, hc.TargetModules = 2, 4, tuners.Names("0")
	if err := m.AddAdapter(hc, peft.AdapterName("loha")); err != nil {
		log.Fatal(err)
	}
	if err := m.SetAdapter("lora", "loha"); err != nil {
		log.Fatal(err)
	}
	x := nn.FromHost([]float32{1, 2, 3, 4}, 1, 4)
	out, err := m.Forward(models.Input{X: x, Shape: []int{1, 4}})
	if err != nil {
		log.Fatal(err)
	}
	s := m.Base().Children()[0].Module.(*tuners.Stack)
	for _, l := range s.Layers() {
		fmt.Println(l.Method(), l.Active())
	}
	fmt.Println(out.Shape())
	// Output:
	// LORA [lora]
	// LOHA [loha]
	// [1 2]
}

// Load adapters of two methods, saved separately, into one mixed model.
func ExampleLoadMixed() {
	dir, err := os.MkdirTemp("", "mixed")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lc := lora.NewConfig()
	lc.R, lc.Alpha, lc.TargetModules = 2, 4, tuners.Names("0", "2")
	hc := loha.NewConfig()
	hc.R, hc.Alpha, hc.TargetModules = 2, 4, tuners.Names("0")
	for name, cfg := range map[string]tuners.Config{"lora": lc, "loha": hc} {
		m, err := peft.New(exampleModel(), cfg)
		if err != nil {
			log.Fatal(err)
		}
		if err := m.Save(filepath.Join(dir, name)); err != nil {
			log.Fatal(err)
		}
	}

	m, err := peft.LoadMixed(exampleModel(), filepath.Join(dir, "lora"), peft.AdapterName("lora"))
	if err != nil {
		log.Fatal(err)
	}
	if err := m.LoadAdapter(filepath.Join(dir, "loha"), "loha"); err != nil {
		log.Fatal(err)
	}
	if err := m.SetAdapter("lora", "loha"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Mixed(), m.Adapters(), m.ActiveAdapters())
	// Output: true [lora loha] [lora loha]
}
