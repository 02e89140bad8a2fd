// Package pvera implements PVeRA (peft_type "PVERA", PEFT's PveraConfig):
// probabilistic vector-based random matrix adaptation (arXiv:2512.07703).
// Like VeRA, all adapted layers of an adapter share one pair of frozen
// random projections, pvera_A [2r, max in] and pvera_B [max out, r], drawn
// from projection_prng_key with torch's CPU generator (VeRA's
// DrawProjections, bit for bit torch's kaiming_uniform_ values), and each
// layer trains pvera_lambda_d [2r] and pvera_lambda_b [out]:
//
//	h = lambda_d * (x A^T)                    [..., 2r]
//	mu, logvar = h[..., :r], h[..., r:]
//	z = mu + eps * exp(logvar / 2)            (training, or sample_at_inference)
//	z = mu                                    (evaluation otherwise)
//	y = base(x) + lambda_b * (z B^T)
//
// eps ~ N(0, 1) comes from a torch generator seeded with generator_seed
// when it is set (torch's values), else from gopeft's Philox stream.
// Merging folds the mean path (lambda_b B)(lambda_d[:r] A[:r]) into the base
// weight, as PEFT does, so a merged layer equals the unmerged one in
// evaluation mode without sampling.
//
// The projections are the method's shared state (tuners.Preparer). With
// save_projection (the default) they are saved as "base_model.pvera_A" and
// "base_model.pvera_B"; without, they are regenerated from the key on load.
//
// Where gopeft differs from PEFT: a random lambda_d (init_weights false)
// comes from gopeft's Philox stream, not torch's global generator; so does
// the noise when generator_seed is null. Forward with sampling (training
// or sample_at_inference) advances the layer's generator and is not safe
// for concurrent use.
package pvera
