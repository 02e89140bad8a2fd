package glora_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/glora"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		ab, c, de string
		frags     []string
	}{
		{glora.PathLoRA, glora.PathLoRA, glora.PathConstant, []string{
			"glora_A.Xd", "glora_A.Xu", "glora_B.Xd", "glora_B.Xu", "glora_C.Xd", "glora_C.Xu", "glora_D.X", "glora_E.X"}},
		{glora.PathNone, glora.PathVector, glora.PathNone, []string{
			"glora_A.zeros", "glora_B.zeros", "glora_C.X", "glora_D.zeros", "glora_E.zeros"}},
	} {
		cfg := glora.NewConfig()
		cfg.R, cfg.ConfigAB, cfg.ConfigC, cfg.ConfigDE = 2, tt.ab, tt.c, tt.de
		cfg.TargetModules = tuners.Names("0", "2")
		x := layertest.Rand(rand.New(rand.NewPCG(1, 1)), 1, 3, 6)
		var keys []string
		for _, m := range []string{"0", "2"} {
			for _, f := range tt.frags {
				keys = append(keys, "base_model.model."+m+"."+f)
			}
		}
		peftcheck.RoundTrip(t, func() nn.Module { return peftcheck.MLP(6, 8, 4) }, cfg, x, keys)
	}
}
