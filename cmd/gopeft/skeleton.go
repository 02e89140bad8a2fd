package main

import (
	"fmt"
	"strings"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// skelNode is a module tree rebuilt from tensor names alone (HF dotted
// paths), holding the layers adapters wrap: Linear for 2-D weights,
// Embedding for embedding tables, RMSNorm for 1-D norm weights. Merging runs
// on it one shard at a time, without the architecture's code.
type skelNode struct {
	names     []string
	kids      map[string]nn.Module
	modelType string
}

func newSkelNode() *skelNode { return &skelNode{kids: map[string]nn.Module{}} }

// Children returns the children in the order they were added.
func (s *skelNode) Children() []nn.Child {
	out := make([]nn.Child, len(s.names))
	for i, n := range s.names {
		out[i] = nn.Child{Name: n, Module: s.kids[n]}
	}
	return out
}

// Params returns nil: parameters live in the leaves.
func (s *skelNode) Params() []nn.Param { return nil }

// SetChild replaces an existing child.
func (s *skelNode) SetChild(name string, m nn.Module) error {
	if _, ok := s.kids[name]; !ok {
		return fmt.Errorf("no child %q", name)
	}
	s.kids[name] = m
	return nil
}

// ModelType returns config.json's model_type (default target modules).
func (s *skelNode) ModelType() string { return s.modelType }

// OutputLayer returns "lm_head", which "all-linear" leaves out.
func (s *skelNode) OutputLayer() string { return "lm_head" }

func (s *skelNode) add(name string, m nn.Module) {
	s.names = append(s.names, name)
	s.kids[name] = m
}

// node returns the module at path, creating inner nodes.
func (s *skelNode) node(path []string) (*skelNode, error) {
	cur := s
	for _, p := range path {
		next, ok := cur.kids[p]
		if !ok {
			n := newSkelNode()
			cur.add(p, n)
			cur = n
			continue
		}
		sn, ok := next.(*skelNode)
		if !ok {
			return nil, fmt.Errorf("module %s is both a layer and a container", strings.Join(path, "."))
		}
		cur = sn
	}
	return cur, nil
}

// buildSkeleton makes the module tree of one shard's float tensors: the
// modules for which keep returns true hold their weights (mapped or
// converted), the others are left out; a nil keep puts every module in the
// tree with a 1x1 placeholder weight (enough to match target names). It
// returns the root and the set of tensor names whose data is in the tree.
func buildSkeleton(f *safetensors.File, names []string, modelType string, keep func(path string) bool) (*skelNode, map[string]bool, error) {
	root := newSkelNode()
	root.modelType = modelType
	inTree := map[string]bool{}
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	for _, n := range names {
		info, _ := f.Info(n)
		mod, ok := strings.CutSuffix(n, ".weight")
		if !ok || !safetensors.IsFloat(info.DType) {
			continue
		}
		parts := strings.Split(mod, ".")
		last := parts[len(parts)-1]
		if keep != nil && !keep(mod) {
			continue
		}
		var layer nn.Module
		load := func(name string) (*nn.Tensor, error) {
			if keep == nil {
				return nn.FromHost([]float32{0}, 1, 1), nil
			}
			data, err := f.Float32(name)
			if err != nil {
				return nil, err
			}
			i, _ := f.Info(name)
			inTree[name] = true
			return nn.FromHost(data, i.Shape...), nil
		}
		switch {
		case len(info.Shape) == 2 && embeddingNames[last]:
			w, err := load(n)
			if err != nil {
				return nil, nil, err
			}
			layer = &nn.Embedding{Weight: w}
		case len(info.Shape) == 2:
			w, err := load(n)
			if err != nil {
				return nil, nil, err
			}
			lin := &nn.Linear{Weight: w}
			if has[mod+".bias"] {
				if lin.Bias, err = load(mod + ".bias"); err != nil {
					return nil, nil, err
				}
			}
			layer = lin
		case len(info.Shape) == 1 && strings.Contains(last, "norm"):
			w, err := load(n)
			if err != nil {
				return nil, nil, err
			}
			if keep == nil {
				w = nn.FromHost([]float32{0}, 1)
			}
			layer = &nn.RMSNorm{Weight: w, Eps: 1e-6}
		default:
			continue
		}
		parent, err := root.node(parts[:len(parts)-1])
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.Path(), err)
		}
		if _, dup := parent.kids[last]; dup {
			return nil, nil, fmt.Errorf("%s: module %s appears twice", f.Path(), mod)
		}
		parent.add(last, layer)
	}
	return root, inTree, nil
}

// selectedModules returns the module paths of root that cfg adapts, or
// excludes (modules_to_save copies are among those), by PEFT's matching rules
// (default targets of the model type and "all-linear" resolved on root).
func selectedModules(root *skelNode, cfg tuners.Config) (map[string]bool, error) {
	tcfg, ok := cfg.(tuners.TargetedConfig)
	if !ok {
		return nil, fmt.Errorf("%s adapters adapt no modules", cfg.Base().PeftType)
	}
	tc := *tcfg.Targeting()
	if err := tuners.ResolveTargets(root, cfg.Base().PeftType, &tc); err != nil {
		return nil, err
	}
	matcher, err := tuners.NewMatcher(&tc)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	err = tuners.WalkTargets(root, func(n tuners.Node) error {
		if n.Path != "" && matcher.Match(n.Path) != tuners.Unmatched {
			out[n.Path] = true
		}
		return nil
	})
	return out, err
}
