package peft

import (
	"fmt"
	"slices"

	"github.com/gopeft/gopeft/tuners"
)

// reload lets every layer holding adapter that derives state from loaded
// tensors (tuners.Reloader) derive it again.
func (m *Model) reload(adapter string) error {
	return tuners.WalkTargets(m.root, func(n tuners.Node) error {
		l, ok := n.Module.(tuners.Layer)
		if !ok {
			return nil
		}
		r, ok := l.(tuners.Reloader)
		if !ok {
			return nil
		}
		for _, a := range l.Adapters() {
			if a == adapter {
				if err := r.Reload(adapter); err != nil {
					return fmt.Errorf("peft: adapter %q: module %q: %w", adapter, n.Path, err)
				}
			}
		}
		return nil
	})
}

// Buffers returns the state that adapter's layers and method-level state
// derive themselves (tuners.Bufferer), keyed as PEFT names it: a layer's
// under "base_model.model.<path>.<name>", the method-level state's under
// "base_model.<name>" (tuners.Buffer.Model). The golden suite compares
// them with PEFT's recorded values.
func (m *Model) Buffers(adapter string) map[string]tuners.Buffer {
	out := map[string]tuners.Buffer{}
	if a := m.adapters[adapter]; a != nil && a.shared != nil {
		if b, ok := a.shared.State.(tuners.Bufferer); ok {
			for _, buf := range b.Buffers(adapter) {
				out["base_model."+buf.Name] = buf
			}
		}
	}
	_ = tuners.WalkTargets(m.root, func(n tuners.Node) error {
		l, ok := n.Module.(tuners.Layer)
		if !ok {
			return nil
		}
		b, ok := l.(tuners.Bufferer)
		if !ok || !slices.Contains(l.Adapters(), adapter) {
			return nil
		}
		for _, buf := range b.Buffers(adapter) {
			if buf.Model {
				out["base_model."+buf.Name] = buf
			} else {
				out["base_model.model."+n.Path+"."+buf.Name] = buf
			}
		}
		return nil
	})
	return out
}
