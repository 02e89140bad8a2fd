package trainabletokens

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// adapter is one named set of trained rows.
type adapter struct {
	// idx are the token ids (token_indices), in config order.
	idx []int32
	// delta holds the trained rows themselves [len(idx), dim] (PEFT's
	// trainable_tokens_delta: despite the name, the new values, not a
	// difference).
	delta *nn.Tensor
	// original holds the rows of the base matrix when the adapter was
	// created (PEFT's trainable_tokens_original), restored by Unmerge.
	original *nn.Tensor
}

// Layer is an nn.Embedding (or an nn.Linear whose weight rows are tokens,
// such as an LM head tied to the embedding) whose rows token_indices are
// replaced by trained vectors: Lookup (or Forward) computes with the base
// matrix where the active adapters' rows are swapped in. Only those rows
// are trained and saved.
//
// A tied layer wraps a module sharing the embedding's weight tensor (a
// tied LM head): it holds nothing of its own and follows the adapters of
// the embedding's layer, as PEFT's tied TrainableTokensLayer does.
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward and Lookup in evaluation mode are.
type Layer struct {
	base         nn.Module
	embedding    bool // base is an *nn.Embedding (else an *nn.Linear)
	weight, bias *nn.Tensor
	rows, dim    int

	adapters map[string]*adapter
	names    []string
	tiedTo   *Layer // the embedding's layer, for a tied layer
	active   []string
	merged   []string
	disabled bool
}

var (
	_ tuners.Layer         = (*Layer)(nil)
	_ tuners.Bufferer      = (*Layer)(nil)
	_ tuners.ActiveChecker = (*Layer)(nil)
	_ nn.Layer             = (*Layer)(nil)
)

// newLayer inspects a base module.
func newLayer(base nn.Module) (*Layer, error) {
	l := &Layer{base: base, adapters: map[string]*adapter{}}
	switch m := base.(type) {
	case *nn.Embedding:
		l.embedding, l.weight = true, m.Weight
	case *nn.Linear:
		l.weight, l.bias = m.Weight, m.Bias
	default:
		return nil, fmt.Errorf("trainabletokens: cannot adapt a %T: trainable tokens supports Embedding (and Linear layers tied to one)", base)
	}
	l.rows, l.dim = l.weight.Dim(0), l.weight.Dim(1)
	return l, nil
}

// owner returns the layer whose adapters this one applies: itself, or the
// embedding's layer for a tied layer.
func (l *Layer) owner() *Layer {
	if l.tiedTo != nil {
		return l.tiedTo
	}
	return l
}

// Tied reports whether the layer follows another layer's adapters (a tied
// LM head).
func (l *Layer) Tied() bool { return l.tiedTo != nil }

// addAdapter creates adapter name over the rows ids: the trained rows start
// as the current rows (init) or as N(0, 1) draws from rng. Not safe for
// concurrent use.
func (l *Layer) addAdapter(name string, ids []int, init bool, rng *nn.RNG, trainable bool) error {
	if l.tiedTo != nil {
		return fmt.Errorf("trainabletokens: adapter %q: a tied layer follows the embedding's adapters", name)
	}
	if _, ok := l.adapters[name]; ok {
		return fmt.Errorf("trainabletokens: adapter %q already exists on this layer", name)
	}
	a := &adapter{idx: make([]int32, len(ids))}
	for i, id := range ids {
		if id < 0 || id >= l.rows {
			return fmt.Errorf("trainabletokens: adapter %q: token_indices[%d] = %d is outside the %d rows of the embedding", name, i, id, l.rows)
		}
		a.idx[i] = int32(id)
	}
	a.original = nn.Index(l.weight.Detach(), 0, a.idx)
	if init {
		a.delta = a.original.Clone()
	} else {
		a.delta = nn.Normal(l.weight.Backend(), rng, 0, 1, len(ids), l.dim)
	}
	a.delta.SetRequiresGrad(trainable)
	l.adapters[name] = a
	l.names = append(l.names, name)
	return nil
}

