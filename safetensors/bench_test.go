package safetensors

import (
	"path/filepath"
	"testing"
)

// benchFile writes a 1M-element tensor of dtype and opens it.
func benchFile(b *testing.B, dtype string) *File {
	b.Helper()
	const n = 1 << 20
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%1000) / 7
	}
	p := filepath.Join(b.TempDir(), "b.safetensors")
	if err := Save(p, map[string]Tensor{"w": {DType: dtype, Shape: []int{n}, F32: v}}, nil); err != nil {
		b.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	b.SetBytes(4 * n)
	return f
}

// Float32 of aligned F32 data is a view: its cost does not grow with the
// tensor. Compare with the converting dtypes.
func BenchmarkFloat32(b *testing.B) {
	for _, dt := range []string{F32, BF16, F16, F64} {
		b.Run(dt, func(b *testing.B) {
			f := benchFile(b, dt)
			for b.Loop() {
				if _, err := f.Float32("w"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSave(b *testing.B) {
	const n = 1 << 20
	v := make([]float32, n)
	dir := b.TempDir()
	b.SetBytes(4 * n)
	for b.Loop() {
		if err := Save(filepath.Join(dir, "s.safetensors"), map[string]Tensor{"w": {Shape: []int{n}, F32: v}}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
