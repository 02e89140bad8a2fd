package adalora

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"

	"github.com/gopeft/gopeft/nn"
)

// Allocator is AdaLoRA's rank allocation for one trainable adapter (PEFT's
// RankAllocator driven by AdaLoraModel.update_and_allocate). Training calls
// UpdateAndAllocate once per step, AFTER the optimizer step and BEFORE the
// gradients are zeroed, as PEFT's documentation prescribes:
//
//	loss := nn.Add(taskLoss, alloc.OrthRegLoss())
//	loss.Backward()
//	opt.Step()
//	if err := alloc.UpdateAndAllocate(step); err != nil { ... }
//	opt.ZeroGrad()
//
// (It is therefore not a tuners.StepHook, which runs before the optimizer
// step: a triplet masked there would be revived by the step.) A peft.Model
// runs an Allocator of its own for the adapter created for training from
// Model.AfterStep, and Model.LossTerms returns its OrthRegLoss (see
// Method.Prepare; the train package calls both): use those or an Allocator
// made here, not both.
//
// Each call before total_step - tfinal updates the importance of every
// entry of lora_A, lora_E and lora_B, |p * grad|, smoothed by an
// exponential moving average (beta1) and paired with its uncertainty, an
// EMA (beta2) of |importance - smoothed importance|. Every deltaT steps
// after tinit the total rank budget follows a cubic schedule from the sum of
// the initial ranks down to target_r per layer; the singular triplets
// whose score (the element scores exp_avg_ipt * exp_avg_unc: lora_E's, plus
// the row mean of lora_A's and the column mean of lora_B's) is among the
// init_budget - budget lowest get lora_E = 0, and the config's rank_pattern
// records the kept triplets. At step total_step - tfinal the budget reaches
// its target and the final mask is taken; afterwards every step re-applies
// it. Saving the adapter then writes the pruned tensors (see
// Config.EncodeFile).
//
// An Allocator is not safe for concurrent use.
type Allocator struct {
	cfg     *Config
	adapter string
	layers  []allocLayer // sorted by path, as PEFT's name_set
	// initBudget is the sum of the layers' ranks, targetBudget
	// target_r times the number of layers.
	initBudget, targetBudget int
}

// allocLayer is one adapted layer and the smoothed importance of its
// adapter's lora_A, lora_E and lora_B (nil until the first update).
type allocLayer struct {
	path  string
	layer *Layer
	ipt   [3]*nn.Tensor // exp_avg_ipt of A, E, B
	unc   [3]*nn.Tensor // exp_avg_unc of A, E, B
}

