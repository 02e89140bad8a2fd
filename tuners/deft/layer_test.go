package deft

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// refWeight returns the adapted weight (I - Q right^T) W + Q (scaling R)
// [out, in] in float64 from the adapter's tensors, with Q from gonum's
// Householder QR for "qr".
func refWeight(a *adapter, w []float64, out, in int) []float64 {
	p := mat.NewDense(out, a.r, layertest.To64(a.p.Data()))
	var q, right mat.Dense
	if a.method == DecompositionQR {
		var qr mat.QR
		qr.Factorize(p)
		var full mat.Dense
		qr.QTo(&full)
		q.CloneFrom(full.Slice(0, out, 0, a.r))
		right.CloneFrom(&q)
	} else {
		q.CloneFrom(p)
		right.Apply(func(_, _ int, v float64) float64 { return math.Max(v, 0) }, p)
	}
	W := mat.NewDense(out, in, w)
	var f, d mat.Dense
	f.Mul(right.T(), W) // [r, in]
	if a.para {
		d.Scale(-1, &f)
	} else {
		R := mat.NewDense(a.r, in, layertest.To64(a.rr.Data()))
		d.Scale(float64(a.scaling), R)
		d.Sub(&d, &f)
	}
	var delta mat.Dense
	delta.Mul(&q, &d)
	res := make([]float64, out*in)
	for i := range out {
		for j := range in {
			res[i*in+j] = w[i*in+j] + delta.At(i, j)
		}
	}
	return res
}

func TestLayer(t *testing.T) {
	alpha := 4.0
	for _, tc := range []struct {
		name   string
		method string
		conv   bool
		para   bool
		alpha  *float64
	}{
		{"relu", DecompositionReLU, false, false, nil},
		{"qr", DecompositionQR, false, false, nil},
		{"qr-conv1d", DecompositionQR, true, false, &alpha},
		{"relu-para", DecompositionReLU, false, true, nil},
		{"relu-alpha-conv1d", DecompositionReLU, true, false, &alpha},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const in, out = 6, 5
			rng := rand.New(rand.NewPCG(5, 6))
			var base nn.Layer
			var weight *nn.Tensor
			if tc.conv {
				c := &nn.Conv1D{Weight: layertest.Rand(rng, 0.5, in, out), Bias: layertest.Rand(rng, 0.1, out)}
				base, weight = c, c.Weight
			} else {
				l := &nn.Linear{Weight: layertest.Rand(rng, 0.5, out, in), Bias: layertest.Rand(rng, 0.1, out)}
				base, weight = l, l.Weight
			}
			cfg := NewConfig()
			cfg.R, cfg.DecompositionMethod, cfg.Para, cfg.Alpha, cfg.InitWeights = 3, tc.method, tc.para, tc.alpha, false
			tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
			if err != nil {
				t.Fatal(err)
			}
			l := tl.(*Layer)
			a, _ := l.Get("default")
			// Make P large enough that relu and the QR signs matter.
			a.p.CopyFrom(layertest.Rand(rng, 1, out, a.r))
			wd := weight.Data()
			w := make([]float64, out*in)
			for i := range out {
				for j := range in {
					if tc.conv {
						w[i*in+j] = float64(wd[j*out+i])
					} else {
						w[i*in+j] = float64(wd[i*in+j])
					}
				}
			}
			want := refWeight(a, w, out, in)
			x := layertest.Rand(rng, 1, 2, 3, in)
			xs := layertest.To64(x.Data())
			bias := layertest.To64(l.bias.Data())
			y := make([]float64, 6*out)
			for s := range 6 {
				for o := range out {
					v := bias[o]
					for i := range in {
						v += xs[s*in+i] * want[o*in+i]
					}
					y[s*out+o] = v
				}
			}
			if err := layertest.Close(l.Forward(x).Data(), y, 2e-5, 2e-5); err != nil {
				t.Fatalf("forward vs float64 reference: %v", err)
			}
			params := []*nn.Tensor{a.p}
			if a.rr != nil {
				params = append(params, a.rr)
			}
			layertest.Grad(t, l, x, params)
			layertest.Disable(t, l, base, x)
			layertest.MergeUnmerge(t, l, weight, x, 2e-5)
		})
	}
}

func TestIdentityInit(t *testing.T) {
	for _, method := range []string{DecompositionReLU, DecompositionQR} {
		rng := rand.New(rand.NewPCG(7, 8))
		base := &nn.Linear{Weight: layertest.Rand(rng, 0.5, 4, 6), Bias: layertest.Rand(rng, 0.1, 4)}
		cfg := NewConfig()
		cfg.R, cfg.DecompositionMethod = 8, method // r is capped at out = 4
		tl, err := Method{}.Wrap(tuners.Target{Path: "lin", Module: base, Config: cfg, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		l := tl.(*Layer)
		if a, _ := l.Get("default"); a.r != 4 {
			t.Fatalf("r = %d, want 4 (capped at out)", a.r)
		}
		x := layertest.Rand(rng, 1, 3, 6)
		if err := layertest.Close(l.Forward(x).Data(), layertest.To64(base.Forward(x).Data()), 1e-5, 1e-5); err != nil {
			t.Fatalf("%s: init_weights is not a no-op: %v", method, err)
		}
	}
}

// TestQRSigns checks the differentiable QR against gonum's Householder Q
// (LAPACK's signs), including a square P whose last column LAPACK does
// not reflect.
func TestQRSigns(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, shape := range [][2]int{{6, 3}, {4, 4}} {
		p := layertest.Rand(rng, 1, shape[0], shape[1])
		q := orthonormalize(p).Data()
		var qr mat.QR
		qr.Factorize(mat.NewDense(shape[0], shape[1], layertest.To64(p.Data())))
		var full mat.Dense
		qr.QTo(&full)
		want := make([]float64, 0, shape[0]*shape[1])
		for i := range shape[0] {
			for j := range shape[1] {
				want = append(want, full.At(i, j))
			}
		}
		if err := layertest.Close(q, want, 1e-5, 1e-5); err != nil {
			t.Fatalf("%v: Q vs LAPACK: %v", shape, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, js := range []string{`{"r": 0}`, `{"decomposition_method": "svd"}`, `{"deft_dropout": 2}`,
		`{"bias": "lora_only"}`, `{"init_scale": 1e400}`, `{"layers_pattern": "layers"}`} {
		c := NewConfig()
		err := tuners.UnmarshalConfig([]byte(js), c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: no error", js)
		}
	}
}
