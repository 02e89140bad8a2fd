package purego

import "github.com/gopeft/gopeft/kernels"

// Uniform sets dst[i] = lo + (hi-lo)*kernels.UniformAt(seed, offset+i), the
// product rounded to float32 before the sum.
func (*Backend) Uniform(dst kernels.Buffer, seed, offset uint64, lo, hi float32) {
	d := host(dst)
	scale := hi - lo
	parallelFor(len(d), 32, func(l, h int) {
		for i := l; i < h; i++ {
			d[i] = lo + float32(scale*kernels.UniformAt(seed, offset+uint64(i)))
		}
	})
}

// Normal sets dst[i] = mean + std*kernels.NormalAt(seed, offset+i), the
// product rounded to float32 before the sum.
func (*Backend) Normal(dst kernels.Buffer, seed, offset uint64, mean, std float32) {
	d := host(dst)
	parallelFor(len(d), 64, func(l, h int) {
		for i := l; i < h; i++ {
			d[i] = mean + float32(std*kernels.NormalAt(seed, offset+uint64(i)))
		}
	})
}
