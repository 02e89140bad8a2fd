//go:build blas

package bench

import _ "github.com/gopeft/gopeft/kernels/blas"

var wantBackends = []string{"purego", "blas"}