// NewAllocator returns the allocator of adapter on the model root (the
// base model with the adapter injected, e.g. peft.Model.Base()). cfg must
// be the model's own copy of the adapter's config (peft.Model.Config), since
// the allocator writes rank_pattern into it for Save. It checks what PEFT's
// RankAllocator asserts: beta1 and beta2 in (0, 1), deltaT >= 1, and a
// valid schedule (Config.Validate).
func NewAllocator(root nn.Module, cfg *Config, adapter string) (*Allocator, error) {
	if cfg == nil {
		return nil, errors.New("adalora: NewAllocator: nil config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !(cfg.Beta1 > 0 && cfg.Beta1 < 1) {
		return nil, fmt.Errorf("adalora: beta1 must be in (0, 1), got %v", cfg.Beta1)
	}
	if !(cfg.Beta2 > 0 && cfg.Beta2 < 1) {
		return nil, fmt.Errorf("adalora: beta2 must be in (0, 1), got %v", cfg.Beta2)
	}
	if cfg.DeltaT < 1 {
		return nil, fmt.Errorf("adalora: deltaT must be >= 1, got %d", cfg.DeltaT)
	}
	byPath, order := layersOf(root, adapter)
	if len(order) == 0 {
		return nil, fmt.Errorf("adalora: NewAllocator: no AdaLoRA layer holds adapter %q", adapter)
	}
	slices.Sort(order)
	al := &Allocator{cfg: cfg, adapter: adapter}
	for _, p := range order {
		l := byPath[p]
		al.layers = append(al.layers, allocLayer{path: p, layer: l})
		al.initBudget += l.Rank(adapter)
	}
	al.targetBudget = cfg.TargetR * len(order)
	return al, nil
}

// InitBudget returns the total rank the schedule starts from: the sum of
// the layers' ranks when the allocator was made.
func (al *Allocator) InitBudget() int { return al.initBudget }

// TargetBudget returns the final total rank: target_r times the number of
// adapted layers.
func (al *Allocator) TargetBudget() int { return al.targetBudget }

// SetTotalStep changes total_step in the config (PEFT's set_total_step).
func (al *Allocator) SetTotalStep(n int) { al.cfg.TotalStep = n }

// Budget returns the total rank budget at step and whether the step
// masks, following PEFT's budget_schedule: the initial budget (no mask) up
// to tinit; the target budget (mask) after total_step - tfinal; in between
// int((init - target) * c^3 + target) with
// c = 1 - (step - tinit) / (total_step - tfinal - tinit), masking every
// deltaT steps. The arithmetic is float64, with c^3 rounded once, as
// Python's pow does.
func (al *Allocator) Budget(step int) (budget int, mask bool) {
	c := al.cfg
	switch {
	case step <= c.TInit:
		return al.initBudget, false
	case step > c.TotalStep-c.TFinal:
		return al.targetBudget, true
	}
	coeff := 1 - float64(step-c.TInit)/float64(c.TotalStep-c.TFinal-c.TInit)
	b := float64(al.initBudget-al.targetBudget)*cube(coeff) + float64(al.targetBudget)
	return int(b), step%c.DeltaT == 0
}

// cube returns x^3 correctly rounded to float64.
func cube(x float64) float64 {
	b := new(big.Float).SetPrec(256).SetFloat64(x)
	p := new(big.Float).SetPrec(256).Mul(b, b)
	p.Mul(p, b)
	f, _ := p.Float64()
	return f
}

// UpdateAndAllocate runs one step of rank allocation (PEFT's
// update_and_allocate): before total_step - tfinal it updates the
// importance scores and, on masking steps, prunes to the budget and stores
// the mask in the config's rank_pattern; at total_step - tfinal it takes
// the final mask at the target budget and forgets the scores; after it, it
// re-applies the final rank_pattern. It needs the gradients of the last
// backward pass (call it after the optimizer step, before zeroing them).
func (al *Allocator) UpdateAndAllocate(step int) error {
	c := al.cfg
	cut := c.TotalStep - c.TFinal
	switch {
	case step < cut:
		if err := al.updateImportance(); err != nil {
			return err
		}
		if budget, mask := al.Budget(step); mask {
			c.RankPattern = al.maskToBudget(budget)
		}
	case step == cut:
		budget, _ := al.Budget(step)
		if !al.recorded() {
			return fmt.Errorf("adalora: step %d is the final allocation but no importance was recorded before it: call UpdateAndAllocate on every step", step)
		}
		c.RankPattern = al.maskToBudget(budget)
		for i := range al.layers {
			al.layers[i].ipt, al.layers[i].unc = [3]*nn.Tensor{}, [3]*nn.Tensor{}
		}
	default:
		return al.maskWithPattern(c.RankPattern)
	}
	return nil
}

// recorded reports whether importance scores were recorded for every
// layer that has a rank.
func (al *Allocator) recorded() bool {
	for _, st := range al.layers {
		if st.layer.Rank(al.adapter) > 0 && st.ipt[0] == nil {
			return false
		}
	}
	return true
}

// tensors returns the adapter's lora_A, lora_E and lora_B on l.
func (al *Allocator) tensors(l *Layer) ([3]*nn.Tensor, error) {
	a, ok := l.Get(al.adapter)
	if !ok {
		return [3]*nn.Tensor{}, fmt.Errorf("adalora: adapter %q was removed from the layer", al.adapter)
	}
	return [3]*nn.Tensor{a.a, a.e, a.b}, nil
}

var partNames = [3]string{"lora_A", "lora_E", "lora_B"}

// updateImportance folds |p * grad| of every adapter tensor into the
// moving averages (PEFT's update_ipt).
func (al *Allocator) updateImportance() error {
	b1, b2 := float32(al.cfg.Beta1), float32(al.cfg.Beta2)
	for i := range al.layers {
		st := &al.layers[i]
		ps, err := al.tensors(st.layer)
		if err != nil {
			return fmt.Errorf("%q: %w", st.path, err)
		}
		for j, p := range ps {
			if p.Len() == 0 {
				continue
			}
			g := p.Grad()
			if g == nil {
				return fmt.Errorf("adalora: %q: %s.%s has no gradient: call UpdateAndAllocate after Backward and the optimizer step, before zeroing the gradients", st.path, partNames[j], al.adapter)
			}
			ipt := nn.Abs(nn.Mul(p.Detach(), g.Detach()))
			if st.ipt[j] == nil || !slices.Equal(st.ipt[j].Shape(), p.Shape()) {
				st.ipt[j], st.unc[j] = nn.ZerosLike(ipt), nn.ZerosLike(ipt)
			}
			st.ipt[j] = nn.Add(nn.Scale(st.ipt[j], b1), nn.Scale(ipt, float32(1-al.cfg.Beta1)))
			st.unc[j] = nn.Add(nn.Scale(st.unc[j], b2), nn.Scale(nn.Abs(nn.Sub(ipt, st.ipt[j])), float32(1-al.cfg.Beta2)))
		}
	}
	return nil
}

// scores returns the score of each singular triplet of layer st (PEFT's
// _combine_ipt of the element scores), [r].
func (st *allocLayer) scores(r int) *nn.Tensor {
	el := func(j int) *nn.Tensor { return nn.Mul(st.ipt[j], st.unc[j]) }
	a := nn.Mean(el(0), 1, true)                // [r, 1]
	b := nn.Mean(el(2), 0, false).Reshape(r, 1) // [r, 1]
	ab := nn.Sum(nn.Concat(1, a, b), 1, false)  // [r]
	return nn.Add(el(1).Reshape(r), ab)
}

// maskToBudget zeroes lora_E of the triplets whose score is at or below
// the (init_budget - budget)-th smallest and returns the kept triplets per
// layer (PEFT's mask_to_budget). Without recorded scores nothing is masked.
func (al *Allocator) maskToBudget(budget int) map[string][]bool {
	type layerScores struct {
		r      int
		scores []float32
	}
	per := make([]layerScores, len(al.layers))
	var all []float32
	for i := range al.layers {
		st := &al.layers[i]
		r := st.layer.Rank(al.adapter)
		per[i].r = r
		if r == 0 || st.ipt[0] == nil {
			per[i].scores = make([]float32, r)
			if st.ipt[0] == nil {
				for k := range per[i].scores {
					per[i].scores[k] = float32(math.Inf(1))
				}
			}
		} else {
			per[i].scores = st.scores(r).Data()
		}
		all = append(all, per[i].scores...)
	}
	// k-th smallest score (torch.kthvalue); PEFT fails for k = 0, where
	// nothing is to be masked.
	threshold := float32(math.Inf(-1))
	if k := al.initBudget - budget; k > 0 && len(all) > 0 {
		slices.Sort(all)
		threshold = all[min(k, len(all))-1]
	}
	pattern := make(map[string][]bool, len(al.layers))
	for i := range al.layers {
		st := &al.layers[i]
		keep := make([]bool, per[i].r)
		for j, s := range per[i].scores {
			keep[j] = !(s <= threshold)
		}
		al.applyMask(st.layer, keep)
		pattern[st.path+".lora_E"] = keep
	}
	return pattern
}

// applyMask sets lora_E to zero where keep is false.
func (al *Allocator) applyMask(l *Layer, keep []bool) {
	a, ok := l.Get(al.adapter)
	if !ok || a.r == 0 || !slices.Contains(keep, false) {
		return
	}
	cond := make([]float32, len(keep))
	for i, k := range keep {
		if !k {
			cond[i] = 1
		}
	}
	be := a.e.Backend()
	e := a.e.Detach()
	a.e.CopyFrom(nn.Where(nn.New(be, cond, a.r, 1), nn.Zeros(be, a.r, 1), e))
}

// maskWithPattern re-applies a rank_pattern (PEFT's
// mask_using_rank_pattern); keys may carry the adapter name or not.
func (al *Allocator) maskWithPattern(rp map[string][]bool) error {
	if len(rp) == 0 {
		return errors.New("adalora: no rank_pattern to apply: the final allocation (step total_step - tfinal) did not run")
	}
	for _, st := range al.layers {
		key := st.path + ".lora_E"
		mask, ok := rp[key]
		if !ok {
			mask, ok = rp[key+"."+al.adapter]
		}
		if !ok {
			return fmt.Errorf("adalora: rank_pattern has no entry %q", key)
		}
		if r := st.layer.Rank(al.adapter); len(mask) != r {
			return fmt.Errorf("adalora: rank_pattern[%q] has %d entries, the layer has rank %d", key, len(mask), r)
		}
		al.applyMask(st.layer, mask)
	}
	return nil
}

// RankPattern returns a copy of the config's current rank_pattern.
func (al *Allocator) RankPattern() map[string][]bool {
	out := make(map[string][]bool, len(al.cfg.RankPattern))
	for k, v := range al.cfg.RankPattern {
		out[k] = slices.Clone(v)
	}
	return out
}

// OrthRegLoss returns orth_reg_weight times the orthogonality regulariser
// of the allocator's adapter (see OrthRegLoss), the term PEFT's
// AdaLoraModel.forward adds to the training loss.
func (al *Allocator) OrthRegLoss() *nn.Tensor {
	return OrthRegLoss(al.layerList(), al.adapter, al.cfg.OrthRegWeight)
}

func (al *Allocator) layerList() []*Layer {
	out := make([]*Layer, len(al.layers))
	for i, st := range al.layers {
		out[i] = st.layer
	}
	return out
}

// OrthRegLoss returns weight times the mean, over the lora_A and lora_B of
// adapter on the given layers, of ||A A^T - I||_F and ||B^T B - I||_F: the
// regulariser that keeps AdaLoRA's singular vectors orthonormal. It is a
// differentiable 0-d tensor on the layers' backend (zero when no layer holds
// the adapter); add it to the task loss before Backward. Layers of rank 0
// count with a zero term, as in PEFT.
func OrthRegLoss(layers []*Layer, adapter string, weight float64) *nn.Tensor {
	var sum *nn.Tensor
	n := 0
	var be = nn.DefaultBackend()
	for _, l := range layers {
		a, ok := l.Get(adapter)
		if !ok {
			continue
		}
		be = l.weight.Backend()
		n += 2
		if a.r == 0 {
			continue
		}
		eye := identity(l.weight, a.r)
		for _, cov := range []*nn.Tensor{nn.MatMulT(a.a, a.a, false, true), nn.MatMulT(a.b, a.b, true, false)} {
			fro := nn.Sqrt(nn.SumAll(nn.Square(nn.Sub(cov, eye))))
			if sum == nil {
				sum = fro
			} else {
				sum = nn.Add(sum, fro)
			}
		}
	}
	if sum == nil {
		return nn.Scalar(be, 0)
	}
	return nn.Scale(sum, float32(weight/float64(n)))
}

// LayersOf returns the AdaLoRA layers under root holding adapter, in model
// order (for OrthRegLoss without an Allocator).
func LayersOf(root nn.Module, adapter string) []*Layer {
	byPath, order := layersOf(root, adapter)
	out := make([]*Layer, len(order))
	for i, p := range order {
		out[i] = byPath[p]
	}
	return out
}

// identity returns the r x r identity on like's backend.
func identity(like *nn.Tensor, r int) *nn.Tensor {
	d := make([]float32, r*r)
	for i := range r {
		d[i*r+i] = 1
	}
	return nn.New(like.Backend(), d, r, r)
}
