package tuners

// Reloader is implemented by layers whose derived state depends on tensors
// an adapter file sets: FRoD derives each layer's U from the model-level
// V, which a file saved with save_projection replaces. The peft package
// calls Reload with the adapter's name after it has copied the adapter's
// file into the model; the error names the module's problem.
type Reloader interface {
	Reload(adapter string) error
}
