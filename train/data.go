package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/gopeft/gopeft/kernels"
)

// IgnoreIndex is the label the causal-LM loss leaves out (PyTorch's -100).
const IgnoreIndex = -100

// Example is one training sequence: token ids and, optionally, one label per
// id (IgnoreIndex for positions that do not count in the loss, such as a
// prompt). Without labels every id is its own label, as HuggingFace's data
// collator for causal language modelling does.
type Example struct {
	IDs    []int32 `json:"input_ids"`
	Labels []int32 `json:"labels,omitempty"`
	// TaskID is the task of multitask prompt tuning (PEFT's task_ids);
	// other methods ignore it.
	TaskID int32 `json:"task_id,omitempty"`
	// TypeMask is CPT's input_type_mask, one entry per id (optional; other
	// methods ignore it).
	TypeMask []int32 `json:"input_type_mask,omitempty"`
}

// Batch is a padded batch of examples, row-major with shape [Rows, Seq].
type Batch struct {
	IDs, Labels []int32
	Rows, Seq   int
	// TaskIDs holds each row's Example.TaskID.
	TaskIDs []int32
	// TypeMask holds the examples' TypeMask, padded with 0, or nil when no
	// example has one.
	TypeMask []int32
	// Tokens is the number of labels that count in the loss (those not
	// IgnoreIndex, after the causal shift: the first position of a row
	// predicts nothing).
	Tokens int
}

// Collate pads examples on the right to the longest one with pad (labels
// IgnoreIndex there) and counts the labels that enter the loss.
func Collate(examples []Example, pad int32) Batch {
	seq := 0
	for _, e := range examples {
		seq = max(seq, len(e.IDs))
	}
	b := Batch{Rows: len(examples), Seq: seq}
	b.IDs = make([]int32, b.Rows*seq)
	b.Labels = make([]int32, b.Rows*seq)
	b.TaskIDs = make([]int32, b.Rows)
	for _, e := range examples {
		if e.TypeMask != nil {
			b.TypeMask = make([]int32, b.Rows*seq)
			break
		}
	}
	for r, e := range examples {
		b.TaskIDs[r] = e.TaskID
		if b.TypeMask != nil {
			copy(b.TypeMask[r*seq:], e.TypeMask)
		}
		for i := range seq {
			id, label := pad, int32(IgnoreIndex)
			if i < len(e.IDs) {
				id = e.IDs[i]
				label = id
				if e.Labels != nil {
					label = e.Labels[i]
				}
			}
			b.IDs[r*seq+i], b.Labels[r*seq+i] = id, label
			if i > 0 && label != IgnoreIndex {
				b.Tokens++
			}
		}
	}
	return b
}

// Validate checks that every example has ids, labels of the same length (when
// given) and ids in [0, vocab) (vocab <= 0 skips that check). The error names
// the example by its index.
func Validate(examples []Example, vocab int) error {
	for i, e := range examples {
		if err := e.check(vocab); err != nil {
			return fmt.Errorf("example %d: %w", i, err)
		}
	}
	return nil
}

func (e Example) check(vocab int) error {
	if len(e.IDs) < 2 {
		return fmt.Errorf("input_ids has %d tokens, need at least 2", len(e.IDs))
	}
	if e.TaskID < 0 {
		return fmt.Errorf("task_id %d is negative", e.TaskID)
	}
	if e.Labels != nil && len(e.Labels) != len(e.IDs) {
		return fmt.Errorf("labels has %d entries for %d input_ids", len(e.Labels), len(e.IDs))
	}
	if e.TypeMask != nil && len(e.TypeMask) != len(e.IDs) {
		return fmt.Errorf("input_type_mask has %d entries for %d input_ids", len(e.TypeMask), len(e.IDs))
	}
	for j, id := range e.IDs {
		if id < 0 || (vocab > 0 && int(id) >= vocab) {
			return fmt.Errorf("input_ids[%d] = %d is outside the vocabulary [0, %d)", j, id, vocab)
		}
	}
	for j, l := range e.Labels {
		if l != IgnoreIndex && (l < 0 || (vocab > 0 && int(l) >= vocab)) {
			return fmt.Errorf("labels[%d] = %d is outside the vocabulary [0, %d) and not %d", j, l, vocab, IgnoreIndex)
		}
	}
	return nil
}

// ReadJSONL reads one Example per line of a JSON Lines file
// ({"input_ids": [...], "labels": [...]}, labels optional; blank lines are
// skipped). Errors name the file and the line. vocab, when positive, bounds
// the ids.
func ReadJSONL(path string, vocab int) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	ex, err := DecodeJSONL(f, vocab)
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	if len(ex) == 0 {
		return nil, fmt.Errorf("train: %s: no examples", path)
	}
	return ex, nil
}

// DecodeJSONL is ReadJSONL on a reader; errors name the line.
func DecodeJSONL(r io.Reader, vocab int) ([]Example, error) {
	var out []Example
	br := bufio.NewReaderSize(r, 1<<16)
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if t := bytes.TrimSpace(text); len(t) > 0 {
			var e Example
			dec := json.NewDecoder(bytes.NewReader(t))
			dec.DisallowUnknownFields()
			if derr := dec.Decode(&e); derr != nil {
				return nil, fmt.Errorf("line %d: %w", line, derr)
			}
			if dec.More() {
				return nil, fmt.Errorf("line %d: more than one JSON value", line)
			}
			if cerr := e.check(vocab); cerr != nil {
				return nil, fmt.Errorf("line %d: %w", line, cerr)
			}
			out = append(out, e)
		}
		if err == io.EOF {
			return out, nil
		}
	}
}

// order is the seeded stream of example indices the trainer draws batches
// from: epoch after epoch, each a Fisher-Yates permutation driven by the
// Philox stream of the seed (or the identity when shuffling is off). Position
// g of the stream is a pure function of (seed, n, g), so a resumed run sees
// the same examples as an uninterrupted one.
type order struct {
	seed    uint64
	n       int
	shuffle bool
	epoch   int
	perm    []int
}

// orderSalt separates the data-order stream from the seed's other uses.
const orderSalt = 0x6f72646572

func (o *order) at(g int) int {
	e, i := g/o.n, g%o.n
	if o.perm == nil || e != o.epoch {
		o.epoch = e
		o.perm = make([]int, o.n)
		for k := range o.perm {
			o.perm[k] = k
		}
		if o.shuffle {
			base := uint64(e) * uint64(o.n)
			for k := o.n - 1; k > 0; k-- {
				x := kernels.Philox4x32(o.seed^orderSalt, base+uint64(k))
				j := int((uint64(x[0])<<32 | uint64(x[1])) % uint64(k+1))
				o.perm[k], o.perm[j] = o.perm[j], o.perm[k]
			}
		}
	}
	return o.perm[i]
}
