package lora

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// BaseAdapterName selects no adapter for a row in SetBatchAdapters
// (PEFT's "__base__").
const BaseAdapterName = tuners.BaseAdapterName

var _ tuners.RowAdapters = (*Layer)(nil)

// SetBatchAdapters makes the forward pass apply, to each row i of the batch
// (the first axis of the input, or of the ids' shape), only adapter
// names[i] instead of the active adapters: PEFT's mixed-batch inference
// with adapter_names. BaseAdapterName, or a name this layer does not hold,
// leaves the row to the base layer. nil turns it off.
//
// As in PEFT it is an inference feature: it fails when adapters are merged
// or when a named adapter uses DoRA. The input's batch size must then equal
// len(names); a mismatch is a programming error and panics. Not safe for
// concurrent use with Forward.
func (c *core) SetBatchAdapters(names []string) error {
	if names == nil {
		c.batch = nil
		return nil
	}
	if len(c.merged) > 0 {
		return fmt.Errorf("lora: per-row adapters cannot be used while adapters %q are merged", c.merged)
	}
	for _, n := range names {
		if a, ok := c.adapters[n]; ok && a.dora {
			return fmt.Errorf("lora: per-row adapters are not supported for DoRA adapter %q", n)
		}
	}
	c.batch = slices.Clone(names)
	return nil
}

// rowGroups splits the batch rows by adapter: the adapters this layer holds
// in order of first appearance, with their rows.
func (c *core) rowGroups(batch int) ([]*adapter, [][]int32) {
	if batch != len(c.batch) {
		panic(fmt.Sprintf("lora: input batch of %d rows, but %d per-row adapter names are set", batch, len(c.batch)))
	}
	var order []string
	rows := map[string][]int32{}
	for i, n := range c.batch {
		if _, ok := c.adapters[n]; !ok {
			continue
		}
		if _, seen := rows[n]; !seen {
			order = append(order, n)
		}
		rows[n] = append(rows[n], int32(i))
	}
	as := make([]*adapter, len(order))
	rs := make([][]int32, len(order))
	for i, n := range order {
		as[i], rs[i] = c.adapters[n], rows[n]
	}
	return as, rs
}

// scatterRows adds to result (rows along axis 0) the per-group outputs
// ys[g], which hold the rows rows[g] in that order.
func scatterRows(result *nn.Tensor, ys []*nn.Tensor, rows [][]int32) *nn.Tensor {
	if len(ys) == 0 {
		return result
	}
	batch := result.Dim(0)
	pos := make([]int32, batch) // row of the concatenation holding each batch row
	covered := make([]bool, batch)
	k := int32(0)
	for _, rs := range rows {
		for _, r := range rs {
			pos[r], covered[r] = k, true
			k++
		}
	}
	if int(k) == batch && inOrder(pos) {
		// The groups hold the rows in batch order: no permutation.
		if len(ys) == 1 {
			return nn.Add(result, ys[0])
		}
		return nn.Add(result, nn.Concat(0, ys...))
	}
	parts := slices.Clone(ys)
	if int(k) < batch {
		shape := result.Shape()
		shape[0] = 1
		parts = append(parts, nn.Zeros(result.Backend(), shape...))
		for r := range pos {
			if !covered[r] {
				pos[r] = k
			}
		}
	}
	return nn.Add(result, nn.Index(nn.Concat(0, parts...), 0, pos))
}

// inOrder reports whether rows is 0, 1, 2, ...
func inOrder(rows []int32) bool {
	for i, r := range rows {
		if int(r) != i {
			return false
		}
	}
	return true
}

// gatherRows returns the rows of x (along axis 0), x itself when they are
// all of its rows in order.
func gatherRows(x *nn.Tensor, rows []int32) *nn.Tensor {
	if len(rows) == x.Dim(0) && inOrder(rows) {
		return x
	}
	return nn.Index(x, 0, rows)
}

// mixedForward adds each row's own adapter to result (Layer).
func (l *Layer) mixedForward(x, result *nn.Tensor) *nn.Tensor {
	as, rows := l.rowGroups(x.Dim(0))
	ys := make([]*nn.Tensor, len(as))
	for i, a := range as {
		xs := gatherRows(x, rows[i])
		if a.alora {
			var offs []int
			if l.aloraOffsets != nil {
				for _, r := range rows[i] {
					offs = append(offs, l.aloraOffsets[r])
				}
			}
			shape := result.Shape()
			shape[0] = len(rows[i])
			ys[i] = l.aloraAdd(a, xs, nn.Zeros(result.Backend(), shape...), offs)
			continue
		}
		if l.dropoutOn(a) {
			xs = nn.DropoutOp(xs, a.dropout, l.rng)
		}
		ys[i] = nn.Scale(l.loraB(a, l.loraA(a, xs)), float32(a.scale))
	}
	return scatterRows(result, ys, rows)
}

// mixedLookup adds each row's own adapter to result (Embedding); ids are
// shaped shape, whose first axis is the batch.
func (e *Embedding) mixedLookup(ids []int32, shape []int, result *nn.Tensor) *nn.Tensor {
	batch := len(ids)
	if len(shape) > 0 {
		batch = shape[0]
	}
	per := len(ids) / max(batch, 1)
	as, rows := e.rowGroups(batch)
	ys := make([]*nn.Tensor, len(as))
	for i, a := range as {
		sub := make([]int32, 0, len(rows[i])*per)
		for _, r := range rows[i] {
			sub = append(sub, ids[int(r)*per:int(r+1)*per]...)
		}
		outShape := result.Shape()
		outShape[0] = len(rows[i])
		g := nn.Index(a.a, 1, sub)
		ys[i] = nn.Scale(nn.MatMulT(g, a.b, true, true).Reshape(outShape...), float32(a.scale))
	}
	return scatterRows(result, ys, rows)
}
