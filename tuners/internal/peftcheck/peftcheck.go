// Package peftcheck holds the save/load round trip every method package
// checks in its external tests: an adapter made with peft.New, given
// non-trivial values, saved with Save and loaded into a fresh base model
// with peft.Load gives the same output and the same tensors; and the short
// training run (Train) that shows the adapter learns while the base stays
// frozen.
package peftcheck

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// MLP returns Sequential(Linear(in, hidden), ReLU, Linear(hidden, out))
// with fixed random weights; its modules are named "0", "1" and "2".
func MLP(in, hidden, out int) *nn.Sequential {
	rng := nn.NewRNG(42)
	relu, err := nn.NewActivation("relu")
	if err != nil {
		panic(err)
	}
	return nn.NewSequential(nn.NewLinear(nil, in, hidden, true, rng), relu, nn.NewLinear(nil, hidden, out, true, rng))
}

// RoundTrip creates an adapter from cfg on newModel(), fills every saved
// tensor that requires gradients with random values (so that the adapter
// is not a no-op), saves it, loads the folder into a fresh newModel() and
// checks that the outputs on x agree and that the saved file holds
// exactly the expected keys (nil: not checked). It returns the loaded
// model.
func RoundTrip(t *testing.T, newModel func() nn.Module, cfg tuners.Config, x *nn.Tensor, keys []string) *peft.Model {
	t.Helper()
	m, err := peft.New(newModel(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := m.StateDict(peft.DefaultAdapterName)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, k := range sortedKeys(sd) {
		if tt := sd[k]; tt.RequiresGrad() {
			d := make([]float32, tt.Len())
			for i := range d {
				d[i] = float32(rng.NormFloat64() * 0.3)
			}
			tt.CopyFromHost(d)
		}
	}
	if keys != nil {
		got := sortedKeys(sd)
		want := slices.Clone(keys)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("saved keys %q, want %q", got, want)
		}
	}
	in := models.Input{X: x, Shape: x.Shape()}
	y0, err := m.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, peft.WeightsName)); err != nil {
		t.Fatal(err)
	}
	m2, err := peft.Load(newModel(), dir)
	if err != nil {
		t.Fatal(err)
	}
	y1, err := m2.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(y0.Data(), y1.Data()) {
		t.Fatalf("reloaded output %v, want %v", y1.Data(), y0.Data())
	}
	sd2, err := m2.StateDict(peft.DefaultAdapterName)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sd {
		if w, ok := sd2[k]; !ok || !slices.Equal(v.Data(), w.Data()) {
			t.Fatalf("reloaded %s differs", k)
		}
	}
	return m2
}

func sortedKeys(m map[string]*nn.Tensor) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Train adapts MLP(6, 8, 4) with cfg (whose targets name the MLP's
// modules), runs 30 AdamW steps over peft's trainable parameters on a
// regression loss and checks that the loss goes down and that every
// frozen base tensor stays put.
func Train(t *testing.T, cfg tuners.Config) {
	t.Helper()
	m, err := peft.New(MLP(6, 8, 4), cfg)
	if err != nil {
		t.Fatal(err)
	}
	nn.SetTraining(m.Base(), true)
	rng := rand.New(rand.NewPCG(4, 4))
	x := layertest.Rand(rng, 1, 5, 6)
	target := layertest.Rand(rng, 1, 5, 4)
	loss := func() *nn.Tensor {
		return nn.SumAll(nn.Square(nn.Sub(m.Base().(nn.Layer).Forward(x), target)))
	}
	var params []*nn.Tensor
	for _, p := range m.TrainableParameters() {
		params = append(params, p.T)
	}
	if len(params) == 0 {
		t.Fatal("no trainable parameters")
	}
	before := map[string][]float32{}
	for name, w := range nn.StateDict(m.Base()) {
		if !w.RequiresGrad() {
			before[name] = w.Data()
		}
	}
	opt := nn.NewAdamW(nn.DefaultAdamW(), nn.DefaultAdamW().Group(params...))
	first := loss().Item()
	for range 30 {
		opt.ZeroGrad()
		loss().Backward()
		opt.Step()
	}
	if last := loss().Item(); !(last < first) {
		t.Errorf("loss %v after 30 AdamW steps, %v before", last, first)
	}
	for name, w := range nn.StateDict(m.Base()) {
		if b, ok := before[name]; ok {
			if err := layertest.Close(w.Data(), layertest.To64(b), 0, 0); err != nil {
				t.Errorf("frozen %s changed: %v", name, err)
			}
		}
	}
}
