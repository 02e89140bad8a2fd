package lokr_test

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/lokr"
	lt "github.com/gopeft/gopeft/tuners/lycoris/lycoristest"
)

// TestSaveLoadRoundTrip adapts the conv and conv1d fixture models through
// the peft package, saves the adapter, loads it into a fresh base model and
// checks the saved keys and the reloaded outputs.
func TestSaveLoadRoundTrip(t *testing.T) {
	for _, c := range []struct {
		model   string
		dims    map[string]float64
		input   []int
		r       int
		targets []string
		keys    []string
	}{
		// r=1: conv2d [8, 4, 3, 3] gets a Tucker core, lin [2, 200] a
		// decomposed W2.
		{"conv", map[string]float64{"in_ch": 4, "out_ch": 8, "kernel": 3, "hw": 5, "n_out": 2}, []int{2, 4, 5, 5}, 1,
			[]string{"conv2d", "lin"}, []string{
				"conv2d.lokr_t2", "conv2d.lokr_w1", "conv2d.lokr_w2_a", "conv2d.lokr_w2_b",
				"lin.lokr_w1", "lin.lokr_w2_a", "lin.lokr_w2_b"}},
		// r=4: conv1d [4, 3, 3] keeps a full 3-D lokr_w2.
		{"conv1d", map[string]float64{"in_ch": 3, "out_ch": 4, "kernel": 3, "length": 6, "n_out": 2}, []int{2, 3, 6}, 4,
			[]string{"conv1d"}, []string{"conv1d.lokr_w1", "conv1d.lokr_w2"}},
	} {
		t.Run(c.model, func(t *testing.T) {
			cfg := lokr.NewConfig()
			cfg.R, cfg.Alpha, cfg.InitWeights, cfg.UseEffectiveConv2d = c.r, 3, lokr.InitRandom, true
			cfg.TargetModules = tuners.Names(c.targets...)
			peftcheck.FixtureRoundTrip(t, c.model, c.dims, c.input, cfg, c.keys)
		})
	}
}

// TestNamedAdapters keeps two LoKr adapters side by side: each one alone,
// both summed, saved in PEFT's layout and loaded back by name.
func TestNamedAdapters(t *testing.T) {
	dims := map[string]float64{"d_in": 8, "d_hidden": 12, "d_out": 3}
	build := func() models.Model {
		m, err := fixtures.Build(nn.DefaultBackend(), "mlp", dims, 3)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cfg := func(r int, targets ...string) *lokr.Config {
		c := lokr.NewConfig()
		c.R, c.Alpha, c.InitWeights, c.DecomposeBoth = r, 2, lokr.InitRandom, true
		c.TargetModules = tuners.Names(targets...)
		return c
	}
	base := build()
	m, err := peft.New(base, cfg(1, "lin0", "lin1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddAdapter(cfg(4, "lin1"), peft.AdapterName("other")); err != nil {
		t.Fatal(err)
	}
	in := models.Input{X: lt.Rand(rand.New(rand.NewPCG(3, 4)), 1, 2, 8)}
	out := func(names ...string) []float32 {
		t.Helper()
		if err := m.SetAdapter(names...); err != nil {
			t.Fatal(err)
		}
		y, err := base.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		return y.Data()
	}
	def, other, both := out("default"), out("other"), out("default", "other")
	if slices.Equal(def, other) || slices.Equal(def, both) || slices.Equal(other, both) {
		t.Fatal("adapters do not change the output independently")
	}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	fresh := build()
	m2, err := peft.Load(fresh, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.LoadAdapter(filepath.Join(dir, "other"), "other"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		names []string
		want  []float32
	}{{[]string{"default"}, def}, {[]string{"other"}, other}, {[]string{"default", "other"}, both}} {
		if err := m2.SetAdapter(c.names...); err != nil {
			t.Fatal(err)
		}
		y, err := fresh.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(y.Data(), c.want) {
			t.Fatalf("reloaded %v gives other outputs", c.names)
		}
	}
}
