package adaptionprompt_test

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adaptionprompt"
	"github.com/gopeft/gopeft/tuners/internal/prompttest"
)

func config(length, layers int) *adaptionprompt.Config {
	c := adaptionprompt.NewConfig()
	c.AdapterLen, c.AdapterLayers = length, layers
	return c
}

func newModel(t *testing.T, c *adaptionprompt.Config) (*peft.Model, *llama.Model) {
	t.Helper()
	base := prompttest.Base(t, 6)
	m, err := peft.New(base, c)
	if err != nil {
		t.Fatal(err)
	}
	return m, base
}

func encoder(m *peft.Model) *adaptionprompt.Encoder {
	return m.PromptEncoder("default").(*adaptionprompt.Encoder)
}

// openGates gives every layer a non-zero gate (they start at zero).
func openGates(m *peft.Model) {
	for i, l := range encoder(m).Layers() {
		l.Gate.CopyFromHost([]float32{0.7 - 0.4*float32(i)})
	}
}

func logits(t *testing.T, m *peft.Model) []float32 {
	t.Helper()
	out, err := m.Forward(prompttest.Input())
	if err != nil {
		t.Fatal(err)
	}
	return out.Data()
}

func baseLogits(t *testing.T, base *llama.Model) []float32 {
	t.Helper()
	out, err := base.Forward(prompttest.IDs, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	return out.Data()
}

func TestTopLayers(t *testing.T) {
	m, _ := newModel(t, config(3, 1))
	ls := encoder(m).Layers()
	if len(ls) != 1 || ls[0].Path != "model.layers.1.self_attn" {
		t.Fatalf("adapted layers %+v, want the top one", ls)
	}
	if s := ls[0].Prompt.Shape(); !slices.Equal(s, []int{1, 3, 16}) {
		t.Errorf("prompt shape %v", s)
	}
	if _, err := peft.New(prompttest.Base(t, 6), config(3, 3)); err == nil || !strings.Contains(err.Error(), "adapter_layers") {
		t.Errorf("3 adapter layers on a 2-layer model: %v", err)
	}
}

// TestZeroGateIsBase checks PEFT's zero-init gate: a new adapter leaves the
// output unchanged.
func TestZeroGateIsBase(t *testing.T) {
	m, base := newModel(t, config(3, 2))
	if err := prompttest.Close(logits(t, m), baseLogits(t, base), 0); err != nil {
		t.Error(err)
	}
	openGates(m)
	if prompttest.Close(logits(t, m), baseLogits(t, prompttest.Base(t, 6)), 1e-3) == nil {
		t.Error("open gates changed nothing")
	}
}

// ref64 is the adapter term in float64, written from PEFT's definition,
// installed as the extension in place of the adapter's own.
type ref64 struct {
	prompt, gate []float64
	l            int
}

func linear64(x []float64, rows int, w []float32, out, in int) []float64 {
	y := make([]float64, rows*out)
	for r := range rows {
		for o := range out {
			s := 0.0
			for i := range in {
				s += x[r*in+i] * float64(w[o*in+i])
			}
			y[r*out+o] = s
		}
	}
	return y
}

func (r *ref64) Extend(a *llama.Attention, _, q *nn.Tensor) *nn.Tensor {
	b, nh, s, d := q.Dim(0), a.Heads(), q.Dim(2), a.HeadDim()
	nkv := a.KVHeads()
	hidden := len(r.prompt) / r.l
	weight := func(l nn.Layer) []float32 { return l.(*nn.Linear).Weight.Data() }
	k := linear64(r.prompt, r.l, weight(a.KProj), nkv*d, hidden)
	v := linear64(r.prompt, r.l, weight(a.VProj), nkv*d, hidden)
	qd := q.Data()
	out := make([]float64, b*s*nh*d)
	for bi := range b {
		for h := range nh {
			g := h / (nh / nkv)
			for si := range s {
				qv := qd[((bi*nh+h)*s+si)*d:][:d]
				sc := make([]float64, r.l)
				mx := math.Inf(-1)
				for j := range r.l {
					dot := 0.0
					for x := range d {
						dot += float64(qv[x]) * k[j*nkv*d+g*d+x]
					}
					sc[j] = dot / math.Sqrt(float64(d))
					mx = math.Max(mx, sc[j])
				}
				z := 0.0
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					z += sc[j]
				}
				for j := range sc {
					for x := range d {
						out[(bi*s+si)*nh*d+h*d+x] += r.gate[0] * sc[j] / z * v[j*nkv*d+g*d+x]
					}
				}
			}
		}
	}
	o := linear64(out, b*s, weight(a.OProj), hidden, nh*d)
	f := make([]float32, len(o))
	for i, x := range o {
		f[i] = float32(x)
	}
	return nn.New(q.Backend(), f, b, s, hidden)
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// TestReference checks the whole model against the base model whose
// adapted layers run the float64 reference term instead.
func TestReference(t *testing.T) {
	m, base := newModel(t, config(3, 2))
	openGates(m)
	got := logits(t, m)
	var want []float32
	if err := m.DisableAdapters(func() error {
		for _, l := range encoder(m).Layers() {
			attn := attention(base, l.Path)
			attn.Extension = &ref64{prompt: to64(l.Prompt.Data()), gate: to64(l.Gate.Data()), l: l.Prompt.Dim(1)}
		}
		want = baseLogits(t, base)
		for _, l := range encoder(m).Layers() {
			attention(base, l.Path).Extension = nil
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := prompttest.Close(got, want, 1e-5); err != nil {
		t.Error(err)
	}
}

func attention(base *llama.Model, path string) *llama.Attention {
	var out *llama.Attention
	_ = nn.Walk(base, func(p string, m nn.Module) error {
		if a, ok := m.(*llama.Attention); ok && p == path {
			out = a
		}
		return nil
	})
	return out
}

// TestEnableDisableDelete checks that the prompts act only while the
// adapter is enabled and are removed with it.
func TestEnableDisableDelete(t *testing.T) {
	m, base := newModel(t, config(2, 2))
	openGates(m)
	with := logits(t, m)
	pristine := baseLogits(t, prompttest.Base(t, 6))
	if err := m.DisableAdapters(func() error {
		out, err := base.Forward(prompttest.IDs, 2, 5)
		if err != nil {
			return err
		}
		return prompttest.Close(out.Data(), pristine, 0)
	}); err != nil {
		t.Fatal(err)
	}
	if err := prompttest.Close(logits(t, m), with, 0); err != nil {
		t.Errorf("re-enabled: %v", err)
	}
	other := config(2, 1)
	if err := m.AddAdapter(other, peft.AdapterName("other")); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteAdapter("default"); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteAdapter("other"); err != nil {
		t.Fatal(err)
	}
	for _, b := range base.Decoder.Layers.Blocks {
		if b.SelfAttn.Extension != nil {
			t.Error("a deleted adapter left its extension")
		}
	}
}

func TestGradCheck(t *testing.T) {
	m, _ := newModel(t, config(2, 2))
	openGates(m)
	var params []*nn.Tensor
	for _, p := range nn.NamedParameters(encoder(m)) {
		params = append(params, p.T)
	}
	f := func() *nn.Tensor {
		out, err := m.Forward(prompttest.Input())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := nn.GradCheck(f, params, 1e-3, 2e-2); err != nil {
		t.Error(err)
	}
}

func TestGeneration(t *testing.T) {
	m, _ := newModel(t, config(3, 2))
	openGates(m)
	prompttest.Generation(t, m, -1)
}

func TestSaveLoad(t *testing.T) {
	m, _ := newModel(t, config(3, 2))
	openGates(m)
	prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 6) }, nil)
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	ts, _, err := safetensors.ReadAll(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range ts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{
		"base_model.model.model.layers.0.self_attn.adaption_gate", "base_model.model.model.layers.0.self_attn.adaption_prompt",
		"base_model.model.model.layers.1.self_attn.adaption_gate", "base_model.model.model.layers.1.self_attn.adaption_prompt",
	}
	if !slices.Equal(keys, want) {
		t.Errorf("saved keys %v, want %v", keys, want)
	}
	cfg, err := peft.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tuners.MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"target_modules": "self_attn"`, `"adapter_len": 3`, `"adapter_layers": 2`, `"peft_type": "ADAPTION_PROMPT"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("adapter_config.json lacks %s:\n%s", key, data)
		}
	}
	if strings.Contains(string(data), "num_virtual_tokens") {
		t.Errorf("adapter_config.json has prompt-learning fields:\n%s", data)
	}
}

func TestTrain(t *testing.T) {
	m, _ := newModel(t, config(3, 2))
	prompttest.Train(t, m, nil)
}

func TestConfigErrors(t *testing.T) {
	bad := "attn"
	for _, tc := range []struct {
		edit  func(c *adaptionprompt.Config)
		field string
	}{
		{func(c *adaptionprompt.Config) { c.AdapterLen = 0 }, "adapter_len"},
		{func(c *adaptionprompt.Config) { c.AdapterLayers = 0 }, "adapter_layers"},
		{func(c *adaptionprompt.Config) { c.TargetModules = &bad }, "target_modules"},
	} {
		c := config(2, 1)
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%v, want an error naming %s", err, tc.field)
		}
	}
}

func TestMask(t *testing.T) {
	m, _ := newModel(t, config(3, 2))
	openGates(m)
	prompttest.Mask(t, m, nil)
}

// TestUnload checks that the unloaded model is the plain base model.
func TestUnload(t *testing.T) {
	m, base := newModel(t, config(2, 2))
	openGates(m)
	root, err := m.Unload()
	if err != nil {
		t.Fatal(err)
	}
	if root != base {
		t.Fatal("Unload returned another model")
	}
	if err := prompttest.Close(baseLogits(t, base), baseLogits(t, prompttest.Base(t, 6)), 0); err != nil {
		t.Errorf("unloaded model: %v", err)
	}
}
