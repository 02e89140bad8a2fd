package lora

import (
	"fmt"
	"maps"
	"math"
	"strings"

	"github.com/gopeft/gopeft/nn"
)

// MutatedToLoRA converts an adapter whose initialisation changed the base
// weight (PiSSA, OLoRA) into a plain LoRA adapter for the original base
// weight, as PEFT's save_pretrained(path_initial_model_for_weight_conversion)
// does. trained and initial hold the adapter's saved tensors after training
// and right after initialisation, keyed by saved key. Since
// W = W_res + s B0 A0 and the trained model is W_res + s B A, the update to
// W is s [B, -B0] [A; A0]: the result has twice the rank, with
// lora_A = cat(A, A0) along rows and lora_B = cat(B, -B0) along columns.
// Like PEFT, only lora_A and lora_B keys are kept. The returned config has
// r and rank_pattern doubled, lora_alpha and alpha_pattern doubled (times
// sqrt(2) with rsLoRA, which keeps the same scaling) and
// init_lora_weights true. rsLoRA together with rank or alpha patterns is
// refused, as in PEFT.
func MutatedToLoRA(cfg *Config, trained, initial map[string]*nn.Tensor) (*Config, map[string]*nn.Tensor, error) {
	if cfg.UseRSLoRA && (len(cfg.RankPattern) > 0 || len(cfg.AlphaPattern) > 0) {
		return nil, nil, fmt.Errorf("lora: converting a mutated initialisation is not supported with use_rslora and rank_pattern/alpha_pattern")
	}
	out := map[string]*nn.Tensor{}
	for key, t := range trained {
		isA, isB := strings.Contains(key, "lora_A"), strings.Contains(key, "lora_B")
		if !isA && !isB {
			continue
		}
		t0, ok := initial[key]
		if !ok {
			return nil, nil, fmt.Errorf("lora: converting a mutated initialisation: the initial adapter has no %s", key)
		}
		if t.Rank() != 2 || t0.Rank() != 2 {
			return nil, nil, fmt.Errorf("lora: converting a mutated initialisation: %s has shape %v (initial %v), want matrices", key, t.Shape(), t0.Shape())
		}
		if isA {
			if t.Dim(1) != t0.Dim(1) {
				return nil, nil, fmt.Errorf("lora: converting a mutated initialisation: %s has shape %v, the initial %v", key, t.Shape(), t0.Shape())
			}
			out[key] = nn.Concat(0, t.Detach(), t0.Detach())
		} else {
			if t.Dim(0) != t0.Dim(0) {
				return nil, nil, fmt.Errorf("lora: converting a mutated initialisation: %s has shape %v, the initial %v", key, t.Shape(), t0.Shape())
			}
			out[key] = nn.Concat(1, t.Detach(), nn.Neg(t0.Detach()))
		}
	}
	nc := cfg.clone()
	nc.InitLoRAWeights = InitDefault
	nc.R *= 2
	if nc.UseRSLoRA {
		nc.Alpha *= math.Sqrt2
	} else {
		nc.Alpha *= 2
	}
	nc.RankPattern = maps.Clone(cfg.RankPattern)
	for k, v := range nc.RankPattern {
		nc.RankPattern[k] = 2 * v
	}
	nc.AlphaPattern = maps.Clone(cfg.AlphaPattern)
	for k, v := range nc.AlphaPattern {
		nc.AlphaPattern[k] = 2 * v
	}
	return nc, out, nil
}
