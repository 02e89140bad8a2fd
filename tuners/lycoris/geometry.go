package lycoris

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/nn"
)

// Kind is the type of base layer a LyCORIS layer wraps.
type Kind int

// The base layer types PEFT's LyCORIS methods adapt.
const (
	Linear Kind = iota // nn.Linear, weight [out, in]
	Conv1d             // nn.Conv1d, weight [out, in/groups, k]
	Conv2d             // nn.Conv2d, weight [out, in/groups, kh, kw]
)

// String returns the torch name of the layer type.
func (k Kind) String() string {
	switch k {
	case Linear:
		return "Linear"
	case Conv1d:
		return "Conv1d"
	case Conv2d:
		return "Conv2d"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Geometry describes a base layer's weight: what the factors of an adapter
// must compose to.
type Geometry struct {
	// Kind is the layer type.
	Kind Kind
	// Out is the number of output features (channels).
	Out int
	// In is the number of input features per group: the weight's second
	// axis (in_channels/groups for convolutions).
	In int
	// Kernel holds the kernel sizes ([k] or [kh, kw]); nil for Linear.
	Kernel []int
	// Conv holds the convolution's options (zero for Linear).
	Conv nn.ConvOptions
}

// Inspect returns the geometry of a base module, or an error naming its type
// when it is not one the LyCORIS methods adapt.
func Inspect(m nn.Module) (Geometry, error) {
	switch b := m.(type) {
	case *nn.Linear:
		if b.Weight == nil || b.Weight.Rank() != 2 {
			return Geometry{}, fmt.Errorf("Linear weight must have rank 2")
		}
		return Geometry{Kind: Linear, Out: b.Weight.Dim(0), In: b.Weight.Dim(1)}, nil
	case *nn.Conv1d:
		if b.Weight == nil || b.Weight.Rank() != 3 {
			return Geometry{}, fmt.Errorf("Conv1d weight must have rank 3")
		}
		w := b.Weight
		return Geometry{Kind: Conv1d, Out: w.Dim(0), In: w.Dim(1), Kernel: []int{w.Dim(2)}, Conv: b.Opts}, nil
	case *nn.Conv2d:
		if b.Weight == nil || b.Weight.Rank() != 4 {
			return Geometry{}, fmt.Errorf("Conv2d weight must have rank 4")
		}
		w := b.Weight
		return Geometry{Kind: Conv2d, Out: w.Dim(0), In: w.Dim(1), Kernel: []int{w.Dim(2), w.Dim(3)}, Conv: b.Opts}, nil
	}
	return Geometry{}, fmt.Errorf("cannot adapt a %T: only Linear, Conv1d and Conv2d layers are supported", m)
}

// KernelSize returns the product of the kernel sizes (1 for Linear).
func (g Geometry) KernelSize() int {
	n := 1
	for _, k := range g.Kernel {
		n *= k
	}
	return n
}

// PointwiseKernel reports whether every kernel size is 1 (a 1x1 Conv2d or a
// kernel-1 Conv1d), where PEFT turns use_effective_conv2d off.
func (g Geometry) PointwiseKernel() bool {
	return !slices.ContainsFunc(g.Kernel, func(k int) bool { return k != 1 })
}

// WeightShape returns the base weight's shape.
func (g Geometry) WeightShape() []int {
	return append([]int{g.Out, g.In}, g.Kernel...)
}

// weightOf returns the weight of a base module Inspect accepted.
func weightOf(m nn.Module) *nn.Tensor {
	switch l := m.(type) {
	case *nn.Linear:
		return l.Weight
	case *nn.Conv1d:
		return l.Weight
	case *nn.Conv2d:
		return l.Weight
	}
	return nil
}
