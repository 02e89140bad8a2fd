package llama

import (
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
)

// Model is HuggingFace's LlamaForCausalLM: a decoder (child "model") and
// the language-model head (child "lm_head").
//
// Forward passes of a model in evaluation mode are safe from many goroutines
// at once: a pass keeps its state (rotary tables, masks, KV caches) in its
// own values. Changing the module tree (SetChild, loading weights, merging
// adapters) and training are not, and must be serialised by the caller.
type Model struct {
	// Decoder is the child "model" (HF's LlamaModel).
	Decoder *Decoder
	// LMHead is the child "lm_head": a Linear(hidden, vocab) without bias,
	// sharing Decoder.EmbedTokens' weight when the config ties them.
	LMHead nn.Layer

	cfg     Config
	be      kernels.Backend
	invFreq []float32
	closers []io.Closer
}

// Decoder is HuggingFace's LlamaModel: token embeddings (child
// "embed_tokens"), the decoder layers (child "layers") and the final norm
// (child "norm").
type Decoder struct {
	EmbedTokens models.Embedder
	Layers      *Layers
	Norm        nn.Layer
}

// Layers is the list of decoder layers; child i is named "i".
type Layers struct {
	Blocks []*Block
}

// Block is one decoder layer (HF's LlamaDecoderLayer):
// h += self_attn(input_layernorm(h)); h += mlp(post_attention_layernorm(h)).
type Block struct {
	SelfAttn *Attention
	// MLP is a *MLP unless replaced by a wrapper.
	MLP                    nn.Layer
	InputLayerNorm         nn.Layer
	PostAttentionLayerNorm nn.Layer
}

// Attention is grouped-query self-attention with rotary position
// embeddings (HF's LlamaAttention). Its projections are the children
// "q_proj", "k_proj", "v_proj" and "o_proj".
type Attention struct {
	QProj, KProj, VProj, OProj nn.Layer
	// Extension, when set, adds a term to the layer's output: the
	// extension point of methods that change attention itself (PEFT's
	// adaption prompt). It is not part of the module tree.
	Extension AttentionExtension

	heads, kvHeads, headDim int
}

// AttentionExtension changes what an attention layer computes. Extend gets
// the layer, its input x [batch, seq, hidden] and its queries after the
// rotary embedding q [batch, heads, seq, head_dim]; what it returns
// ([batch, seq, hidden], or nil for nothing) is added to the layer's output
// (after o_proj). It must be safe for concurrent use when the model is.
type AttentionExtension interface {
	Extend(a *Attention, x, q *nn.Tensor) *nn.Tensor
}

// Heads returns the number of query heads.
func (a *Attention) Heads() int { return a.heads }

// KVHeads returns the number of key/value heads.
func (a *Attention) KVHeads() int { return a.kvHeads }

// HeadDim returns the size of one head.
func (a *Attention) HeadDim() int { return a.headDim }

