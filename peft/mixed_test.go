package peft_test

import (
	"testing"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// TestForwardMixedLlama runs a LLaMA batch whose rows use different LoRA
// adapters (different ranks, targets, the embedding included) or none, and
// checks every row against running that row alone with its adapter active
// (or with the adapters disabled for the base rows).
func TestForwardMixedLlama(t *testing.T) {
	specs := []struct {
		name    string
		r       int
		targets []string
	}{
		{"a", 4, []string{"q_proj", "v_proj"}},
		{"b", 2, []string{"q_proj", "down_proj", "embed_tokens"}},
		{"c", 8, []string{"o_proj", "gate_proj", "up_proj", "k_proj"}},
		{"d", 3, []string{"q_proj", "v_proj"}},
	}
	var m *peft.Model
	for i, s := range specs {
		c := lora.NewConfig()
		c.R, c.Alpha = s.r, float64(2*s.r+i)
		c.TargetModules = tuners.Names(s.targets...)
		var err error
		if m == nil {
			m, err = peft.New(hsLlama(t), c, peft.AdapterName(s.name))
		} else {
			err = m.AddAdapter(c, peft.AdapterName(s.name))
		}
		if err != nil {
			t.Fatal(err)
		}
		perturb(t, m, s.name, uint64(40+i))
	}
	m.SetTraining(false)
	for _, names := range [][]string{
		{"b", tuners.BaseAdapterName, "a", "c", "a", "b"}, // permuted groups
		{"a", "a", "b", "c", "c"},                         // groups in batch order
		{"c", "c", "c"},                                   // one group, every row
		{"a", "b", tuners.BaseAdapterName},                // in order, a base row last
		{"a", "a", "d", "d", "d"},                         // q/v rows all covered, in order
	} {
		checkRows(t, m, names)
	}
}

// checkRows runs ForwardMixed with names and compares each row with the
// row run alone.
func checkRows(t *testing.T, m *peft.Model, names []string) {
	t.Helper()
	in := llamaInput(len(names))
	got, err := m.ForwardMixed(in, names)
	if err != nil {
		t.Fatal(err)
	}
	per := got.Len() / len(names)
	gd := got.Data()
	for i, n := range names {
		row := models.Input{IDs: in.IDs[i*6 : (i+1)*6], Shape: []int{1, 6}}
		var want *nn.Tensor
		if n == tuners.BaseAdapterName {
			want = baseOutput(t, m, row)
		} else {
			if err := m.SetAdapter(n); err != nil {
				t.Fatal(err)
			}
			want = forward(t, m, row)
		}
		wd := want.Data()
		d := 0.0
		for j := range wd {
			d = max(d, abs64(float64(gd[i*per+j]-wd[j])))
		}
		if d > 1e-5 {
			t.Errorf("%q: row %d (%s) differs from running it alone by %g", names, i, n, d)
		}
	}
	// The rows really differ by adapter: the batch differs from the same
	// batch with another adapter everywhere.
	if err := m.SetAdapter("b"); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(forward(t, m, in), got); d < 1e-4 {
		t.Errorf("%q: the mixed batch equals the all-%q batch (diff %g)", names, "b", d)
	}
}

func abs64(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
