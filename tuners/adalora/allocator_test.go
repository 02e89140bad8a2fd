package adalora_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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

// refBudget is PEFT's budget_schedule written out in float64.
func refBudget(initB, targetB, tinit, tfinal, total, deltaT, step int) (int, bool) {
	switch {
	case step <= tinit:
		return initB, false
	case step > total-tfinal:
		return targetB, true
	}
	c := 1 - float64(step-tinit)/float64(total-tfinal-tinit)
	return int(float64(initB-targetB)*math.Pow(c, 3) + float64(targetB)), step%deltaT == 0
}

// eValues returns lora_E of adapter on every layer, by layer path.
func eValues(t *testing.T, m *peft.Model) map[string][]float32 {
	t.Helper()
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for k, v := range sd {
		if p, ok := cutSuffix(k, ".lora_E"); ok {
			out[p] = v.Data()
		}
	}
	return out
}

func cutSuffix(k, s string) (string, bool) {
	if len(k) > len(s) && k[len(k)-len(s):] == s {
		return k[len("base_model.model.") : len(k)-len(s)], true
	}
	return "", false
}

// TestAllocatorTraining trains a small MLP with AdaLoRA and AdamW for 30
// steps, running the allocator as PEFT's update_and_allocate expects
// (after the optimizer step, before zeroing gradients), and checks the
// budget schedule, that every masking step leaves exactly the budget of
// triplets unmasked, the final rank_pattern, that the pruned singular
// values stay zero afterwards, and that the saved adapter is pruned and
// reloads to the same outputs.
func TestAllocatorTraining(t *testing.T) {
	newModel := func() nn.Module { return peftcheck.MLP(6, 10, 4) }
	cfg := adalora.NewConfig()
	cfg.TargetModules = tuners.Names("0", "2")
	cfg.InitR, cfg.TargetR, cfg.Alpha = 4, 2, 8
	cfg.TInit, cfg.TFinal, cfg.DeltaT, cfg.TotalStep = 3, 5, 2, 20
	cfg.OrthRegWeight = 0.1
	m, err := peft.New(newModel(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mc := m.Config("default").(*adalora.Config)
	alloc, err := adalora.NewAllocator(m.Base(), mc, "default")
	if err != nil {
		t.Fatal(err)
	}
	if alloc.InitBudget() != 8 || alloc.TargetBudget() != 4 {
		t.Fatalf("budgets %d -> %d, want 8 -> 4", alloc.InitBudget(), alloc.TargetBudget())
	}
	var params []*nn.Tensor
	for _, p := range m.TrainableParameters() {
		params = append(params, p.T)
	}
	if len(params) != 6 {
		t.Fatalf("%d trainable tensors, want 6 (A, E, B of two layers)", len(params))
	}
	opt := nn.NewAdamW(nn.AdamWConfig{LR: 0.02, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, nn.ParamGroup{Params: params, LR: 0.02})
	rng := rand.New(rand.NewPCG(11, 12))
	x := layertest.Rand(rng, 1, 16, 6)
	target := layertest.Rand(rng, 1, 16, 4)
	base := m.Base().(nn.Layer)
	cut := cfg.TotalStep - cfg.TFinal
	var final map[string][]bool
	for step := range 30 {
		d := nn.Sub(base.Forward(x), target)
		loss := nn.Add(nn.MeanAll(nn.Mul(d, d)), alloc.OrthRegLoss())
		loss.Backward()
		opt.Step()
		if err := alloc.UpdateAndAllocate(step); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		opt.ZeroGrad()

		budget, mask := alloc.Budget(step)
		wb, wm := refBudget(8, 4, cfg.TInit, cfg.TFinal, cfg.TotalStep, cfg.DeltaT, step)
		if budget != wb || mask != wm {
			t.Fatalf("step %d: budget %d mask %v, want %d %v", step, budget, mask, wb, wm)
		}
		rp := alloc.RankPattern()
		if step <= cfg.TInit && rp != nil && len(rp) > 0 {
			t.Fatalf("step %d: rank_pattern set during warm-up", step)
		}
		if (step < cut && mask) || step >= cut {
			kept := 0
			es := eValues(t, m)
			for _, p := range []string{"0", "2"} {
				keep, ok := rp[p+".lora_E"]
				if !ok || len(keep) != 4 {
					t.Fatalf("step %d: rank_pattern %v lacks %s.lora_E", step, rp, p)
				}
				for i, on := range keep {
					if on {
						kept++
						if es[p][i] == 0 {
							t.Fatalf("step %d: kept triplet %s[%d] has E = 0", step, p, i)
						}
					} else if es[p][i] != 0 {
						t.Fatalf("step %d: masked triplet %s[%d] has E = %v", step, p, i, es[p][i])
					}
				}
			}
			want := budget
			if step >= cut {
				want = alloc.TargetBudget()
			}
			if kept != want {
				t.Fatalf("step %d: %d triplets kept, want the budget %d", step, kept, want)
			}
		}
		if step == cut {
			final = rp
		} else if step > cut && !equalPatterns(rp, final) {
			t.Fatalf("step %d: rank_pattern changed after the final allocation", step)
		}
	}

	// Save: the file holds only the kept triplets and the config the masks.
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	raw, _, err := safetensors.ReadAll(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"0", "2"} {
		kept := 0
		for _, on := range final[p+".lora_E"] {
			if on {
				kept++
			}
		}
		pre := "base_model.model." + p + "."
		if a, b, e := raw[pre+"lora_A"].Shape, raw[pre+"lora_B"].Shape, raw[pre+"lora_E"].Shape; a[0] != kept || b[1] != kept || e[0] != kept {
			t.Fatalf("layer %s: saved shapes A %v B %v E %v, want rank %d", p, a, b, e, kept)
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, peft.ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	var saved struct {
		RankPattern map[string][]bool `json:"rank_pattern"`
	}
	if err := json.Unmarshal(js, &saved); err != nil {
		t.Fatal(err)
	}
	if !equalPatterns(saved.RankPattern, final) {
		t.Fatalf("saved rank_pattern %v, want %v", saved.RankPattern, final)
	}

	// Reload: the layers take the pruned ranks and give the same outputs.
	in := models.Input{X: x, Shape: x.Shape()}
	y0, err := m.Forward(in)
	if err != nil {
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
	if err := layertest.Close(y1.Data(), layertest.To64(y0.Data()), 1e-6, 1e-6); err != nil {
		t.Fatalf("reloaded pruned adapter: %v", err)
	}
	// Saving the loaded (already pruned) adapter again gives the same file.
	dir2 := t.TempDir()
	if err := m2.Save(dir2); err != nil {
		t.Fatal(err)
	}
	raw2, _, err := safetensors.ReadAll(filepath.Join(dir2, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range raw {
		if w := raw2[k]; !slices.Equal(w.Shape, v.Shape) || !slices.Equal(w.F32, v.F32) {
			t.Fatalf("re-saved %s differs", k)
		}
	}
}

func equalPatterns(a, b map[string][]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestAllocatorErrors checks the allocator's preconditions: PEFT's beta
// and deltaT assertions, an adapter that does not exist, and a call without
// gradients.
func TestAllocatorErrors(t *testing.T) {
	cfg := adalora.NewConfig()
	cfg.TargetModules = tuners.Names("0")
	cfg.InitR, cfg.TargetR, cfg.TotalStep = 3, 1, 10
	m, err := peft.New(peftcheck.MLP(4, 5, 2), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mc := m.Config("default").(*adalora.Config)
	if _, err := adalora.NewAllocator(m.Base(), mc, "nope"); err == nil {
		t.Fatal("an allocator for a missing adapter was made")
	}
	for _, bad := range []func(c *adalora.Config){
		func(c *adalora.Config) { c.Beta1 = 1 },
		func(c *adalora.Config) { c.Beta2 = 0 },
		func(c *adalora.Config) { c.DeltaT = 0 },
		func(c *adalora.Config) { c.TotalStep = 0 },
	} {
		c := *mc
		bad(&c)
		if _, err := adalora.NewAllocator(m.Base(), &c, "default"); err == nil {
			t.Fatalf("bad config %+v accepted", c)
		}
	}
	alloc, err := adalora.NewAllocator(m.Base(), mc, "default")
	if err != nil {
		t.Fatal(err)
	}
	if err := alloc.UpdateAndAllocate(0); err == nil {
		t.Fatal("UpdateAndAllocate without gradients succeeded")
	}
	if err := alloc.UpdateAndAllocate(mc.TotalStep + 1); err == nil {
		t.Fatal("re-applying a rank_pattern that was never computed succeeded")
	}
}

// TestOrthRegLoss checks the regulariser against a float64 reference of
// PEFT's formula and its gradients against finite differences.
func TestOrthRegLoss(t *testing.T) {
	cfg := adalora.NewConfig()
	cfg.TargetModules = tuners.Names("0", "2")
	cfg.InitR, cfg.TotalStep, cfg.OrthRegWeight = 3, 10, 0.3
	cfg.InitLoRAWeights = []byte("false")
	m, err := peft.New(peftcheck.MLP(4, 5, 2), cfg)
	if err != nil {
		t.Fatal(err)
	}
	layers := adalora.LayersOf(m.Base(), "default")
	if len(layers) != 2 {
		t.Fatalf("%d layers", len(layers))
	}
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	want := 0.0
	var params []*nn.Tensor
	for _, p := range []string{"0", "2"} {
		for _, part := range []string{"lora_A", "lora_B"} {
			tt := sd["base_model.model."+p+"."+part]
			params = append(params, tt)
			want += froGram(layertest.To64(tt.Data()), tt.Dim(0), tt.Dim(1), part == "lora_A")
		}
	}
	want = 0.3 * want / 4
	got := adalora.OrthRegLoss(layers, "default", 0.3)
	if err := layertest.Close([]float32{got.Item()}, []float64{want}, 1e-5, 1e-5); err != nil {
		t.Fatal(err)
	}
	if err := nn.GradCheck(func() *nn.Tensor { return adalora.OrthRegLoss(layers, "default", 0.3) }, params, 1e-2, 2e-2); err != nil {
		t.Fatal(err)
	}
	if z := adalora.OrthRegLoss(nil, "default", 0.3); z.Item() != 0 {
		t.Fatalf("no layers: %v", z.Item())
	}
}

// froGram returns ||P P^T - I||_F (rows) or ||P^T P - I||_F (columns) of
// the rows x cols matrix p.
func froGram(p []float64, rows, cols int, byRows bool) float64 {
	n, k := cols, rows
	at := func(i, j int) float64 { return p[j*cols+i] } // column i, entry j
	if byRows {
		n, k = rows, cols
		at = func(i, j int) float64 { return p[i*cols+j] }
	}
	s := 0.0
	for i := range n {
		for j := range n {
			g := 0.0
			for l := range k {
				g += at(i, l) * at(j, l)
			}
			if i == j {
				g--
			}
			s += g * g
		}
	}
	return math.Sqrt(s)
}
