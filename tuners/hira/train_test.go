package hira_test

import (
	"testing"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/hira"
	"github.com/gopeft/gopeft/tuners/internal/peftcheck"
)

// TestTraining runs 30 AdamW steps through peft's trainable parameters
// on a regression loss: the loss goes down and the base weights stay put.
func TestTraining(t *testing.T) {
	cfg := hira.NewConfig()
	cfg.R = 2
	cfg.InitWeights = hira.InitRandom
	cfg.TargetModules = tuners.Names("0", "2")
	peftcheck.Train(t, cfg)
}
