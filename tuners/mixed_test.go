package tuners_test

import (
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/loha"
	"github.com/gopeft/gopeft/tuners/lora"
)

// stackOf returns a Linear(6, 5) and a stack over it holding a LoRA
// adapter "lo" and a LoHa adapter "ha", both with random weights and
// active.
func stackOf(t *testing.T) (*nn.Linear, *tuners.Stack) {
	t.Helper()
	rng := nn.NewRNG(5)
	base := nn.NewLinear(nil, 6, 5, true, rng)
	lc := lora.NewConfig()
	lc.R, lc.Alpha = 2, 4
	lo, err := lora.Method{}.Wrap(tuners.Target{Path: "l", Module: base, Config: lc, Adapter: "lo"})
	if err != nil {
		t.Fatal(err)
	}
	hc := loha.NewConfig()
	hc.R, hc.Alpha = 2, 2
	ha, err := loha.Method{}.Wrap(tuners.Target{Path: "l", Module: base, Config: hc, Adapter: "ha"})
	if err != nil {
		t.Fatal(err)
	}
	s := tuners.NewStack(base)
	for _, l := range []tuners.Layer{lo, ha} {
		if err := s.Put(l); err != nil {
			t.Fatal(err)
		}
		for _, a := range l.Adapters() {
			for _, p := range l.AdapterParams(a) {
				p.T.CopyFrom(nn.Normal(nil, rng, 0, 0.4, p.T.Shape()...))
			}
		}
	}
	s.SetActive([]string{"lo", "ha"})
	return base, s
}

// TestStack checks a stack of LoRA and LoHa on one Linear: its output is
// the base output plus both updates (the merged weight gives the same),
// unmerging restores the weight, deleting empties and drops method layers,
// and what it refuses.
func TestStack(t *testing.T) {
	base, s := stackOf(t)
	x := nn.Normal(nil, nn.NewRNG(6), 0, 1, 3, 6)
	w0 := base.Weight.Data()
	got := s.Forward(x)
	plain := base.Forward(x)
	if d := maxAbsDiff(got.Data(), plain.Data()); d < 1e-3 {
		t.Fatalf("the stack adds nothing (diff %g)", d)
	}
	if err := s.Merge(nil, true); err != nil {
		t.Fatal(err)
	}
	if m := s.Merged(); len(m) != 2 {
		t.Errorf("merged %q, want both adapters", m)
	}
	if d := maxAbsDiff(base.Forward(x).Data(), got.Data()); d > 1e-5 {
		t.Errorf("the merged base weight differs from the stacked output by %g", d)
	}
	if d := maxAbsDiff(s.Forward(x).Data(), got.Data()); d > 1e-5 {
		t.Errorf("the merged stack differs by %g", d)
	}
	if err := s.Unmerge(); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(base.Weight.Data(), w0); d > 1e-5 {
		t.Errorf("unmerging left the weight off by %g", d)
	}

	s.SetActive([]string{"ha"})
	only := s.Forward(x)
	s.SetDisabled(true)
	if d := maxAbsDiff(s.Forward(x).Data(), base.Forward(x).Data()); d != 0 {
		t.Errorf("disabled stack differs from the base by %g", d)
	}
	s.SetDisabled(false)
	if err := s.Delete("lo"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Layers()); n != 1 || s.Layer(loha.PeftType) == nil {
		t.Fatalf("after deleting the LoRA adapter the stack holds %d layers", n)
	}
	if d := maxAbsDiff(s.Forward(x).Data(), only.Data()); d > 1e-6 {
		t.Errorf("deleting the inactive LoRA adapter changed the output by %g", d)
	}
	if err := s.Delete("lo"); err == nil {
		t.Error("deleting a missing adapter succeeded")
	}
	if err := s.SetBatchAdapters([]string{"ha", "ha", "ha"}); err == nil || !strings.Contains(err.Error(), "LOHA") {
		t.Errorf("per-row LoHa adapters: %v", err)
	}
	other := nn.NewLinear(nil, 6, 5, false, nn.NewRNG(1))
	lo, err := lora.Method{}.Wrap(tuners.Target{Path: "m", Module: other, Config: lora.NewConfig(), Adapter: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(lo); err == nil {
		t.Error("a layer over another module joined the stack")
	}
	if err := s.SetChild("lora_A", other); err == nil {
		t.Error("replacing an adapter container succeeded")
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		v := float64(a[i] - b[i])
		if v < 0 {
			v = -v
		}
		d = max(d, v)
	}
	return d
}
