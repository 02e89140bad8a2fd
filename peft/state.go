package peft

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// embeddingLayerNames are the module names PEFT treats as embedding layers
// when deciding whether to save them (EMBEDDING_LAYER_NAMES).
var embeddingLayerNames = []string{"embed_tokens", "lm_head"}

// EmbeddingModel is implemented by base models that know their input and
// output embedding modules (transformers' get_input_embeddings and
// get_output_embeddings). When an adapter targets an embedding layer, Save
// stores the base weights of the targeted ones as PEFT does. Models that do
// not implement it are searched for modules named "embed_tokens" (input)
// and "lm_head" (output).
type EmbeddingModel interface {
	// InputEmbeddings returns the path of the input embedding ("" if none).
	InputEmbeddings() string
	// OutputEmbeddings returns the path of the output layer ("" if none).
	OutputEmbeddings() string
}

// StateDict returns adapter's tensors as PEFT's get_peft_model_state_dict
// names them in adapter_model.safetensors: adapter tensors under
// "base_model.model.<path>.<name>" without the adapter name, method-level
// tensors under "base_model.<name>", biases per the bias option,
// modules_to_save copies under the module's plain name, and the base
// weights of targeted embedding layers. The tensors are the live ones.
func (m *Model) StateDict(adapter string) (map[string]*nn.Tensor, error) {
	if m.unloaded {
		return nil, errUnloaded
	}
	a, ok := m.adapters[adapter]
	if !ok {
		return nil, fmt.Errorf("peft: no adapter %q (have %q)", adapter, m.order)
	}
	if a.encoder != nil {
		return m.promptStateDict(a, adapter)
	}
	params := m.namedParamsAliased(true)
	out := map[string]*nn.Tensor{}
	put := func(key string, t *nn.Tensor) error {
		if old, ok := out[key]; ok && old != t {
			return fmt.Errorf("peft: adapter %q: two tensors have the saved key %q", adapter, key)
		}
		out[key] = t
		return nil
	}
	baseNames := map[string]*nn.Tensor{}
	for _, p := range params {
		if p.kind == kindBase {
			baseNames[p.Name] = p.T
		}
	}
	mode := biasMode(a.cfg)
	for _, p := range params {
		switch {
		case p.kind == kindAdapter && p.adapter == adapter && p.key != "":
			if err := put(p.key, p.T); err != nil {
				return nil, err
			}
			if strings.HasSuffix(mode, "_only") {
				// PEFT looks for "<text before the method prefix>bias",
				// which exists only for modules that own their bias.
				if i := strings.Index(p.Name, a.method.Prefix()); i > 0 {
					if t, ok := baseNames[p.Name[:i]+"bias"]; ok {
						if err := put(p.Name[:i]+"bias", t); err != nil {
							return nil, err
						}
					}
				}
			}
		case p.kind == kindShared && p.adapter == adapter:
			if err := put(p.key, p.T); err != nil {
				return nil, err
			}
		case mode == "all" && p.kind == kindBase && strings.Contains(p.Name, "bias"):
			if err := put(p.Name, p.T); err != nil {
				return nil, err
			}
		case mode == "all" && p.kind == kindCopy && p.adapter == adapter && strings.Contains(p.Name, "bias"):
			if err := put(tuners.RemoveAdapterName(p.Name, adapter), p.T); err != nil {
				return nil, err
			}
		}
	}
	// modules_to_save copies, under the module's own names.
	for _, w := range m.wrappers() {
		if w.saved == nil {
			continue
		}
		c := w.saved.copies.get(adapter)
		if c == nil {
			continue
		}
		for _, p := range nn.NamedParameters(c) {
			if err := put(rootPrefix+"."+w.Path+"."+p.Name, p.T); err != nil {
				return nil, err
			}
		}
	}
	// Base weights of targeted embedding layers.
	if tc, ok := a.cfg.(tuners.TargetedConfig); ok && embeddingTargeted(m.root, tc.Targeting().TargetModules) && !usesTrainableTokens(a.cfg) {
		for _, path := range m.embeddingPaths() {
			l, ok := m.moduleAt(path).(tuners.Layer)
			if !ok {
				continue
			}
			switch l.Base().(type) {
			case *nn.Linear, *nn.Embedding:
			default:
				continue
			}
			name := rootPrefix + "." + path + ".base_layer"
			for _, p := range params {
				if p.kind == kindBase && strings.Contains(p.Name, name) {
					if err := put(p.Name, p.T); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return out, nil
}

// embeddingWeights returns the base weights of the input and output
// embedding layers under the keys PEFT's save_embedding_layers=True writes
// ("base_model.model.<path>.weight", or "<path>.base_layer.weight" when the
// layer is adapted). Adapters trained after resizing the vocabulary carry
// them.
func (m *Model) embeddingWeights() map[string]*nn.Tensor {
	out := map[string]*nn.Tensor{}
	for _, path := range m.embeddingPaths() {
		mod := m.moduleAt(path)
		prefix := rootPrefix + "." + path
		if l, ok := mod.(tuners.Layer); ok {
			mod, prefix = l.Base(), prefix+".base_layer"
		}
		if mod == nil {
			continue
		}
		if _, ok := mod.(*savedModule); ok {
			continue
		}
		for _, p := range nn.NamedParameters(mod) {
			out[prefix+"."+p.Name] = p.T
		}
	}
	return out
}

// embeddingTargeted is PEFT's test for "the config targets an embedding
// layer": a list names "embed_tokens" or "lm_head" exactly; a pattern fully
// matches the path of a module whose last component is one of them.
func embeddingTargeted(root nn.Module, t tuners.Targets) bool {
	if t.IsPattern() {
		if t.IsAllLinear() {
			return false
		}
		re, err := regexp.Compile(`^(?:` + t.Pattern + `)$`)
		if err != nil {
			return false
		}
		found := false
		_ = walkAll(root, "", func(path string, _ nn.Module) {
			last := path[strings.LastIndexByte(path, '.')+1:]
			if slices.Contains(embeddingLayerNames, last) && re.MatchString(path) {
				found = true
			}
		})
		return found
	}
	for _, n := range t.Names {
		if slices.Contains(embeddingLayerNames, n) {
			return true
		}
	}
	return false
}

// usesTrainableTokens reports whether cfg is a trainable-tokens adapter or
// a config with trainable_token_indices set (PEFT then does not save the
// embedding layers).
func usesTrainableTokens(cfg tuners.Config) bool {
	if cfg.Base().PeftType == "TRAINABLE_TOKENS" {
		return true
	}
	data, err := tuners.MarshalConfig(cfg)
	if err != nil {
		return false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return false
	}
	v, ok := fields["trainable_token_indices"]
	return ok && string(v) != "null"
}

// embeddingPaths returns the input and output embedding paths of the model.
func (m *Model) embeddingPaths() []string {
	var out []string
	if e, ok := m.root.(EmbeddingModel); ok {
		for _, p := range []string{e.InputEmbeddings(), e.OutputEmbeddings()} {
			if p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	for _, want := range embeddingLayerNames {
		_ = tuners.WalkTargets(m.root, func(n tuners.Node) error {
			if n.Name == want && !slices.Contains(out, n.Path) {
				out = append(out, n.Path)
			}
			return nil
		})
	}
	return out
}

// moduleAt returns the module at path, or nil.
func (m *Model) moduleAt(path string) nn.Module {
	var found nn.Module
	_ = tuners.WalkTargets(m.root, func(n tuners.Node) error {
		if n.Path == path {
			found = n.Module
		}
		return nil
	})
	return found
}

// walkAll visits every module (inside wrappers too) with its path.
func walkAll(mod nn.Module, path string, fn func(string, nn.Module)) error {
	fn(path, mod)
	for _, c := range mod.Children() {
		if c.Module == nil {
			continue
		}
		p := c.Name
		if path != "" {
			p = path + "." + c.Name
		}
		if err := walkAll(c.Module, p, fn); err != nil {
			return err
		}
	}
	return nil
}

// loadWeights copies dir/adapter_model.safetensors into adapter's tensors,
// strictly (PEFT's set_peft_model_state_dict followed by a check that no
// adapter key was missing or unexpected).
func (m *Model) loadWeights(adapter, dir string) error {
	path := filepath.Join(dir, WeightsName)
	if _, err := os.Stat(path); err != nil {
		if _, binErr := os.Stat(filepath.Join(dir, "adapter_model.bin")); binErr == nil {
			return fmt.Errorf("peft: %s: only safetensors adapters are supported, found adapter_model.bin", dir)
		}
		return fmt.Errorf("peft: %w", err)
	}
	if a := m.adapters[adapter]; a != nil && a.encoder != nil {
		return m.loadPromptWeights(a, adapter, path)
	}
	if st := m.adapters[adapter]; st != nil && st.method != nil {
		if lp, ok := st.method.(tuners.LoadPreparer); ok {
			if err := lp.PrepareLoad(m.root, st.cfg, adapter); err != nil {
				return fmt.Errorf("peft: %s: adapter %q: %w", dir, adapter, err)
			}
		}
	}
	want, err := m.StateDict(adapter)
	if err != nil {
		return err
	}
	ints, err := m.intState(adapter)
	if err != nil {
		return err
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	defer f.Close()
	var src weightSource = f
	if st := m.adapters[adapter]; st != nil {
		if ff, ok := st.cfg.(tuners.FileFormat); ok {
			if src, err = decodedSource(path, ff); err != nil {
				return fmt.Errorf("peft: %s: adapter %q: %w", path, adapter, err)
			}
		}
	}
	if fitted, err := m.fitShapes(adapter, src); err != nil {
		return fmt.Errorf("peft: %s: %w", path, err)
	} else if fitted {
		if want, err = m.StateDict(adapter); err != nil {
			return err
		}
	}
	var unexpected, missing, mismatched []string
	names := src.Names()
	// Full embedding matrices (saved by PEFT when the vocabulary was
	// resized) load into the base model's embedding layers.
	var embeddings map[string]*nn.Tensor
	for _, name := range names {
		if _, ok := want[name]; ok {
			continue
		}
		if _, ok := ints[name]; ok {
			continue
		}
		if embeddings == nil {
			embeddings = m.embeddingWeights()
		}
		if t, ok := embeddings[name]; ok {
			want[name] = t
		}
	}
	for _, name := range names {
		info, _ := src.Info(name)
		var shape []int
		if t, ok := want[name]; ok {
			shape = t.Shape()
		} else if it, ok := ints[name]; ok {
			shape = it.Shape
		} else {
			unexpected = append(unexpected, name)
			continue
		}
		if !sameShape(info.Shape, shape) {
			mismatched = append(mismatched, fmt.Sprintf("%s: file %v, model %v", name, info.Shape, shape))
		}
	}
	for key := range want {
		if _, extra := embeddings[key]; !extra && !slices.Contains(names, key) {
			missing = append(missing, key)
		}
	}
	for key := range ints {
		if !slices.Contains(names, key) {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("missing keys %q", missing))
	}
	if len(unexpected) > 0 {
		problems = append(problems, fmt.Sprintf("unexpected keys %q", unexpected))
	}
	if len(mismatched) > 0 {
		problems = append(problems, fmt.Sprintf("shape mismatch %q", mismatched))
	}
	if len(problems) > 0 {
		return fmt.Errorf("peft: %s: adapter %q: %s", path, adapter, strings.Join(problems, "; "))
	}
	// Read (and convert) everything before writing anything, so that a bad
	// tensor leaves the adapter untouched.
	floats := make(map[string][]float32, len(want))
	integers := make(map[string][]int64, len(ints))
	for _, name := range names {
		if _, ok := want[name]; ok {
			if floats[name], err = src.Float32(name); err != nil {
				return fmt.Errorf("peft: adapter %q: %w", adapter, err)
			}
			continue
		}
		if integers[name], err = src.Int64(name); err != nil {
			return fmt.Errorf("peft: adapter %q: %w", adapter, err)
		}
	}
	for name, data := range floats {
		want[name].CopyFromHost(data)
	}
	for name, data := range integers {
		copy(ints[name].Data, data)
	}
	return m.reload(adapter)
}

// intState returns adapter's integer tensors by saved key.
func (m *Model) intState(adapter string) (map[string]*tuners.IntTensor, error) {
	out := map[string]*tuners.IntTensor{}
	put := func(key string, t *tuners.IntTensor) error {
		if _, ok := out[key]; ok {
			return fmt.Errorf("peft: adapter %q: two integer tensors have the saved key %q", adapter, key)
		}
		if n := shapeLen(t.Shape); n != len(t.Data) {
			return fmt.Errorf("peft: adapter %q: integer tensor %q has %d values for shape %v", adapter, key, len(t.Data), t.Shape)
		}
		out[key] = t
		return nil
	}
	for _, w := range m.wrappers() {
		is, ok := w.layer.(tuners.IntStater)
		if w.layer == nil || !ok {
			continue
		}
		for _, t := range is.AdapterInts(adapter) {
			if err := put(rootPrefix+"."+w.Path+"."+t.Name, t); err != nil {
				return nil, err
			}
		}
	}
	if a := m.adapters[adapter]; a != nil && a.shared != nil {
		for _, t := range a.shared.Ints {
			if err := put("base_model."+t.Name, t); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func shapeLen(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// sameShape compares a file shape with a tensor shape; a 0-d file tensor
// matches a one-element tensor of any rank.
func sameShape(file, model []int) bool {
	return slices.Equal(file, model) || (len(file) == 0 && shapeLen(model) == 1)
}

// SaveOption configures Save.
type SaveOption func(*saveOptions)

type saveOptions struct {
	adapters   []string
	embeddings bool
}

// SaveAdapters restricts Save to the named adapters.
func SaveAdapters(names ...string) SaveOption {
	return func(o *saveOptions) { o.adapters = names }
}

// SaveEmbeddingLayers also stores the full weights of the input and output
// embedding layers in every adapter file (PEFT's save_embedding_layers=True),
// as needed after resizing the vocabulary. By default they are stored only
// when an adapter targets an embedding layer, as PEFT's "auto" does.
func SaveEmbeddingLayers() SaveOption {
	return func(o *saveOptions) { o.embeddings = true }
}

// Save writes every adapter (or those chosen with SaveAdapters) in PEFT's
// layout: the adapter "default" in dir, any other in dir/<name>, each as
// adapter_config.json (inference_mode true) and adapter_model.safetensors
// (StateDict's keys, metadata {"format": "pt"}). Files are written
// atomically. Python PEFT's PeftModel.from_pretrained loads the result.
func (m *Model) Save(dir string, opts ...SaveOption) error {
	if m.unloaded {
		return errUnloaded
	}
	o := saveOptions{adapters: m.order}
	for _, f := range opts {
		f(&o)
	}
	for _, name := range o.adapters {
		a, ok := m.adapters[name]
		if !ok {
			return fmt.Errorf("peft: no adapter %q (have %q)", name, m.order)
		}
		out := dir
		if name != DefaultAdapterName {
			out = filepath.Join(dir, name)
		}
		sd, err := m.StateDict(name)
		if err != nil {
			return err
		}
		if o.embeddings {
			for k, t := range m.embeddingWeights() {
				if _, ok := sd[k]; !ok {
					sd[k] = t
				}
			}
		}
		ints, err := m.intState(name)
		if err != nil {
			return err
		}
		tensors := make(map[string]safetensors.Tensor, len(sd)+len(ints))
		for k, t := range sd {
			tensors[k] = safetensors.Tensor{Shape: t.Shape(), F32: t.Data()}
		}
		for k, t := range ints {
			if _, ok := tensors[k]; ok {
				return fmt.Errorf("peft: adapter %q: %q is both a float and an integer tensor", name, k)
			}
			tensors[k] = safetensors.Tensor{Shape: slices.Clone(t.Shape), I64: slices.Clone(t.Data)}
		}
		if ff, ok := a.cfg.(tuners.FileFormat); ok {
			if tensors, err = ff.EncodeFile(tensors); err != nil {
				return fmt.Errorf("peft: adapter %q: %w", name, err)
			}
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			return fmt.Errorf("peft: %w", err)
		}
		if err := safetensors.Save(filepath.Join(out, WeightsName), tensors, map[string]string{"format": "pt"}); err != nil {
			return fmt.Errorf("peft: adapter %q: %w", name, err)
		}
		cfg, err := cloneConfig(a.cfg)
		if err != nil {
			return err
		}
		cfg.Base().InferenceMode = true
		if cfg.Base().PeftVersion == "" {
			cfg.Base().PeftVersion = PEFTVersion
		}
		if err := SaveConfig(out, cfg); err != nil {
			return err
		}
	}
	return nil
}
