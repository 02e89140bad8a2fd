package nn

import "fmt"

// Cloner is implemented by modules that deep-copy themselves, for module
// types CloneModule does not know.
type Cloner interface {
	CloneModule() Module
}

// CloneModule deep-copies m: a module of the same type whose tensors are new
// leaf tensors with the same values, on the same backend. It knows the
// layers of this package (Linear, Conv1D, Embedding, Conv1d, Conv2d,
// LayerNorm, RMSNorm) and any Cloner; other types are an error naming the
// type.
func CloneModule(m Module) (Module, error) {
	switch v := m.(type) {
	case Cloner:
		return v.CloneModule(), nil
	case *Linear:
		c := *v
		c.Weight, c.Bias = cloneLeaf(v.Weight), cloneLeaf(v.Bias)
		return &c, nil
	case *Conv1D:
		c := *v
		c.Weight, c.Bias = cloneLeaf(v.Weight), cloneLeaf(v.Bias)
		return &c, nil
	case *Embedding:
		c := *v
		c.Weight = cloneLeaf(v.Weight)
		return &c, nil
	case *Conv1d:
		c := *v
		c.Weight, c.Bias = cloneLeaf(v.Weight), cloneLeaf(v.Bias)
		return &c, nil
	case *Conv2d:
		c := *v
		c.Weight, c.Bias = cloneLeaf(v.Weight), cloneLeaf(v.Bias)
		return &c, nil
	case *LayerNorm:
		c := *v
		c.Weight, c.Bias = cloneLeaf(v.Weight), cloneLeaf(v.Bias)
		return &c, nil
	case *RMSNorm:
		c := *v
		c.Weight = cloneLeaf(v.Weight)
		return &c, nil
	}
	return nil, fmt.Errorf("nn: cannot copy a module of type %T (implement nn.Cloner)", m)
}

// cloneLeaf copies t into a new leaf tensor (nil stays nil).
func cloneLeaf(t *Tensor) *Tensor {
	if t == nil {
		return nil
	}
	return t.Detach().Clone()
}
