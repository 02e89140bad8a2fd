package hira

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// kind is the type of the wrapped module.
type kind int

const (
	linear kind = iota
	conv1D      // GPT-2 Conv1D, weight [in, out]
	conv1d
	conv2d
	embedding
)

// adapter is one named HiRA adapter of a layer.
type adapter struct {
	r       int
	dropout float32
	// a is hira_A [r, in(, k...)] (embedding: [r, vocab]); b is hira_B
	// [out, r(, 1...)] (embedding: [dim, r]).
	a, b *nn.Tensor
}

// core is what every HiRA layer type shares.
type core struct {
	adapters.Set[*adapter]
	base   nn.Module
	weight *nn.Tensor
	kind   kind
	opts   nn.ConvOptions
	// in and out are the adapter's input and output sizes (embedding:
	// vocab and dim); inK is in times the kernel size.
	in, out, inK int
	// groups are the adapters merged together by each Merge call, in
	// order: unmerging divides by the sum of a group's updates.
	groups [][]string
}

// Layer is a Linear, GPT-2 Conv1D, Conv1d or Conv2d module with HiRA
// adapters: Forward returns base(x) plus, for each active adapter, the
// module's operation applied to the dropped-out x with the weight
// W ⊙ (B A) and no bias.
//
// Adding, deleting, activating and merging adapters and switching training
// mode are not safe for concurrent use; Forward in evaluation mode is.
type Layer struct{ core }

// Embedding is an nn.Embedding with HiRA adapters: Lookup returns the base
// embeddings plus those of the table W ⊙ (B A)^T.
type Embedding struct{ core }

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
	_ tuners.Layer = (*Embedding)(nil)
)

// newCore inspects a base module.
func newCore(base nn.Module) (*core, error) {
	c := &core{Set: adapters.NewSet[*adapter](0), base: base}
	switch m := base.(type) {
	case *nn.Linear:
		c.kind, c.weight = linear, m.Weight
		c.out, c.in = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		c.kind, c.weight = conv1D, m.Weight
		c.in, c.out = m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1d:
		c.kind, c.weight, c.opts = conv1d, m.Weight, m.Opts
	case *nn.Conv2d:
		c.kind, c.weight, c.opts = conv2d, m.Weight, m.Opts
	case *nn.Embedding:
		c.kind, c.weight = embedding, m.Weight
		c.in, c.out = m.Weight.Dim(0), m.Weight.Dim(1)
	default:
		return nil, fmt.Errorf("hira: cannot adapt a %T: HiRA supports Linear, Conv1D, Conv1d, Conv2d and Embedding layers", base)
	}
	c.inK = c.in
	if c.kind == conv1d || c.kind == conv2d {
		if c.opts.Groups > 1 {
			return nil, fmt.Errorf("hira: convolutions with groups > 1 are not supported (groups=%d), as in PEFT", c.opts.Groups)
		}
		c.out, c.in = c.weight.Dim(0), c.weight.Dim(1)
		c.inK = c.weight.Len() / c.out
	}
	return c, nil
}

// addAdapter creates adapter name with rank r as cfg says.
func (c *core) addAdapter(name string, r int, cfg *Config, rng *nn.RNG, trainable bool) error {
	if r <= 0 {
		return fmt.Errorf("adapter %q: r must be positive, got %d", name, r)
	}
	if _, ok := c.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := c.weight.Backend()
	ashape, bshape := []int{r, c.in}, []int{c.out, r}
	if c.kind == conv1d || c.kind == conv2d {
		ws := c.weight.Shape()
		ashape = append([]int{r}, ws[1:]...)
		bshape = []int{c.out, r, 1}
		if c.kind == conv2d {
			bshape = append(bshape, 1)
		}
	}
	a := &adapter{r: r, dropout: float32(cfg.Dropout)}
	init := cfg.InitWeights.effective()
	switch {
	case init == InitRandom:
		a.a, a.b = nn.Normal(be, rng, 0, 1, ashape...), nn.Normal(be, rng, 0, 1, bshape...)
	case c.kind == embedding:
		a.a, a.b = nn.Zeros(be, ashape...), nn.Normal(be, rng, 0, 1, bshape...)
	case init == InitGaussian && (c.kind == linear || c.kind == conv1D):
		a.a, a.b = nn.Normal(be, rng, 0, float32(1/float64(r)), ashape...), nn.Zeros(be, bshape...)
	default:
		// kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)).
		bound := float32(1 / math.Sqrt(float64(c.inK)))
		a.a, a.b = nn.Uniform(be, rng, -bound, bound, ashape...), nn.Zeros(be, bshape...)
	}
	a.a.SetRequiresGrad(trainable)
	a.b.SetRequiresGrad(trainable)
	return c.Add(name, a)
}

