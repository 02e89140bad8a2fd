package glora

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// randomize gives every trainable tensor of adapter name random values.
func randomize(l *Layer, name string, rng *rand.Rand) {
	a, _ := l.Get(name)
	for _, p := range a.paths {
		for _, t := range p.trainable() {
			t.CopyFrom(layertest.Rand(rng, 0.3, t.Shape()...))
		}
	}
}

// newTestLayer wraps a random Linear(in, out) with adapter "default" made
// from cfg, with random values in every trainable tensor.
func newTestLayer(t *testing.T, in, out int, bias bool, cfg *Config) (*Layer, *nn.Linear) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in)}
	if bias {
		base.Bias = layertest.Rand(rng, 0.5, out)
	}
	tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l := tl.(*Layer)
	randomize(l, "default", rng)
	return l, base
}

// dense returns a term's value broadcast to rows x cols (cols 0: [rows]),
// in float64.
func dense(p *path, rows, cols int) []float64 {
	n := rows * max(cols, 1)
	out := make([]float64, n)
	switch p.kind {
	case PathLoRA:
		xd, xu := layertest.To64(p.xd.Data()), layertest.To64(p.xu.Data())
		r := p.xd.Dim(1)
		for i := range rows {
			for j := range max(cols, 1) {
				for k := range r {
					out[i*max(cols, 1)+j] += xd[i*r+k] * xu[k*max(cols, 1)+j]
				}
			}
		}
	case PathVector:
		x := layertest.To64(p.x.Data())
		for i := range rows {
			for j := range max(cols, 1) {
				out[i*max(cols, 1)+j] = x[i]
			}
		}
	case PathConstant:
		for i := range out {
			out[i] = float64(p.x.Data()[0])
		}
	}
	return out
}

// reference is base(x) plus, for each adapter in names,
// x (W0*A + B)^T + (b0*D + E + W0 C), in float64.
func reference(l *Layer, names []string, x *nn.Tensor) []float64 {
	in, out := l.in, l.out
	w := layertest.To64(l.base.Weight.Data())
	var b []float64
	if l.base.Bias != nil {
		b = layertest.To64(l.base.Bias.Data())
	}
	weff := slices.Clone(w)
	beff := make([]float64, out)
	copy(beff, b)
	for _, n := range names {
		a, _ := l.Get(n)
		A, B := dense(a.termA(), out, in), dense(a.termB(), out, in)
		for i := range weff {
			weff[i] += w[i]*A[i] + B[i]
		}
		if b != nil {
			C, D, E := dense(a.termC(), in, 1), dense(a.termD(), out, 0), dense(a.termE(), out, 0)
			for o := range out {
				v := b[o]*D[o] + E[o]
				for i := range in {
					v += w[o*in+i] * C[i]
				}
				beff[o] += v
			}
		}
	}
	xs := layertest.To64(x.Data())
	rows := len(xs) / in
	y := make([]float64, rows*out)
	for s := range rows {
		for o := range out {
			v := beff[o]
			for i := range in {
				v += xs[s*in+i] * weff[o*in+i]
			}
			y[s*out+o] = v
		}
	}
	return y
}

// configs lists every combination of term kinds.
func configs() []*Config {
	var cs []*Config
	for _, ab := range []string{PathLoRA, PathVector, PathConstant, PathNone} {
		for _, c := range []string{PathLoRA, PathVector, PathNone} {
			for _, de := range []string{PathVector, PathConstant, PathNone} {
				cfg := NewConfig()
				cfg.R, cfg.ConfigAB, cfg.ConfigC, cfg.ConfigDE, cfg.InitWeights = 2, ab, c, de, false
				cs = append(cs, cfg)
			}
		}
	}
	return cs
}

func TestLayer(t *testing.T) {
	for _, bias := range []bool{true, false} {
		for _, cfg := range configs() {
			name := fmt.Sprintf("bias=%v/%s,%s,%s", bias, cfg.ConfigAB, cfg.ConfigC, cfg.ConfigDE)
			t.Run(name, func(t *testing.T) {
				l, base := newTestLayer(t, 5, 4, bias, cfg)
				a, _ := l.Get("default")
				x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 3, 5)
				if err := layertest.Close(l.Forward(x).Data(), reference(l, []string{"default"}, x), 1e-5, 1e-5); err != nil {
					t.Fatalf("forward vs float64 reference: %v", err)
				}
				var params []*nn.Tensor
				for _, p := range a.paths {
					params = append(params, p.trainable()...)
				}
				if len(params) > 0 {
					layertest.Grad(t, l, x, params)
				}
				layertest.Disable(t, l, base, x)
				checkMerge(t, l, x, []string{"default"})
			})
		}
	}
}

