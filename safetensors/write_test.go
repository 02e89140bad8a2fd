package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// dirEntries lists a folder, to check that failed writes leave nothing.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSaveRoundTrip(t *testing.T) {
	// Values exactly representable in every float dtype, plus ones that
	// are not (rounded on the way out).
	exact := []float32{0, 1, -2, 0.5, 65504, float32(math.Inf(1)), -0.25}
	tensors := map[string]Tensor{
		"w.f32":   {Shape: []int{7}, F32: exact},
		"w.f16":   {DType: F16, Shape: []int{7, 1}, F32: exact},
		"w.bf16":  {DType: BF16, Shape: []int{1, 7}, F32: []float32{0, 1, -2, 0.5, 65536, float32(math.Inf(-1)), 3.0000002}},
		"w.f64":   {DType: F64, Shape: []int{7}, F32: []float32{1e-30, 3.4e38, 0.1, -7, 0, 1, 2}},
		"ids":     {Shape: []int{2, 2}, I64: []int64{1, -2, math.MaxInt64, math.MinInt64}},
		"ids32":   {DType: I32, Shape: []int{3}, I64: []int64{1, -2, math.MaxInt32}},
		"scalar":  {Shape: []int{}, F32: []float32{3}},
		"empty":   {Shape: []int{0, 4}, F32: []float32{}},
		"empty.i": {Shape: []int{0}, I64: []int64{}},
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "all.safetensors")
	if err := Save(p, tensors, map[string]string{"note": "<&>"}); err != nil {
		t.Fatal(err)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"all.safetensors"}) {
		t.Errorf("folder holds %q", got)
	}
	b, _ := os.ReadFile(p)
	n := binary.LittleEndian.Uint64(b)
	hdr := string(b[8 : 8+n])
	if n%8 != 0 || !strings.HasPrefix(hdr, `{"__metadata__":{"format":"pt","note":"<&>"},"empty":`) {
		t.Errorf("header (%d bytes): %s", n, hdr)
	}
	got, meta, err := ReadAll(p)
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" || meta["note"] != "<&>" || len(meta) != 2 {
		t.Errorf("metadata %v", meta)
	}
	if len(got) != len(tensors) {
		t.Fatalf("read %d tensors, want %d", len(got), len(tensors))
	}
	for name, want := range tensors {
		g := got[name]
		wantDType := want.DType
		if wantDType == "" {
			wantDType = F32
			if want.I64 != nil {
				wantDType = I64
			}
		}
		if g.DType != wantDType || !slices.Equal(g.Shape, want.Shape) {
			t.Errorf("%s: dtype %s shape %v, want %s %v", name, g.DType, g.Shape, wantDType, want.Shape)
		}
		if want.I64 != nil {
			if !slices.Equal(g.I64, want.I64) || g.F32 != nil {
				t.Errorf("%s: I64 %v, want %v", name, g.I64, want.I64)
			}
			continue
		}
		for i, v := range want.F32 {
			var w float32
			switch wantDType {
			case F16:
				w = Float16ToFloat32(Float32ToFloat16(v))
			case BF16:
				w = BFloat16ToFloat32(Float32ToBFloat16(v))
			default:
				w = v
			}
			if g.F32[i] != w && !(math.IsNaN(float64(w)) && math.IsNaN(float64(g.F32[i]))) {
				t.Errorf("%s[%d] = %v, want %v", name, i, g.F32[i], w)
			}
		}
		if len(g.F32) != len(want.F32) || g.I64 != nil {
			t.Errorf("%s: %d elements, want %d", name, len(g.F32), len(want.F32))
		}
	}
	// The bfloat16 rounding really happened (3.0000002 -> 3).
	if v := got["w.bf16"].F32[6]; v != 3 {
		t.Errorf("bf16 rounding: %v", v)
	}
}

