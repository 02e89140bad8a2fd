package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of LoRA's parameter names.
const Prefix = "lora_"

// Method is LoRA as a tuners.Method: it wraps nn.Linear, GPT-2 nn.Conv1D,
// nn.Embedding, nn.Conv1d and nn.Conv2d modules. The zero value is ready to
// use and stateless.
type Method struct{}

var _ tuners.Method = Method{}

// Type returns "LORA".
func (Method) Type() string { return PeftType }

// Prefix returns "lora_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// Wrap adds adapter t.Adapter to the module at t.Path: to the existing LoRA
// layer there, or to a new one wrapping the module. The rank and alpha come
// from rank_pattern / alpha_pattern when a pattern matches the path (PEFT's
// rule: the first pattern p with the path fully matching `(.*\.)?(p)`, in
// the order of the config file, which PEFT writes sorted; for configs built
// in Go, in sorted order), else from r / lora_alpha. Initial values are drawn from a
// Philox stream seeded by the adapter name and path, so they are
// reproducible run to run (but not equal to torch's draws); a new layer's
// dropout stream is seeded by its path (see SetSeed). The new adapter's
// tensors require gradients and, on a new layer, it is the active adapter.
//
// Like PEFT, wrapping a Linear sets the config's fan_in_fan_out to false
// and wrapping a GPT-2 Conv1D sets it to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("lora: module %q: config is a %T, not a *lora.Config", t.Path, t.Config)
	}
	r, alpha, err := cfg.rankAlpha(t.Path)
	if err != nil {
		return nil, err
	}
	bd, err := parseBDLoRA(cfg.UseBDLoRA)
	if err != nil {
		return nil, err
	}
	o := adapterOptions{r: r, alpha: alpha, cfg: cfg, rng: nn.NewRNG(seedFor(t.Adapter, t.Path)), trainer: true, path: t.Path, bd: bd}
	if l, ok := t.Module.(AdapterLayer); ok {
		if err := l.coreOf().addAdapter(t.Adapter, o); err != nil {
			return nil, fmt.Errorf("lora: module %q: %w", t.Path, err)
		}
		return l, nil
	}
	c, err := newCore(t.Module)
	if err != nil {
		return nil, fmt.Errorf("lora: module %q: %w", t.Path, err)
	}
	switch c.kind {
	case kindLinear:
		cfg.FanInFanOut = false
	case kindConv1D:
		cfg.FanInFanOut = true
	}
	if err := c.addAdapter(t.Adapter, o); err != nil {
		return nil, fmt.Errorf("lora: module %q: %w", t.Path, err)
	}
	c.active = []string{t.Adapter}
	c.rng = nn.NewRNG(seedFor("dropout", t.Path))
	if c.kind == kindEmbedding {
		return &Embedding{core: *c}, nil
	}
	return &Layer{core: *c}, nil
}

// seedFor derives a layer's initialisation seed from the adapter name and
// module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}

// BiasMode returns the bias option ("none", "all" or "lora_only") for the
// peft package, which marks and saves biases accordingly.
func (c *Config) BiasMode() string {
	if c.Bias == "" {
		return BiasNone
	}
	return c.Bias
}

// UnmarshalJSON decodes the config and remembers the file order of the
// rank_pattern and alpha_pattern keys, which decides between several
// patterns matching one module (PEFT takes the first).
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	if err := json.Unmarshal(b, (*plain)(c)); err != nil {
		return err
	}
	var raw struct {
		Rank  json.RawMessage `json:"rank_pattern"`
		Alpha json.RawMessage `json:"alpha_pattern"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	c.rankOrder, c.alphaOrder = objectKeys(raw.Rank), objectKeys(raw.Alpha)
	return nil
}

// objectKeys returns the keys of a JSON object in document order (nil for
// anything else).
func objectKeys(raw json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := tok.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

// patternOrder lists the keys of m: those in order first (file order), then
// the rest sorted.
func patternOrder[V any](m map[string]V, order []string) []string {
	keys := make([]string, 0, len(m))
	for _, k := range order {
		if _, ok := m[k]; ok && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range m {
		if !slices.Contains(keys, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

// patternKey returns the first key whose pattern matches path as PEFT's
// get_pattern_key does, or "" if none does.
func patternKey(keys []string, path, field string) (string, error) {
	for _, k := range keys {
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`)
		if err != nil {
			return "", fmt.Errorf("lora: %s key %q is not a valid regular expression: %w", field, k, err)
		}
		if re.MatchString(path) {
			return k, nil
		}
	}
	return "", nil
}

// rankAlpha returns r and lora_alpha for the module at path.
func (c *Config) rankAlpha(path string) (int, float64, error) {
	r, alpha := c.R, c.Alpha
	k, err := patternKey(patternOrder(c.RankPattern, c.rankOrder), path, "rank_pattern")
	if err != nil {
		return 0, 0, err
	}
	if k != "" {
		r = c.RankPattern[k]
	}
	k, err = patternKey(patternOrder(c.AlphaPattern, c.alphaOrder), path, "alpha_pattern")
	if err != nil {
		return 0, 0, err
	}
	if k != "" {
		alpha = c.AlphaPattern[k]
	}
	return r, alpha, nil
}
