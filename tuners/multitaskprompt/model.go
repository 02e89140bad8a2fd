package multitaskprompt

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/internal/promptkit"
	"github.com/gopeft/gopeft/tuners/prompttuning"
)

// The keys of the adapter file besides prompt_embeddings.
const (
	colsKey = "prefix_task_cols"
	rowsKey = "prefix_task_rows"
)

// Method is multitask prompt tuning as a tuners.PromptMethod.
type Method struct{}

// Type returns "MULTITASK_PROMPT_TUNING".
func (Method) Type() string { return PeftType }

// NewConfig returns NewConfig().
func (Method) NewConfig() tuners.Config { return NewConfig() }

// NewEncoder makes adapter's encoder for a config whose sizes are filled:
// the shared prompt initialised as prompt_tuning_init says and task
// matrices drawn from N(0, 0.02). In inference mode the source
// initialisations are skipped: the adapter's own file is about to be
// loaded.
func (Method) NewEncoder(_ nn.Module, cfg tuners.Config, adapter string, words *nn.Tensor) (tuners.PromptEncoder, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("multitaskprompt: config is %T, want *multitaskprompt.Config", cfg)
	}
	seed := promptkit.Seed(PeftType, adapter)
	init := c.PromptTuningInit
	pending := init == InitText && len(c.InitTokenIDs) == 0 && !c.InferenceMode
	if init != InitText || pending {
		init = prompttuning.InitRandom
	}
	w, err := prompttuning.InitTable(&c.PromptConfig, init, c.InitTokenIDs, c.InferenceMode, words, seed)
	if err != nil {
		return nil, fmt.Errorf("multitaskprompt: %w", err)
	}
	total, k, r, d := w.Dim(0), c.NumTasks, c.NumRanks, w.Dim(1)
	rng := nn.NewRNG(seed + 1)
	train := !c.InferenceMode
	e := &Encoder{
		Embedding:      &nn.Embedding{Weight: w.SetRequiresGrad(train)},
		PrefixTaskCols: nn.Normal(w.Backend(), rng, 0, 0.02, k, total, r).SetRequiresGrad(train),
		PrefixTaskRows: nn.Normal(w.Backend(), rng, 0, 0.02, k, r, d).SetRequiresGrad(train),
		pendingText:    pending,
	}
	switch c.PromptTuningInit {
	case InitAverageSourceTasks, InitExactSourceTask, InitOnlySourceShared:
		if !c.InferenceMode {
			if err := e.initFromSource(c); err != nil {
				return nil, fmt.Errorf("multitaskprompt: %w", err)
			}
		}
	}
	return e, nil
}

// initFromSource loads a source adapter file as PEFT's source
// initialisations do.
func (e *Encoder) initFromSource(c *Config) error {
	path := *c.PromptTuningInitStateDictPath
	if !strings.HasSuffix(path, ".safetensors") {
		return fmt.Errorf("prompt_tuning_init_state_dict_path %q: only .safetensors files can be read", path)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("prompt_tuning_init_state_dict_path: %w", err)
	}
	defer f.Close()
	read := func(key string) (*nn.Tensor, error) {
		info, ok := f.Info(key)
		if !ok {
			return nil, fmt.Errorf("prompt_tuning_init_state_dict_path %s: no tensor %q", path, key)
		}
		data, err := f.Float32(key)
		if err != nil {
			return nil, fmt.Errorf("prompt_tuning_init_state_dict_path %s: %w", path, err)
		}
		return nn.New(e.Embedding.Weight.Backend(), data, info.Shape...), nil
	}
	p, err := read(promptkit.PromptKey)
	if err != nil {
		return err
	}
	if err := promptkit.Shape(path+": "+promptkit.PromptKey, p, e.Embedding.Weight.Shape()...); err != nil {
		return err
	}
	e.Embedding.Weight.CopyFrom(p)
	if c.PromptTuningInit == InitOnlySourceShared {
		return nil
	}
	if c.NumTasks != 1 {
		return fmt.Errorf("num_tasks must be 1 with prompt_tuning_init %s (the source task matrices become the only task's), got %d", c.PromptTuningInit, c.NumTasks)
	}
	for _, key := range []string{colsKey, rowsKey} {
		src, err := read(key)
		if err != nil {
			return err
		}
		if src.Rank() != 3 {
			return fmt.Errorf("%s: %s has shape %v, want [tasks, ...]", path, key, src.Shape())
		}
		if c.PromptTuningInit == InitAverageSourceTasks {
			src = nn.Mean(src, 0, true)
		} else {
			if c.PromptTuningInitTask >= src.Dim(0) {
				return fmt.Errorf("prompt_tuning_init_task %d: %s holds %d tasks", c.PromptTuningInitTask, path, src.Dim(0))
			}
			src = nn.Slice(src, 0, c.PromptTuningInitTask, c.PromptTuningInitTask+1)
		}
		dst := e.PrefixTaskCols
		if key == rowsKey {
			dst = e.PrefixTaskRows
		}
		if err := promptkit.Shape(path+": "+key, src, dst.Shape()...); err != nil {
			return err
		}
		dst.CopyFrom(src)
	}
	return nil
}

