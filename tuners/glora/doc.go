// Package glora implements GLoRA (peft_type "GLORA", PEFT's GloraConfig):
// generalised LoRA. An adapted nn.Linear with weight W0 and bias b0 computes
// with
//
//	W = W0 + W0 * A + B        b = b0 + b0 * D + E + W0 C
//
// (* elementwise, broadcast), where each of A, B ([out, in]), C ([in, 1]),
// D and E ([out]) is parameterised as config_A_B / config_C / config_D_E
// say: "lora" (a product Xd Xu of rank r), "vector" (one value per row),
// "constant" (one scalar) or "none" (a frozen zero buffer, which PEFT saves
// as "<path>.zeros"). Without a base bias, C, D and E are "none".
//
// Several active adapters add their updates (PEFT sums the adapted outputs
// and subtracts the base output once per adapter). Merging follows PEFT:
// adapters already merged are unmerged first and every merged adapter is
// folded in again against the original weights, W0 + sum(W0 * A_i + B_i);
// unmerging recovers W0 = (W - sum B_i) / (1 + sum A_i) and
// b0 = (b - sum E_i - sum W0 C_i) / (1 + sum D_i), which fails (Inf/NaN) if
// some 1 + sum A_i is zero, exactly as in PEFT. Per-row adapters
// (tuners.RowAdapters) are supported as in PEFT's mixed batches.
//
// Saved tensors: "glora_<P>.Xd" and "glora_<P>.Xu" (lora), "glora_<P>.X"
// (vector: [out, 1] for A and B, [in, 1] for C, [out] for D and E;
// constant: [1]) and "glora_<P>.zeros" (none), for P in A..E.
//
// Where gopeft differs from PEFT: initial values are drawn from gopeft's
// Philox stream, not torch's; disabling the adapters of a merged layer keeps
// the weights merged (PEFT unmerges them).
package glora
