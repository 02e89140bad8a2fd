package xlora

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// refScalings is PEFT's XLoraClassifier.forward in float64 (eval mode).
func refScalings(c *Classifier, hidden []float64, b, s int) []float64 {
	cfg := c.cfg
	x := hidden
	in := cfg.Hidden()
	rows := b * s
	for _, l := range c.Layers.Layers {
		lin, ok := l.(*nn.Linear)
		if !ok {
			if a, ok := l.(*nn.Activation); ok && a.Name == "relu" {
				for i := range x {
					x[i] = math.Max(x[i], 0)
				}
			}
			continue
		}
		w, bias := layertest.To64(lin.Weight.Data()), layertest.To64(lin.Bias.Data())
		out := lin.Weight.Dim(0)
		y := make([]float64, rows*out)
		for r := range rows {
			for o := range out {
				v := bias[o]
				for i := range in {
					v += x[r*in+i] * w[o*in+i]
				}
				y[r*out+o] = v
			}
		}
		x, in = y, out
	}
	L, n := c.NLayers, c.Experts
	res := make([]float64, rows*L*n)
	for r := range rows {
		for l := range L {
			src := x[r*in : r*in+n]
			if cfg.LayerwiseScalings {
				src = x[r*in+l*n : r*in+l*n+n]
			}
			dst := res[(r*L+l)*n : (r*L+l+1)*n]
			copy(dst, src)
			if cfg.EnableSoftmax {
				m := math.Inf(-1)
				for _, v := range dst {
					m = math.Max(m, v/cfg.SoftmaxTemperature)
				}
				var sum float64
				for i, v := range dst {
					dst[i] = math.Exp(v/cfg.SoftmaxTemperature - m)
					sum += dst[i]
				}
				for i := range dst {
					dst[i] /= sum
				}
			}
		}
	}
	return res
}

