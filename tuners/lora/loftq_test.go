package lora

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

func TestNF4RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	w := make([]float32, 150) // two full blocks and a partial one
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	q := nf4RoundTrip(w)
	maxGap := float32(0)
	for i := 1; i < len(nf4Levels); i++ {
		maxGap = max(maxGap, nf4Levels[i]-nf4Levels[i-1])
	}
	for start := 0; start < len(w); start += nf4Block {
		end := min(start+nf4Block, len(w))
		var absmax float32
		for _, v := range w[start:end] {
			absmax = max(absmax, float32(math.Abs(float64(v))))
		}
		for i := start; i < end; i++ {
			lvl := q[i] / absmax
			onGrid := false
			for _, l := range nf4Levels {
				if math.Abs(float64(lvl-l)) < 1e-6 {
					onGrid = true
				}
			}
			if !onGrid {
				t.Fatalf("element %d: %v / absmax %v is not an NF4 level", i, q[i], absmax)
			}
			if d := math.Abs(float64(q[i] - w[i])); d > float64(maxGap*absmax/2)+1e-6 {
				t.Fatalf("element %d: error %v exceeds half the widest level gap", i, d)
			}
		}
	}
	// Values already on the grid survive the round trip.
	grid := make([]float32, 16)
	for i, l := range nf4Levels {
		grid[i] = 2 * l
	}
	for i, v := range nf4RoundTrip(grid) {
		if v != grid[i] {
			t.Fatalf("grid value %v came back as %v", grid[i], v)
		}
	}
}

func TestInt8RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	rows, cols := 3, 40
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	q := int8RoundTrip(w, rows, cols)
	for row := range rows {
		var absmax float32
		for _, v := range w[row*cols : (row+1)*cols] {
			absmax = max(absmax, float32(math.Abs(float64(v))))
		}
		for j := range cols {
			i := row*cols + j
			if d := math.Abs(float64(q[i] - w[i])); d > float64(absmax)/254+1e-6 {
				t.Fatalf("element %d: error %v exceeds half a step (%v)", i, d, absmax/254)
			}
			steps := q[i] / absmax * 127
			if math.Abs(float64(steps)-math.Round(float64(steps))) > 1e-3 {
				t.Fatalf("element %d: %v is not a multiple of absmax/127", i, q[i])
			}
		}
	}
}

// TestLoftQInit checks that the base weight becomes its quantised round
// trip and that B A (the scaling is 1 here) reduces the quantisation error,
// more so with more iterations allowed to alternate.
func TestLoftQInit(t *testing.T) {
	for _, bits := range []int{4, 8} {
		r := rand.New(rand.NewPCG(45, 46))
		w := randTensor(r, 1, 24, 32)
		orig := w.Data()
		cfg := NewConfig()
		cfg.R, cfg.Alpha, cfg.InitLoRAWeights = 4, 4, InitLoftQ
		cfg.LoftQConfig = json.RawMessage(`{"loftq_bits": ` + map[int]string{4: "4", 8: "8"}[bits] + `, "loftq_iter": 1}`)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		l := wrap(t, &nn.Linear{Weight: w}, cfg, "default")
		q := w.Data()
		var want []float32
		if bits == 4 {
			want = nf4RoundTrip(orig)
		} else {
			want = int8RoundTrip(orig, 24, 32)
		}
		if !slicesEqual(q, want) {
			t.Fatalf("%d bits: base weight is not the quantised round trip", bits)
		}
		d, err := l.DeltaWeight("default")
		if err != nil {
			t.Fatal(err)
		}
		ba := d.Data()
		var errQ, errQBA float64
		for i := range orig {
			errQ += math.Pow(float64(orig[i]-q[i]), 2)
			errQBA += math.Pow(float64(orig[i]-q[i]-ba[i]), 2)
		}
		if !(errQBA < 0.9*errQ) {
			t.Fatalf("%d bits: ||W - Q - BA||^2 = %g, not clearly below ||W - Q||^2 = %g", bits, errQBA, errQ)
		}
	}
	cfg := NewConfig()
	cfg.InitLoRAWeights, cfg.LoftQConfig = InitLoftQ, json.RawMessage(`{"loftq_bits": 4, "loftq_iter": 1}`)
	r := rand.New(rand.NewPCG(47, 48))
	if _, err := (Method{}).Wrap(tuners.Target{Path: "e", Module: layerCases[3].base(r), Config: cfg, Adapter: "default"}); err == nil {
		t.Error("LoftQ on an Embedding succeeded")
	}
}