// MLP is the gated feed-forward block down_proj(silu(gate_proj(x)) *
// up_proj(x)) (HF's LlamaMLP).
type MLP struct {
	GateProj, UpProj, DownProj nn.Layer
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Backend returns the backend the model's weights were created on.
func (m *Model) Backend() kernels.Backend { return m.be }

// Close releases the checkpoint files whose memory the weights may use
// (see LoadOptions.Copy). The model must not be used afterwards. Closing a
// model that owns no files, or closing twice, is harmless.
func (m *Model) Close() error {
	var first error
	for _, c := range m.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	m.closers = nil
	return first
}

// --- module tree ---

// Children returns "model" and "lm_head".
func (m *Model) Children() []nn.Child {
	return []nn.Child{{Name: "model", Module: m.Decoder}, {Name: "lm_head", Module: m.LMHead}}
}

// Params returns nil: the model's parameters belong to its children.
func (m *Model) Params() []nn.Param { return nil }

// SetChild replaces "model" (a *Decoder) or "lm_head" (an nn.Layer).
func (m *Model) SetChild(name string, c nn.Module) error {
	switch name {
	case "model":
		d, ok := c.(*Decoder)
		if !ok {
			return fmt.Errorf("llama: child %q must be a *llama.Decoder, got %T", name, c)
		}
		m.Decoder = d
	case "lm_head":
		return setLayer(&m.LMHead, name, c)
	default:
		return fmt.Errorf("llama: LlamaForCausalLM has no child %q", name)
	}
	return nil
}

// Children returns "embed_tokens", "layers" and "norm".
func (d *Decoder) Children() []nn.Child {
	return []nn.Child{{Name: "embed_tokens", Module: d.EmbedTokens}, {Name: "layers", Module: d.Layers}, {Name: "norm", Module: d.Norm}}
}

// Params returns nil.
func (d *Decoder) Params() []nn.Param { return nil }

// SetChild replaces "embed_tokens" (a models.Embedder), "layers" (a
// *Layers) or "norm" (an nn.Layer).
func (d *Decoder) SetChild(name string, c nn.Module) error {
	switch name {
	case "embed_tokens":
		e, ok := c.(models.Embedder)
		if !ok {
			return fmt.Errorf("llama: child %q must implement models.Embedder, got %T", name, c)
		}
		d.EmbedTokens = e
	case "layers":
		l, ok := c.(*Layers)
		if !ok {
			return fmt.Errorf("llama: child %q must be a *llama.Layers, got %T", name, c)
		}
		d.Layers = l
	case "norm":
		return setLayer(&d.Norm, name, c)
	default:
		return fmt.Errorf("llama: LlamaModel has no child %q", name)
	}
	return nil
}

// Children returns the blocks named "0", "1", ...
func (l *Layers) Children() []nn.Child {
	out := make([]nn.Child, len(l.Blocks))
	for i, b := range l.Blocks {
		out[i] = nn.Child{Name: strconv.Itoa(i), Module: b}
	}
	return out
}

// Params returns nil.
func (l *Layers) Params() []nn.Param { return nil }

// SetChild replaces block i (name "i") by a *Block.
func (l *Layers) SetChild(name string, c nn.Module) error {
	i, err := strconv.Atoi(name)
	if err != nil || i < 0 || i >= len(l.Blocks) || strconv.Itoa(i) != name {
		return fmt.Errorf("llama: layers has no child %q (%d layers)", name, len(l.Blocks))
	}
	b, ok := c.(*Block)
	if !ok {
		return fmt.Errorf("llama: layer %q must be a *llama.Block, got %T", name, c)
	}
	l.Blocks[i] = b
	return nil
}

// Children returns "self_attn", "mlp", "input_layernorm" and
// "post_attention_layernorm" (HF's registration order).
func (b *Block) Children() []nn.Child {
	return []nn.Child{
		{Name: "self_attn", Module: b.SelfAttn},
		{Name: "mlp", Module: b.MLP},
		{Name: "input_layernorm", Module: b.InputLayerNorm},
		{Name: "post_attention_layernorm", Module: b.PostAttentionLayerNorm},
	}
}

// Params returns nil.
func (b *Block) Params() []nn.Param { return nil }

// SetChild replaces "self_attn" (by an *Attention), or "mlp" or one of the
// norms (by an nn.Layer).
func (b *Block) SetChild(name string, c nn.Module) error {
	switch name {
	case "self_attn":
		a, ok := c.(*Attention)
		if !ok {
			return fmt.Errorf("llama: child %q must be a *llama.Attention, got %T", name, c)
		}
		b.SelfAttn = a
	case "mlp":
		return setLayer(&b.MLP, name, c)
	case "input_layernorm":
		return setLayer(&b.InputLayerNorm, name, c)
	case "post_attention_layernorm":
		return setLayer(&b.PostAttentionLayerNorm, name, c)
	default:
		return fmt.Errorf("llama: LlamaDecoderLayer has no child %q", name)
	}
	return nil
}

// Children returns "q_proj", "k_proj", "v_proj" and "o_proj".
func (a *Attention) Children() []nn.Child {
	return []nn.Child{{Name: "q_proj", Module: a.QProj}, {Name: "k_proj", Module: a.KProj}, {Name: "v_proj", Module: a.VProj}, {Name: "o_proj", Module: a.OProj}}
}

// Params returns nil.
func (a *Attention) Params() []nn.Param { return nil }

// SetChild replaces one of the projections by an nn.Layer.
func (a *Attention) SetChild(name string, c nn.Module) error {
	switch name {
	case "q_proj":
		return setLayer(&a.QProj, name, c)
	case "k_proj":
		return setLayer(&a.KProj, name, c)
	case "v_proj":
		return setLayer(&a.VProj, name, c)
	case "o_proj":
		return setLayer(&a.OProj, name, c)
	}
	return fmt.Errorf("llama: LlamaAttention has no child %q", name)
}

// Children returns "gate_proj", "up_proj" and "down_proj".
func (p *MLP) Children() []nn.Child {
	return []nn.Child{{Name: "gate_proj", Module: p.GateProj}, {Name: "up_proj", Module: p.UpProj}, {Name: "down_proj", Module: p.DownProj}}
}

// Params returns nil.
func (p *MLP) Params() []nn.Param { return nil }

// SetChild replaces one of the projections by an nn.Layer.
func (p *MLP) SetChild(name string, c nn.Module) error {
	switch name {
	case "gate_proj":
		return setLayer(&p.GateProj, name, c)
	case "up_proj":
		return setLayer(&p.UpProj, name, c)
	case "down_proj":
		return setLayer(&p.DownProj, name, c)
	}
	return fmt.Errorf("llama: LlamaMLP has no child %q", name)
}

func setLayer(dst *nn.Layer, name string, c nn.Module) error {
	l, ok := c.(nn.Layer)
	if !ok {
		return fmt.Errorf("llama: child %q must implement nn.Layer, got %T", name, c)
	}
	*dst = l
	return nil
}

// --- forward ---

// Forward returns the logits [batch, seq, vocab] of token ids given
// row-major with shape [batch, seq], every position attending causally to
// those before it. It returns an error for an id outside the vocabulary or
// a length that does not match the shape.
func (m *Model) Forward(ids []int32, batch, seq int) (*nn.Tensor, error) {
	h, err := m.Embed(ids, batch, seq)
	if err != nil {
		return nil, err
	}
	return m.ForwardEmbeds(h, nil)
}

// Embed returns the token embeddings [batch, seq, hidden] of ids through
// the (possibly adapted) embed_tokens child.
func (m *Model) Embed(ids []int32, batch, seq int) (*nn.Tensor, error) {
	if batch <= 0 || seq <= 0 {
		return nil, fmt.Errorf("llama: batch %d and seq %d must be positive", batch, seq)
	}
	if err := models.CheckIDs(ids, m.cfg.VocabSize, batch, seq); err != nil {
		return nil, fmt.Errorf("llama: %w", err)
	}
	h, err := m.Decoder.EmbedTokens.LookupChecked(ids, batch, seq)
	if err != nil {
		return nil, fmt.Errorf("llama: model.embed_tokens: %w", err)
	}
	return h, nil
}

// KV is one layer's keys and values, each [batch, kv_heads, len, head_dim].
// Keys are stored as attention uses them: after the rotary embedding of
// their own positions.
type KV struct {
	K, V *nn.Tensor
}

// Cache holds the keys and values of the tokens seen so far, one KV per
// layer, for incremental decoding. A Cache belongs to one sequence batch and
// one goroutine; make a new one (NewCache) for each generation.
type Cache struct {
	layers []KV
	n      int
}

// NewCache returns an empty cache. Its first use fixes the batch size.
func NewCache() *Cache { return &Cache{} }

// NewCacheFrom returns a cache that starts with the given per-layer keys and
// values (a prefix-tuning prompt, say). The tensors are used as they are.
func NewCacheFrom(past []KV) *Cache {
	c := &Cache{layers: append([]KV(nil), past...)}
	if len(past) > 0 && past[0].K != nil {
		c.n = past[0].K.Dim(2)
	}
	return c
}

// Len returns the number of positions the cache holds.
func (c *Cache) Len() int { return c.n }

// Layers returns the cached keys and values, one KV per layer (nil before
// the first use).
func (c *Cache) Layers() []KV { return c.layers }

// ForwardOptions control ForwardEmbeds. The zero value (or a nil pointer)
// is a plain causal pass over the given embeddings at positions 0..S-1.
type ForwardOptions struct {
	// PastKV, when set, has one KV per layer, each [batch or 1, kv_heads,
	// P, head_dim]: keys and values of P positions that precede the input
	// (prefix tuning's virtual tokens). Every query attends to all of them.
	// They are prepended without any rotary embedding, as HuggingFace does
	// with past_key_values, and gradients flow into them.
	PastKV []KV
	// Cache, when set, supplies the past keys and values (like PastKV) and
	// receives this call's appended to them. PastKV and Cache are exclusive.
	Cache *Cache
	// AttentionMask, when set, is [batch, P+S] row-major with 1 for keys
	// that may be attended to and 0 for padding (HF's attention_mask,
	// covering the past positions first).
	AttentionMask []int32
	// Positions, when set, gives the S rotary positions of the input
	// tokens, shared by every row. By default they are P, P+1, ..., P+S-1.
	Positions []int
	// LastOnly computes the logits of the last position only: [batch, 1,
	// vocab]. Generation uses it.
	LastOnly bool
}

// ForwardEmbeds runs the decoder stack and the head on input embeddings h
// [batch, seq, hidden] (HF's inputs_embeds) and returns the logits [batch,
// seq, vocab]. Prompt-learning methods call it with their virtual-token
// embeddings concatenated to the token embeddings. opts may be nil.
// The pass is differentiable in h, in the weights, and in opts.PastKV.
func (m *Model) ForwardEmbeds(h *nn.Tensor, opts *ForwardOptions) (*nn.Tensor, error) {
	hidden, err := m.HiddenStates(h, opts)
	if err != nil {
		return nil, err
	}
	return m.LMHead.Forward(hidden), nil
}

// HiddenStates is ForwardEmbeds without the head: it returns the output of
// the final norm, [batch, seq, hidden] ([batch, 1, hidden] with LastOnly).
func (m *Model) HiddenStates(h *nn.Tensor, opts *ForwardOptions) (*nn.Tensor, error) {
	if opts == nil {
		opts = &ForwardOptions{}
	}
	if h.Rank() != 3 || h.Dim(2) != m.cfg.HiddenSize {
		return nil, fmt.Errorf("llama: input embeddings have shape %v, want [batch, seq, %d]", h.Shape(), m.cfg.HiddenSize)
	}
	batch, seq := h.Dim(0), h.Dim(1)
	if batch == 0 || seq == 0 {
		return nil, fmt.Errorf("llama: input embeddings have shape %v, want a non-empty batch and sequence", h.Shape())
	}
	blocks := m.Decoder.Layers.Blocks
	past, err := m.pastKV(opts, batch, len(blocks))
	if err != nil {
		return nil, err
	}
	pastLen := 0
	if past != nil {
		pastLen = past[0].K.Dim(2)
	}
	pos := opts.Positions
	if pos == nil {
		pos = make([]int, seq)
		for i := range pos {
			pos[i] = pastLen + i
		}
	} else if len(pos) != seq {
		return nil, fmt.Errorf("llama: %d positions for a sequence of %d", len(pos), seq)
	}
	for _, p := range pos {
		if p < 0 {
			return nil, fmt.Errorf("llama: negative position %d", p)
		}
	}
	cos, sin := m.ropeTables(pos)
	mask, err := m.mask(opts.AttentionMask, batch, seq, pastLen, pos)
	if err != nil {
		return nil, err
	}
	var newKV []KV
	if opts.Cache != nil {
		newKV = make([]KV, len(blocks))
	}
	for i, b := range blocks {
		var p *KV
		if past != nil {
			p = &past[i]
		}
		x := b.InputLayerNorm.Forward(h)
		a, kv := b.SelfAttn.attend(x, cos, sin, mask, p)
		h = nn.Add(h, a)
		h = nn.Add(h, b.MLP.Forward(b.PostAttentionLayerNorm.Forward(h)))
		if newKV != nil {
			newKV[i] = kv
		}
	}
	if opts.Cache != nil {
		opts.Cache.layers = newKV
		opts.Cache.n = pastLen + seq
	}
	if opts.LastOnly && seq > 1 {
		h = nn.Slice(h, 1, seq-1, seq)
	}
	return m.Decoder.Norm.Forward(h), nil
}

// pastKV returns the past keys and values that opts supplies, validated,
// or nil.
func (m *Model) pastKV(opts *ForwardOptions, batch, layers int) ([]KV, error) {
	past := opts.PastKV
	if opts.Cache != nil {
		if past != nil {
			return nil, fmt.Errorf("llama: ForwardOptions.PastKV and Cache are exclusive")
		}
		past = opts.Cache.layers
	}
	if len(past) == 0 {
		return nil, nil
	}
	if len(past) != layers {
		return nil, fmt.Errorf("llama: past key/values for %d layers, model has %d", len(past), layers)
	}
	n := -1
	for i, kv := range past {
		if kv.K == nil || kv.V == nil {
			return nil, fmt.Errorf("llama: past key/values of layer %d: missing key or value", i)
		}
		for _, t := range []*nn.Tensor{kv.K, kv.V} {
			s := t.Shape()
			if len(s) != 4 || (s[0] != batch && s[0] != 1) || s[1] != m.cfg.NumKeyValueHeads || s[3] != m.cfg.HeadDim {
				return nil, fmt.Errorf("llama: past key/values of layer %d have shape %v, want [%d, %d, len, %d]",
					i, s, batch, m.cfg.NumKeyValueHeads, m.cfg.HeadDim)
			}
			if n >= 0 && s[2] != n {
				return nil, fmt.Errorf("llama: past key/values of layer %d have length %d, layer 0 has %d", i, s[2], n)
			}
			n = s[2]
		}
	}
	if n == 0 {
		return nil, nil
	}
	// A prefix shared by the whole batch is expanded once per layer.
	out := make([]KV, len(past))
	for i, kv := range past {
		out[i] = kv
		if kv.K.Dim(0) != batch {
			out[i].K = nn.Expand(kv.K, batch, m.cfg.NumKeyValueHeads, n, m.cfg.HeadDim)
		}
		if kv.V.Dim(0) != batch {
			out[i].V = nn.Expand(kv.V, batch, m.cfg.NumKeyValueHeads, n, m.cfg.HeadDim)
		}
	}
	return out, nil
}

// mask returns the additive attention mask: 0 where query i may attend key
// j, the float32 minimum elsewhere. It is [seq, past+seq] without padding
// and [batch, 1, 1, seq, past+seq] with it (broadcast against the grouped
// scores [batch, kv_heads, group, seq, past+seq]); nil when nothing is
// masked.
func (m *Model) mask(pad []int32, batch, seq, past int, pos []int) (*nn.Tensor, error) {
	total := past + seq
	if pad != nil && len(pad) != batch*total {
		return nil, fmt.Errorf("llama: attention mask has %d entries, want batch %d x %d positions", len(pad), batch, total)
	}
	// Query i sits at cache slot past+i; it sees every slot up to its own.
	// (HF masks by cache position, not by rotary position.)
	rows := 1
	if pad != nil {
		rows = batch
	}
	data := make([]float32, rows*seq*total)
	masked := false
	const minF32 = -math.MaxFloat32
	for b := 0; b < rows; b++ {
		for i := 0; i < seq; i++ {
			row := data[(b*seq+i)*total : (b*seq+i+1)*total]
			for j := range row {
				if j > past+i || (pad != nil && pad[b*total+j] == 0) {
					row[j] = minF32
					masked = true
				}
			}
		}
	}
	if !masked {
		return nil, nil
	}
	if pad == nil {
		return nn.New(m.be, data, seq, total), nil
	}
	return nn.New(m.be, data, batch, 1, 1, seq, total), nil
}

// attend computes self-attention of x [B, S, hidden] and returns the
// output [B, S, hidden] and this layer's keys and values including the past.
func (a *Attention) attend(x, cos, sin, mask *nn.Tensor, past *KV) (*nn.Tensor, KV) {
	batch, seq := x.Dim(0), x.Dim(1)
	d, nh, nkv := a.headDim, a.heads, a.kvHeads
	split := func(t *nn.Tensor, heads int) *nn.Tensor {
		return nn.Transpose(t.Reshape(batch, seq, heads, d), 1, 2) // [B, heads, S, d]
	}
	q := nn.Rope(split(a.QProj.Forward(x), nh), cos, sin)
	k := nn.Rope(split(a.KProj.Forward(x), nkv), cos, sin)
	v := split(a.VProj.Forward(x), nkv)
	if past != nil {
		k = nn.Concat(2, past.K, k)
		v = nn.Concat(2, past.V, v)
	}
	total := k.Dim(2)
	group := nh / nkv
	// Query heads h*group..h*group+group-1 share kv head h: viewing q as
	// [B, kv, group*S, d] makes grouped-query attention one batched GEMM
	// per kv head without repeating keys or values.
	qg := q.Reshape(batch, nkv, group*seq, d)
	scores := nn.Scale(nn.MatMulT(qg, k, false, true), float32(1/math.Sqrt(float64(d))))
	if mask != nil {
		scores = nn.Add(scores.Reshape(batch, nkv, group, seq, total), mask).Reshape(batch, nkv, group*seq, total)
	}
	probs := nn.Softmax(scores, -1)
	out := nn.MatMul(probs, v) // [B, kv, group*S, d] = [B, heads, S, d]
	out = nn.Transpose(out.Reshape(batch, nh, seq, d), 1, 2).Reshape(batch, seq, nh*d)
	res := a.OProj.Forward(out)
	if a.Extension != nil {
		if e := a.Extension.Extend(a, x, q); e != nil {
			res = nn.Add(res, e)
		}
	}
	return res, KV{K: k, V: v}
}

// Forward applies the gated MLP to x [..., hidden].
func (p *MLP) Forward(x *nn.Tensor) *nn.Tensor {
	return p.DownProj.Forward(nn.Mul(nn.SiLU(p.GateProj.Forward(x)), p.UpProj.Forward(x)))
}

// ropeTables returns the cos and sin tables [S, head_dim] for the given
// positions, computed as HuggingFace does in float32: angle = pos *
// inv_freq, tables cat(angle, angle).
func (m *Model) ropeTables(pos []int) (cos, sin *nn.Tensor) {
	d := m.cfg.HeadDim
	half := d / 2
	c := make([]float32, len(pos)*d)
	s := make([]float32, len(pos)*d)
	for i, p := range pos {
		for j := 0; j < half; j++ {
			angle := float32(p) * m.invFreq[j]
			cv, sv := float32(math.Cos(float64(angle))), float32(math.Sin(float64(angle)))
			c[i*d+j], c[i*d+half+j] = cv, cv
			s[i*d+j], s[i*d+half+j] = sv, sv
		}
	}
	return nn.New(m.be, c, len(pos), d), nn.New(m.be, s, len(pos), d)
}

// inverseFrequencies returns HF's inv_freq = 1 / theta^(2j/d) for j <
// d/2, each step rounded to float32 as torch computes it.
func inverseFrequencies(theta float64, d int) []float32 {
	out := make([]float32, d/2)
	for j := range out {
		e := float32(2*j) / float32(d)
		p := float32(math.Pow(float64(float32(theta)), float64(e)))
		out[j] = 1 / p
	}
	return out
}

// ModelType returns "llama", the HF model_type (used to pick PEFT's
// default target modules).
func (m *Model) ModelType() string { return "llama" }

// OutputLayer returns "lm_head", the output layer that PEFT's
// "all-linear" leaves out on transformers models.
func (m *Model) OutputLayer() string { return "lm_head" }
