package loha_test

import (
	"testing"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/loha"
)

// TestSaveLoadRoundTrip adapts the conv and conv1d fixture models through
// the peft package, saves the adapter, loads it into a fresh base model and
// checks the saved keys and the reloaded outputs.
func TestSaveLoadRoundTrip(t *testing.T) {
	for _, c := range []struct {
		model   string
		dims    map[string]float64
		input   []int
		targets []string
		keys    []string
	}{
		{"conv", map[string]float64{"in_ch": 3, "out_ch": 4, "kernel": 3, "hw": 5, "n_out": 2}, []int{2, 3, 5, 5},
			[]string{"conv2d", "lin"}, []string{
				"conv2d.hada_t1", "conv2d.hada_t2", "conv2d.hada_w1_a", "conv2d.hada_w1_b", "conv2d.hada_w2_a", "conv2d.hada_w2_b",
				"lin.hada_w1_a", "lin.hada_w1_b", "lin.hada_w2_a", "lin.hada_w2_b"}},
		{"conv1d", map[string]float64{"in_ch": 3, "out_ch": 4, "kernel": 3, "length": 6, "n_out": 2}, []int{2, 3, 6},
			[]string{"conv1d"}, []string{
				"conv1d.hada_t1", "conv1d.hada_t2", "conv1d.hada_w1_a", "conv1d.hada_w1_b", "conv1d.hada_w2_a", "conv1d.hada_w2_b"}},
	} {
		t.Run(c.model, func(t *testing.T) {
			cfg := loha.NewConfig()
			cfg.R, cfg.Alpha, cfg.InitWeights, cfg.UseEffectiveConv2d = 2, 3, false, true
			cfg.TargetModules = tuners.Names(c.targets...)
			peftcheck.FixtureRoundTrip(t, c.model, c.dims, c.input, cfg, c.keys)
		})
	}
}
