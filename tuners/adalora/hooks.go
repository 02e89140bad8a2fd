package adalora

import (
	"fmt"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

var _ tuners.Preparer = Method{}

// Prepare gives an adapter created for training (inference_mode false) its
// training hooks, kept as the adapter's method-level state: the peft
// package's Model.AfterStep runs its Allocator (PEFT's
// update_and_allocate) and Model.LossTerms returns its orthogonality
// regulariser, weighted by orth_reg_weight (what PEFT's forward adds to the
// loss). Adapters loaded for inference get none, as PEFT makes no
// RankAllocator for them. Use either these hooks or an Allocator of your
// own, not both: each call advances the importance averages.
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, _ []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("adalora: config is a %T, not a *adalora.Config", c)
	}
	if cfg.InferenceMode {
		return nil, nil
	}
	return &tuners.Shared{State: &trainingHooks{root: root, cfg: cfg, adapter: adapter}}, nil
}

// trainingHooks is the method-level state of an adapter created for
// training: its Allocator, made on first use (after the layers exist).
type trainingHooks struct {
	root    nn.Module
	cfg     *Config
	adapter string
	alloc   *Allocator
}

var (
	_ tuners.AfterStepHook = (*trainingHooks)(nil)
	_ tuners.LossTermer    = (*trainingHooks)(nil)
)

// allocator returns the adapter's Allocator, making it on first use.
func (h *trainingHooks) allocator() (*Allocator, error) {
	if h.alloc == nil {
		a, err := NewAllocator(h.root, h.cfg, h.adapter)
		if err != nil {
			return nil, err
		}
		h.alloc = a
	}
	return h.alloc, nil
}

// AfterStep runs the allocator's UpdateAndAllocate(step).
func (h *trainingHooks) AfterStep(step int) error {
	a, err := h.allocator()
	if err != nil {
		return err
	}
	return a.UpdateAndAllocate(step)
}

// LossTerm returns orth_reg_weight times the orthogonality regulariser.
func (h *trainingHooks) LossTerm() (*nn.Tensor, error) {
	a, err := h.allocator()
	if err != nil {
		return nil, err
	}
	return a.OrthRegLoss(), nil
}
