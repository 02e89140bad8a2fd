package peft

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
)

// savedModule is PEFT's ModulesToSaveWrapper: it stands in the place of a
// module named in modules_to_save, keeps the original, and holds one full
// trainable copy per adapter. Forward runs the active adapter's copy, or the
// original when no adapter of this wrapper is active or adapters are
// disabled. It implements tuners.Auxiliary.
//
// Its children are "original_module" and "modules_to_save" (one child per
// adapter), so nn names the copies "<path>.modules_to_save.<adapter>.weight"
// as PEFT does; the adapter file stores them as "<path>.weight".
type savedModule struct {
	original nn.Module
	copies   *moduleDict
	active   string
	disabled bool
}

func newSavedModule(original nn.Module) *savedModule {
	return &savedModule{original: original, copies: &moduleDict{}}
}

// Original returns the wrapped module of the base model.
func (s *savedModule) Original() nn.Module { return s.original }

// Children returns "original_module" and "modules_to_save".
func (s *savedModule) Children() []nn.Child {
	return []nn.Child{{Name: "original_module", Module: s.original}, {Name: "modules_to_save", Module: s.copies}}
}

// Params returns nil: the wrapper owns no tensor itself.
func (s *savedModule) Params() []nn.Param { return nil }

// SetChild refuses: the wrapper's children are managed by the peft package.
func (s *savedModule) SetChild(name string, m nn.Module) error {
	return fmt.Errorf("peft: modules_to_save wrapper: cannot replace child %q", name)
}

// current returns the module Forward runs.
func (s *savedModule) current() nn.Module {
	if s.disabled || s.active == "" {
		return s.original
	}
	if c := s.copies.get(s.active); c != nil {
		return c
	}
	return s.original
}

// Forward runs the current module; it must be an nn.Layer (the parent calls
// Forward only if the original was one).
func (s *savedModule) Forward(x *nn.Tensor) *nn.Tensor {
	l, ok := s.current().(nn.Layer)
	if !ok {
		panic(fmt.Sprintf("peft: modules_to_save wrapper: %T has no Forward", s.current()))
	}
	return l.Forward(x)
}

// LookupChecked runs the current module's embedding lookup (for models that
// hold an embedding as a models.Embedder).
func (s *savedModule) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	e, ok := s.current().(interface {
		LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error)
	})
	if !ok {
		return nil, fmt.Errorf("peft: modules_to_save wrapper: %T is not an embedding", s.current())
	}
	return e.LookupChecked(ids, shape...)
}

// add makes the copy for adapter.
func (s *savedModule) add(adapter string) error {
	if s.copies.get(adapter) != nil {
		return nil
	}
	c, err := nn.CloneModule(s.original)
	if err != nil {
		return err
	}
	s.copies.set(adapter, c)
	return nil
}

// moduleDict is a module whose children are named by adapter.
type moduleDict struct {
	names []string
	mods  map[string]nn.Module
}

func (d *moduleDict) get(name string) nn.Module { return d.mods[name] }

func (d *moduleDict) set(name string, m nn.Module) {
	if d.mods == nil {
		d.mods = map[string]nn.Module{}
	}
	if _, ok := d.mods[name]; !ok {
		d.names = append(d.names, name)
	}
	d.mods[name] = m
}

func (d *moduleDict) remove(name string) {
	if _, ok := d.mods[name]; !ok {
		return
	}
	delete(d.mods, name)
	for i, n := range d.names {
		if n == name {
			d.names = append(d.names[:i:i], d.names[i+1:]...)
			break
		}
	}
}

// Children returns the modules in insertion order.
func (d *moduleDict) Children() []nn.Child {
	out := make([]nn.Child, len(d.names))
	for i, n := range d.names {
		out[i] = nn.Child{Name: n, Module: d.mods[n]}
	}
	return out
}

// Params returns nil.
func (d *moduleDict) Params() []nn.Param { return nil }

// SetChild replaces an existing entry.
func (d *moduleDict) SetChild(name string, m nn.Module) error {
	if _, ok := d.mods[name]; !ok {
		return fmt.Errorf("peft: no module %q", name)
	}
	d.mods[name] = m
	return nil
}

// Cloner is implemented by modules that can deep-copy themselves (new
// tensors, same values). modules_to_save needs it for module types that
// nn.CloneModule does not know. It is nn.Cloner.
type Cloner = nn.Cloner
