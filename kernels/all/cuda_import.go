//go:build cuda

package all

import (
	// The CUDA backend, compiled with the build tag "cuda".
	_ "github.com/gopeft/gopeft/kernels/cuda"
)