// applied returns the adapters Forward swaps in, in order (later ones win
// on a shared row; CheckActive refuses that through the peft package).
func (l *Layer) applied() []*adapter {
	if l.disabled || len(l.merged) > 0 {
		return nil
	}
	o := l.owner()
	var out []*adapter
	for _, n := range l.active {
		if a, ok := o.adapters[n]; ok {
			out = append(out, a)
		}
	}
	return out
}

// rowTable returns the trained rows of as stacked [sum k, dim] and, for
// every replaced token, its row there.
func rowTable(as []*adapter) (*nn.Tensor, map[int32]int32) {
	var parts []*nn.Tensor
	at := map[int32]int32{}
	off := int32(0)
	for _, a := range as {
		for j, id := range a.idx {
			at[id] = off + int32(j)
		}
		off += int32(len(a.idx))
		parts = append(parts, a.delta)
	}
	if len(parts) == 1 {
		return parts[0], at
	}
	return nn.Concat(0, parts...), at
}

// Lookup returns the embeddings of ids (shaped shape + [dim]) with the
// active adapters' rows swapped in. Only the rows the ids use are
// gathered: no copy of the whole matrix. ids must lie in [0, rows);
// LookupChecked validates them.
func (l *Layer) Lookup(ids []int32, shape ...int) *nn.Tensor {
	as := l.applied()
	if len(as) == 0 || len(ids) == 0 {
		return nn.EmbeddingOp(l.weight, ids, shape...)
	}
	deltas, at := rowTable(as)
	if !slices.ContainsFunc(ids, func(id int32) bool { _, ok := at[id]; return ok }) {
		return nn.EmbeddingOp(l.weight, ids, shape...)
	}
	// Table = [base rows the ids use ; trained rows]; remap every id into it.
	var baseIDs []int32
	slot := map[int32]int32{}
	remap := make([]int32, len(ids))
	for i, id := range ids {
		if j, ok := at[id]; ok {
			remap[i] = -1 - j
			continue
		}
		s, ok := slot[id]
		if !ok {
			s = int32(len(baseIDs))
			slot[id] = s
			baseIDs = append(baseIDs, id)
		}
		remap[i] = s
	}
	table := deltas
	if len(baseIDs) > 0 {
		table = nn.Concat(0, nn.Index(l.weight, 0, baseIDs), deltas)
	}
	nb := int32(len(baseIDs))
	for i, r := range remap {
		if r < 0 {
			remap[i] = nb + (-1 - r)
		}
	}
	out := nn.Index(table, 0, remap)
	if len(shape) == 0 {
		shape = []int{len(ids)}
	}
	return out.Reshape(append(slices.Clone(shape), l.dim)...)
}

// LookupChecked is Lookup with the ids and shape validated; it returns an
// error instead of panicking on bad input.
func (l *Layer) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	if !l.embedding {
		return nil, fmt.Errorf("trainabletokens: the wrapped %T is not an embedding", l.base)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if len(shape) > 0 && n != len(ids) {
		return nil, fmt.Errorf("trainabletokens: embedding lookup: shape %v does not hold %d ids", shape, len(ids))
	}
	for i, id := range ids {
		if id < 0 || int(id) >= l.rows {
			return nil, fmt.Errorf("trainabletokens: embedding lookup: id %d at position %d is outside [0, %d)", id, i, l.rows)
		}
	}
	return l.Lookup(ids, shape...), nil
}

// Forward computes a wrapped Linear (a tied LM head) as if the active
// adapters' rows were swapped into its weight: x W'^T + b. It computes the
// base logits and the logits of the trained rows and picks, per output
// column, the one that applies: O(tokens x vocab) extra work instead of a
// copy of the whole weight (PEFT builds W'). For a wrapped Embedding use
// Lookup.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	if l.embedding {
		panic("trainabletokens: Forward on an embedding layer; call Lookup or LookupChecked")
	}
	base := l.base.(nn.Layer).Forward(x)
	as := l.applied()
	if len(as) == 0 {
		return base
	}
	deltas, at := rowTable(as)
	var bias *nn.Tensor
	if l.bias != nil {
		ids := make([]int32, deltas.Dim(0))
		for id, j := range at {
			ids[j] = id
		}
		bias = nn.Index(l.bias, 0, ids)
	}
	trained := nn.LinearOp(x, deltas, bias)
	colMap := make([]int32, l.rows)
	for v := range colMap {
		colMap[v] = int32(v)
		if j, ok := at[int32(v)]; ok {
			colMap[v] = int32(l.rows) + j
		}
	}
	last := base.Rank() - 1
	return nn.Index(nn.Concat(last, base, trained), last, colMap)
}

