package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/models"
	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
)

// Config holds a training run's hyper-parameters. The zero value of a field
// means its documented default.
type Config struct {
	// LR is the peak learning rate (default 2e-4).
	LR float64
	// WeightDecay is AdamW's decoupled weight decay, applied to every
	// parameter except biases and norm weights (default 0).
	WeightDecay float64
	// Beta1, Beta2 and Eps are AdamW's (defaults 0.9, 0.999, 1e-8).
	Beta1, Beta2, Eps float64
	// LoRAPlusRatio, when positive, gives LoRA+ parameter groups as PEFT's
	// create_loraplus_optimizer builds them: lora_B matrices and 1-D
	// tensors train at LR*LoRAPlusRatio (1-D and bias tensors without
	// weight decay), LoRA embedding factors at LoRAPlusLREmbedding, the
	// rest at LR.
	LoRAPlusRatio float64
	// LoRAPlusLREmbedding is the learning rate of LoRA embedding factors
	// under LoRA+ (PEFT's loraplus_lr_embedding, default 1e-6).
	LoRAPlusLREmbedding float64
	// Schedule shapes the learning rate over the run (default Linear).
	Schedule Schedule
	// WarmupSteps ramps the learning rate up from 0 over the first steps.
	WarmupSteps int
	// Steps is the number of optimizer steps. When 0, Epochs passes over
	// the training data decide it (default 1 epoch).
	Steps int
	// Epochs is the number of passes over the data when Steps is 0.
	Epochs int
	// BatchSize is the number of examples per micro-batch (default 8).
	BatchSize int
	// GradAccum is the number of micro-batches whose gradients add up
	// before each optimizer step (default 1). The loss of each micro-batch
	// is weighted by its share of the window's label tokens, so that the
	// step equals one on the concatenated batch.
	GradAccum int
	// MaxGradNorm clips the joint L2 norm of the gradients before each
	// step (torch's clip_grad_norm_); 0 turns clipping off.
	MaxGradNorm float64
	// Seed fixes the data order and the dropout streams: the same seed,
	// data, model and config give the same adapter bit for bit.
	Seed uint64
	// NoShuffle keeps the data in file order instead of a seeded
	// permutation per epoch.
	NoShuffle bool
	// PadID pads short sequences of a batch (their labels are ignored).
	PadID int32
	// EvalEvery evaluates the loss on the evaluation data every so many
	// steps (0: only when Run ends, if there is evaluation data).
	EvalEvery int
	// EvalBatchSize is the micro-batch size of evaluation (default
	// BatchSize).
	EvalBatchSize int
	// CheckpointEvery saves a checkpoint to
	// CheckpointDir/checkpoint-<step> every so many steps (0: never).
	CheckpointEvery int
	// CheckpointDir is where periodic checkpoints go.
	CheckpointDir string
	// OnStep, when set, is called after every optimizer step.
	OnStep func(StepInfo)
}

// StepInfo reports one optimizer step.
type StepInfo struct {
	// Step counts optimizer steps done, from 1.
	Step int `json:"step"`
	// Total is the number of steps of the run.
	Total int `json:"total"`
	// Loss is the training loss of the step's window of micro-batches.
	Loss float64 `json:"loss"`
	// LR is the learning rate of the first parameter group during the step.
	LR float64 `json:"learning_rate"`
	// GradNorm is the gradient norm before clipping (0 when clipping is
	// off and nothing computed it).
	GradNorm float64 `json:"grad_norm"`
	// EvalLoss is the evaluation loss after the step, NaN when none ran.
	EvalLoss float64 `json:"eval_loss"`
}

// Result sums up a run.
type Result struct {
	// Steps is the number of optimizer steps done in total.
	Steps int
	// Loss is the training loss of the last step.
	Loss float64
	// EvalLoss is the last evaluation loss (NaN when there is no
	// evaluation data).
	EvalLoss float64
	// History has one entry per step of this process's run.
	History []StepInfo
}

// Trainer trains the active adapters of a peft.Model as a causal language
// model. It is not safe for concurrent use, and nothing else may use the
// model while it trains.
type Trainer struct {
	model  *peft.Model
	cfg    Config
	train  []Example
	eval   []Example
	params []nn.Param
	opt    *nn.AdamW
	baseLR []float64
	order  order
	step   int
	total  int
	hist   []StepInfo
	seeds  []seeder
}

