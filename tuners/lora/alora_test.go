package lora

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

func TestALoRAOffsets(t *testing.T) {
	inv := []int64{7, 8}
	ids := []int32{
		1, 7, 8, 2, 3, 4, // invocation at 1 -> offset 5
		7, 8, 1, 7, 8, 9, // last occurrence at 3 -> offset 3
		1, 2, 3, 4, 5, 7, // no full occurrence
	}
	got := ALoRAOffsets(inv, ids, 3, 6)
	if want := []int{5, 3, 0}; !slices.Equal(got, want) {
		t.Fatalf("offsets %v, want %v", got, want)
	}
}

// TestALoRAForward checks that an aLoRA adapter changes exactly the last
// offsets[i] tokens of row i, by the plain LoRA amount.
func TestALoRAForward(t *testing.T) {
	for _, lc := range []int{0, 2} { // Linear [B, T, in], GPT-2 Conv1D [B, in]
		r := rand.New(rand.NewPCG(61, 62))
		cfg := testConfig(variant{})
		cfg.AloraInvocationTokens = json.RawMessage(`[5, 6]`)
		l := wrap(t, layerCases[lc].base(r), cfg, "default")
		c := l.coreOf()
		x, _ := layerCases[lc].input(r)
		l.SetDisabled(true)
		base := reference(t, l, x, nil)
		l.SetDisabled(false)
		full := reference(t, l, x, nil) // the reference ignores aLoRA's mask

		closeTo(t, "no offsets", run(l, x, nil).Data(), base, 2e-5, 2e-5)
		shape := x.Shape()
		tokens := 1
		if len(shape) == 3 {
			tokens = shape[1]
		}
		offsets := []int{1, 0, 9}
		l.SetALoRAOffsets(offsets)
		got := run(l, x, nil).Data()
		per := len(got) / (shape[0] * tokens)
		want := make([]float64, len(got))
		for b := range shape[0] {
			for p := range tokens {
				src := base
				if p >= tokens-min(offsets[b], tokens) {
					src = full
				}
				i := (b*tokens + p) * per
				copy(want[i:i+per], src[i:i+per])
			}
		}
		closeTo(t, layerCases[lc].name+" aLoRA", got, want, 2e-5, 2e-5)

		if err := nn.GradCheck(func() *nn.Tensor { return run(l, x, nil) }, []*nn.Tensor{c.adapters["default"].a, c.adapters["default"].b}, 1e-2, 1e-2); err != nil {
			t.Fatal(err)
		}
		if err := l.Merge(nil, false); err == nil || !strings.Contains(err.Error(), "aLoRA") {
			t.Fatalf("merging an aLoRA adapter: err = %v", err)
		}
		// Mixed batches pass each row's offset along.
		if err := l.SetBatchAdapters([]string{"default", BaseAdapterName, "default"}); err != nil {
			t.Fatal(err)
		}
		mixed := run(l, x, nil).Data()
		for b, n := range []string{"default", BaseAdapterName, "default"} {
			lo, hi := b*tokens*per, (b+1)*tokens*per
			src := want
			if n == BaseAdapterName {
				src = base
			}
			closeTo(t, "mixed row", mixed[lo:hi], src[lo:hi], 2e-5, 2e-5)
		}
		_ = l.SetBatchAdapters(nil)
	}
	r := rand.New(rand.NewPCG(63, 64))
	cfg := testConfig(variant{})
	cfg.AloraInvocationTokens = json.RawMessage(`[5]`)
	if _, err := (Method{}).Wrap(targetFor(layerCases[5].base(r), cfg)); err == nil {
		t.Error("aLoRA on a Conv2d succeeded")
	}
}

func targetFor(m nn.Module, cfg *Config) tuners.Target {
	return tuners.Target{Path: "p", Module: m, Config: cfg, Adapter: "default"}
}
