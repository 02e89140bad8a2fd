package beft

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// TestConcurrentForward runs the evaluation forward from several goroutines
// (meaningful under -race) and checks that they agree.
func TestConcurrentForward(t *testing.T) {
	l, _ := newTestLayer(t, 5, 4, true)
	x := layertest.Rand(rand.New(rand.NewPCG(11, 12)), 1, 3, 5)
	want := layertest.To64(l.Forward(x).Data())
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for g := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := layertest.Close(l.Forward(x).Data(), want, 0, 0); err != nil {
					errs[g] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for g, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", g, err)
		}
	}
}
