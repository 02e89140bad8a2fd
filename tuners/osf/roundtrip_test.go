package osf_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/osf"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := osf.NewConfig()
	cfg.EffectiveRank = osf.Int(2)
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	var keys []string
	for _, m := range []string{"0", "2"} {
		for _, p := range []string{"U_low", "S_low", "V_low"} {
			keys = append(keys, "base_model.model."+m+".osf_svd_params."+p)
		}
	}
	peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
}

// TestDefaultTargets checks PEFT's fallback: without target_modules and
// without a model_type default, OSF adapts every linear layer.
func TestDefaultTargets(t *testing.T) {
	m, err := peft.New(peftcheck.MLP(6, 8, 4), osf.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_ = nn.Walk(m.Base(), func(path string, mod nn.Module) error {
		if _, ok := mod.(*osf.Layer); ok {
			n++
		}
		return nil
	})
	if n != 2 {
		t.Errorf("%d OSF layers, want 2 (every Linear)", n)
	}
}
