package peft

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// MixableMethods are the peft_types a mixed model combines: PEFT's
// COMPATIBLE_TUNER_TYPES for PeftMixedModel. OFT, which rotates the input
// of the layer it wraps, must be the first method on each module it
// targets (see NewMixed).
var MixableMethods = []string{"LORA", "LOHA", "LOKR", "ADALORA", "OFT", "SHIRA"}

// firstOnly are the methods that must be a module's first (innermost)
// method in a mixed model.
var firstOnly = tuners.FirstOnlyMethods

// checkMixable refuses what a mixed model cannot hold.
func checkMixable(typ string, cfg tuners.Config) error {
	if !slices.Contains(MixableMethods, typ) {
		return fmt.Errorf("%s adapters cannot join a mixed model (mixable: %v)", typ, MixableMethods)
	}
	if c, ok := cfg.(*lora.Config); ok && c.UseDoRA {
		return fmt.Errorf("DoRA adapters cannot join a mixed model: their output rescales the other methods' output")
	}
	return nil
}

// NewMixed is New for a mixed model (PEFT's PeftMixedModel,
// get_peft_model(..., mixed=True)): besides adapters of cfg's method it
// accepts, through AddAdapter and LoadAdapter, adapters of the other
// MixableMethods on the same or other modules, and several of them can be
// active at once (SetAdapter with names of different methods).
//
// A module targeted by several methods is held by a tuners.Stack: each
// method's layer wraps the base module, and the stack computes the base
// output plus each active adapter's update, which is what PEFT's nested
// wrappers compute for these additive methods. Merge, Unmerge,
// MergeAndUnload, Unload, DeleteAdapter, ForwardMixed (for methods with
// per-row support) and Save work as for single-method models; Save writes
// each adapter in its own folder, in PEFT's single-method format, so each
// loads alone in PEFT or into a mixed model with LoadAdapter.
//
// OFT rotates the input of the layer it wraps, so it does not add to the
// other updates: it is accepted as the first method on a module (PEFT's
// innermost wrapper, whose output the others add to) and refused on a
// module another method already adapts, naming the module.
//
// Not offered: DoRA (its output rescales the wrapped output), prompt
// learning, and AddWeightedAdapter across methods (PEFT refuses it too).
func NewMixed(base nn.Module, cfg tuners.Config, opts ...Option) (*Model, error) {
	m := &Model{root: base, adapters: map[string]*adapterState{}, mixed: true}
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

// LoadMixed is Load for a mixed model (PEFT's
// PeftMixedModel.from_pretrained): it loads the adapter folder dir into a
// new mixed model, to which LoadAdapter adds adapters of other methods.
func LoadMixed(base nn.Module, dir string, opts ...Option) (*Model, error) {
	o := buildOptions(opts)
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	cfg.Base().InferenceMode = o.trainable == nil || !*o.trainable
	m := &Model{root: base, adapters: map[string]*adapterState{}, mixed: true}
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

// Mixed reports whether the model was made by NewMixed or LoadMixed.
func (m *Model) Mixed() bool { return m.mixed }

// childAt returns the child name of parent.
func childAt(parent nn.Module, name string) nn.Module {
	for _, c := range parent.Children() {
		if c.Name == name {
			return c.Module
		}
	}
	return nil
}

// inject injects adapter name of method. In a mixed model every adapted
// module is a tuners.Stack: for the injection each stack is replaced by
// its layer of this method (or its base module when it has none), so that
// the method sees what it would see alone; afterwards the stacks come back
// holding the method's new or extended layers, and every module the
// method adapted for the first time gets a stack of its own.
func (m *Model) inject(method tuners.Method, tc tuners.TargetedConfig, name string) (*tuners.Injection, error) {
	if !m.mixed {
		return tuners.Inject(m.root, method, tc, name)
	}
	if slices.Contains(firstOnly, method.Type()) {
		if err := m.checkFirst(method.Type(), tc); err != nil {
			return nil, err
		}
	}
	type placed struct {
		n tuners.Node
		s *tuners.Stack
	}
	var stacks []placed
	err := tuners.WalkTargets(m.root, func(n tuners.Node) error {
		s, ok := n.Module.(*tuners.Stack)
		if !ok {
			return nil
		}
		var put nn.Module = s.Base()
		if l := s.Layer(method.Type()); l != nil {
			put = l
		}
		if err := n.Parent.SetChild(n.Name, put); err != nil {
			return fmt.Errorf("peft: mixed model: module %q: %w", n.Path, err)
		}
		stacks = append(stacks, placed{n, s})
		return nil
	})
	var inj *tuners.Injection
	if err == nil {
		inj, err = tuners.Inject(m.root, method, tc, name)
	}
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range stacks {
		if l, ok := childAt(p.n.Parent, p.n.Name).(tuners.Layer); ok && l.Method() == method.Type() {
			if e := p.s.Put(l); e != nil {
				errs = append(errs, fmt.Errorf("peft: mixed model: module %q: %w", p.n.Path, e))
			}
		}
		if e := p.n.Parent.SetChild(p.n.Name, p.s); e != nil {
			errs = append(errs, fmt.Errorf("peft: mixed model: module %q: %w", p.n.Path, e))
		}
	}
	e := tuners.WalkTargets(m.root, func(n tuners.Node) error {
		l, ok := n.Module.(tuners.Layer)
		if !ok || l.Method() == tuners.MixedMethod {
			return nil
		}
		s := tuners.NewStack(l.Base())
		if err := s.Put(l); err != nil {
			return fmt.Errorf("peft: mixed model: module %q: %w", n.Path, err)
		}
		if err := n.Parent.SetChild(n.Name, s); err != nil {
			return fmt.Errorf("peft: mixed model: module %q: %w", n.Path, err)
		}
		return nil
	})
	if e != nil {
		errs = append(errs, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return inj, nil
}

// checkFirst refuses to add a first-only method (OFT) to a module that
// another method adapts already.
func (m *Model) checkFirst(typ string, tc tuners.TargetedConfig) error {
	if err := tuners.ResolveTargets(m.root, typ, tc.Targeting()); err != nil {
		return err
	}
	matcher, err := tuners.NewMatcher(tc.Targeting())
	if err != nil {
		return err
	}
	return tuners.WalkTargets(m.root, func(n tuners.Node) error {
		s, ok := n.Module.(*tuners.Stack)
		if !ok || s.Layer(typ) != nil || len(s.Layers()) == 0 || matcher.Match(n.Path) != tuners.Matched {
			return nil
		}
		return fmt.Errorf("peft: mixed model: module %q is adapted by %s already; %s rotates the input of what it wraps and must be added first", n.Path, s.Layers()[0].Method(), typ)
	})
}
