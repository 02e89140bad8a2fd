package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Save writes tensors to a safetensors file at path, atomically: the data
// goes to a temporary file in the same directory, which is synced and
// then renamed over path, so that path holds either its old contents or
// the complete new file, never a partial one. On error no file is left
// behind.
//
// Tensors are stored in sorted name order, each in the dtype its DType
// field asks for (F32 or I64 when empty; see Tensor). The header is padded
// with spaces to a multiple of 8 bytes, as the Python library does, so the
// data starts 8-byte aligned; in a file of F32 and I64 tensors every F32
// tensor is then 4-byte aligned and File.Float32 returns it without
// copying. metadata becomes "__metadata__"; "format" defaults to "pt"
// (which the HF loaders require) when metadata does not set it.
//
// Replacing a file that is open (even one whose Float32 slices are being
// written out) is safe: the open File keeps the old contents.
func Save(path string, tensors map[string]Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	slices.Sort(names)
	dtypes := make([]string, len(names))
	for i, name := range names {
		t := tensors[name]
		dt, err := storeDType(t)
		if err != nil {
			return fmt.Errorf("safetensors: %s: tensor %q: %w", path, name, err)
		}
		dtypes[i] = dt
		n, ok := shapeLen(t.Shape)
		have := len(t.F32) + len(t.I64)
		if !ok || n != have {
			return fmt.Errorf("safetensors: %s: tensor %q: shape %v does not match its %d elements", path, name, t.Shape, have)
		}
	}
	w, err := NewWriter(path, metadata)
	if err != nil {
		return err
	}
	defer w.Abort()
	for i, name := range names {
		if err := w.Add(name, dtypes[i], tensors[name].Shape); err != nil {
			return err
		}
	}
	for _, name := range names {
		t := tensors[name]
		if t.I64 != nil {
			err = w.WriteInt64(name, t.I64)
		} else {
			err = w.WriteFloat32(name, t.F32)
		}
		if err != nil {
			return err
		}
	}
	return w.Close()
}

// storeDType returns the dtype Save stores t in.
func storeDType(t Tensor) (string, error) {
	if t.F32 != nil && t.I64 != nil {
		return "", errors.New("both F32 and I64 are set")
	}
	if t.I64 != nil {
		switch t.DType {
		case "":
			return I64, nil
		case I64, I32:
			return t.DType, nil
		}
		return "", fmt.Errorf("cannot store I64 data as dtype %q (want I64 or I32)", t.DType)
	}
	switch t.DType {
	case "":
		return F32, nil
	case F32, F16, BF16, F64:
		return t.DType, nil
	}
	return "", fmt.Errorf("cannot store F32 data as dtype %q (want F32, F16, BF16 or F64)", t.DType)
}

// shapeLen returns the element count of shape, and false if a dimension
// is negative or the count overflows an int.
func shapeLen(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			n = 0
		}
	}
	if n == 0 {
		return 0, true
	}
	for _, d := range shape {
		if n > math.MaxInt/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// Writer streams a safetensors file too large to hold in memory, such as
// a merged checkpoint written one tensor at a time. Declare every tensor
// with Add, then write their data in the order they were declared, with
// one or more Write calls per tensor (chunks append), then Close. The
// file appears at its path, atomically, only when Close succeeds; until
// then it is a temporary file in the same directory.
//
// Any error, including misuse such as writing out of order, is final:
// later calls return it and Close removes the temporary file. Call Abort
// (for example deferred) to give up early; after a successful Close it
// does nothing. A Writer is not safe for concurrent use.
type Writer struct {
	path    string
	meta    map[string]string
	tmp     *os.File
	bw      *bufio.Writer
	entries []wentry
	index   map[string]int
	size    int64 // bytes of data declared so far
	cur     int   // entry being written
	curDone int64 // bytes of entries[cur] written
	started bool  // header written
	done    bool  // closed or aborted
	err     error // first error
	scratch []byte
}

type wentry struct {
	name, dtype string
	shape       []int
	begin, end  int64
}

// NewWriter starts a safetensors file at path with the given metadata
// ("format" defaults to "pt"). It creates the temporary file at once, so
// an unwritable directory is reported here.
func NewWriter(path string, metadata map[string]string) (*Writer, error) {
	meta := map[string]string{"format": "pt"}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("safetensors: %s: metadata %q: not valid UTF-8", path, k)
		}
		meta[k] = v
	}
	tmp, err := createTemp(path)
	if err != nil {
		return nil, err
	}
	return &Writer{
		path:  path,
		meta:  meta,
		tmp:   tmp,
		bw:    bufio.NewWriterSize(tmp, 1<<20),
		index: make(map[string]int),
	}, nil
}

func (w *Writer) fail(format string, args ...any) error {
	if w.err == nil {
		w.err = fmt.Errorf("safetensors: %s: "+format, append([]any{w.path}, args...)...)
	}
	return w.err
}

