package peft

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// paramKind tells where a parameter of the model comes from.
type paramKind int

const (
	kindBase    paramKind = iota // a tensor of the base model
	kindAdapter                  // a tensor of an adapter layer
	kindCopy                     // a modules_to_save copy
	kindShared                   // a method-level tensor of an adapter
	kindPrompt                   // a prompt encoder's tensor
)

// namedParam is a parameter under PEFT's live name
// ("base_model.model.lin0.lora_A.default.weight").
type namedParam struct {
	nn.Param
	kind    paramKind
	adapter string // for kindAdapter, kindCopy, kindShared
	// key is the saved key of adapter tensors ("base_model.model.lin0.lora_A.weight").
	key string
}

// rootPrefix is the prefix of every module path in PEFT's names.
const rootPrefix = "base_model.model"

// namedParams lists every parameter of the model, each tensor once, in
// module order, under PEFT's live names: base tensors of adapted modules
// under "<path>.base_layer.", modules_to_save originals under
// "<path>.original_module." and copies under
// "<path>.modules_to_save.<adapter>.", adapter tensors with the adapter
// name inserted, method-level tensors last under "base_model.".
func (m *Model) namedParams() []namedParam { return m.namedParamsAliased(false) }

// namedParamsAliased is namedParams; with aliases it also lists, after its
// first occurrence, every further saved key of an adapter tensor that
// several layers share (Lily's lily_A and lily_B): PEFT saves a shared
// tensor under each layer's key (cloning the aliases) and loads each copy.
func (m *Model) namedParamsAliased(aliases bool) []namedParam {
	var out []namedParam
	seen := map[*nn.Tensor]bool{}
	add := func(p namedParam) {
		if p.T == nil {
			return
		}
		if seen[p.T] {
			if aliases && p.kind == kindAdapter && p.key != "" {
				out = append(out, p)
			}
			return
		}
		seen[p.T] = true
		out = append(out, p)
	}
	var visit func(prefix string, mod nn.Module, kind paramKind, adapter string)
	visit = func(prefix string, mod nn.Module, kind paramKind, adapter string) {
		switch v := mod.(type) {
		case tuners.Layer:
			visit(prefix+".base_layer", v.Base(), kind, adapter)
			mp := ""
			if meth, ok := Method(v.Method()); ok {
				mp = meth.Prefix()
			}
			type savedAs struct{ adapter, key, live string }
			saved := map[*nn.Tensor]savedAs{}
			var order []*nn.Tensor
			for _, a := range v.Adapters() {
				for _, p := range v.AdapterParams(a) {
					if _, ok := saved[p.T]; !ok && p.T != nil {
						saved[p.T] = savedAs{a, prefix + "." + p.Name, prefix + "." + tuners.InsertAdapterName(p.Name, mp, a)}
						order = append(order, p.T)
					}
				}
			}
			// The layer's own nn view gives the true live names, and the
			// tensors it trains without saving them.
			var own []nn.Param
			for _, p := range v.Params() {
				own = append(own, nn.Param{Name: prefix + "." + p.Name, T: p.T})
			}
			for _, c := range v.Children() {
				if c.Name == "base_layer" || c.Module == nil {
					continue
				}
				for _, p := range nn.NamedParameters(c.Module) {
					own = append(own, nn.Param{Name: prefix + "." + c.Name + "." + p.Name, T: p.T})
				}
			}
			for _, p := range own {
				if s, ok := saved[p.T]; ok {
					add(namedParam{Param: p, kind: kindAdapter, adapter: s.adapter, key: s.key})
					continue
				}
				add(namedParam{Param: p, kind: kindAdapter, adapter: adapterIn(p.Name, v.Adapters())})
			}
			for _, t := range order {
				s := saved[t]
				add(namedParam{Param: nn.Param{Name: s.live, T: t}, kind: kindAdapter, adapter: s.adapter, key: s.key})
			}
			return
		case *savedModule:
			visit(prefix+".original_module", v.original, kind, adapter)
			for _, a := range v.copies.names {
				visit(prefix+".modules_to_save."+a, v.copies.get(a), kindCopy, a)
			}
			return
		}
		for _, p := range mod.Params() {
			add(namedParam{Param: nn.Param{Name: prefix + "." + p.Name, T: p.T}, kind: kind, adapter: adapter})
		}
		for _, c := range mod.Children() {
			if c.Module != nil {
				visit(prefix+"."+c.Name, c.Module, kind, adapter)
			}
		}
	}
	visit(m.modulePrefix(), m.root, kindBase, "")
	m.promptParams(add)
	for _, name := range m.order {
		a := m.adapters[name]
		if a.shared == nil {
			continue
		}
		for _, p := range a.shared.Params {
			add(namedParam{
				Param:   nn.Param{Name: "base_model." + sharedLiveName(p.Name, name), T: p.T},
				kind:    kindShared,
				adapter: name,
				key:     "base_model." + p.Name,
			})
		}
	}
	return out
}

