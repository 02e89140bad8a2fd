package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
)

// Files of a checkpoint folder besides the adapter (which peft.Model.Save
// writes there in PEFT's layout).
const (
	OptimizerFile = "optimizer.safetensors"
	StateFile     = "trainer_state.json"
)

// CheckpointPath returns dir/checkpoint-<step>, the transformers Trainer's
// naming.
func CheckpointPath(dir string, step int) string {
	return filepath.Join(dir, "checkpoint-"+strconv.Itoa(step))
}

// state is trainer_state.json.
type state struct {
	GlobalStep int        `json:"global_step"`
	MaxSteps   int        `json:"max_steps"`
	Seed       uint64     `json:"seed"`
	Examples   int        `json:"train_examples"`
	Params     []string   `json:"trainable_parameters"`
	History    []StepInfo `json:"log_history"`
}

// SaveCheckpoint writes a checkpoint that Resume continues from bit for bit:
// the adapters (peft.Model.Save, PEFT's format, loadable on their own), the
// AdamW moments and step counts (OptimizerFile) and the step, seed and history
// (StateFile). The folder appears complete or not at all (it is written under
// a temporary name and renamed; an existing checkpoint there is replaced).
func (t *Trainer) SaveCheckpoint(dir string) (err error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := t.model.Save(tmp); err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", dir, err)
	}
	tensors := map[string]safetensors.Tensor{}
	for i, st := range t.opt.State() {
		if st.M == nil {
			continue
		}
		k := "state." + strconv.Itoa(i) + "."
		tensors[k+"exp_avg"] = safetensors.Tensor{Shape: st.M.Shape(), F32: st.M.Data()}
		tensors[k+"exp_avg_sq"] = safetensors.Tensor{Shape: st.V.Shape(), F32: st.V.Data()}
		tensors[k+"step"] = safetensors.Tensor{Shape: []int{}, I64: []int64{int64(st.Step)}}
	}
	if err := safetensors.Save(filepath.Join(tmp, OptimizerFile), tensors, nil); err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", dir, err)
	}
	st := state{GlobalStep: t.step, MaxSteps: t.total, Seed: t.cfg.Seed, Examples: len(t.train), History: t.hist}
	for _, p := range t.params {
		st.Params = append(st.Params, p.Name)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, StateFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", dir, err)
	}
	return replaceDir(tmp, dir)
}

// replaceDir renames the folder tmp to dir, replacing a folder already there.
func replaceDir(tmp, dir string) error {
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("train: %s exists and is not a folder", dir)
		}
		old := tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("train: replacing %s: %w", dir, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			_ = os.Rename(old, dir)
			return fmt.Errorf("train: replacing %s: %w", dir, err)
		}
		return os.RemoveAll(old)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// Resume continues from a checkpoint SaveCheckpoint wrote: it loads the
// adapter tensors into the model, the optimizer state and the step. The
// Trainer must have been made with the same model (same adapters and
// config), data and seed; a different trainable-parameter list, seed or data
// size is an error naming the field. Method-internal state that the adapter
// files do not hold (the importance averages of AdaLoRA's rank allocator)
// restarts, so such runs resume close to, not exactly on, the uninterrupted one.
func (t *Trainer) Resume(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return fmt.Errorf("train: resume: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("train: resume: %s: %w", filepath.Join(dir, StateFile), err)
	}
	names := make([]string, len(t.params))
	for i, p := range t.params {
		names[i] = p.Name
	}
	switch {
	case st.Seed != t.cfg.Seed:
		return fmt.Errorf("train: resume: %s: seed %d, this run has %d", StateFile, st.Seed, t.cfg.Seed)
	case st.Examples != len(t.train):
		return fmt.Errorf("train: resume: %s: train_examples %d, this run has %d", StateFile, st.Examples, len(t.train))
	case !slices.Equal(st.Params, names):
		return fmt.Errorf("train: resume: %s: trainable_parameters differ from this model's (another adapter config?)", StateFile)
	case st.GlobalStep < 0 || st.GlobalStep > t.total:
		return fmt.Errorf("train: resume: %s: global_step %d outside this run's %d steps", StateFile, st.GlobalStep, t.total)
	}
	for _, name := range t.model.Adapters() {
		sub := dir
		if name != peft.DefaultAdapterName {
			sub = filepath.Join(dir, name)
		}
		if err := loadAdapterTensors(t.model, name, filepath.Join(sub, peft.WeightsName)); err != nil {
			return fmt.Errorf("train: resume: %w", err)
		}
	}
	if err := t.loadOptimizer(filepath.Join(dir, OptimizerFile)); err != nil {
		return fmt.Errorf("train: resume: %w", err)
	}
	t.step = st.GlobalStep
	return nil
}

// loadAdapterTensors copies an adapter file's tensors into the live tensors of
// adapter name.
func loadAdapterTensors(m *peft.Model, name, path string) error {
	live, err := m.StateDict(name)
	if err != nil {
		return err
	}
	file, _, err := safetensors.ReadAll(path)
	if err != nil {
		return err
	}
	for key, t := range live {
		ft, ok := file[key]
		if !ok {
			return fmt.Errorf("%s: missing tensor %s", path, key)
		}
		if !slices.Equal(ft.Shape, t.Shape()) || ft.F32 == nil {
			return fmt.Errorf("%s: tensor %s has shape %v, the model's is %v", path, key, ft.Shape, t.Shape())
		}
		t.CopyFrom(nn.New(t.Backend(), ft.F32, ft.Shape...))
	}
	return nil
}

func (t *Trainer) loadOptimizer(path string) error {
	file, _, err := safetensors.ReadAll(path)
	if err != nil {
		return err
	}
	cur := t.opt.State()
	st := make([]nn.AdamWState, len(cur))
	i := 0
	for _, g := range t.opt.Groups {
		for _, p := range g.Params {
			k := "state." + strconv.Itoa(i) + "."
			m, okM := file[k+"exp_avg"]
			v, okV := file[k+"exp_avg_sq"]
			s, okS := file[k+"step"]
			switch {
			case !okM && !okV && !okS:
			case !okM || !okV || !okS || len(s.I64) != 1:
				return fmt.Errorf("%s: incomplete state of parameter %d", path, i)
			case !slices.Equal(m.Shape, p.Shape()) || !slices.Equal(v.Shape, p.Shape()):
				return fmt.Errorf("%s: state of parameter %d has shape %v, the parameter %v", path, i, m.Shape, p.Shape())
			default:
				st[i] = nn.AdamWState{Step: int(s.I64[0]), M: nn.New(p.Backend(), m.F32, m.Shape...), V: nn.New(p.Backend(), v.F32, v.Shape...)}
			}
			i++
		}
	}
	if err := t.opt.LoadState(st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// errNoCheckpoint is returned by LatestCheckpoint when there is none.
var errNoCheckpoint = errors.New("no checkpoint-<step> folder")

// LatestCheckpoint returns the checkpoint-<step> folder of dir with the
// highest step.
func LatestCheckpoint(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	best := -1
	for _, e := range entries {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "checkpoint-%d", &n); err == nil && e.IsDir() && n > best &&
			e.Name() == "checkpoint-"+strconv.Itoa(n) {
			best = n
		}
	}
	if best < 0 {
		return "", fmt.Errorf("train: %s: %w", dir, errNoCheckpoint)
	}
	return CheckpointPath(dir, best), nil
}