func TestClassifierReference(t *testing.T) {
	for _, c := range []struct {
		depth     int
		layerwise bool
		softmax   bool
		temp      float64
		dropout   float64
	}{{1, false, true, 1, 0.2}, {1, true, true, 0.5, 0}, {2, false, false, 1, 0.2}, {3, true, true, 2, 0.1}, {2, true, false, 1, 0}} {
		cfg := NewConfig()
		h := 6
		cfg.HiddenSize, cfg.XLoRADepth, cfg.XLoRASize, cfg.LayerwiseScalings = &h, c.depth, 5, c.layerwise
		cfg.EnableSoftmax, cfg.SoftmaxTemperature, cfg.XLoRADropoutP = c.softmax, c.temp, c.dropout
		clf, err := NewClassifier(nil, cfg, 3, 4, nn.NewRNG(7))
		if err != nil {
			t.Fatal(err)
		}
		nn.SetTraining(clf, false)
		// PEFT's nn view: Linear layers at the Sequential indexes of
		// Linear, ReLU, [Dropout], ..., Linear.
		names := nn.StateDictKeys(clf)
		per := 2
		if c.dropout > 0 {
			per = 3
		}
		last := "layers." + string(rune('0'+per*(c.depth-1))) + ".weight"
		if !strings.Contains(strings.Join(names, " "), last) || len(names) != 2*c.depth {
			t.Fatalf("%+v: state dict keys %q, want %d tensors ending with %s", c, names, 2*c.depth, last)
		}
		x := layertest.Rand(rand.New(rand.NewPCG(1, 9)), 1, 2, 3, h)
		got, err := clf.Scalings(x)
		if err != nil {
			t.Fatal(err)
		}
		if sh := got.Shape(); sh[0] != 2 || sh[1] != 3 || sh[2] != 4 || sh[3] != 3 {
			t.Fatalf("shape %v", sh)
		}
		if err := layertest.Close(got.Data(), refScalings(clf, layertest.To64(x.Data()), 2, 3), 1e-5, 1e-4); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		// Gradients of every classifier tensor.
		params := nn.Parameters(clf)
		w := layertest.Rand(rand.New(rand.NewPCG(2, 2)), 1, got.Shape()...)
		if err := nn.GradCheck(func() *nn.Tensor {
			s, _ := clf.Scalings(x)
			return nn.SumAll(nn.Mul(s, w))
		}, params, 1e-3, 2e-2); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

func TestLayerScalings(t *testing.T) {
	k := 2
	vals := []float32{0.1, 0.5, 0.3, 0.2 /**/, 0.4, 0.4, 0.1, 0.05 /**/, 0.9, 0.0, 0.05, 0.05}
	// [batch 1, seq 1, layers 3, experts 4]
	s := nn.New(nil, vals, 1, 1, 3, 4)
	for _, c := range []struct {
		topk, smTopk bool
		layer        int
		want         []float64
	}{
		{false, false, 1, []float64{0.4, 0.4, 0.1, 0.05}},
		{true, false, 0, []float64{0, 0.5, 0.3, 0}},
		{true, false, 1, []float64{0.4, 0.4, 0, 0}},
		{true, true, 0, []float64{0, math.Exp(0.5) / (math.Exp(0.5) + math.Exp(0.3)), math.Exp(0.3) / (math.Exp(0.5) + math.Exp(0.3)), 0}},
		{false, true, 2, []float64{math.Exp(0.9) / (math.Exp(0.9) + 2*math.Exp(0.05)), 0, math.Exp(0.05) / (math.Exp(0.9) + 2*math.Exp(0.05)), math.Exp(0.05) / (math.Exp(0.9) + 2*math.Exp(0.05))}},
	} {
		cfg := NewConfig()
		if c.topk {
			cfg.TopKLoRA = &k
		}
		cfg.EnableSoftmaxTopK = c.smTopk
		got := LayerScalings(cfg, s, c.layer)
		if sh := got.Shape(); len(sh) != 3 || sh[2] != 4 {
			t.Fatalf("shape %v", sh)
		}
		if err := layertest.Close(got.Data(), c.want, 1e-6, 1e-5); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

func TestConfigJSON(t *testing.T) {
	data := []byte(`{"peft_type": "XLORA", "hidden_size": 16, "adapters": {"b": "/x/b", "a": "/x/a"}, "xlora_depth": 2, "top_k_lora": 1, "future_field": 3}`)
	cfg := NewConfig()
	if err := tuners.UnmarshalConfig(data, cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Adapters) != 2 || cfg.Adapters[0].Name != "b" || cfg.Adapters[1].Path != "/x/a" || *cfg.TopKLoRA != 1 || cfg.XLoRASize != 2048 || !cfg.EnableSoftmax {
		t.Fatalf("parsed %+v", cfg)
	}
	out, err := tuners.MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"adapters": {"b": "/x/b", "a": "/x/a"}`, `"xlora_dropout_p": 0.2`, `"global_scaling_weight": 1.0`, `"scaling_pass_value": 0.0`, `"future_field": 3`} {
		if !strings.Contains(strings.ReplaceAll(string(out), `":"`, `": "`), want) && !strings.Contains(compact(out), compact([]byte(want))) {
			t.Errorf("config lacks %s:\n%s", want, out)
		}
	}
	if NewConfig().Hidden() != 4096 {
		t.Fatal("null hidden_size is not 4096")
	}
	zero := 0
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.XLoRADepth = 0 }, "xlora_depth"},
		{func(c *Config) { c.TopKLoRA = &zero }, "top_k_lora"},
		{func(c *Config) { c.SoftmaxTemperature = 0 }, "softmax_temperature"},
		{func(c *Config) { c.XLoRADropoutP = 1 }, "xlora_dropout_p"},
		{func(c *Config) { c.HiddenSize = &zero }, "hidden_size"},
		{func(c *Config) { c.Adapters = Experts{{"a", "1"}, {"a", "2"}} }, "adapters"},
	} {
		cfg := NewConfig()
		c.mod(cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %s, got %v", c.want, err)
		}
	}
}

func compact(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return strings.Join(strings.Fields(string(b)), "")
	}
	return strings.Join(strings.Fields(string(b)), "")
}
