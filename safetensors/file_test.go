package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// rawFile assembles a file from a header (used as is, no padding) and a
// data region.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func TestOpenValid(t *testing.T) {
	hdr := `{"__metadata__":{"format":"pt","k":"v"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"a":{"dtype":"I64","shape":[],"data_offsets":[8,16]},"z":{"dtype":"F32","shape":[0,3],"data_offsets":[16,16]}}  `
	data := append(f32bytes(1.5, -2), binary.LittleEndian.AppendUint64(nil, uint64(math.MaxUint64-6))...) // -7
	p := writeTemp(t, "ok.safetensors", rawFile(hdr, data))
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Names(); !slices.Equal(got, []string{"a", "b", "z"}) {
		t.Errorf("Names = %q", got)
	}
	if m := f.Metadata(); len(m) != 2 || m["format"] != "pt" || m["k"] != "v" {
		t.Errorf("Metadata = %v", m)
	}
	if info, ok := f.Info("a"); !ok || info.DType != I64 || len(info.Shape) != 0 || info.Shape == nil || info.Len() != 1 || info.Offsets != [2]int64{8, 16} {
		t.Errorf("Info(a) = %+v, %v", info, ok)
	}
	if _, ok := f.Info("nope"); ok {
		t.Error("Info(nope) found")
	}
	if v, err := f.Float32("b"); err != nil || !slices.Equal(v, []float32{1.5, -2}) {
		t.Errorf("Float32(b) = %v, %v", v, err)
	}
	if v, err := f.Int64("a"); err != nil || !slices.Equal(v, []int64{-7}) {
		t.Errorf("Int64(a) = %v, %v", v, err)
	}
	if v, err := f.Float32("z"); err != nil || v == nil || len(v) != 0 {
		t.Errorf("Float32(z) = %v, %v", v, err)
	}
	if _, err := f.Float32("a"); !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), p) {
		t.Errorf("Float32 of I64: %v", err)
	}
	if _, err := f.Int64("b"); !errors.Is(err, ErrDType) {
		t.Errorf("Int64 of F32: %v", err)
	}
	if _, err := f.Float32("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Float32(nope): %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Float32("b"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestZeroCopyAndAlignment(t *testing.T) {
	// A header padded to a multiple of 8 puts the data 8-byte aligned in
	// the file (and so in the page-aligned mapping); two more spaces put
	// it at 2 mod 4.
	vals := []float32{1, 2, 3}
	hdr := `{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}`
	hdr += strings.Repeat(" ", (8-len(hdr)%8)%8)
	for _, tc := range []struct {
		hdr     string
		aliased bool
	}{
		{hdr, true},
		{hdr + "  ", false},
	} {
		if (8+len(tc.hdr))%4 == 0 != tc.aliased {
			t.Fatalf("bad test: header length %d", len(tc.hdr))
		}
		for _, useMmap := range []bool{true, false} {
			if !useMmap {
				mmap = func(*os.File, int) ([]byte, func() error, error) { return nil, nil, errors.New("no mmap") }
			}
			f, err := Open(writeTemp(t, "x.safetensors", rawFile(tc.hdr, f32bytes(vals...))))
			mmap = mapFile
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Float32("x")
			raw, _ := f.Raw("x")
			if err != nil || !slices.Equal(got, vals) {
				t.Fatalf("Float32 = %v, %v", got, err)
			}
			aliased := unsafe.Pointer(unsafe.SliceData(got)) == unsafe.Pointer(unsafe.SliceData(raw))
			if want := tc.aliased && hostLittleEndian; aliased != want {
				t.Errorf("header %d bytes, mmap %v: aliased = %v, want %v", len(tc.hdr), useMmap, aliased, want)
			}
			f.Close()
		}
	}
}

