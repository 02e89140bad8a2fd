package peft

import (
	"errors"
	"fmt"
	"os"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adaptionprompt"
	"github.com/gopeft/gopeft/tuners/cartridge"
	"github.com/gopeft/gopeft/tuners/cpt"
	"github.com/gopeft/gopeft/tuners/multitaskprompt"
	"github.com/gopeft/gopeft/tuners/prefixtuning"
	"github.com/gopeft/gopeft/tuners/prompttuning"
	"github.com/gopeft/gopeft/tuners/ptuning"
)

// promptMethods maps each prompt-learning peft_type gopeft implements to its
// method (a tuners.PromptMethod), beside the injected methods of the
// registry: adding one is one import and one line here.
var promptMethods = map[string]tuners.PromptMethod{
	adaptionprompt.PeftType:  adaptionprompt.Method{},
	cartridge.PeftType:       cartridge.Method{},
	cpt.PeftType:             cpt.Method{},
	multitaskprompt.PeftType: multitaskprompt.Method{},
	prefixtuning.PeftType:    prefixtuning.Method{},
	prompttuning.PeftType:    prompttuning.Method{},
	ptuning.PeftType:         ptuning.Method{},
}

// PromptModel is a base model that prompt-learning adapters can drive, such
// as models/llama's Model: it embeds token ids and runs from embeddings,
// optionally after past keys and values (prefix tuning).
type PromptModel interface {
	nn.Module
	// Config returns the model's sizes.
	Config() llama.Config
	// Embed returns the token embeddings [batch, seq, hidden].
	Embed(ids []int32, batch, seq int) (*nn.Tensor, error)
	// ForwardEmbeds returns the logits of input embeddings.
	ForwardEmbeds(h *nn.Tensor, opts *llama.ForwardOptions) (*nn.Tensor, error)
}

// addPrompt creates prompt-learning adapter name: the config's sizes are
// filled from the base model as PEFT does, then the method makes the
// encoder.
func (m *Model) addPrompt(name string, cfg tuners.Config, pm tuners.PromptMethod) error {
	pc, ok := cfg.(tuners.PromptLearningConfig)
	if !ok {
		return fmt.Errorf("peft: adapter %q: a %s config (%T) has no prompt-learning fields", name, pm.Type(), cfg)
	}
	base, ok := m.root.(PromptModel)
	if !ok {
		return fmt.Errorf("peft: adapter %q: %s needs a base model that runs from embeddings (a PromptModel such as models/llama), not %T", name, pm.Type(), m.root)
	}
	fillPromptSizes(pc.Prompting(), base.Config(), pm.Type())
	if pc.Prompting().NumVirtualTokens <= 0 {
		return fmt.Errorf("peft: adapter %q: num_virtual_tokens must be positive, got %d", name, pc.Prompting().NumVirtualTokens)
	}
	words, err := m.wordEmbeddings()
	if err != nil {
		return fmt.Errorf("peft: adapter %q: %w", name, err)
	}
	enc, err := pm.NewEncoder(m.root, cfg, name, words)
	if err != nil {
		return fmt.Errorf("peft: adapter %q: %w", name, err)
	}
	m.adapters[name] = &adapterState{cfg: cfg, prompt: pm, encoder: enc}
	m.order = append(m.order, name)
	if err := m.wrapModulesToSave(name, pc.Prompting().ModulesToSave); err != nil {
		m.removeAdapter(name)
		return fmt.Errorf("peft: adapter %q: %w", name, err)
	}
	return nil
}

// fillPromptSizes fills the sizes a prompt-learning config leaves at zero
// from the model (PEFT's _prepare_prompt_learning_config). Prefix tuning and
// CARTRIDGE on a grouped-query model provision keys and values of the
// key/value heads: token_dim = head_dim * kv_heads, num_attention_heads =
// kv_heads (head_dim from the model, else token_dim/num_attention_heads).
func fillPromptSizes(pc *tuners.PromptConfig, mc llama.Config, peftType string) {
	if pc.NumLayers == 0 {
		pc.NumLayers = mc.NumHiddenLayers
	}
	if pc.TokenDim == 0 {
		pc.TokenDim = mc.HiddenSize
	}
	if pc.NumAttentionHeads == 0 {
		pc.NumAttentionHeads = mc.NumAttentionHeads
	}
	if pc.NumTransformerSubmodules == 0 {
		pc.NumTransformerSubmodules = 1
	}
	if (peftType == "PREFIX_TUNING" || peftType == "CARTRIDGE") && mc.NumKeyValueHeads > 0 && mc.NumAttentionHeads > 0 {
		headDim := mc.HeadDim
		if headDim == 0 {
			headDim = pc.TokenDim / pc.NumAttentionHeads
		}
		pc.TokenDim = headDim * mc.NumKeyValueHeads
		pc.NumAttentionHeads = mc.NumKeyValueHeads
	}
}

