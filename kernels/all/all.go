// Package all links every compiled kernel backend into a program.
//
// Import it for its side effect:
//
//	import _ "github.com/gopeft/gopeft/kernels/all"
//
// The pure Go backend is always included; the OpenBLAS backend joins with the
// build tag "blas" and the CUDA backend with "cuda". kernels.Default then
// picks GOPEFT_BACKEND, or the fastest one that starts.
package all

import (
	// The pure Go backend, always compiled.
	_ "github.com/gopeft/gopeft/kernels/purego"
)
