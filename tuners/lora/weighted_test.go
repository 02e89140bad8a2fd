package lora

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// twoLayerModel is a minimal module tree: two Linear layers.
type twoLayerModel struct{ children []nn.Child }

func (m *twoLayerModel) Children() []nn.Child { return m.children }
func (m *twoLayerModel) Params() []nn.Param   { return nil }
func (m *twoLayerModel) SetChild(name string, c nn.Module) error {
	for i := range m.children {
		if m.children[i].Name == name {
			m.children[i].Module = c
			return nil
		}
	}
	return nil
}

// weightedSetup builds a model whose two layers carry adapters "a" (r 3,
// alpha 6) and "b" (r rb, alpha 2), then the combined adapter "c" made with
// ctype.
func weightedSetup(t *testing.T, ctype string, rb int, o WeightedOptions, weights []float64, kinds ...func(r *rand.Rand) nn.Module) (*twoLayerModel, []AdapterLayer) {
	t.Helper()
	r := rand.New(rand.NewPCG(21, 22))
	m := &twoLayerModel{}
	var layers []AdapterLayer
	ca := testConfig(variant{})
	ca.R, ca.Alpha, ca.TargetModules = 3, 6, tuners.Names("l0")
	cb := testConfig(variant{})
	cb.R, cb.Alpha, cb.TargetModules = rb, 2, tuners.Names("l1", "l0")
	for i, k := range kinds {
		name := []string{"l0", "l1"}[i]
		l := wrap(t, k(r), ca, "a")
		if _, err := (Method{}).Wrap(tuners.Target{Path: name, Module: l, Config: cb, Adapter: "b"}); err != nil {
			t.Fatal(err)
		}
		m.children = append(m.children, nn.Child{Name: name, Module: l})
		layers = append(layers, l)
	}
	o.CombinationType = ctype
	nc, used, err := WeightedConfig([]*Config{ca, cb}, o)
	if err != nil {
		t.Fatal(err)
	}
	if used != ctype {
		t.Fatalf("combination type %q, want %q", used, ctype)
	}
	if got := nc.TargetModules.Names; !slices.Equal(got, []string{"l0", "l1"}) {
		t.Fatalf("combined target_modules %v", got)
	}
	for i, l := range layers {
		if _, err := (Method{}).Wrap(tuners.Target{Path: m.children[i].Name, Module: l, Config: nc, Adapter: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := AddWeighted(m, []string{"a", "b"}, weights, "c", used, o); err != nil {
		t.Fatal(err)
	}
	return m, layers
}

func linearBase(r *rand.Rand) nn.Module { return &nn.Linear{Weight: randTensor(r, 0.4, tOut, tIn)} }

func delta64(t *testing.T, l AdapterLayer, name string) []float64 {
	t.Helper()
	d, err := l.DeltaWeight(name)
	if err != nil {
		t.Fatal(err)
	}
	return from32(d).d
}

func TestAddWeightedCat(t *testing.T) {
	w := []float64{0.7, -0.4}
	kinds := []func(*rand.Rand) nn.Module{linearBase, layerCases[3].base, layerCases[5].base}
	for _, k := range kinds {
		_, layers := weightedSetup(t, CombineCat, 2, WeightedOptions{}, w, k, k)
		for _, l := range layers {
			if l.Rank("c") != 5 || l.Scaling("c") != 1 {
				t.Fatalf("cat: rank %d scaling %v, want 5 and 1", l.Rank("c"), l.Scaling("c"))
			}
			// cat is exact: delta_c = sum w_i delta_i.
			da, db := delta64(t, l, "a"), delta64(t, l, "b")
			want := make([]float64, len(da))
			for i := range want {
				want[i] = w[0]*da[i] + w[1]*db[i]
			}
			closeTo(t, "cat delta", to32(delta64(t, l, "c")), want, 1e-5, 1e-4)
			if l.coreOf().adapters["c"].a.RequiresGrad() {
				t.Fatal("combined adapter is trainable")
			}
		}
	}
}

func TestAddWeightedSVD(t *testing.T) {
	w := []float64{0.7, 0.4}
	kinds := []func(*rand.Rand) nn.Module{linearBase, layerCases[2].base, layerCases[3].base, layerCases[5].base}
	for _, k := range kinds {
		// With SVDRank = 3 + 1 the truncation is exact: B_c A_c equals
		// sum w_i s_i delta_i (PEFT weighs the scaled deltas by the scaling
		// once more).
		_, layers := weightedSetup(t, CombineSVD, 1, WeightedOptions{SVDRank: 4}, w, k, k)
		for _, l := range layers {
			da, db := delta64(t, l, "a"), delta64(t, l, "b")
			sa, sb := l.Scaling("a"), l.Scaling("b")
			want := make([]float64, len(da))
			for i := range want {
				want[i] = w[0]*sa*da[i] + w[1]*sb*db[i]
			}
			closeTo(t, "svd delta", to32(delta64(t, l, "c")), want, 1e-5, 1e-4)
		}
	}
}

func TestAddWeightedLinear(t *testing.T) {
	w := []float64{0.7, -0.4}
	_, layers := weightedSetup(t, CombineLinear, 3, WeightedOptions{}, w, linearBase, linearBase)
	for _, l := range layers {
		c := l.coreOf()
		A := func(n string) []float64 { return from32(c.adapters[n].a).d }
		B := func(n string) []float64 { return from32(c.adapters[n].b).d }
		fa, fb := w[0]*l.Scaling("a"), w[1]*l.Scaling("b")
		wantA, wantB := make([]float64, len(A("a"))), make([]float64, len(B("a")))
		for i := range wantA {
			wantA[i] = math.Sqrt(fa)*A("a")[i] - math.Sqrt(-fb)*A("b")[i]
		}
		for i := range wantB {
			wantB[i] = math.Sqrt(fa)*B("a")[i] + math.Sqrt(-fb)*B("b")[i]
		}
		closeTo(t, "linear A", to32(A("c")), wantA, 1e-6, 1e-5)
		closeTo(t, "linear B", to32(B("c")), wantB, 1e-6, 1e-5)
	}
	if _, _, err := WeightedConfig([]*Config{{R: 2}, {R: 3}}, WeightedOptions{CombinationType: CombineLinear}); err == nil || !strings.Contains(err.Error(), "same r") {
		t.Errorf("linear with different ranks: err = %v", err)
	}
}

func TestMergeTasks(t *testing.T) {
	ts := []host64{{d: []float64{1, -2, 0.5, 3}}, {d: []float64{-1, -1, 2, 0.1}}}
	w := []float64{1, 2}
	cases := []struct {
		ctype string
		o     WeightedOptions
		want  []float64
	}{
		{CombineLinear, WeightedOptions{}, []float64{-1, -4, 4.5, 3.2}},
		// density 0.5 keeps the two largest magnitudes of each task:
		// [0 -2 0 3] and [-1 0 2 0]; signs elected from the sums.
		{CombineMagnitudePrune, WeightedOptions{Density: 0.5}, []float64{-2, -2, 4, 3}},
		{CombineTies, WeightedOptions{Density: 0.5, MajoritySignMethod: "total"}, []float64{-2, -2, 4, 3}},
		// without pruning: element 0 sums to 0 -> majority +1, only task 0
		// agrees; element 3: both positive -> mean of 3 and 0.2.
		{CombineTies, WeightedOptions{Density: 1, MajoritySignMethod: "total"}, []float64{1, -2, 2.25, 1.6}},
	}
	for _, tc := range cases {
		got, err := mergeTasks(tc.ctype, ts, w, tc.o, nn.NewRNG(1))
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-12 {
				t.Errorf("%s %+v: got %v, want %v", tc.ctype, tc.o, got, tc.want)
				break
			}
		}
	}
	// dare: every kept value is rescaled by 1/density, the others are zero.
	big := host64{d: make([]float64, 2000)}
	for i := range big.d {
		big.d[i] = 1
	}
	got, err := mergeTasks(CombineDareLinear, []host64{big}, []float64{1}, WeightedOptions{Density: 0.25}, nn.NewRNG(3))
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, v := range got {
		if v != 0 && v != 4 {
			t.Fatalf("dare value %v is neither 0 nor 1/density", v)
		}
		if v != 0 {
			kept++
		}
	}
	if kept < 400 || kept > 600 {
		t.Fatalf("dare kept %d of 2000 at density 0.25", kept)
	}
}

func TestQuantile(t *testing.T) {
	if got := quantile([]float64{4, 1, 3, 2}, 0.5); got != 2.5 {
		t.Errorf("median of 1..4 = %v", got)
	}
	if got := quantile([]float64{4, 1, 3, 2}, 1); got != 4 {
		t.Errorf("max = %v", got)
	}
}