func (w *Writer) check() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return kindf(ErrClosed, w.path, "", "writer is closed")
	}
	return nil
}

// Add declares a tensor of the given dtype and shape. Every Add must come
// before the first Write.
func (w *Writer) Add(name, dtype string, shape []int) error {
	if err := w.check(); err != nil {
		return err
	}
	switch {
	case w.started:
		return w.fail("tensor %q: Add after data was written", name)
	case name == metadataKey:
		return w.fail("tensor %q: reserved name", name)
	case !utf8.ValidString(name):
		return w.fail("tensor %q: name is not valid UTF-8", name)
	}
	if _, dup := w.index[name]; dup {
		return w.fail("tensor %q: declared twice", name)
	}
	item, ok := itemSizes[dtype]
	if !ok {
		return w.fail("tensor %q: unknown dtype %q", name, dtype)
	}
	n, ok := shapeLen(shape)
	if !ok || n > 0 && int64(n) > (math.MaxInt64-w.size)/item {
		return w.fail("tensor %q: invalid shape %v", name, shape)
	}
	size := int64(n) * item
	w.index[name] = len(w.entries)
	w.entries = append(w.entries, wentry{name, dtype, slices.Clone(shape), w.size, w.size + size})
	w.size += size
	return nil
}

// header returns the JSON header, padded with spaces to a multiple of 8.
func (w *Writer) header() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	str := func(s string) error {
		if err := enc.Encode(s); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
		return nil
	}
	b.WriteString(`{"` + metadataKey + `":{`)
	keys := make([]string, 0, len(w.meta))
	for k := range w.meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := str(k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := str(w.meta[k]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	for _, e := range w.entries {
		b.WriteByte(',')
		if err := str(e.name); err != nil {
			return nil, err
		}
		b.WriteString(`:{"dtype":"` + e.dtype + `","shape":[`)
		for i, d := range e.shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, e.begin, e.end)
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes(), nil
}

// start writes the header once.
func (w *Writer) start() error {
	if w.started {
		return nil
	}
	w.started = true
	hdr, err := w.header()
	if err != nil {
		return w.fail("header: %v", err)
	}
	if len(hdr) > MaxHeaderSize {
		return w.fail("header is %d bytes, over the %d-byte limit readers accept", len(hdr), MaxHeaderSize)
	}
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(hdr)))
	if _, err := w.bw.Write(prefix[:]); err != nil {
		return w.fail("%v", err)
	}
	if _, err := w.bw.Write(hdr); err != nil {
		return w.fail("%v", err)
	}
	return nil
}

// next positions w.cur on the first tensor with data still to write and
// checks that name is that tensor and that n more bytes fit in it.
func (w *Writer) next(name string, n int64) (*wentry, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	if err := w.start(); err != nil {
		return nil, err
	}
	for w.cur < len(w.entries) && w.curDone == w.entries[w.cur].end-w.entries[w.cur].begin {
		w.cur++
		w.curDone = 0
	}
	i, ok := w.index[name]
	switch {
	case !ok:
		return nil, w.fail("tensor %q: not declared", name)
	case i < w.cur && n == 0:
		return &w.entries[i], nil // an empty write to a complete tensor
	case w.cur == len(w.entries):
		return nil, w.fail("tensor %q: data written past the end of the last tensor", name)
	case i != w.cur:
		return nil, w.fail("tensor %q: written out of order (tensors are written in the order Add declared them; next is %q)",
			name, w.entries[w.cur].name)
	}
	e := &w.entries[i]
	if rest := e.end - e.begin - w.curDone; n > rest {
		return nil, w.fail("tensor %q: %d bytes written past its end (%d left)", name, n, rest)
	}
	return e, nil
}

func (w *Writer) write(p []byte) error {
	if _, err := w.bw.Write(p); err != nil {
		return w.fail("%v", err)
	}
	w.curDone += int64(len(p))
	return nil
}

// WriteFloat32 appends data to the named tensor, converting to its
// declared dtype (F32, F16, BF16 or F64; rounding to nearest even).
func (w *Writer) WriteFloat32(name string, data []float32) error {
	i, ok := w.index[name]
	if ok && w.err == nil && !IsFloat(w.entries[i].dtype) {
		return w.fail("tensor %q: WriteFloat32 to a tensor of dtype %s", name, w.entries[i].dtype)
	}
	if !ok {
		_, err := w.next(name, 0)
		return err
	}
	item := itemSizes[w.entries[i].dtype]
	e, err := w.next(name, int64(len(data))*item)
	if err != nil || len(data) == 0 {
		return err
	}
	if e.dtype == F32 && hostLittleEndian {
		return w.write(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), 4*len(data)))
	}
	const chunk = 1 << 14
	for len(data) > 0 {
		c := data[:min(chunk, len(data))]
		data = data[len(c):]
		b := w.buffer(len(c) * int(item))
		for j, v := range c {
			switch e.dtype {
			case F32:
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(v))
			case F16:
				binary.LittleEndian.PutUint16(b[2*j:], Float32ToFloat16(v))
			case BF16:
				binary.LittleEndian.PutUint16(b[2*j:], Float32ToBFloat16(v))
			case F64:
				binary.LittleEndian.PutUint64(b[8*j:], math.Float64bits(float64(v)))
			}
		}
		if err := w.write(b); err != nil {
			return err
		}
	}
	return nil
}

