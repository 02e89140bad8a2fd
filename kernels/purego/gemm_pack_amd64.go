//go:build amd64

package purego

import "golang.org/x/sys/cpu"

// transpose8AVX transposes k8 consecutive 8x8 blocks: element (r, c) of
// block g, src[r*lds + g*8 + c], goes to dst[(g*8+c)*ldd + r]. Written in
// gemm_pack_amd64.s.
//
//go:noescape
func transpose8AVX(dst *float32, ldd int, src *float32, lds int, k8 int)

func init() {
	if cpu.X86.HasAVX {
		transpose8 = transpose8AVX
	}
}
