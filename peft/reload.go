package peft

import (
	"fmt"
	"slices"
	"strings"

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

// fitShapes hands every layer of adapter that sizes its tensors from the
// file (tuners.ShapeFitter) the file's shapes of its saved fragments; it
// reports whether any layer was asked.
func (m *Model) fitShapes(adapter string, src weightSource) (bool, error) {
	fitted := false
	err := tuners.WalkTargets(m.root, func(n tuners.Node) error {
		l, ok := n.Module.(tuners.Layer)
		if !ok {
			return nil
		}
		f, ok := l.(tuners.ShapeFitter)
		if !ok || !slices.Contains(l.Adapters(), adapter) {
			return nil
		}
		prefix := "base_model.model." + n.Path + "."
		shapes := map[string][]int{}
		for _, name := range src.Names() {
			if frag, ok := strings.CutPrefix(name, prefix); ok {
				if info, ok := src.Info(name); ok {
					shapes[frag] = info.Shape
				}
			}
		}
		fitted = true
		if err := f.FitShapes(adapter, shapes); err != nil {
			return fmt.Errorf("adapter %q: module %q: %w", adapter, n.Path, err)
		}
		return nil
	})
	return fitted, err
}
