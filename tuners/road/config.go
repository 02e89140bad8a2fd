package road

import (
	"fmt"

	"github.com/gopeft/gopeft/tuners"
)

// PeftType is the peft_type string of RoAd adapters.
const PeftType = "ROAD"

// The variants of RoAd (the variant field).
const (
	// Variant1 shares one angle and scale per rotated pair.
	Variant1 = "road_1"
	// Variant2 has one angle and scale per output feature.
	Variant2 = "road_2"
	// Variant4 has separate angles and scales for the cosine and the sine
	// terms of every output feature.
	Variant4 = "road_4"
)

// Config is RoAd's adapter_config.json (PEFT v0.20.0 RoadConfig). Fields
// the Go struct does not know are kept for round trips. RoadConfig has no
// exclude_modules, layers_to_transform or layers_pattern: they must stay
// empty and are not written.
type Config struct {
	tuners.BaseConfig
	tuners.TargetConfig

	// Variant is variant: "road_1" (default), "road_2" or "road_4".
	Variant string `json:"variant"`
	// GroupSize is group_size (default 64): outputs are rotated in groups
	// of this many, element i paired with element i + group_size/2. The
	// layer's out features must be a multiple of it.
	GroupSize int `json:"group_size"`
	// InitWeights starts the adapter as the identity (theta 0, alpha 1;
	// true, the default) or draws theta ~ N(0, 0.5^2) and alpha ~
	// N(1, 0.5^2) (false, for tests).
	InitWeights bool `json:"init_weights"`
}

// NewConfig returns a Config with PEFT's defaults.
func NewConfig() *Config {
	return &Config{BaseConfig: tuners.BaseConfig{PeftType: PeftType}, Variant: Variant1, GroupSize: 64, InitWeights: true}
}

// OmitNullKeys lists the shared target fields RoadConfig lacks.
func (c *Config) OmitNullKeys() []string {
	return []string{"exclude_modules", "layers_to_transform", "layers_pattern"}
}

// size returns the number of angles (and scales) of a layer with out
// features.
func size(variant string, out int) int {
	switch variant {
	case Variant1:
		return out / 2
	case Variant4:
		return 2 * out
	}
	return out
}

// Validate checks the fields; errors name the adapter_config.json field.
func (c *Config) Validate() error {
	if c.PeftType != "" && c.PeftType != PeftType {
		return fmt.Errorf("road: peft_type is %q, want %q", c.PeftType, PeftType)
	}
	switch c.Variant {
	case Variant1, Variant2, Variant4:
	default:
		return fmt.Errorf("road: variant must be %q, %q or %q, got %q", Variant1, Variant2, Variant4, c.Variant)
	}
	if c.GroupSize <= 0 || c.GroupSize%2 != 0 {
		return fmt.Errorf("road: group_size must be a positive even integer, got %d", c.GroupSize)
	}
	t := &c.TargetConfig
	if !t.ExcludeModules.IsZero() || len(t.LayersToTransform) > 0 || len(t.LayersPattern) > 0 {
		return fmt.Errorf("road: RoadConfig has no exclude_modules, layers_to_transform or layers_pattern")
	}
	return nil
}
