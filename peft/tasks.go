package peft

import (
	"errors"
	"fmt"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/tuners"
)

// setTaskIDs hands the task ids of a forward pass to the layers that route
// by task (tuners.TaskRouter: Poly), as PEFT's forward pre-hook passes
// task_ids to every Poly layer, and returns the function that clears them.
// It fails when such a layer is active and no ids are given, when ids are
// given but nothing uses them, and when their number is not the batch size.
func (m *Model) setTaskIDs(in models.Input, taskIDs []int32) (func(), error) {
	var routers []tuners.TaskRouter
	var first string
	for _, w := range m.wrappers() {
		if r, ok := w.layer.(tuners.TaskRouter); ok && r.NeedsTaskIDs() {
			if first == "" {
				first = w.Path
			}
			routers = append(routers, r)
		}
	}
	if len(routers) == 0 {
		if taskIDs != nil {
			return nil, errors.New("peft: task ids are only used by multitask prompt tuning and Poly adapters")
		}
		return func() {}, nil
	}
	if taskIDs == nil {
		return nil, fmt.Errorf("peft: module %q routes by task: pass one task id per batch row (ForwardTasks, PEFT's task_ids)", first)
	}
	if len(in.Shape) == 0 || in.Shape[0] != len(taskIDs) {
		return nil, fmt.Errorf("peft: %d task ids for an input of shape %v: want one per batch row", len(taskIDs), in.Shape)
	}
	clear := func() {
		for _, r := range routers {
			_ = r.SetTaskIDs(nil)
		}
	}
	for _, r := range routers {
		if err := r.SetTaskIDs(taskIDs); err != nil {
			clear()
			return nil, fmt.Errorf("peft: %w", err)
		}
	}
	return clear, nil
}
