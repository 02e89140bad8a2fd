package nn

import (
	"fmt"
	"strconv"
)

// indexName parses a container child name "0", "1", ... against n children.
func indexName(name string, n int) (int, error) {
	i, err := strconv.Atoi(name)
	if err != nil || i < 0 || i >= n || strconv.Itoa(i) != name {
		return 0, fmt.Errorf("nn: no child %q (have 0..%d)", name, n-1)
	}
	return i, nil
}

// Sequential applies its layers in order (torch.nn.Sequential); children are
// named "0", "1", ...
type Sequential struct {
	Layers []Layer
}

// NewSequential returns a Sequential of layers.
func NewSequential(layers ...Layer) *Sequential { return &Sequential{Layers: layers} }

// Forward feeds x through every layer in turn.
func (s *Sequential) Forward(x *Tensor) *Tensor {
	for _, l := range s.Layers {
		x = l.Forward(x)
	}
	return x
}

// Children returns the layers named by position.
func (s *Sequential) Children() []Child {
	cs := make([]Child, len(s.Layers))
	for i, l := range s.Layers {
		cs[i] = Child{Name: strconv.Itoa(i), Module: l}
	}
	return cs
}

// Params returns nil: a Sequential owns no parameters itself.
func (s *Sequential) Params() []Param { return nil }

// SetChild replaces layer name ("0", "1", ...); m must be a Layer.
func (s *Sequential) SetChild(name string, m Module) error {
	i, err := indexName(name, len(s.Layers))
	if err != nil {
		return err
	}
	l, ok := m.(Layer)
	if !ok {
		return fmt.Errorf("nn: Sequential child %q: %T is not a Layer", name, m)
	}
	s.Layers[i] = l
	return nil
}

// ModuleList is an indexed list of modules (torch.nn.ModuleList); children
// are named "0", "1", ...
type ModuleList struct {
	Items []Module
}

// NewModuleList returns a ModuleList of ms.
func NewModuleList(ms ...Module) *ModuleList { return &ModuleList{Items: ms} }

// Append adds m at the end.
func (l *ModuleList) Append(m Module) { l.Items = append(l.Items, m) }

// Len returns the number of modules.
func (l *ModuleList) Len() int { return len(l.Items) }

// At returns module i.
func (l *ModuleList) At(i int) Module { return l.Items[i] }

// Children returns the modules named by position.
func (l *ModuleList) Children() []Child {
	cs := make([]Child, len(l.Items))
	for i, m := range l.Items {
		cs[i] = Child{Name: strconv.Itoa(i), Module: m}
	}
	return cs
}

// Params returns nil: a ModuleList owns no parameters itself.
func (l *ModuleList) Params() []Param { return nil }

// SetChild replaces module name ("0", "1", ...).
func (l *ModuleList) SetChild(name string, m Module) error {
	i, err := indexName(name, len(l.Items))
	if err != nil {
		return err
	}
	l.Items[i] = m
	return nil
}

// Dict is a container of named modules kept in insertion order
// (torch.nn.ModuleDict), and the usual way to build a model tree: a model
// struct can embed a Dict and register its sub-modules by their HuggingFace
// names. It may also hold parameters of its own.
type Dict struct {
	names   []string
	modules map[string]Module
	params  []Param
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{modules: map[string]Module{}} }

// Add appends a child called name, or replaces the child of that name in
// place. It returns m. Names must be non-empty and free of dots.
func (d *Dict) Add(name string, m Module) Module {
	if name == "" || containsDot(name) {
		panic(fmt.Sprintf("nn: Dict child name %q must be non-empty and contain no dot", name))
	}
	if d.modules == nil {
		d.modules = map[string]Module{}
	}
	if _, ok := d.modules[name]; !ok {
		d.names = append(d.names, name)
	}
	d.modules[name] = m
	return m
}

// AddParam registers a parameter owned by the Dict itself, or replaces the
// one of that name.
func (d *Dict) AddParam(name string, t *Tensor) {
	for i := range d.params {
		if d.params[i].Name == name {
			d.params[i].T = t
			return
		}
	}
	d.params = append(d.params, Param{Name: name, T: t})
}

// Get returns the child called name, or nil.
func (d *Dict) Get(name string) Module { return d.modules[name] }

// Names returns the children's names in insertion order.
func (d *Dict) Names() []string { return append([]string(nil), d.names...) }

// Delete removes the child called name, if any.
func (d *Dict) Delete(name string) {
	if _, ok := d.modules[name]; !ok {
		return
	}
	delete(d.modules, name)
	for i, n := range d.names {
		if n == name {
			d.names = append(d.names[:i:i], d.names[i+1:]...)
			break
		}
	}
}

// Len returns the number of children.
func (d *Dict) Len() int { return len(d.names) }

// Children returns the children in insertion order.
func (d *Dict) Children() []Child {
	cs := make([]Child, len(d.names))
	for i, n := range d.names {
		cs[i] = Child{Name: n, Module: d.modules[n]}
	}
	return cs
}

// Params returns the parameters added with AddParam.
func (d *Dict) Params() []Param { return append([]Param(nil), d.params...) }

// SetChild replaces the existing child called name.
func (d *Dict) SetChild(name string, m Module) error {
	if _, ok := d.modules[name]; !ok {
		return fmt.Errorf("nn: no child %q", name)
	}
	d.modules[name] = m
	return nil
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}
