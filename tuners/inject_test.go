package tuners

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
)

// fakeLayer is a minimal Layer: it records its adapters.
type fakeLayer struct {
	base     nn.Module
	method   string
	adapters []string
}

func (f *fakeLayer) Children() []nn.Child {
	return []nn.Child{{Name: "base_layer", Module: f.base}}
}
func (f *fakeLayer) Params() []nn.Param                      { return nil }
func (f *fakeLayer) SetChild(name string, _ nn.Module) error { return fmt.Errorf("no %q", name) }
func (f *fakeLayer) Base() nn.Module                         { return f.base }
func (f *fakeLayer) Method() string                          { return f.method }
func (f *fakeLayer) Adapters() []string                      { return slices.Clone(f.adapters) }
func (f *fakeLayer) SetActive([]string)                      {}
func (f *fakeLayer) Active() []string                        { return nil }
func (f *fakeLayer) SetTrainable(string, bool)               {}
func (f *fakeLayer) SetDisabled(bool)                        {}
func (f *fakeLayer) Disabled() bool                          { return false }
func (f *fakeLayer) Merge([]string, bool) error              { return nil }
func (f *fakeLayer) Unmerge() error                          { return nil }
func (f *fakeLayer) Merged() []string                        { return nil }
func (f *fakeLayer) AdapterParams(string) []nn.Param         { return nil }
func (f *fakeLayer) Delete(a string) error {
	i := slices.Index(f.adapters, a)
	if i < 0 {
		return fmt.Errorf("no adapter %q", a)
	}
	f.adapters = slices.Delete(f.adapters, i, i+1)
	return nil
}

// fakeMethod wraps Linear layers; it fails on paths listed in failOn.
type fakeMethod struct {
	typ      string
	failOn   string
	prepared []string
}

func (f *fakeMethod) Type() string      { return f.typ }
func (f *fakeMethod) Prefix() string    { return "fake_" }
func (f *fakeMethod) NewConfig() Config { return &targetOnly{BaseConfig: BaseConfig{PeftType: f.typ}} }
func (f *fakeMethod) Prepare(_ nn.Module, _ Config, _ string, ts []Target) (*Shared, error) {
	f.prepared = nil
	for _, t := range ts {
		f.prepared = append(f.prepared, t.Path)
	}
	return &Shared{State: "state"}, nil
}
func (f *fakeMethod) Wrap(t Target) (Layer, error) {
	if t.Shared == nil || t.Shared.State != "state" {
		return nil, errors.New("Shared not passed on")
	}
	if t.Path == f.failOn {
		return nil, errors.New("boom")
	}
	if l, ok := t.Module.(*fakeLayer); ok {
		l.adapters = append(l.adapters, t.Adapter)
		return l, nil
	}
	if _, ok := t.Module.(*nn.Linear); !ok {
		return nil, fmt.Errorf("unsupported %T", t.Module)
	}
	return &fakeLayer{base: t.Module, method: f.typ, adapters: []string{t.Adapter}}, nil
}

// tinyTree is a Dict model: "model.layers.{0,1}.{q,v}" Linears, a "norm"
// LayerNorm and an "lm_head" Linear.
type tinyTree struct{ *nn.Dict }

func (tinyTree) ModelType() string   { return "llama" }
func (tinyTree) OutputLayer() string { return "lm_head" }

func newTinyTree() tinyTree {
	lin := func() *nn.Linear { return nn.NewLinear(nil, 2, 2, false, nil) }
	layers := nn.NewModuleList()
	for range 2 {
		l := nn.NewDict()
		l.Add("q_proj", lin())
		l.Add("v_proj", lin())
		layers.Append(l)
	}
	inner := nn.NewDict()
	inner.Add("layers", layers)
	inner.Add("norm", nn.NewLayerNorm(nil, 2, 1e-5))
	root := nn.NewDict()
	root.Add("model", inner)
	root.Add("lm_head", lin())
	return tinyTree{root}
}

func adaptedPaths(root nn.Module) map[string][]string {
	out := map[string][]string{}
	_ = WalkTargets(root, func(n Node) error {
		if l, ok := n.Module.(*fakeLayer); ok {
			out[n.Path] = l.Adapters()
		}
		return nil
	})
	return out
}

