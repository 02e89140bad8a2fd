package train

import (
	"fmt"
	"math"
)

// Schedule names a learning-rate schedule: the factor that multiplies every
// parameter group's base learning rate at each optimizer step. The formulas
// are those of HuggingFace transformers (get_constant_schedule,
// get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup with half a cycle).
type Schedule string

// The schedules Factor knows.
const (
	Constant           Schedule = "constant"
	ConstantWithWarmup Schedule = "constant_with_warmup"
	Linear             Schedule = "linear"
	Cosine             Schedule = "cosine"
)

// Schedules lists the accepted schedule names.
var Schedules = []Schedule{Constant, ConstantWithWarmup, Linear, Cosine}

// ParseSchedule returns the schedule named s ("" means Linear, the
// HuggingFace Trainer's default).
func ParseSchedule(s string) (Schedule, error) {
	if s == "" {
		return Linear, nil
	}
	for _, k := range Schedules {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("train: unknown schedule %q (want one of %v)", s, Schedules)
}

// Factor returns the learning-rate multiplier of optimizer step step (counted
// from 0) for a run of total steps whose first warmup steps ramp up linearly
// from 0. It is what PyTorch's LambdaLR applies at that step: step 0 of a run
// with warm-up trains at rate 0, as in transformers.
func (s Schedule) Factor(step, warmup, total int) float64 {
	if step < warmup && s != Constant {
		return float64(step) / float64(max(1, warmup))
	}
	switch s {
	case Linear:
		return math.Max(0, float64(total-step)/float64(max(1, total-warmup)))
	case Cosine:
		progress := float64(step-warmup) / float64(max(1, total-warmup))
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*2*0.5*progress)))
	default:
		return 1
	}
}
