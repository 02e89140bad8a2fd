package tuners

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Config is implemented by every method's configuration struct. A method
// config embeds BaseConfig (and, for methods that adapt modules, TargetConfig),
// which provides Base and Targeting through promotion:
//
//	type Config struct {
//		tuners.BaseConfig
//		tuners.TargetConfig
//		R     int     `json:"r"`
//		Alpha float64 `json:"lora_alpha"`
//	}
//
// Method fields must not use the json "omitempty" option: UnmarshalConfig
// learns which keys a struct knows by marshalling it, and a key that is
// omitted would be kept twice (once as a field, once in Extra).
type Config interface {
	// Base returns the fields every PEFT config has.
	Base() *BaseConfig
	// Validate checks the method's own fields and fills derived defaults.
	// It returns an error naming the offending field.
	Validate() error
}

// TargetedConfig is a Config of a method that adapts modules of the base
// model (LoRA and friends); prompt-learning methods do not implement it.
type TargetedConfig interface {
	Config
	// Targeting returns the fields that select the adapted modules.
	Targeting() *TargetConfig
}

// BaseConfig holds the fields of PEFT's PeftConfig that every method shares,
// under PEFT's JSON names. Empty strings are written as JSON null.
type BaseConfig struct {
	// PeftType is PEFT's method name in upper case, e.g. "LORA".
	PeftType string `json:"peft_type"`
	// TaskType is PEFT's task_type ("CAUSAL_LM", ...), empty for none.
	TaskType string `json:"task_type"`
	// BaseModelNameOrPath names the base model the adapter was trained on.
	BaseModelNameOrPath string `json:"base_model_name_or_path"`
	// Revision is the base model revision, empty for none.
	Revision string `json:"revision"`
	// InferenceMode marks an adapter loaded for inference only: its
	// parameters are frozen. Save always writes true, as PEFT does.
	InferenceMode bool `json:"inference_mode"`
	// PeftVersion is the PEFT version that wrote the file.
	PeftVersion string `json:"peft_version"`
	// AutoMapping is PEFT's auto_mapping entry (base model class and
	// library), kept verbatim; nil is written as null.
	AutoMapping json.RawMessage `json:"auto_mapping"`

	// Extra keeps the JSON fields of a loaded file that the Go struct does
	// not know, so that a load/save round trip preserves them.
	Extra map[string]json.RawMessage `json:"-"`

	// absent records the keys the Go struct knows but the loaded file did
	// not have; MarshalConfig leaves them out while they are still null.
	absent map[string]struct{}
}

// NullKeyOmitter is implemented by configs whose Python class lacks some of
// the shared fields (BEFT has no layers_to_transform, for example):
// MarshalConfig leaves those keys out while their value is null, so that
// PEFT does not see unexpected arguments.
type NullKeyOmitter interface {
	OmitNullKeys() []string
}

// Base returns c. Method configs get it by embedding BaseConfig.
func (c *BaseConfig) Base() *BaseConfig { return c }

// nullableBase lists the BaseConfig keys written as null when empty.
var nullableBase = []string{"task_type", "base_model_name_or_path", "revision", "peft_version"}

// TargetConfig holds the fields that choose which modules a method adapts,
// with PEFT's semantics (see Match).
type TargetConfig struct {
	// TargetModules selects the adapted modules: a list of names (exact
	// path or path suffix after a dot), a regular expression that must
	// match the whole path, or "all-linear". Empty means the method's
	// default for the model type (see DefaultTargetModules).
	TargetModules Targets `json:"target_modules"`
	// ExcludeModules removes modules from the selection, with the same
	// list/regex rules.
	ExcludeModules Targets `json:"exclude_modules"`
	// LayersToTransform restricts list-form targets to these layer
	// indexes (an int or a list in JSON).
	LayersToTransform LayerIndexes `json:"layers_to_transform"`
	// LayersPattern names the module list holding the layers ("layers",
	// "h"); empty means the first numbered path component.
	LayersPattern StringOrList `json:"layers_pattern"`
	// ModulesToSave lists modules trained in full and saved alongside the
	// adapter (matched by path suffix). They are never adapted.
	ModulesToSave []string `json:"modules_to_save"`
}

