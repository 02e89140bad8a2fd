package adalora

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// TestImportanceScores checks the smoothed importance, the triplet scores
// and the masking against a float64 re-computation of PEFT's update_ipt,
// _element_score, _combine_ipt and mask_to_budget over three steps with
// different gradients.
func TestImportanceScores(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	root := nn.NewSequential(
		&nn.Linear{Weight: layertest.Rand(rng, 1, 6, 5)},
		&nn.Linear{Weight: layertest.Rand(rng, 1, 3, 6)},
	)
	cfg := testConfig(4, 4)
	cfg.TargetModules = tuners.Names("0", "1")
	cfg.Beta1, cfg.Beta2 = 0.7, 0.6
	if _, err := tuners.Inject(root, Method{}, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	al, err := NewAllocator(root, cfg, "default")
	if err != nil {
		t.Fatal(err)
	}
	// Reference state per layer and part (A, E, B).
	type ref struct{ ipt, unc []float64 }
	refs := make([][3]ref, len(al.layers))
	x := layertest.Rand(rng, 1, 7, 5)
	for step := range 3 {
		probe := layertest.Rand(rng, 1, 7, 3)
		nn.SumAll(nn.Mul(root.Forward(x), probe)).Backward()
		for i, st := range al.layers {
			ps, _ := al.tensors(st.layer)
			for j, p := range ps {
				pv, gv := layertest.To64(p.Data()), layertest.To64(p.Grad().Data())
				r := &refs[i][j]
				if r.ipt == nil {
					r.ipt, r.unc = make([]float64, len(pv)), make([]float64, len(pv))
				}
				for k := range pv {
					ipt := math.Abs(pv[k] * gv[k])
					r.ipt[k] = cfg.Beta1*r.ipt[k] + (1-cfg.Beta1)*ipt
					r.unc[k] = cfg.Beta2*r.unc[k] + (1-cfg.Beta2)*math.Abs(ipt-r.ipt[k])
				}
			}
		}
		if err := al.updateImportance(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		nn.ZeroGrad(root)
	}
	type scored struct {
		layer, idx int
		s          float64
	}
	var all []scored
	for i, st := range al.layers {
		r, in, out := 4, st.layer.in, st.layer.out
		el := func(j, k int) float64 { return refs[i][j].ipt[k] * refs[i][j].unc[k] }
		want := make([]float64, r)
		for k := range r {
			a, b := 0.0, 0.0
			for c := range in {
				a += el(0, k*in+c)
			}
			for o := range out {
				b += el(2, o*r+k)
			}
			want[k] = el(1, k) + a/float64(in) + b/float64(out)
			all = append(all, scored{i, k, want[k]})
		}
		if err := layertest.Close(st.scores(r).Data(), want, 1e-9, 1e-4); err != nil {
			t.Fatalf("layer %s scores: %v", st.path, err)
		}
	}
	// Masking to budget 8 - 3 drops the three lowest scores.
	sort.Slice(all, func(a, b int) bool { return all[a].s < all[b].s })
	pattern := al.maskToBudget(al.initBudget - 3)
	for n, sc := range all {
		st := al.layers[sc.layer]
		keep := pattern[st.path+".lora_E"][sc.idx]
		a, _ := st.layer.Get("default")
		e := a.e.Data()[sc.idx]
		if masked := n < 3; keep == masked || (masked && e != 0) || (!masked && e == 0) {
			t.Fatalf("triplet %s[%d] (rank %d by score): keep %v, E %v", st.path, sc.idx, n, keep, e)
		}
	}
	if !slices.Equal(sortedKeys(pattern), []string{"0.lora_E", "1.lora_E"}) {
		t.Fatalf("pattern keys %v", mapKeys(pattern))
	}
	// A budget equal to the initial one masks nothing (PEFT's kthvalue
	// would fail for k = 0).
	for _, keep := range al.maskToBudget(al.initBudget) {
		if slices.Contains(keep, false) {
			t.Fatal("the full budget masked a triplet")
		}
	}
}

func mapKeys(m map[string][]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sortedKeys(m map[string][]bool) []string {
	k := mapKeys(m)
	slices.Sort(k)
	return k
}