// wordEmbeddings returns the base model's input embedding table.
func (m *Model) wordEmbeddings() (*nn.Tensor, error) {
	paths := m.embeddingPaths()
	for _, path := range paths {
		mod := m.moduleAt(path)
		if l, ok := mod.(tuners.Layer); ok {
			mod = l.Base()
		}
		if s, ok := mod.(*savedModule); ok {
			mod = s.original
		}
		if e, ok := mod.(*nn.Embedding); ok {
			return e.Weight, nil
		}
	}
	return nil, fmt.Errorf("no input embedding (an nn.Embedding named embed_tokens) in %T", m.root)
}

// activePrompt returns the active prompt-learning adapter, or nil when the
// active adapter is not one or adapters are disabled.
func (m *Model) activePrompt() *adapterState {
	if m.disabled || len(m.active) != 1 {
		return nil
	}
	if a := m.adapters[m.active[0]]; a != nil && a.encoder != nil {
		return a
	}
	return nil
}

// PromptEncoder returns the encoder of prompt-learning adapter name, or nil.
// Its nn view names the parameters as PEFT does after
// "prompt_encoder.<name>.".
func (m *Model) PromptEncoder(name string) tuners.PromptEncoder {
	if a := m.adapters[name]; a != nil {
		return a.encoder
	}
	return nil
}

// promptForward is PEFT's PeftModelForCausalLM forward without labels: the
// encoder's output for the virtual tokens is prepended to the token
// embeddings, or becomes each layer's past keys and values.
func (m *Model) promptForward(a *adapterState, in models.Input, taskIDs []int32) (*nn.Tensor, error) {
	base := m.root.(PromptModel)
	if in.IDs == nil || len(in.Shape) != 2 {
		return nil, fmt.Errorf("peft: prompt learning takes token ids of shape [batch, seq], got shape %v", in.Shape)
	}
	batch, seq := in.Shape[0], in.Shape[1]
	if taskIDs != nil && len(taskIDs) != batch {
		return nil, fmt.Errorf("peft: %d task ids for a batch of %d", len(taskIDs), batch)
	}
	if in.Mask != nil && len(in.Mask) != batch*seq {
		return nil, fmt.Errorf("peft: attention mask has %d entries for input shape %v", len(in.Mask), in.Shape)
	}
	if a.encoder.Kind() == tuners.PromptInside {
		h, err := base.Embed(in.IDs, batch, seq)
		if err != nil {
			return nil, err
		}
		return base.ForwardEmbeds(h, &llama.ForwardOptions{AttentionMask: in.Mask})
	}
	pc := a.cfg.(tuners.PromptLearningConfig).Prompting()
	t := pc.NumVirtualTokens
	indices := make([]int32, batch*t)
	for i := range indices {
		indices[i] = int32(i % t)
	}
	prompt, err := a.encoder.Encode(indices, batch, taskIDs)
	if err != nil {
		return nil, fmt.Errorf("peft: prompt encoder: %w", err)
	}
	h, err := base.Embed(in.IDs, batch, seq)
	if err != nil {
		return nil, err
	}
	switch a.encoder.Kind() {
	case tuners.PromptPrepend:
		if prompt.Rank() != 3 || prompt.Dim(0) != batch || prompt.Dim(1) != t || prompt.Dim(2) != h.Dim(2) {
			return nil, fmt.Errorf("peft: prompt encoder returned shape %v, want [%d, %d, %d]", prompt.Shape(), batch, t, h.Dim(2))
		}
		return base.ForwardEmbeds(nn.Concat(1, prompt, h), &llama.ForwardOptions{AttentionMask: promptMask(in.Mask, batch, seq, t)})
	case tuners.PromptPrefix:
		past, err := pastKV(prompt, batch, pc)
		if err != nil {
			return nil, err
		}
		return base.ForwardEmbeds(h, &llama.ForwardOptions{PastKV: past, AttentionMask: promptMask(in.Mask, batch, seq, t)})
	}
	return nil, fmt.Errorf("peft: unknown prompt kind %d", a.encoder.Kind())
}

// pastKV turns a prefix encoder's output [batch, T, layers*2*token_dim]
// into one (key, value) pair per layer, each [batch, heads, T, head_dim]:
// PEFT's view(B, T, 2L, H, D/H).permute(2, 0, 3, 1, 4).split(2).
func pastKV(enc *nn.Tensor, batch int, pc *tuners.PromptConfig) ([]llama.KV, error) {
	t, l, heads := pc.NumVirtualTokens, pc.NumLayers, pc.NumAttentionHeads
	if heads <= 0 || pc.TokenDim%heads != 0 {
		return nil, fmt.Errorf("peft: token_dim %d is not a multiple of num_attention_heads %d", pc.TokenDim, heads)
	}
	d := pc.TokenDim / heads
	if enc.Len() != batch*t*l*2*heads*d {
		return nil, fmt.Errorf("peft: prefix encoder returned shape %v, want [%d, %d, %d]", enc.Shape(), batch, t, l*2*pc.TokenDim)
	}
	x := nn.Permute(enc.Reshape(batch, t, 2*l, heads, d), 2, 0, 3, 1, 4) // [2L, B, H, T, d]
	past := make([]llama.KV, l)
	for i := range l {
		past[i] = llama.KV{
			K: nn.Slice(x, 0, 2*i, 2*i+1).Reshape(batch, heads, t, d),
			V: nn.Slice(x, 0, 2*i+1, 2*i+2).Reshape(batch, heads, t, d),
		}
	}
	return past, nil
}

