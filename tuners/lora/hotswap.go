package lora

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/gopeft/gopeft/nn"
)

// RankAlpha returns the rank r and lora_alpha the config gives the module
// at path: the rank_pattern / alpha_pattern entry whose pattern matches the
// path (PEFT's get_pattern_key rule), else R and Alpha.
func (c *Config) RankAlpha(path string) (int, float64, error) { return c.rankAlpha(path) }

// HostTensor is an adapter tensor read from a file: row-major float32 data
// and its shape.
type HostTensor struct {
	Data  []float32
	Shape []int
}

// rankAxis returns the axis of a saved tensor that runs over the rank (0
// for A, 1 for B), or -1 for tensors whose shape does not depend on it.
func rankAxis(fragment string) int {
	switch fragment {
	case "lora_A.weight", "lora_embedding_A":
		return 0
	case "lora_B.weight", "lora_embedding_B":
		return 1
	}
	return -1
}

// paddable reports whether adapter a's factors can hold a zero-padded
// smaller rank (dense factors, no grouped convolution).
func (c *core) paddable(a *adapter) error {
	if a.bdA > 0 || a.bdB > 0 {
		return fmt.Errorf("block-diagonal (BD-LoRA) factors cannot change rank")
	}
	if c.kind.isConv() && groups(c.conv) > 1 {
		return fmt.Errorf("a grouped %s cannot change rank", c.kind)
	}
	return nil
}

// CheckHotSwap reports whether HotSwap(name, params, r, alpha) would
// succeed, without changing anything. The error names the offending key
// fragment.
func (c *core) CheckHotSwap(name string, params map[string]HostTensor) error {
	a, ok := c.adapters[name]
	if !ok {
		return fmt.Errorf("no adapter %q", name)
	}
	if slices.Contains(c.merged, name) {
		return fmt.Errorf("adapter %q is merged: unmerge it before hot-swapping", name)
	}
	live := map[string]*nn.Tensor{}
	for _, p := range c.AdapterParams(name) {
		live[p.Name] = p.T
	}
	// Sorted, so that the first bad tensor reported is the same every run.
	for _, frag := range slices.Sorted(maps.Keys(params)) {
		h := params[frag]
		t, ok := live[frag]
		if !ok {
			return fmt.Errorf("%s: adapter %q has no such tensor here", frag, name)
		}
		if shapeLen(h.Shape) != len(h.Data) {
			return fmt.Errorf("%s: %d values for shape %v", frag, len(h.Data), h.Shape)
		}
		old := t.Shape()
		if slices.Equal(old, h.Shape) {
			continue
		}
		ax := rankAxis(frag)
		if ax < 0 || len(old) != len(h.Shape) || h.Shape[ax] > old[ax] {
			return fmt.Errorf("%s: shape %v cannot be swapped into %v (a larger rank needs PrepareHotSwap with a larger target rank)", frag, h.Shape, old)
		}
		for i := range old {
			if i != ax && old[i] != h.Shape[i] {
				return fmt.Errorf("%s: shape %v does not fit %v", frag, h.Shape, old)
			}
		}
		if err := c.paddable(a); err != nil {
			return fmt.Errorf("%s: %w", frag, err)
		}
	}
	return nil
}

// HotSwap replaces adapter name's tensors in place with params (keyed by
// saved fragment, as AdapterParams names them), PEFT's hotswap_adapter on
// one layer: a tensor of the same shape is copied in; a factor of a smaller
// rank fills the leading rows of A (columns of B) and zeros the rest, which
// leaves the product B A equal to the smaller adapter's; a tensor missing
// from params is zeroed. When r > 0 the scaling becomes that of rank r and
// lora_alpha alpha (alpha/r or alpha/sqrt(r)); r == 0 keeps it. The layer,
// its adapter and its tensors stay the same objects.
//
// Like every mutation it is not safe while a Forward runs on the layer.
func (c *core) HotSwap(name string, params map[string]HostTensor, r int, alpha float64) error {
	if err := c.CheckHotSwap(name, params); err != nil {
		return err
	}
	a := c.adapters[name]
	for _, p := range c.AdapterParams(name) {
		h, ok := params[p.Name]
		if !ok {
			p.T.CopyFrom(nn.Zeros(p.T.Backend(), p.T.Shape()...))
			continue
		}
		old := p.T.Shape()
		if slices.Equal(old, h.Shape) {
			p.T.CopyFromHost(h.Data)
			continue
		}
		p.T.CopyFrom(padAxis(nn.New(p.T.Backend(), h.Data, h.Shape...), rankAxis(p.Name), old[rankAxis(p.Name)]))
	}
	if r > 0 {
		// The factors keep their width a.r; alpha is stored for that width
		// so that SetScale's recomputation gives the new adapter's scaling.
		a.scale = scaling(alpha, r, a.rslora)
		a.alpha = alphaFor(a.scale, a.r, a.rslora)
	}
	return nil
}

// PadRank zero-pads adapter name's factors to rank target (PEFT's
// prepare_model_for_compiled_hotswap with target_rank): A gets zero rows,
// B zero columns, so B A, the scaling and every output are unchanged, and a
// later HotSwap of any rank up to target fits in place. The adapter's A and
// B become new tensors of the wider shape (the layer stays the same
// object); Rank then reports target. A rank already equal to target is left
// alone; a larger one is an error.
//
// Not safe while a Forward runs on the layer.
func (c *core) PadRank(name string, target int) error {
	a, ok := c.adapters[name]
	if !ok {
		return fmt.Errorf("no adapter %q", name)
	}
	if a.r == target {
		return nil
	}
	if a.r > target {
		return fmt.Errorf("adapter %q has rank %d, larger than the target rank %d", name, a.r, target)
	}
	if slices.Contains(c.merged, name) {
		return fmt.Errorf("adapter %q is merged: unmerge it before padding its rank", name)
	}
	if err := c.paddable(a); err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	grad := a.a.RequiresGrad()
	a.a = padAxis(a.a.Detach(), 0, target).SetRequiresGrad(grad)
	grad = a.b.RequiresGrad()
	a.b = padAxis(a.b.Detach(), 1, target).SetRequiresGrad(grad)
	a.r = target
	a.alpha = alphaFor(a.scale, target, a.rslora)
	return nil
}

// alphaFor returns the lora_alpha that gives scale at rank r.
func alphaFor(scale float64, r int, rslora bool) float64 {
	if rslora {
		return scale * math.Sqrt(float64(r))
	}
	return scale * float64(r)
}

// padAxis returns t extended with zeros along axis to size n (a new
// tensor; t itself when it already has that size).
func padAxis(t *nn.Tensor, axis, n int) *nn.Tensor {
	shape := t.Shape()
	if shape[axis] == n {
		return t
	}
	shape[axis] = n - shape[axis]
	return nn.Concat(axis, t, nn.Zeros(t.Backend(), shape...))
}

// shapeLen is the element count of shape.
func shapeLen(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
