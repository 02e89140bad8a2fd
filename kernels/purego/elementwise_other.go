//go:build !amd64

package purego

// Without amd64 there is no assembly: haveElementwiseAsm is false and the
// stubs below are never called.
const haveElementwiseAsm = false

func axpyAVX2(int, float32, *float32, *float32)            { panic("purego: no assembly") }
func affineAVX2(int, float32, float32, *float32, *float32) { panic("purego: no assembly") }
func addAVX2(int, *float32, *float32, *float32)            { panic("purego: no assembly") }
func subAVX2(int, *float32, *float32, *float32)            { panic("purego: no assembly") }
func mulAVX2(int, *float32, *float32, *float32)            { panic("purego: no assembly") }
func divAVX2(int, *float32, *float32, *float32)            { panic("purego: no assembly") }
