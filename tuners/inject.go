package tuners

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/nn"
)

// Auxiliary is implemented by the wrappers the peft package puts around
// modules for reasons other than an adapter method (modules_to_save copies).
// Injection neither adapts them nor looks inside them.
type Auxiliary interface {
	nn.Module
	// Original returns the wrapped module of the base model.
	Original() nn.Module
}

// Node is one module found by WalkTargets.
type Node struct {
	// Path is the module's dotted path ("" for the root).
	Path string
	// Module is the module.
	Module nn.Module
	// Parent is the module holding it (nil for the root), and Name its
	// child name there.
	Parent nn.Module
	Name   string
}

// WalkTargets calls fn for every module under root in pre-order (children
// in their fixed order), the root first with path "". It does not descend
// into Layers or Auxiliary wrappers (their insides are never targets, as in
// PEFT), but does visit them. fn's error stops the walk and is returned.
func WalkTargets(root nn.Module, fn func(n Node) error) error {
	return walk(Node{Module: root}, fn)
}

func walk(n Node, fn func(Node) error) error {
	if err := fn(n); err != nil {
		return err
	}
	switch n.Module.(type) {
	case Layer, Auxiliary:
		return nil
	}
	for _, c := range n.Module.Children() {
		if c.Module == nil {
			continue
		}
		p := c.Name
		if n.Path != "" {
			p = n.Path + "." + c.Name
		}
		if err := walk(Node{Path: p, Module: c.Module, Parent: n.Module, Name: c.Name}, fn); err != nil {
			return err
		}
	}
	return nil
}

// IsLinear reports whether m is a linear layer for "all-linear": an
// nn.Linear, a GPT-2 style nn.Conv1D, or a Layer wrapping one.
func IsLinear(m nn.Module) bool {
	if l, ok := m.(Layer); ok {
		m = l.Base()
	}
	switch m.(type) {
	case *nn.Linear, *nn.Conv1D:
		return true
	}
	return false
}

