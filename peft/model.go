package peft

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// DefaultAdapterName is the name an adapter gets when none is given.
const DefaultAdapterName = "default"

// Model is a base model with PEFT adapters injected (PEFT's PeftModel),
// made by New or Load. The adapters live inside the base model's module
// tree, so the base model's own forward function runs them too.
//
// Concurrency: Forward on the base model in eval mode may run from many
// goroutines at once. Adding, loading, deleting, activating, disabling,
// merging and training adapters mutate the model and must not run
// concurrently with anything else on it.
type Model struct {
	root     nn.Module
	adapters map[string]*adapterState
	order    []string
	active   []string
	disabled bool
	unloaded bool
	// freezePending is set when an adapter was added: the next
	// refreshTrainable freezes the base model as PEFT's injection does.
	freezePending bool
	// mixed is set for models made by NewMixed or LoadMixed, which may hold
	// adapters of several methods (see mixed_model.go).
	mixed bool
}

// adapterState is what the model keeps per adapter: an injected method's
// (method, shared) or a prompt-learning method's (prompt, encoder).
type adapterState struct {
	cfg    tuners.Config
	method tuners.Method
	shared *tuners.Shared
	// sharedTrainable records which shared tensors the method created
	// trainable.
	sharedTrainable []bool

	prompt  tuners.PromptMethod
	encoder tuners.PromptEncoder
}

// typeName returns the adapter's peft_type.
func (a *adapterState) typeName() string {
	if a.prompt != nil {
		return a.prompt.Type()
	}
	return a.method.Type()
}

// Option configures New, Load, AddAdapter and LoadAdapter.
type Option func(*options)

type options struct {
	name      string
	trainable *bool
}

// AdapterName names the adapter (default "default").
func AdapterName(name string) Option { return func(o *options) { o.name = name } }

// Trainable sets whether the adapter's parameters require gradients. New
// and AddAdapter default to the config's inference_mode (trainable unless
// it is set); Load and LoadAdapter default to frozen, like PEFT's
// from_pretrained with is_trainable=False.
func Trainable(on bool) Option { return func(o *options) { o.trainable = &on } }

