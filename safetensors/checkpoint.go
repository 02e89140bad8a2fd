package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// File names of a Hugging Face checkpoint folder.
const (
	// SingleFile is the name of an unsharded checkpoint.
	SingleFile = "model.safetensors"
	// IndexFile is the name of a sharded checkpoint's index, whose
	// "weight_map" maps each tensor name to the shard file holding it.
	IndexFile = "model.safetensors.index.json"
)

// Checkpoint is a model checkpoint that may be split over several
// safetensors files (shards). Shards are opened on first use and stay
// open until Close. Its methods are safe for concurrent use, except
// Close.
type Checkpoint struct {
	dir       string
	index     string            // path of the index file; "" for a single file
	weightMap map[string]string // tensor name -> shard file name in dir
	names     []string

	mu     sync.Mutex
	files  map[string]*File // shard file name -> open file
	closed bool
}

// OpenCheckpoint opens the checkpoint in dir: IndexFile if present (the
// shards it names are checked to exist, and opened lazily), else
// SingleFile (opened at once). dir may also be the path of an index file
// or of a single safetensors file. Errors name the index file and the key
// at fault.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	c := &Checkpoint{dir: dir, files: make(map[string]*File)}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		c.dir = filepath.Dir(dir)
		if strings.HasSuffix(dir, ".json") {
			err = c.readIndex(dir)
		} else {
			err = c.openSingle(filepath.Base(dir))
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	index := filepath.Join(dir, IndexFile)
	if _, err := os.Stat(index); err == nil {
		if err := c.readIndex(index); err != nil {
			return nil, err
		}
		return c, nil
	}
	if _, err := os.Stat(filepath.Join(dir, SingleFile)); err != nil {
		return nil, fmt.Errorf("safetensors: %s: neither %s nor %s found: %w", dir, IndexFile, SingleFile, err)
	}
	if err := c.openSingle(SingleFile); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Checkpoint) openSingle(name string) error {
	f, err := Open(filepath.Join(c.dir, name))
	if err != nil {
		return err
	}
	c.files[name] = f
	c.names = f.Names()
	c.weightMap = make(map[string]string, len(c.names))
	for _, n := range c.names {
		c.weightMap[n] = name
	}
	return nil
}

func (c *Checkpoint) readIndex(path string) error {
	c.index = path
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		if err == nil {
			err = fmt.Errorf("not an object")
		}
		return invalidf(path, "", "not a valid index: %v", err)
	}
	raw, ok := doc["weight_map"]
	if !ok {
		return invalidf(path, "", "no \"weight_map\"")
	}
	var wm map[string]json.RawMessage
	if err := json.Unmarshal(raw, &wm); err != nil || wm == nil {
		return invalidf(path, "", "\"weight_map\" is not an object")
	}
	c.weightMap = make(map[string]string, len(wm))
	shards := map[string]bool{}
	for name, v := range wm {
		var shard string
		if err := json.Unmarshal(v, &shard); err != nil {
			return invalidf(path, "", "weight_map[%q]: %s is not a file name", name, abbreviate(v))
		}
		if !shards[shard] {
			if err := checkShardName(shard); err != nil {
				return invalidf(path, "", "weight_map[%q]: shard %q: %v", name, shard, err)
			}
			if _, err := os.Stat(filepath.Join(c.dir, shard)); err != nil {
				return invalidf(path, "", "weight_map[%q]: shard %q: %v", name, shard, err)
			}
			shards[shard] = true
		}
		c.weightMap[name] = shard
		c.names = append(c.names, name)
	}
	slices.Sort(c.names)
	return nil
}

// checkShardName accepts only a plain file name inside the checkpoint's
// folder: an index must not make us read files elsewhere.
func checkShardName(shard string) error {
	if shard == "" || shard == "." || shard == ".." || strings.ContainsAny(shard, `/\`) || filepath.IsAbs(shard) || filepath.VolumeName(shard) != "" {
		return fmt.Errorf("not a file name in the checkpoint folder")
	}
	return nil
}

// Dir returns the checkpoint's folder.
func (c *Checkpoint) Dir() string { return c.dir }

// Names returns every tensor name of the checkpoint, sorted.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Shard returns the path of the file holding the named tensor, and false
// if the checkpoint has no such tensor.
func (c *Checkpoint) Shard(name string) (string, bool) {
	shard, ok := c.weightMap[name]
	if !ok {
		return "", false
	}
	return filepath.Join(c.dir, shard), true
}

// File returns the open shard holding the named tensor, opening it if
// needed. The File belongs to the Checkpoint: do not close it.
func (c *Checkpoint) File(name string) (*File, error) {
	where := c.index
	if where == "" {
		where = c.dir
	}
	shard, ok := c.weightMap[name]
	if !ok {
		return nil, kindf(ErrNotFound, where, name, "no such tensor")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, kindf(ErrClosed, where, name, "checkpoint is closed")
	}
	f := c.files[shard]
	if f == nil {
		var err error
		if f, err = Open(filepath.Join(c.dir, shard)); err != nil {
			return nil, fmt.Errorf("safetensors: %s: weight_map[%q]: %w", where, name, err)
		}
		c.files[shard] = f
	}
	if _, ok := f.infos[name]; !ok {
		return nil, invalidf(where, "", "weight_map[%q] names shard %q, which has no such tensor", name, shard)
	}
	return f, nil
}

// Info returns the description of the named tensor, opening its shard if
// needed.
func (c *Checkpoint) Info(name string) (Info, error) {
	f, err := c.File(name)
	if err != nil {
		return Info{}, err
	}
	info, _ := f.Info(name)
	return info, nil
}

// Float32 returns the named tensor as float32, as File.Float32 does: F32
// data may alias the shard's memory, copy-on-write (see File.Float32) and valid until Close.
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	f, err := c.File(name)
	if err != nil {
		return nil, err
	}
	return f.Float32(name)
}

// Int64 returns the named integer tensor as a new []int64, as File.Int64
// does.
func (c *Checkpoint) Int64(name string) ([]int64, error) {
	f, err := c.File(name)
	if err != nil {
		return nil, err
	}
	return f.Int64(name)
}

// Close closes every open shard. Slices aliasing them must not be used
// afterwards.
func (c *Checkpoint) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var first error
	for _, f := range c.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	clear(c.files)
	return first
}

// SaveIndex writes IndexFile into dir, atomically, in the layout the
// Hugging Face libraries write: {"metadata": {"total_size": totalSize},
// "weight_map": {...}} with sorted keys and two-space indentation.
// totalSize is the byte count of all tensor data over all shards.
// Every shard must be a plain file name (the shards live beside the index).
func SaveIndex(dir string, weightMap map[string]string, totalSize int64) error {
	path := filepath.Join(dir, IndexFile)
	for name, shard := range weightMap {
		if err := checkShardName(shard); err != nil {
			return fmt.Errorf("safetensors: %s: weight_map[%q]: shard %q: %w", path, name, shard, err)
		}
	}
	doc := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": totalSize}, weightMap}
	if doc.WeightMap == nil {
		doc.WeightMap = map[string]string{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return writeFileAtomic(path, b.Bytes())
}