// modulation returns B A in the base weight's layout.
func (c *core) modulation(a, b *nn.Tensor, r int) *nn.Tensor {
	a2, b2 := a.Reshape(r, c.inK), b.Reshape(c.out, r)
	if c.kind == conv1D || c.kind == embedding {
		return nn.MatMulT(a2, b2, true, true) // (B A)^T: [in, out] / [vocab, dim]
	}
	return nn.MatMul(b2, a2).Reshape(c.weight.Shape()...)
}

// apply runs the base module's operation on x with weight w and no bias.
func (c *core) apply(x, w *nn.Tensor) *nn.Tensor {
	switch c.kind {
	case conv1D:
		return nn.MatMul(x, w)
	case conv1d:
		return nn.Conv1dOp(x, w, nil, c.opts)
	case conv2d:
		return nn.Conv2dOp(x, w, nil, c.opts)
	}
	return nn.LinearOp(x, w, nil)
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.(nn.Layer).Forward(x)
	if l.Bypass() {
		return result
	}
	w := l.weight.Detach()
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		eff := nn.Mul(w, l.modulation(a.a, a.b, a.r))
		result = nn.Add(result, l.apply(l.Dropout(x, a.dropout), eff))
	}
	return result
}

// Lookup returns the embeddings of ids (shaped shape + [dim]) plus the
// active adapters' contributions. ids must lie in [0, vocab).
func (e *Embedding) Lookup(ids []int32, shape ...int) *nn.Tensor {
	result := e.base.(*nn.Embedding).Lookup(ids, shape...)
	if e.Bypass() {
		return result
	}
	w := e.weight.Detach()
	for _, name := range e.Active() {
		a, _ := e.Get(name)
		result = nn.Add(result, nn.EmbeddingOp(nn.Mul(w, e.modulation(a.a, a.b, a.r)), ids, shape...))
	}
	return result
}

// LookupChecked is Lookup with an error for ids outside [0, vocab).
func (e *Embedding) LookupChecked(ids []int32, shape ...int) (*nn.Tensor, error) {
	for _, id := range ids {
		if id < 0 || int(id) >= e.in {
			return nil, fmt.Errorf("hira: token id %d outside the vocabulary [0, %d)", id, e.in)
		}
	}
	return e.Lookup(ids, shape...), nil
}

// onePlusModulation returns 1 + the summed B A of the named adapters in
// the base weight's layout, without gradient: a tensor of ones into which
// each product is accumulated by one GEMM (beta 1), so no temporary the
// size of the weight is made per adapter.
func (c *core) onePlusModulation(names []string) *nn.Tensor {
	m := nn.Full(c.weight.Backend(), 1, c.weight.Shape()...)
	transposed := c.kind == conv1D || c.kind == embedding
	m2 := m.Reshape(c.out, c.inK)
	if transposed {
		m2 = m.Reshape(c.inK, c.out)
	}
	for _, n := range names {
		a, _ := c.Get(n)
		a2, b2 := a.a.Detach().Reshape(a.r, c.inK), a.b.Detach().Reshape(c.out, a.r)
		if transposed {
			adapters.AddProduct(m2, a2, b2, true, true, 1)
		} else {
			adapters.AddProduct(m2, b2, a2, false, false, 1)
		}
	}
	return m
}

