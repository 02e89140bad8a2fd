// Package fourierft implements FourierFT (peft_type "FOURIERFT", PEFT's
// FourierFTConfig): each adapted nn.Linear or GPT-2 Conv1D learns n
// spectral coefficients at random (seeded) locations of its weight's 2-D
// frequency grid; the weight update is the real part of the inverse 2-D DFT
// of that sparse spectrum, times scaling.
//
// The locations are PEFT's exactly: torch.randperm(out*in) under
// manual_seed(random_loc_seed), reproduced by internal/torchrand, and are
// exposed as the "indices.<adapter>" buffer. The inverse DFT of n
// coefficients is computed as a product of rank 2n with cosine and sine
// factors (see Layer), which runs on every backend and differentiates with
// ordinary nn ops. The saved tensor is "fourierft_spectrum".
//
// Where gopeft differs from PEFT: a random initial spectrum (init_weights
// false, PEFT's default) is drawn from gopeft's Philox stream, not torch's
// global generator; disabling the adapters of a merged layer keeps the
// weights merged (PEFT unmerges them).
package fourierft
