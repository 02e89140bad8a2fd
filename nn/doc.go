// Package nn is gopeft's tensor library: float32 tensors that live on a
// kernels.Backend, reverse-mode automatic differentiation, the layers PEFT
// adapts (Linear, Embedding, convolutions, norms), module trees with
// HuggingFace dotted paths and state dicts, and optimizers.
//
// # Tensors
//
// A Tensor is a contiguous, row-major float32 array held in a backend
// Buffer, plus a shape. There are no strided views: Reshape and Detach share
// the buffer, Slice along the leading axis returns a window onto it, and
// every other shape change (Transpose, Permute, Expand, Slice on an inner
// axis) copies through the backend's StridedCopy kernel. All arithmetic is a
// backend kernel call, so the same code runs on every backend and data never
// leaves the device between operations.
//
// # Operations and modules
//
// Operations are package functions (Add, MatMul, Softmax, ...). The layers
// that PEFT adapts exist twice: as module types holding their parameters
// (Linear, Embedding, Conv1d, Conv2d, LayerNorm, RMSNorm, Dropout, and
// GPT-2's Conv1D), which is what adapter injection finds by type, and as
// functional operations with an Op suffix taking the parameters as
// arguments (LinearOp, EmbeddingOp, Conv1dOp, Conv2dOp, LayerNormOp,
// RMSNormOp, DropoutOp).
//
// # Autograd
//
// A tensor made with SetRequiresGrad(true) is a leaf parameter. An operation
// records a graph node on its result only when at least one input requires
// gradients; otherwise nothing is recorded and nothing is retained. Calling
// Backward on a scalar walks the recorded graph in reverse topological order.
// Every backward rule is itself made of backend kernel calls (GEMMs for
// products, Reduce for broadcast axes, ScatterAdd for gathers, Col2Im for
// convolutions). Gradients of leaves accumulate across Backward calls (Axpy)
// until ZeroGrad; gradients of intermediate results are released as soon as
// they have been propagated. Operations save the tensors their backward rule
// needs: overwriting one of them in place (CopyFrom) between the forward and
// the backward pass gives wrong gradients.
//
// GradCheck compares the gradients of any function against central finite
// differences taken in float64; the package's tests apply it to every
// differentiable operation.
//
// # Concurrency
//
// Inference is safe from many goroutines at once: an operation whose inputs
// do not require gradients only reads its inputs and writes a new tensor,
// and modules in evaluation mode keep no per-call state. Training is not:
// Backward writes the gradients of leaves, optimizers write parameters,
// Dropout advances its RNG, and CopyFrom, SetChild, LoadStateDict and
// SetTraining mutate shared state. Callers serialise those.
//
// # Errors
//
// Shape mismatches between tensors inside an operation are programming
// errors and panic with a message naming the operation and the shapes. Input
// that comes from users (token ids, targets, state dicts) has checked entry
// points that return errors: EmbeddingOpChecked, (*Embedding).LookupChecked,
// CrossEntropyChecked, LoadStateDict.
package nn
