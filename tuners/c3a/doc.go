// Package c3a implements C3A (peft_type "C3A", PEFT's C3AConfig):
// circular-convolution adaptation. The update of an [out, in] nn.Linear is
// block-circulant: with block size b, the trainable kernel w [out/b, in/b, b]
// gives block (p, q) of the update the b x b matrix
//
//	delta[p*b + t, q*b + j] = w[p, q, (j - t) mod b] / in
//
// so that the adapter's output for input block x_q is the circular
// cross-correlation sum_q sum_l w[p, q, l] x_q[(t + l) mod b] / in, which is
// what PEFT computes with FFTs.
//
// Forward computes it in the frequency domain as PEFT does, with the
// discrete Fourier transform of size b written as products with constant
// cosine and sine matrices (exact angles, computed once per adapter): one
// GEMM transforms the input blocks, one batched GEMM per frequency combines
// them with the transformed kernel, and one GEMM transforms back, so the cost
// grows with b*(in + out) per token instead of in*out, and every step is an
// ordinary differentiable nn op. Merging gathers the circulant blocks from
// the kernel (no transform, exact) and adds them to the base weight in place;
// unmerging subtracts them.
//
// Gradients: the kernel's gradient is the true one. The gradient PEFT 0.20
// passes back to the layer's INPUT is not: its hand-written backward
// computes fft(fft(g) * ifft(w)), the gradient of the map with every output
// block reversed (t -> -t mod b). It only matters for tensors trained before
// a C3A layer (an earlier adapter, modules_to_save, biases); gopeft
// reproduces it so that training follows PEFT (see Layer.apply).
//
// As in PEFT, several active adapters on one layer are chained: each one's
// input is the previous one's output (which needs in == out; the layer
// refuses such an active set otherwise). The saved tensor is "c3a_kernel".
//
// Where gopeft differs from PEFT: random initial kernels are drawn from
// gopeft's Philox stream, not torch's; disabling the adapters of a merged
// layer keeps the weights merged (PEFT unmerges them).
package c3a
