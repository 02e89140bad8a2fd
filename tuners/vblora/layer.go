package vblora

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/adapters"
)

// adapter is one named VB-LoRA adapter of a layer.
type adapter struct {
	r, topk int
	dropout float32
	// logitsA is vblora_logits_A [r, in/L, nv]; logitsB vblora_logits_B
	// [out/L, r, nv].
	logitsA, logitsB *nn.Tensor
	bank             *Bank
}

// Layer is an nn.Linear or GPT-2 nn.Conv1D with VB-LoRA adapters: Forward
// returns base(x) + (x A^T) B^T for every active adapter, where every
// length-L piece of the factors A [r, in] and B [out, r] is a mixture of
// the top-k vectors of the shared bank, weighted by the softmax of the
// piece's k largest logits.
//
// The top-k selection reads the logits back to the host (nn has no top-k
// kernel); the mixture itself is nn gathers and products, so gradients
// reach the selected logits and the bank (summed over every use).
//
// Adding, deleting, activating and merging adapters are not safe for
// concurrent use; Forward in evaluation mode is.
type Layer struct {
	adapters.Set[*adapter]
	base    nn.Layer
	weight  *nn.Tensor
	conv1D  bool
	in, out int
}

var (
	_ tuners.Layer = (*Layer)(nil)
	_ nn.Layer     = (*Layer)(nil)
)

// newLayer wraps an nn.Linear or nn.Conv1D.
func newLayer(base nn.Module, seed uint64) (*Layer, error) {
	l := &Layer{Set: adapters.NewSet[*adapter](seed)}
	switch m := base.(type) {
	case *nn.Linear:
		l.base, l.weight, l.out, l.in = m, m.Weight, m.Weight.Dim(0), m.Weight.Dim(1)
	case *nn.Conv1D:
		l.base, l.weight, l.conv1D, l.in, l.out = m, m.Weight, true, m.Weight.Dim(0), m.Weight.Dim(1)
	default:
		return nil, fmt.Errorf("vblora: cannot adapt a %T: VB-LoRA supports Linear and GPT-2 Conv1D layers", base)
	}
	return l, nil
}

// addAdapter creates adapter name on bank b.
func (l *Layer) addAdapter(name string, cfg *Config, b *Bank, rng *nn.RNG, trainable bool) error {
	L, nv := b.T.Dim(1), b.T.Dim(0)
	if l.in%L != 0 || l.out%L != 0 {
		return fmt.Errorf("adapter %q: in (%d) and out (%d) features must be multiples of vector_length %d", name, l.in, l.out, L)
	}
	if cfg.TopK > nv {
		return fmt.Errorf("adapter %q: topk %d exceeds the bank's %d vectors", name, cfg.TopK, nv)
	}
	if _, ok := l.Get(name); ok {
		return fmt.Errorf("adapter %q already exists on this layer", name)
	}
	be := l.weight.Backend()
	std := float32(cfg.InitLogitsStd)
	a := &adapter{
		r: cfg.R, topk: cfg.TopK, dropout: float32(cfg.Dropout), bank: b,
		logitsA: nn.Normal(be, rng, 0, std, cfg.R, l.in/L, nv),
		logitsB: nn.Normal(be, rng, 0, std, l.out/L, cfg.R, nv),
	}
	a.logitsA.SetRequiresGrad(trainable)
	a.logitsB.SetRequiresGrad(trainable)
	return l.Add(name, a)
}

// topK returns, for each row of logits [rows, nv] (read to the host), the
// indices of its k largest entries, largest first (ties: lower index
// first), flattened row-major as positions into the flat logits and as
// bank rows.
func topK(logits *nn.Tensor, k int) (flat, bankRows []int32) {
	nv := logits.Dim(-1)
	data := logits.Data()
	rows := len(data) / nv
	flat, bankRows = make([]int32, 0, rows*k), make([]int32, 0, rows*k)
	for r := range rows {
		for _, i := range topRow(data[r*nv:(r+1)*nv], k) {
			flat = append(flat, int32(r*nv+i))
			bankRows = append(bankRows, int32(i))
		}
	}
	return flat, bankRows
}

// mixture returns the bank mixture of logits [..., nv]: shape [..., L].
func mixture(logits, bank *nn.Tensor, k int) *nn.Tensor {
	shape := logits.Shape()
	nv, L := shape[len(shape)-1], bank.Dim(1)
	rows := logits.Len() / nv
	flat, bankRows := topK(logits, k)
	top := nn.Index(logits.Reshape(rows*nv), 0, flat).Reshape(rows, k)
	w := nn.Softmax(top, 1)                                      // [rows, k]
	vecs := nn.Index(bank, 0, bankRows).Reshape(rows, k, L)      // [rows, k, L]
	mix := nn.Sum(nn.Mul(w.Reshape(rows, k, 1), vecs), 1, false) // [rows, L]
	return mix.Reshape(append(slices.Clone(shape[:len(shape)-1]), L)...)
}

