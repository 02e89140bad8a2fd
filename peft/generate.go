package peft

import (
	"fmt"

	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/tuners"
)

// Generator is a base model that decodes text (models/llama's Model).
type Generator interface {
	Generate(prompt []int32, o llama.GenerateOptions) ([]int32, error)
}

// Generate continues prompt (one sequence) with the base model's Generate
// and returns the new tokens. With a prompt-learning adapter active, its
// prompt comes first, as in PEFT's generate: prefix tuning's keys and
// values become o.Prefix, the virtual tokens of the other methods o.Embeds.
// Injected adapters run inside the base model as usual. The model should
// be in evaluation mode. Multitask prompt tuning needs GenerateTask.
func (m *Model) Generate(prompt []int32, o llama.GenerateOptions) ([]int32, error) {
	return m.generate(prompt, o, nil)
}

// GenerateTask is Generate for task taskID of a multitask prompt tuning or
// Poly adapter (PEFT's task_ids).
func (m *Model) GenerateTask(prompt []int32, o llama.GenerateOptions, taskID int32) ([]int32, error) {
	return m.generate(prompt, o, []int32{taskID})
}

func (m *Model) generate(prompt []int32, o llama.GenerateOptions, tasks []int32) ([]int32, error) {
	g, ok := m.root.(Generator)
	if !ok {
		return nil, fmt.Errorf("peft: generate: the base model %T cannot generate", m.root)
	}
	a := m.activePrompt()
	if a != nil && a.encoder.Kind() == tuners.PromptInside {
		return g.Generate(prompt, o)
	}
	if a == nil {
		if !m.disabled {
			clear, err := m.setTaskIDs(models.Input{Shape: []int{1, len(prompt)}}, tasks)
			if err != nil {
				return nil, err
			}
			defer clear()
		}
		return g.Generate(prompt, o)
	}
	if o.Prefix != nil || o.Embeds != nil {
		return nil, fmt.Errorf("peft: generate: a prompt-learning adapter is active, so Prefix and Embeds come from it")
	}
	pc := a.cfg.(tuners.PromptLearningConfig).Prompting()
	indices := make([]int32, pc.NumVirtualTokens)
	for i := range indices {
		indices[i] = int32(i)
	}
	enc, err := a.encoder.Encode(indices, 1, tasks)
	if err != nil {
		return nil, fmt.Errorf("peft: generate: prompt encoder: %w", err)
	}
	enc = enc.Detach()
	switch a.encoder.Kind() {
	case tuners.PromptPrefix:
		past, err := pastKV(enc, 1, pc)
		if err != nil {
			return nil, fmt.Errorf("peft: generate: %w", err)
		}
		o.Prefix = past
	default:
		o.Embeds = enc
	}
	return g.Generate(prompt, o)
}
