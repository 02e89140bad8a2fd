package peft

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
	"github.com/gopeft/gopeft/tuners/xlora"
)

// xloraClassifierPrefix is the saved key prefix of X-LoRA's classifier.
const xloraClassifierPrefix = "base_model.internal_xlora_classifier."

// HiddenModel is a base model that exposes its last hidden state, which
// X-LoRA's classifier reads (models/llama.Model is one).
type HiddenModel interface {
	PromptModel
	// HiddenStates returns the output of the final norm, [batch, seq, hidden].
	HiddenStates(h *nn.Tensor, opts *llama.ForwardOptions) (*nn.Tensor, error)
}

// XLoRA is an X-LoRA model (PEFT's XLoraModel): LoRA experts loaded as
// adapters "0", "1", ... of a LoRA Model, and a classifier that scales
// every expert per token and per adapted layer from the base model's last
// hidden state (see package tuners/xlora). Forward runs PEFT's two passes.
//
// Only the classifier trains unless use_trainable_adapters is set. There is
// no merge: Merge returns an error, as PEFT has none. Not safe for
// concurrent use: Forward sets the scalings on the layers.
type XLoRA struct {
	m      *Model
	cfg    *xlora.Config
	clf    *xlora.Classifier
	layers []*lora.Layer
	names  []string
	latest *nn.Tensor
}

// NewXLoRA builds an X-LoRA model on base from cfg: expert i is the LoRA
// adapter in the folder cfg.Adapters[i].Path, loaded as adapter "i"; the
// classifier is new (torch's nn.Linear initialisation from gopeft's Philox
// stream).
func NewXLoRA(base nn.Module, cfg *xlora.Config) (*XLoRA, error) {
	return newXLoRA(base, cfg, nil)
}

// LoadXLoRA loads an X-LoRA folder as NewXLoRA's Save writes it (and as
// PEFT's save_pretrained does): adapter_config.json, the classifier in
// adapter_model.safetensors, and expert i in the sub-folder "i" (or, when
// that folder is absent, at the config's adapters path).
func LoadXLoRA(base nn.Module, dir string) (*XLoRA, error) {
	data, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		return nil, fmt.Errorf("peft: %w", err)
	}
	cfg := xlora.NewConfig()
	if err := tuners.UnmarshalConfig(data, cfg); err != nil {
		return nil, fmt.Errorf("peft: %s: %w", filepath.Join(dir, ConfigName), err)
	}
	if cfg.PeftType != xlora.PeftType {
		return nil, fmt.Errorf("peft: %s: peft_type is %q, not %q", filepath.Join(dir, ConfigName), cfg.PeftType, xlora.PeftType)
	}
	paths := make([]string, len(cfg.Adapters))
	for i, e := range cfg.Adapters {
		paths[i] = e.Path
		sub := filepath.Join(dir, strconv.Itoa(i))
		if _, err := os.Stat(filepath.Join(sub, ConfigName)); err == nil {
			paths[i] = sub
		}
	}
	x, err := newXLoRA(base, cfg, paths)
	if err != nil {
		return nil, err
	}
	if err := x.loadClassifier(filepath.Join(dir, WeightsName)); err != nil {
		return nil, err
	}
	return x, nil
}