// WriteInt64 appends data to the named tensor, converting to its declared
// dtype (I64, or I32 when every value fits).
func (w *Writer) WriteInt64(name string, data []int64) error {
	i, ok := w.index[name]
	if !ok {
		_, err := w.next(name, 0)
		return err
	}
	dt := w.entries[i].dtype
	if w.err == nil && dt != I64 && dt != I32 {
		return w.fail("tensor %q: WriteInt64 to a tensor of dtype %s (want I64 or I32)", name, dt)
	}
	item := itemSizes[dt]
	if _, err := w.next(name, int64(len(data))*item); err != nil || len(data) == 0 {
		return err
	}
	const chunk = 1 << 14
	for len(data) > 0 {
		c := data[:min(chunk, len(data))]
		data = data[len(c):]
		b := w.buffer(len(c) * int(item))
		for j, v := range c {
			if dt == I64 {
				binary.LittleEndian.PutUint64(b[8*j:], uint64(v))
				continue
			}
			if v < math.MinInt32 || v > math.MaxInt32 {
				return w.fail("tensor %q: value %d does not fit dtype I32", name, v)
			}
			binary.LittleEndian.PutUint32(b[4*j:], uint32(int32(v)))
		}
		if err := w.write(b); err != nil {
			return err
		}
	}
	return nil
}

// WriteRaw appends bytes already encoded in the tensor's declared dtype
// (little-endian), for example data copied from File.Raw.
func (w *Writer) WriteRaw(name string, data []byte) error {
	i, ok := w.index[name]
	if ok && w.err == nil && int64(len(data))%itemSizes[w.entries[i].dtype] != 0 {
		return w.fail("tensor %q: %d bytes is not a whole number of %s elements", name, len(data), w.entries[i].dtype)
	}
	if _, err := w.next(name, int64(len(data))); err != nil || len(data) == 0 {
		return err
	}
	return w.write(data)
}

func (w *Writer) buffer(n int) []byte {
	if cap(w.scratch) < n {
		w.scratch = make([]byte, n)
	}
	return w.scratch[:n]
}

// Close checks that every declared tensor is complete, then syncs the
// temporary file and renames it to the Writer's path. On any error the
// temporary file is removed and no file appears at the path.
func (w *Writer) Close() error {
	if w.done && w.err == nil {
		return kindf(ErrClosed, w.path, "", "writer is closed")
	}
	if err := w.close(); err != nil {
		w.Abort()
		return err
	}
	return nil
}

func (w *Writer) close() error {
	if err := w.check(); err != nil {
		return err
	}
	if err := w.start(); err != nil {
		return err
	}
	for ; w.cur < len(w.entries); w.cur++ {
		e := w.entries[w.cur]
		if w.curDone != e.end-e.begin {
			return w.fail("tensor %q: only %d of its %d bytes were written", e.name, w.curDone, e.end-e.begin)
		}
		w.curDone = 0
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail("%v", err)
	}
	if err := commitTemp(w.tmp, w.path); err != nil {
		w.tmp = nil // commitTemp removed it
		return w.fail("%v", err)
	}
	w.tmp = nil
	w.done = true
	return nil
}

// Abort discards the file being written: the temporary file is removed
// and nothing appears at the path. It does nothing after a successful
// Close.
func (w *Writer) Abort() {
	if w.tmp == nil {
		w.done = true
		return
	}
	w.done = true
	if w.err == nil {
		w.err = kindf(ErrClosed, w.path, "", "writer was aborted")
	}
	name := w.tmp.Name()
	_ = w.tmp.Close()
	_ = os.Remove(name)
	w.tmp = nil
}

// createTemp creates the temporary file for an atomic write of path, in
// path's directory (rename is atomic only within one file system).
func createTemp(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return tmp, nil
}

// commitTemp syncs, closes and renames tmp to path, with the permissions
// an ordinary new file gets; on error it removes tmp.
func commitTemp(tmp *os.File, path string) error {
	name := tmp.Name()
	err := tmp.Chmod(0o644)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return err
	}
	// Make the rename itself durable; not every platform can sync a
	// directory, so this is best effort.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file and rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := createTemp(path)
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := commitTemp(tmp, path); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return nil
}
