package nn

import (
	"fmt"
	"slices"
)

// node is the autograd record of one operation: its inputs and the rule that
// maps the gradient of its output to the gradients of its inputs.
type node struct {
	op     string
	inputs []*Tensor
	// back returns one gradient per input (nil where an input needs none).
	// Each returned tensor is either newly allocated or a view of g; it never
	// aliases a tensor of the forward pass.
	back func(g *Tensor) []*Tensor
}

// record attaches a graph node to out when some input requires gradients and
// returns out. Inputs may be nil.
func record(out *Tensor, op string, back func(g *Tensor) []*Tensor, inputs ...*Tensor) *Tensor {
	for _, in := range inputs {
		if in != nil && in.requiresGrad {
			out.requiresGrad = true
			out.node = &node{op: op, inputs: inputs, back: back}
			return out
		}
	}
	return out
}

// needs reports whether t takes part in gradient computation.
func needs(t *Tensor) bool { return t != nil && t.requiresGrad }

// Backward computes the gradient of the one-element tensor t with respect to
// every leaf it depends on that requires gradients, and adds it to that
// leaf's Grad. It panics when t has more than one element or does not
// require gradients. Not safe to call concurrently with anything that reads
// or writes the same leaves.
func (t *Tensor) Backward() {
	if t.Len() != 1 {
		panic(fmt.Sprintf("nn.Backward: tensor of shape %v is not a scalar (use BackwardWith)", t.shape))
	}
	seed := Full(t.be, 1, t.shape...)
	t.backward(seed, true)
}

// BackwardWith is Backward for a tensor of any shape, seeded with grad (the
// gradient of some scalar with respect to t; same number of elements). grad
// is only read.
func (t *Tensor) BackwardWith(grad *Tensor) {
	if grad.Len() != t.Len() {
		panic(fmt.Sprintf("nn.BackwardWith: gradient of shape %v for tensor of shape %v", grad.shape, t.shape))
	}
	sameBackend("BackwardWith", t, grad)
	t.backward(grad.view(t.shape), false)
}

// topo returns the tensors that require gradients and that t depends on, in
// an order where every tensor comes after all of its inputs.
func topo(t *Tensor) []*Tensor {
	type frame struct {
		t    *Tensor
		next int
	}
	var order []*Tensor
	seen := map[*Tensor]bool{t: true}
	stack := []frame{{t: t}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.t.node != nil && f.next < len(f.t.node.inputs) {
			in := f.t.node.inputs[f.next]
			f.next++
			if needs(in) && !seen[in] {
				seen[in] = true
				stack = append(stack, frame{t: in})
			}
			continue
		}
		order = append(order, f.t)
		stack = stack[:len(stack)-1]
	}
	return order
}

// gradState tracks the pending gradients of one backward pass and which
// allocations they share, so that buffers are released as soon as nothing
// refers to them and are never accumulated into while shared.
type gradState struct {
	grads map[*Tensor]*Tensor // pending gradient per tensor of the graph
	refs  map[*Tensor]int     // pending gradients per allocation (storage)
	kept  map[*Tensor]bool    // allocations handed to leaves
	freed map[*Tensor]bool    // allocations already released
	// foreign is the allocation of a caller-provided seed, never written or freed.
	foreign *Tensor
}

func (s *gradState) free(st *Tensor) {
	if s.refs[st] == 0 && !s.kept[st] && st != s.foreign && !s.freed[st] {
		delete(s.refs, st)
		s.freed[st] = true
		st.be.Free(st.buf)
	}
}

// exclusive reports whether g may be written in place.
func (s *gradState) exclusive(g *Tensor) bool {
	st := g.storage()
	return s.refs[st] == 1 && !s.kept[st] && st != s.foreign
}

// add accumulates gradient g into the pending gradient of x. It frees
// nothing that g refers to: the caller releases the node's gradients once
// all of them have been added.
func (s *gradState) add(op string, x, g *Tensor) {
	if g.Len() != x.Len() {
		panic(fmt.Sprintf("nn: backward of %s returned a gradient of shape %v for an input of shape %v", op, g.shape, x.shape))
	}
	if g.be != x.be {
		panic(fmt.Sprintf("nn: backward of %s returned a gradient on backend %s for an input on %s", op, g.be.Name(), x.be.Name()))
	}
	if !slices.Equal(g.shape, x.shape) {
		g = g.view(x.shape)
	}
	prev, ok := s.grads[x]
	if !ok {
		s.grads[x] = g
		s.refs[g.storage()]++
		return
	}
	if s.exclusive(prev) {
		x.be.Axpy(prev.buf, g.buf, 1)
		return
	}
	sum := addRaw(prev, g)
	s.refs[prev.storage()]--
	s.free(prev.storage())
	s.grads[x] = sum
	s.refs[sum]++
}

func (t *Tensor) backward(seed *Tensor, ownSeed bool) {
	if !t.requiresGrad {
		panic("nn.Backward: tensor does not require gradients (no input was marked with SetRequiresGrad)")
	}
	s := &gradState{
		grads: map[*Tensor]*Tensor{t: seed},
		refs:  map[*Tensor]int{seed.storage(): 1},
		kept:  map[*Tensor]bool{},
		freed: map[*Tensor]bool{},
	}
	if !ownSeed {
		s.foreign = seed.storage()
	}
	order := topo(t)
	for i := len(order) - 1; i >= 0; i-- {
		x := order[i]
		g, ok := s.grads[x]
		if !ok {
			continue
		}
		delete(s.grads, x)
		st := g.storage()
		s.refs[st]--
		if x.node == nil {
			s.accumulateLeaf(x, g)
			continue
		}
		ins := x.node.back(g)
		if len(ins) != len(x.node.inputs) {
			panic(fmt.Sprintf("nn: backward of %s returned %d gradients for %d inputs", x.node.op, len(ins), len(x.node.inputs)))
		}
		// Hold every returned gradient while they are added, so that none is
		// written in place or released while another still reads it.
		for _, gi := range ins {
			if gi != nil {
				s.refs[gi.storage()]++
			}
		}
		for j, in := range x.node.inputs {
			if needs(in) && ins[j] != nil {
				s.add(x.node.op, in, ins[j])
			}
		}
		for _, gi := range ins {
			if gi != nil {
				s.refs[gi.storage()]--
			}
		}
		for _, gi := range ins {
			if gi != nil {
				s.free(gi.storage())
			}
		}
		s.free(st)
	}
}

// accumulateLeaf adds g to the leaf's gradient, adopting g's buffer when
// nothing else refers to it.
func (s *gradState) accumulateLeaf(x, g *Tensor) {
	st := g.storage()
	if x.grad != nil {
		x.be.Axpy(x.grad.buf, g.buf, 1)
		s.free(st)
		return
	}
	if s.refs[st] == 0 && !s.kept[st] && st != s.foreign && !s.freed[st] && g.buf.Len() == st.buf.Len() {
		s.kept[st] = true
		x.grad = g.view(x.shape)
		x.grad.base = nil
		x.grad.buf = st.buf
		x.gradOwned = true
		return
	}
	x.grad = cloneRaw(g).view(x.shape)
	x.grad.base = nil
	x.gradOwned = true
}