// seeder is a module whose random stream the trainer reseeds for every
// micro-batch (adapter layers with dropout).
type seeder interface{ SetSeed(seed uint64) }

// New prepares a run on m's trainable parameters (m.TrainableParameters).
// evalData may be nil. It validates the config and the examples against the
// vocabulary when the base model reports one.
func New(m *peft.Model, cfg Config, trainData, evalData []Example) (*Trainer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(trainData) == 0 {
		return nil, errors.New("train: no training examples")
	}
	vocab := 0
	if pm, ok := m.Base().(peft.PromptModel); ok {
		vocab = pm.Config().VocabSize
	}
	if err := Validate(trainData, vocab); err != nil {
		return nil, fmt.Errorf("train: training data: %w", err)
	}
	if err := Validate(evalData, vocab); err != nil {
		return nil, fmt.Errorf("train: evaluation data: %w", err)
	}
	t := &Trainer{model: m, cfg: cfg, train: trainData, eval: evalData}
	t.params = m.TrainableParameters()
	if len(t.params) == 0 {
		return nil, errors.New("train: the model has no trainable parameters (is the adapter loaded for inference?)")
	}
	groups, lrs := paramGroups(t.params, cfg)
	t.baseLR = lrs
	t.opt = nn.NewAdamW(nn.AdamWConfig{
		LR: float32(cfg.LR), Beta1: float32(cfg.Beta1), Beta2: float32(cfg.Beta2),
		Eps: float32(cfg.Eps), WeightDecay: float32(cfg.WeightDecay),
	}, groups...)
	t.order = order{seed: cfg.Seed, n: len(trainData), shuffle: !cfg.NoShuffle}
	t.total = cfg.Steps
	if t.total == 0 {
		perStep := cfg.BatchSize * cfg.GradAccum
		t.total = cfg.Epochs * ((len(trainData) + perStep - 1) / perStep)
	}
	_ = nn.Walk(m.Base(), func(_ string, mod nn.Module) error {
		if s, ok := mod.(seeder); ok {
			t.seeds = append(t.seeds, s)
		}
		return nil
	})
	return t, nil
}

func (c Config) withDefaults() (Config, error) {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.LR, 2e-4)
	def(&c.Beta1, 0.9)
	def(&c.Beta2, 0.999)
	def(&c.Eps, 1e-8)
	def(&c.LoRAPlusLREmbedding, 1e-6)
	if c.Schedule == "" {
		c.Schedule = Linear
	}
	if _, err := ParseSchedule(string(c.Schedule)); err != nil {
		return c, err
	}
	if c.BatchSize == 0 {
		c.BatchSize = 8
	}
	if c.GradAccum == 0 {
		c.GradAccum = 1
	}
	if c.Epochs == 0 {
		c.Epochs = 1
	}
	if c.EvalBatchSize == 0 {
		c.EvalBatchSize = c.BatchSize
	}
	switch {
	case c.LR < 0 || math.IsNaN(c.LR) || math.IsInf(c.LR, 0):
		return c, fmt.Errorf("train: learning rate %v must be a positive number", c.LR)
	case c.BatchSize < 0, c.GradAccum < 0, c.Steps < 0, c.Epochs < 0, c.WarmupSteps < 0,
		c.EvalEvery < 0, c.CheckpointEvery < 0, c.EvalBatchSize < 0:
		return c, fmt.Errorf("train: batch size, grad accumulation, steps, epochs, warm-up, eval and checkpoint intervals must not be negative")
	case c.MaxGradNorm < 0, c.WeightDecay < 0, c.LoRAPlusRatio < 0:
		return c, fmt.Errorf("train: max grad norm, weight decay and LoRA+ ratio must not be negative")
	case c.CheckpointEvery > 0 && c.CheckpointDir == "":
		return c, fmt.Errorf("train: checkpoint interval %d needs a checkpoint folder", c.CheckpointEvery)
	}
	return c, nil
}

// noDecay matches the parameter names transformers leaves out of weight decay:
// biases and norm weights.
var noDecay = regexp.MustCompile(`bias|layernorm|rmsnorm|(^|\.)norm($|\.)|_norm($|\.)`)

