package tuners

// TaskRouter is implemented by layers whose forward pass needs one task id
// per batch row (Poly's task_ids, which PEFT hands to every Poly layer
// through a forward pre-hook). The peft package sets the ids before a
// forward pass (Model.ForwardTasks) and clears them after it.
type TaskRouter interface {
	// NeedsTaskIDs reports whether Forward, as the layer is now configured
	// (active adapters, not disabled or bypassed), cannot run without task
	// ids.
	NeedsTaskIDs() bool
	// SetTaskIDs makes Forward use ids[i] as the task of batch row i; nil
	// clears them. It fails, naming the adapter, when an id is out of
	// range for an active adapter.
	SetTaskIDs(ids []int32) error
}
