package nn

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Module is a node of a model tree: it owns parameters and named
// sub-modules, like torch.nn.Module. Paths through the tree are
// HuggingFace's dotted names ("model.layers.0.self_attn.q_proj").
type Module interface {
	// Children returns the direct sub-modules in a fixed order.
	Children() []Child
	// Params returns the module's own parameters (not its children's), in a
	// fixed order, named as in PyTorch ("weight", "bias").
	Params() []Param
	// SetChild replaces the direct child called name (adapter injection
	// uses it). It returns an error when there is no such child or m is not
	// acceptable there.
	SetChild(name string, m Module) error
}

// Layer is a module that maps one tensor to another.
type Layer interface {
	Module
	// Forward applies the layer to x.
	Forward(x *Tensor) *Tensor
}

// Trainable is implemented by modules that behave differently in training
// and evaluation (Dropout). SetTraining switches a whole tree.
type Trainable interface {
	SetTraining(on bool)
}

// Buffered is implemented by modules holding tensors that belong in the
// state dict but are not trained (PyTorch's persistent buffers).
type Buffered interface {
	Buffers() []Param
}

// Child is a named sub-module.
type Child struct {
	Name   string
	Module Module
}

// Param is a named tensor: a parameter of a module, or an entry of a state
// dict with its full dotted name.
type Param struct {
	Name string
	T    *Tensor
}

// leaf provides Children and SetChild for modules without sub-modules.
type leaf struct{}

// Children returns nil: the module has no sub-modules.
func (leaf) Children() []Child { return nil }

// SetChild fails: the module has no sub-modules.
func (leaf) SetChild(name string, _ Module) error {
	return fmt.Errorf("nn: module has no child %q", name)
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// ErrSkipChildren, returned by a Walk callback, skips the sub-modules of the
// module it was called with.
var ErrSkipChildren = errors.New("nn: skip children")

// Walk calls fn for root (path "") and every module below it, parents
// before children, children in order, with their dotted paths. An error
// from fn stops the walk and is returned, except ErrSkipChildren, which only
// skips that module's sub-modules. A module reachable along two paths is
// visited on each.
func Walk(root Module, fn func(path string, m Module) error) error {
	return walk("", root, fn)
}

func walk(path string, m Module, fn func(string, Module) error) error {
	if err := fn(path, m); err != nil {
		if err == ErrSkipChildren {
			return nil
		}
		return err
	}
	for _, c := range m.Children() {
		if c.Module == nil {
			continue
		}
		if err := walk(joinPath(path, c.Name), c.Module, fn); err != nil {
			return err
		}
	}
	return nil
}

// GetModule returns the module at a dotted path below root ("" is root).
func GetModule(root Module, path string) (Module, error) {
	m := root
	if path == "" {
		return m, nil
	}
	for _, name := range strings.Split(path, ".") {
		var next Module
		for _, c := range m.Children() {
			if c.Name == name {
				next = c.Module
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("nn: no module %q (at %q)", path, name)
		}
		m = next
	}
	return m, nil
}

// ReplaceModule replaces the module at a dotted path below root with m,
// through its parent's SetChild. Not safe while the tree is in use.
func ReplaceModule(root Module, path string, m Module) error {
	if path == "" {
		return errors.New("nn: cannot replace the root module")
	}
	parentPath, name := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parentPath, name = path[:i], path[i+1:]
	}
	parent, err := GetModule(root, parentPath)
	if err != nil {
		return err
	}
	if err := parent.SetChild(name, m); err != nil {
		return fmt.Errorf("nn: replace %q: %w", path, err)
	}
	return nil
}

// NamedParameters returns every parameter below root with its full dotted
// name, each module's own parameters before its children's. A tensor shared
// by several modules (tied weights) is listed once, under its first name,
// as PyTorch's named_parameters does.
func NamedParameters(root Module) []Param {
	var out []Param
	seen := map[*Tensor]bool{}
	_ = Walk(root, func(path string, m Module) error {
		for _, p := range m.Params() {
			if p.T == nil || seen[p.T] {
				continue
			}
			seen[p.T] = true
			out = append(out, Param{Name: joinPath(path, p.Name), T: p.T})
		}
		return nil
	})
	return out
}

// Parameters returns the tensors of NamedParameters.
func Parameters(root Module) []*Tensor {
	ps := NamedParameters(root)
	out := make([]*Tensor, len(ps))
	for i, p := range ps {
		out[i] = p.T
	}
	return out
}

// TrainableParameters returns the parameters below root that require
// gradients, with their dotted names.
func TrainableParameters(root Module) []Param {
	var out []Param
	for _, p := range NamedParameters(root) {
		if p.T.requiresGrad {
			out = append(out, p)
		}
	}
	return out
}

// namedState lists every state-dict entry (parameters and buffers) with its
// dotted name, shared tensors under each name, in tree order.
func namedState(root Module) []Param {
	var out []Param
	_ = Walk(root, func(path string, m Module) error {
		for _, p := range m.Params() {
			if p.T != nil {
				out = append(out, Param{Name: joinPath(path, p.Name), T: p.T})
			}
		}
		if b, ok := m.(Buffered); ok {
			for _, p := range b.Buffers() {
				if p.T != nil {
					out = append(out, Param{Name: joinPath(path, p.Name), T: p.T})
				}
			}
		}
		return nil
	})
	return out
}

// StateDict maps the dotted name of every parameter and buffer below root
// to its tensor (shared, not copied). Tied tensors appear under every name.
func StateDict(root Module) map[string]*Tensor {
	sd := map[string]*Tensor{}
	for _, p := range namedState(root) {
		sd[p.Name] = p.T
	}
	return sd
}

// StateDictKeys returns the state dict's names in tree order.
func StateDictKeys(root Module) []string {
	ps := namedState(root)
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

// ShapeMismatch is a state-dict entry whose shape disagrees with the model.
type ShapeMismatch struct {
	Key         string
	Model, Dict []int
}

// StateDictError reports every problem LoadStateDict found; nothing was
// loaded. Each list is sorted by key.
type StateDictError struct {
	Missing    []string // in the model, not in the dict (strict loads only)
	Unexpected []string // in the dict, not in the model (strict loads only)
	Mismatched []ShapeMismatch
}

// Error names every offending key.
func (e *StateDictError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("missing keys: %s", strings.Join(e.Missing, ", ")))
	}
	if len(e.Unexpected) > 0 {
		parts = append(parts, fmt.Sprintf("unexpected keys: %s", strings.Join(e.Unexpected, ", ")))
	}
	if len(e.Mismatched) > 0 {
		ms := make([]string, len(e.Mismatched))
		for i, m := range e.Mismatched {
			ms[i] = fmt.Sprintf("%s (model %v, state dict %v)", m.Key, m.Model, m.Dict)
		}
		parts = append(parts, "shape mismatch: "+strings.Join(ms, ", "))
	}
	return "nn: load state dict: " + strings.Join(parts, "; ")
}