// paramGroups splits the trainable parameters into AdamW groups: with LoRA+
// as PEFT's create_loraplus_optimizer does, otherwise as the transformers
// Trainer does (with and without weight decay). It returns the groups and each
// one's base learning rate.
func paramGroups(params []nn.Param, c Config) ([]nn.ParamGroup, []float64) {
	type group struct {
		lr, wd float64
		ts     []*nn.Tensor
	}
	var gs []*group
	mk := func(lr, wd float64) *group {
		g := &group{lr: lr, wd: wd}
		gs = append(gs, g)
		return g
	}
	if c.LoRAPlusRatio > 0 {
		a := mk(c.LR, c.WeightDecay)
		emb := mk(c.LoRAPlusLREmbedding, c.WeightDecay)
		b := mk(c.LR*c.LoRAPlusRatio, c.WeightDecay)
		bNoDecay := mk(c.LR*c.LoRAPlusRatio, 0)
		for _, p := range params {
			decay := !noDecay.MatchString(strings.ToLower(p.Name))
			switch {
			case strings.Contains(p.Name, "lora_embedding_"):
				emb.ts = append(emb.ts, p.T)
			case strings.Contains(p.Name, "lora_B") || p.T.Rank() == 1:
				if decay {
					b.ts = append(b.ts, p.T)
				} else {
					bNoDecay.ts = append(bNoDecay.ts, p.T)
				}
			default:
				a.ts = append(a.ts, p.T)
			}
		}
	} else {
		d := mk(c.LR, c.WeightDecay)
		nd := mk(c.LR, 0)
		for _, p := range params {
			if noDecay.MatchString(strings.ToLower(p.Name)) {
				nd.ts = append(nd.ts, p.T)
			} else {
				d.ts = append(d.ts, p.T)
			}
		}
	}
	var out []nn.ParamGroup
	var lrs []float64
	for _, g := range gs {
		if len(g.ts) == 0 {
			continue
		}
		out = append(out, nn.ParamGroup{Params: g.ts, LR: float32(g.lr), WeightDecay: float32(g.wd)})
		lrs = append(lrs, g.lr)
	}
	return out, lrs
}

// Optimizer returns the AdamW optimizer (its Groups hold the learning rates of
// the current step).
func (t *Trainer) Optimizer() *nn.AdamW { return t.opt }

// StepCount returns the number of optimizer steps done.
func (t *Trainer) StepCount() int { return t.step }

// TotalSteps returns the number of optimizer steps of the run.
func (t *Trainer) TotalSteps() int { return t.total }

// History returns the steps run by this Trainer value (a resumed run starts a
// new history).
func (t *Trainer) History() []StepInfo { return t.hist }

// Run trains until TotalSteps, evaluating and checkpointing as configured,
// and evaluates at the end when there is evaluation data.
func (t *Trainer) Run() (Result, error) {
	res := Result{EvalLoss: math.NaN()}
	for t.step < t.total {
		info, err := t.Step()
		if err != nil {
			return res, err
		}
		last := t.step == t.total
		if len(t.eval) > 0 && ((t.cfg.EvalEvery > 0 && t.step%t.cfg.EvalEvery == 0) || last) {
			if info.EvalLoss, err = t.Evaluate(); err != nil {
				return res, err
			}
			t.hist[len(t.hist)-1] = info
			res.EvalLoss = info.EvalLoss
		}
		if t.cfg.CheckpointEvery > 0 && (t.step%t.cfg.CheckpointEvery == 0 || last) {
			if err := t.SaveCheckpoint(CheckpointPath(t.cfg.CheckpointDir, t.step)); err != nil {
				return res, err
			}
		}
		if t.cfg.OnStep != nil {
			t.cfg.OnStep(info)
		}
		res.Loss = info.Loss
	}
	res.Steps = t.step
	res.History = t.hist
	return res, nil
}

// seedSalt separates the dropout streams from the seed's other uses.
const seedSalt = 0x64726f70

