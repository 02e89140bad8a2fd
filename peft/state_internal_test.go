package peft

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// intConfig is the config of intMethod.
type intConfig struct {
	tuners.BaseConfig
	tuners.TargetConfig
}

func (c *intConfig) Validate() error { return nil }

// intMethod is a test method whose layers hold one float tensor
// ("int_scale") and one integer tensor ("int_idx") per adapter, and whose
// adapters share a float and an integer tensor.
type intMethod struct{}

func (intMethod) Type() string   { return "INTTEST" }
func (intMethod) Prefix() string { return "int_" }
func (intMethod) NewConfig() tuners.Config {
	return &intConfig{BaseConfig: tuners.BaseConfig{PeftType: "INTTEST"}}
}

func (intMethod) Prepare(_ nn.Module, _ tuners.Config, adapter string, _ []tuners.Target) (*tuners.Shared, error) {
	return &tuners.Shared{
		Params: []nn.Param{{Name: "int_bank", T: nn.Full(nil, 1, 3).SetRequiresGrad(true)}},
		Ints:   []*tuners.IntTensor{{Name: "int_sizes." + adapter, Shape: []int{2}, Data: []int64{4, 5}}},
	}, nil
}

func (intMethod) Wrap(t tuners.Target) (tuners.Layer, error) {
	l, ok := t.Module.(*intLayer)
	if !ok {
		base, ok := t.Module.(*nn.Linear)
		if !ok {
			return nil, fmt.Errorf("unsupported %T", t.Module)
		}
		l = &intLayer{base: base, scale: map[string]*nn.Tensor{}, idx: map[string]*tuners.IntTensor{}}
	}
	l.names = append(l.names, t.Adapter)
	l.scale[t.Adapter] = nn.Full(nil, 1, 1).SetRequiresGrad(true)
	l.idx[t.Adapter] = &tuners.IntTensor{Name: "int_idx", Shape: []int{3}, Data: []int64{0, 1, 2}}
	return l, nil
}

type intLayer struct {
	base  *nn.Linear
	names []string
	scale map[string]*nn.Tensor
	idx   map[string]*tuners.IntTensor
}

func (l *intLayer) Children() []nn.Child { return []nn.Child{{Name: "base_layer", Module: l.base}} }
func (l *intLayer) Params() []nn.Param   { return nil }
func (l *intLayer) SetChild(name string, _ nn.Module) error {
	return fmt.Errorf("no child %q", name)
}
func (l *intLayer) Forward(x *nn.Tensor) *nn.Tensor { return l.base.Forward(x) }
func (l *intLayer) Base() nn.Module                 { return l.base }
func (l *intLayer) Method() string                  { return "INTTEST" }
func (l *intLayer) Adapters() []string              { return slices.Clone(l.names) }
func (l *intLayer) SetActive([]string)              {}
func (l *intLayer) Active() []string                { return nil }
func (l *intLayer) SetTrainable(a string, on bool) {
	if t := l.scale[a]; t != nil {
		t.SetRequiresGrad(on)
	}
}
func (l *intLayer) SetDisabled(bool)           {}
func (l *intLayer) Disabled() bool             { return false }
func (l *intLayer) Merge([]string, bool) error { return nil }
func (l *intLayer) Unmerge() error             { return nil }
func (l *intLayer) Merged() []string           { return nil }
func (l *intLayer) Delete(a string) error {
	l.names = slices.DeleteFunc(l.names, func(s string) bool { return s == a })
	delete(l.scale, a)
	delete(l.idx, a)
	return nil
}
func (l *intLayer) AdapterParams(a string) []nn.Param {
	if t := l.scale[a]; t != nil {
		return []nn.Param{{Name: "int_scale", T: t}}
	}
	return nil
}
func (l *intLayer) AdapterInts(a string) []*tuners.IntTensor {
	if t := l.idx[a]; t != nil {
		return []*tuners.IntTensor{t}
	}
	return nil
}

func intModel() *nn.Sequential {
	return nn.NewSequential(nn.NewLinear(nil, 2, 2, true, nn.NewRNG(1)))
}

// TestIntegerState saves and loads integer adapter state (I64 in the file)
// of layers and of the method-level state, and the method-level tensors
// under "base_model.".
func TestIntegerState(t *testing.T) {
	methods["INTTEST"] = intMethod{}
	defer delete(methods, "INTTEST")
	cfg := &intConfig{BaseConfig: tuners.BaseConfig{PeftType: "INTTEST"}, TargetConfig: tuners.TargetConfig{TargetModules: tuners.Names("0")}}
	m, err := New(intModel(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range m.TrainableParameters() {
		names = append(names, p.Name)
	}
	if want := []string{"base_model.model.0.int_scale.default", "base_model.int_bank.default"}; !slices.Equal(names, want) {
		t.Errorf("trainable %q, want %q", names, want)
	}
	layer := m.Base().(*nn.Sequential).Layers[0].(*intLayer)
	layer.idx["default"].Data[1] = 7
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	tensors, _, err := safetensors.ReadAll(filepath.Join(dir, WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, v := range tensors {
		keys = append(keys, fmt.Sprintf("%s %v %v%v", k, v.DType, v.F32, v.I64))
	}
	slices.Sort(keys)
	want := []string{
		"base_model.int_bank F32 [1 1 1][]",
		"base_model.int_sizes.default I64 [][4 5]",
		"base_model.model.0.int_idx I64 [][0 7 2]",
		"base_model.model.0.int_scale F32 [1][]",
	}
	if !slices.Equal(keys, want) {
		t.Errorf("saved %q, want %q", keys, want)
	}

	m2, err := Load(intModel(), dir)
	if err != nil {
		t.Fatal(err)
	}
	got := m2.Base().(*nn.Sequential).Layers[0].(*intLayer).idx["default"].Data
	if !slices.Equal(got, []int64{0, 7, 2}) {
		t.Errorf("loaded indices %v, want [0 7 2]", got)
	}

	// An integer tensor stored as float, or of another shape, is refused.
	bad := map[string]safetensors.Tensor{}
	for k, v := range tensors {
		bad[k] = v
	}
	bad["base_model.model.0.int_idx"] = safetensors.Tensor{Shape: []int{4}, I64: []int64{0, 1, 2, 3}}
	if err := safetensors.Save(filepath.Join(dir, WeightsName), bad, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(intModel(), dir); err == nil || !strings.Contains(err.Error(), "base_model.model.0.int_idx: file [4], model [3]") {
		t.Errorf("shape mismatch of an integer tensor: %v", err)
	}
	bad["base_model.model.0.int_idx"] = safetensors.Tensor{Shape: []int{3}, F32: []float32{0, 1, 2}}
	bad["base_model.model.0.int_scale"] = safetensors.Tensor{Shape: []int{1}, I64: []int64{3}}
	if err := safetensors.Save(filepath.Join(dir, WeightsName), bad, nil); err != nil {
		t.Fatal(err)
	}
	m3 := intModel()
	if _, err := Load(m3, dir); err == nil || !strings.Contains(err.Error(), "int_") {
		t.Errorf("float/integer swap: %v", err)
	}
}
