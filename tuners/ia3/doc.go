// Package ia3 implements IA3 ((IA)^3, "Infused Adapter by Inhibiting and
// Amplifying Inner Activations"; PEFT's peft_type "IA3") for gopeft.
//
// An adapter is one learned vector per adapted layer, saved as
// "<module>.ia3_l". For the modules named by feedforward_modules the vector
// scales the layer's input (shape [1, in] for linear layers, [1, in, 1...]
// for convolutions); for the other targets it scales the output, bias
// included ([out, 1], [1, out, 1...]). Several active adapters multiply.
// Merging multiplies the base weight (and, for output scaling, the bias) in
// place; unmerging divides by vector + 1e-8, as PEFT does, so it restores
// the weights only approximately.
//
// Layers: nn.Linear, GPT-2 nn.Conv1D (fan_in_fan_out is forced on), nn.Conv2d
// and nn.Conv1d. Where gopeft differs from PEFT 0.20.0: nn.Conv1d is adapted
// like PEFT's Conv2d/Conv3d (PEFT refuses it); a feed-forward convolution
// with groups > 1 runs but refuses to merge (PEFT's merge fails there);
// init_ia3_weights=false draws N(0, 1) from gopeft's Philox stream, not
// torch's. PEFT's add_weighted_adapter for IA3 is not implemented.
package ia3
