package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// MaxHeaderSize is the largest JSON header Open accepts, in bytes. It is
// the limit the reference implementation uses; a larger length prefix is
// taken as a corrupt or hostile file rather than allocated.
const MaxHeaderSize = 100_000_000

// metadataKey is the header key that holds the file's string metadata.
const metadataKey = "__metadata__"

var (
	// ErrInvalid is matched (with errors.Is) by every error that reports
	// a malformed file or index.
	ErrInvalid = errors.New("invalid safetensors data")
	// ErrNotFound is matched by errors for a tensor name that is not in
	// the file or checkpoint.
	ErrNotFound = errors.New("no such tensor")
	// ErrDType is matched by errors for a tensor whose dtype does not
	// convert to the type asked for (for example Float32 of an I64
	// tensor).
	ErrDType = errors.New("dtype does not convert")
	// ErrClosed is matched by errors for use of a closed File,
	// Checkpoint or Writer.
	ErrClosed = errors.New("already closed")
)

// kindError is an error message that also matches one of the sentinel
// errors above, without repeating the sentinel's text in the message.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// invalidf returns an ErrInvalid error about file (and tensor, when not
// empty): "safetensors: <file>: tensor "<tensor>": <message>".
func invalidf(file, tensor, format string, args ...any) error {
	return kindf(ErrInvalid, file, tensor, format, args...)
}

func kindf(kind error, file, tensor, format string, args ...any) error {
	msg := "safetensors: " + file + ": "
	if tensor != "" {
		msg += fmt.Sprintf("tensor %q: ", tensor)
	}
	return &kindError{msg: msg + fmt.Sprintf(format, args...), kind: kind}
}

// Info describes one tensor of a file.
type Info struct {
	// DType is the dtype name from the header (F32, BF16, I64, ...).
	DType string
	// Shape is the tensor's shape; empty for a 0-d (scalar) tensor.
	Shape []int
	// Offsets is the byte range [begin, end) of the tensor's data,
	// relative to the first byte after the header.
	Offsets [2]int64
}

// Len returns the number of elements: the product of Shape (1 for a 0-d
// tensor).
func (i Info) Len() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file. Its methods may be called from
// several goroutines at once, except Close, which must not run
// concurrently with any other method.
type File struct {
	path   string
	buf    []byte // the whole file: a private copy-on-write mapping, or a heap copy
	data   []byte // buf past the header
	infos  map[string]Info
	names  []string
	meta   map[string]string
	unmap  func() error
	closed bool
}

// mmap maps a file; a variable so that tests can exercise the fallback.
var mmap = mapFile

