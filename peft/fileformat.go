package peft

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// weightSource is what loadWeights reads an adapter file through: the open
// file itself, or its tensors decoded by the method's tuners.FileFormat.
type weightSource interface {
	Names() []string
	Info(name string) (safetensors.Info, bool)
	Float32(name string) ([]float32, error)
	Int64(name string) ([]int64, error)
}

// decodedSource reads the whole adapter file at path and decodes it with
// ff into the tensors the model's saved keys expect.
func decodedSource(path string, ff tuners.FileFormat) (weightSource, error) {
	raw, _, err := safetensors.ReadAll(path)
	if err != nil {
		return nil, err
	}
	dec, err := ff.DecodeFile(raw)
	if err != nil {
		return nil, err
	}
	return memSource(dec), nil
}

// memSource serves decoded tensors held in memory.
type memSource map[string]safetensors.Tensor

// Names returns the tensor names, sorted.
func (s memSource) Names() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Info returns the tensor's dtype (F32 or I64) and shape.
func (s memSource) Info(name string) (safetensors.Info, bool) {
	t, ok := s[name]
	if !ok {
		return safetensors.Info{}, false
	}
	dt := "F32"
	if t.F32 == nil {
		dt = "I64"
	}
	return safetensors.Info{DType: dt, Shape: slices.Clone(t.Shape)}, true
}

// Float32 returns a float tensor's elements.
func (s memSource) Float32(name string) ([]float32, error) {
	t, ok := s[name]
	if !ok || t.F32 == nil {
		return nil, fmt.Errorf("decoded adapter file: %q is not a float tensor: %w", name, safetensors.ErrDType)
	}
	return t.F32, nil
}

// Int64 returns an integer tensor's elements.
func (s memSource) Int64(name string) ([]int64, error) {
	t, ok := s[name]
	if !ok || t.I64 == nil {
		return nil, fmt.Errorf("decoded adapter file: %q is not an integer tensor: %w", name, safetensors.ErrDType)
	}
	return t.I64, nil
}