func newXLoRA(base nn.Module, cfg *xlora.Config, paths []string) (*XLoRA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("peft: %w", err)
	}
	if len(cfg.Adapters) == 0 {
		return nil, errors.New("peft: xlora: adapters is empty: X-LoRA needs at least one LoRA expert")
	}
	if _, ok := base.(HiddenModel); !ok {
		return nil, fmt.Errorf("peft: xlora: the base model %T does not expose its hidden states", base)
	}
	if paths == nil {
		for _, e := range cfg.Adapters {
			paths = append(paths, e.Path)
		}
	}
	x := &XLoRA{cfg: cfg}
	for i, p := range paths {
		name := strconv.Itoa(i)
		x.names = append(x.names, name)
		opts := []Option{AdapterName(name), Trainable(cfg.UseTrainableAdapters)}
		var err error
		if i == 0 {
			x.m, err = Load(base, p, opts...)
		} else {
			err = x.m.LoadAdapter(p, name, opts...)
		}
		if err != nil {
			return nil, fmt.Errorf("peft: xlora: expert %d (%q): %w", i, cfg.Adapters[i].Name, err)
		}
		if _, ok := x.m.Config(name).(*lora.Config); !ok {
			return nil, fmt.Errorf("peft: xlora: expert %d (%q) is a %s adapter, not LoRA", i, cfg.Adapters[i].Name, x.m.Config(name).Base().PeftType)
		}
	}
	if err := x.m.SetAdapter(x.names...); err != nil {
		return nil, fmt.Errorf("peft: xlora: %w", err)
	}
	for _, w := range x.m.wrappers() {
		l, ok := w.layer.(*lora.Layer)
		if !ok {
			return nil, fmt.Errorf("peft: xlora: module %q is a %T: X-LoRA supports LoRA Linear layers only", w.Path, w.layer)
		}
		x.layers = append(x.layers, l)
	}
	be := nn.DefaultBackend()
	if bm, ok := base.(interface{ Backend() kernels.Backend }); ok {
		be = bm.Backend()
	}
	clf, err := xlora.NewClassifier(be, cfg, len(x.names), len(x.layers), nn.NewRNG(0x58_4c_6f_52_41))
	if err != nil {
		return nil, fmt.Errorf("peft: %w", err)
	}
	x.clf = clf
	nn.SetTraining(clf, false)
	return x, nil
}

// Model returns the LoRA model holding the experts.
func (x *XLoRA) Model() *Model { return x.m }

// Classifier returns the classifier.
func (x *XLoRA) Classifier() *xlora.Classifier { return x.clf }

// Config returns the X-LoRA config.
func (x *XLoRA) Config() *xlora.Config { return x.cfg }

// LatestScalings returns the scalings of the last Forward, [batch, seq,
// n_layers, n_experts] (PEFT's get_latest_scalings), or nil.
func (x *XLoRA) LatestScalings() *nn.Tensor { return x.latest }

// SetScalingPassValue sets scaling_pass_value, the scaling of every expert
// in the scaling pass; nil means 1/n_experts (PEFT's
// set_scaling_pass_value). The other knobs (top_k_lora,
// global_scaling_weight, ...) are fields of Config() and take effect at the
// next Forward. Not safe for concurrent use.
func (x *XLoRA) SetScalingPassValue(v *float64) {
	if v == nil {
		x.cfg.ScalingPassValue = 1 / float64(len(x.names))
		return
	}
	x.cfg.ScalingPassValue = *v
}

// SetTraining switches the experts' and the classifier's dropout on or off.
func (x *XLoRA) SetTraining(on bool) {
	x.m.SetTraining(on)
	nn.SetTraining(x.clf, on)
}

// TrainableParameters lists the classifier's tensors (named as PEFT's
// "base_model.internal_xlora_classifier.layers.<i>.weight") and, with
// use_trainable_adapters, the experts'.
func (x *XLoRA) TrainableParameters() []nn.Param {
	var out []nn.Param
	for _, p := range nn.NamedParameters(x.clf) {
		p.Name = xloraClassifierPrefix + p.Name
		out = append(out, p)
	}
	if x.cfg.UseTrainableAdapters {
		out = append(out, x.m.TrainableParameters()...)
	}
	return out
}

// Merge fails: PEFT has no merge for X-LoRA, whose expert scalings depend on
// every token.
func (x *XLoRA) Merge() error {
	return errors.New("peft: xlora: merging is not supported: the experts' scalings depend on every token (PEFT has no merge for X-LoRA)")
}

// setScalings hands each adapted layer its slice of scalings (nil: off).
func (x *XLoRA) setScalings(s *nn.Tensor) error {
	for i, l := range x.layers {
		var ls *nn.Tensor
		if s != nil {
			ls = xlora.LayerScalings(x.cfg, s, i)
		}
		if err := l.SetTokenScalings(ls, x.names, float32(x.cfg.GlobalScalingWeight)); err != nil {
			return fmt.Errorf("peft: xlora: adapted layer %d: %w", i, err)
		}
	}
	return nil
}

