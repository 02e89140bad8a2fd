//go:build blas

package bench

var wantBackends = []string{"purego", "blas"}