// loadPromptWeights loads a prompt-learning adapter file: modules_to_save
// copies by key, everything else through the encoder's LoadSaved.
func (m *Model) loadPromptWeights(a *adapterState, adapter, path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	defer f.Close()
	copies := m.copyState(adapter)
	saved := map[string]*nn.Tensor{}
	var missing, mismatched []string
	for key, t := range copies {
		info, ok := f.Info(key)
		switch {
		case !ok:
			missing = append(missing, key)
		case !sameShape(info.Shape, t.Shape()):
			mismatched = append(mismatched, fmt.Sprintf("%s: file %v, model %v", key, info.Shape, t.Shape()))
		}
	}
	if len(missing) > 0 || len(mismatched) > 0 {
		return fmt.Errorf("peft: %s: adapter %q: missing keys %q, shape mismatch %q", path, adapter, missing, mismatched)
	}
	be := nn.DefaultBackend()
	if w, err := m.wordEmbeddings(); err == nil {
		be = w.Backend()
	}
	for _, name := range f.Names() {
		data, err := f.Float32(name)
		if err != nil {
			return fmt.Errorf("peft: adapter %q: %w", adapter, err)
		}
		if t, ok := copies[name]; ok {
			t.CopyFromHost(data)
			continue
		}
		info, _ := f.Info(name)
		saved[name] = nn.New(be, data, info.Shape...)
	}
	if err := a.encoder.LoadSaved(saved); err != nil {
		return fmt.Errorf("peft: %s: adapter %q: %w", path, adapter, err)
	}
	return nil
}

// copyState returns adapter's modules_to_save copies under their saved keys.
func (m *Model) copyState(adapter string) map[string]*nn.Tensor {
	out := map[string]*nn.Tensor{}
	for _, w := range m.wrappers() {
		if w.saved == nil {
			continue
		}
		if c := w.saved.copies.get(adapter); c != nil {
			for _, p := range nn.NamedParameters(c) {
				out[m.modulePrefix()+"."+w.Path+"."+p.Name] = p.T
			}
		}
	}
	return out
}

// modulePrefix is what PEFT's names put before a module path of the base
// model: "base_model.model" for injected adapters (the base model sits in
// a tuner), "base_model" for prompt learning (it is PEFT's base_model).
func (m *Model) modulePrefix() string {
	for _, a := range m.adapters {
		if a.prompt != nil {
			return "base_model"
		}
	}
	return rootPrefix
}

// promptStateDict returns a prompt-learning adapter's saved tensors: the
// encoder's (keys without prefix) and modules_to_save copies.
func (m *Model) promptStateDict(a *adapterState, adapter string) (map[string]*nn.Tensor, error) {
	out, err := a.encoder.SavedTensors()
	if err != nil {
		return nil, fmt.Errorf("peft: adapter %q: %w", adapter, err)
	}
	for k, t := range m.copyState(adapter) {
		if _, ok := out[k]; ok {
			return nil, fmt.Errorf("peft: adapter %q: two tensors have the saved key %q", adapter, k)
		}
		out[k] = t
	}
	return out, nil
}

// errPromptMerge is returned when merging a prompt-learning adapter.
var errPromptMerge = errors.New("peft: prompt-learning adapters have no weights to merge")

// promptParams lists prompt encoders' parameters under PEFT's names.
func (m *Model) promptParams(add func(namedParam)) {
	for _, name := range m.order {
		a := m.adapters[name]
		if a.encoder == nil {
			continue
		}
		for _, p := range nn.NamedParameters(a.encoder) {
			add(namedParam{Param: nn.Param{Name: "prompt_encoder." + name + "." + p.Name, T: p.T}, kind: kindPrompt, adapter: name})
		}
	}
}

// enablePromptInside enables the prompt adapter of kind PromptInside that
// is active (unless adapters are disabled) and disables every other one.
func (m *Model) enablePromptInside() {
	active := m.activePrompt()
	for _, name := range m.order {
		if act, ok := m.adapters[name].encoder.(tuners.PromptActivator); ok && m.adapters[name] != active {
			act.SetEnabled(false)
		}
	}
	if active != nil {
		if act, ok := active.encoder.(tuners.PromptActivator); ok {
			act.SetEnabled(true)
		}
	}
}

// promptMask extends an attention mask [batch, seq] with ones for the t
// virtual tokens that come first (PEFT's prefix_attention_mask), or returns
// nil for no mask.
func promptMask(mask []int32, batch, seq, t int) []int32 {
	if mask == nil {
		return nil
	}
	out := make([]int32, 0, batch*(t+seq))
	for b := range batch {
		for range t {
			out = append(out, 1)
		}
		out = append(out, mask[b*seq:(b+1)*seq]...)
	}
	return out
}
