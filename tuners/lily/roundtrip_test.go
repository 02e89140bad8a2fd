package lily_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/lily"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	cfg := lily.NewConfig()
	cfg.R = 3
	cfg.TargetModules = tuners.Names("0", "2")
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	var keys []string
	for _, m := range []string{"0", "2"} {
		for _, f := range []string{"lily_A.weight", "lily_B.weight", "lily_router.weight"} {
			keys = append(keys, "base_model.model."+m+"."+f)
		}
	}
	m := peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
	if _, err := m.MergeAndUnload(); err == nil {
		t.Fatal("MergeAndUnload of a Lily adapter did not fail")
	}
}

// TestSharedRoundTrip: layers sharing lily_B (same target entry and shape)
// save it under each layer's key and still share it after loading.
func TestSharedRoundTrip(t *testing.T) {
	newModel := func() nn.Module {
		return nn.NewSequential(peftcheck.MLP(6, 6, 6), peftcheck.MLP(6, 6, 6))
	}
	cfg := lily.NewConfig()
	cfg.R, cfg.StrideA = 2, 2
	cfg.TargetModules = tuners.Pattern(`\d\.0`)
	x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
	m := peftcheck.RoundTrip(t, newModel, cfg, x, nil)
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"lily_A.weight", "lily_B.weight"} {
		a, b := sd["base_model.model.0.0."+k], sd["base_model.model.1.0."+k]
		if a == nil || b == nil {
			t.Fatalf("%s missing: keys %v", k, keysOf(sd))
		}
		if err := layertest.Close(a.Data(), layertest.To64(b.Data()), 0, 0); err != nil {
			t.Fatalf("%s not shared after loading: %v", k, err)
		}
	}
}

func keysOf(m map[string]*nn.Tensor) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
