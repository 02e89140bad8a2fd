package tuners

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// testConfig is a minimal method config as a method package writes one.
type testConfig struct {
	BaseConfig
	TargetConfig
	R     int     `json:"r"`
	Alpha float64 `json:"lora_alpha"`
}

func (c *testConfig) Validate() error { return nil }

// targetOnly and baseOnly are configs without method fields.
type targetOnly struct {
	BaseConfig
	TargetConfig
}

func (c *targetOnly) Validate() error { return nil }

type baseOnly struct{ BaseConfig }

func (c *baseOnly) Validate() error { return nil }

func newTestConfig() *testConfig {
	return &testConfig{BaseConfig: BaseConfig{PeftType: "LORA"}, R: 8, Alpha: 8}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestConfigRoundTrip(t *testing.T) {
	in := []byte(`{
  "peft_type": "LORA", "task_type": null, "base_model_name_or_path": null, "revision": null,
  "inference_mode": true, "peft_version": "0.20.0",
  "auto_mapping": {"base_model_class": "MLP", "parent_library": "m"},
  "r": 4, "lora_alpha": 16,
  "target_modules": ["b", "a"], "exclude_modules": null,
  "layers_to_transform": [1, 3], "layers_pattern": "layers", "modules_to_save": null,
  "unknown_field": {"nested": [1, 2]}, "use_dora": false
}`)
	cfg := newTestConfig()
	if err := UnmarshalConfig(in, cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.R != 4 || cfg.Alpha != 16 || !cfg.InferenceMode || cfg.PeftVersion != "0.20.0" {
		t.Errorf("fields not decoded: %+v", cfg)
	}
	if !reflect.DeepEqual(cfg.TargetModules.Names, []string{"b", "a"}) {
		t.Errorf("target_modules = %v", cfg.TargetModules)
	}
	if !reflect.DeepEqual([]int(cfg.LayersToTransform), []int{1, 3}) || !reflect.DeepEqual([]string(cfg.LayersPattern), []string{"layers"}) {
		t.Errorf("layers = %v %v", cfg.LayersToTransform, cfg.LayersPattern)
	}
	if len(cfg.Extra) != 2 {
		t.Errorf("Extra = %v, want unknown_field and use_dora", cfg.Extra)
	}
	out, err := MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, in, out) {
		t.Errorf("round trip changed the config:\n%s", out)
	}
}

func TestConfigPolymorphicFields(t *testing.T) {
	tests := []struct {
		json      string
		pattern   string
		names     []string
		layers    []int
		layersNil bool
	}{
		{json: `{"target_modules": ".*lin[12]$", "layers_to_transform": 2}`, pattern: ".*lin[12]$", layers: []int{2}},
		{json: `{"target_modules": "all-linear"}`, pattern: "all-linear", layersNil: true},
		{json: `{"target_modules": ["x"], "layers_to_transform": null}`, names: []string{"x"}, layersNil: true},
		{json: `{"target_modules": null}`, layersNil: true},
	}
	for _, tt := range tests {
		cfg := newTestConfig()
		if err := UnmarshalConfig([]byte(tt.json), cfg); err != nil {
			t.Fatalf("%s: %v", tt.json, err)
		}
		if cfg.TargetModules.Pattern != tt.pattern || !reflect.DeepEqual(cfg.TargetModules.Names, tt.names) {
			t.Errorf("%s: target_modules = %#v", tt.json, cfg.TargetModules)
		}
		if tt.layersNil != (cfg.LayersToTransform == nil) || (!tt.layersNil && !reflect.DeepEqual([]int(cfg.LayersToTransform), tt.layers)) {
			t.Errorf("%s: layers_to_transform = %#v", tt.json, cfg.LayersToTransform)
		}
	}
	bad := []string{`[1]`, `{"target_modules": 3}`, `{"layers_to_transform": "x"}`, `{"layers_pattern": 1}`}
	for _, b := range bad {
		if err := UnmarshalConfig([]byte(b), newTestConfig()); err == nil {
			t.Errorf("UnmarshalConfig(%s) succeeded, want an error", b)
		}
	}
}

func TestMarshalConfigNulls(t *testing.T) {
	cfg := newTestConfig()
	out, err := MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"task_type", "revision", "base_model_name_or_path", "auto_mapping", "target_modules", "layers_to_transform", "modules_to_save"} {
		if string(m[k]) != "null" {
			t.Errorf("%s = %s, want null", k, m[k])
		}
	}
}

func TestPeekType(t *testing.T) {
	if typ, err := PeekType([]byte(`{"peft_type": "LOHA", "r": 2}`)); err != nil || typ != "LOHA" {
		t.Errorf("PeekType = %q, %v", typ, err)
	}
	for _, b := range []string{`{}`, `{"peft_type": null}`, `nope`} {
		if _, err := PeekType([]byte(b)); err == nil {
			t.Errorf("PeekType(%s) succeeded", b)
		}
	}
}

// TestGoldenConfigsRoundTrip decodes and re-encodes every adapter config of
// the shared golden suite (when it is beside the repository): the
// re-encoded config must mean the same to PEFT.
func TestGoldenConfigsRoundTrip(t *testing.T) {
	dir := os.Getenv("GOPEFT_GOLDEN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "golden")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "adapter", "adapter_config.json"))
	if len(files) == 0 {
		t.Skipf("no golden configs under %s", dir)
	}
	for _, f := range files {
		in, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var probe map[string]any
		if err := json.Unmarshal(in, &probe); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var cfg Config = &baseOnly{}
		if _, ok := probe["target_modules"]; ok {
			cfg = &targetOnly{}
		}
		if err := UnmarshalConfig(in, cfg); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		out, err := MarshalConfig(cfg)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		var a, b map[string]any
		_ = json.Unmarshal(in, &a)
		_ = json.Unmarshal(out, &b)
		// An int layers_to_transform is written back as a one-element list.
		if v, ok := a["layers_to_transform"].(float64); ok {
			a["layers_to_transform"] = []any{v}
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: round trip changed the config:\n%s", f, out)
		}
	}
}

// FuzzUnmarshalConfig checks that no input makes the config helpers panic
// and that a decoded config re-encodes to a fixed point.
func FuzzUnmarshalConfig(f *testing.F) {
	for _, s := range []string{
		`{"peft_type": "LORA", "target_modules": ["a"], "r": 2}`,
		`{"target_modules": ".*", "layers_to_transform": 3, "layers_pattern": ["h", "layers"]}`,
		`{"exclude_modules": null, "modules_to_save": ["x"], "extra": {"deep": [1, {"a": null}]}}`,
		`{"auto_mapping": {"base_model_class": "M"}, "task_type": "CAUSAL_LM"}`,
		`{}`, `[]`, `null`, `{"target_modules": 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := newTestConfig()
		if err := UnmarshalConfig(data, cfg); err != nil {
			return
		}
		out, err := MarshalConfig(cfg)
		if err != nil {
			t.Fatalf("MarshalConfig after a successful decode: %v", err)
		}
		again := newTestConfig()
		if err := UnmarshalConfig(out, again); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		out2, err := MarshalConfig(again)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, out, out2) {
			t.Fatalf("not a fixed point:\n%s\n%s", out, out2)
		}
	})
}