// Step runs one optimizer step: GradAccum micro-batches forward and backward,
// clipping, the model's step hooks (peft.Model.AfterBackward), the AdamW
// update at the scheduled learning rate, then the after-step hooks
// (peft.Model.AfterStep: AdaLoRA's rank allocation, which PEFT runs after
// the optimizer step and before zero_grad). Each micro-batch's loss includes
// the adapters' loss terms (peft.Model.LossTerms: AdaLoRA's orthogonality
// regulariser, which PEFT's forward adds).
func (t *Trainer) Step() (StepInfo, error) {
	if t.step >= t.total {
		return StepInfo{}, fmt.Errorf("train: all %d steps are done", t.total)
	}
	c := t.cfg
	factor := c.Schedule.Factor(t.step, c.WarmupSteps, t.total)
	for i := range t.opt.Groups {
		t.opt.Groups[i].LR = float32(t.baseLR[i] * factor)
	}
	info := StepInfo{Step: t.step + 1, Total: t.total, LR: t.baseLR[0] * factor, EvalLoss: math.NaN()}

	batches := make([]Batch, c.GradAccum)
	tokens := 0
	for a := range batches {
		g := t.step*c.GradAccum + a
		ex := make([]Example, c.BatchSize)
		for r := range ex {
			ex[r] = t.train[t.order.at(g*c.BatchSize+r)]
		}
		batches[a] = Collate(ex, c.PadID)
		tokens += batches[a].Tokens
	}
	t.model.SetTraining(true)
	t.opt.ZeroGrad()
	var lossSum float64
	for a, b := range batches {
		if b.Tokens == 0 {
			continue
		}
		t.reseed(t.step*c.GradAccum + a)
		loss, err := Loss(t.model, b)
		if err != nil {
			return info, fmt.Errorf("train: step %d: %w", t.step+1, err)
		}
		extra, err := t.model.LossTerms()
		if err != nil {
			return info, fmt.Errorf("train: step %d: %w", t.step+1, err)
		}
		if extra != nil {
			loss = nn.Add(loss, extra)
		}
		w := float32(b.Tokens) / float32(tokens)
		scaled := nn.Scale(loss, w)
		lossSum += float64(scaled.Item())
		scaled.Backward()
	}
	if tokens == 0 {
		return info, fmt.Errorf("train: step %d: every label of the batch is %d", t.step+1, IgnoreIndex)
	}
	info.Loss = lossSum
	if math.IsNaN(lossSum) || math.IsInf(lossSum, 0) {
		return info, fmt.Errorf("train: step %d: the loss is %v", t.step+1, lossSum)
	}
	if c.MaxGradNorm > 0 {
		ts := make([]*nn.Tensor, len(t.params))
		for i, p := range t.params {
			ts[i] = p.T
		}
		info.GradNorm = float64(nn.ClipGradNorm(ts, float32(c.MaxGradNorm)))
	}
	if err := t.model.AfterBackward(t.step); err != nil {
		return info, fmt.Errorf("train: step %d: %w", t.step+1, err)
	}
	t.opt.Step()
	if err := t.model.AfterStep(t.step); err != nil {
		return info, fmt.Errorf("train: step %d: %w", t.step+1, err)
	}
	t.opt.ZeroGrad()
	t.step++
	t.hist = append(t.hist, info)
	return info, nil
}

// reseed gives every adapter layer with a random stream a seed derived from
// the run's seed, the micro-batch and the layer's position, so that dropout
// masks depend on nothing but the step (and a resumed run draws the same).
func (t *Trainer) reseed(micro int) {
	for i, s := range t.seeds {
		x := kernels.Philox4x32(t.cfg.Seed^seedSalt, uint64(micro)<<20|uint64(i))
		s.SetSeed(uint64(x[0])<<32 | uint64(x[1]))
	}
}

// Evaluate returns the causal-LM loss over the evaluation data (weighted by
// label tokens, like one big batch), in evaluation mode and without recording
// gradients. It returns NaN when there is no evaluation data.
func (t *Trainer) Evaluate() (float64, error) {
	return EvalLoss(t.model, t.eval, t.cfg.EvalBatchSize, t.cfg.PadID)
}

