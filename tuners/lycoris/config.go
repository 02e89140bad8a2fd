package lycoris

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// Fields are the adapter_config.json fields LoHa and LoKr share (PEFT's
// LycorisConfig and the options both define alike), under PEFT's JSON
// names. Method configs embed it.
type Fields struct {
	// R is the rank r (default 8).
	R int `json:"r"`
	// Alpha is alpha (default 8); the update is scaled by Alpha/R.
	Alpha float64 `json:"alpha"`
	// RankDropout is the probability of dropping an output row of the
	// update in training mode (default 0).
	RankDropout float64 `json:"rank_dropout"`
	// ModuleDropout is the probability of skipping the adapter for one
	// training-mode call (default 0).
	ModuleDropout float64 `json:"module_dropout"`
	// UseEffectiveConv2d factors convolution kernels with a Tucker core
	// ("Proposition 3" of FedPara); PEFT ignores it for kernels of size 1.
	UseEffectiveConv2d bool `json:"use_effective_conv2d"`
	// RankPattern maps module-name patterns to ranks that replace R.
	RankPattern tuners.PatternMap[int] `json:"rank_pattern"`
	// AlphaPattern maps module-name patterns to alphas that replace Alpha.
	AlphaPattern tuners.PatternMap[float64] `json:"alpha_pattern"`
}

// SetDefaults fills PEFT's defaults: r 8, alpha 8, no dropout.
func (f *Fields) SetDefaults() {
	*f = Fields{R: 8, Alpha: 8}
}

// Check validates the fields; errors start with method and name the field.
func (f *Fields) Check(method string) error {
	if f.R <= 0 {
		return fmt.Errorf("%s: r must be a positive integer, got %d", method, f.R)
	}
	if math.IsNaN(f.Alpha) || math.IsInf(f.Alpha, 0) {
		return fmt.Errorf("%s: alpha must be finite, got %v", method, f.Alpha)
	}
	if !(f.RankDropout >= 0 && f.RankDropout <= 1) {
		return fmt.Errorf("%s: rank_dropout must be in [0, 1], got %v", method, f.RankDropout)
	}
	if !(f.ModuleDropout >= 0 && f.ModuleDropout <= 1) {
		return fmt.Errorf("%s: module_dropout must be in [0, 1], got %v", method, f.ModuleDropout)
	}
	for _, k := range f.RankPattern.Keys() {
		if r, _ := f.RankPattern.Get(k); r <= 0 {
			return fmt.Errorf("%s: rank_pattern[%q] must be a positive integer, got %d", method, k, r)
		}
		if err := checkPattern(method, "rank_pattern", k); err != nil {
			return err
		}
	}
	for _, k := range f.AlphaPattern.Keys() {
		if a, _ := f.AlphaPattern.Get(k); math.IsNaN(a) || math.IsInf(a, 0) {
			return fmt.Errorf("%s: alpha_pattern[%q] must be finite, got %v", method, k, a)
		}
		if err := checkPattern(method, "alpha_pattern", k); err != nil {
			return err
		}
	}
	return nil
}

// checkPattern reports a pattern key that is not a valid regular expression.
func checkPattern(method, field, k string) error {
	if _, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`); err != nil {
		return fmt.Errorf("%s: %s key %q is not a valid regular expression: %w", method, field, k, err)
	}
	return nil
}

// RankAlpha returns r and alpha for the module at path: from the first
// rank_pattern / alpha_pattern key (in file order) matching it as PEFT's
// get_pattern_key does, else R and Alpha.
func (f *Fields) RankAlpha(path string) (int, float64) {
	r, alpha := f.R, f.Alpha
	if v, _, ok := f.RankPattern.Lookup(path); ok {
		r = v
	}
	if v, _, ok := f.AlphaPattern.Lookup(path); ok {
		alpha = v
	}
	return r, alpha
}

// CheckLayers applies PEFT's __post_init__ rule shared by LoHa and LoKr:
// layers_pattern needs layers_to_transform.
func CheckLayers(method string, t *tuners.TargetConfig) error {
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("%s: layers_pattern is set but layers_to_transform is not", method)
	}
	return nil
}

// PyFloats rewrites the named float fields of an encoded JSON object the
// way Python writes floats (0.0, not 0), so that saved configs match PEFT's
// byte for byte.
func PyFloats(b []byte, fields map[string]float64) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range fields {
		if _, ok := m[k]; ok {
			m[k] = json.RawMessage(pyFloat(v))
		}
	}
	return json.Marshal(m)
}

// pyFloat formats v as Python's repr does for floats of ordinary size.
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}
