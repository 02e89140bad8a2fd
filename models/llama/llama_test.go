package llama

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gopeft/gopeft/kernels"
	_ "github.com/gopeft/gopeft/kernels/all"
	"github.com/gopeft/gopeft/models/internal/golden"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
)

func backend(t testing.TB) kernels.Backend {
	t.Helper()
	be, err := kernels.Default()
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// tinyConfig is a grouped-query model small enough for float64 checks.
func tinyConfig() Config {
	return Config{
		VocabSize: 13, HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, RMSNormEps: 1e-6, RopeTheta: 10000,
	}
}

// tinyModel returns a tiny model with weights large enough to make
// attention non-uniform (HF's 0.02 init makes it nearly flat).
func tinyModel(t testing.TB, cfg Config, seed uint64) *Model {
	t.Helper()
	m, err := New(backend(t), cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.NamedParameters(m) {
		if strings.HasSuffix(p.Name, "layernorm.weight") || strings.HasSuffix(p.Name, "norm.weight") {
			continue
		}
		p.T.CopyFrom(nn.Scale(p.T, 25))
	}
	return m
}

func maxAbsDiff(got []float32, want []float64) float64 {
	worst := 0.0
	for i := range want {
		worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
	}
	return worst
}

func randomIDs(n, vocab int, seed uint64) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(kernels.Philox4x32(seed, uint64(i))[0] % uint32(vocab))
	}
	return ids
}

func TestForwardMatchesFloat64Reference(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 1)
	ref := newRef64(m)
	const B, S = 2, 5
	ids := randomIDs(B*S, m.cfg.VocabSize, 3)
	got, err := m.Forward(ids, B, S)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Shape(); !slices.Equal(s, []int{B, S, m.cfg.VocabSize}) {
		t.Fatalf("logits shape %v", s)
	}
	want := ref.forward(ref.embed(ids), B, S, nil, nil)
	if d := maxAbsDiff(got.Data(), want); d > 1e-4 {
		t.Errorf("max |float32 - float64| = %g", d)
	}
}

// randomKV returns per-layer prefixes [batch, kv, P, d] as tensors and as
// the reference's nested slices.
func randomKV(t *testing.T, m *Model, batch, p int, seed uint64) ([]KV, []refPast) {
	be := backend(t)
	c := m.cfg
	rng := nn.NewRNG(seed)
	kvs := make([]KV, c.NumHiddenLayers)
	refs := make([]refPast, c.NumHiddenLayers)
	nest := func(x []float32) [][][][]float64 {
		out := make([][][][]float64, batch)
		for b := range out {
			out[b] = make([][][]float64, c.NumKeyValueHeads)
			for h := range out[b] {
				out[b][h] = make([][]float64, p)
				for j := range out[b][h] {
					off := ((b*c.NumKeyValueHeads+h)*p + j) * c.HeadDim
					out[b][h][j] = to64(x[off : off+c.HeadDim])
				}
			}
		}
		return out
	}
	for l := range kvs {
		k := nn.Normal(be, rng, 0, 1, batch, c.NumKeyValueHeads, p, c.HeadDim)
		v := nn.Normal(be, rng, 0, 1, batch, c.NumKeyValueHeads, p, c.HeadDim)
		kvs[l] = KV{K: k, V: v}
		refs[l] = refPast{k: nest(k.Data()), v: nest(v.Data())}
	}
	return kvs, refs
}

func TestForwardEmbedsOptions(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 2)
	ref := newRef64(m)
	const B, S, P = 2, 4, 3
	ids := randomIDs(B*S, m.cfg.VocabSize, 5)
	h, err := m.Embed(ids, B, S)
	if err != nil {
		t.Fatal(err)
	}
	past, pastRef := randomKV(t, m, B, P, 9)
	pad := []int32{
		1, 1, 1, 1, 1, 1, 1,
		0, 1, 1, 0, 1, 1, 1,
	}
	cases := []struct {
		name string
		opts *ForwardOptions
		past []refPast
		pad  []int32
	}{
		{"nil", nil, nil, nil},
		{"prefix", &ForwardOptions{PastKV: past}, pastRef, nil},
		{"prefix+padding", &ForwardOptions{PastKV: past, AttentionMask: pad}, pastRef, pad},
		// Right padding: no query row is masked entirely (HF spreads such a
		// row uniformly over every key, which the reference does not model).
		{"padding", &ForwardOptions{AttentionMask: []int32{1, 1, 1, 0, 1, 1, 0, 0}}, nil, []int32{1, 1, 1, 0, 1, 1, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.ForwardEmbeds(h, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := ref.forward(ref.embed(ids), B, S, tc.past, tc.pad)
			if d := maxAbsDiff(got.Data(), want); d > 1e-4 {
				t.Errorf("max |float32 - float64| = %g", d)
			}
		})
	}
	// A prefix of batch 1 is shared by every row.
	one := make([]KV, len(past))
	for l, kv := range past {
		one[l] = KV{K: nn.Slice(kv.K, 0, 0, 1), V: nn.Slice(kv.V, 0, 0, 1)}
	}
	shared := make([]refPast, len(pastRef))
	for l, r := range pastRef {
		shared[l] = refPast{k: [][][][]float64{r.k[0], r.k[0]}, v: [][][][]float64{r.v[0], r.v[0]}}
	}
	got, err := m.ForwardEmbeds(h, &ForwardOptions{PastKV: one})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(got.Data(), ref.forward(ref.embed(ids), B, S, shared, nil)); d > 1e-4 {
		t.Errorf("shared prefix: max |float32 - float64| = %g", d)
	}
}

