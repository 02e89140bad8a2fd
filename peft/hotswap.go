package peft

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/lora"
)

// hotSwapper is the part of a LoRA layer hot-swapping uses.
type hotSwapper interface {
	tuners.Layer
	CheckHotSwap(name string, params map[string]lora.HostTensor) error
	HotSwap(name string, params map[string]lora.HostTensor, r int, alpha float64) error
	PadRank(name string, target int) error
}

// loraLayers returns the LoRA layers holding adapter name, in model order
// (in a mixed model, the LoRA layers inside the stacks).
func (m *Model) loraLayers(name string) ([]layerAt, []hotSwapper) {
	var at []layerAt
	var ls []hotSwapper
	for _, w := range m.wrappers() {
		var layer tuners.Layer = w.layer
		if s, ok := layer.(*tuners.Stack); ok { // a mixed model's module
			layer = s.Layer(lora.PeftType)
		}
		l, ok := layer.(hotSwapper)
		if !ok || !slices.Contains(l.Adapters(), name) {
			continue
		}
		at, ls = append(at, w), append(ls, l)
	}
	return at, ls
}

// hotSwapKeys are the config fields that change a LoRA adapter's output
// beyond its weights and scaling; hot-swapping needs them equal (PEFT's
// check_hotswap_configs_compatible).
var hotSwapKeys = []struct {
	field string
	get   func(*lora.Config) any
}{
	{"use_rslora", func(c *lora.Config) any { return c.UseRSLoRA }},
	{"lora_dropout", func(c *lora.Config) any { return c.Dropout }},
	{"alpha_pattern", func(c *lora.Config) any { return c.AlphaPattern }},
	{"use_dora", func(c *lora.Config) any { return c.UseDoRA }},
}

