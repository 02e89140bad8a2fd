package tuners

import "github.com/gopeft/gopeft/safetensors"

// FileFormat is implemented by method configs whose adapter files do not
// hold the adapter's tensors as they live in the model: VB-LoRA with
// save_only_topk_weights stores the top-k indices and weights of its logits
// instead of the logits. The peft package encodes the tensors it saves (by
// saved key, as StateDict names them) just before writing the file, and
// decodes a file's tensors back to those keys before its strict load.
type FileFormat interface {
	// EncodeFile returns the tensors the file holds for the given saved
	// tensors.
	EncodeFile(tensors map[string]safetensors.Tensor) (map[string]safetensors.Tensor, error)
	// DecodeFile returns the saved tensors a file's tensors stand for; its
	// error names the offending key.
	DecodeFile(tensors map[string]safetensors.Tensor) (map[string]safetensors.Tensor, error)
}