// Encoder is PEFT's MultitaskPromptEmbedding: the child "embedding" and its
// own parameters "prefix_task_cols" [K, T, R] and "prefix_task_rows"
// [K, R, D].
type Encoder struct {
	// Embedding is the shared prompt [T, D].
	Embedding *nn.Embedding
	// PrefixTaskCols and PrefixTaskRows are the task matrices' factors.
	PrefixTaskCols, PrefixTaskRows *nn.Tensor

	// pendingText is set while a TEXT init lacks its token ids: the
	// prompt is unusable until saved weights are loaded.
	pendingText bool
}

// Children returns "embedding".
func (e *Encoder) Children() []nn.Child { return []nn.Child{{Name: "embedding", Module: e.Embedding}} }

// Params returns "prefix_task_cols" and "prefix_task_rows".
func (e *Encoder) Params() []nn.Param {
	return []nn.Param{{Name: colsKey, T: e.PrefixTaskCols}, {Name: rowsKey, T: e.PrefixTaskRows}}
}

// SetChild replaces "embedding" by an *nn.Embedding.
func (e *Encoder) SetChild(name string, m nn.Module) error {
	emb, ok := m.(*nn.Embedding)
	if name != "embedding" || !ok {
		return fmt.Errorf("multitaskprompt: cannot set child %q to %T", name, m)
	}
	e.Embedding = emb
	return nil
}

// Kind returns tuners.PromptPrepend.
func (e *Encoder) Kind() tuners.PromptKind { return tuners.PromptPrepend }

// Encode returns the prompts of indices [batch, T] for the tasks taskIDs
// (one per row, required): [batch, T, D].
func (e *Encoder) Encode(indices []int32, batch int, taskIDs []int32) (*nn.Tensor, error) {
	if e.pendingText {
		return nil, fmt.Errorf("multitaskprompt: prompt_tuning_init TEXT: prompt_tuning_init_text needs a tokenizer, which gopeft does not have: give its token ids in Config.InitTokenIDs (or load saved weights)")
	}
	if taskIDs == nil {
		return nil, fmt.Errorf("multitaskprompt: task_ids cannot be nil: give one task id per batch row")
	}
	if len(taskIDs) != batch {
		return nil, fmt.Errorf("multitaskprompt: %d task ids for a batch of %d", len(taskIDs), batch)
	}
	k := e.PrefixTaskCols.Dim(0)
	for i, t := range taskIDs {
		if t < 0 || int(t) >= k {
			return nil, fmt.Errorf("multitaskprompt: task_ids[%d] = %d is outside [0, %d) (num_tasks)", i, t, k)
		}
	}
	x, err := promptkit.Lookup(e.Embedding.Weight, indices, batch)
	if err != nil {
		return nil, fmt.Errorf("multitaskprompt: %w", err)
	}
	if x.Dim(1) != e.PrefixTaskCols.Dim(1) {
		return nil, fmt.Errorf("multitaskprompt: %d virtual tokens per row, the task matrices have %d", x.Dim(1), e.PrefixTaskCols.Dim(1))
	}
	ids := slices.Clone(taskIDs)
	task := nn.MatMul(nn.Index(e.PrefixTaskCols, 0, ids), nn.Index(e.PrefixTaskRows, 0, ids))
	return nn.Mul(x, task), nil
}

// SavedTensors returns prompt_embeddings (the shared embedding itself),
// prefix_task_cols and prefix_task_rows.
func (e *Encoder) SavedTensors() (map[string]*nn.Tensor, error) {
	return map[string]*nn.Tensor{
		promptkit.PromptKey: e.Embedding.Weight.Detach(),
		colsKey:             e.PrefixTaskCols.Detach(),
		rowsKey:             e.PrefixTaskRows.Detach(),
	}, nil
}

// LoadSaved copies the three tensors of an adapter file in.
func (e *Encoder) LoadSaved(ts map[string]*nn.Tensor) error {
	if err := promptkit.Keys(ts, promptkit.PromptKey, colsKey, rowsKey); err != nil {
		return fmt.Errorf("multitaskprompt: %w", err)
	}
	dst := map[string]*nn.Tensor{promptkit.PromptKey: e.Embedding.Weight, colsKey: e.PrefixTaskCols, rowsKey: e.PrefixTaskRows}
	for _, k := range []string{promptkit.PromptKey, colsKey, rowsKey} {
		if err := promptkit.Shape(k, ts[k], dst[k].Shape()...); err != nil {
			return fmt.Errorf("multitaskprompt: %w", err)
		}
	}
	for k, t := range dst {
		t.CopyFrom(ts[k])
	}
	e.pendingText = false
	return nil
}

// SetTrainable sets whether the encoder's parameters require gradients.
func (e *Encoder) SetTrainable(on bool) { nn.SetRequiresGrad(e, on) }
