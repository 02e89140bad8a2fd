// Package gralora implements GraLoRA (peft_type "GRALORA", PEFT's
// GraloraConfig): granular low-rank adaptation. The [out, in] weight update
// is split into k x k blocks; input block n is projected by its own
// A_n [in/k, r] and output block j is produced by its own B_j [r, out/k],
// and block (j, n) of the update is the product of the r/k columns of A_n
// that belong to output block j with the r/k rows of B_j that belong to
// input block n. Every block thus has rank r/k and the whole update rank up
// to r*k, with LoRA's parameter count. With hybrid_r > 0 a plain LoRA of
// rank hybrid_r is added; the scaling is alpha / (r + hybrid_r).
//
// nn.Linear and GPT-2 nn.Conv1D layers are supported. Merging writes every
// block's product straight into the base weight with batched GEMMs (one per
// output block, no temporary the size of the weight) and unmerging subtracts
// it again. The saved tensors are "gralora_A" [k, in/k, r], "gralora_B"
// [k, r, out/k] and, with hybrid_r > 0, "gralora_A_general.weight"
// [hybrid_r, in] and "gralora_B_general.weight" [out, hybrid_r].
//
// Where gopeft differs from PEFT: the kaiming-uniform initial values are
// drawn from gopeft's Philox stream, not torch's; disabling the adapters of a
// merged layer keeps the weights merged (PEFT unmerges them).
package gralora
