//go:build blas

package blas

import "github.com/gopeft/gopeft/kernels"

func init() {
	kernels.Register(kernels.Registration{
		Name:     Name,
		Priority: Priority,
		New:      func() (kernels.Backend, error) { return New(), nil },
	})
}
