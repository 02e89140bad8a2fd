package safetensors

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// shardedDir writes a checkpoint of two shards plus its index.
func shardedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s1 := map[string]Tensor{"a.weight": {Shape: []int{2}, F32: []float32{1, 2}}, "b.weight": {DType: BF16, Shape: []int{1}, F32: []float32{3}}}
	s2 := map[string]Tensor{"c.ids": {Shape: []int{2}, I64: []int64{4, 5}}}
	if err := Save(filepath.Join(dir, "model-00001-of-00002.safetensors"), s1, nil); err != nil {
		t.Fatal(err)
	}
	if err := Save(filepath.Join(dir, "model-00002-of-00002.safetensors"), s2, nil); err != nil {
		t.Fatal(err)
	}
	wm := map[string]string{
		"a.weight": "model-00001-of-00002.safetensors",
		"b.weight": "model-00001-of-00002.safetensors",
		"c.ids":    "model-00002-of-00002.safetensors",
	}
	if err := SaveIndex(dir, wm, 8+2+16); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCheckpointSharded(t *testing.T) {
	dir := shardedDir(t)
	b, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil || idx.Metadata["total_size"] != 26 || len(idx.WeightMap) != 3 {
		t.Fatalf("index %s: %v", b, err)
	}
	if !strings.HasPrefix(string(b), "{\n  \"metadata\": {\n    \"total_size\": 26\n  },\n  \"weight_map\": {\n    \"a.weight\"") {
		t.Errorf("index layout:\n%s", b)
	}
	for _, open := range []string{dir, filepath.Join(dir, IndexFile)} {
		c, err := OpenCheckpoint(open)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Names(); !slices.Equal(got, []string{"a.weight", "b.weight", "c.ids"}) {
			t.Errorf("Names = %q", got)
		}
		if len(c.files) != 0 {
			t.Errorf("shards opened eagerly: %d", len(c.files))
		}
		if p, ok := c.Shard("c.ids"); !ok || p != filepath.Join(dir, "model-00002-of-00002.safetensors") {
			t.Errorf("Shard(c.ids) = %q, %v", p, ok)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if v, err := c.Float32("a.weight"); err != nil || !slices.Equal(v, []float32{1, 2}) {
					t.Errorf("Float32(a.weight) = %v, %v", v, err)
				}
				if v, err := c.Float32("b.weight"); err != nil || !slices.Equal(v, []float32{3}) {
					t.Errorf("Float32(b.weight) = %v, %v", v, err)
				}
			}()
		}
		wg.Wait()
		if len(c.files) != 1 {
			t.Errorf("%d shards open, want 1", len(c.files))
		}
		if v, err := c.Int64("c.ids"); err != nil || !slices.Equal(v, []int64{4, 5}) {
			t.Errorf("Int64(c.ids) = %v, %v", v, err)
		}
		if info, err := c.Info("b.weight"); err != nil || info.DType != BF16 {
			t.Errorf("Info(b.weight) = %+v, %v", info, err)
		}
		if _, err := c.Float32("zzz"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), IndexFile) {
			t.Errorf("Float32(zzz): %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Float32("a.weight"); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
	}
}

func TestCheckpointSingle(t *testing.T) {
	dir := t.TempDir()
	if err := Save(filepath.Join(dir, SingleFile), map[string]Tensor{"w": {Shape: []int{1}, F32: []float32{7}}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, open := range []string{dir, filepath.Join(dir, SingleFile)} {
		c, err := OpenCheckpoint(open)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := c.Float32("w"); err != nil || !slices.Equal(v, []float32{7}) {
			t.Errorf("Float32(w) = %v, %v", v, err)
		}
		if got := c.Names(); !slices.Equal(got, []string{"w"}) {
			t.Errorf("Names = %q", got)
		}
		c.Close()
	}
	if _, err := OpenCheckpoint(t.TempDir()); err == nil || !strings.Contains(err.Error(), IndexFile) {
		t.Errorf("empty folder: %v", err)
	}
}

func TestCheckpointBadIndex(t *testing.T) {
	cases := []struct {
		name, index, want string
	}{
		{"not json", `{"weight_map": `, "not a valid index"},
		{"no weight_map", `{"metadata": {}}`, `no "weight_map"`},
		{"weight_map not object", `{"weight_map": [1]}`, `"weight_map" is not an object`},
		{"shard not string", `{"weight_map": {"a.weight": 3}}`, `weight_map["a.weight"]: 3 is not a file name`},
		{"escaping shard", `{"weight_map": {"a.weight": "../model-00001-of-00002.safetensors"}}`, `weight_map["a.weight"]: shard "../model-00001-of-00002.safetensors": not a file name`},
		{"absolute shard", `{"weight_map": {"a.weight": "/etc/passwd"}}`, "not a file name"},
		{"missing shard", `{"weight_map": {"a.weight": "model-00009.safetensors"}}`, `weight_map["a.weight"]: shard "model-00009.safetensors"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := shardedDir(t)
			index := filepath.Join(dir, IndexFile)
			if err := os.WriteFile(index, []byte(tc.index), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := OpenCheckpoint(dir)
			if err == nil || !strings.Contains(err.Error(), index) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s and containing %q", err, index, tc.want)
			}
		})
	}
	t.Run("tensor not in its shard", func(t *testing.T) {
		dir := shardedDir(t)
		if err := SaveIndex(dir, map[string]string{"a.weight": "model-00002-of-00002.safetensors"}, 0); err != nil {
			t.Fatal(err)
		}
		c, err := OpenCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Float32("a.weight")
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `weight_map["a.weight"] names shard "model-00002-of-00002.safetensors", which has no such tensor`) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("corrupt shard", func(t *testing.T) {
		dir := shardedDir(t)
		shard := filepath.Join(dir, "model-00002-of-00002.safetensors")
		if err := os.WriteFile(shard, []byte("garbage!"), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := OpenCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Int64("c.ids")
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), IndexFile) || !strings.Contains(err.Error(), shard) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("SaveIndex rejects paths", func(t *testing.T) {
		dir := t.TempDir()
		if err := SaveIndex(dir, map[string]string{"a": "sub/x.safetensors"}, 0); err == nil {
			t.Fatal("SaveIndex accepted a path")
		}
		if got := dirEntries(t, dir); len(got) != 0 {
			t.Errorf("left %q", got)
		}
	})
}
