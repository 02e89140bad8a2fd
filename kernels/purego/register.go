package purego

import "github.com/gopeft/gopeft/kernels"

// init makes the backend available to kernels.Get and kernels.Default.
func init() {
	kernels.Register(kernels.Registration{
		Name:     Name,
		Priority: 0,
		New:      func() (kernels.Backend, error) { return New(), nil },
	})
}
