package ia3

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of IA3 adapters in adapter_config.json.
const PeftType = "IA3"

// Config is IA3's adapter_config.json (PEFT v0.20.0 IA3Config).
//
// PEFT's IA3Config has no layers_to_transform or layers_pattern: they are
// left out of the file while unset and rejected when set. Fields this
// version does not know are kept (see tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// FeedforwardModules selects, among the targets, the modules whose
	// INPUT is scaled (PEFT's feedforward_modules): a list of names, each
	// matching a path that ends with it (PEFT's plain suffix test, no dot
	// required), or a regular expression that must match the whole path.
	// The other targets have their OUTPUT scaled. Empty (null) means the
	// default for the model type (see tuners.DefaultIA3FeedforwardModules).
	FeedforwardModules tuners.Targets `json:"feedforward_modules"`
	// FanInFanOut marks base layers that store their weight as [in, out]
	// (GPT-2's Conv1D). Like PEFT, wrapping sets it: false for Linear, true
	// for Conv1D.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// InitIA3Weights initialises the vectors to ones, so that a new adapter
	// is a no-op (default true); false draws them from N(0, 1).
	InitIA3Weights bool `json:"init_ia3_weights"`
}

// NewConfig returns a Config with PEFT's defaults (peft_type "IA3",
// init_ia3_weights true, fan_in_fan_out false, feedforward_modules null).
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, InitIA3Weights: true}
}

// OmitNullKeys names the shared keys IA3Config does not have.
func (c *Config) OmitNullKeys() []string { return []string{"layers_to_transform", "layers_pattern"} }

// Validate checks the IA3 fields. Like PEFT it requires a list-form
// feedforward_modules to be a subset of a list-form target_modules. Errors
// name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("ia3: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	c.PeftType = PeftType
	if len(c.LayersToTransform) > 0 {
		return fmt.Errorf("ia3: layers_to_transform is not an IA3 option (PEFT's IA3Config has no such field)")
	}
	if len(c.LayersPattern) > 0 {
		return fmt.Errorf("ia3: layers_pattern is not an IA3 option (PEFT's IA3Config has no such field)")
	}
	if c.FeedforwardModules.IsPattern() {
		if _, err := regexp.Compile(`^(?:` + c.FeedforwardModules.Pattern + `)$`); err != nil {
			return fmt.Errorf("ia3: feedforward_modules %q is not a valid regular expression: %w", c.FeedforwardModules.Pattern, err)
		}
	}
	ff, tm := c.FeedforwardModules, c.TargetModules
	if !ff.IsZero() && !ff.IsPattern() && !tm.IsZero() && !tm.IsPattern() {
		for _, n := range ff.Names {
			if !slices.Contains(tm.Names, n) {
				return fmt.Errorf("ia3: feedforward_modules must be a subset of target_modules: %q is not in %v", n, tm.Names)
			}
		}
	}
	return nil
}

// isFeedforward reports whether the module at path is a feed-forward
// module, with PEFT's rules: full regex match for a pattern, plain suffix
// for a list.
func (c *Config) isFeedforward(path string) (bool, error) {
	ff := c.FeedforwardModules
	if ff.IsPattern() {
		re, err := regexp.Compile(`^(?:` + ff.Pattern + `)$`)
		if err != nil {
			return false, fmt.Errorf("ia3: feedforward_modules %q is not a valid regular expression: %w", ff.Pattern, err)
		}
		return re.MatchString(path), nil
	}
	for _, n := range ff.Names {
		if strings.HasSuffix(path, n) {
			return true, nil
		}
	}
	return false, nil
}
