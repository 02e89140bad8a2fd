// Package vera implements VeRA (peft_type "VERA", PEFT's VeraConfig):
// vector-based random matrix adaptation. All adapted layers of an adapter
// share one pair of frozen random projections, vera_A [r, max in] and
// vera_B [max out, r], drawn from projection_prng_key with torch's CPU
// generator (reproduced bit for bit by internal/torchrand); each layer
// trains only two scaling vectors, vera_lambda_d [r] and vera_lambda_b
// [out], and uses the leading slices of the projections:
//
//	y = base(x) + lambda_b * ((lambda_d * (x A^T)) B^T)
//
// The projections are the method's shared state (tuners.Preparer). With
// save_projection (the default) they are saved as "base_model.vera_A" and
// "base_model.vera_B"; without, they are regenerated from the key when the
// adapter is loaded. Merging folds (lambda_b B)(lambda_d A) into the base
// weight in place.
//
// Where gopeft differs from PEFT: a random lambda_d (init_weights false)
// comes from gopeft's Philox stream, not torch's global generator;
// disabling the adapters of a merged layer keeps the weights merged (PEFT
// unmerges them).
package vera
