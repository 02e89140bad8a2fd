package adamss

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of AdaMSS adapters in adapter_config.json.
const PeftType = "ADAMSS"

// Init is init_weights: "orthogonal" (the default: B blocks start at zero,
// A blocks from the subspaces' singular vectors) or none (JSON null or
// false: B blocks drawn from N(0, 0.01^2)).
type Init string

// The initialisations.
const (
	InitOrthogonal Init = "orthogonal"
	InitNone       Init = "none"
)

// MarshalJSON writes "orthogonal" or null.
func (w Init) MarshalJSON() ([]byte, error) {
	if w == InitNone {
		return []byte("null"), nil
	}
	return json.Marshal(string(w))
}

// UnmarshalJSON accepts "orthogonal", null or false (none).
func (w *Init) UnmarshalJSON(b []byte) error {
	switch s := string(bytes.TrimSpace(b)); s {
	case "null", "false":
		*w = InitNone
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("init_weights: want \"orthogonal\" or null, got %s", b)
	}
	*w = Init(s)
	return nil
}

// Config is AdaMSS's adapter_config.json (PEFT v0.20.0 AdamssConfig).
// Fields the Go struct does not know are kept for round trips
// (tuners.BaseConfig).
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// R is r, the number of singular vectors of the (bias-augmented) base
	// weight the subspaces live in (default 100; at most min(out, in+1) are
	// used).
	R int `json:"r"`
	// NumSubspaces is num_subspaces, the number of K-means clusters of the
	// output rows (default 5; at most out).
	NumSubspaces int `json:"num_subspaces"`
	// SubspaceRank is subspace_rank, the rank of each subspace's update
	// (default 1).
	SubspaceRank int `json:"subspace_rank"`
	// InitWeights is init_weights (default "orthogonal").
	InitWeights Init `json:"init_weights"`
	// UseASA is use_asa, Adaptive Subspace Allocation during training; not
	// supported by gopeft yet (Validate refuses true).
	UseASA bool `json:"use_asa"`
	// ASATargetSubspaces is asa_target_subspaces (default 50; ASA only).
	ASATargetSubspaces int `json:"asa_target_subspaces"`
	// InitWarmup is init_warmup (default 50; ASA only).
	InitWarmup int `json:"init_warmup"`
	// FinalWarmup is final_warmup (default 1000; ASA only).
	FinalWarmup int `json:"final_warmup"`
	// MaskInterval is mask_interval (default 100; ASA only).
	MaskInterval int `json:"mask_interval"`
	// ASAImportanceBeta is asa_importance_beta (default 0.85; ASA only).
	ASAImportanceBeta float64 `json:"asa_importance_beta"`
	// ASAUncertaintyBeta is asa_uncertainty_beta (default 0.85; ASA only).
	ASAUncertaintyBeta float64 `json:"asa_uncertainty_beta"`
	// ASAScheduleExponent is asa_schedule_exponent (default 3.0; ASA only).
	ASAScheduleExponent float64 `json:"asa_schedule_exponent"`
	// UseDynamicRank is use_dynamic_rank: each subspace's rank is the
	// number of its Gram matrix's singular values above svd_threshold times
	// the largest (capped by subspace_rank).
	UseDynamicRank bool `json:"use_dynamic_rank"`
	// SVDThreshold is svd_threshold (default 0.1).
	SVDThreshold float64 `json:"svd_threshold"`
	// RandomSeed is random_seed, the torch seed of the randomized SVD that
	// gives newB (default 0); gopeft draws torch's values from it.
	RandomSeed int64 `json:"random_seed"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{
		BaseConfig: tuners.BaseConfig{PeftType: PeftType},
		R:          100, NumSubspaces: 5, SubspaceRank: 1, InitWeights: InitOrthogonal,
		ASATargetSubspaces: 50, InitWarmup: 50, FinalWarmup: 1000, MaskInterval: 100,
		ASAImportanceBeta: 0.85, ASAUncertaintyBeta: 0.85, ASAScheduleExponent: 3, SVDThreshold: 0.1,
	}
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("adamss: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("adamss: r must be a positive integer, got %d", c.R)
	}
	if c.NumSubspaces <= 0 {
		return fmt.Errorf("adamss: num_subspaces must be a positive integer, got %d", c.NumSubspaces)
	}
	if c.SubspaceRank <= 0 {
		return fmt.Errorf("adamss: subspace_rank must be a positive integer, got %d", c.SubspaceRank)
	}
	switch c.InitWeights {
	case "", InitOrthogonal, InitNone:
	default:
		return fmt.Errorf("adamss: init_weights must be \"orthogonal\" or null, got %q", c.InitWeights)
	}
	if c.UseASA {
		if c.MaskInterval <= 0 {
			return fmt.Errorf("adamss: mask_interval must be a positive integer when use_asa is true, got %d", c.MaskInterval)
		}
		if c.InitWarmup >= c.FinalWarmup {
			return fmt.Errorf("adamss: init_warmup (%d) must be smaller than final_warmup (%d) when use_asa is true", c.InitWarmup, c.FinalWarmup)
		}
		if c.ASATargetSubspaces <= 0 {
			return fmt.Errorf("adamss: asa_target_subspaces must be a positive integer when use_asa is true, got %d", c.ASATargetSubspaces)
		}
		if c.ASAScheduleExponent <= 0 {
			return fmt.Errorf("adamss: asa_schedule_exponent must be positive when use_asa is true, got %v", c.ASAScheduleExponent)
		}
		return fmt.Errorf("adamss: use_asa (Adaptive Subspace Allocation, PEFT's training callback that prunes subspaces) is not supported by gopeft yet")
	}
	t := &c.TargetConfig
	if len(t.LayersPattern) > 0 && len(t.LayersToTransform) == 0 {
		return fmt.Errorf("adamss: layers_pattern needs layers_to_transform")
	}
	return nil
}

// MarshalJSON writes the float fields as Python writes floats (3.0).
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
	m["asa_importance_beta"] = json.RawMessage(pyFloat(c.ASAImportanceBeta))
	m["asa_uncertainty_beta"] = json.RawMessage(pyFloat(c.ASAUncertaintyBeta))
	m["asa_schedule_exponent"] = json.RawMessage(pyFloat(c.ASAScheduleExponent))
	m["svd_threshold"] = json.RawMessage(pyFloat(c.SVDThreshold))
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
