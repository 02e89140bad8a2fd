package vera_test

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/vera"
)

// TestSaveLoadRoundTrip checks both save_projection modes: saved, the
// projections are in the file; not saved, the reload regenerates them from
// projection_prng_key and still reproduces the output.
func TestSaveLoadRoundTrip(t *testing.T) {
	lambdas := []string{
		"base_model.model.0.vera_lambda_b", "base_model.model.0.vera_lambda_d",
		"base_model.model.2.vera_lambda_b", "base_model.model.2.vera_lambda_d",
	}
	for _, save := range []bool{true, false} {
		cfg := vera.NewConfig()
		cfg.R, cfg.ProjectionPRNGKey, cfg.SaveProjection = 3, 5, save
		cfg.TargetModules = tuners.Names("0", "2")
		keys := lambdas
		if save {
			keys = append([]string{"base_model.vera_A", "base_model.vera_B"}, lambdas...)
		}
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		m := peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
		sd, err := m.StateDict("default")
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := sd["base_model.vera_A"]; save && (!ok || a.Dim(0) != 3 || a.Dim(1) != 8) {
			t.Fatalf("save_projection: vera_A %v, want [3, 8] (largest in)", a)
		}
	}
}

// TestTwoAdapters adds a second VeRA adapter with another rank to the same
// layers (another key or save_projection is refused, as in PEFT): each has
// its own projections, both save and load side
// by side, and switching adapters switches the output.
func TestTwoAdapters(t *testing.T) {
	newModel := func() nn.Module { return peftcheck.MLP(6, 8, 4) }
	cfg := vera.NewConfig()
	cfg.R, cfg.InitWeights = 3, false
	cfg.TargetModules = tuners.Names("0", "2")
	m, err := peft.New(newModel(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := vera.NewConfig()
	cfg2.R, cfg2.ProjectionPRNGKey, cfg2.InitWeights = 2, 9, false
	cfg2.TargetModules = tuners.Names("0")
	if err := m.AddAdapter(cfg2, peft.AdapterName("other")); err == nil {
		t.Fatal("an adapter with another projection_prng_key was accepted")
	}
	cfg2.ProjectionPRNGKey, cfg2.SaveProjection = 0, false
	if err := m.AddAdapter(cfg2, peft.AdapterName("other")); err == nil {
		t.Fatal("an adapter with another save_projection was accepted")
	}
	cfg2.SaveProjection = true
	if err := m.AddAdapter(cfg2, peft.AdapterName("other")); err != nil {
		t.Fatal(err)
	}
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	in := models.Input{X: x, Shape: x.Shape()}
	outputs := map[string][]float32{}
	for _, name := range []string{"default", "other"} {
		if err := m.SetAdapter(name); err != nil {
			t.Fatal(err)
		}
		y, err := m.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		outputs[name] = y.Data()
	}
	if slices.Equal(outputs["default"], outputs["other"]) {
		t.Fatal("both adapters give the same output")
	}
	sd, err := m.StateDict("other")
	if err != nil {
		t.Fatal(err)
	}
	if a := sd["base_model.vera_A"]; a == nil || a.Dim(0) != 2 || a.Dim(1) != 6 {
		t.Fatalf("other's vera_A %v, want [2, 6]", a)
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	m2, err := peft.Load(newModel(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.LoadAdapter(filepath.Join(dir, "other"), "other"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"default", "other"} {
		if err := m2.SetAdapter(name); err != nil {
			t.Fatal(err)
		}
		y, err := m2.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(y.Data(), outputs[name]) {
			t.Fatalf("reloaded %s differs", name)
		}
	}
}
