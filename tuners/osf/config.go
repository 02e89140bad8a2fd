package osf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of OSF adapters.
const PeftType = "OSF"

// Rank is an effective_rank value: an integer rank, or a float in (0, 1]
// meaning that fraction of the smaller weight dimension (PEFT tells the two
// apart by the JSON number's type: 1 is a rank, 1.0 the whole dimension).
type Rank struct {
	// Value is the number as written.
	Value float64
	// Fraction is set when the JSON number was a float.
	Fraction bool
}

// Int returns an integer rank.
func Int(r int) *Rank { return &Rank{Value: float64(r)} }

// Fraction returns a fractional rank.
func Fraction(f float64) *Rank { return &Rank{Value: f, Fraction: true} }

// MarshalJSON writes an integer or, for fractions, a Python float.
func (r Rank) MarshalJSON() ([]byte, error) {
	if !r.Fraction {
		return []byte(strconv.FormatInt(int64(r.Value), 10)), nil
	}
	s := strconv.FormatFloat(r.Value, 'g', -1, 64)
	if !bytes.ContainsAny([]byte(s), ".eE") {
		s += ".0"
	}
	return []byte(s), nil
}

// UnmarshalJSON reads a JSON number.
func (r *Rank) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("effective rank: want a number, got %s", b)
	}
	*r = Rank{Value: v, Fraction: bytes.ContainsAny([]byte(s), ".eE")}
	return nil
}

// resolve returns the rank for a weight whose smaller dimension is
// minDim, as PEFT does: a fraction in (0, 1] scales minDim (truncated), any
// other number is truncated; the result is clamped to [0, minDim]. nil
// means minDim/2.
func (r *Rank) resolve(minDim int) int {
	if r == nil {
		return minDim / 2
	}
	var k int
	if r.Fraction && r.Value > 0 && r.Value <= 1 {
		k = int(float64(minDim) * r.Value)
	} else {
		k = int(r.Value)
	}
	return max(min(minDim, k), 0)
}

// Config is OSF's adapter_config.json (PEFT v0.20.0 OSFConfig). Fields the
// Go struct does not know are kept for round trips. OSFConfig has no
// exclude_modules, layers_to_transform or layers_pattern.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// EffectiveRank is effective_rank, the number of top singular
	// directions kept frozen (nil: half the smaller dimension).
	EffectiveRank *Rank `json:"effective_rank"`
	// RankPattern is rank_pattern: regular expressions searched in the
	// module path, in file order; the first that matches gives the
	// module's effective rank.
	RankPattern tuners.PatternMap[Rank] `json:"rank_pattern"`
	// InitWeights is init_weights; OSF ignores it (PEFT accepts it).
	InitWeights *bool `json:"init_weights"`
	// TargetSVDConfig is target_svd_config; PEFT ignores it and so does
	// gopeft, keeping the value for round trips.
	TargetSVDConfig json.RawMessage `json:"target_svd_config"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}}
}

// OmitNullKeys lists the shared target fields OSFConfig lacks.
func (c *Config) OmitNullKeys() []string {
	return []string{"exclude_modules", "layers_to_transform", "layers_pattern"}
}

// effectiveRank returns the frozen rank of the module at path whose
// weight's smaller dimension is minDim.
func (c *Config) effectiveRank(path string, minDim int) int {
	for _, k := range c.RankPattern.Keys() {
		if re, err := regexp.Compile(k); err == nil && re.MatchString(path) {
			v, _ := c.RankPattern.Get(k)
			return v.resolve(minDim)
		}
	}
	return c.EffectiveRank.resolve(minDim)
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("osf: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.EffectiveRank != nil && c.EffectiveRank.Value <= 0 {
		return fmt.Errorf("osf: effective_rank must be positive, got %v", c.EffectiveRank.Value)
	}
	for _, k := range c.RankPattern.Keys() {
		if _, err := regexp.Compile(k); err != nil {
			return fmt.Errorf("osf: rank_pattern key %q: %w", k, err)
		}
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() || len(t.LayersToTransform) > 0 || len(t.LayersPattern) > 0 {
		return fmt.Errorf("osf: OSFConfig has no exclude_modules, layers_to_transform or layers_pattern")
	}
	return nil
}

// MarshalJSON writes an empty rank_pattern as null, PEFT's default.
func (c *Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if c.RankPattern.Len() == 0 {
		m["rank_pattern"] = json.RawMessage("null")
	}
	if len(c.TargetSVDConfig) == 0 {
		m["target_svd_config"] = json.RawMessage("null")
	}
	return json.Marshal(m)
}