// ResolveAllLinear replaces target_modules "all-linear" by the sorted list
// of the full paths of every linear layer of root (see IsLinear), leaving
// out the output layer of models that implement OutputLayerer. Other
// target_modules values are left alone.
func ResolveAllLinear(root nn.Module, tc *TargetConfig) error {
	if !tc.TargetModules.IsAllLinear() {
		return nil
	}
	exclude := ""
	if o, ok := root.(OutputLayerer); ok {
		exclude = o.OutputLayer()
	}
	names := []string{}
	err := WalkTargets(root, func(n Node) error {
		if n.Path != "" && n.Path != exclude && IsLinear(n.Module) {
			names = append(names, n.Path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tc.TargetModules = Names(names...)
	return nil
}

// ResolveTargets fills an empty target_modules with the method's default for
// root's model_type and resolves "all-linear". The error names the model
// type when there is no default.
func ResolveTargets(root nn.Module, peftType string, tc *TargetConfig) error {
	if tc.TargetModules.IsZero() {
		mt := ""
		if t, ok := root.(ModelTyper); ok {
			mt = t.ModelType()
		}
		def, ok := DefaultTargetModules(peftType, mt)
		if !ok {
			return fmt.Errorf("tuners: target_modules is not set and %s has no default for model_type %q: set target_modules", peftType, mt)
		}
		tc.TargetModules = def
	}
	return ResolveAllLinear(root, tc)
}

// Injection reports what Inject did.
type Injection struct {
	// Targeted lists the adapted module paths in model order.
	Targeted []string
	// Layers holds the Layer now at each targeted path.
	Layers map[string]Layer
	// Shared is the adapter's method-level state (nil if none).
	Shared *Shared
}

// ErrNoTarget is wrapped by Inject's error when the config selects no
// module of the model.
var ErrNoTarget = errors.New("no module matched")

// Inject adds adapter to every module of root that cfg selects, following
// PEFT's inject_adapter: default and "all-linear" targets are resolved (cfg
// is updated in place, so a saved config lists the resolved modules),
// modules are matched (see Matcher), the method prepares shared state, then
// wraps each target and the wrapper replaces it in its parent.
//
// If nothing matches, the error names target_modules (and the layer
// options) and wraps ErrNoTarget. If wrapping fails, the modules already
// given the adapter lose it again and the model is left as it was.
// Inject mutates root: it must not run concurrently with anything else.
func Inject(root nn.Module, m Method, cfg TargetedConfig, adapter string) (*Injection, error) {
	if adapter == "" {
		return nil, fmt.Errorf("tuners: empty adapter name")
	}
	tc := cfg.Targeting()
	if d, ok := m.(TargetDefaulter); ok && tc.TargetModules.IsZero() {
		t, err := d.DefaultTargets(root)
		if err != nil {
			return nil, err
		}
		tc.TargetModules = t
	}
	if err := ResolveTargets(root, m.Type(), tc); err != nil {
		return nil, err
	}
	if r, ok := m.(ConfigResolver); ok {
		if err := r.ResolveConfig(root, cfg); err != nil {
			return nil, err
		}
	}
	matcher, err := NewMatcher(tc)
	if err != nil {
		return nil, err
	}
	var matched []Node
	var excluded, unmatched int
	err = WalkTargets(root, func(n Node) error {
		if n.Path == "" {
			return nil
		}
		if _, ok := n.Module.(Auxiliary); ok {
			excluded++
			return nil
		}
		switch matcher.Match(n.Path) {
		case Matched:
			matched = append(matched, n)
		case Excluded:
			excluded++
		default:
			unmatched++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(matched) == 0 {
		return nil, noTargetError(tc, excluded, unmatched)
	}

	targets := make([]Target, len(matched))
	for i, n := range matched {
		targets[i] = Target{Path: n.Path, Module: n.Module, Root: root, Config: cfg, Adapter: adapter}
	}
	var shared *Shared
	if p, ok := m.(Preparer); ok {
		if shared, err = p.Prepare(root, cfg, adapter, targets); err != nil {
			return nil, fmt.Errorf("tuners: preparing adapter %q: %w", adapter, err)
		}
	}
	inj := &Injection{Layers: map[string]Layer{}, Shared: shared}
	layers := make([]Layer, len(targets))
	for i := range targets {
		targets[i].Shared = shared
		if old, ok := targets[i].Module.(Layer); ok && old.Method() != m.Type() {
			rollback(targets[:i], layers[:i], adapter)
			return nil, fmt.Errorf("tuners: module %q is already adapted by %s, cannot add %s adapter %q", targets[i].Path, old.Method(), m.Type(), adapter)
		}
		l, err := m.Wrap(targets[i])
		if err != nil {
			rollback(targets[:i], layers[:i], adapter)
			return nil, fmt.Errorf("tuners: adapting module %q: %w", targets[i].Path, err)
		}
		layers[i] = l
	}
	for i, n := range matched {
		if nn.Module(layers[i]) != n.Module {
			if err := n.Parent.SetChild(n.Name, layers[i]); err != nil {
				for j := 0; j < i; j++ {
					if nn.Module(layers[j]) != matched[j].Module {
						_ = matched[j].Parent.SetChild(matched[j].Name, matched[j].Module)
					}
				}
				rollback(targets, layers, adapter)
				return nil, fmt.Errorf("tuners: replacing module %q: %w", n.Path, err)
			}
		}
		inj.Targeted = append(inj.Targeted, n.Path)
		inj.Layers[n.Path] = layers[i]
	}
	return inj, nil
}

// rollback removes adapter from the pre-existing layers it was added to.
func rollback(targets []Target, layers []Layer, adapter string) {
	for i, t := range targets {
		if old, ok := t.Module.(Layer); ok && layers[i] == old {
			_ = old.Delete(adapter)
		}
	}
}

func noTargetError(tc *TargetConfig, excluded, unmatched int) error {
	var b strings.Builder
	switch {
	case excluded > 0 && unmatched == 0:
		b.WriteString("all modules were excluded: check target_modules, exclude_modules and modules_to_save")
	case excluded == 0:
		fmt.Fprintf(&b, "target_modules %s not found in the base model", tc.TargetModules)
	default:
		fmt.Fprintf(&b, "no module selected by target_modules %s: the others were excluded by exclude_modules %s or modules_to_save %q", tc.TargetModules, tc.ExcludeModules, tc.ModulesToSave)
	}
	if tc.LayersToTransform != nil {
		fmt.Fprintf(&b, " (layers_to_transform %v", []int(tc.LayersToTransform))
		if tc.LayersPattern != nil {
			fmt.Fprintf(&b, ", layers_pattern %q", []string(tc.LayersPattern))
		}
		b.WriteString(")")
	}
	return fmt.Errorf("tuners: %s: %w", b.String(), ErrNoTarget)
}

// RemoveAdapterName turns a live parameter name into its saved form, as
// PEFT's get_peft_model_state_dict does: a name ending in "." + adapter loses
// that suffix ("lora_embedding_A.default" -> "lora_embedding_A"); otherwise
// the component just before the last one loses a trailing "." + adapter
// ("lora_A.default.weight" -> "lora_A.weight"). Names without a dot are
// returned as they are.
func RemoveAdapterName(name, adapter string) string {
	if !strings.Contains(name, ".") {
		return name
	}
	if strings.HasSuffix(name, "."+adapter) {
		return strings.TrimSuffix(name, "."+adapter)
	}
	i := strings.LastIndexByte(name, '.')
	head, suffix := name[:i], name[i:]
	head = strings.TrimSuffix(head, "."+adapter)
	return head + suffix
}

// InsertAdapterName turns a saved key (or fragment) into the live name, as
// PEFT's set_peft_model_state_dict does for keys holding the method prefix:
// after the last occurrence of prefix, a dotted remainder "X.rest" becomes
// "X.<adapter>.rest" ("lora_A.weight" -> "lora_A.default.weight"), and an
// undotted one gets ".<adapter>" appended ("lora_embedding_A" ->
// "lora_embedding_A.default"). Keys without prefix are returned unchanged.
func InsertAdapterName(key, prefix, adapter string) string {
	i := strings.LastIndex(key, prefix)
	if prefix == "" || i < 0 {
		return key
	}
	suffix := key[i+len(prefix):]
	dot := strings.IndexByte(suffix, '.')
	if dot < 0 {
		return key + "." + adapter
	}
	tail := suffix[dot+1:]
	return key[:len(key)-len(tail)] + adapter + "." + tail
}