// adapterIn returns the adapter whose name is a component of the live name
// (PEFT puts it in every adapter tensor's name), or "".
func adapterIn(name string, adapters []string) string {
	parts := strings.Split(name, ".")
	for _, a := range adapters {
		if slices.Contains(parts, a) {
			return a
		}
	}
	return ""
}

// sharedLiveName inserts the adapter name after the first component of a
// method-level tensor name ("vera_A" -> "vera_A.default", "tinylora_v.0" ->
// "tinylora_v.default.0"), as PEFT's module dictionaries name them.
func sharedLiveName(name, adapter string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i] + "." + adapter + name[i:]
	}
	return name + "." + adapter
}

// TrainableParameters returns the parameters that require gradients, under
// PEFT's names (e.g. "base_model.model.lin0.lora_A.default.weight"), in
// model order: what to hand to an optimizer.
func (m *Model) TrainableParameters() []nn.Param {
	var out []nn.Param
	for _, p := range m.namedParams() {
		if p.T.RequiresGrad() {
			out = append(out, p.Param)
		}
	}
	return out
}

// NumTrainableParameters returns the number of trainable elements and of
// all elements of the model, each tensor counted once (PEFT's
// get_nb_trainable_parameters).
func (m *Model) NumTrainableParameters() (trainable, all int) {
	for _, p := range m.namedParams() {
		n := p.T.Len()
		all += n
		if p.T.RequiresGrad() {
			trainable += n
		}
	}
	return trainable, all
}

// AfterBackward runs the step hooks of the adapter layers, method-level
// state and prompt encoders (tuners.StepHook: the projections of some
// methods). Call it after Backward and before the optimizer step when
// training; step counts optimizer steps from 0. Hooks that must see the
// optimizer's update (AdaLoRA's rank allocation) run from AfterStep.
func (m *Model) AfterBackward(step int) error {
	for _, w := range m.wrappers() {
		if h, ok := w.layer.(tuners.StepHook); ok {
			if err := h.AfterBackward(step); err != nil {
				return fmt.Errorf("peft: %q: %w", w.Path, err)
			}
		}
	}
	for _, name := range m.order {
		a := m.adapters[name]
		var hooks []any
		if a.shared != nil {
			hooks = append(hooks, a.shared.State)
		}
		if a.encoder != nil {
			hooks = append(hooks, a.encoder)
		}
		for _, h := range hooks {
			if h, ok := h.(tuners.StepHook); ok {
				if err := h.AfterBackward(step); err != nil {
					return fmt.Errorf("peft: adapter %q: %w", name, err)
				}
			}
		}
	}
	return nil
}

// trainingState is the method-level state of an adapter created for
// training.
type trainingState struct {
	name  string
	state any
}

// trainingStates returns the method-level states of the adapters created
// for training (not in inference mode), in adapter order.
func (m *Model) trainingStates() []trainingState {
	var out []trainingState
	for _, name := range m.order {
		a := m.adapters[name]
		if a.shared == nil || a.shared.State == nil || a.cfg.Base().InferenceMode {
			continue
		}
		out = append(out, trainingState{name, a.shared.State})
	}
	return out
}

// AfterStep runs the after-step hooks (tuners.AfterStepHook: AdaLoRA's
// rank allocation, PEFT's update_and_allocate) of the adapter layers and of
// the adapters created for training. Call it after the optimizer step and
// before zeroing the gradients; step counts optimizer steps from 0.
func (m *Model) AfterStep(step int) error {
	for _, w := range m.wrappers() {
		if h, ok := w.layer.(tuners.AfterStepHook); ok {
			if err := h.AfterStep(step); err != nil {
				return fmt.Errorf("peft: %q: %w", w.Path, err)
			}
		}
	}
	for _, s := range m.trainingStates() {
		if h, ok := s.state.(tuners.AfterStepHook); ok {
			if err := h.AfterStep(step); err != nil {
				return fmt.Errorf("peft: adapter %q: %w", s.name, err)
			}
		}
	}
	return nil
}

// LossTerms returns the sum of the terms that the methods of the adapters
// created for training add to the training loss (tuners.LossTermer:
// AdaLoRA's orthogonality regulariser), or nil when there are none. Add it
// to the task loss before Backward, as PEFT's forward does when it
// computes a loss.
func (m *Model) LossTerms() (*nn.Tensor, error) {
	var sum *nn.Tensor
	for _, s := range m.trainingStates() {
		h, ok := s.state.(tuners.LossTermer)
		if !ok {
			continue
		}
		t, err := h.LossTerm()
		if err != nil {
			return nil, fmt.Errorf("peft: adapter %q: %w", s.name, err)
		}
		if t == nil {
			continue
		}
		if sum == nil {
			sum = t
		} else {
			sum = nn.Add(sum, t)
		}
	}
	return sum, nil
}