// EvalLoss returns the causal-LM loss of m over examples in batches of
// batchSize, weighted by label tokens, in evaluation mode and without
// recording gradients (trainable parameters are frozen for the duration and
// training mode is restored afterwards only if the caller turns it back on).
func EvalLoss(m *peft.Model, examples []Example, batchSize int, pad int32) (float64, error) {
	if len(examples) == 0 {
		return math.NaN(), nil
	}
	if batchSize <= 0 {
		batchSize = 8
	}
	params := m.TrainableParameters()
	for _, p := range params {
		p.T.SetRequiresGrad(false)
	}
	defer func() {
		for _, p := range params {
			p.T.SetRequiresGrad(true)
		}
	}()
	m.SetTraining(false)
	var sum float64
	tokens := 0
	for i := 0; i < len(examples); i += batchSize {
		b := Collate(examples[i:min(i+batchSize, len(examples))], pad)
		if b.Tokens == 0 {
			continue
		}
		loss, err := Loss(m, b)
		if err != nil {
			return 0, fmt.Errorf("train: evaluation: %w", err)
		}
		sum += float64(loss.Item()) * float64(b.Tokens)
		tokens += b.Tokens
	}
	if tokens == 0 {
		return math.NaN(), nil
	}
	return sum / float64(tokens), nil
}

// tokenModel is a base model run on token ids (models/llama's Model).
type tokenModel interface {
	Forward(ids []int32, batch, seq int) (*nn.Tensor, error)
}

// Loss returns the causal-LM loss of m on a batch (HuggingFace's: logits at
// positions 0..n-2 against labels 1..n-1, IgnoreIndex left out). A base model
// with a token forward pass (models/llama) is run directly with the injected
// adapters inside it; a prompt-learning adapter goes through
// peft.Model.PromptLoss (CPT's own loss with the batch's type mask; task ids
// for multitask prompt tuning), and a models.Model base through
// peft.Model.CausalLMLoss.
func Loss(m *peft.Model, b Batch) (*nn.Tensor, error) {
	prompt, multitask := false, false
	for _, a := range m.ActiveAdapters() {
		prompt = prompt || m.PromptEncoder(a) != nil
		if c := m.Config(a); c != nil && c.Base().PeftType == multitaskType {
			multitask = true
		}
	}
	if tm, ok := m.Base().(tokenModel); ok && !prompt {
		logits, err := tm.Forward(b.IDs, b.Rows, b.Seq)
		if err != nil {
			return nil, err
		}
		return llama.CausalLMLoss(logits, b.Labels)
	}
	in := models.Input{IDs: b.IDs, Shape: []int{b.Rows, b.Seq}}
	switch {
	case multitask:
		return m.CausalLMLoss(in, b.Labels, b.TaskIDs)
	case prompt:
		// CPT trains with a loss of its own that reads the type mask;
		// PromptLoss is the causal-LM loss for the other methods.
		mask := b.TypeMask
		if mask == nil { // CPT's default: every token is a label (type 4)
			mask = make([]int32, len(b.IDs))
			for i := range mask {
				mask[i] = 4
			}
		}
		return m.PromptLoss(in, b.Labels, mask)
	}
	return m.CausalLMLoss(in, b.Labels, nil)
}

// multitaskType is the peft_type whose forward pass takes task ids.
const multitaskType = "MULTITASK_PROMPT_TUNING"

// stepJSON is StepInfo's JSON form: a NaN evaluation loss is left out.
type stepJSON struct {
	Step     int      `json:"step"`
	Total    int      `json:"total"`
	Loss     float64  `json:"loss"`
	LR       float64  `json:"learning_rate"`
	GradNorm float64  `json:"grad_norm"`
	EvalLoss *float64 `json:"eval_loss,omitempty"`
}

// MarshalJSON writes the step as an object, without eval_loss when none ran.
func (s StepInfo) MarshalJSON() ([]byte, error) {
	j := stepJSON{Step: s.Step, Total: s.Total, Loss: s.Loss, LR: s.LR, GradNorm: s.GradNorm}
	if !math.IsNaN(s.EvalLoss) {
		v := s.EvalLoss
		j.EvalLoss = &v
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes (a missing eval_loss is NaN).
func (s *StepInfo) UnmarshalJSON(b []byte) error {
	var j stepJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = StepInfo{Step: j.Step, Total: j.Total, Loss: j.Loss, LR: j.LR, GradNorm: j.GradNorm, EvalLoss: math.NaN()}
	if j.EvalLoss != nil {
		s.EvalLoss = *j.EvalLoss
	}
	return nil
}
