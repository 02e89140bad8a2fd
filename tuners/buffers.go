package tuners

// Buffer is adapter state that PEFT derives itself when it creates an
// adapter and does not save, or saves differently: seeded draws (VeRA's
// projections), permutations (FourierFT's spectral indices), factors of the
// base weight. gopeft derives it the same way; the golden suite compares it
// with PEFT's recorded values. It is never loaded into a model.
type Buffer struct {
	// Name is the buffer's live name relative to the module that holds it,
	// with the adapter name where PEFT's name has it ("indices.default",
	// "vera_A.default", "oft_R.default.cols").
	Name string
	// Shape is the buffer's shape.
	Shape []int
	// F32 holds float buffers, I64 integer ones (exactly one is set),
	// row-major.
	F32 []float32
	I64 []int64
	// Tol is the tolerance (absolute and relative) for comparing a float
	// buffer with PEFT's: 0, exact, for draws and index sets; positive for
	// factors of a floating-point decomposition (an SVD), which a different
	// implementation reproduces only to rounding.
	Tol float64
	// Model marks method-level state (FRoD's frod_V): Name is relative to
	// the model, recorded as "base_model." + Name, not to the layer that
	// reports it. Layers sharing it may all report it.
	Model bool
	// Gram says the buffer is defined only up to an orthogonal factor on
	// the right, B Q (an eigenbasis of a repeated eigenvalue, which every
	// implementation picks differently): it is compared through B B^T,
	// within Tol.
	Gram bool
}

// Bufferer is implemented by layers (and Shared.State values) holding
// derived state. Buffers returns adapter's buffers (nil if none). A layer's
// buffers are recorded by PEFT as "base_model.model." + path + "." + Name,
// a Shared state's as "base_model." + Name.
type Bufferer interface {
	Buffers(adapter string) []Buffer
}
