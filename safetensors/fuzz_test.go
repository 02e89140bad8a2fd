package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Open: it must return a File or an
// error, never panic, and a File it returns must serve every tensor it
// lists. The seeds (valid files of several dtypes and malformed ones) run
// in every plain go test.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	valid := filepath.Join(dir, "valid.safetensors")
	err := Save(valid, map[string]Tensor{
		"a": {Shape: []int{2, 2}, F32: []float32{1, 2, 3, 4}},
		"b": {DType: BF16, Shape: []int{3}, F32: []float32{1, 2, 3}},
		"c": {DType: F16, Shape: []int{}, F32: []float32{5}},
		"d": {Shape: []int{2}, I64: []int64{7, 8}},
		"e": {DType: I32, Shape: []int{0, 5}, I64: []int64{}},
		"f": {DType: F64, Shape: []int{1}, F32: []float32{9}},
	}, map[string]string{"k": "v"})
	if err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(valid)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	if golden, err := os.ReadFile(filepath.Join(goldenDir(), "lora_mlp_basic", "adapter", "adapter_model.safetensors")); err == nil {
		f.Add(golden)
	}
	f.Add(b[:len(b)-1])
	f.Add(b[:20])
	f.Add([]byte{})
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	f.Add(binary.LittleEndian.AppendUint64(nil, 1<<62))
	f.Add(rawFile(`{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"x":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}}`, []byte{255, 255, 255, 255, 255, 255, 255, 255}))
	f.Add(rawFile(`{"x":{"dtype":"F8_E4M3","shape":[9223372036854775807,0],"data_offsets":[0,0]}}`, nil))
	f.Add(rawFile(`{"__metadata__":{"a":"b"},"x":{"dtype":"BOOL","shape":[1,1,1],"data_offsets":[0,1]}}`, []byte{1}))

	// One file rewritten per input (each fuzzing worker is its own
	// process, and runs inputs one at a time).
	p := filepath.Join(dir, "fuzz.safetensors")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := Open(p)
		if err != nil {
			return
		}
		defer file.Close()
		file.Metadata()
		for _, name := range file.Names() {
			info, ok := file.Info(name)
			if !ok {
				t.Fatalf("listed tensor %q has no Info", name)
			}
			raw, err := file.Raw(name)
			size, _ := ItemSize(info.DType)
			if err != nil || len(raw) != info.Len()*size {
				t.Fatalf("Raw(%q): %d bytes, %v; info %+v", name, len(raw), err, info)
			}
			if v, err := file.Float32(name); IsFloat(info.DType) && (err != nil || len(v) != info.Len()) {
				t.Fatalf("Float32(%q): %d values, %v", name, len(v), err)
			}
			if v, err := file.Int64(name); IsInt(info.DType) && info.DType != U64 && (err != nil || len(v) != info.Len()) {
				t.Fatalf("Int64(%q): %d values, %v", name, len(v), err)
			}
		}
	})
}