// Merge multiplies the base weight in place by 1 + the summed B A of the
// adapters (nil: the active ones) not merged yet, as PEFT does. With safe,
// nothing changes when the result holds NaN or Inf. Not safe for
// concurrent use.
func (c *core) Merge(names []string, safe bool) error {
	todo := c.ToMerge(names)
	if len(todo) == 0 {
		return nil
	}
	merged := nn.Mul(c.weight.Detach(), c.onePlusModulation(todo))
	if safe && merged.Backend().CountNonFinite(merged.Buffer()) != 0 {
		return fmt.Errorf("hira: adapters %q: merged weights contain NaN or Inf; the adapter seems broken, nothing was merged", todo)
	}
	c.weight.CopyFrom(merged)
	for _, n := range todo {
		c.MarkMerged(n)
	}
	c.groups = append(c.groups, todo)
	return nil
}

// Unmerge divides the base weight by what each Merge call multiplied it
// with, the last first. It fails, leaving that merge in place, where a
// divisor is zero (the weight entry is then lost). Not safe for concurrent
// use.
func (c *core) Unmerge() error {
	for len(c.groups) > 0 {
		g := c.groups[len(c.groups)-1]
		w := nn.Div(c.weight.Detach(), c.onePlusModulation(g))
		if w.Backend().CountNonFinite(w.Buffer()) != 0 {
			return fmt.Errorf("hira: adapters %q: 1 + B A has zero entries; the base weight cannot be restored", g)
		}
		c.weight.CopyFrom(w)
		for range g {
			c.PopMerged()
		}
		c.groups = c.groups[:len(c.groups)-1]
	}
	return nil
}

// Base returns the wrapped module.
func (c *core) Base() nn.Module { return c.base }

// Method returns "HIRA".
func (c *core) Method() string { return PeftType }

// SetTrainable makes adapter's A and B require gradients or not.
func (c *core) SetTrainable(adapter string, on bool) {
	if a, ok := c.Get(adapter); ok {
		a.a.SetRequiresGrad(on)
		a.b.SetRequiresGrad(on)
	}
}

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (c *core) Delete(name string) error {
	if err := c.Remove(name); err != nil {
		return fmt.Errorf("hira: %w", err)
	}
	return nil
}

// names returns the saved names of A and B.
func (c *core) names() (string, string) {
	if c.kind == embedding {
		return "hira_embedding_A", "hira_embedding_B"
	}
	return "hira_A", "hira_B"
}

// AdapterParams returns adapter's tensors under their saved names
// ("hira_A"/"hira_B", Embedding "hira_embedding_A"/"hira_embedding_B"),
// or nil if the layer does not hold it.
func (c *core) AdapterParams(adapter string) []nn.Param {
	a, ok := c.Get(adapter)
	if !ok {
		return nil
	}
	na, nb := c.names()
	return []nn.Param{{Name: na, T: a.a}, {Name: nb, T: a.b}}
}

// Children lists "base_layer" and the A and B containers (PEFT's
// ParameterDicts).
func (c *core) Children() []nn.Child {
	da, db := &adapters.ParamDict{}, &adapters.ParamDict{}
	for _, n := range c.Adapters() {
		a, _ := c.Get(n)
		da.Entries = append(da.Entries, nn.Param{Name: n, T: a.a})
		db.Entries = append(db.Entries, nn.Param{Name: n, T: a.b})
	}
	na, nb := c.names()
	return []nn.Child{{Name: "base_layer", Module: c.base}, {Name: na, Module: da}, {Name: nb, Module: db}}
}

// Params returns nil: the layer's tensors live in its children.
func (c *core) Params() []nn.Param { return nil }

// SetChild replaces the base layer by a module of the same type and
// weight shape.
func (c *core) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("hira: cannot replace child %q of an adapted layer", name)
	}
	n, err := newCore(m)
	if err != nil || n.kind != c.kind || !slices.Equal(n.weight.Shape(), c.weight.Shape()) {
		return fmt.Errorf("hira: new base_layer %T does not match the adapted module", m)
	}
	c.base, c.weight, c.opts = m, n.weight, n.opts
	return nil
}