// HotSwapAdapter replaces the weights of the loaded LoRA adapter name with
// those of the adapter folder dir, in place (PEFT's hotswap_adapter): the
// model keeps its layers, adapters and tensors, so a swap costs reading the
// file and copying it in, not injecting an adapter. The name stays; the
// model's config for it becomes dir's.
//
// The rules are PEFT's. Both adapters must be LoRA with the same
// use_rslora, lora_dropout, alpha_pattern and use_dora. dir's adapter may
// target the same modules or a subset: the tensors of modules it leaves out
// are zeroed, so those modules compute their base output. A key naming a
// module or tensor the loaded adapter does not have is an error naming it,
// as is a tensor of a larger rank than the loaded one (PrepareHotSwap pads
// the loaded adapter to the largest rank in advance) or an otherwise
// different shape. A smaller rank fills the leading rows of A and columns of
// B and zeros the rest. The scaling of each module becomes dir's (its r,
// lora_alpha, rank_pattern). The adapter must not be merged. Everything is
// checked before anything is written, so a failed swap leaves the model
// unchanged. Where the factors are wider than dir's rank (after
// PrepareHotSwap, or swapping in a smaller rank) the model's config records
// the width as r, as PrepareHotSwap does, so that Save writes a config
// whose shapes match its tensors; the scaling is then the loaded one's and
// not r's (PEFT behaves the same).
//
// Like every mutation, it must not run while a Forward (or anything else)
// runs on the model; between forwards it is safe.
func (m *Model) HotSwapAdapter(dir, name string) error {
	if m.unloaded {
		return errUnloaded
	}
	st, ok := m.adapters[name]
	if !ok {
		return fmt.Errorf("peft: hot-swap: no adapter %q (have %q)", name, m.order)
	}
	oldCfg, ok := st.cfg.(*lora.Config)
	if !ok {
		return fmt.Errorf("peft: hot-swap: adapter %q is %s; only LoRA adapters can be hot-swapped", name, st.typeName())
	}
	cfgAny, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	newCfg, ok := cfgAny.(*lora.Config)
	if !ok {
		return fmt.Errorf("peft: hot-swap %s: it holds a %s adapter, but %q is LoRA", dir, cfgAny.Base().PeftType, name)
	}
	for _, k := range hotSwapKeys {
		if a, b := k.get(oldCfg), k.get(newCfg); !reflect.DeepEqual(a, b) && !(isEmptyMap(a) && isEmptyMap(b)) {
			return fmt.Errorf("peft: hot-swap %s: %s differs (%v loaded, %v in the file)", dir, k.field, a, b)
		}
	}
	path := filepath.Join(dir, WeightsName)
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("peft: hot-swap: %w", err)
	}
	defer f.Close()

	at, layers := m.loraLayers(name)
	byPath := map[string]int{}
	for i, w := range at {
		byPath[w.Path] = i
	}
	params := make([]map[string]lora.HostTensor, len(layers))
	var unexpected []string
	for _, key := range f.Names() {
		layer, frag := -1, ""
		if rest, ok := strings.CutPrefix(key, "base_model.model."); ok {
			for p, i := range byPath {
				if fr, ok := strings.CutPrefix(rest, p+"."); ok && strings.HasPrefix(fr, lora.Prefix) {
					layer, frag = i, fr
					break
				}
			}
		}
		if layer < 0 {
			unexpected = append(unexpected, key)
			continue
		}
		info, _ := f.Info(key)
		data, err := f.Float32(key)
		if err != nil {
			return fmt.Errorf("peft: hot-swap %s: %w", path, err)
		}
		if params[layer] == nil {
			params[layer] = map[string]lora.HostTensor{}
		}
		params[layer][frag] = lora.HostTensor{Data: data, Shape: info.Shape}
	}
	if len(unexpected) > 0 {
		sort.Strings(unexpected)
		return fmt.Errorf("peft: hot-swap %s: unexpected keys %q: adapter %q does not have them (hot-swapping cannot add target modules)", path, unexpected, name)
	}
	for i, l := range layers {
		if err := l.CheckHotSwap(name, params[i]); err != nil {
			return fmt.Errorf("peft: hot-swap %s: key base_model.model.%s.%w", path, at[i].Path, err)
		}
	}
	var errs []error
	padded := 0 // the factors' width where it exceeds the new rank
	for i, l := range layers {
		r, alpha := 0, 0.0
		if params[i] != nil {
			if r, alpha, err = newCfg.RankAlpha(at[i].Path); err != nil {
				return fmt.Errorf("peft: hot-swap %s: %w", dir, err)
			}
			if w := l.(interface{ Rank(string) int }).Rank(name); w != r {
				padded = max(padded, w)
			}
		}
		if err := l.HotSwap(name, params[i], r, alpha); err != nil {
			errs = append(errs, fmt.Errorf("peft: hot-swap %s: module %q: %w", path, at[i].Path, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if padded > 0 {
		// As PrepareHotSwap does: the config records the padded width.
		newCfg.R = padded
		for k := range newCfg.RankPattern {
			newCfg.RankPattern[k] = padded
		}
	}
	newCfg.Base().InferenceMode = oldCfg.Base().InferenceMode
	st.cfg = newCfg
	return nil
}

// isEmptyMap reports whether v is a nil or empty map.
func isEmptyMap(v any) bool {
	r := reflect.ValueOf(v)
	return r.Kind() == reflect.Map && r.Len() == 0
}

// PrepareHotSwap pads every LoRA adapter of the model to rank targetRank
// (PEFT's prepare_model_for_compiled_hotswap with target_rank): A gets zero
// rows and B zero columns, which leaves every output unchanged, so that
// HotSwapAdapter can later swap in any adapter of rank up to targetRank in
// place. Call it once, after loading the first adapter and before serving;
// the widened factors then keep their shape (and buffers) across swaps.
// Each adapter's config records targetRank as its r (and rank_pattern
// values), as PEFT does; Save afterwards writes the padded factors.
// Adapters already of rank targetRank are left alone; a larger rank, a
// merged adapter, or a model without LoRA layers is an error.
//
// Not safe while anything else runs on the model.
func (m *Model) PrepareHotSwap(targetRank int) error {
	if m.unloaded {
		return errUnloaded
	}
	if targetRank <= 0 {
		return fmt.Errorf("peft: PrepareHotSwap: target rank must be positive, got %d", targetRank)
	}
	var names []string
	for _, n := range m.order {
		if _, ok := m.adapters[n].cfg.(*lora.Config); ok {
			names = append(names, n)
		}
	}
	// Check every layer first, so that an error leaves the model unchanged.
	type job struct {
		w    layerAt
		l    hotSwapper
		name string
	}
	var jobs []job
	for _, n := range names {
		at, ls := m.loraLayers(n)
		for i, l := range ls {
			if r := l.(interface{ Rank(string) int }).Rank(n); r > targetRank {
				return fmt.Errorf("peft: PrepareHotSwap: adapter %q has rank %d at %q, larger than the target rank %d", n, r, at[i].Path, targetRank)
			}
			if slices.Contains(l.Merged(), n) {
				return fmt.Errorf("peft: PrepareHotSwap: adapter %q is merged into %q: unmerge it first", n, at[i].Path)
			}
			jobs = append(jobs, job{at[i], l, n})
		}
	}
	if len(jobs) == 0 {
		return errors.New("peft: PrepareHotSwap: the model has no LoRA layers; load the first adapter before preparing")
	}
	for _, j := range jobs {
		if err := j.l.PadRank(j.name, targetRank); err != nil {
			return fmt.Errorf("peft: PrepareHotSwap: module %q: %w", j.w.Path, err)
		}
	}
	for _, n := range names {
		c := m.adapters[n].cfg.(*lora.Config)
		c.R = targetRank
		for k := range c.RankPattern {
			c.RankPattern[k] = targetRank
		}
	}
	return nil
}
