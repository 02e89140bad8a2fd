//go:build blas

package all

import (
	// The OpenBLAS backend, compiled with the build tag "blas".
	_ "github.com/gopeft/gopeft/kernels/blas"
)
