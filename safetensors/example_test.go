package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gopeft/gopeft/safetensors"
)

func ExampleSave() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "adapter_model.safetensors")

	err = safetensors.Save(path, map[string]safetensors.Tensor{
		"lin0.lora_A.weight": {Shape: []int{2, 3}, F32: []float32{1, 2, 3, 4, 5, 6}},
		"lin0.lora_B.weight": {DType: safetensors.BF16, Shape: []int{1, 2}, F32: []float32{0.5, -1}},
		"token_ids":          {Shape: []int{2}, I64: []int64{7, 11}},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}

	tensors, meta, err := safetensors.ReadAll(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("metadata:", meta)
	b := tensors["lin0.lora_B.weight"]
	fmt.Println(b.DType, b.Shape, b.F32)
	fmt.Println(tensors["token_ids"].I64)
	// Output:
	// metadata: map[format:pt]
	// BF16 [1 2] [0.5 -1]
	// [7 11]
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")
	err = safetensors.Save(path, map[string]safetensors.Tensor{
		"embed.weight": {Shape: []int{2, 2}, F32: []float32{1, 2, 3, 4}},
		"norm.weight":  {DType: safetensors.F16, Shape: []int{2}, F32: []float32{1, 0.25}},
	}, map[string]string{"source": "example"})
	if err != nil {
		log.Fatal(err)
	}

	f, err := safetensors.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		// F32 data comes straight from the mapping (copy-on-write, valid
		// until Close); F16 is converted into a new slice.
		v, err := f.Float32(name)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(name, info.DType, info.Shape, v)
	}
	fmt.Println(f.Metadata()["source"])
	// Output:
	// embed.weight F32 [2 2] [1 2 3 4]
	// norm.weight F16 [2] [1 0.25]
	// example
}

func ExampleNewWriter() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "merged.safetensors")

	w, err := safetensors.NewWriter(path, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Abort() // removes the temporary file if we return early
	// Declare everything first, then stream the data in the same order,
	// in as many chunks as convenient.
	if err := w.Add("layers.0.weight", safetensors.BF16, []int{2, 2}); err != nil {
		log.Fatal(err)
	}
	if err := w.Add("layers.1.weight", safetensors.BF16, []int{2}); err != nil {
		log.Fatal(err)
	}
	for _, chunk := range [][]float32{{1, 2}, {3, 4}} {
		if err := w.WriteFloat32("layers.0.weight", chunk); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.WriteFloat32("layers.1.weight", []float32{5, 6}); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil { // the file appears only now
		log.Fatal(err)
	}

	c, err := safetensors.OpenCheckpoint(path)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	v, err := c.Float32("layers.0.weight")
	fmt.Println(v, err)
	// Output:
	// [1 2 3 4] <nil>
}
