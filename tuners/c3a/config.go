package c3a

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of C3A adapters in adapter_config.json.
const PeftType = "C3A"

// Init is the init_weights option: PEFT accepts true, false or the name of
// a distribution. The empty value means the default, "xavier_uniform".
type Init string

// The initialisations of the kernel.
const (
	// InitZeros (PEFT's True): the kernel starts at zero, so the adapter is
	// a no-op.
	InitZeros Init = "true"
	// InitFalse (PEFT's False): the same as InitXavier.
	InitFalse Init = "false"
	// InitXavier: U(-a, a) with a = sqrt(6 / (in + out)) (the default).
	InitXavier Init = "xavier_uniform"
	// InitKaiming: U(-a, a) with a = sqrt(1 / in).
	InitKaiming Init = "kaiming_uniform"
	// InitGaussian: N(0, 1).
	InitGaussian Init = "gaussian"
)

func (w Init) effective() Init {
	if w == "" {
		return InitXavier
	}
	return w
}

// MarshalJSON writes the bool values as JSON booleans, others as strings.
func (w Init) MarshalJSON() ([]byte, error) {
	switch w {
	case InitZeros:
		return []byte("true"), nil
	case InitFalse:
		return []byte("false"), nil
	}
	return json.Marshal(string(w.effective()))
}

// UnmarshalJSON accepts a JSON boolean or string.
func (w *Init) UnmarshalJSON(b []byte) error {
	switch s := string(bytes.TrimSpace(b)); s {
	case "true":
		*w = InitZeros
		return nil
	case "false":
		*w = InitFalse
		return nil
	case "null":
		*w = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("init_weights: want a bool or a string, got %s", b)
	}
	*w = Init(s)
	return nil
}

// Config is C3A's adapter_config.json (PEFT v0.20.0 C3AConfig). C3AConfig
// has no exclude_modules: it is left out of the written file and Validate
// rejects it. Fields the Go struct does not know are kept for round trips
// (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// BlockSize is block_size, b (default 256): it must divide the in and
	// out features of every adapted layer.
	BlockSize int `json:"block_size"`
	// Bias is "none" (default), "all" or "c3a_only".
	Bias string `json:"bias"`
	// BlockSizePattern maps module-name patterns to block sizes that
	// replace BlockSize (see blockSize for PEFT's matching rule).
	BlockSizePattern tuners.PatternMap[int] `json:"block_size_pattern"`
	// InitWeights is init_weights (default "xavier_uniform").
	InitWeights Init `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, BlockSize: 256, Bias: "none", InitWeights: InitXavier}
}

// OmitNullKeys names exclude_modules, which C3AConfig lacks.
func (c *Config) OmitNullKeys() []string { return []string{"exclude_modules"} }

// BiasMode returns the bias option for the peft package.
func (c *Config) BiasMode() string {
	if c.Bias == "" {
		return "none"
	}
	return c.Bias
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("c3a: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.BlockSize <= 0 {
		return fmt.Errorf("c3a: block_size must be a positive integer, got %d", c.BlockSize)
	}
	for _, k := range c.BlockSizePattern.Keys() {
		if v, _ := c.BlockSizePattern.Get(k); v <= 0 {
			return fmt.Errorf("c3a: block_size_pattern[%q] must be a positive integer, got %d", k, v)
		}
		if _, err := patternRegexp(k); err != nil {
			return err
		}
	}
	switch c.InitWeights.effective() {
	case InitZeros, InitFalse, InitXavier, InitKaiming, InitGaussian:
	default:
		return fmt.Errorf("c3a: init_weights must be true, false, \"gaussian\", \"kaiming_uniform\" or \"xavier_uniform\", got %q", c.InitWeights)
	}
	switch c.Bias {
	case "", "none", "all", "c3a_only":
	default:
		return fmt.Errorf("c3a: bias must be \"none\", \"all\" or \"c3a_only\", got %q", c.Bias)
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() {
		return fmt.Errorf("c3a: exclude_modules is not an option of C3A (PEFT's C3AConfig has no such field)")
	}
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("c3a: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("c3a: layers_pattern cannot be used when target_modules is a regex string")
	}
	return nil
}

// patternRegexp compiles block_size_pattern key k as PEFT's C3A uses it:
// re.match(".*\." + k + "$", path), anchored at the start only.
func patternRegexp(k string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:.*\.` + k + `$)`)
	if err != nil {
		return nil, fmt.Errorf("c3a: block_size_pattern key %q is not a valid regular expression: %w", k, err)
	}
	return re, nil
}

// blockSize returns the block size of the module at path with PEFT's C3A
// rule: the first block_size_pattern key K (in file order) such that the
// path matches ".*\.K$" (so K never matches a top-level module), else the
// entry stored under the path itself, else block_size.
func (c *Config) blockSize(path string) (int, error) {
	for _, k := range c.BlockSizePattern.Keys() {
		re, err := patternRegexp(k)
		if err != nil {
			return 0, err
		}
		if re.MatchString(path) {
			v, _ := c.BlockSizePattern.Get(k)
			return v, nil
		}
	}
	if v, ok := c.BlockSizePattern.Get(path); ok {
		return v, nil
	}
	return c.BlockSize, nil
}