// CheckActive refuses active adapters of this layer whose token indices
// overlap (PEFT raises at forward time): which trained row a token gets
// would be undefined.
func (l *Layer) CheckActive(names []string) error {
	return l.checkOverlap(names, nil)
}

// checkOverlap returns an error naming an adapter whose rows overlap those
// of an adapter before it in names or in extra.
func (l *Layer) checkOverlap(names, extra []string) error {
	o := l.owner()
	seen := map[int32]string{}
	for _, n := range append(slices.Clone(extra), names...) {
		a, ok := o.adapters[n]
		if !ok {
			continue
		}
		for _, id := range a.idx {
			if prev, ok := seen[id]; ok && prev != n {
				return fmt.Errorf("trainabletokens: adapters %q and %q both train token %d: only disjoint token indices can be active or merged together", prev, n, id)
			}
			seen[id] = n
		}
	}
	return nil
}

// copyRows writes rows src[j] into the base weight's rows idx[j] in place,
// one copy kernel per row.
func (l *Layer) copyRows(idx []int32, src *nn.Tensor) {
	be := l.weight.Backend()
	w, s := l.weight.Buffer(), src.Detach().Buffer()
	for j, id := range idx {
		be.Copy(w.Slice(int(id)*l.dim, l.dim), s.Slice(j*l.dim, l.dim))
	}
}