func TestForwardErrors(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 3)
	be := backend(t)
	h := nn.Zeros(be, 1, 2, 16)
	badKV := []KV{{K: nn.Zeros(be, 1, 2, 1, 4), V: nn.Zeros(be, 1, 2, 1, 4)}}
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"id out of range", func() error { _, err := m.Forward([]int32{0, 13}, 1, 2); return err }, "13"},
		{"negative id", func() error { _, err := m.Forward([]int32{-1, 0}, 1, 2); return err }, "-1"},
		{"length", func() error { _, err := m.Forward([]int32{0, 1, 2}, 1, 2); return err }, "3 token ids"},
		{"zero batch", func() error { _, err := m.Forward(nil, 0, 2); return err }, "positive"},
		{"embeds shape", func() error { _, err := m.ForwardEmbeds(nn.Zeros(be, 1, 2, 8), nil); return err }, "[batch, seq, 16]"},
		{"layers", func() error { _, err := m.ForwardEmbeds(h, &ForwardOptions{PastKV: badKV}); return err }, "1 layers"},
		{"mask length", func() error {
			_, err := m.ForwardEmbeds(h, &ForwardOptions{AttentionMask: []int32{1}})
			return err
		}, "attention mask"},
		{"positions", func() error { _, err := m.ForwardEmbeds(h, &ForwardOptions{Positions: []int{0}}); return err }, "positions"},
		{"cache and past", func() error {
			_, err := m.ForwardEmbeds(h, &ForwardOptions{PastKV: badKV, Cache: NewCache()})
			return err
		}, "exclusive"},
		{"generate tokens", func() error { _, err := m.Generate([]int32{1}, GenerateOptions{}); return err }, "MaxNewTokens"},
		{"generate top-p", func() error {
			_, err := m.Generate([]int32{1}, GenerateOptions{MaxNewTokens: 1, TopP: 2})
			return err
		}, "TopP"},
		{"generate prompt", func() error { _, err := m.Generate([]int32{99}, GenerateOptions{MaxNewTokens: 1}); return err }, "99"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestGradCheck(t *testing.T) {
	cfg := Config{VocabSize: 7, HiddenSize: 8, IntermediateSize: 6, NumHiddenLayers: 1,
		NumAttentionHeads: 2, NumKeyValueHeads: 1, RMSNormEps: 1e-6}
	m := tinyModel(t, cfg, 4)
	be := backend(t)
	const B, S = 1, 3
	ids := []int32{1, 5, 2}
	past := []KV{{
		K: nn.Normal(be, nn.NewRNG(1), 0, 1, 1, 1, 2, 4).SetRequiresGrad(true),
		V: nn.Normal(be, nn.NewRNG(2), 0, 1, 1, 1, 2, 4).SetRequiresGrad(true),
	}}
	emb, err := m.Embed(ids, B, S)
	if err != nil {
		t.Fatal(err)
	}
	h := emb.Detach().Clone().SetRequiresGrad(true)
	att := m.Decoder.Layers.Blocks[0].SelfAttn
	params := []*nn.Tensor{
		h, past[0].K, past[0].V,
		att.KProj.(*nn.Linear).Weight,
		m.Decoder.Layers.Blocks[0].InputLayerNorm.(*nn.RMSNorm).Weight,
		m.Decoder.Layers.Blocks[0].MLP.(*MLP).UpProj.(*nn.Linear).Weight,
	}
	for _, p := range params[3:] {
		p.SetRequiresGrad(true)
	}
	f := func() *nn.Tensor {
		out, err := m.ForwardEmbeds(h, &ForwardOptions{PastKV: past})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := nn.GradCheck(f, params, 1e-3, 2e-2); err != nil {
		t.Error(err)
	}
}

func TestCacheGenerationMatchesFullForward(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 5)
	prompt := []int32{3, 1, 4, 1, 5}
	const n = 6
	got, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: n})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("generated %d tokens, want %d", len(got), n)
	}
	seq := slices.Clone(prompt)
	for step := 0; step < n; step++ {
		logits, err := m.Forward(seq, 1, len(seq))
		if err != nil {
			t.Fatal(err)
		}
		v := m.cfg.VocabSize
		last := logits.Data()[(len(seq)-1)*v:]
		if want := int32(argmax(last)); got[step] != want {
			t.Fatalf("step %d: cached generation chose %d, full forward %d", step, got[step], want)
		}
		seq = append(seq, got[step])
	}
	// EOS stops generation after emitting it.
	stop, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: n, EOS: []int32{got[1]}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stop, got[:slices.Index(got, got[1])+1]) {
		t.Errorf("with EOS %d generated %v, want %v", got[1], stop, got[:2])
	}
}

