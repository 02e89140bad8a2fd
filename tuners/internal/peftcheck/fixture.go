package peftcheck

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	lt "github.com/gopeft/gopeft/tuners/lycoris/lycoristest"
)

// FixtureRoundTrip adapts the fixture model named model (built with dims
// and seed 7) with cfg, which must start from non-zero adapter weights.
// It checks that a backward pass from the output reaches every trainable
// tensor, that the saved file holds exactly keys (given relative to the
// base model, without the "base_model.model." prefix), and that the
// adapter loaded into a fresh fixture model gives the same output on a
// standard normal input of the given shape.
func FixtureRoundTrip(t *testing.T, model string, dims map[string]float64, input []int, cfg tuners.Config, keys []string) {
	t.Helper()
	build := func() models.Model {
		m, err := fixtures.Build(nn.DefaultBackend(), model, dims, 7)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	base := build()
	m, err := peft.New(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := models.Input{X: lt.Rand(rand.New(rand.NewPCG(1, 2)), 1, input...)}
	want, err := base.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	// Training reaches every adapter tensor.
	nn.SumAll(want).Backward()
	for _, p := range m.TrainableParameters() {
		if p.T.Grad() == nil {
			t.Errorf("%s has no gradient", p.Name)
		}
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(f.Names())
	f.Close()
	wantKeys := make([]string, len(keys))
	for i, k := range keys {
		wantKeys[i] = "base_model.model." + k
	}
	sort.Strings(got)
	if !slices.Equal(got, wantKeys) {
		t.Fatalf("saved keys %v, want %v", got, wantKeys)
	}
	fresh := build()
	if _, err := peft.Load(fresh, dir); err != nil {
		t.Fatal(err)
	}
	y, err := fresh.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(y.Data(), want.Data()) {
		t.Fatal("the reloaded adapter gives other outputs")
	}
}
