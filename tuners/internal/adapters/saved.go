package adapters

import "github.com/gopeft/gopeft/nn"

// Saved describes the per-adapter tensors of a layer whose trained state is
// a fixed list of tensors per adapter: their PEFT names (for example
// "vera_lambda_b") and how to read them from the adapter state A. It gives
// the AdapterParams, SetTrainable and Children methods such layers share.
type Saved[A any] struct {
	// Names are the tensors' saved names, in the order Tensors returns them.
	Names []string
	// Tensors returns an adapter's tensors, one per name.
	Tensors func(A) []*nn.Tensor
}

// Params returns adapter's tensors under their saved names, or nil if s
// does not hold it.
func (v Saved[A]) Params(s *Set[A], adapter string) []nn.Param {
	a, ok := s.Get(adapter)
	if !ok {
		return nil
	}
	ts := v.Tensors(a)
	out := make([]nn.Param, len(v.Names))
	for i, n := range v.Names {
		out[i] = nn.Param{Name: n, T: ts[i]}
	}
	return out
}

// SetTrainable makes adapter's tensors require gradients or not; it does
// nothing if s does not hold adapter.
func (v Saved[A]) SetTrainable(s *Set[A], adapter string, on bool) {
	if a, ok := s.Get(adapter); ok {
		for _, t := range v.Tensors(a) {
			t.SetRequiresGrad(on)
		}
	}
}

// Children returns base as "base_layer" followed by one ParamDict per
// saved name, which holds that tensor of every adapter under the adapter's
// name, in creation order: PEFT's live module layout.
func (v Saved[A]) Children(s *Set[A], base nn.Module) []nn.Child {
	dicts := make([]*ParamDict, len(v.Names))
	for i := range dicts {
		dicts[i] = &ParamDict{}
	}
	for _, n := range s.Adapters() {
		a, _ := s.Get(n)
		for i, t := range v.Tensors(a) {
			dicts[i].Entries = append(dicts[i].Entries, nn.Param{Name: n, T: t})
		}
	}
	out := []nn.Child{{Name: "base_layer", Module: base}}
	for i, n := range v.Names {
		out = append(out, nn.Child{Name: n, Module: dicts[i]})
	}
	return out
}
