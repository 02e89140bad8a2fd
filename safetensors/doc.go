// Package safetensors reads and writes the safetensors tensor file format
// used by Hugging Face checkpoints and PEFT adapters.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON
// header, then the tensors' raw little-endian bytes, row-major. The header
// maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} (offsets relative to the first byte after the header), plus an
// optional "__metadata__" map of strings.
//
// Reading: Open memory-maps a file and validates its header strictly
// (see Open); File.Float32 returns F32 tensors without copying when their
// data is aligned, and converts F16, BF16 and F64 exactly; File.Int64
// converts the integer dtypes. ReadAll loads a small file (an adapter)
// into ordinary memory. OpenCheckpoint reads a model folder, sharded
// through model.safetensors.index.json or not, opening shards lazily.
//
// Writing: Save writes a map of tensors atomically (temporary file in the
// same folder, fsync, rename) in the layout the Python library produces:
// names sorted, header padded with spaces to a multiple of 8 bytes,
// "__metadata__" with "format": "pt" by default. A Writer streams a file
// tensor by tensor for checkpoints that do not fit in memory, and
// SaveIndex writes the index of a sharded checkpoint.
//
// Errors name the file and the tensor or key at fault, and match
// ErrInvalid, ErrNotFound, ErrDType or ErrClosed with errors.Is. No input
// file makes this package panic.
//
// This package is our own rather than a wrapper of an existing Go
// library: github.com/nlpodyssey/safetensors, the maintained candidate,
// reads through an io.ReadSeeker or a byte slice (no memory mapping, so
// no zero-copy float32 views of large checkpoints), does not convert
// F16/BF16 to float32, has no sharded-index support and no atomic or
// streaming writer, its errors do not name the file, and it is only
// published as an untagged pseudo-version.
package safetensors