// Merge writes the adapters' trained rows into the base matrix in place
// (the named adapters, or the active ones when names is nil); adapters
// already merged are skipped. Adapters whose token indices overlap each
// other or a merged adapter are refused. With safe set, trained rows
// holding NaN or Inf are refused before anything is written. A tied layer
// writes into the same tensor as its embedding, which changes nothing
// more. Not safe for concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	if names == nil {
		names = l.active
	}
	o := l.owner()
	var todo []string
	for _, n := range names {
		if _, ok := o.adapters[n]; ok && !slices.Contains(l.merged, n) && !slices.Contains(todo, n) {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := l.checkOverlap(todo, l.merged); err != nil {
		return err
	}
	if safe {
		for _, n := range todo {
			d := o.adapters[n].delta
			if d.Backend().CountNonFinite(d.Buffer()) > 0 {
				return fmt.Errorf("trainabletokens: adapter %q: trained rows contain NaN or Inf; the adapter seems broken, nothing was merged", n)
			}
		}
	}
	for _, n := range todo {
		a := o.adapters[n]
		l.copyRows(a.idx, a.delta)
		l.merged = append(l.merged, n)
	}
	return nil
}

// Unmerge writes the original rows back, the last merged adapter first. Not
// safe for concurrent use.
func (l *Layer) Unmerge() error {
	o := l.owner()
	for len(l.merged) > 0 {
		name := l.merged[len(l.merged)-1]
		if a, ok := o.adapters[name]; ok {
			l.copyRows(a.idx, a.original)
		}
		l.merged = l.merged[:len(l.merged)-1]
	}
	return nil
}

// Merged lists the adapters currently written into the base matrix.
func (l *Layer) Merged() []string { return slices.Clone(l.merged) }

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "TRAINABLE_TOKENS".
func (l *Layer) Method() string { return PeftType }

// Adapters lists the adapters in creation order (for a tied layer, those
// of the embedding's layer).
func (l *Layer) Adapters() []string { return slices.Clone(l.owner().names) }

// Active lists the active adapters this layer applies.
func (l *Layer) Active() []string {
	o := l.owner()
	var out []string
	for _, n := range l.active {
		if _, ok := o.adapters[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// SetActive selects the adapters whose rows are swapped in. Names the layer
// does not hold are ignored. Not safe for concurrent use.
func (l *Layer) SetActive(names []string) {
	o := l.owner()
	l.active = l.active[:0:0]
	for _, n := range names {
		if _, ok := o.adapters[n]; ok && !slices.Contains(l.active, n) {
			l.active = append(l.active, n)
		}
	}
}

// SetTrainable makes adapter's trained rows require gradients or not (a
// tied layer leaves that to the embedding's layer).
func (l *Layer) SetTrainable(adapter string, on bool) {
	if l.tiedTo != nil {
		return
	}
	if a, ok := l.adapters[adapter]; ok {
		a.delta.SetRequiresGrad(on)
	}
}

// SetDisabled turns the adapters off (the base matrix alone) or back on.
// Merged rows stay merged.
func (l *Layer) SetDisabled(disabled bool) { l.disabled = disabled }

// Disabled reports whether the adapters are turned off.
func (l *Layer) Disabled() bool { return l.disabled }

// Delete removes an adapter and its rows (a tied layer only stops applying
// it). It fails if the layer does not hold it or holds it merged. Not safe
// for concurrent use.
func (l *Layer) Delete(name string) error {
	o := l.owner()
	if _, ok := o.adapters[name]; !ok {
		return fmt.Errorf("trainabletokens: no adapter %q on this layer", name)
	}
	if slices.Contains(l.merged, name) {
		return fmt.Errorf("trainabletokens: adapter %q is merged; unmerge it before deleting it", name)
	}
	drop := func(n string) bool { return n == name }
	l.active = slices.DeleteFunc(l.active, drop)
	if l.tiedTo == nil {
		delete(l.adapters, name)
		l.names = slices.DeleteFunc(l.names, drop)
	}
	return nil
}

// AdapterParams returns adapter's trained rows under their saved name
// "trainable_tokens_delta", or nil if the layer does not hold adapter or is
// tied (PEFT saves the rows once, with the embedding).
func (l *Layer) AdapterParams(adapter string) []nn.Param {
	if l.tiedTo != nil {
		return nil
	}
	a, ok := l.adapters[adapter]
	if !ok {
		return nil
	}
	return []nn.Param{{Name: "trainable_tokens_delta", T: a.delta}}
}

// Buffers returns adapter's original rows as PEFT's non-persistent buffer
// "trainable_tokens_original.<adapter>" (nil for a tied layer).
func (l *Layer) Buffers(adapter string) []tuners.Buffer {
	if l.tiedTo != nil {
		return nil
	}
	a, ok := l.adapters[adapter]
	if !ok {
		return nil
	}
	return []tuners.Buffer{{Name: "trainable_tokens_original." + adapter, Shape: a.original.Shape(), F32: a.original.Data()}}
}

// Children lists "base_layer" and, unless the layer is tied, the
// ParameterDict "trainable_tokens_delta" (live names
// "trainable_tokens_delta.<adapter>").
func (l *Layer) Children() []nn.Child {
	ch := []nn.Child{{Name: "base_layer", Module: l.base}}
	if l.tiedTo == nil {
		d := &paramDict{}
		for _, n := range l.names {
			d.params = append(d.params, nn.Param{Name: n, T: l.adapters[n].delta})
		}
		ch = append(ch, nn.Child{Name: "trainable_tokens_delta", Module: d})
	}
	return ch
}

// Params returns nil: the trained rows live in a child.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base module with one of the same type and shape;
// the row container cannot be replaced.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("trainabletokens: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m)
	if err != nil {
		return err
	}
	if nl.embedding != l.embedding || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("trainabletokens: new base_layer %T does not match the adapted %T", m, l.base)
	}
	l.base, l.weight, l.bias = m, nl.weight, nl.bias
	return nil
}

// paramDict is a module holding only parameters (PEFT's ParameterDict).
type paramDict struct{ params []nn.Param }

// Children returns nil.
func (d *paramDict) Children() []nn.Child { return nil }

// Params returns the tensors.
func (d *paramDict) Params() []nn.Param { return d.params }

// SetChild fails: there are no children.
func (d *paramDict) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("trainabletokens: trained rows have no child %q", name)
}
