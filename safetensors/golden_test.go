package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"
)

// goldenDir is the shared golden folder beside the repository.
func goldenDir() string {
	if d := os.Getenv("GOPEFT_GOLDEN_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "golden")
}

// refTensor is what refParse finds for one tensor.
type refTensor struct {
	DType       string  `json:"dtype"`
	Shape       []int   `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
	data        []byte
}

// refParse is a deliberately naive reader, independent of the package's
// code, used to check it against the golden files.
func refParse(t *testing.T, path string) (map[string]*refTensor, map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	meta := map[string]string{}
	out := map[string]*refTensor{}
	for k, v := range hdr {
		if k == "__metadata__" {
			if err := json.Unmarshal(v, &meta); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var rt refTensor
		if err := json.Unmarshal(v, &rt); err != nil {
			t.Fatal(err)
		}
		rt.data = b[8+n+uint64(rt.DataOffsets[0]) : 8+n+uint64(rt.DataOffsets[1])]
		out[k] = &rt
	}
	return out, meta
}

func TestGoldenFiles(t *testing.T) {
	dir := goldenDir()
	paths, _ := filepath.Glob(filepath.Join(dir, "*", "*.safetensors"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "adapter", "*.safetensors"))
	deeper, _ := filepath.Glob(filepath.Join(dir, "*", "adapter", "*", "*.safetensors"))
	paths = append(append(paths, more...), deeper...)
	if len(paths) < 10 {
		t.Fatalf("found only %d golden safetensors files under %s (set GOPEFT_GOLDEN_DIR)", len(paths), dir)
	}
	var floats, ints int
	for _, p := range paths {
		ref, meta := refParse(t, p)
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		keys := make([]string, 0, len(ref))
		for k := range ref {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if got := f.Names(); !slices.Equal(got, keys) {
			t.Fatalf("%s: Names = %q, want %q", p, got, keys)
		}
		if got := f.Metadata(); len(got) != len(meta) || (len(meta) > 0 && got["format"] != meta["format"]) {
			t.Errorf("%s: Metadata = %v, want %v", p, got, meta)
		}
		for _, name := range keys {
			rt := ref[name]
			info, ok := f.Info(name)
			if !ok || info.DType != rt.DType || !slices.Equal(info.Shape, rt.Shape) || info.Offsets != [2]int64(rt.DataOffsets) {
				t.Fatalf("%s: Info(%q) = %+v, want %+v", p, name, info, *rt)
			}
			switch rt.DType {
			case F32:
				want := make([]float32, len(rt.data)/4)
				if err := binary.Read(bytes.NewReader(rt.data), binary.LittleEndian, want); err != nil {
					t.Fatal(err)
				}
				got, err := f.Float32(name)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) || len(got) != info.Len() {
					t.Fatalf("%s: %q has %d elements, want %d", p, name, len(got), len(want))
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s: %q[%d] = %v, want %v", p, name, i, got[i], want[i])
					}
				}
				// Python pads headers to 8 bytes, and F32 data then
				// starts 4-aligned: Float32 must not have copied.
				raw, _ := f.Raw(name)
				if hostLittleEndian && len(got) > 0 && unsafe.Pointer(&got[0]) != unsafe.Pointer(&raw[0]) {
					t.Errorf("%s: %q: Float32 copied aligned F32 data", p, name)
				}
				floats++
			case I64:
				want := make([]int64, len(rt.data)/8)
				if err := binary.Read(bytes.NewReader(rt.data), binary.LittleEndian, want); err != nil {
					t.Fatal(err)
				}
				got, err := f.Int64(name)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("%s: Int64(%q) = %v, %v; want %v", p, name, got, err, want)
				}
				ints++
			default:
				t.Fatalf("%s: %q: golden dtype %s not covered by this test", p, name, rt.DType)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if floats == 0 || ints == 0 {
		t.Errorf("golden files gave %d F32 and %d I64 tensors; expected both kinds", floats, ints)
	}
}

// TestGoldenResave checks that Save writes byte for byte what the Python
// library wrote, for every golden file with the standard metadata.
func TestGoldenResave(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(goldenDir(), "*", "adapter", "*.safetensors"))
	checked := 0
	for _, p := range paths {
		tensors, meta, err := ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(meta) != 1 || meta["format"] != "pt" {
			continue
		}
		out := filepath.Join(t.TempDir(), "re.safetensors")
		if err := Save(out, tensors, meta); err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(p)
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: re-saved file differs from the original (%d vs %d bytes)", p, len(got), len(want))
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d golden adapter files compared", checked)
	}
}