func TestInject(t *testing.T) {
	root := newTinyTree()
	m := &fakeMethod{typ: "FAKE"}
	cfg := &targetOnly{BaseConfig: BaseConfig{PeftType: "FAKE"}, TargetConfig: TargetConfig{TargetModules: Names("q_proj")}}
	inj, err := Inject(root, m, cfg, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model.layers.0.q_proj", "model.layers.1.q_proj"}
	if !slices.Equal(inj.Targeted, want) || !slices.Equal(m.prepared, want) {
		t.Errorf("Targeted %q, prepared %q; want %q", inj.Targeted, m.prepared, want)
	}
	// A second adapter on overlapping modules is added to the same layers,
	// and the layers' insides ("...q_proj.base_layer") are not targets.
	cfg2 := &targetOnly{BaseConfig: BaseConfig{PeftType: "FAKE"}, TargetConfig: TargetConfig{TargetModules: Pattern(`.*layers\.0\..*`)}}
	if _, err := Inject(root, m, cfg2, "b"); err != nil {
		t.Fatal(err)
	}
	got := adaptedPaths(root)
	if !slices.Equal(got["model.layers.0.q_proj"], []string{"a", "b"}) || !slices.Equal(got["model.layers.0.v_proj"], []string{"b"}) ||
		!slices.Equal(got["model.layers.1.q_proj"], []string{"a"}) || len(got) != 3 {
		t.Errorf("adapters per path = %v", got)
	}
	// Another method may not stack on these layers.
	other := &fakeMethod{typ: "OTHER"}
	cfg3 := &targetOnly{BaseConfig: BaseConfig{PeftType: "OTHER"}, TargetConfig: TargetConfig{TargetModules: Names("q_proj")}}
	if _, err := Inject(root, other, cfg3, "c"); err == nil || !strings.Contains(err.Error(), "already adapted by FAKE") {
		t.Errorf("stacking another method: %v", err)
	}
}

func TestInjectRollsBack(t *testing.T) {
	root := newTinyTree()
	m := &fakeMethod{typ: "FAKE"}
	cfg := &targetOnly{BaseConfig: BaseConfig{PeftType: "FAKE"}, TargetConfig: TargetConfig{TargetModules: Names("q_proj")}}
	if _, err := Inject(root, m, cfg, "a"); err != nil {
		t.Fatal(err)
	}
	m.failOn = "model.layers.1.v_proj"
	cfg2 := &targetOnly{BaseConfig: BaseConfig{PeftType: "FAKE"}, TargetConfig: TargetConfig{TargetModules: Names("q_proj", "v_proj")}}
	_, err := Inject(root, m, cfg2, "b")
	if err == nil || !strings.Contains(err.Error(), "model.layers.1.v_proj") {
		t.Fatalf("err = %v, want the failing path named", err)
	}
	got := adaptedPaths(root)
	want := map[string][]string{"model.layers.0.q_proj": {"a"}, "model.layers.1.q_proj": {"a"}}
	if len(got) != len(want) {
		t.Fatalf("after a failed injection: %v, want %v", got, want)
	}
	for p, w := range want {
		if !slices.Equal(got[p], w) {
			t.Errorf("after a failed injection, %s holds %q, want %q", p, got[p], w)
		}
	}
}

func TestInjectErrors(t *testing.T) {
	tests := []struct {
		name string
		tc   TargetConfig
		want []string
	}{
		{"no match", TargetConfig{TargetModules: Names("k_proj"), LayersToTransform: LayerIndexes{3}, LayersPattern: StringOrList{"layers"}},
			[]string{`["k_proj"]`, "not found", "layers_to_transform [3]", `layers_pattern ["layers"]`}},
		{"all excluded", TargetConfig{TargetModules: Pattern(".*"), ExcludeModules: Pattern(".*")}, []string{"all modules were excluded"}},
		{"matched but excluded", TargetConfig{TargetModules: Names("q_proj"), ExcludeModules: Names("q_proj")}, []string{"no module selected", "exclude_modules"}},
		{"bad regex", TargetConfig{TargetModules: Pattern("(")}, []string{"target_modules"}},
		{"unsupported module", TargetConfig{TargetModules: Names("norm")}, []string{`"model.norm"`, "unsupported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &targetOnly{BaseConfig: BaseConfig{PeftType: "FAKE"}, TargetConfig: tt.tc}
			_, err := Inject(newTinyTree(), &fakeMethod{typ: "FAKE"}, cfg, "a")
			if err == nil {
				t.Fatal("Inject succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	cfg := &targetOnly{BaseConfig: BaseConfig{PeftType: "FAKE"}, TargetConfig: TargetConfig{TargetModules: Names("k_proj")}}
	if _, err := Inject(newTinyTree(), &fakeMethod{typ: "FAKE"}, cfg, "a"); !errors.Is(err, ErrNoTarget) {
		t.Errorf("no match: %v does not wrap ErrNoTarget", err)
	}
}

func TestResolveTargets(t *testing.T) {
	root := newTinyTree()
	tc := &TargetConfig{TargetModules: Pattern("All-Linear")}
	if err := ResolveTargets(root, "LORA", tc); err != nil {
		t.Fatal(err)
	}
	want := []string{"model.layers.0.q_proj", "model.layers.0.v_proj", "model.layers.1.q_proj", "model.layers.1.v_proj"}
	if !slices.Equal(tc.TargetModules.Names, want) {
		t.Errorf("all-linear = %q, want %q (no lm_head: the model names it its output layer)", tc.TargetModules.Names, want)
	}
	tc = &TargetConfig{}
	if err := ResolveTargets(root, "LORA", tc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tc.TargetModules.Names, []string{"q_proj", "v_proj"}) {
		t.Errorf("default for llama = %v", tc.TargetModules)
	}
	tc = &TargetConfig{}
	if err := ResolveTargets(nn.NewDict(), "LORA", tc); err == nil || !strings.Contains(err.Error(), "target_modules") {
		t.Errorf("no model type: %v", err)
	}
	// Without OutputLayerer every linear layer counts, as on the golden models.
	tc = &TargetConfig{TargetModules: Pattern(AllLinear)}
	if err := ResolveTargets(root.Dict, "LORA", tc); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tc.TargetModules.Names, "lm_head") {
		t.Errorf("all-linear without OutputLayerer left out lm_head: %q", tc.TargetModules.Names)
	}
}
