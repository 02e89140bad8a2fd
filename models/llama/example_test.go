package llama_test

import (
	"fmt"
	"os"

	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/models/llama"
)

// A tiny randomly initialised model saved as a HuggingFace checkpoint
// folder and loaded back.
func ExampleLoad() {
	cfg := llama.Config{VocabSize: 32, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2}
	m, err := llama.New(nil, cfg, 1)
	if err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "tiny-llama")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := m.Save(dir); err != nil { // config.json + model.safetensors
		panic(err)
	}

	loaded, err := llama.Load(dir)
	if err != nil {
		panic(err)
	}
	logits, err := loaded.Forward([]int32{1, 2, 3, 4, 5, 6}, 2, 3)
	if err != nil {
		panic(err)
	}
	fmt.Println("logits", logits.Shape())
	fmt.Println("heads", loaded.Config().NumAttentionHeads, "kv heads", loaded.Config().NumKeyValueHeads)
	// Output:
	// logits [2 3 32]
	// heads 4 kv heads 2
}

// Greedy decoding with a KV cache.
func ExampleModel_Generate() {
	cfg := llama.Config{VocabSize: 32, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 1, NumAttentionHeads: 2}
	m, err := llama.New(nil, cfg, 7)
	if err != nil {
		panic(err)
	}
	out, err := m.Generate([]int32{1, 2, 3}, llama.GenerateOptions{MaxNewTokens: 4})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(out), "new tokens")
	// Output: 4 new tokens
}
