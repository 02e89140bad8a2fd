package prompttuning_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners/prompttuning"
)

// Training a prompt-tuning adapter on a tiny LLaMA to continue a pattern,
// saving it, loading it back and generating with it.
func Example() {
	base, err := llama.New(nil, llama.Config{
		VocabSize: 16, HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2,
	}, 1)
	if err != nil {
		panic(err)
	}
	// A random model is nearly flat at HF's N(0, 0.02) init: make it less so.
	for _, p := range nn.NamedParameters(base) {
		if !strings.HasSuffix(p.Name, "norm.weight") {
			p.T.CopyFrom(nn.Scale(p.T, 25))
		}
	}
	cfg := prompttuning.NewConfig()
	cfg.NumVirtualTokens = 4
	text, tokenizer := "count on", "my-tokenizer" // as PEFT records them
	cfg.PromptTuningInit = prompttuning.InitText
	cfg.PromptTuningInitText, cfg.TokenizerNameOrPath = &text, &tokenizer
	cfg.InitTokenIDs = []int32{1, 2, 3} // the init text's token ids
	m, err := peft.New(base, cfg)
	if err != nil {
		panic(err)
	}
	trainable, all := m.NumTrainableParameters()
	fmt.Println("trainable:", trainable, "of", all)

	// Teach the prompt the sequence 5 6 7 8 9 10.
	ids := []int32{5, 6, 7, 8, 9, 10}
	in := models.Input{IDs: ids, Shape: []int{1, len(ids)}}
	oc := nn.DefaultAdamW()
	oc.LR, oc.WeightDecay = 0.1, 0
	opt := nn.NewAdamW(oc, oc.Group(params(m)...))
	var first, last float32
	for step := range 200 {
		opt.ZeroGrad()
		loss, err := m.CausalLMLoss(in, ids, nil)
		if err != nil {
			panic(err)
		}
		loss.Backward()
		opt.Step()
		if step == 0 {
			first = loss.Item()
		}
		last = loss.Item()
	}
	fmt.Println("loss fell:", last < first/4)

	dir, err := os.MkdirTemp("", "prompt")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := m.Save(dir); err != nil {
		panic(err)
	}
	loaded, err := peft.Load(base, dir) // frozen, for inference
	if err != nil {
		panic(err)
	}
	out, err := loaded.Generate([]int32{5, 6, 7}, llama.GenerateOptions{MaxNewTokens: 3})
	if err != nil {
		panic(err)
	}
	fmt.Println("5 6 7 ->", out)
	// Output:
	// trainable: 64 of 5264
	// loss fell: true
	// 5 6 7 -> [8 9 10]
}

func params(m *peft.Model) []*nn.Tensor {
	var out []*nn.Tensor
	for _, p := range m.TrainableParameters() {
		out = append(out, p.T)
	}
	return out
}