// hostLittleEndian is true when float32 data in the file can be used in
// place on this machine.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Open memory-maps the safetensors file at path and parses and validates
// its header. Where mapping is not possible the file is read into memory
// instead.
//
// Validation follows the format's rules strictly: an 8-byte little-endian
// header length of at most MaxHeaderSize that fits in the file; a UTF-8
// JSON object starting with '{' (trailing spaces allowed) with no
// duplicate keys; an optional "__metadata__" object of string values; for
// every other key an object with a recognised "dtype", a "shape" of
// non-negative integers and "data_offsets" [begin, end] whose span is
// exactly the shape's element count times the dtype's size. Sorted by
// offset, the tensors must cover the data that follows the header
// contiguously from its first to its last byte: no overlaps, no holes and
// no trailing bytes. Every error names the file and, where it concerns
// one, the tensor, and matches ErrInvalid.
//
// The file must not be truncated or rewritten in place while it is open
// (atomic replacement by rename, as Save does, is safe).
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, invalidf(path, "", "not a regular file")
	}
	size := st.Size()
	if size < 8 {
		return nil, invalidf(path, "", "file is %d bytes, too short for the 8-byte header length", size)
	}
	if uint64(size) > math.MaxInt {
		return nil, invalidf(path, "", "file is %d bytes, too large for this platform", size)
	}
	// Check the header length before mapping or reading anything else,
	// so that a corrupt prefix never makes us read a huge file.
	var prefix [8]byte
	if _, err := fh.ReadAt(prefix[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := checkHeaderLen(path, binary.LittleEndian.Uint64(prefix[:]), size); err != nil {
		return nil, err
	}

	buf, unmap, err := mmap(fh, int(size))
	if err != nil {
		buf = make([]byte, size)
		if _, err := io.ReadFull(io.NewSectionReader(fh, 0, size), buf); err != nil {
			return nil, fmt.Errorf("safetensors: %s: %w", path, err)
		}
		unmap = nil
	}
	f, err := parse(path, buf)
	if err != nil {
		if unmap != nil {
			_ = unmap()
		}
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

func checkHeaderLen(path string, n uint64, size int64) error {
	if n > MaxHeaderSize {
		return invalidf(path, "", "header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return invalidf(path, "", "header length %d exceeds the file (%d bytes after the length prefix); truncated file?", n, size-8)
	}
	return nil
}

// parse validates buf, the complete contents of the file named path.
func parse(path string, buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, invalidf(path, "", "file is %d bytes, too short for the 8-byte header length", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if err := checkHeaderLen(path, n, int64(len(buf))); err != nil {
		return nil, err
	}
	hdr := buf[8 : 8+n]
	f := &File{
		path:  path,
		buf:   buf,
		data:  buf[8+n:],
		infos: make(map[string]Info),
		meta:  map[string]string{},
	}
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, invalidf(path, "", "header does not start with '{'")
	}
	if !utf8.Valid(hdr) {
		return nil, invalidf(path, "", "header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	syntax := func(err error) error {
		return invalidf(path, "", "header is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return nil, syntax(err)
	}
	seenMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		key, ok := tok.(string)
		if !ok { // cannot happen for valid JSON; be safe
			return nil, syntax(fmt.Errorf("object key %v is not a string", tok))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntax(err)
		}
		if key == metadataKey {
			if seenMeta {
				return nil, invalidf(path, "", "duplicate key %q", key)
			}
			seenMeta = true
			if err := f.parseMetadata(raw); err != nil {
				return nil, err
			}
			continue
		}
		if _, dup := f.infos[key]; dup {
			return nil, invalidf(path, key, "duplicate key")
		}
		info, err := f.parseEntry(key, raw)
		if err != nil {
			return nil, err
		}
		f.infos[key] = info
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the header object")
		}
		return nil, syntax(err)
	}
	if err := f.checkLayout(); err != nil {
		return nil, err
	}
	f.names = make([]string, 0, len(f.infos))
	for name := range f.infos {
		f.names = append(f.names, name)
	}
	slices.Sort(f.names)
	return f, nil
}

func (f *File) parseMetadata(raw json.RawMessage) error {
	if string(raw) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalidf(f.path, "", "%s is not an object of strings", metadataKey)
	}
	for k, v := range m {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return invalidf(f.path, "", "%s[%q] is not a string", metadataKey, k)
		}
		f.meta[k] = s
	}
	return nil
}

// parseEntry checks one tensor's header entry on its own; checkLayout
// then checks the entries against each other.
func (f *File) parseEntry(name string, raw json.RawMessage) (Info, error) {
	var info Info
	bad := func(format string, args ...any) (Info, error) {
		return Info{}, invalidf(f.path, name, format, args...)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return bad("header entry is not an object")
	}
	for _, k := range []string{"dtype", "shape", "data_offsets"} {
		if _, ok := fields[k]; !ok {
			return bad("header entry has no %q", k)
		}
	}
	if err := json.Unmarshal(fields["dtype"], &info.DType); err != nil {
		return bad("dtype is not a string")
	}
	item, ok := itemSizes[info.DType]
	if !ok {
		return bad("unknown dtype %q", info.DType)
	}
	shape, err := intArray(fields["shape"])
	if err != nil {
		return bad("shape: %v", err)
	}
	offs, err := intArray(fields["data_offsets"])
	if err != nil {
		return bad("data_offsets: %v", err)
	}
	if len(offs) != 2 {
		return bad("data_offsets has %d values, want [begin, end]", len(offs))
	}
	begin, end := offs[0], offs[1]
	info.Offsets = [2]int64{begin, end}
	if end < begin {
		return bad("data_offsets [%d, %d] end before begin", begin, end)
	}
	if end > int64(len(f.data)) {
		return bad("data_offsets [%d, %d] out of range (data is %d bytes)", begin, end, len(f.data))
	}
	// The element count times the item size must equal the span. Any
	// dimension of 0 makes it 0; otherwise guard against overflow (the
	// span is at most the file size, so a product beyond it is an error
	// anyway).
	info.Shape = make([]int, len(shape))
	count, zero := int64(1), false
	for i, d := range shape {
		if d > math.MaxInt {
			return bad("shape %v: dimension %d too large", shape, i)
		}
		info.Shape[i] = int(d)
		zero = zero || d == 0
	}
	if !zero {
		for _, d := range shape {
			if count > (end-begin)/d {
				return bad("dtype %s shape %v needs more than the %d bytes of data_offsets [%d, %d]",
					info.DType, shape, end-begin, begin, end)
			}
			count *= d
		}
	} else {
		count = 0
	}
	if need := count * item; need != end-begin {
		return bad("dtype %s shape %v needs %d bytes but data_offsets [%d, %d] span %d",
			info.DType, shape, need, begin, end, end-begin)
	}
	return info, nil
}

// intArray parses a JSON array of non-negative integers.
func intArray(raw json.RawMessage) ([]int64, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || elems == nil {
		return nil, fmt.Errorf("%s is not an array", abbreviate(raw))
	}
	out := make([]int64, len(elems))
	for i, e := range elems {
		v, err := strconv.ParseInt(string(e), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("value %d (%s) is not an integer in range", i, abbreviate(e))
		}
		if v < 0 {
			return nil, fmt.Errorf("value %d (%d) is negative", i, v)
		}
		out[i] = v
	}
	return out, nil
}

// abbreviate shortens a JSON fragment for an error message.
func abbreviate(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:37]) + "..."
	}
	return string(raw)
}

