package tuners

// Reloader is implemented by layers whose derived state depends on tensors
// an adapter file sets: FRoD derives each layer's U from the model-level
// V, which a file saved with save_projection replaces. The peft package
// calls Reload with the adapter's name after it has copied the adapter's
// file into the model; the error names the module's problem.
type Reloader interface {
	Reload(adapter string) error
}

// ShapeFitter is implemented by layers whose adapter tensors' shapes come
// from state derived at creation that a file may have been made with
// differently (AdaMSS: its B blocks are sized by a clustering of the base
// weight). PEFT's _load_from_state_dict replaces such tensors by ones of the
// file's shapes before loading; the peft package likewise calls FitShapes
// with the file's shape for each of the layer's saved fragments of adapter
// (keyed as AdapterParams names them) before its strict shape check, and
// Reload after the copy, so that the layer can check and re-derive the state
// that goes with them. The error names the offending fragment.
type ShapeFitter interface {
	FitShapes(adapter string, shapes map[string][]int) error
}
