package adalora

import (
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of AdaLoRA's parameter names (PEFT reuses LoRA's).
const Prefix = "lora_"

// Method is AdaLoRA as a tuners.Method: it wraps nn.Linear, GPT-2
// nn.Conv1D and nn.Conv2d (groups 1) modules. It is a tuners.LoadPreparer:
// loading an adapter whose config holds a rank_pattern first prunes the
// layers to it. The zero value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method       = Method{}
	_ tuners.LoadPreparer = Method{}
	_ tuners.FileFormat   = (*Config)(nil)
)

// Type returns "ADALORA".
func (Method) Type() string { return PeftType }

// Prefix returns "lora_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter, of rank init_r, to the module at t.Path: to
// the existing AdaLoRA layer there, or to a new one wrapping the module.
// Initial values are drawn from a Philox stream seeded by the adapter name
// and path, so they are reproducible run to run (but not equal to torch's
// draws); a new layer's dropout stream is seeded by its path. As in PEFT,
// a layer holds at most one adapter created for training (inference_mode
// false), and wrapping a Linear sets the config's fan_in_fan_out to false
// and wrapping a GPT-2 Conv1D sets it to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("adalora: module %q: config is a %T, not a *adalora.Config", t.Path, t.Config)
	}
	l, ok := t.Module.(*Layer)
	if ok {
		if !cfg.InferenceMode {
			for _, n := range l.Adapters() {
				if a, _ := l.Get(n); a.training {
					return nil, fmt.Errorf("adalora: module %q: adapter %q: AdaLoRA supports only one trainable adapter and %q is one; set inference_mode for the others", t.Path, t.Adapter, n)
				}
			}
		}
	} else {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("adalora: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.kind == kindConv1D
	}
	if err := l.addAdapter(t.Adapter, cfg.InitR, cfg, nn.NewRNG(seedFor(t.Adapter, t.Path))); err != nil {
		return nil, fmt.Errorf("adalora: module %q: %w", t.Path, err)
	}
	return l, nil
}

// seedFor derives a seed from the adapter name and module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}

// layersOf returns the AdaLoRA layers under root that hold adapter, by
// module path, and the paths in model order.
func layersOf(root nn.Module, adapter string) (map[string]*Layer, []string) {
	byPath := map[string]*Layer{}
	var order []string
	_ = tuners.WalkTargets(root, func(n tuners.Node) error {
		if l, ok := n.Module.(*Layer); ok {
			if _, has := l.Get(adapter); has {
				byPath[n.Path] = l
				order = append(order, n.Path)
			}
		}
		return nil
	})
	return byPath, order
}

// PrepareLoad prunes the layers of adapter to the config's rank_pattern
// before its file is loaded, as PEFT's resize_modules_by_rank_pattern does:
// each layer keeps the triplets its mask marks, and its output scale
// (ranknum) stays that of init_r. It fails, naming the key, when a
// rank_pattern entry names no layer of the adapter or its mask does not
// have one entry per rank.
func (Method) PrepareLoad(root nn.Module, c tuners.Config, adapter string) error {
	cfg, ok := c.(*Config)
	if !ok {
		return fmt.Errorf("adalora: config is a %T, not a *adalora.Config", c)
	}
	if len(cfg.RankPattern) == 0 {
		return nil
	}
	layers, _ := layersOf(root, adapter)
	keys := make([]string, 0, len(cfg.RankPattern))
	for k := range cfg.RankPattern {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		path, err := rankPatternPath(k)
		if err != nil {
			return err
		}
		l, ok := layers[path]
		if !ok {
			return fmt.Errorf("adalora: rank_pattern key %q: no AdaLoRA layer of adapter %q at %q", k, adapter, path)
		}
		if err := l.resize(adapter, cfg.RankPattern[k]); err != nil {
			return fmt.Errorf("adalora: rank_pattern key %q: %w", k, err)
		}
	}
	return nil
}

// EncodeFile prunes the saved tensors to the rank_pattern, as PEFT's
// resize_state_dict_by_rank_pattern does when saving: for every entry,
// "<path>.lora_E" and "<path>.lora_A" keep the rows, and "<path>.lora_B"
// the columns, that the mask marks. Tensors that already have the pruned
// rank (a loaded adapter) are left alone. The error names the key.
func (c *Config) EncodeFile(tensors map[string]safetensors.Tensor) (map[string]safetensors.Tensor, error) {
	if len(c.RankPattern) == 0 {
		return tensors, nil
	}
	out := make(map[string]safetensors.Tensor, len(tensors))
	for k, v := range tensors {
		out[k] = v
	}
	for k, mask := range c.RankPattern {
		path, err := rankPatternPath(k)
		if err != nil {
			return nil, err
		}
		kept := 0
		for _, on := range mask {
			if on {
				kept++
			}
		}
		for _, part := range []struct {
			name string
			axis int
		}{{"lora_E", 0}, {"lora_A", 0}, {"lora_B", 1}} {
			key := "base_model.model." + path + "." + part.name
			t, ok := out[key]
			if !ok {
				return nil, fmt.Errorf("adalora: rank_pattern key %q: the adapter has no tensor %q", k, key)
			}
			if len(t.Shape) != 2 || t.F32 == nil {
				return nil, fmt.Errorf("adalora: %q: want a 2-D float tensor, got shape %v", key, t.Shape)
			}
			switch t.Shape[part.axis] {
			case kept:
				continue
			case len(mask):
			default:
				return nil, fmt.Errorf("adalora: rank_pattern key %q: %q has rank %d, but the mask has %d entries (%d kept)", k, key, t.Shape[part.axis], len(mask), kept)
			}
			out[key] = selectAxis(t, part.axis, mask, kept)
		}
	}
	return out, nil
}

// selectAxis returns the rows (axis 0) or columns (axis 1) of the 2-D
// tensor t that mask marks; kept is their number. It only moves elements.
func selectAxis(t safetensors.Tensor, axis int, mask []bool, kept int) safetensors.Tensor {
	rows, cols := t.Shape[0], t.Shape[1]
	var data []float32
	shape := []int{kept, cols}
	if axis == 0 {
		data = make([]float32, 0, kept*cols)
		for i := range rows {
			if mask[i] {
				data = append(data, t.F32[i*cols:(i+1)*cols]...)
			}
		}
	} else {
		shape = []int{rows, kept}
		data = make([]float32, 0, rows*kept)
		for i := range rows {
			for j := range cols {
				if mask[j] {
					data = append(data, t.F32[i*cols+j])
				}
			}
		}
	}
	return safetensors.Tensor{Shape: shape, F32: data}
}

// DecodeFile returns the file's tensors unchanged: PrepareLoad already
// gave the layers the file's (pruned) shapes.
func (c *Config) DecodeFile(tensors map[string]safetensors.Tensor) (map[string]safetensors.Tensor, error) {
	return tensors, nil
}
