package adalora_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adalora"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

// TestSaveLoadRoundTrip saves an unpruned adapter and loads it back.
func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := adalora.NewConfig()
	cfg.InitR, cfg.TotalStep = 3, 10
	cfg.TargetModules = tuners.Names("0", "2")
	var keys []string
	for _, p := range []string{"0", "2"} {
		for _, n := range []string{"lora_A", "lora_B", "lora_E"} {
			keys = append(keys, "base_model.model."+p+"."+n)
		}
	}
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
}

// TestLoadPrunedPEFTAdapter loads a folder laid out as PEFT saves a pruned
// AdaLoRA adapter (rank_pattern in the config, tensors holding only the
// kept triplets): the layers take the pruned ranks and the output is
// base + B diag(E) A x * alpha / (init_r + 1e-5), computed in float64.
// Masks that disagree with init_r, or keys naming no layer, fail with an
// error naming the key.
func TestLoadPrunedPEFTAdapter(t *testing.T) {
	const in, hidden, out, initR, alpha = 6, 8, 4, 3, 5.0
	rng := rand.New(rand.NewPCG(3, 3))
	write := func(pattern string, ranks map[string]int) string {
		dir := t.TempDir()
		cfg := `{"peft_type": "ADALORA", "init_r": 3, "target_r": 1, "total_step": 10, "lora_alpha": 5,
			"target_modules": ["0", "2"], "rank_pattern": ` + pattern + `}`
		if err := os.WriteFile(filepath.Join(dir, peft.ConfigName), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		ts := map[string]safetensors.Tensor{}
		for p, r := range ranks {
			i, o := in, hidden
			if p == "2" {
				i, o = hidden, out
			}
			for n, shape := range map[string][]int{"lora_A": {r, i}, "lora_E": {r, 1}, "lora_B": {o, r}} {
				d := make([]float32, shape[0]*shape[1])
				for k := range d {
					d[k] = float32(rng.NormFloat64())
				}
				ts["base_model.model."+p+"."+n] = safetensors.Tensor{Shape: shape, F32: d}
			}
		}
		if err := safetensors.Save(filepath.Join(dir, peft.WeightsName), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir := write(`{"0.lora_E": [true, false, true], "2.lora_E": [false, true, false]}`, map[string]int{"0": 2, "2": 1})
	base := peftcheck.MLP(in, hidden, out)
	m, err := peft.Load(base, dir)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	// float64 reference: relu(x W0^T + b0 + d0 x) then layer 2 likewise.
	x := layertest.Rand(rng, 1, 2, in)
	h := layertest.To64(x.Data())
	ref := peftcheck.MLP(in, hidden, out)
	layer := func(h []float64, p string, lin *nn.Linear, relu bool) []float64 {
		A, E, B := sd["base_model.model."+p+".lora_A"], sd["base_model.model."+p+".lora_E"], sd["base_model.model."+p+".lora_B"]
		a, e, b := layertest.To64(A.Data()), layertest.To64(E.Data()), layertest.To64(B.Data())
		w, bias := layertest.To64(lin.Weight.Data()), layertest.To64(lin.Bias.Data())
		r, ni, no := A.Dim(0), A.Dim(1), B.Dim(0)
		n := len(h) / ni
		y := make([]float64, n*no)
		for s := range n {
			for o := range no {
				acc := bias[o]
				for i := range ni {
					d := 0.0
					for k := range r {
						d += b[o*r+k] * e[k] * a[k*ni+i]
					}
					acc += h[s*ni+i] * (w[o*ni+i] + d*alpha/(initR+1e-5))
				}
				if relu && acc < 0 {
					acc = 0
				}
				y[s*no+o] = acc
			}
		}
		return y
	}
	seq := ref.Children()
	h = layer(h, "0", seq[0].Module.(*nn.Linear), true)
	h = layer(h, "2", seq[2].Module.(*nn.Linear), false)
	y, err := m.Forward(models.Input{X: x, Shape: x.Shape()})
	if err != nil {
		t.Fatal(err)
	}
	if err := layertest.Close(y.Data(), h, 1e-5, 1e-5); err != nil {
		t.Fatalf("pruned adapter output: %v", err)
	}
	if a := sd["base_model.model.2.lora_A"]; a.Dim(0) != 1 {
		t.Fatalf("layer 2 rank %d, want 1", a.Dim(0))
	}

	// A layer pruned to rank 0 loads, contributes nothing, and trains
	// through the final allocation without error.
	m0, err := peft.Load(peftcheck.MLP(in, hidden, out), write(`{"0.lora_E": [false, false, false], "2.lora_E": [true, false, true]}`, map[string]int{"0": 0, "2": 2}), peft.Trainable(true))
	if err != nil {
		t.Fatal(err)
	}
	var params []*nn.Tensor
	for _, p := range m0.TrainableParameters() {
		params = append(params, p.T)
	}
	opt := nn.NewAdamW(nn.DefaultAdamW(), nn.ParamGroup{Params: params, LR: 0.01})
	for step := range 12 {
		y, err := m0.Forward(models.Input{X: x, Shape: x.Shape()})
		if err != nil {
			t.Fatal(err)
		}
		loss := nn.MeanAll(nn.Mul(y, y))
		if extra, err := m0.LossTerms(); err != nil {
			t.Fatal(err)
		} else {
			loss = nn.Add(loss, extra)
		}
		loss.Backward()
		opt.Step()
		if err := m0.AfterStep(step); err != nil {
			t.Fatalf("rank-0 layer, step %d: %v", step, err)
		}
		opt.ZeroGrad()
	}
	if rp := m0.Config("default").(*adalora.Config).RankPattern; rp["0.lora_E"] == nil || len(rp["0.lora_E"]) != 0 || len(rp["2.lora_E"]) != 2 {
		t.Fatalf("rank_pattern after training %v", rp)
	}

	for _, bad := range []struct{ pattern, want string }{
		{`{"0.lora_E": [true, false], "2.lora_E": [false, true, false]}`, "0.lora_E"},
		{`{"0.lora_E": [true, false, true], "9.lora_E": [false, true, false]}`, "9.lora_E"},
	} {
		_, err := peft.Load(peftcheck.MLP(in, hidden, out), write(bad.pattern, map[string]int{"0": 2, "2": 1}))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("pattern %s: err %v, want one naming %s", bad.pattern, err, bad.want)
		}
	}
}