func buildOptions(opts []Option) options {
	o := options{name: DefaultAdapterName}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// New injects a new adapter described by cfg into base (PEFT's
// get_peft_model) and returns the model, with the adapter active and, unless
// cfg.Base().InferenceMode is set, trainable; every other parameter of base
// is frozen. cfg is copied: the model's copy (Config) has its defaults and
// "all-linear" resolved. base is modified in place.
func New(base nn.Module, cfg tuners.Config, opts ...Option) (*Model, error) {
	m := &Model{root: base, adapters: map[string]*adapterState{}}
	o := buildOptions(opts)
	if err := m.add(o.name, cfg, o.trainable); err != nil {
		return nil, err
	}
	m.active = []string{o.name}
	if err := m.applyActive(); err != nil {
		return nil, err
	}
	return m, nil
}

// Load reads the adapter folder dir (adapter_config.json and
// adapter_model.safetensors, as PEFT's save_pretrained writes them),
// injects the adapter into base and loads its weights (PEFT's
// PeftModel.from_pretrained). The adapter is active and frozen unless
// Trainable(true) is given. Loading is strict: a key the model does not
// expect, a missing key or a shape that disagrees is an error naming it.
func Load(base nn.Module, dir string, opts ...Option) (*Model, error) {
	o := buildOptions(opts)
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	cfg.Base().InferenceMode = o.trainable == nil || !*o.trainable
	m := &Model{root: base, adapters: map[string]*adapterState{}}
	if err := m.add(o.name, cfg, nil); err != nil {
		return nil, err
	}
	if err := m.loadWeights(o.name, dir); err != nil {
		m.removeAdapter(o.name)
		return nil, err
	}
	m.active = []string{o.name}
	if err := m.applyActive(); err != nil {
		return nil, err
	}
	return m, nil
}

// Base returns the base model, with the adapter layers inside it.
func (m *Model) Base() nn.Module { return m.root }

// Forward runs the base model, adapters included: the Forward of a
// models.Model base, or, for an nn.Layer base, its Forward on in.X.
//
// With a prompt-learning adapter active, the base model must be a
// PromptModel; the virtual tokens come first, so the output has T more
// positions than the input (as in PEFT).
func (m *Model) Forward(in models.Input) (*nn.Tensor, error) {
	return m.ForwardTasks(in, nil)
}

// ForwardTasks is Forward with one task id per batch row (PEFT's task_ids),
// for multitask prompt tuning and for Poly, whose layers implement
// tuners.TaskRouter; other adapters take nil. With the adapters disabled
// the task ids are ignored.
func (m *Model) ForwardTasks(in models.Input, taskIDs []int32) (*nn.Tensor, error) {
	if m.unloaded {
		return nil, errUnloaded
	}
	if a := m.activePrompt(); a != nil {
		return m.promptForward(a, in, taskIDs)
	}
	if !m.disabled {
		clear, err := m.setTaskIDs(in, taskIDs)
		if err != nil {
			return nil, err
		}
		defer clear()
	}
	// A model that runs from embeddings (a raw models/llama) runs here, and
	// is the only kind that takes an attention mask.
	if b, ok := m.root.(PromptModel); ok && in.IDs != nil {
		if _, isModel := m.root.(models.Model); !isModel || in.Mask != nil {
			if len(in.Shape) != 2 || (in.Mask != nil && len(in.Mask) != len(in.IDs)) {
				return nil, fmt.Errorf("peft: token ids of shape %v with %d mask entries: want ids [batch, seq] and a mask of the same shape", in.Shape, len(in.Mask))
			}
			h, err := b.Embed(in.IDs, in.Shape[0], in.Shape[1])
			if err != nil {
				return nil, err
			}
			return b.ForwardEmbeds(h, &llama.ForwardOptions{AttentionMask: in.Mask})
		}
	}
	if in.Mask != nil {
		return nil, fmt.Errorf("peft: an attention mask needs a base model that runs from embeddings (a PromptModel), not %T", m.root)
	}
	switch b := m.root.(type) {
	case models.Model:
		return b.Forward(in)
	case nn.Layer:
		if in.X == nil {
			return nil, fmt.Errorf("peft: the base model (%T) takes a float tensor, got token ids", m.root)
		}
		return b.Forward(in.X), nil
	}
	return nil, fmt.Errorf("peft: the base model (%T) has no Forward; call its own forward function", m.root)
}

// SetTraining switches the base model, its adapter layers and any prompt
// encoders between training mode (dropout active) and evaluation mode
// (nn.SetTraining on each). Not safe for concurrent use.
func (m *Model) SetTraining(on bool) {
	nn.SetTraining(m.root, on)
	for _, name := range m.order {
		if a := m.adapters[name]; a.encoder != nil {
			nn.SetTraining(a.encoder, on)
		}
	}
}

// Adapters returns the adapter names in the order they were added.
func (m *Model) Adapters() []string { return slices.Clone(m.order) }

// ActiveAdapters returns the active adapters.
func (m *Model) ActiveAdapters() []string { return slices.Clone(m.active) }

// Config returns the configuration of adapter name (the model's own copy:
// changing it changes what Save writes), or nil.
func (m *Model) Config(name string) tuners.Config {
	if a, ok := m.adapters[name]; ok {
		return a.cfg
	}
	return nil
}

var errUnloaded = errors.New("peft: the model was unloaded")

// AddAdapter injects a new adapter next to the existing ones (PEFT's
// add_adapter). It does not become active: see SetAdapter. Options as for
// New (AdapterName is required in practice: the name must be new).
func (m *Model) AddAdapter(cfg tuners.Config, opts ...Option) error {
	o := buildOptions(opts)
	if err := m.add(o.name, cfg, o.trainable); err != nil {
		return err
	}
	return m.applyActive()
}

// LoadAdapter loads the adapter folder dir under name next to the existing
// adapters (PEFT's load_adapter). It does not become active: see
// SetAdapter. It is frozen unless Trainable(true) is given.
func (m *Model) LoadAdapter(dir, name string, opts ...Option) error {
	o := buildOptions(opts)
	cfg, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	cfg.Base().InferenceMode = o.trainable == nil || !*o.trainable
	if err := m.add(name, cfg, nil); err != nil {
		return err
	}
	if err := m.loadWeights(name, dir); err != nil {
		m.removeAdapter(name)
		_ = m.applyActive()
		return err
	}
	return m.applyActive()
}

// add injects adapter name with (a copy of) cfg.
func (m *Model) add(name string, cfg tuners.Config, trainable *bool) error {
	if m.unloaded {
		return errUnloaded
	}
	if m.root == nil {
		return errors.New("peft: nil base model")
	}
	if m.adapters == nil {
		m.adapters = map[string]*adapterState{}
	}
	if err := checkAdapterName(name); err != nil {
		return err
	}
	if _, ok := m.adapters[name]; ok {
		return fmt.Errorf("peft: adapter %q already exists", name)
	}
	if cfg == nil {
		return errors.New("peft: nil config")
	}
	if cfg.Base().PeftType == "" {
		return fmt.Errorf("peft: the %T config has no peft_type: start from the method's NewConfig (lora.NewConfig(), ...), which sets it and PEFT's defaults", cfg)
	}
	typ := strings.ToUpper(cfg.Base().PeftType)
	method, isMethod := Method(typ)
	pm, isPrompt := promptMethods[typ]
	if !isMethod && !isPrompt {
		return fmt.Errorf("peft: peft_type %q is not supported (supported: %v)", cfg.Base().PeftType, Methods())
	}
	own, err := cloneConfig(cfg)
	if err != nil {
		return err
	}
	if trainable != nil {
		own.Base().InferenceMode = !*trainable
	}
	if err := own.Validate(); err != nil {
		return fmt.Errorf("peft: adapter %q: %w", name, err)
	}
	if m.mixed {
		if err := checkMixable(typ, own); err != nil {
			return fmt.Errorf("peft: adapter %q: %w", name, err)
		}
	}
	for _, otherName := range m.order {
		if other := m.adapters[otherName]; other.typeName() != typ && !m.mixed {
			return fmt.Errorf("peft: adapter %q is %s but the model holds %s adapters; mixing methods is not supported", name, typ, other.typeName())
		}
	}
	if isPrompt {
		if err := m.addPrompt(name, own, pm); err != nil {
			return err
		}
		m.freezePending = true
		return nil
	}
	tc, ok := own.(tuners.TargetedConfig)
	if !ok {
		return fmt.Errorf("peft: adapter %q: a %s config (%T) does not choose target modules", name, typ, own)
	}
	for _, otherName := range m.order {
		other := m.adapters[otherName]
		if biasMode(own) != "none" && biasMode(other.cfg) != "none" {
			return fmt.Errorf("peft: adapter %q has bias %q but adapter %q already trains biases (%q): only one adapter may train biases", name, biasMode(own), otherName, biasMode(other.cfg))
		}
	}
	inj, err := m.inject(method, tc, name)
	if err != nil {
		return fmt.Errorf("peft: adapter %q: %w", name, err)
	}
	m.freezePending = true
	st := &adapterState{cfg: own, method: method, shared: inj.Shared}
	if inj.Shared != nil {
		for _, p := range inj.Shared.Params {
			st.sharedTrainable = append(st.sharedTrainable, p.T.RequiresGrad())
		}
	}
	m.adapters[name] = st
	m.order = append(m.order, name)
	if err := m.wrapModulesToSave(name, tc.Targeting().ModulesToSave); err != nil {
		m.removeAdapter(name)
		return fmt.Errorf("peft: adapter %q: %w", name, err)
	}
	return nil
}

// checkAdapterName refuses names that cannot be a module name in PyTorch
// (empty, or holding a dot) or a folder name in Save's layout.
func checkAdapterName(name string) error {
	if name == "" || strings.ContainsAny(name, "./\\") || name == tuners.BaseAdapterName {
		return fmt.Errorf("peft: invalid adapter name %q: it must be non-empty, without '.', '/' or '\\', and not %q", name, tuners.BaseAdapterName)
	}
	return nil
}

// wrapModulesToSave wraps (or extends the wrappers of) every module whose
// path ends with one of names (PEFT's plain suffix test), giving adapter a
// copy of it.
func (m *Model) wrapModulesToSave(adapter string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	var found []tuners.Node
	err := tuners.WalkTargets(m.root, func(n tuners.Node) error {
		if n.Path == "" {
			return nil
		}
		for _, s := range names {
			if strings.HasSuffix(n.Path, s) {
				found = append(found, n)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return fmt.Errorf("modules_to_save %q: no module found", names)
	}
	for _, n := range found {
		w, ok := n.Module.(*savedModule)
		if !ok {
			if _, isLayer := n.Module.(tuners.Layer); isLayer {
				return fmt.Errorf("modules_to_save: module %q is adapted and cannot also be saved in full", n.Path)
			}
			w = newSavedModule(n.Module)
			if err := w.add(adapter); err != nil {
				return fmt.Errorf("modules_to_save %q: %w", n.Path, err)
			}
			if err := n.Parent.SetChild(n.Name, w); err != nil {
				return fmt.Errorf("modules_to_save %q: %w", n.Path, err)
			}
			continue
		}
		if err := w.add(adapter); err != nil {
			return fmt.Errorf("modules_to_save %q: %w", n.Path, err)
		}
	}
	return nil
}

// layerAt is an adapter layer or modules_to_save wrapper and its place.
type layerAt struct {
	tuners.Node
	layer tuners.Layer
	saved *savedModule
}

// wrappers returns every adapter layer and modules_to_save wrapper in
// model order.
func (m *Model) wrappers() []layerAt {
	var out []layerAt
	_ = tuners.WalkTargets(m.root, func(n tuners.Node) error {
		switch v := n.Module.(type) {
		case tuners.Layer:
			out = append(out, layerAt{Node: n, layer: v})
		case *savedModule:
			out = append(out, layerAt{Node: n, saved: v})
		}
		return nil
	})
	return out
}

// SetAdapter makes the named adapters the active ones (PEFT's
// set_adapter): Forward applies them, and, unless loaded for inference, they
// are trainable while the others are frozen. Several names are allowed for
// methods whose layers sum adapters; a module saved in full
// (modules_to_save) can follow only one.
func (m *Model) SetAdapter(names ...string) error {
	if m.unloaded {
		return errUnloaded
	}
	if len(names) == 0 {
		return errors.New("peft: SetAdapter needs at least one adapter name")
	}
	for _, n := range names {
		if _, ok := m.adapters[n]; !ok {
			return fmt.Errorf("peft: no adapter %q (have %q)", n, m.order)
		}
	}
	if m.adapters[names[0]].prompt != nil && len(names) > 1 {
		return fmt.Errorf("peft: prompt-learning adapters are used one at a time, got %q", names)
	}
	prev := m.active
	m.active = slices.Clone(names)
	if err := m.applyActive(); err != nil {
		m.active = prev
		_ = m.applyActive()
		return err
	}
	return nil
}

// applyActive pushes the active set and the disabled flag to every wrapper
// and recomputes which parameters are trainable, as PEFT does after
// set_adapter.
func (m *Model) applyActive() error {
	ws := m.wrappers()
	for _, w := range ws {
		if c, ok := w.layer.(tuners.ActiveChecker); ok && w.layer != nil {
			if err := c.CheckActive(m.active); err != nil {
				return fmt.Errorf("peft: module %q: %w", w.Path, err)
			}
		}
	}
	for _, w := range ws {
		if w.saved != nil {
			var held []string
			for _, a := range m.active {
				if w.saved.copies.get(a) != nil {
					held = append(held, a)
				}
			}
			if len(held) > 1 {
				return fmt.Errorf("peft: module %q is saved in full by adapters %q: only one of them can be active", w.Path, held)
			}
			w.saved.active = ""
			if len(held) == 1 {
				w.saved.active = held[0]
			}
			w.saved.disabled = m.disabled
			continue
		}
		w.layer.SetActive(m.active)
		w.layer.SetDisabled(m.disabled)
	}
	m.enablePromptInside()
	m.refreshTrainable(ws)
	return nil
}

// refreshTrainable marks trainable the tensors of the active adapters that
// are not in inference mode and freezes the other adapters' (PEFT's
// set_adapter). After an adapter was added it first freezes every base
// tensor and marks the biases the active adapters' bias option trains
// (PEFT's _mark_only_adapters_as_trainable); otherwise base tensors keep
// whatever the caller set.
func (m *Model) refreshTrainable(ws []layerAt) {
	injected := m.freezePending
	m.freezePending = false
	if injected {
		for _, p := range m.namedParams() {
			if p.kind == kindBase {
				p.T.SetRequiresGrad(false)
			}
		}
	}
	for _, name := range m.order {
		a := m.adapters[name]
		// PEFT freezes the adapters while they are disabled.
		on := slices.Contains(m.active, name) && !a.cfg.Base().InferenceMode && !m.disabled
		for _, w := range ws {
			if w.layer != nil {
				if slices.Contains(w.layer.Adapters(), name) {
					w.layer.SetTrainable(name, on)
				}
				continue
			}
			if c := w.saved.copies.get(name); c != nil {
				for _, p := range nn.NamedParameters(c) {
					p.T.SetRequiresGrad(on)
				}
			}
		}
		if a.encoder != nil {
			a.encoder.SetTrainable(on)
		}
		if a.shared != nil {
			for i, p := range a.shared.Params {
				p.T.SetRequiresGrad(on && a.sharedTrainable[i])
			}
		}
		if !injected || !slices.Contains(m.active, name) || a.cfg.Base().InferenceMode {
			continue
		}
		mode := biasMode(a.cfg)
		switch {
		case mode == "all":
			for _, p := range m.namedParams() {
				if p.kind == kindBase && strings.Contains(p.Name, "bias") {
					p.T.SetRequiresGrad(true)
				}
			}
		case strings.HasSuffix(mode, "_only"):
			for _, w := range ws {
				if w.layer == nil || a.method == nil || w.layer.Method() != a.method.Type() {
					continue
				}
				for _, p := range w.layer.Base().Params() {
					if p.Name == "bias" && p.T != nil {
						p.T.SetRequiresGrad(true)
					}
				}
			}
		}
	}
}

// biasMode returns the config's bias option ("none" when it has none).
func biasMode(cfg tuners.Config) string {
	if b, ok := cfg.(tuners.BiasConfig); ok {
		if s := b.BiasMode(); s != "" {
			return s
		}
	}
	return "none"
}

// DisableAdapters runs fn with every adapter turned off (PEFT's
// disable_adapter context): the base model computes as if it had no
// adapter, except for biases trained with bias="all", which live in the base
// layers. Merged adapters are unmerged first (PEFT unmerges them on the
// first forward pass) and stay unmerged afterwards. The adapters are turned
// back on when fn returns or panics. fn's error is returned.
func (m *Model) DisableAdapters(fn func() error) error {
	if m.unloaded {
		return errUnloaded
	}
	if err := m.Unmerge(); err != nil {
		return err
	}
	was := m.disabled
	m.disabled = true
	if err := m.applyActive(); err != nil {
		m.disabled = was
		return err
	}
	defer func() {
		m.disabled = was
		_ = m.applyActive()
	}()
	return fn()
}

// DeleteAdapter removes an adapter and its tensors (PEFT's
// delete_adapter). If it was active, the remaining active adapters stay
// active; if none remains, the first remaining adapter becomes active.
// A merged adapter must be unmerged first.
func (m *Model) DeleteAdapter(name string) error {
	if m.unloaded {
		return errUnloaded
	}
	if _, ok := m.adapters[name]; !ok {
		return fmt.Errorf("peft: no adapter %q (have %q)", name, m.order)
	}
	for _, w := range m.wrappers() {
		if w.layer != nil && slices.Contains(w.layer.Merged(), name) {
			return fmt.Errorf("peft: adapter %q is merged into %q: unmerge it first", name, w.Path)
		}
	}
	m.removeAdapter(name)
	m.active = slices.DeleteFunc(m.active, func(s string) bool { return s == name })
	if len(m.active) == 0 && len(m.order) > 0 {
		m.active = []string{m.order[0]}
	}
	return m.applyActive()
}

// removeAdapter drops name from every wrapper and from the model's books. A
// wrapper left without adapters is replaced by the module it wraps, so that
// removing every adapter gives the base model back unchanged.
func (m *Model) removeAdapter(name string) {
	if a := m.adapters[name]; a != nil {
		if act, ok := a.encoder.(tuners.PromptActivator); ok {
			act.SetEnabled(false)
		}
	}
	for _, w := range m.wrappers() {
		if w.layer != nil {
			if slices.Contains(w.layer.Adapters(), name) {
				_ = w.layer.Delete(name)
			}
			if len(w.layer.Adapters()) == 0 && len(w.layer.Merged()) == 0 {
				_ = w.Parent.SetChild(w.Name, w.layer.Base())
			}
			continue
		}
		w.saved.copies.remove(name)
		if w.saved.active == name {
			w.saved.active = ""
		}
		if len(w.saved.copies.names) == 0 {
			_ = w.Parent.SetChild(w.Name, w.saved.original)
		}
	}
	delete(m.adapters, name)
	m.order = slices.DeleteFunc(m.order, func(s string) bool { return s == name })
}