// Targeting returns c. Method configs get it by embedding TargetConfig.
func (c *TargetConfig) Targeting() *TargetConfig { return c }

// UnmarshalConfig decodes an adapter_config.json document into cfg (a
// pointer to a method config already holding the method's defaults). Fields
// absent from data keep their defaults; fields cfg does not know are kept in
// cfg.Base().Extra.
func UnmarshalConfig(data []byte, cfg Config) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("tuners: config is not a JSON object: %w", err)
	}
	if raw == nil {
		return fmt.Errorf("tuners: config is null, not a JSON object")
	}
	known, err := knownKeys(cfg)
	if err != nil {
		return err
	}
	// encoding/json matches field names case-insensitively; PEFT does not.
	// Decode only the exactly named fields, so that "R" is not taken for "r".
	exact := make(map[string]json.RawMessage, len(raw))
	for k, v := range raw {
		if _, ok := known[k]; ok {
			exact[k] = v
		}
	}
	filtered, err := json.Marshal(exact)
	if err != nil {
		return fmt.Errorf("tuners: decoding config: %w", err)
	}
	if err := json.Unmarshal(filtered, cfg); err != nil {
		return fmt.Errorf("tuners: decoding config: %w", err)
	}
	base := cfg.Base()
	base.Extra = nil
	base.absent = nil
	for k := range known {
		if _, ok := raw[k]; !ok {
			if base.absent == nil {
				base.absent = map[string]struct{}{}
			}
			base.absent[k] = struct{}{}
		}
	}
	for k, v := range raw {
		if _, ok := known[k]; ok {
			continue
		}
		if base.Extra == nil {
			base.Extra = map[string]json.RawMessage{}
		}
		base.Extra[k] = v
	}
	return nil
}

// MarshalConfig encodes cfg the way PEFT writes adapter_config.json: one JSON
// object, keys sorted, two-space indentation, unknown fields from Extra
// merged back in, and the empty BaseConfig strings written as null. Keys
// that are null and were absent from the file cfg was loaded from (or that
// cfg's NullKeyOmitter names) are left out.
func MarshalConfig(cfg Config) ([]byte, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("tuners: encoding config: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("tuners: config does not encode to a JSON object: %w", err)
	}
	for k, v := range cfg.Base().Extra {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	for _, k := range nullableBase {
		if v, ok := m[k]; ok && string(v) == `""` {
			m[k] = json.RawMessage("null")
		}
	}
	omit := cfg.Base().absent
	if o, ok := cfg.(NullKeyOmitter); ok {
		omit = map[string]struct{}{}
		for k := range cfg.Base().absent {
			omit[k] = struct{}{}
		}
		for _, k := range o.OmitNullKeys() {
			omit[k] = struct{}{}
		}
	}
	for k := range omit {
		if string(m[k]) == "null" {
			delete(m, k)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			buf.WriteString(",")
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteString(":")
		buf.Write(m[k])
	}
	buf.WriteString("}")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("tuners: indenting config: %w", err)
	}
	return out.Bytes(), nil
}

// PeekType returns the peft_type field of an adapter_config.json document.
func PeekType(data []byte) (string, error) {
	var head struct {
		PeftType *string `json:"peft_type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return "", fmt.Errorf("tuners: config is not a JSON object: %w", err)
	}
	if head.PeftType == nil || *head.PeftType == "" {
		return "", fmt.Errorf("tuners: config has no peft_type")
	}
	return *head.PeftType, nil
}

// knownKeys returns the JSON keys that cfg's Go type encodes.
func knownKeys(cfg Config) (map[string]struct{}, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("tuners: encoding config: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("tuners: config does not encode to a JSON object: %w", err)
	}
	known := make(map[string]struct{}, len(m))
	for k := range m {
		known[k] = struct{}{}
	}
	return known, nil
}