// checkLayout checks that the tensors, sorted by offset, cover the data
// region exactly.
func (f *File) checkLayout() error {
	type span struct {
		name       string
		begin, end int64
	}
	spans := make([]span, 0, len(f.infos))
	for name, info := range f.infos {
		spans = append(spans, span{name, info.Offsets[0], info.Offsets[1]})
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.begin != b.begin {
			return cmp.Compare(a.begin, b.begin)
		}
		if a.end != b.end {
			return cmp.Compare(a.end, b.end)
		}
		return cmp.Compare(a.name, b.name)
	})
	var prev span
	for i, s := range spans {
		switch {
		case s.begin < prev.end:
			return invalidf(f.path, s.name, "data_offsets [%d, %d] overlap tensor %q [%d, %d]",
				s.begin, s.end, prev.name, prev.begin, prev.end)
		case s.begin > prev.end && i == 0:
			return invalidf(f.path, s.name, "data_offsets [%d, %d] leave a hole of %d bytes at the start of the data (tensors must cover the data contiguously)",
				s.begin, s.end, s.begin)
		case s.begin > prev.end:
			return invalidf(f.path, s.name, "data_offsets [%d, %d] leave a hole of %d bytes after tensor %q [%d, %d] (tensors must cover the data contiguously)",
				s.begin, s.end, s.begin-prev.end, prev.name, prev.begin, prev.end)
		}
		prev = s
	}
	if prev.end != int64(len(f.data)) {
		return invalidf(f.path, "", "%d bytes of data after the last tensor (the data is %d bytes, tensors cover %d)",
			int64(len(f.data))-prev.end, len(f.data), prev.end)
	}
	return nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Names returns the names of the file's tensors, sorted. The slice is the
// caller's to keep.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Info returns the description of the named tensor, and false if the file
// has no such tensor.
func (f *File) Info(name string) (Info, bool) {
	info, ok := f.infos[name]
	if !ok {
		return Info{}, false
	}
	info.Shape = slices.Clone(info.Shape)
	if info.Shape == nil {
		info.Shape = []int{}
	}
	return info, true
}

// Metadata returns a copy of the header's "__metadata__" map (empty, not
// nil, when the file has none).
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.meta))
	for k, v := range f.meta {
		m[k] = v
	}
	return m
}

// lookup returns the raw bytes and description of a tensor.
func (f *File) lookup(name string) ([]byte, Info, error) {
	if f.closed {
		return nil, Info{}, kindf(ErrClosed, f.path, name, "file is closed")
	}
	info, ok := f.infos[name]
	if !ok {
		return nil, Info{}, kindf(ErrNotFound, f.path, name, "no such tensor")
	}
	return f.data[info.Offsets[0]:info.Offsets[1]:info.Offsets[1]], info, nil
}

// Raw returns the named tensor's bytes as stored (little-endian,
// row-major). The slice aliases the file's memory and is valid until
// Close. The mapping is private and copy-on-write: writing to the slice
// changes this process's view only, never the file.
func (f *File) Raw(name string) ([]byte, error) {
	b, _, err := f.lookup(name)
	return b, err
}