func TestOpenMalformed(t *testing.T) {
	good := `"x.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	eight := make([]byte, 8)
	big := binary.LittleEndian.AppendUint64(nil, 200_000_000)
	cases := []struct {
		name string
		file []byte
		want string // substring of the error, after the file name
	}{
		{"empty", nil, "too short"},
		{"short", []byte{1, 0, 0}, "too short"},
		{"header longer than file", append(binary.LittleEndian.AppendUint64(nil, 1000), `{}`...), "header length 1000 exceeds the file"},
		{"header too large", append(big, `{}`...), "exceeds the limit"},
		{"truncated data", rawFile(`{`+good+`}`, eight[:5]), `tensor "x.weight": data_offsets [0, 8] out of range (data is 5 bytes)`},
		{"bad json", rawFile(`{"x.weight":{"dtype":`, nil), "not valid JSON"},
		{"not an object", rawFile(`[1, 2]`, nil), "does not start with '{'"},
		{"leading space", rawFile(` {}`, nil), "does not start with '{'"},
		{"empty header", rawFile(``, nil), "does not start with '{'"},
		{"trailing garbage", rawFile(`{} x`, nil), "not valid JSON"},
		{"two objects", rawFile(`{}{}`, nil), "not valid JSON"},
		{"invalid utf8", rawFile("{\"\xff\":1}", nil), "UTF-8"},
		{"duplicate key", rawFile(`{`+good+`,`+good+`}`, append(eight, eight...)), `tensor "x.weight": duplicate key`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), "duplicate key"},
		{"metadata not strings", rawFile(`{"__metadata__":{"n":1}}`, nil), `__metadata__["n"] is not a string`},
		{"metadata not object", rawFile(`{"__metadata__":[1]}`, nil), "not an object of strings"},
		{"entry not object", rawFile(`{"x":3}`, nil), `tensor "x": header entry is not an object`},
		{"missing dtype", rawFile(`{"x":{"shape":[],"data_offsets":[0,4]}}`, eight[:4]), `no "dtype"`},
		{"missing shape", rawFile(`{"x":{"dtype":"F32","data_offsets":[0,4]}}`, eight[:4]), `no "shape"`},
		{"missing offsets", rawFile(`{"x":{"dtype":"F32","shape":[]}}`, eight[:4]), `no "data_offsets"`},
		{"dtype not string", rawFile(`{"x":{"dtype":4,"shape":[],"data_offsets":[0,4]}}`, eight[:4]), "dtype is not a string"},
		{"unknown dtype", rawFile(`{"x":{"dtype":"F128","shape":[],"data_offsets":[0,4]}}`, eight[:4]), `unknown dtype "F128"`},
		{"lowercase dtype", rawFile(`{"x":{"dtype":"f32","shape":[],"data_offsets":[0,4]}}`, eight[:4]), `unknown dtype "f32"`},
		{"negative shape", rawFile(`{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, eight[:4]), "negative"},
		{"fractional shape", rawFile(`{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, eight[:4]), "not an integer"},
		{"shape null", rawFile(`{"x":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, eight[:4]), "shape: null is not an array"},
		{"offsets count", rawFile(`{"x":{"dtype":"F32","shape":[],"data_offsets":[0,4,8]}}`, eight), "has 3 values"},
		{"negative offset", rawFile(`{"x":{"dtype":"F32","shape":[],"data_offsets":[-4,0]}}`, eight), "negative"},
		{"reversed offsets", rawFile(`{"x":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, eight), "end before begin"},
		{"out of range", rawFile(`{"x.weight":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}`, eight), `tensor "x.weight": data_offsets [0, 12] out of range (data is 8 bytes)`},
		{"size mismatch", rawFile(`{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, eight), "needs 12 bytes but data_offsets [0, 8] span 8"},
		{"shape overflow", rawFile(`{"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}`, eight), "shape [4294967296 4294967296 4294967296]"}, // "needs more than the 8 bytes", or on 32-bit "dimension 0 too large"
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), `tensor "b": data_offsets [4, 8] overlap tensor "a" [0, 8]`},
		{"same range twice", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}`, eight), "overlap"},
		{"hole", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}}`, eight), `tensor "b": data_offsets [6, 8] leave a hole of 2 bytes after tensor "a"`},
		{"hole at start", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), "hole of 4 bytes at the start"},
		{"trailing bytes", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, eight), "4 bytes of data after the last tensor"},
		{"data without tensors", rawFile(`{}`, eight), "8 bytes of data after the last tensor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTemp(t, "model.safetensors", tc.file)
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if want := "safetensors: " + p + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		if _, err := Open(t.TempDir()); err == nil {
			t.Fatal("Open of a directory succeeded")
		}
	})
	t.Run("missing", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "none.safetensors")
		if _, err := Open(p); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), p) {
			t.Fatalf("Open of a missing file: %v", err)
		}
	})
}

func TestInt64Conversions(t *testing.T) {
	le := binary.LittleEndian
	cases := []struct {
		dtype string
		data  []byte
		want  []int64
	}{
		{I64, le.AppendUint64(le.AppendUint64(nil, 5), uint64(1<<63)), []int64{5, math.MinInt64}},
		{I32, le.AppendUint32(le.AppendUint32(nil, 7), 0xffffffff), []int64{7, -1}},
		{U32, le.AppendUint32(nil, 0xffffffff), []int64{0xffffffff}},
		{I16, le.AppendUint16(nil, 0x8000), []int64{-32768}},
		{U16, le.AppendUint16(nil, 0x8000), []int64{32768}},
		{I8, []byte{0xff, 3}, []int64{-1, 3}},
		{U8, []byte{0xff, 3}, []int64{255, 3}},
		{BOOL, []byte{1, 0}, []int64{1, 0}},
		{U64, le.AppendUint64(nil, math.MaxInt64), []int64{math.MaxInt64}},
	}
	for _, tc := range cases {
		size, _ := ItemSize(tc.dtype)
		n := len(tc.data) / size
		hdr := `{"t":{"dtype":"` + tc.dtype + `","shape":[` + strconv.Itoa(n) + `],"data_offsets":[0,` + strconv.Itoa(len(tc.data)) + `]}}`
		f, err := Open(writeTemp(t, "i.safetensors", rawFile(hdr, tc.data)))
		if err != nil {
			t.Fatalf("%s: %v", tc.dtype, err)
		}
		got, err := f.Int64("t")
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Int64 = %v, %v; want %v", tc.dtype, got, err, tc.want)
		}
		f.Close()
	}
	f, err := Open(writeTemp(t, "u.safetensors", rawFile(`{"t":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}}`, le.AppendUint64(nil, math.MaxUint64))))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Int64("t"); !errors.Is(err, ErrDType) {
		t.Errorf("U64 overflow: %v", err)
	}
}

// TestMappedWritesStayPrivate checks the copy-on-write promise of Float32:
// writing through a zero-copy slice (as merging an adapter into a mapped base
// weight does) changes what this process sees but never the file.
func TestMappedWritesStayPrivate(t *testing.T) {
	vals := []float32{1, 2, 3, 4}
	hdr := `{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`
	hdr += strings.Repeat(" ", (8-len(hdr)%8)%8)
	path := writeTemp(t, "x.safetensors", rawFile(hdr, f32bytes(vals...)))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("x")
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 42
	again, _ := f.Float32("x")
	if again[0] != 42 {
		t.Errorf("write through the slice not visible to the same File: %v", again)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("writing to a mapped tensor changed the file")
	}
}
