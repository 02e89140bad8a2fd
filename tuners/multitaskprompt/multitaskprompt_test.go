package multitaskprompt_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners/internal/prompttest"
	"github.com/gopeft/gopeft/tuners/multitaskprompt"
)

func config(tokens, tasks, ranks int) *multitaskprompt.Config {
	c := multitaskprompt.NewConfig()
	c.NumVirtualTokens, c.NumTasks, c.NumRanks = tokens, tasks, ranks
	return c
}

func newModel(t *testing.T, cfg *multitaskprompt.Config) *peft.Model {
	t.Helper()
	m, err := peft.New(prompttest.Base(t, 4), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEncodeReference checks the prompt of each row against
// embedding * (cols[task] @ rows[task]) computed in float64.
func TestEncodeReference(t *testing.T) {
	m := newModel(t, config(3, 4, 2))
	enc := m.PromptEncoder("default").(*multitaskprompt.Encoder)
	// Larger task matrices than the N(0, 0.02) init.
	enc.PrefixTaskCols.CopyFrom(nn.Scale(enc.PrefixTaskCols, 50))
	enc.PrefixTaskRows.CopyFrom(nn.Scale(enc.PrefixTaskRows, 50))
	tasks := []int32{2, 0, 3}
	indices := []int32{0, 1, 2, 0, 1, 2, 0, 1, 2}
	got, err := enc.Encode(indices, 3, tasks)
	if err != nil {
		t.Fatal(err)
	}
	e, cols, rows := enc.Embedding.Weight.Data(), enc.PrefixTaskCols.Data(), enc.PrefixTaskRows.Data()
	const T, R = 3, 2
	D := enc.Embedding.Weight.Dim(1)
	var want []float32
	for _, task := range tasks {
		for i := range T {
			for j := range D {
				s := 0.0
				for r := range R {
					s += float64(cols[(int(task)*T+i)*R+r]) * float64(rows[(int(task)*R+r)*D+j])
				}
				want = append(want, float32(float64(e[i*D+j])*s))
			}
		}
	}
	if err := prompttest.Close(got.Data(), want, 1e-6); err != nil {
		t.Error(err)
	}
}

func TestTaskIDErrors(t *testing.T) {
	m := newModel(t, config(3, 2, 1))
	enc := m.PromptEncoder("default")
	for _, tasks := range [][]int32{nil, {0}, {0, 2}, {-1, 0}} {
		if _, err := enc.Encode([]int32{0, 1, 2, 0, 1, 2}, 2, tasks); err == nil {
			t.Errorf("task ids %v accepted", tasks)
		}
	}
	if _, err := m.Forward(prompttest.Input()); err == nil || !strings.Contains(err.Error(), "task") {
		t.Errorf("forward without task ids: %v", err)
	}
}

func TestGradCheck(t *testing.T) {
	m := newModel(t, config(3, 3, 2))
	prompttest.GradCheck(t, m.PromptEncoder("default"), 3, []int32{2, 0})
}

func TestGeneration(t *testing.T) {
	m := newModel(t, config(3, 3, 2))
	for task := range int32(3) {
		prompttest.Generation(t, m, task)
	}
}

func TestSaveLoad(t *testing.T) {
	m := newModel(t, config(3, 3, 2))
	prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 4) }, []int32{1, 2})
	// The file holds the shared embedding itself and the task matrices.
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	ts, _, err := safetensors.ReadAll(filepath.Join(dir, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	enc := m.PromptEncoder("default").(*multitaskprompt.Encoder)
	for key, want := range map[string]*nn.Tensor{"prompt_embeddings": enc.Embedding.Weight, "prefix_task_cols": enc.PrefixTaskCols, "prefix_task_rows": enc.PrefixTaskRows} {
		if err := prompttest.Close(ts[key].F32, want.Data(), 0); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	if len(ts) != 3 {
		t.Errorf("adapter file holds %d tensors, want 3", len(ts))
	}
}

func TestTrain(t *testing.T) {
	prompttest.Train(t, newModel(t, config(3, 2, 2)), []int32{1, 0})
}

// TestSourceInit checks the source-adapter initialisations.
func TestSourceInit(t *testing.T) {
	src := newModel(t, config(3, 3, 2))
	dir := t.TempDir()
	if err := src.Save(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, peft.WeightsName)
	s := src.PromptEncoder("default").(*multitaskprompt.Encoder)
	for _, tc := range []struct {
		init       string
		cols, rows *nn.Tensor
	}{
		{multitaskprompt.InitAverageSourceTasks, nn.Mean(s.PrefixTaskCols, 0, true), nn.Mean(s.PrefixTaskRows, 0, true)},
		{multitaskprompt.InitExactSourceTask, nn.Slice(s.PrefixTaskCols, 0, 2, 3), nn.Slice(s.PrefixTaskRows, 0, 2, 3)},
		{multitaskprompt.InitOnlySourceShared, nil, nil},
	} {
		c := config(3, 1, 2)
		c.PromptTuningInit, c.PromptTuningInitStateDictPath, c.PromptTuningInitTask = tc.init, &path, 2
		m := newModel(t, c)
		e := m.PromptEncoder("default").(*multitaskprompt.Encoder)
		if err := prompttest.Close(e.Embedding.Weight.Data(), s.Embedding.Weight.Data(), 0); err != nil {
			t.Errorf("%s: embedding: %v", tc.init, err)
		}
		if tc.cols != nil {
			if err := prompttest.Close(e.PrefixTaskCols.Data(), tc.cols.Data(), 1e-6); err != nil {
				t.Errorf("%s: cols: %v", tc.init, err)
			}
			if err := prompttest.Close(e.PrefixTaskRows.Data(), tc.rows.Data(), 1e-6); err != nil {
				t.Errorf("%s: rows: %v", tc.init, err)
			}
		}
	}
	c := config(3, 2, 2)
	c.PromptTuningInit, c.PromptTuningInitStateDictPath = multitaskprompt.InitExactSourceTask, &path
	if _, err := peft.New(prompttest.Base(t, 4), c); err == nil || !strings.Contains(err.Error(), "num_tasks") {
		t.Errorf("EXACT_SOURCE_TASK with two tasks: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit  func(c *multitaskprompt.Config)
		field string
	}{
		{func(c *multitaskprompt.Config) { c.NumTasks = 0 }, "num_tasks"},
		{func(c *multitaskprompt.Config) { c.NumRanks = 0 }, "num_ranks"},
		{func(c *multitaskprompt.Config) { c.PromptTuningInit = "SAMPLE" }, "prompt_tuning_init"},
		{func(c *multitaskprompt.Config) { c.PromptTuningInit = multitaskprompt.InitExactSourceTask }, "prompt_tuning_init_state_dict_path"},
		{func(c *multitaskprompt.Config) { c.PromptTuningInit = multitaskprompt.InitText }, "prompt_tuning_init_text"},
	} {
		c := config(3, 2, 2)
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%v, want an error naming %s", err, tc.field)
		}
	}
}

func TestMask(t *testing.T) {
	prompttest.Mask(t, newModel(t, config(3, 2, 2)), []int32{1, 0})
}