// Float32 returns the named tensor's elements as float32, row-major.
//
// For an F32 tensor whose data is 4-byte aligned in memory (always the
// case for files written by this package or by the Python library, whose
// headers are padded to a multiple of 8 bytes) on a little-endian machine,
// the slice aliases the file's memory instead of copying it, and is valid
// until Close (copy it with slices.Clone to keep it longer). The mapping is
// private and copy-on-write, so writing to the slice (merging an adapter
// into a base weight in place) is allowed: the touched pages become private
// memory and the file is never changed. Otherwise, and for F16, BF16 and F64 tensors, the
// result is a new slice converted exactly (F64 rounds to nearest).
// Other dtypes return an error matching ErrDType.
func (f *File) Float32(name string) ([]float32, error) {
	b, info, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	n := len(b)
	switch info.DType {
	case F32:
		n /= 4
		if n == 0 {
			return []float32{}, nil
		}
		p := unsafe.Pointer(unsafe.SliceData(b))
		if hostLittleEndian && uintptr(p)%4 == 0 {
			return unsafe.Slice((*float32)(p), n), nil
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case F16:
		out := make([]float32, n/2)
		for i := range out {
			out[i] = Float16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out, nil
	case BF16:
		out := make([]float32, n/2)
		for i := range out {
			out[i] = BFloat16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out, nil
	case F64:
		out := make([]float32, n/8)
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
		return out, nil
	}
	return nil, kindf(ErrDType, f.path, name, "dtype %s does not convert to float32", info.DType)
}

// Int64 returns the named tensor's elements as a new []int64, row-major.
// Every integer dtype and BOOL convert; a U64 value above
// math.MaxInt64 is an error. Float dtypes return an error matching
// ErrDType.
func (f *File) Int64(name string) ([]int64, error) {
	b, info, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !IsInt(info.DType) {
		return nil, kindf(ErrDType, f.path, name, "dtype %s does not convert to int64", info.DType)
	}
	size := itemSizes[info.DType]
	out := make([]int64, int64(len(b))/size)
	le := binary.LittleEndian
	for i := range out {
		switch info.DType {
		case I64:
			out[i] = int64(le.Uint64(b[8*i:]))
		case U64:
			v := le.Uint64(b[8*i:])
			if v > math.MaxInt64 {
				return nil, kindf(ErrDType, f.path, name, "element %d (%d) overflows int64", i, v)
			}
			out[i] = int64(v)
		case I32:
			out[i] = int64(int32(le.Uint32(b[4*i:])))
		case U32:
			out[i] = int64(le.Uint32(b[4*i:]))
		case I16:
			out[i] = int64(int16(le.Uint16(b[2*i:])))
		case U16:
			out[i] = int64(le.Uint16(b[2*i:]))
		case I8:
			out[i] = int64(int8(b[i]))
		case U8, BOOL:
			out[i] = int64(b[i])
		}
	}
	return out, nil
}

// Close releases the file's memory. Slices returned by Float32 and Raw
// that alias it must not be used afterwards. Closing twice is harmless.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data, f.buf = nil, nil
	if f.unmap != nil {
		if err := f.unmap(); err != nil {
			return fmt.Errorf("safetensors: %s: unmap: %w", f.path, err)
		}
	}
	return nil
}

// Tensor is a tensor held in ordinary memory: what ReadAll returns and
// Save writes. Float tensors use F32, integer tensors I64; the other
// field is nil.
type Tensor struct {
	// DType is the dtype in the file. For Save it is the dtype to store:
	// F32 (the default when empty), F16, BF16 or F64 for F32 data; I64
	// (the default when empty) or I32 for I64 data.
	DType string
	// Shape is the tensor's shape; empty for a 0-d tensor.
	Shape []int
	// F32 holds the elements of a float tensor, row-major.
	F32 []float32
	// I64 holds the elements of an integer or BOOL tensor, row-major.
	I64 []int64
}

// ReadAll reads every tensor of the file at path into memory (copies, not
// aliases: the file is closed on return) along with the file's metadata.
// Float dtypes convert to float32 (F32) and integer dtypes to int64 (I64);
// a file holding a tensor of another dtype (an 8-bit float) is an error.
// It suits small files such as adapters; use Open for large ones.
func ReadAll(path string) (map[string]Tensor, map[string]string, error) {
	f, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	out := make(map[string]Tensor, len(f.names))
	for _, name := range f.names {
		info, _ := f.Info(name)
		t := Tensor{DType: info.DType, Shape: info.Shape}
		switch {
		case IsFloat(info.DType):
			v, err := f.Float32(name)
			if err != nil {
				return nil, nil, err
			}
			if info.DType == F32 {
				v = slices.Clone(v)
			}
			t.F32 = v
		case IsInt(info.DType):
			if t.I64, err = f.Int64(name); err != nil {
				return nil, nil, err
			}
		default:
			return nil, nil, kindf(ErrDType, path, name, "dtype %s converts neither to float32 nor to int64", info.DType)
		}
		out[name] = t
	}
	return out, f.Metadata(), nil
}
