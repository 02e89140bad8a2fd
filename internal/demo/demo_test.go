package demo

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/train"
)

func TestTasks(t *testing.T) {
	digits := []int32{FirstDigit, FirstDigit + 9, FirstDigit + 4}
	if got := Copy.Answer(digits); !slices.Equal(got, digits) {
		t.Errorf("copy %v", got)
	}
	if got, want := Shift.Answer(digits), []int32{FirstDigit + 1, FirstDigit, FirstDigit + 5}; !slices.Equal(got, want) {
		t.Errorf("shift %v, want %v", got, want)
	}
	ex := Examples(Shift, 5, 1)
	if !slices.Equal(Examples(Shift, 5, 1)[4].IDs, ex[4].IDs) || slices.Equal(Examples(Shift, 5, 2)[4].IDs, ex[4].IDs) {
		t.Error("examples are not a function of the seed")
	}
	for _, e := range ex {
		if len(e.IDs) != 2*Length+2 || e.IDs[0] != BOS || e.IDs[Length+1] != SEP {
			t.Fatalf("layout %v", e.IDs)
		}
		for j, l := range e.Labels {
			if (j < Length+2) != (l == train.IgnoreIndex) || (l != train.IgnoreIndex && l != e.IDs[j]) {
				t.Fatalf("labels %v for %v: only the answer is labelled", e.Labels, e.IDs)
			}
		}
		if !slices.Equal(e.IDs[Length+2:], Shift.Answer(e.IDs[1:Length+1])) {
			t.Fatalf("answer of %v", e.IDs)
		}
	}
}

// TestEmbeddedBase: the committed base model loads from the binary, has the
// demo architecture, and solves the copy task but not the shift task.
func TestEmbeddedBase(t *testing.T) {
	m, err := LoadBase()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config().VocabSize != Vocab || m.Config().HiddenSize != ModelConfig().HiddenSize {
		t.Errorf("config %+v", m.Config())
	}
	nn.SetTraining(m, false)
	copyAcc, err := Accuracy(m, Examples(Copy, 20, 77))
	if err != nil {
		t.Fatal(err)
	}
	shiftAcc, err := Accuracy(m, Examples(Shift, 20, 77))
	if err != nil {
		t.Fatal(err)
	}
	if copyAcc != 1 || shiftAcc != 0 {
		t.Errorf("copy accuracy %v (want 1), shift accuracy %v (want 0)", copyAcc, shiftAcc)
	}
}

// TestPretrainDeterministic: the generator gives the same weights twice.
func TestPretrainDeterministic(t *testing.T) {
	a, err := Pretrain(3, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Pretrain(3, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	sb := nn.StateDict(b)
	for k, v := range nn.StateDict(a) {
		if !slices.Equal(v.Data(), sb[k].Data()) {
			t.Fatalf("%s differs between two runs", k)
		}
	}
}
