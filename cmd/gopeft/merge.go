package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// mergeAdapter is one --adapter with its weight.
type mergeAdapter struct {
	dir     string
	weight  float64
	cfg     tuners.Config
	tensors map[string]safetensors.Tensor
	used    map[string]bool
	matched bool
}

// mergeReport is the result of gopeft merge (its --json output).
type mergeReport struct {
	Out      string   `json:"out"`
	Shards   int      `json:"shards"`
	Tensors  int      `json:"tensors"`
	Merged   []string `json:"merged_modules"`
	DType    string   `json:"dtype,omitempty"`
	Bytes    int64    `json:"bytes"`
	Adapters []string `json:"adapters"`
	Seconds  float64  `json:"seconds"`
}

func runMerge(e *env, args []string) error {
	fs := e.newFlags("merge")
	base := fs.String("base", "", "base checkpoint folder (config.json and model.safetensors or a sharded index)")
	var dirs, weights multiFlag
	fs.Var(&dirs, "adapter", "adapter folder to merge (repeat for several, applied in order)")
	fs.Var(&weights, "weight", "weight of the adapter given before it (default 1): W ← W + weight·(merge(W) − W)")
	out := fs.String("out", "", "folder to write the merged checkpoint to")
	dtype := fs.String("dtype", "", "dtype of the merged float tensors: f32, f16 or bf16 (default: as in the base)")
	// --weight applies to the --adapter just before it: re-parse to pair
	// them by position.
	pairs, err := pairAdapterWeights(args)
	if err != nil {
		return err
	}
	if _, err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *base == "":
		return usagef("--base is required")
	case len(dirs) == 0:
		return usagef("--adapter is required")
	case *out == "":
		return usagef("--out is required")
	}
	if err := checkOut(*out); err != nil {
		return err
	}
	outDType := ""
	switch strings.ToLower(*dtype) {
	case "":
	case "f32", "float32", "fp32":
		outDType = safetensors.F32
	case "f16", "float16", "fp16":
		outDType = safetensors.F16
	case "bf16", "bfloat16":
		outDType = safetensors.BF16
	default:
		return usagef("--dtype %q: want f32, f16 or bf16", *dtype)
	}
	start := time.Now()
	var adapters []*mergeAdapter
	for _, p := range pairs {
		a, err := readMergeAdapter(p.dir, p.weight)
		if err != nil {
			return err
		}
		adapters = append(adapters, a)
	}
	tmp, err := tempDirBeside(*out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rep, err := mergeCheckpoint(e, *base, tmp, adapters, outDType)
	if err != nil {
		return err
	}
	if err := replaceDir(tmp, *out); err != nil {
		return err
	}
	rep.Out = *out
	rep.Seconds = time.Since(start).Seconds()
	for _, a := range adapters {
		rep.Adapters = append(rep.Adapters, a.dir)
	}
	e.printf("merged %d adapter(s) into %d modules of %s: %d tensors in %d shard(s), %.1f MiB, %.1fs\nwrote %s\n",
		len(adapters), len(rep.Merged), *base, rep.Tensors, rep.Shards, float64(rep.Bytes)/(1<<20), rep.Seconds, *out)
	return e.emit(rep)
}

type adapterWeight struct {
	dir    string
	weight float64
}

// pairAdapterWeights pairs each --weight with the --adapter before it.
func pairAdapterWeights(args []string) ([]adapterWeight, error) {
	var out []adapterWeight
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "adapter" && name != "weight") {
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, usagef("flag --%s needs a value", name)
			}
			i++
			val = args[i]
		}
		if name == "adapter" {
			out = append(out, adapterWeight{dir: val, weight: 1})
			continue
		}
		if len(out) == 0 {
			return nil, usagef("--weight %s comes before any --adapter", val)
		}
		w, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, usagef("--weight %q: %v", val, err)
		}
		out[len(out)-1].weight = w
	}
	return out, nil
}

