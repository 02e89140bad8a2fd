package lora

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/tuners"
)

// TestBatchAdapters checks per-row adapters against running the whole batch
// with each adapter active in turn and picking that adapter's rows.
func TestBatchAdapters(t *testing.T) {
	for _, lc := range layerCases {
		t.Run(lc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(35, 36))
			l := wrap(t, lc.base(r), testConfig(variant{}), "one")
			cfg2 := testConfig(variant{})
			cfg2.R, cfg2.Alpha = 2, 7
			if _, err := (Method{}).Wrap(tuners.Target{Path: "p", Module: l, Config: cfg2, Adapter: "two"}); err != nil {
				t.Fatal(err)
			}
			x, ids := lc.input(r)
			batch := tBatch
			if x != nil {
				batch = x.Dim(0)
			}
			names := []string{"two", BaseAdapterName, "one", "unknown"}[:batch]
			per := map[string][]float32{}
			for _, n := range []string{"one", "two"} {
				l.SetActive([]string{n})
				per[n] = run(l, x, ids).Data()
			}
			l.SetDisabled(true)
			per[BaseAdapterName] = run(l, x, ids).Data()
			per["unknown"] = per[BaseAdapterName]
			l.SetDisabled(false)
			l.SetActive([]string{"one", "two"})

			if err := l.SetBatchAdapters(names); err != nil {
				t.Fatal(err)
			}
			got := run(l, x, ids).Data()
			rowLen := len(got) / batch
			for i, n := range names {
				closeTo(t, lc.name+" row "+n, got[i*rowLen:(i+1)*rowLen], to64(per[n][i*rowLen:(i+1)*rowLen]), 1e-6, 1e-6)
			}
			if err := l.Merge(nil, false); err == nil {
				t.Fatal("merge with per-row adapters set succeeded")
			}
			if err := l.SetBatchAdapters(nil); err != nil {
				t.Fatal(err)
			}
			closeTo(t, "after reset", run(l, x, ids).Data(), reference(t, l, x, ids), 2e-5, 2e-5)
		})
	}
}

func TestBatchAdaptersRefused(t *testing.T) {
	r := rand.New(rand.NewPCG(37, 38))
	l := wrap(t, layerCases[0].base(r), testConfig(variant{dora: true}), "d")
	if err := l.SetBatchAdapters([]string{"d"}); err == nil || !strings.Contains(err.Error(), "DoRA") {
		t.Errorf("DoRA adapter: err = %v", err)
	}
	l2 := wrap(t, layerCases[0].base(r), testConfig(variant{}), "a")
	if err := l2.Merge(nil, false); err != nil {
		t.Fatal(err)
	}
	if err := l2.SetBatchAdapters([]string{"a"}); err == nil {
		t.Error("per-row adapters on a merged layer accepted")
	}
}