func TestSampling(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 6)
	o := GenerateOptions{MaxNewTokens: 8, Temperature: 1.5, TopP: 0.9, Seed: 42}
	a, err := m.Generate([]int32{1, 2}, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Generate([]int32{1, 2}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Errorf("same seed gave %v and %v", a, b)
	}
	// A vanishing nucleus keeps only the most likely token: greedy.
	o.TopP = 1e-9
	c, err := m.Generate([]int32{1, 2}, o)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Generate([]int32{1, 2}, GenerateOptions{MaxNewTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c, g) {
		t.Errorf("top-p 1e-9 gave %v, greedy %v", c, g)
	}
}

func TestSampleDistribution(t *testing.T) {
	logits := []float32{0, float32(math.Log(3)), -100}
	// p = [0.25, 0.75, ~0]: u below 0.75 picks token 1 (sorted first).
	for _, tc := range []struct {
		u    float32
		topP float32
		want int
	}{
		{0, 1, 1}, {0.74, 1, 1}, {0.76, 1, 0}, {0.999, 1, 0}, {0.999, 0.5, 1},
	} {
		if got := sample(logits, 1, tc.topP, tc.u); got != tc.want {
			t.Errorf("sample(u=%v, top-p %v) = %d, want %d", tc.u, tc.topP, got, tc.want)
		}
	}
}

func TestConcurrentForward(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 7)
	ids := randomIDs(8, m.cfg.VocabSize, 1)
	want, err := m.Forward(ids, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := m.Forward(ids, 2, 4)
			if err == nil && !slices.Equal(got.Data(), want.Data()) {
				err = fmt.Errorf("concurrent forward differs")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestModuleTree(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 8)
	keys := nn.StateDictKeys(m)
	want := []string{"model.embed_tokens.weight"}
	for i := 0; i < 2; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, s := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
			"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"} {
			want = append(want, p+s+".weight")
		}
	}
	want = append(want, "model.norm.weight", "lm_head.weight")
	if !slices.Equal(keys, want) {
		t.Errorf("state dict keys\n%v\nwant\n%v", keys, want)
	}
	// Replacing a projection through the tree changes the forward pass.
	ids := []int32{1, 2, 3}
	before, _ := m.Forward(ids, 1, 3)
	zero := &nn.Linear{Weight: nn.Zeros(backend(t), 8, 16)}
	if err := nn.ReplaceModule(m, "model.layers.0.self_attn.v_proj", zero); err != nil {
		t.Fatal(err)
	}
	after, _ := m.Forward(ids, 1, 3)
	if slices.Equal(before.Data(), after.Data()) {
		t.Error("replacing v_proj did not change the output")
	}
	for _, tc := range []struct{ path, want string }{
		{"model.layers.0.self_attn.nope", "no child"},
		{"model.layers.7", "no child"},
		{"model.embed_tokens", "Embedder"},
		{"model.layers.0.self_attn", "*llama.Attention"},
	} {
		var bad nn.Module = &Layers{}
		if err := nn.ReplaceModule(m, tc.path, bad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReplaceModule(%s) = %v, want error mentioning %q", tc.path, err, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	base := `"vocab_size": 32, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 4`
	c, err := ParseConfig([]byte("{" + base + `, "rope_scaling": null, "model_type": "llama"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.NumKeyValueHeads != 4 || c.RopeTheta != 10000 || c.HeadDim != 4 || c.RMSNormEps != 1e-6 || c.TieWordEmbeddings {
		t.Errorf("defaults not filled: %+v", c)
	}
	cases := []struct{ extra, field string }{
		{`"model_type": "gpt2"`, "model_type"},
		{`"vocab_size": 0`, "vocab_size"},
		{`"hidden_size": -1`, "hidden_size"},
		{`"intermediate_size": 0`, "intermediate_size"},
		{`"num_hidden_layers": 0`, "num_hidden_layers"},
		{`"num_attention_heads": -4`, "num_attention_heads"},
		{`"num_key_value_heads": 3`, "num_key_value_heads"},
		{`"head_dim": 3`, "head_dim"},
		{`"rms_norm_eps": -1`, "rms_norm_eps"},
		{`"rope_theta": -5`, "rope_theta"},
		{`"hidden_act": "gelu"`, "hidden_act"},
		{`"rope_scaling": {"rope_type": "llama3"}`, "rope_scaling"},
		{`"max_position_embeddings": -1`, "max_position_embeddings"},
	}
	for _, tc := range cases {
		// A later duplicate key wins in encoding/json.
		_, err := ParseConfig([]byte("{" + base + ", " + tc.extra + "}"))
		if err == nil || !strings.Contains(err.Error(), `"`+tc.field+`"`) {
			t.Errorf("%s: error %v, want one naming %q", tc.extra, err, tc.field)
		}
	}
	for _, tc := range []struct {
		json string
		want []int32
	}{{``, nil}, {`, "eos_token_id": null`, nil}, {`, "eos_token_id": 2`, []int32{2}}, {`, "eos_token_id": [2, 7]`, []int32{2, 7}}} {
		c, err := ParseConfig([]byte("{" + base + tc.json + "}"))
		if err != nil {
			t.Fatal(err)
		}
		if eos, err := c.EOS(); err != nil || !slices.Equal(eos, tc.want) {
			t.Errorf("EOS of %q = %v, %v; want %v", tc.json, eos, err, tc.want)
		}
	}
	if c, err := ParseConfig([]byte("{" + base + `, "eos_token_id": "x"}`)); err != nil {
		t.Fatal(err)
	} else if _, err := c.EOS(); err == nil || !strings.Contains(err.Error(), "eos_token_id") {
		t.Errorf("bad eos_token_id: %v", err)
	}
	if _, err := ParseConfig([]byte(`{"vocab_size": "x"}`)); err == nil {
		t.Error("malformed JSON accepted")
	}
	dir := t.TempDir()
	if _, err := ReadConfig(dir); err == nil || !strings.Contains(err.Error(), ConfigFile) {
		t.Errorf("missing config.json: %v", err)
	}
}

// writeCheckpoint saves m's tensors (converted to dtype) as dir's
// model.safetensors, or as shards of at most perShard tensors with an
// index when perShard > 0, and writes config.json.
func writeCheckpoint(t *testing.T, m *Model, dir, dtype string, perShard int, skip ...string) {
	t.Helper()
	cfg, err := m.cfg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	all := map[string]safetensors.Tensor{}
	var names []string
	for _, p := range nn.NamedParameters(m) {
		if slices.Contains(skip, p.Name) {
			continue
		}
		all[p.Name] = safetensors.Tensor{DType: dtype, Shape: p.T.Shape(), F32: p.T.Data()}
		names = append(names, p.Name)
	}
	if perShard <= 0 {
		if err := safetensors.Save(filepath.Join(dir, safetensors.SingleFile), all, nil); err != nil {
			t.Fatal(err)
		}
		return
	}
	wm := map[string]string{}
	for i := 0; i*perShard < len(names); i++ {
		shard := fmt.Sprintf("model-%05d.safetensors", i+1)
		part := map[string]safetensors.Tensor{}
		for _, n := range names[i*perShard : min(len(names), (i+1)*perShard)] {
			part[n] = all[n]
			wm[n] = shard
		}
		if err := safetensors.Save(filepath.Join(dir, shard), part, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := safetensors.SaveIndex(dir, wm, 0); err != nil {
		t.Fatal(err)
	}
}

func roundTo(dtype string, v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		switch dtype {
		case safetensors.F16:
			out[i] = safetensors.Float16ToFloat32(safetensors.Float32ToFloat16(x))
		case safetensors.BF16:
			out[i] = safetensors.BFloat16ToFloat32(safetensors.Float32ToBFloat16(x))
		default:
			out[i] = x
		}
	}
	return out
}

func TestLoadCheckpoints(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 9)
	ids := randomIDs(6, m.cfg.VocabSize, 2)
	for _, tc := range []struct {
		name     string
		dtype    string
		perShard int
		mmap     bool
	}{
		{"f32", safetensors.F32, 0, false},
		{"f32 mmap", safetensors.F32, 0, true},
		{"f16", safetensors.F16, 0, false},
		{"bf16", safetensors.BF16, 0, false},
		{"sharded", safetensors.F32, 7, false},
		{"sharded bf16 mmap", safetensors.BF16, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeCheckpoint(t, m, dir, tc.dtype, tc.perShard)
			got, err := LoadWith(dir, LoadOptions{Copy: !tc.mmap})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if !reflect.DeepEqual(got.Config(), m.Config()) {
				t.Errorf("config %+v, want %+v", got.Config(), m.Config())
			}
			want := nn.StateDict(m)
			for name, p := range nn.StateDict(got) {
				if w := roundTo(tc.dtype, want[name].Data()); !slices.Equal(p.Data(), w) {
					t.Errorf("%s differs after loading", name)
				}
			}
			if tc.dtype == safetensors.F32 {
				a, _ := m.Forward(ids, 2, 3)
				b, err := got.Forward(ids, 2, 3)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(a.Data(), b.Data()) {
					t.Error("loaded model computes different logits")
				}
			}
		})
	}
}

func TestTiedEmbeddings(t *testing.T) {
	cfg := tinyConfig()
	cfg.TieWordEmbeddings = true
	m := tinyModel(t, cfg, 10)
	emb := m.Decoder.EmbedTokens.(*nn.Embedding).Weight
	if m.LMHead.(*nn.Linear).Weight != emb {
		t.Fatal("lm_head does not share the embedding")
	}
	ref := newRef64(m)
	ids := randomIDs(4, cfg.VocabSize, 4)
	got, err := m.Forward(ids, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(got.Data(), ref.forward(ref.embed(ids), 1, 4, nil, nil)); d > 1e-4 {
		t.Errorf("tied forward: max diff %g", d)
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, safetensors.SingleFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Info("lm_head.weight"); ok {
		t.Error("Save stored the tied lm_head")
	}
	f.Close()
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.LMHead.(*nn.Linear).Weight != back.Decoder.EmbedTokens.(*nn.Embedding).Weight {
		t.Error("loaded lm_head does not share the embedding")
	}
	// A tied checkpoint may also carry lm_head.weight.
	dir2 := t.TempDir()
	writeCheckpoint(t, m, dir2, safetensors.F32, 0)
	if _, err := Load(dir2); err != nil {
		t.Errorf("tied checkpoint with lm_head.weight: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 11)
	t.Run("missing", func(t *testing.T) {
		dir := t.TempDir()
		writeCheckpoint(t, m, dir, safetensors.F32, 0, "model.layers.1.mlp.up_proj.weight")
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.up_proj.weight") {
			t.Errorf("error %v, want one naming the missing tensor", err)
		}
	})
	t.Run("untied head missing", func(t *testing.T) {
		dir := t.TempDir()
		writeCheckpoint(t, m, dir, safetensors.F32, 0, "lm_head.weight")
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "lm_head.weight") {
			t.Errorf("error %v, want one naming lm_head.weight", err)
		}
	})
	t.Run("unexpected", func(t *testing.T) {
		dir := t.TempDir()
		writeCheckpoint(t, m, dir, safetensors.F32, 0)
		all, _, err := safetensors.ReadAll(filepath.Join(dir, safetensors.SingleFile))
		if err != nil {
			t.Fatal(err)
		}
		all["model.layers.0.extra.weight"] = safetensors.Tensor{Shape: []int{1}, F32: []float32{1}}
		if err := safetensors.Save(filepath.Join(dir, safetensors.SingleFile), all, nil); err != nil {
			t.Fatal(err)
		}
		_, err = Load(dir)
		if err == nil || !strings.Contains(err.Error(), "model.layers.0.extra.weight") {
			t.Errorf("error %v, want one naming the unexpected tensor", err)
		}
	})
	t.Run("shape", func(t *testing.T) {
		dir := t.TempDir()
		writeCheckpoint(t, m, dir, safetensors.F32, 0)
		var cfg map[string]any
		data, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
		if err := json.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["intermediate_size"] = 12
		data, _ = json.Marshal(cfg)
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "model.layers.0.mlp.gate_proj.weight") || !strings.Contains(err.Error(), "[24 16]") {
			t.Errorf("error %v, want one naming the mis-shaped tensor", err)
		}
	})
	t.Run("rotary buffer", func(t *testing.T) {
		// Old transformers versions saved the rotary inverse frequencies;
		// they are recomputed, not loaded.
		dir := t.TempDir()
		writeCheckpoint(t, m, dir, safetensors.F32, 0)
		all, _, err := safetensors.ReadAll(filepath.Join(dir, safetensors.SingleFile))
		if err != nil {
			t.Fatal(err)
		}
		all["model.layers.0.self_attn.rotary_emb.inv_freq"] = safetensors.Tensor{Shape: []int{2}, F32: []float32{1, 0.01}}
		if err := safetensors.Save(filepath.Join(dir, safetensors.SingleFile), all, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err != nil {
			t.Errorf("checkpoint with a rotary buffer: %v", err)
		}
	})
	t.Run("no weights", func(t *testing.T) {
		dir := t.TempDir()
		cfg, _ := m.cfg.JSON()
		os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644)
		if _, err := Load(dir); err == nil {
			t.Error("folder without weights loaded")
		}
	})
}

// TestGolden checks that the base model reproduces PEFT's output with the
// adapter disabled (output_base) for every golden llama case.
func TestGolden(t *testing.T) {
	cases, err := golden.Cases()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cases {
		if c.Model != "llama" || !slices.Contains(c.Checks, "base") {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			io, _, err := safetensors.ReadAll(filepath.Join(c.Dir, "io.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			want, ok := io["output_base"]
			if !ok {
				t.Fatal("io.safetensors has no output_base")
			}
			// A checkpoint folder: config.json from the dims, the base
			// state dict as model.safetensors.
			m := goldenModel(t, c)
			in := io[c.InputKey]
			ids := make([]int32, len(in.I64))
			for i, v := range in.I64 {
				ids[i] = int32(v)
			}
			got, err := m.Forward(ids, in.Shape[0], in.Shape[1])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Shape(), want.Shape) {
				t.Fatalf("logits shape %v, want %v", got.Shape(), want.Shape)
			}
			if ok, why := golden.Close(got.Data(), want.F32, c.Atol, c.Rtol); !ok {
				t.Errorf("output_base: %s", why)
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden llama case with a base check")
	}
}

func TestCausalLMLoss(t *testing.T) {
	be := backend(t)
	const B, S, V = 2, 3, 4
	logits := nn.Normal(be, nn.NewRNG(4), 0, 2, B, S, V)
	labels := []int32{9, 1, IgnoreIndex, 5, 2, 3}
	loss, err := CausalLMLoss(logits, labels)
	if err != nil {
		t.Fatal(err)
	}
	// Rows predicting labels[1]=1 (b0 pos0), labels[4]=2 (b1 pos0) and
	// labels[5]=3 (b1 pos1); labels[0] and labels[3] are never targets.
	l := logits.Data()
	nll := func(b, s int, y int32) float64 {
		row := to64(l[(b*S+s)*V : (b*S+s+1)*V])
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, x)
		}
		z := 0.0
		for _, x := range row {
			z += math.Exp(x - mx)
		}
		return -(row[y] - mx - math.Log(z))
	}
	want := (nll(0, 0, 1) + nll(1, 0, 2) + nll(1, 1, 3)) / 3
	if got := float64(loss.Item()); math.Abs(got-want) > 1e-5 {
		t.Errorf("loss %v, want %v", got, want)
	}
	if _, err := CausalLMLoss(logits, []int32{0, 7, 0, 0, 0, 0}); err == nil || !strings.Contains(err.Error(), "7") {
		t.Errorf("out-of-range label: %v", err)
	}
	if _, err := CausalLMLoss(logits, labels[:5]); err == nil {
		t.Error("short labels accepted")
	}
}

func TestSaveRefusesAdaptedModel(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 12)
	q := m.Decoder.Layers.Blocks[0].SelfAttn.QProj
	if err := nn.ReplaceModule(m, "model.layers.0.self_attn.q_proj", &wrapped{Base: q}); err != nil {
		t.Fatal(err)
	}
	err := m.Save(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "model.layers.0.self_attn.q_proj.base_layer.weight") {
		t.Errorf("Save of an adapted model: %v", err)
	}
}

// wrapped stands in for an adapter layer: it holds the base layer as
// "base_layer".
type wrapped struct{ Base nn.Layer }

func (w *wrapped) Children() []nn.Child             { return []nn.Child{{Name: "base_layer", Module: w.Base}} }
func (w *wrapped) Params() []nn.Param               { return nil }
func (w *wrapped) SetChild(string, nn.Module) error { return fmt.Errorf("no") }
func (w *wrapped) Forward(x *nn.Tensor) *nn.Tensor  { return w.Base.Forward(x) }

func TestPrefixKV(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 13)
	c := m.cfg
	const B, T = 2, 3
	width := c.NumHiddenLayers * 2 * c.NumKeyValueHeads * c.HeadDim
	enc := nn.Normal(backend(t), nn.NewRNG(5), 0, 1, B, T, width)
	kv, err := m.PrefixKV(enc)
	if err != nil {
		t.Fatal(err)
	}
	e := enc.Data()
	// PEFT: view(B, T, 2L, H, D).permute(2, 0, 3, 1, 4).split(2).
	for l := range kv {
		for which, ten := range []*nn.Tensor{kv[l].K, kv[l].V} {
			if s := ten.Shape(); !slices.Equal(s, []int{B, c.NumKeyValueHeads, T, c.HeadDim}) {
				t.Fatalf("layer %d shape %v", l, s)
			}
			got := ten.Data()
			for b := 0; b < B; b++ {
				for h := 0; h < c.NumKeyValueHeads; h++ {
					for p := 0; p < T; p++ {
						for d := 0; d < c.HeadDim; d++ {
							src := (((b*T+p)*2*c.NumHiddenLayers+2*l+which)*c.NumKeyValueHeads+h)*c.HeadDim + d
							dst := ((b*c.NumKeyValueHeads+h)*T+p)*c.HeadDim + d
							if got[dst] != e[src] {
								t.Fatalf("layer %d part %d [%d %d %d %d] = %v, want %v", l, which, b, h, p, d, got[dst], e[src])
							}
						}
					}
				}
			}
		}
	}
	if _, err := m.PrefixKV(nn.Zeros(backend(t), 1, 2, width+1)); err == nil {
		t.Error("wrong width accepted")
	}
}

// TestPrefixGeneration checks that a prefix given to Generate is the same
// prefix ForwardEmbeds sees through PastKV.
func TestPrefixGeneration(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 14)
	past, _ := randomKV(t, m, 1, 2, 3)
	prompt := []int32{4, 2, 7}
	got, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 3, Prefix: past})
	if err != nil {
		t.Fatal(err)
	}
	seq := slices.Clone(prompt)
	for step, tok := range got {
		h, err := m.Embed(seq, 1, len(seq))
		if err != nil {
			t.Fatal(err)
		}
		logits, err := m.ForwardEmbeds(h, &ForwardOptions{PastKV: past})
		if err != nil {
			t.Fatal(err)
		}
		v := m.cfg.VocabSize
		if want := int32(argmax(logits.Data()[(len(seq)-1)*v:])); tok != want {
			t.Fatalf("step %d: generated %d, full forward %d", step, tok, want)
		}
		seq = append(seq, tok)
	}
}

func TestExplicitPositions(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 15)
	ids := []int32{1, 2, 3, 4}
	h, _ := m.Embed(ids, 1, 4)
	a, err := m.ForwardEmbeds(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.ForwardEmbeds(h, &ForwardOptions{Positions: []int{0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Data(), b.Data()) {
		t.Error("explicit default positions changed the output")
	}
	// Rotary attention depends only on relative positions: shifting every
	// position leaves the logits (nearly) unchanged.
	c, err := m.ForwardEmbeds(h, &ForwardOptions{Positions: []int{5, 6, 7, 8}})
	if err != nil {
		t.Fatal(err)
	}
	ad, cd := a.Data(), c.Data()
	for i := range ad {
		if math.Abs(float64(ad[i]-cd[i])) > 1e-3 {
			t.Fatalf("shifted positions: logit %d is %v, was %v", i, cd[i], ad[i])
		}
	}
}

// lowRank is a minimal LoRA-style wrapper: base(x) + x A^T B^T.
type lowRank struct {
	Base nn.Layer
	A, B *nn.Tensor
}

func (l *lowRank) Children() []nn.Child             { return []nn.Child{{Name: "base_layer", Module: l.Base}} }
func (l *lowRank) Params() []nn.Param               { return []nn.Param{{Name: "A", T: l.A}, {Name: "B", T: l.B}} }
func (l *lowRank) SetChild(string, nn.Module) error { return fmt.Errorf("no") }
func (l *lowRank) Forward(x *nn.Tensor) *nn.Tensor {
	return nn.Add(l.Base.Forward(x), nn.LinearOp(nn.LinearOp(x, l.A, nil), l.B, nil))
}

// TestTrainThroughAdapter injects trainable low-rank wrappers into the
// attention projections of a frozen model and checks that AdamW lowers the
// causal LM loss: gradients flow through the whole model into them.
func TestTrainThroughAdapter(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 16)
	be := backend(t)
	var params []*nn.Tensor
	rng := nn.NewRNG(8)
	for i := range m.Decoder.Layers.Blocks {
		for _, name := range []string{"q_proj", "v_proj"} {
			path := fmt.Sprintf("model.layers.%d.self_attn.%s", i, name)
			base, err := nn.GetModule(m, path)
			if err != nil {
				t.Fatal(err)
			}
			out := base.(*nn.Linear).OutFeatures()
			w := &lowRank{Base: base.(nn.Layer),
				A: nn.Normal(be, rng, 0, 0.1, 2, m.cfg.HiddenSize).SetRequiresGrad(true),
				B: nn.Zeros(be, out, 2).SetRequiresGrad(true)}
			if err := nn.ReplaceModule(m, path, w); err != nil {
				t.Fatal(err)
			}
			params = append(params, w.A, w.B)
		}
	}
	ids := randomIDs(2*6, m.cfg.VocabSize, 9)
	loss := func() *nn.Tensor {
		logits, err := m.Forward(ids, 2, 6)
		if err != nil {
			t.Fatal(err)
		}
		l, err := CausalLMLoss(logits, ids)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	first := loss().Item()
	opt := nn.NewAdamW(nn.AdamWConfig{LR: 0.05, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, nn.ParamGroup{Params: params, LR: 0.05})
	for step := 0; step < 20; step++ {
		opt.ZeroGrad()
		l := loss()
		l.Backward()
		opt.Step()
	}
	if last := loss().Item(); !(last < first*0.8) {
		t.Errorf("loss went from %v to %v, want a clear decrease", first, last)
	}
	for _, p := range nn.NamedParameters(m) {
		want := strings.HasSuffix(p.Name, ".A") || strings.HasSuffix(p.Name, ".B")
		if p.T.RequiresGrad() != want {
			t.Errorf("%s requires grad = %v", p.Name, p.T.RequiresGrad())
		}
	}
}

// TestGoldenPromptLearning checks ForwardEmbeds the way prompt tuning,
// p-tuning and CPT use it: the saved virtual-token embeddings are prepended
// to the token embeddings of every row, and the logits of all positions
// must match PEFT's output_adapter.
func TestGoldenPromptLearning(t *testing.T) {
	cases, err := golden.Cases()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cases {
		if c.Model != "llama" || !slices.Contains([]string{"prompt_tuning", "p_tuning", "cpt"}, c.Method) {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			io, _, err := safetensors.ReadAll(filepath.Join(c.Dir, "io.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			ad, _, err := safetensors.ReadAll(filepath.Join(c.Dir, "adapter", "adapter_model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			prompt, ok := ad["prompt_embeddings"]
			if !ok {
				t.Fatal("adapter has no prompt_embeddings")
			}
			m := goldenModel(t, c)
			in := io["input_ids"]
			B, S := in.Shape[0], in.Shape[1]
			ids := make([]int32, len(in.I64))
			for i, v := range in.I64 {
				ids[i] = int32(v)
			}
			h, err := m.Embed(ids, B, S)
			if err != nil {
				t.Fatal(err)
			}
			T := prompt.Shape[0]
			p := nn.Expand(nn.New(m.Backend(), prompt.F32, 1, T, prompt.Shape[1]), B, T, prompt.Shape[1])
			got, err := m.ForwardEmbeds(nn.Concat(1, p, h), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := io["output_adapter"]
			if !slices.Equal(got.Shape(), want.Shape) {
				t.Fatalf("shape %v, want %v", got.Shape(), want.Shape)
			}
			if ok, why := golden.Close(got.Data(), want.F32, c.Atol, c.Rtol); !ok {
				t.Errorf("output_adapter: %s", why)
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden prompt-learning llama case")
	}
}

// goldenModel loads a golden llama case's base.safetensors as a checkpoint.
func goldenModel(t *testing.T, c golden.Case) *Model {
	t.Helper()
	d := c.ModelDims
	cfg := Config{VocabSize: int(d["vocab"]), HiddenSize: int(d["hidden"]), NumHiddenLayers: int(d["layers"]),
		NumAttentionHeads: int(d["heads"]), NumKeyValueHeads: int(d["kv_heads"]), IntermediateSize: int(d["intermediate"]),
		RMSNormEps: d["rms_eps"], RopeTheta: d["rope_theta"]}
	data, err := cfg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(c.Dir, "base.safetensors"), filepath.Join(dir, safetensors.SingleFile)); err != nil {
		t.Fatal(err)
	}
	m, err := LoadWith(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestEmbedsGeneration checks that embeddings given to Generate are
// prepended to the prompt exactly as ForwardEmbeds sees them concatenated,
// alone and after a prefix.
func TestEmbedsGeneration(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 16)
	virt := nn.Normal(backend(t), nn.NewRNG(8), 0, 1, 1, 2, m.cfg.HiddenSize)
	past, _ := randomKV(t, m, 1, 2, 3)
	prompt := []int32{4, 2, 7}
	for _, prefix := range [][]KV{nil, past} {
		got, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 3, Embeds: virt, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		seq := slices.Clone(prompt)
		for step, tok := range got {
			h, err := m.Embed(seq, 1, len(seq))
			if err != nil {
				t.Fatal(err)
			}
			logits, err := m.ForwardEmbeds(nn.Concat(1, virt, h), &ForwardOptions{PastKV: prefix})
			if err != nil {
				t.Fatal(err)
			}
			v := m.cfg.VocabSize
			if want := int32(argmax(logits.Data()[(len(seq)+1)*v:])); tok != want {
				t.Fatalf("prefix %v step %d: generated %d, full forward %d", prefix != nil, step, tok, want)
			}
			seq = append(seq, tok)
		}
	}
	if _, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 1, Embeds: nn.Zeros(backend(t), 1, 2, 3)}); err == nil {
		t.Error("Embeds of the wrong width accepted")
	}
}

// scaledInput is an attention extension adding w*x to the layer's output.
type scaledInput struct {
	w      *nn.Tensor
	qShape []int
}

func (s *scaledInput) Extend(a *Attention, x, q *nn.Tensor) *nn.Tensor {
	s.qShape = q.Shape()
	return nn.Mul(x, s.w)
}

// TestAttentionExtension checks that an extension's term is added to the
// layer's output (a zero term changes nothing), that it sees the rotated
// queries [B, heads, S, d], and that gradients reach its parameters.
func TestAttentionExtension(t *testing.T) {
	m := tinyModel(t, tinyConfig(), 17)
	ids := []int32{1, 2, 3, 4, 5, 6}
	plain, err := m.Forward(ids, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	ext := &scaledInput{w: nn.Zeros(backend(t), 1).SetRequiresGrad(true)}
	a := m.Decoder.Layers.Blocks[1].SelfAttn
	a.Extension = ext
	defer func() { a.Extension = nil }()
	zero, err := m.Forward(ids, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plain.Data(), zero.Data()) {
		t.Error("a zero extension changed the output")
	}
	if want := []int{2, a.Heads(), 3, a.HeadDim()}; !slices.Equal(ext.qShape, want) {
		t.Errorf("queries shape %v, want %v", ext.qShape, want)
	}
	ext.w.CopyFromHost([]float32{0.5})
	f := func() *nn.Tensor {
		out, err := m.Forward(ids, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if slices.Equal(f().Data(), plain.Data()) {
		t.Error("the extension changed nothing")
	}
	if err := nn.GradCheck(f, []*nn.Tensor{ext.w}, 1e-3, 1e-2); err != nil {
		t.Error(err)
	}
}