// factors returns A [r, in] and B [out, r] from the given logits and bank.
func (l *Layer) factors(a *adapter, logitsA, logitsB, bank *nn.Tensor) (A, B *nn.Tensor) {
	A = mixture(logitsA, bank, a.topk).Reshape(a.r, l.in)
	mb := mixture(logitsB, bank, a.topk) // [out/L, r, L]
	B = nn.Transpose(mb, 1, 2).Reshape(l.out, a.r)
	return A, B
}

// Forward returns base(x) plus the active adapters' contributions.
func (l *Layer) Forward(x *nn.Tensor) *nn.Tensor {
	result := l.base.Forward(x)
	if l.Bypass() {
		return result
	}
	for _, name := range l.Active() {
		a, _ := l.Get(name)
		A, B := l.factors(a, a.logitsA, a.logitsB, a.bank.T)
		result = nn.Add(result, nn.LinearOp(nn.LinearOp(l.Dropout(x, a.dropout), A, nil), B, nil))
	}
	return result
}

// delta returns B A in the base weight's layout, without gradient.
func (l *Layer) delta(a *adapter) *nn.Tensor {
	A, B := l.factors(a, a.logitsA.Detach(), a.logitsB.Detach(), a.bank.T.Detach())
	if l.conv1D {
		return nn.MatMulT(A, B, true, true)
	}
	return nn.MatMul(B, A)
}

// addDelta adds sign * B A to the base weight in place with one GEMM (see
// adapters.MergeProduct); false means safe found NaN/Inf and left the
// weight alone.
func (l *Layer) addDelta(a *adapter, sign float32, safe bool) bool {
	A, B := l.factors(a, a.logitsA.Detach(), a.logitsB.Detach(), a.bank.T.Detach())
	if l.conv1D {
		return adapters.MergeProduct(l.weight, A, B, true, true, sign, safe)
	}
	return adapters.MergeProduct(l.weight, B, A, false, false, sign, safe)
}

// DeltaWeight returns adapter name's weight update B A in the layout of
// the base weight.
func (l *Layer) DeltaWeight(name string) (*nn.Tensor, error) {
	a, ok := l.Get(name)
	if !ok {
		return nil, fmt.Errorf("vblora: no adapter %q on this layer", name)
	}
	return l.delta(a), nil
}

// Merge folds adapters (nil: the active ones) into the base weight in
// place; adapters already merged are skipped. With safe, the merged weight
// is checked for NaN/Inf before it replaces the base weight. Not safe for
// concurrent use.
func (l *Layer) Merge(names []string, safe bool) error {
	return l.MergeWith("vblora", names, safe, l.addDelta)
}

// Unmerge subtracts every merged adapter again, the last merged first.
// Not safe for concurrent use.
func (l *Layer) Unmerge() error {
	l.UnmergeWith(l.addDelta)
	return nil
}

// Base returns the wrapped module.
func (l *Layer) Base() nn.Module { return l.base }

// Method returns "VBLORA".
func (l *Layer) Method() string { return PeftType }

// SetTrainable makes adapter's logits require gradients or not (the
// shared bank is handled by the peft package as a method-level tensor).
func (l *Layer) SetTrainable(adapter string, on bool) { saved.SetTrainable(&l.Set, adapter, on) }

// Delete removes an adapter. It fails if the layer does not hold it or
// holds it merged. Not safe for concurrent use.
func (l *Layer) Delete(name string) error {
	if err := l.Remove(name); err != nil {
		return fmt.Errorf("vblora: %w", err)
	}
	return nil
}

// AdapterParams returns adapter's tensors under their saved names
// "vblora_logits_A" and "vblora_logits_B", or nil if the layer does not
// hold it.
func (l *Layer) AdapterParams(adapter string) []nn.Param { return saved.Params(&l.Set, adapter) }

// saved lists the adapter tensors the layer saves, under their PEFT names.
var saved = adapters.Saved[*adapter]{
	Names:   []string{"vblora_logits_A", "vblora_logits_B"},
	Tensors: func(a *adapter) []*nn.Tensor { return []*nn.Tensor{a.logitsA, a.logitsB} },
}

// Children lists "base_layer" and the vblora_logits_A / vblora_logits_B
// containers (one parameter per adapter).
func (l *Layer) Children() []nn.Child { return saved.Children(&l.Set, l.base) }

// Params returns nil: the layer's tensors live in its children.
func (l *Layer) Params() []nn.Param { return nil }

// SetChild replaces the base layer by one of the same type and shape.
func (l *Layer) SetChild(name string, m nn.Module) error {
	if name != "base_layer" {
		return fmt.Errorf("vblora: cannot replace child %q of an adapted layer", name)
	}
	nl, err := newLayer(m, 0)
	if err != nil {
		return err
	}
	if nl.conv1D != l.conv1D || !slices.Equal(nl.weight.Shape(), l.weight.Shape()) {
		return fmt.Errorf("vblora: new base_layer %T does not match the adapted layer", m)
	}
	l.base, l.weight = nl.base, nl.weight
	return nil
}
