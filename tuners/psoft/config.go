package psoft

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of PSOFT adapters.
const PeftType = "PSOFT"

// The ab_svd_init values.
const (
	// InitPsoft: A = V_r^T (orthonormal rows), B = U_r S_r / scaling.
	InitPsoft = "psoft_init"
	// InitPissa: A and B share sqrt(S_r / scaling).
	InitPissa = "pissa_init"
)

// Config is PSOFT's adapter_config.json (PEFT v0.20.0 PsoftConfig). Fields
// the Go struct does not know are kept for round trips.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the size of the rotated subspace (default 32).
	R int `json:"r"`
	// Alpha is psoft_alpha (default 32); scaling = psoft_alpha / r.
	Alpha float64 `json:"psoft_alpha"`
	// Dropout is psoft_dropout, applied to the adapter path's input in
	// training mode (default 0).
	Dropout float64 `json:"psoft_dropout"`
	// FanInFanOut is fan_in_fan_out; PSOFT adapts nn.Linear only, where
	// PEFT forces it to false.
	FanInFanOut bool `json:"fan_in_fan_out"`
	// ABSVDInit is ab_svd_init: "psoft_init" (default) or "pissa_init".
	ABSVDInit string `json:"ab_svd_init"`
	// SVD is psoft_svd: "full" (default) or "lowrank" (not supported).
	SVD string `json:"psoft_svd"`
	// SVDLowrankNiter is psoft_svd_lowrank_niter (default 10), used by
	// "lowrank" only.
	SVDLowrankNiter int `json:"psoft_svd_lowrank_niter"`
	// RandomSeed is random_seed (default 0), used by "lowrank" only.
	RandomSeed int64 `json:"random_seed"`
	// Orth is psoft_orth (default true): R is the Cayley transform of a
	// skew-symmetric matrix; false makes R a free matrix.
	Orth bool `json:"psoft_orth"`
	// MagB is psoft_mag_b (default true): a trained scale on R's rows.
	MagB bool `json:"psoft_mag_b"`
	// MagA is psoft_mag_a (default true): a trained scale on R's columns.
	MagA bool `json:"psoft_mag_a"`
	// UseCayleyNeumann is use_cayley_neumann (default false): approximate
	// the Cayley transform by a truncated Neumann series.
	UseCayleyNeumann bool `json:"use_cayley_neumann"`
	// NumCayleyNeumannTerms is num_cayley_neumann_terms (default 5).
	NumCayleyNeumannTerms int `json:"num_cayley_neumann_terms"`
	// CayleyNeumannEps is cayley_neumann_eps: when set, Q is rescaled so
	// that its Frobenius norm does not exceed it (nil: no rescaling).
	CayleyNeumannEps *float64 `json:"cayley_neumann_eps"`
	// InitWeights is init_weights (default true): R starts as the
	// identity; false draws a random rotation (tests).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{
		BaseConfig: tuners.BaseConfig{PeftType: PeftType},
		R:          32, Alpha: 32, ABSVDInit: InitPsoft, SVD: "full", SVDLowrankNiter: 10,
		Orth: true, MagB: true, MagA: true, NumCayleyNeumannTerms: 5, InitWeights: true,
	}
}

// Scaling returns psoft_alpha / r.
func (c *Config) Scaling() float64 { return c.Alpha / float64(c.R) }

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("psoft: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("psoft: r must be a positive integer, got %d", c.R)
	}
	if !(c.Dropout >= 0 && c.Dropout <= 1) {
		return fmt.Errorf("psoft: psoft_dropout must be in [0, 1], got %v", c.Dropout)
	}
	switch c.ABSVDInit {
	case InitPsoft, InitPissa:
	default:
		return fmt.Errorf("psoft: ab_svd_init must be %q or %q, got %q", InitPissa, InitPsoft, c.ABSVDInit)
	}
	switch c.SVD {
	case "full":
	case "lowrank":
		return fmt.Errorf("psoft: psoft_svd \"lowrank\" (torch.svd_lowrank's random projection) is not supported yet; use \"full\"")
	default:
		return fmt.Errorf("psoft: psoft_svd must be \"full\" or \"lowrank\", got %q", c.SVD)
	}
	if c.UseCayleyNeumann {
		if c.NumCayleyNeumannTerms <= 0 {
			return fmt.Errorf("psoft: num_cayley_neumann_terms must be a positive integer, got %d", c.NumCayleyNeumannTerms)
		}
		if e := c.CayleyNeumannEps; e != nil && !(*e > 0 && *e < 1) {
			return fmt.Errorf("psoft: cayley_neumann_eps must be in (0, 1) when set, got %v", *e)
		}
	}
	t := &c.TargetConfig
	if t.TargetModules.IsPattern() && len(t.LayersToTransform) > 0 {
		return fmt.Errorf("psoft: layers_to_transform cannot be used when target_modules is a regex string")
	}
	if t.TargetModules.IsPattern() && len(t.LayersPattern) > 0 {
		return fmt.Errorf("psoft: layers_pattern cannot be used when target_modules is a regex string")
	}
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("psoft: layers_pattern needs layers_to_transform")
	}
	return nil
}

// MarshalJSON writes psoft_dropout as Python writes a float (0.0) and
// psoft_alpha as an integer when it is one, as PEFT's int field is.
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
	m["psoft_dropout"] = json.RawMessage(pyFloat(c.Dropout))
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
