package cpt_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/models/llama"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/tuners/cpt"
	"github.com/gopeft/gopeft/tuners/internal/prompttest"
)

// types covers every kind: input template, input, output template, label,
// and a second example (5..8), plus an untyped token.
var types = []int{1, 2, 2, 3, 4, 5, 6, 7, 8, 0}

func config() *cpt.Config {
	c := cpt.NewConfig()
	c.CPTTokenIDs = []int{5, 11, 3, 17, 8, 5, 2, 17, 9, 1}
	c.CPTTokensTypeMask = slices.Clone(types)
	c.OptProjectionEpsilon, c.OptProjectionFormatEpsilon = 2, 0.05
	return c
}

func newModel(t *testing.T, c *cpt.Config) (*peft.Model, *llama.Model) {
	t.Helper()
	base := prompttest.Base(t, 5)
	m, err := peft.New(base, c)
	if err != nil {
		t.Fatal(err)
	}
	return m, base
}

func encoder(m *peft.Model) *cpt.Encoder { return m.PromptEncoder("default").(*cpt.Encoder) }

func TestInitFromWordEmbeddings(t *testing.T) {
	c := config()
	m, base := newModel(t, c)
	if got := m.Config("default").(*cpt.Config).NumVirtualTokens; got != len(c.CPTTokenIDs) {
		t.Errorf("num_virtual_tokens %d, want %d", got, len(c.CPTTokenIDs))
	}
	e := encoder(m)
	words := nn.StateDict(base)["model.embed_tokens.weight"]
	d := words.Dim(1)
	w, all := e.Embedding.Weight.Data(), words.Data()
	for i, id := range c.CPTTokenIDs {
		if err := prompttest.Close(w[i*d:(i+1)*d], all[id*d:(id+1)*d], 0); err != nil {
			t.Errorf("row %d: %v", i, err)
		}
	}
	if e.Embedding.Weight.RequiresGrad() || !e.DeltaEmbedding.Weight.RequiresGrad() {
		t.Error("the embedding must be frozen and the delta trainable")
	}
	// Initially the prompt is the context's embeddings.
	out, err := e.Encode(prompttestArange(len(c.CPTTokenIDs)), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := prompttest.Close(out.Data(), w, 0); err != nil {
		t.Error(err)
	}
}

func prompttestArange(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

// TestProjection checks the radii and the projection: rows longer than
// eps end at length eps, shorter rows are kept.
func TestProjection(t *testing.T) {
	m, _ := newModel(t, config())
	e := encoder(m)
	d := e.DeltaEmbedding.Weight.Dim(1)
	scale := math.Sqrt(float64(d) / 2048)
	eps := e.Epsilon().Data()
	for i, v := range types {
		want := 1e-10
		switch {
		case v > 0 && (v%4 == 1 || v%4 == 3):
			want = 0.05 * scale
		case v > 0 && v%4 == 2:
			want = 2 * scale
		}
		if math.Abs(float64(eps[i])-want) > 1e-7*want {
			t.Errorf("eps[%d] (type %d) = %v, want %v", i, v, eps[i], want)
		}
	}
	// Row i gets length 0.1*(i+1): short input rows are kept, the rest are
	// cut to eps.
	delta := make([]float32, len(types)*d)
	for i := range types {
		delta[i*d] = float32(0.1 * float64(i+1))
	}
	e.DeltaEmbedding.Weight.CopyFromHost(delta)
	e.Project()
	got := e.DeltaEmbedding.Weight.Data()
	for i := range types {
		want := math.Min(0.1*float64(i+1), float64(eps[i]))
		if math.Abs(float64(got[i*d])-want) > 1e-6*(1+want) {
			t.Errorf("row %d: length %v, want %v", i, got[i*d], want)
		}
	}
}

// TestGradientMask checks that label and untyped rows get no gradient and
// the others the full one.
func TestGradientMask(t *testing.T) {
	m, _ := newModel(t, config())
	e := encoder(m)
	out, err := e.Encode(prompttestArange(len(types)), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	nn.SumAll(out).Backward()
	g := e.DeltaEmbedding.Weight.Grad().Data()
	d := e.DeltaEmbedding.Weight.Dim(1)
	for i, v := range types {
		want := float32(1)
		if v%4 == 0 {
			want = 0
		}
		for j := range d {
			if g[i*d+j] != want {
				t.Fatalf("row %d (type %d): gradient %v, want %v", i, v, g[i*d+j], want)
			}
		}
	}
}

// lossRef is CPT's loss in float64 from its definition.
func lossRef(c *cpt.Config, logits []float32, batch, n, vocab int, labels, typeMask []int32) float64 {
	t := len(c.CPTTokenIDs)
	seq := n - t
	shift := slices.Max(c.CPTTokensTypeMask)
	total, count := 0.0, 0
	for b := range batch {
		typ := make([]int, n)
		lab := make([]int, n)
		for i := range n {
			if i < t {
				typ[i], lab[i] = c.CPTTokensTypeMask[i], c.CPTTokenIDs[i]
			} else {
				v := int(typeMask[b*seq+i-t])
				if v > 0 {
					v += shift
				}
				typ[i], lab[i] = v, int(labels[b*seq+i-t])
			}
		}
		// Distinct label types of the shifted positions, largest first.
		var ids []int
		for _, v := range typ[1:] {
			if v > 0 && v%4 == 0 && !slices.Contains(ids, v) {
				ids = append(ids, v)
			}
		}
		slices.Sort(ids)
		slices.Reverse(ids)
		for i := range n - 1 {
			v, l := typ[i+1], lab[i+1]
			if !(v > 0 && v%4 == 0) || l == -100 {
				continue
			}
			row := logits[(b*n+i)*vocab : (b*n+i+1)*vocab]
			mx := math.Inf(-1)
			for _, x := range row {
				mx = math.Max(mx, float64(x))
			}
			z := 0.0
			for _, x := range row {
				z += math.Exp(float64(x) - mx)
			}
			ce := -(float64(row[l]) - mx - math.Log(z))
			w := 1.0
			if c.OptWeightedLossType == cpt.LossDecay {
				w = math.Pow(c.OptLossDecayFactor, float64(slices.Index(ids, v)))
			}
			total += ce * w
			count++
		}
	}
	return total / float64(count)
}

func TestLossReference(t *testing.T) {
	labels := []int32{3, 1, -100, 1, 5, 9, 2, 6, 5, -100}
	typeMask := []int32{1, 2, 3, 4, 4, 1, 0, 3, 4, 4}
	for _, decay := range []bool{false, true} {
		c := config()
		if decay {
			c.OptWeightedLossType, c.OptLossDecayFactor = cpt.LossDecay, 0.7
		}
		m, _ := newModel(t, c)
		logits, err := m.Forward(prompttest.Input())
		if err != nil {
			t.Fatal(err)
		}
		loss, err := m.PromptLoss(prompttest.Input(), labels, typeMask)
		if err != nil {
			t.Fatal(err)
		}
		want := lossRef(m.Config("default").(*cpt.Config), logits.Data(), 2, logits.Dim(1), logits.Dim(2), labels, typeMask)
		if math.Abs(float64(loss.Item())-want) > 1e-5*(1+want) {
			t.Errorf("decay %v: loss %v, want %v", decay, loss.Item(), want)
		}
	}
}

// TestLossGradCheck checks the loss's gradient into the delta (masked
// rows excluded by construction: they get zero and finite differences
// see the unmasked function, so only kept rows are compared).
func TestLossGradCheck(t *testing.T) {
	c := config()
	c.CPTTokensTypeMask = []int{1, 2, 2, 3, 1, 2, 2, 3, 1, 2}
	c.OptWeightedLossType, c.OptLossDecayFactor = cpt.LossDecay, 0.5
	c.OptProjectionEpsilon, c.OptProjectionFormatEpsilon = 100, 100
	m, _ := newModel(t, c)
	e := encoder(m)
	e.DeltaEmbedding.Weight.CopyFrom(nn.Normal(nil, nn.NewRNG(3), 0, 0.1, e.DeltaEmbedding.Weight.Shape()...))
	labels := []int32{3, 1, 4, 1, 5, 9, 2, 6, 5, 3}
	typeMask := []int32{1, 2, 3, 4, 8, 1, 2, 3, 4, 8}
	f := func() *nn.Tensor {
		loss, err := m.PromptLoss(prompttest.Input(), labels, typeMask)
		if err != nil {
			t.Fatal(err)
		}
		return loss
	}
	if err := nn.GradCheck(f, []*nn.Tensor{e.DeltaEmbedding.Weight}, 1e-3, 2e-2); err != nil {
		t.Error(err)
	}
}

func TestLossErrors(t *testing.T) {
	c0 := config()
	c0.CPTTokensTypeMask = []int{1, 2, 2, 3, 1, 2, 2, 3, 1, 2}
	m, _ := newModel(t, c0)
	if _, err := m.PromptLoss(prompttest.Input(), make([]int32, 10), make([]int32, 10)); err == nil || !strings.Contains(err.Error(), "label") {
		t.Errorf("no labelled position: %v", err)
	}
	c := config()
	logits := nn.Zeros(nil, 1, len(c.CPTTokenIDs)+2, 4)
	if _, err := c.Loss(logits, []int32{1}, nil); err == nil {
		t.Error("wrong number of labels accepted")
	}
}

func TestGeneration(t *testing.T) {
	m, _ := newModel(t, config())
	e := encoder(m)
	e.DeltaEmbedding.Weight.CopyFrom(nn.Normal(nil, nn.NewRNG(4), 0, 1, e.DeltaEmbedding.Weight.Shape()...))
	prompttest.Generation(t, m, -1)
}

func TestSaveLoad(t *testing.T) {
	m, _ := newModel(t, config())
	e := encoder(m)
	e.DeltaEmbedding.Weight.CopyFrom(nn.Normal(nil, nn.NewRNG(4), 0, 1, e.DeltaEmbedding.Weight.Shape()...))
	prompttest.SaveLoad(t, m, func() *llama.Model { return prompttest.Base(t, 5) }, nil)
}

func TestTrain(t *testing.T) {
	m, _ := newModel(t, config())
	prompttest.Train(t, m, nil)
}

func TestConfig(t *testing.T) {
	c := cpt.NewConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.CPTTokenIDs, []int{0}) || !slices.Equal(c.CPTMask, []int{1}) || !slices.Equal(c.CPTTokensTypeMask, []int{1}) || c.NumVirtualTokens != 1 {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		edit  func(c *cpt.Config)
		field string
	}{
		{func(c *cpt.Config) { c.CPTMask = []int{1} }, "cpt_mask"},
		{func(c *cpt.Config) { c.OptWeightedLossType = "linear" }, "opt_weighted_loss_type"},
		{func(c *cpt.Config) { c.TaskType = "SEQ_2_SEQ_LM" }, "task_type"},
		{func(c *cpt.Config) { c.OptProjectionEpsilon = 0 }, "opt_projection_epsilon"},
		{func(c *cpt.Config) { c.CPTTokenIDs[0] = -1 }, "cpt_token_ids"},
	} {
		c := config()
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%v, want an error naming %s", err, tc.field)
		}
	}
	c = config()
	c.CPTTokenIDs[0] = 500
	if _, err := peft.New(prompttest.Base(t, 5), c); err == nil || !strings.Contains(err.Error(), "cpt_token_ids") {
		t.Errorf("id outside the vocabulary: %v", err)
	}
}

// TestConcurrentInference runs a frozen CPT adapter from several
// goroutines (the race detector checks that nothing is written).
func TestConcurrentInference(t *testing.T) {
	m, _ := newModel(t, config())
	e := encoder(m)
	e.DeltaEmbedding.Weight.CopyFrom(nn.Normal(nil, nn.NewRNG(4), 0, 1, e.DeltaEmbedding.Weight.Shape()...))
	want, err := m.Forward(prompttest.Input())
	if err != nil {
		t.Fatal(err)
	}
	e.SetTrainable(false)
	done := make(chan error, 4)
	for range 4 {
		go func() {
			out, err := m.Forward(prompttest.Input())
			if err == nil {
				err = prompttest.Close(out.Data(), want.Data(), 0)
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
