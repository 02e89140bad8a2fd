package peft

import (
	"errors"
	"fmt"

	"github.com/gopeft/gopeft/tuners/lora"
)

// AddWeightedAdapter creates adapter name as a weighted combination of
// existing LoRA adapters (PEFT's add_weighted_adapter): its config is
// lora.WeightedConfig of theirs, it is injected next to them, and its
// factors are computed by the combination type of o (svd by default;
// linear, cat, ties, dare_*, magnitude_prune and their _svd variants). The
// new adapter is frozen and not active: see SetAdapter.
//
// Adapters that keep a full copy of the same module (modules_to_save)
// cannot be combined. Not safe for concurrent use.
func (m *Model) AddWeightedAdapter(adapters []string, weights []float64, name string, o lora.WeightedOptions) error {
	if m.unloaded {
		return errUnloaded
	}
	if len(adapters) == 0 {
		return errors.New("peft: AddWeightedAdapter needs at least one adapter")
	}
	if len(adapters) != len(weights) {
		return fmt.Errorf("peft: AddWeightedAdapter: %d adapters but %d weights", len(adapters), len(weights))
	}
	if _, ok := m.adapters[name]; ok {
		return fmt.Errorf("peft: adapter %q already exists", name)
	}
	cfgs := make([]*lora.Config, len(adapters))
	for i, a := range adapters {
		st, ok := m.adapters[a]
		if !ok {
			return fmt.Errorf("peft: no adapter %q (have %q)", a, m.order)
		}
		c, ok := st.cfg.(*lora.Config)
		if !ok {
			return fmt.Errorf("peft: AddWeightedAdapter combines LoRA adapters; %q is %s", a, st.cfg.Base().PeftType)
		}
		cfgs[i] = c
	}
	for _, w := range m.wrappers() {
		if w.saved == nil {
			continue
		}
		n := 0
		for _, a := range adapters {
			if w.saved.copies.get(a) != nil {
				n++
			}
		}
		if n > 1 {
			return fmt.Errorf("peft: AddWeightedAdapter: adapters %q keep full copies of module %q (modules_to_save), which cannot be combined", adapters, w.Path)
		}
	}
	cfg, ctype, err := lora.WeightedConfig(cfgs, o)
	if err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	off := false
	if err := m.add(name, cfg, &off); err != nil {
		return err
	}
	if err := lora.AddWeighted(m.root, adapters, weights, name, ctype, o); err != nil {
		m.removeAdapter(name)
		_ = m.applyActive()
		return fmt.Errorf("peft: %w", err)
	}
	return m.applyActive()
}
