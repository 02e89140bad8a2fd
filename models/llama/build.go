package llama

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
)

// weightKind says how New initialises a weight.
type weightKind int

const (
	matrixWeight weightKind = iota // N(0, 0.02), HF's initializer_range
	normWeight                     // ones
	biasWeight                     // zeros
)

// weightSource supplies the tensor of a named parameter with the given
// shape: drawn at random (New) or read from a checkpoint (Load).
type weightSource func(name string, shape []int, kind weightKind) (*nn.Tensor, error)

// build assembles the module tree of cfg, asking src for every parameter
// by its HF state-dict name. A tied lm_head shares the embedding tensor.
func build(be kernels.Backend, cfg Config, src weightSource) (*Model, error) {
	h, d := cfg.HiddenSize, cfg.HeadDim
	nh, nkv := cfg.NumAttentionHeads, cfg.NumKeyValueHeads
	linear := func(name string, in, out int, bias bool) (*nn.Linear, error) {
		w, err := src(name+".weight", []int{out, in}, matrixWeight)
		if err != nil {
			return nil, err
		}
		l := &nn.Linear{Weight: w}
		if bias {
			if l.Bias, err = src(name+".bias", []int{out}, biasWeight); err != nil {
				return nil, err
			}
		}
		return l, nil
	}
	norm := func(name string) (*nn.RMSNorm, error) {
		w, err := src(name+".weight", []int{h}, normWeight)
		if err != nil {
			return nil, err
		}
		return &nn.RMSNorm{Weight: w, Eps: float32(cfg.RMSNormEps)}, nil
	}
	emb, err := src("model.embed_tokens.weight", []int{cfg.VocabSize, h}, matrixWeight)
	if err != nil {
		return nil, err
	}
	m := &Model{
		cfg:     cfg,
		be:      be,
		invFreq: inverseFrequencies(cfg.RopeTheta, d),
		Decoder: &Decoder{EmbedTokens: &nn.Embedding{Weight: emb}, Layers: &Layers{}},
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		a := &Attention{heads: nh, kvHeads: nkv, headDim: d}
		mlp := &MLP{}
		b := &Block{SelfAttn: a, MLP: mlp}
		var err error
		var l *nn.Linear
		var n *nn.RMSNorm
		if l, err = linear(p+"self_attn.q_proj", h, nh*d, cfg.AttentionBias); err != nil {
			return nil, err
		}
		a.QProj = l
		if l, err = linear(p+"self_attn.k_proj", h, nkv*d, cfg.AttentionBias); err != nil {
			return nil, err
		}
		a.KProj = l
		if l, err = linear(p+"self_attn.v_proj", h, nkv*d, cfg.AttentionBias); err != nil {
			return nil, err
		}
		a.VProj = l
		if l, err = linear(p+"self_attn.o_proj", nh*d, h, cfg.AttentionBias); err != nil {
			return nil, err
		}
		a.OProj = l
		if l, err = linear(p+"mlp.gate_proj", h, cfg.IntermediateSize, cfg.MLPBias); err != nil {
			return nil, err
		}
		mlp.GateProj = l
		if l, err = linear(p+"mlp.up_proj", h, cfg.IntermediateSize, cfg.MLPBias); err != nil {
			return nil, err
		}
		mlp.UpProj = l
		if l, err = linear(p+"mlp.down_proj", cfg.IntermediateSize, h, cfg.MLPBias); err != nil {
			return nil, err
		}
		mlp.DownProj = l
		if n, err = norm(p + "input_layernorm"); err != nil {
			return nil, err
		}
		b.InputLayerNorm = n
		if n, err = norm(p + "post_attention_layernorm"); err != nil {
			return nil, err
		}
		b.PostAttentionLayerNorm = n
		m.Decoder.Layers.Blocks = append(m.Decoder.Layers.Blocks, b)
	}
	n, err := norm("model.norm")
	if err != nil {
		return nil, err
	}
	m.Decoder.Norm = n
	if cfg.TieWordEmbeddings {
		m.LMHead = &nn.Linear{Weight: emb}
	} else {
		head, err := linear("lm_head", h, cfg.VocabSize, false)
		if err != nil {
			return nil, err
		}
		m.LMHead = head
	}
	return m, nil
}

// New returns a randomly initialised model on be (nil: the default
// backend), as HF initialises one: matrices and embeddings N(0, 0.02),
// norm weights 1, biases 0. The draws come from the Philox stream of seed,
// one parameter after another in state-dict order, so a seed always gives
// the same weights on every backend.
func New(be kernels.Backend, cfg Config, seed uint64) (*Model, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if be == nil {
		var err error
		if be, err = kernels.Default(); err != nil {
			return nil, fmt.Errorf("llama: %w", err)
		}
	}
	var offset uint64
	src := func(_ string, shape []int, kind weightKind) (*nn.Tensor, error) {
		n := 1
		for _, s := range shape {
			n *= s
		}
		buf := be.Alloc(n)
		switch kind {
		case matrixWeight:
			be.Normal(buf, seed, offset, 0, 0.02)
			offset += uint64(n)
		case normWeight:
			be.Fill(buf, 1)
		}
		return nn.FromBuffer(be, buf, shape...), nil
	}
	return build(be, cfg, src)
}

// LoadOptions control LoadWith.
type LoadOptions struct {
	// Backend holds the weights; nil means kernels.Default().
	Backend kernels.Backend
	// Copy reads float32 weights into ordinary memory instead of using the
	// checkpoint files' memory mappings. By default (on host backends) F32
	// weights stay in private copy-on-write mappings, which costs no memory
	// until a weight is written: merging an adapter copies only the pages
	// it touches, and the files are never changed. The mapped files stay
	// open until Model.Close. Weights stored as F16 or BF16 are converted,
	// hence copied, either way.
	Copy bool
}

