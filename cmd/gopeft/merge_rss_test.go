package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/gopeft/gopeft/safetensors"
)

var (
	mergeRSS      = flag.Bool("merge-rss", false, "TestMergePeakRSS: write a 1.1 GiB checkpoint (4 shards of 256 MiB) and measure gopeft merge's peak RSS")
	mergeRSSDType = flag.String("merge-rss-dtype", "F32", "TestMergePeakRSS: dtype of the checkpoint (F32, or BF16 for 128 MiB shards)")
)

// TestMergePeakRSS measures the peak resident memory of `gopeft merge` on a
// checkpoint of 4 decoder shards of 256 MiB each (plus a 128 MiB shard of
// embeddings), merging a rank-16 LoRA adapter on every projection. It only
// runs with -merge-rss (it writes 2.25 GiB to a temporary folder):
//
//	go test ./cmd/gopeft -run MergePeakRSS -merge-rss -v
func TestMergePeakRSS(t *testing.T) {
	if !*mergeRSS {
		t.Skip("writes 2.25 GiB; run with -merge-rss")
	}
	root := t.TempDir()
	bin := filepath.Join(root, "gopeft")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	const hidden, inter, vocab, layers, r = 2048, 8192, 8192, 4, 16
	base := filepath.Join(root, "base")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": %d, "hidden_size": %d,
"intermediate_size": %d, "num_hidden_layers": %d, "num_attention_heads": 16, "num_key_value_heads": 16,
"rms_norm_eps": 1e-6, "torch_dtype": %q}`, vocab, hidden, inter, layers, torchDTypes[*mergeRSSDType])
	if err := os.WriteFile(filepath.Join(base, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	type tensor struct {
		name  string
		shape []int
	}
	proj := map[string][2]int{ // out, in
		"self_attn.q_proj": {hidden, hidden}, "self_attn.k_proj": {hidden, hidden},
		"self_attn.v_proj": {hidden, hidden}, "self_attn.o_proj": {hidden, hidden},
		"mlp.gate_proj": {inter, hidden}, "mlp.up_proj": {inter, hidden}, "mlp.down_proj": {hidden, inter},
	}
	shards := [][]tensor{{
		{"model.embed_tokens.weight", []int{vocab, hidden}}, {"lm_head.weight", []int{vocab, hidden}},
		{"model.norm.weight", []int{hidden}},
	}}
	adapter := map[string]safetensors.Tensor{}
	for l := range layers {
		var s []tensor
		for p, oi := range proj {
			name := fmt.Sprintf("model.layers.%d.%s", l, p)
			s = append(s, tensor{name + ".weight", []int{oi[0], oi[1]}})
			a := make([]float32, r*oi[1])
			b := make([]float32, oi[0]*r)
			for i := range a {
				a[i] = float32(i%7) * 1e-3
			}
			for i := range b {
				b[i] = float32(i%5) * 1e-3
			}
			adapter["base_model.model."+name+".lora_A.weight"] = safetensors.Tensor{Shape: []int{r, oi[1]}, F32: a}
			adapter["base_model.model."+name+".lora_B.weight"] = safetensors.Tensor{Shape: []int{oi[0], r}, F32: b}
		}
		s = append(s, tensor{fmt.Sprintf("model.layers.%d.input_layernorm.weight", l), []int{hidden}},
			tensor{fmt.Sprintf("model.layers.%d.post_attention_layernorm.weight", l), []int{hidden}})
		shards = append(shards, s)
	}
	weightMap := map[string]string{}
	var total int64
	chunk := make([]float32, 1<<20)
	for i := range chunk {
		chunk[i] = float32(i%1000) * 1e-4
	}
	var shardBytes int64
	item, ok := safetensors.ItemSize(*mergeRSSDType)
	if !ok || torchDTypes[*mergeRSSDType] == "" {
		t.Fatalf("-merge-rss-dtype %s: want F32, F16 or BF16", *mergeRSSDType)
	}
	for i, s := range shards {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		w, err := safetensors.NewWriter(filepath.Join(base, file), nil)
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, ts := range s {
			if err := w.Add(ts.name, *mergeRSSDType, ts.shape); err != nil {
				t.Fatal(err)
			}
			weightMap[ts.name] = file
		}
		for _, ts := range s {
			n := 1
			for _, d := range ts.shape {
				n *= d
			}
			size += int64(item * n)
			for n > 0 {
				k := min(n, len(chunk))
				if err := w.WriteFloat32(ts.name, chunk[:k]); err != nil {
					t.Fatal(err)
				}
				n -= k
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		total += size
		shardBytes = max(shardBytes, size)
	}
	if err := safetensors.SaveIndex(base, weightMap, total); err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(root, "adapter")
	if err := os.MkdirAll(ad, 0o755); err != nil {
		t.Fatal(err)
	}
	acfg := `{"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}`
	if err := os.WriteFile(filepath.Join(ad, "adapter_config.json"), []byte(acfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Save(filepath.Join(ad, "adapter_model.safetensors"), adapter, nil); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "merge", "--base", base, "--adapter", ad, "--out", filepath.Join(root, "merged"), "--json")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var rep mergeReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024 // KiB on Linux
	t.Logf("%s: merged %d modules in %d shards (largest %d MiB, total %d MiB) in %.1fs: peak RSS %d MiB = %.2fx one shard", *mergeRSSDType,
		len(rep.Merged), rep.Shards, shardBytes>>20, total>>20, rep.Seconds, peak>>20, float64(peak)/float64(shardBytes))
	if len(rep.Merged) != layers*len(proj) {
		t.Errorf("merged %d modules, want %d", len(rep.Merged), layers*len(proj))
	}
	if peak >= 2*shardBytes {
		t.Errorf("peak RSS %d MiB is not below twice a shard (%d MiB)", peak>>20, shardBytes>>20)
	}
}
