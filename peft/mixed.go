package peft

import (
	"errors"
	"fmt"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// ForwardMixed runs the model with a different adapter for each batch row
// (PEFT's forward with adapter_names): row i uses adapterNames[i] alone, or
// no adapter for tuners.BaseAdapterName ("__base__"). The batch is the first
// axis of in.Shape and must have len(adapterNames) rows. As in PEFT it is an
// inference feature: it fails while adapters are merged, and for methods
// (or modules_to_save copies) that cannot split a batch.
//
// The batch runs through the model once: each adapted layer gathers the
// rows of each adapter, runs that adapter on them and adds the results
// back in place (see tuners/lora). In a mixed model (NewMixed) each
// module's stack hands the names to every method layer on it, so every
// method there must take per-row adapters.
//
// It changes the layers for the duration of the call, so it must not run
// concurrently with anything else on the model.
func (m *Model) ForwardMixed(in models.Input, adapterNames []string) (out *nn.Tensor, err error) {
	if m.unloaded {
		return nil, errUnloaded
	}
	if len(adapterNames) == 0 {
		return nil, errors.New("peft: ForwardMixed needs one adapter name per batch row")
	}
	if len(in.Shape) == 0 || in.Shape[0] != len(adapterNames) {
		return nil, fmt.Errorf("peft: ForwardMixed: input shape %v has not one row per adapter name (%d names)", in.Shape, len(adapterNames))
	}
	for _, n := range adapterNames {
		if a, ok := m.adapters[n]; ok && a.prompt != nil {
			return nil, fmt.Errorf("peft: ForwardMixed: %s adapter %q cannot be applied per row", a.prompt.Type(), n)
		}
		if _, ok := m.adapters[n]; !ok && n != tuners.BaseAdapterName {
			return nil, fmt.Errorf("peft: ForwardMixed: no adapter %q (have %q and %q)", n, m.order, tuners.BaseAdapterName)
		}
	}
	ws := m.wrappers()
	var set []tuners.RowAdapters
	defer func() {
		for _, l := range set {
			if e := l.SetBatchAdapters(nil); e != nil && err == nil {
				out, err = nil, e
			}
		}
	}()
	for _, w := range ws {
		if w.saved != nil {
			return nil, fmt.Errorf("peft: ForwardMixed: module %q is saved in full (modules_to_save), which cannot take one adapter per row", w.Path)
		}
		l, ok := w.layer.(tuners.RowAdapters)
		if !ok {
			return nil, fmt.Errorf("peft: ForwardMixed: %s layer %q cannot take one adapter per row", w.layer.Method(), w.Path)
		}
		if err := l.SetBatchAdapters(adapterNames); err != nil {
			return nil, fmt.Errorf("peft: ForwardMixed: %q: %w", w.Path, err)
		}
		set = append(set, l)
	}
	return m.Forward(in)
}