func readMergeAdapter(dir string, weight float64) (*mergeAdapter, error) {
	cfg, err := peft.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.(tuners.TargetedConfig); !ok {
		return nil, fmt.Errorf("%s: %s adapters (prompt learning) have no weights to merge", dir, cfg.Base().PeftType)
	}
	path := filepath.Join(dir, peft.WeightsName)
	tensors, _, err := safetensors.ReadAll(path)
	if err != nil {
		return nil, err
	}
	if ff, ok := cfg.(tuners.FileFormat); ok {
		if tensors, err = ff.DecodeFile(tensors); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return &mergeAdapter{dir: dir, weight: weight, cfg: cfg, tensors: tensors, used: map[string]bool{}}, nil
}

// mergeCheckpoint writes the merged checkpoint into out, one shard at a
// time: a shard's tensors are read (float32 ones mapped, not copied),
// the modules whose weights live in it are wrapped by each adapter's method,
// the adapter tensors for them are loaded and merged in place, and the
// shard is written out before the next one is opened. Peak memory is about
// one shard (the merged pages and converted dtypes) plus the adapters.
func mergeCheckpoint(e *env, baseDir, out string, adapters []*mergeAdapter, outDType string) (*mergeReport, error) {
	ck, err := safetensors.OpenCheckpoint(baseDir)
	if err != nil {
		return nil, err
	}
	names := ck.Names()
	byShard := map[string][]string{}
	var shards []string
	for _, n := range names {
		s, _ := ck.Shard(n)
		if _, ok := byShard[s]; !ok {
			shards = append(shards, s)
		}
		byShard[s] = append(byShard[s], n)
	}
	sort.Strings(shards)
	// The checkpoint opens shards lazily; only its index is needed now.
	if err := ck.Close(); err != nil {
		return nil, err
	}
	modelType := readModelType(baseDir)
	rep := &mergeReport{Shards: len(shards), DType: outDType}
	weightMap := map[string]string{}
	var total int64
	b := e.newBar(len(shards), "merging")
	for _, shard := range shards {
		n, size, merged, err := mergeShard(shard, byShard[shard], filepath.Join(out, filepath.Base(shard)), adapters, outDType, modelType)
		if err != nil {
			b.finish()
			return nil, err
		}
		for _, name := range byShard[shard] {
			weightMap[name] = filepath.Base(shard)
		}
		rep.Tensors += n
		total += size
		rep.Merged = append(rep.Merged, merged...)
		b.add(1)
	}
	b.finish()
	for _, a := range adapters {
		if !a.matched {
			return nil, fmt.Errorf("%s: target_modules of the %s adapter match no module of %s: %w",
				a.dir, a.cfg.Base().PeftType, baseDir, tuners.ErrNoTarget)
		}
		var unused []string
		for k := range a.tensors {
			if !a.used[k] {
				unused = append(unused, k)
			}
		}
		if len(unused) > 0 {
			sort.Strings(unused)
			return nil, fmt.Errorf("%s: %d adapter tensor(s) fit no module of %s, first %s", a.dir, len(unused), baseDir, unused[0])
		}
	}
	rep.Bytes = total
	if _, err := os.Stat(filepath.Join(baseDir, safetensors.IndexFile)); err == nil {
		if err := safetensors.SaveIndex(out, weightMap, total); err != nil {
			return nil, err
		}
	}
	if err := copyOtherFiles(baseDir, out); err != nil {
		return nil, err
	}
	if outDType != "" {
		if err := setTorchDType(filepath.Join(out, "config.json"), outDType); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// readModelType returns config.json's model_type ("" when unknown).
func readModelType(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return ""
	}
	var c struct {
		ModelType string `json:"model_type"`
	}
	_ = json.Unmarshal(data, &c)
	return c.ModelType
}

// copyOtherFiles copies every regular file of the base folder that is not a
// weight file (config.json, tokenizer files, generation_config.json, ...).
func copyOtherFiles(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, en := range entries {
		name := en.Name()
		if !en.Type().IsRegular() || strings.HasSuffix(name, ".safetensors") || name == safetensors.IndexFile {
			continue
		}
		if err := copyFile(filepath.Join(from, name), filepath.Join(to, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copying %s: %w", from, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("copying %s: %w", from, err)
	}
	return nil
}

// embeddingNames are the module names read as embeddings (looked up, not
// multiplied) in a checkpoint.
var embeddingNames = map[string]bool{"embed_tokens": true, "wte": true, "word_embeddings": true, "embed_in": true}

// chunkBytes bounds the float32 weights one injection holds at a time when
// a shard must be converted (F16 and BF16 checkpoints): modules are merged
// and written in groups of about this size.
var chunkBytes = 32 << 20

// mergeShard merges the adapters into the tensors of one shard and writes it
// to outPath. It returns the number of tensors, their bytes and the merged
// module paths.
//
// The modules that some adapter selects are read in chunks (all at once
// when a method shares state across modules, such as VeRA's projections):
// each chunk is wrapped, loaded, merged and written before the next one is
// read, so that at most a chunk of converted weights is held besides the
// shard's mapping. The output holds those tensors first, then the others as
// stored (safetensors readers do not depend on the order).
func mergeShard(path string, names []string, outPath string, adapters []*mergeAdapter, outDType, modelType string) (int, int64, []string, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, 0, nil, err
	}
	defer f.Close()
	// Only the modules some adapter selects are read (and, for F16 or BF16
	// shards, converted); everything else is copied through as stored.
	names0, _, err := buildSkeleton(f, names, modelType, nil)
	if err != nil {
		return 0, 0, nil, err
	}
	want := map[string]bool{}
	whole := false
	for _, a := range adapters {
		sel, err := selectedModules(names0, a.cfg)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("%s: %w", a.dir, err)
		}
		for p := range sel {
			want[p] = true
		}
		if m, ok := peft.Method(a.cfg.Base().PeftType); ok {
			if _, shares := m.(tuners.Preparer); shares {
				whole = true
			}
		}
	}
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	// Group the selected modules (in shard order) into chunks.
	var chunks [][]string
	var chunkSize int
	for _, n := range names {
		mod, ok := strings.CutSuffix(n, ".weight")
		if !ok || !want[mod] {
			continue
		}
		info, _ := f.Info(n)
		if len(chunks) == 0 || (!whole && chunkSize+4*info.Len() > chunkBytes) {
			chunks = append(chunks, nil)
			chunkSize = 0
		}
		chunks[len(chunks)-1] = append(chunks[len(chunks)-1], mod)
		chunkSize += 4 * info.Len()
	}
	// Declare the tensors: each chunk's, then the rest.
	var order []string
	placed := map[string]bool{}
	chunkNames := make([][]string, len(chunks))
	for i, c := range chunks {
		for _, mod := range c {
			for _, n := range []string{mod + ".weight", mod + ".bias"} {
				if has[n] && !placed[n] {
					chunkNames[i] = append(chunkNames[i], n)
					order = append(order, n)
					placed[n] = true
				}
			}
		}
	}
	for _, n := range names {
		if !placed[n] {
			order = append(order, n)
		}
	}
	w, err := safetensors.NewWriter(outPath, f.Metadata())
	if err != nil {
		return 0, 0, nil, err
	}
	defer w.Abort()
	var size int64
	for _, n := range order {
		info, _ := f.Info(n)
		dt := info.DType
		if outDType != "" && safetensors.IsFloat(dt) {
			dt = outDType
		}
		if err := w.Add(n, dt, info.Shape); err != nil {
			return 0, 0, nil, err
		}
		sz, _ := safetensors.ItemSize(dt)
		size += int64(sz * info.Len())
	}
	merged := map[string]bool{}
	for i, c := range chunks {
		inChunk := map[string]bool{}
		for _, mod := range c {
			inChunk[mod] = true
		}
		root, tensors, err := buildSkeleton(f, names, modelType, func(p string) bool { return inChunk[p] })
		if err != nil {
			return 0, 0, nil, err
		}
		for k, a := range adapters {
			paths, err := mergeInto(root, a)
			if err != nil {
				return 0, 0, nil, fmt.Errorf("%s: adapter %d (%s) on %s: %w", a.dir, k+1, a.cfg.Base().PeftType, path, err)
			}
			for _, p := range paths {
				merged[p] = true
			}
		}
		// The module tree after unloading holds the final tensors (a
		// modules_to_save copy may have replaced a module).
		final := map[string]*nn.Tensor{}
		_ = nn.Walk(root, func(p string, m nn.Module) error {
			for _, prm := range m.Params() {
				final[joinPath(p, prm.Name)] = prm.T
			}
			return nil
		})
		for _, n := range chunkNames[i] {
			if t, ok := final[n]; ok && tensors[n] {
				if err := w.WriteFloat32(n, hostData(t)); err != nil {
					return 0, 0, nil, fmt.Errorf("%s: %w", outPath, err)
				}
				continue
			}
			if err := copyTensor(w, f, n, outDType, outPath); err != nil {
				return 0, 0, nil, err
			}
		}
		if converted(f, chunkNames[i]) {
			runtime.GC() // let the next chunk reuse this one's memory
		}
	}
	for _, n := range order[len(placed):] {
		if err := copyTensor(w, f, n, outDType, outPath); err != nil {
			return 0, 0, nil, err
		}
	}
	if err := w.Close(); err != nil {
		return 0, 0, nil, err
	}
	var paths []string
	for p := range merged {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return len(names), size, paths, nil
}

// converted reports whether reading any of the named tensors as float32
// converts it (dtypes other than F32).
func converted(f *safetensors.File, names []string) bool {
	for _, n := range names {
		if info, _ := f.Info(n); info.DType != safetensors.F32 {
			return true
		}
	}
	return false
}

// copyTensor writes tensor n of f unchanged, or converted to outDType.
func copyTensor(w *safetensors.Writer, f *safetensors.File, n, outDType, outPath string) error {
	info, _ := f.Info(n)
	if outDType != "" && safetensors.IsFloat(info.DType) && info.DType != outDType {
		data, err := f.Float32(n)
		if err != nil {
			return err
		}
		if err := w.WriteFloat32(n, data); err != nil {
			return fmt.Errorf("%s: %w", outPath, err)
		}
		return nil
	}
	raw, err := f.Raw(n)
	if err != nil {
		return err
	}
	if err := w.WriteRaw(n, raw); err != nil {
		return fmt.Errorf("%s: %w", outPath, err)
	}
	return nil
}

// hostData returns t's elements, without a copy when they live in host
// memory.
func hostData(t *nn.Tensor) []float32 {
	if h, ok := t.Buffer().(kernels.Host); ok && len(h) == t.Len() {
		return h
	}
	return t.Data()
}

// mergeInto injects adapter a into the modules of root that its config
// selects, loads a's tensors for them, merges them in place (blending by a's
// weight) and unloads the wrappers again. It returns the merged module paths
// (none when a targets nothing in this shard).
func mergeInto(root *skelNode, a *mergeAdapter) ([]string, error) {
	const name = "merge"
	m, err := peft.New(root, a.cfg, peft.AdapterName(name), peft.Trainable(false))
	if errors.Is(err, tuners.ErrNoTarget) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a.matched = true
	live, err := m.StateDict(name)
	if err != nil {
		return nil, err
	}
	// Sorted, so that the first bad key reported is the same on every run.
	for _, key := range slices.Sorted(maps.Keys(live)) {
		t := live[key]
		ft, ok := a.tensors[key]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s has no tensor %s", peft.WeightsName, key)
		case ft.F32 == nil || !slices.Equal(ft.Shape, t.Shape()):
			return nil, fmt.Errorf("%s: tensor %s has shape %v, the base module needs %v", peft.WeightsName, key, ft.Shape, t.Shape())
		}
		t.CopyFrom(nn.New(t.Backend(), ft.F32, ft.Shape...))
		a.used[key] = true
	}
	var paths []string
	err = nn.Walk(root, func(p string, mod nn.Module) error {
		l, ok := mod.(tuners.Layer)
		if !ok {
			return nil
		}
		paths = append(paths, p)
		if a.weight == 1 {
			return l.Merge([]string{name}, false)
		}
		// Blend: W + weight·(merge(W) − W), one module at a time.
		var before []*nn.Tensor
		params := nn.NamedParameters(l.Base())
		for _, prm := range params {
			before = append(before, prm.T.Clone().Detach())
		}
		if err := l.Merge([]string{name}, false); err != nil {
			return err
		}
		for i, prm := range params {
			delta := nn.Sub(prm.T, before[i])
			prm.T.CopyFrom(nn.Add(before[i], nn.Scale(delta, float32(a.weight))))
		}
		return nn.ErrSkipChildren
	})
	if err != nil {
		return nil, err
	}
	if _, err := m.Unload(); err != nil {
		return nil, err
	}
	return paths, nil
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// torchDTypes maps safetensors dtypes to config.json's torch_dtype names.
var torchDTypes = map[string]string{safetensors.F32: "float32", safetensors.F16: "float16", safetensors.BF16: "bfloat16"}

// setTorchDType rewrites the torch_dtype of a copied config.json (if there is
// one) to the dtype the merged weights were written in.
func setTorchDType(path, dtype string) error {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	doc["torch_dtype"], _ = json.Marshal(torchDTypes[dtype])
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeFileAtomic(path, append(out, '\n'))
}
