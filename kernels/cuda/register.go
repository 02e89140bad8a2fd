//go:build cuda

package cuda

import "github.com/gopeft/gopeft/kernels"

func init() {
	kernels.Register(kernels.Registration{
		Name:     "cuda",
		Priority: 20,
		New:      func() (kernels.Backend, error) { return New() },
	})
}