// LoadStateDict copies the tensors of sd into the parameters and buffers of
// root with the same dotted names (CopyFrom: in place, any backend). Shapes
// must match exactly. With strict set, every model entry must be present and
// every dict entry used. All problems are collected first and returned as
// one *StateDictError, in which case nothing is copied. Not safe while the
// model is in use.
func LoadStateDict(root Module, sd map[string]*Tensor, strict bool) error {
	state := namedState(root)
	e := &StateDictError{}
	used := map[string]bool{}
	for _, p := range state {
		src, ok := sd[p.Name]
		if !ok {
			if strict {
				e.Missing = append(e.Missing, p.Name)
			}
			continue
		}
		used[p.Name] = true
		if src == nil || !slices.Equal(src.shape, p.T.shape) {
			var have []int
			if src != nil {
				have = slices.Clone(src.shape)
			}
			e.Mismatched = append(e.Mismatched, ShapeMismatch{Key: p.Name, Model: slices.Clone(p.T.shape), Dict: have})
		}
	}
	if strict {
		for k := range sd {
			if !used[k] {
				e.Unexpected = append(e.Unexpected, k)
			}
		}
	}
	if len(e.Missing)+len(e.Unexpected)+len(e.Mismatched) > 0 {
		sort.Strings(e.Missing)
		sort.Strings(e.Unexpected)
		sort.Slice(e.Mismatched, func(i, j int) bool { return e.Mismatched[i].Key < e.Mismatched[j].Key })
		return e
	}
	for _, p := range state {
		if src, ok := sd[p.Name]; ok && src != p.T {
			p.T.CopyFrom(src)
		}
	}
	return nil
}

// SetTraining switches every module below root that implements Trainable
// into training (on) or evaluation mode. Not safe while the model is in use.
func SetTraining(root Module, on bool) {
	_ = Walk(root, func(_ string, m Module) error {
		if t, ok := m.(Trainable); ok {
			t.SetTraining(on)
		}
		return nil
	})
}

// SetRequiresGrad marks every parameter below root as trainable or frozen.
func SetRequiresGrad(root Module, on bool) {
	for _, p := range NamedParameters(root) {
		p.T.SetRequiresGrad(on)
	}
}

// ZeroGrad drops the gradients of every parameter below root.
func ZeroGrad(root Module) {
	for _, p := range NamedParameters(root) {
		p.T.ZeroGrad()
	}
}

// NumParams returns the number of parameter elements below root, and how
// many of them require gradients.
func NumParams(root Module) (total, trainable int) {
	for _, p := range NamedParameters(root) {
		total += p.T.Len()
		if p.T.requiresGrad {
			trainable += p.T.Len()
		}
	}
	return total, trainable
}