func TestSaveEveryReadableDType(t *testing.T) {
	// Raw bytes of every recognised dtype survive a Writer round trip.
	dir := t.TempDir()
	p := filepath.Join(dir, "raw.safetensors")
	w, err := NewWriter(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	dts := []string{F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8E4M3, F8E5M2}
	for _, dt := range dts {
		if err := w.Add("t."+dt, dt, []int{3}); err != nil {
			t.Fatal(err)
		}
	}
	payload := map[string][]byte{}
	for i, dt := range dts {
		size, _ := ItemSize(dt)
		b := make([]byte, 3*size)
		for j := range b {
			b[j] = byte(i*7 + j)
			if dt == BOOL {
				b[j] = byte(j & 1)
			}
		}
		if dt == U64 {
			b[7], b[15], b[23] = 0, 0, 0 // keep within int64
		}
		payload[dt] = b
		if err := w.WriteRaw("t."+dt, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, dt := range dts {
		raw, err := f.Raw("t." + dt)
		if err != nil || string(raw) != string(payload[dt]) {
			t.Errorf("%s: raw %v, %v", dt, raw, err)
		}
		_, ferr := f.Float32("t." + dt)
		_, ierr := f.Int64("t." + dt)
		if (ferr == nil) != IsFloat(dt) || (ierr == nil) != IsInt(dt) {
			t.Errorf("%s: Float32 err %v, Int64 err %v", dt, ferr, ierr)
		}
	}
	// ReadAll refuses the 8-bit floats it cannot convert, naming them.
	if _, _, err := ReadAll(p); !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), `tensor "t.F8_E4M3"`) || !strings.Contains(err.Error(), p) {
		t.Errorf("ReadAll: %v", err)
	}
}

func TestSaveErrorsLeaveNothing(t *testing.T) {
	cases := []struct {
		name    string
		tensors map[string]Tensor
		want    string
	}{
		{"shape mismatch", map[string]Tensor{"a": {Shape: []int{3}, F32: []float32{1, 2}}}, `tensor "a": shape [3] does not match its 2 elements`},
		{"negative shape", map[string]Tensor{"a": {Shape: []int{-1}, F32: nil}}, `tensor "a": shape [-1]`},
		{"both kinds", map[string]Tensor{"a": {Shape: []int{1}, F32: []float32{1}, I64: []int64{1}}}, "both F32 and I64"},
		{"float as int dtype", map[string]Tensor{"a": {DType: I64, Shape: []int{1}, F32: []float32{1}}}, `as dtype "I64"`},
		{"int as float dtype", map[string]Tensor{"a": {DType: BF16, Shape: []int{1}, I64: []int64{1}}}, `as dtype "BF16"`},
		{"I32 overflow", map[string]Tensor{"a": {DType: I32, Shape: []int{1}, I64: []int64{1 << 40}}}, "does not fit dtype I32"},
		{"reserved name", map[string]Tensor{"__metadata__": {Shape: []int{1}, F32: []float32{1}}}, "reserved name"},
		{"bad utf8 name", map[string]Tensor{"\xff": {Shape: []int{1}, F32: []float32{1}}}, "UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "out.safetensors")
			err := Save(p, tc.tensors, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and containing %q", err, p, tc.want)
			}
			if got := dirEntries(t, dir); len(got) != 0 {
				t.Errorf("failed Save left %q", got)
			}
		})
	}
	t.Run("missing folder", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "no", "out.safetensors")
		if err := Save(p, nil, nil); err == nil || !strings.Contains(err.Error(), "out.safetensors") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestSaveReplacesOpenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	if err := Save(p, map[string]Tensor{"w": {Shape: []int{2}, F32: []float32{1, 2}}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old, _ := f.Float32("w")
	// Write a new version computed from the mapped one, over the same path.
	if err := Save(p, map[string]Tensor{"w": {Shape: []int{2}, F32: []float32{old[0] + 10, old[1] + 10}}}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(old, []float32{1, 2}) {
		t.Errorf("open file changed under us: %v", old)
	}
	got, _, err := ReadAll(p)
	if err != nil || !slices.Equal(got["w"].F32, []float32{11, 12}) {
		t.Errorf("new file: %v, %v", got["w"].F32, err)
	}
}

func TestWriterStreaming(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.safetensors")
	w, err := NewWriter(p, map[string]string{"format": "np"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	// Declared out of name order: data follows declaration order.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Add("z", BF16, []int{2, 3}))
	must(w.Add("empty", F32, []int{0}))
	must(w.Add("a", I32, []int{4}))
	must(w.WriteFloat32("z", []float32{1, 2}))
	must(w.WriteFloat32("z", nil))
	must(w.WriteFloat32("z", []float32{3, 4, 5, 6}))
	must(w.WriteFloat32("empty", nil))
	must(w.WriteInt64("a", []int64{1, 2}))
	if got := dirEntries(t, dir); len(got) != 1 || !strings.HasSuffix(got[0], ".tmp") || got[0][0] != '.' {
		t.Errorf("while writing the folder holds %q", got)
	}
	must(w.WriteInt64("a", []int64{3, 4}))
	must(w.Close())
	w.Abort() // no effect after Close
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"s.safetensors"}) {
		t.Errorf("folder holds %q", got)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m := f.Metadata(); m["format"] != "np" {
		t.Errorf("metadata %v", m)
	}
	zi, _ := f.Info("z")
	ai, _ := f.Info("a")
	if zi.Offsets != [2]int64{0, 12} || ai.Offsets != [2]int64{12, 28} {
		t.Errorf("offsets z %v a %v", zi.Offsets, ai.Offsets)
	}
	z, _ := f.Float32("z")
	a, _ := f.Int64("a")
	if !slices.Equal(z, []float32{1, 2, 3, 4, 5, 6}) || !slices.Equal(a, []int64{1, 2, 3, 4}) {
		t.Errorf("z %v a %v", z, a)
	}
}

func TestWriterMisuse(t *testing.T) {
	cases := []struct {
		name string
		run  func(w *Writer) error
		want string
	}{
		{"out of order", func(w *Writer) error { return w.WriteFloat32("b", []float32{1}) }, `tensor "b": written out of order`},
		{"too much", func(w *Writer) error { return w.WriteFloat32("a", []float32{1, 2, 3}) }, "past its end"},
		{"incomplete", func(w *Writer) error { return w.WriteFloat32("a", []float32{1}) }, `tensor "a": only 4 of its 8 bytes`},
		{"undeclared", func(w *Writer) error { return w.WriteFloat32("c", []float32{1}) }, `tensor "c": not declared`},
		{"wrong kind", func(w *Writer) error { return w.WriteInt64("a", []int64{1}) }, "WriteInt64 to a tensor of dtype F32"},
		{"add after write", func(w *Writer) error {
			if err := w.WriteFloat32("a", []float32{1, 2}); err != nil {
				return err
			}
			return w.Add("c", F32, nil)
		}, "Add after data"},
		{"duplicate", func(w *Writer) error { return w.Add("a", F32, []int{1}) }, "declared twice"},
		{"unknown dtype", func(w *Writer) error { return w.Add("c", "Q4", []int{1}) }, `unknown dtype "Q4"`},
		{"ragged raw", func(w *Writer) error { return w.WriteRaw("a", []byte{1, 2, 3}) }, "not a whole number"},
		{"past the last", func(w *Writer) error {
			if err := w.WriteFloat32("a", []float32{1, 2}); err != nil {
				return err
			}
			if err := w.WriteFloat32("b", []float32{1}); err != nil {
				return err
			}
			return w.WriteFloat32("b", []float32{1})
		}, "past the end of the last tensor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "w.safetensors")
			w, err := NewWriter(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Add("a", F32, []int{2}); err != nil {
				t.Fatal(err)
			}
			if err := w.Add("b", F32, []int{1}); err != nil {
				t.Fatal(err)
			}
			err = tc.run(w)
			if cerr := w.Close(); err == nil {
				err = cerr
			} else if cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Close after an error returned %v, want the first error", cerr)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "safetensors: "+p+": ") {
				t.Fatalf("error %v, want one naming %s and containing %q", err, p, tc.want)
			}
			if got := dirEntries(t, dir); len(got) != 0 {
				t.Errorf("failed writer left %q", got)
			}
		})
	}
}

func TestWriterAbort(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(filepath.Join(dir, "x.safetensors"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Add("a", F32, []int{1})
	w.Abort()
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Errorf("Abort left %q", got)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}
}
