// Package lycoris holds what PEFT's LyCORIS family of methods (LoHa and LoKr,
// PEFT v0.20.0's LycorisLayer and LycorisConfig) share, so that each method
// package only describes its own factors.
//
// # The layer
//
// A Layer wraps an nn.Linear, nn.Conv1d or nn.Conv2d and holds any number of
// named adapters. Each adapter is a set of method-specific tensors (its
// Factors) that compose, with nn operations, into a full weight update
// ΔW shaped like the base weight; the layer adds
//
//	Linear:  x ΔW^T                          (no bias term)
//	Conv:    conv(x, ΔW) with the base layer's stride, padding, dilation
//	         and groups
//
// to the base output for every active adapter, in order. ΔW carries the
// adapter's scaling alpha/r. In training mode (SetTraining) two kinds of
// dropout apply, as in PEFT:
//
//   - module_dropout: with probability p the whole adapter is skipped for
//     this call (no rescaling);
//   - rank_dropout: each output row of ΔW is zeroed with probability p; with
//     rank dropout scaling (always for LoHa, rank_dropout_scale for LoKr) the
//     kept rows are divided by the fraction kept, mask/mean(mask).
//
// Merge adds ΔW to the base weight in place and Unmerge subtracts it; both
// compute ΔW without dropout (PEFT would apply rank dropout in training mode,
// which makes its unmerge inexact). Factors that implement Accumulator add
// their update without materialising it, which keeps merging large layers
// cheap (LoHa: blocks of rows; LoKr: Kronecker blocks as GEMMs). Gradients
// reach every factor through the nn operations that compose ΔW; a method
// whose PEFT backward is not the exact derivative builds its composition so
// that autograd reproduces PEFT's gradients (LoHa's Tucker form does).
//
// # Names
//
// PEFT keeps each factor kind in a ParameterDict keyed by adapter name: the
// live parameter is "hada_w1_a.default" and the saved key fragment
// "hada_w1_a". Layer.Children lists "base_layer" and then one container per
// factor kind, in the method's order (Spec.Containers).
//
// # Concurrency
//
// Forward in evaluation mode may run from many goroutines at once. Everything
// else mutates the layer and must not run concurrently with anything on it.
package lycoris
