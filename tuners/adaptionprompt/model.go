package adaptionprompt

import (
	"fmt"
	"math"
	"strings"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/promptkit"
)

// keyPrefix is what PEFT's saved keys put before a module path.
const keyPrefix = "base_model.model."

// Method is adaption prompt as a tuners.PromptMethod of kind
// PromptInside.
type Method struct{}

// Type returns "ADAPTION_PROMPT".
func (Method) Type() string { return PeftType }

// NewConfig returns NewConfig().
func (Method) NewConfig() tuners.Config { return NewConfig() }

// NewEncoder finds the attention layers of root (llama's *Attention at
// paths ending in ".self_attn"), takes the top adapter_layers and makes a
// prompt (N(0, 1)) and a zero gate for each. The prompts act once the peft
// package enables the adapter.
func (Method) NewEncoder(root nn.Module, cfg tuners.Config, adapter string, _ *nn.Tensor) (tuners.PromptEncoder, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("adaptionprompt: config is %T, want *adaptionprompt.Config", cfg)
	}
	target := DefaultTarget
	if c.TargetModules != nil {
		target = *c.TargetModules
	}
	var paths []string
	var attns []*llama.Attention
	err := nn.Walk(root, func(path string, m nn.Module) error {
		if a, ok := m.(*llama.Attention); ok && (path == target || strings.HasSuffix(path, "."+target)) {
			paths, attns = append(paths, path), append(attns, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("adaptionprompt: %w", err)
	}
	if len(attns) < c.AdapterLayers {
		return nil, fmt.Errorf("adaptionprompt: adapter_layers is %d but the model has %d %q attention layers", c.AdapterLayers, len(attns), target)
	}
	hidden := c.Prompting().TokenDim
	if hidden <= 0 {
		return nil, fmt.Errorf("adaptionprompt: the model's hidden size is unknown (token_dim %d)", hidden)
	}
	be := nn.DefaultBackend()
	if lm, ok := root.(interface{ Backend() kernels.Backend }); ok {
		be = lm.Backend()
	}
	rng := nn.NewRNG(promptkit.Seed(PeftType, adapter))
	train := !c.InferenceMode
	e := &Encoder{}
	first := len(attns) - c.AdapterLayers
	for i := first; i < len(attns); i++ {
		e.layers = append(e.layers, &Prompt{
			Path:   paths[i],
			Prompt: nn.Normal(be, rng, 0, 1, 1, c.AdapterLen, hidden).SetRequiresGrad(train),
			Gate:   nn.Zeros(be, 1).SetRequiresGrad(train),
			attn:   attns[i],
		})
	}
	return e, nil
}

// Encoder holds the adapted layers' prompts and gates. Its nn view names
// them "<path>.adaption_prompt" and "<path>.adaption_gate".
type Encoder struct {
	layers []*Prompt
}

// Prompt is one adapted attention layer's prompt [1, adapter_len, hidden]
// and gate [1]; it is that layer's llama.AttentionExtension while enabled.
type Prompt struct {
	// Path is the attention module's path ("model.layers.1.self_attn").
	Path string
	// Prompt and Gate are the trained tensors.
	Prompt, Gate *nn.Tensor

	attn *llama.Attention
}

// Layers returns the adapted layers, bottom to top.
func (e *Encoder) Layers() []*Prompt { return e.layers }

// Children returns nil: the encoder owns its tensors.
func (e *Encoder) Children() []nn.Child { return nil }

// Params returns every layer's prompt and gate under their paths.
func (e *Encoder) Params() []nn.Param {
	var out []nn.Param
	for _, l := range e.layers {
		out = append(out, nn.Param{Name: l.Path + ".adaption_prompt", T: l.Prompt}, nn.Param{Name: l.Path + ".adaption_gate", T: l.Gate})
	}
	return out
}

// SetChild returns an error: the encoder has no children.
func (e *Encoder) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("adaptionprompt: no child %q", name)
}

// Kind returns tuners.PromptInside.
func (e *Encoder) Kind() tuners.PromptKind { return tuners.PromptInside }

// Encode returns an error: the prompts act inside attention, there is no
// encoder output.
func (e *Encoder) Encode([]int32, int, []int32) (*nn.Tensor, error) {
	return nil, fmt.Errorf("adaptionprompt: the prompts act inside the attention layers; there is no encoder output")
}

// SetEnabled installs the prompts as their layers' attention extensions
// or removes them.
func (e *Encoder) SetEnabled(on bool) {
	for _, l := range e.layers {
		switch {
		case on:
			l.attn.Extension = l
		case l.attn.Extension == l:
			l.attn.Extension = nil
		}
	}
}

// SavedTensors returns PEFT's keys: base_model.model.<path>.adaption_prompt
// and .adaption_gate for every adapted layer.
func (e *Encoder) SavedTensors() (map[string]*nn.Tensor, error) {
	out := map[string]*nn.Tensor{}
	for _, p := range e.Params() {
		out[keyPrefix+p.Name] = p.T.Detach()
	}
	return out, nil
}

// LoadSaved copies an adapter file's prompts and gates in.
func (e *Encoder) LoadSaved(ts map[string]*nn.Tensor) error {
	var keys []string
	params := e.Params()
	for _, p := range params {
		keys = append(keys, keyPrefix+p.Name)
	}
	if err := promptkit.Keys(ts, keys...); err != nil {
		return fmt.Errorf("adaptionprompt: %w", err)
	}
	for i, p := range params {
		if err := promptkit.Shape(keys[i], ts[keys[i]], p.T.Shape()...); err != nil {
			return fmt.Errorf("adaptionprompt: %w", err)
		}
	}
	for i, p := range params {
		p.T.CopyFrom(ts[keys[i]])
	}
	return nil
}

// SetTrainable sets whether the prompts and gates require gradients.
func (e *Encoder) SetTrainable(on bool) {
	for _, p := range e.Params() {
		p.T.SetRequiresGrad(on)
	}
}

// Extend returns o_proj(gate * softmax(q K^T / sqrt(d)) V) with K and V
// the layer's projections of the prompt (llama.AttentionExtension).
func (p *Prompt) Extend(a *llama.Attention, _, q *nn.Tensor) *nn.Tensor {
	batch, seq := q.Dim(0), q.Dim(2)
	nh, nkv, d := a.Heads(), a.KVHeads(), a.HeadDim()
	l := p.Prompt.Dim(1)
	heads := func(t *nn.Tensor) *nn.Tensor {
		t = nn.Transpose(t.Reshape(1, l, nkv, d), 1, 2) // [1, kv, L, d]
		return nn.Expand(t, batch, nkv, l, d)
	}
	k := heads(a.KProj.Forward(p.Prompt))
	v := heads(a.VProj.Forward(p.Prompt))
	// Query heads h*group.. share kv head h, as in the attention itself.
	qg := q.Reshape(batch, nkv, (nh/nkv)*seq, d)
	scores := nn.Scale(nn.MatMulT(qg, k, false, true), float32(1/math.Sqrt(float64(d))))
	probs := nn.Mul(nn.Softmax(scores, -1), p.Gate)
	out := nn.MatMul(probs, v) // [B, kv, group*S, d]
	out = nn.Transpose(out.Reshape(batch, nh, seq, d), 1, 2).Reshape(batch, seq, nh*d)
	return a.OProj.Forward(out)
}
