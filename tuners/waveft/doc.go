// Package waveft implements PEFT's WaveFT (wavelet fine-tuning, PEFT
// v0.20.0 "WAVEFT") for Linear and GPT-2 Conv1D layers: n trainable
// wavelet coefficients at torch-drawn locations, turned into a weight
// update by a single-level 2-D inverse wavelet transform (or placed
// directly with use_idwt false), times scaling.
//
// The transform is built from nn GEMMs with synthesis factors made once per
// adapter (see Layer), so it is differentiable and runs on every backend.
// The filter taps are those PEFT 0.20 ships (filters_table.go): db1-db10,
// sym2-sym10 and coif1-coif4; other names of PEFT's wavelet table are
// rejected with the reason, as PEFT fails on them.
//
// Saved tensors: "<module>.waveft_spectrum" [n].
package waveft
