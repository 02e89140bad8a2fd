package psoft_test

import (
	"testing"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
	"github.com/gopeft/gopeft/tuners/psoft"
)

// TestTraining runs 30 AdamW steps through peft's trainable parameters
// on a regression loss: the loss goes down and the base weights stay put.
func TestTraining(t *testing.T) {
	cfg := psoft.NewConfig()
	cfg.R = 3
	cfg.TargetModules = tuners.Names("0", "2")
	peftcheck.Train(t, cfg)
}