// checkMerge merges the active adapters (safe), compares the output with
// the float64 reference of the unmerged layer, unmerges and checks that the
// base weights come back.
func checkMerge(t *testing.T, l *Layer, x *nn.Tensor, active []string) {
	t.Helper()
	want := reference(l, active, x)
	w0 := l.base.Weight.Data()
	var b0 []float32
	if l.base.Bias != nil {
		b0 = l.base.Bias.Data()
	}
	if err := l.Merge(nil, true); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("merged forward: %v", err)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if len(l.Merged()) != 0 {
		t.Fatalf("still merged: %q", l.Merged())
	}
	if err := layertest.Close(l.base.Weight.Data(), layertest.To64(w0), 1e-5, 1e-5); err != nil {
		t.Fatalf("unmerge: weight: %v", err)
	}
	if b0 != nil {
		if err := layertest.Close(l.base.Bias.Data(), layertest.To64(b0), 1e-5, 1e-5); err != nil {
			t.Fatalf("unmerge: bias: %v", err)
		}
	}
}

func TestSeveralAdapters(t *testing.T) {
	cfg := NewConfig()
	cfg.R, cfg.InitWeights = 2, false
	l, _ := newTestLayer(t, 5, 4, true, cfg)
	other := NewConfig()
	other.R, other.ConfigAB, other.ConfigDE, other.InitWeights = 3, PathVector, PathVector, false
	if _, err := (Method{}).Wrap(tuners.Target{Path: "lin", Module: l, Config: other, Adapter: "other"}); err != nil {
		t.Fatal(err)
	}
	randomize(l, "other", rand.New(rand.NewPCG(9, 9)))
	both := []string{"default", "other"}
	l.SetActive(both)
	x := layertest.Rand(rand.New(rand.NewPCG(3, 4)), 1, 3, 5)
	if err := layertest.Close(l.Forward(x).Data(), reference(l, both, x), 1e-5, 1e-5); err != nil {
		t.Fatalf("two active adapters: %v", err)
	}
	checkMerge(t, l, x, both)

	// Merging one adapter after another re-merges both against W0.
	want := reference(l, both, x)
	w0 := l.base.Weight.Data()
	if err := l.Merge([]string{"default"}, false); err != nil {
		t.Fatal(err)
	}
	if err := l.Merge([]string{"other"}, false); err != nil {
		t.Fatal(err)
	}
	if got := l.Merged(); !slices.Equal(got, both) {
		t.Fatalf("merged %q", got)
	}
	if err := layertest.Close(l.Forward(x).Data(), want, 1e-5, 1e-5); err != nil {
		t.Fatalf("merged one after the other: %v", err)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(l.base.Weight.Data(), layertest.To64(w0), 1e-5, 1e-5); err != nil {
		t.Fatalf("unmerge: %v", err)
	}

	// Per-row adapters: row 0 default, row 1 base, row 2 other.
	if err := l.SetBatchAdapters([]string{"default", tuners.BaseAdapterName, "other"}); err != nil {
		t.Fatal(err)
	}
	got := l.Forward(x).Data()
	if err := l.SetBatchAdapters(nil); err != nil {
		t.Fatal(err)
	}
	for row, names := range [][]string{{"default"}, nil, {"other"}} {
		xr := nn.Slice(x, 0, row, row+1)
		if err := layertest.Close(got[row*4:(row+1)*4], reference(l, names, xr), 1e-5, 1e-5); err != nil {
			t.Errorf("per-row adapters, row %d: %v", row, err)
		}
	}
	if err := l.Merge(nil, false); err != nil {
		t.Fatal(err)
	}
	if err := l.SetBatchAdapters([]string{"default", "other", "default"}); err == nil {
		t.Error("per-row adapters while merged: no error")
	}
}

func TestSavedNames(t *testing.T) {
	for _, tt := range []struct {
		ab, c, de string
		bias      bool
		want      []string
	}{
		{PathLoRA, PathLoRA, PathConstant, true, []string{
			"glora_A.Xd", "glora_A.Xu", "glora_B.Xd", "glora_B.Xu", "glora_C.Xd", "glora_C.Xu", "glora_D.X", "glora_E.X"}},
		{PathVector, PathVector, PathVector, true, []string{"glora_A.X", "glora_B.X", "glora_C.X", "glora_D.X", "glora_E.X"}},
		{PathConstant, PathLoRA, PathConstant, false, []string{"glora_A.X", "glora_B.X", "glora_C.zeros", "glora_D.zeros", "glora_E.zeros"}},
		{PathNone, PathNone, PathNone, true, []string{"glora_A.zeros", "glora_B.zeros", "glora_C.zeros", "glora_D.zeros", "glora_E.zeros"}},
	} {
		cfg := NewConfig()
		cfg.R, cfg.ConfigAB, cfg.ConfigC, cfg.ConfigDE = 2, tt.ab, tt.c, tt.de
		l, _ := newTestLayer(t, 5, 4, tt.bias, cfg)
		var names []string
		for _, p := range l.AdapterParams("default") {
			names = append(names, p.Name)
			if p.T.RequiresGrad() == (p.Name[len(p.Name)-5:] == "zeros") {
				t.Errorf("%s: requires grad %v", p.Name, p.T.RequiresGrad())
			}
		}
		if !slices.Equal(names, tt.want) {
			t.Errorf("%s/%s/%s bias %v: saved %q, want %q", tt.ab, tt.c, tt.de, tt.bias, names, tt.want)
		}
		// The live names are PEFT's: parameters and zero buffers.
		keys := nn.StateDictKeys(l)
		for _, n := range tt.want {
			live := tuners.InsertAdapterName(n, "glora_", "default")
			if !slices.Contains(keys, live) {
				t.Errorf("state dict lacks %s (has %q)", live, keys)
			}
		}
	}
}

func TestInitNoOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := &nn.Linear{Weight: layertest.Rand(rng, 1, 4, 3), Bias: layertest.Rand(rng, 1, 4)}
	for _, cfg := range configs() {
		cfg.InitWeights = true
		l, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		x := layertest.Rand(rng, 1, 2, 3)
		if err := layertest.Close(l.(*Layer).Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 0, 0); err != nil {
			t.Errorf("%s/%s/%s: a fresh adapter is not a no-op: %v", cfg.ConfigAB, cfg.ConfigC, cfg.ConfigDE, err)
		}
	}
	if _, err := (Method{}).Wrap(tuners.Target{Path: "c", Module: &nn.Conv1D{Weight: nn.Zeros(nil, 3, 4)}, Config: NewConfig(), Adapter: "a"}); err == nil {
		t.Error("wrapping a Conv1D: no error")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(c *Config){
		"r":                   func(c *Config) { c.R = 0 },
		"config_A_B":          func(c *Config) { c.ConfigAB = "dense" },
		"config_C":            func(c *Config) { c.ConfigC = PathConstant },
		"config_D_E":          func(c *Config) { c.ConfigDE = PathLoRA },
		"bias":                func(c *Config) { c.Bias = "lora_only" },
		"layers_to_transform": func(c *Config) { c.LayersToTransform = tuners.LayerIndexes{1} },
		"exclude_modules":     func(c *Config) { c.ExcludeModules = tuners.Pattern("x") },
	} {
		c := NewConfig()
		edit(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := NewConfig()
	if err := tuners.UnmarshalConfig([]byte(`{"peft_type": "GLORA", "r": 3, "config_A_B": "vector", "config_C": "none", "config_D_E": "vector", "init_weights": false, "future": 1}`), c); err != nil {
		t.Fatal(err)
	}
	out, err := tuners.MarshalConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	c2 := NewConfig()
	if err := tuners.UnmarshalConfig(out, c2); err != nil {
		t.Fatal(err)
	}
	if c2.R != 3 || c2.ConfigAB != PathVector || c2.ConfigC != PathNone || c2.ConfigDE != PathVector || c2.InitWeights || string(c2.Extra["future"]) != "1" {
		t.Errorf("round trip gave %+v from\n%s", c2, out)
	}
}