// Load reads a HuggingFace Llama checkpoint folder: config.json and either
// model.safetensors or a sharded model.safetensors.index.json. Weights are
// converted to float32 (F16, BF16 and F64 as well as F32). Every tensor of
// the model must be present with the right shape and nothing else may be
// (lm_head.weight may be absent, or present and equal in shape, when the
// config ties the embeddings; it is then ignored and the head shares the
// embedding). Errors name the file and the tensor.
func Load(dir string) (*Model, error) { return LoadWith(dir, LoadOptions{}) }

// LoadWith is Load with options.
func LoadWith(dir string, o LoadOptions) (*Model, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	be := o.Backend
	if be == nil {
		if be, err = kernels.Default(); err != nil {
			return nil, fmt.Errorf("llama: %w", err)
		}
	}
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("llama: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			ck.Close()
		}
	}()
	used := map[string]bool{}
	src := func(name string, shape []int, _ weightKind) (*nn.Tensor, error) {
		info, err := ck.Info(name)
		if err != nil {
			return nil, fmt.Errorf("llama: %s: missing tensor %q: %w", dir, name, err)
		}
		if !slices.Equal(info.Shape, shape) {
			return nil, fmt.Errorf("llama: %s: tensor %q has shape %v, the config needs %v", dir, name, info.Shape, shape)
		}
		data, err := ck.Float32(name)
		if err != nil {
			return nil, fmt.Errorf("llama: %w", err)
		}
		used[name] = true
		// F16/BF16/F64 data was converted into a fresh slice, which the
		// tensor may own; F32 data aliases the copy-on-write mapping and is
		// copied only when the caller asked for a copy.
		var buf kernels.Buffer
		if !o.Copy || info.DType != safetensors.F32 {
			if b, ok := be.Wrap(data); ok {
				buf = b
			}
		}
		if buf == nil {
			buf = be.FromHost(data)
		}
		return nn.FromBuffer(be, buf, shape...), nil
	}
	m, err := build(be, cfg, src)
	if err != nil {
		return nil, err
	}
	var extra []string
	for _, name := range ck.Names() {
		if used[name] {
			continue
		}
		if name == "lm_head.weight" && cfg.TieWordEmbeddings {
			info, err := ck.Info(name)
			if err != nil {
				return nil, fmt.Errorf("llama: %w", err)
			}
			if want := []int{cfg.VocabSize, cfg.HiddenSize}; !slices.Equal(info.Shape, want) {
				return nil, fmt.Errorf("llama: %s: tensor %q has shape %v, the config needs %v", dir, name, info.Shape, want)
			}
			continue
		}
		if isBuffer(name) {
			continue
		}
		extra = append(extra, name)
	}
	if len(extra) > 0 {
		if len(extra) > 5 {
			extra = append(extra[:5], fmt.Sprintf("... (%d more)", len(extra)-5))
		}
		return nil, fmt.Errorf("llama: %s: unexpected tensors %s", dir, strings.Join(extra, ", "))
	}
	if !o.Copy {
		keep = true
		m.closers = append(m.closers, ck)
	}
	return m, nil
}

// isBuffer reports whether name is a non-parameter buffer that some
// checkpoints store and the model recomputes (the rotary inverse
// frequencies of old transformers versions).
func isBuffer(name string) bool {
	return strings.HasPrefix(name, "model.layers.") && strings.HasSuffix(name, ".self_attn.rotary_emb.inv_freq")
}

// Save writes the model as a HuggingFace checkpoint folder: config.json and
// model.safetensors in float32, both written atomically. A tied lm_head is
// not stored (as HF does). The weights written are those of the model's
// own parameters: save a model with adapters merged and unloaded, not one
// with adapters injected.
func (m *Model) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("llama: %w", err)
	}
	want := stateNames(m.cfg)
	tensors := map[string]safetensors.Tensor{}
	for _, p := range nn.NamedParameters(m) {
		if !want[p.Name] {
			return fmt.Errorf("llama: save %s: parameter %q is not part of a plain Llama checkpoint (merge and unload adapters first)", dir, p.Name)
		}
		tensors[p.Name] = safetensors.Tensor{DType: safetensors.F32, Shape: p.T.Shape(), F32: p.T.Data()}
	}
	for name := range want {
		if _, ok := tensors[name]; !ok {
			return fmt.Errorf("llama: save %s: the model has no parameter %q", dir, name)
		}
	}
	if err := safetensors.Save(filepath.Join(dir, safetensors.SingleFile), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("llama: %w", err)
	}
	c := m.cfg
	c.TorchDtype = "float32"
	cfg, err := c.JSON()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ConfigFile), cfg)
}

// stateNames returns the state-dict names of a plain model of cfg, without
// lm_head.weight when it is tied to the embeddings.
func stateNames(cfg Config) map[string]bool {
	names := map[string]bool{"model.embed_tokens.weight": true, "model.norm.weight": true}
	if !cfg.TieWordEmbeddings {
		names["lm_head.weight"] = true
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, n := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"} {
			names[p+n+".weight"] = true
			if cfg.AttentionBias {
				names[p+n+".bias"] = true
			}
		}
		for _, n := range []string{"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			names[p+n+".weight"] = true
			if cfg.MLPBias {
				names[p+n+".bias"] = true
			}
		}
		names[p+"input_layernorm.weight"] = true
		names[p+"post_attention_layernorm.weight"] = true
	}
	return names
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("llama: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("llama: writing %s: %w", path, err)
	}
	return nil
}