// Forward runs PEFT's X-LoRA forward on token ids [batch, seq] (with an
// optional attention mask): a scaling pass with every expert scaled by
// scaling_pass_value, whose last hidden state (without gradient) the
// classifier maps to scalings; then the real pass with those scalings. It
// returns the logits.
func (x *XLoRA) Forward(in models.Input) (out *nn.Tensor, err error) {
	b, ok := x.m.root.(HiddenModel)
	if !ok || in.IDs == nil || len(in.Shape) != 2 {
		return nil, fmt.Errorf("peft: xlora: Forward takes token ids of shape [batch, seq], got shape %v", in.Shape)
	}
	bs, seq := in.Shape[0], in.Shape[1]
	defer func() {
		if e := x.setScalings(nil); e != nil && err == nil {
			out, err = nil, e
		}
	}()
	opts := &llama.ForwardOptions{AttentionMask: in.Mask}
	// Scaling pass.
	dummy := nn.Full(x.clf.Layers.Layers[0].(*nn.Linear).Weight.Backend(), float32(x.cfg.ScalingPassValue), bs, seq, len(x.layers), len(x.names))
	if err := x.setScalings(dummy); err != nil {
		return nil, err
	}
	h, err := b.Embed(in.IDs, bs, seq)
	if err != nil {
		return nil, err
	}
	hidden, err := b.HiddenStates(h, opts)
	if err != nil {
		return nil, err
	}
	s, err := x.clf.Scalings(hidden.Detach())
	if err != nil {
		return nil, err
	}
	x.latest = s
	// Real pass.
	if err := x.setScalings(s); err != nil {
		return nil, err
	}
	h, err = b.Embed(in.IDs, bs, seq)
	if err != nil {
		return nil, err
	}
	return b.ForwardEmbeds(h, opts)
}

// Save writes the X-LoRA folder as PEFT's save_pretrained does: the config
// and the classifier ("base_model.internal_xlora_classifier.*") in dir, and
// expert i as a LoRA adapter in dir/i.
func (x *XLoRA) Save(dir string) error {
	if err := x.m.Save(dir, SaveAdapters(x.names...)); err != nil {
		return err
	}
	tensors := map[string]safetensors.Tensor{}
	for _, p := range nn.NamedParameters(x.clf) {
		tensors[xloraClassifierPrefix+p.Name] = safetensors.Tensor{Shape: p.T.Shape(), F32: p.T.Data()}
	}
	if err := safetensors.Save(filepath.Join(dir, WeightsName), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("peft: xlora: %w", err)
	}
	cfg := *x.cfg
	cfg.InferenceMode = true
	cfg.PeftVersion = PEFTVersion
	return SaveConfig(dir, &cfg)
}

// loadClassifier copies the classifier's tensors from the file at path,
// strictly: missing, unexpected and mis-shaped keys are errors naming them.
func (x *XLoRA) loadClassifier(path string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("peft: xlora: %w", err)
	}
	defer f.Close()
	want := map[string]*nn.Tensor{}
	for _, p := range nn.NamedParameters(x.clf) {
		want[xloraClassifierPrefix+p.Name] = p.T
	}
	for _, name := range f.Names() {
		if _, ok := want[name]; !ok {
			return fmt.Errorf("peft: xlora: %s: unexpected key %q", path, name)
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t := want[k]
		info, ok := f.Info(k)
		if !ok {
			return fmt.Errorf("peft: xlora: %s: missing key %q", path, k)
		}
		if !slices.Equal(info.Shape, t.Shape()) {
			return fmt.Errorf("peft: xlora: %s: key %q has shape %v, the classifier wants %v", path, k, info.Shape, t.Shape())
		}
		data, err := f.Float32(k)
		if err != nil {
			return fmt.Errorf("peft: xlora: %s: key %q: %w", path, k, err)
		}
		t.CopyFromHost(data)
	}
	return nil
}
