package frod

import (
	"fmt"
	"hash/fnv"
	"sort"
	"sync"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/internal/torchrand"
	"github.com/gopeft/gopeft/kernels"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of FRoD's parameter names.
const Prefix = "frod_"

// Method is FRoD as a tuners.Method: it wraps nn.Linear and GPT-2
// nn.Conv1D modules, sharing one basis V and one sparse pattern per module
// category (a tuners.Preparer). The zero value is ready to use and
// stateless.
type Method struct{}

var (
	_ tuners.Method       = Method{}
	_ tuners.Preparer     = Method{}
	_ tuners.LoadPreparer = Method{}
)

// PrepareLoad marks what adapter's file provides, so that loading derives
// nothing it would overwrite: the trainable lambda_l and sparse values
// always, and the bases with save_projection. U is derived after loading
// (Layer.Reload).
func (Method) PrepareLoad(root nn.Module, c tuners.Config, adapter string) error {
	cfg, _ := c.(*Config)
	return tuners.WalkTargets(root, func(n tuners.Node) error {
		l, ok := n.Module.(*Layer)
		if !ok {
			return nil
		}
		if a, ok := l.Get(adapter); ok {
			a.ready.Do(func() {})
			if cfg != nil && cfg.SaveProjection {
				a.cat.markLoaded()
			}
		}
		return nil
	})
}

// Type returns "FROD".
func (Method) Type() string { return PeftType }

// Prefix returns "frod_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// category is the state one module category shares within an adapter.
type category struct {
	name string
	// v is frod_V [in, in], the live basis: derived from the layers'
	// weights on first use (ensure), or set by an adapter file saved with
	// save_projection (markLoaded before loading).
	v *nn.Tensor
	// srcs are the category's modules in block order and alpha the ridge
	// term, from which the basis is derived.
	srcs  []nn.Module
	alpha float64
	// derived is the basis as gopeft computes it (deriveOnce), derr its
	// failure.
	derived    []float32
	derr       error
	deriveOnce sync.Once
	liveOnce   sync.Once
	// indices is frod_s_indices [2, nnz] and size frod_s_size [2]; the
	// derived copies are what projection_prng_key gives.
	indices, size         *tuners.IntTensor
	derivedIdx, derivedSz []int64
	key                   int64
	saved                 bool
}

// derivedBasis returns the category's basis as gopeft derives it from the
// current weights of its modules (computed once).
func (c *category) derivedBasis() ([]float32, error) {
	c.deriveOnce.Do(func() {
		in := c.v.Dim(0)
		var mats [][]float64
		var rows []int
		for _, m := range c.srcs {
			w, out, _, _, _ := logicalWeight(m)
			mats = append(mats, w)
			rows = append(rows, out)
		}
		v, err := sharedBasis(mats, rows, in, c.alpha)
		if err != nil {
			c.derr = fmt.Errorf("frod: category %q: %w", c.name, err)
			return
		}
		c.derived = make([]float32, in*in)
		for i := range in {
			for j := range in {
				c.derived[i*in+j] = float32(v.At(i, j))
			}
		}
	})
	return c.derived, c.derr
}

// ensure fills the live basis with the derived one unless an adapter file
// provided it (markLoaded); the error is the derivation's.
func (c *category) ensure() error {
	var err error
	c.liveOnce.Do(func() {
		var d []float32
		if d, err = c.derivedBasis(); err == nil {
			c.v.CopyFromHost(d)
		}
	})
	if err != nil {
		return err
	}
	if c.derived == nil && c.derr != nil {
		return c.derr
	}
	return nil
}

// markLoaded records that an adapter file provides the live basis.
func (c *category) markLoaded() { c.liveOnce.Do(func() {}) }

// Shared is an adapter's method-level state: its categories by name and
// the category of every target.
type Shared struct {
	cats   map[string]*category
	byPath map[string]*category
}

// Buffers returns the method-level state PEFT derives, named as PEFT
// records it: "frod_V.<category>.<adapter>" (compared through V V^T, see
// sharedBasis), "frod_s_indices.<category>.<adapter>" and
// "frod_s_size.<category>.<adapter>".
func (s *Shared) Buffers(adapter string) []tuners.Buffer {
	names := make([]string, 0, len(s.cats))
	for n := range s.cats {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []tuners.Buffer
	for _, n := range names {
		c := s.cats[n]
		in := c.v.Dim(0)
		d, err := c.derivedBasis()
		if err != nil {
			continue
		}
		out = append(out,
			tuners.Buffer{Name: "frod_V." + n + "." + adapter, Shape: []int{in, in}, F32: d, Tol: 1e-4, Model: true, Gram: true},
			tuners.Buffer{Name: "frod_s_indices." + n + "." + adapter, Shape: []int{2, len(c.derivedIdx) / 2}, I64: c.derivedIdx, Model: true},
			tuners.Buffer{Name: "frod_s_size." + n + "." + adapter, Shape: []int{2}, I64: c.derivedSz, Model: true},
		)
	}
	return out
}

// shapeOf returns the logical [out, in] of a module FRoD can adapt and its
// backend.
func shapeOf(m nn.Module) (out, in int, be kernels.Backend, ok bool) {
	switch b := m.(type) {
	case *nn.Linear:
		return b.Weight.Dim(0), b.Weight.Dim(1), b.Weight.Backend(), true
	case *nn.Conv1D:
		return b.Weight.Dim(1), b.Weight.Dim(0), b.Weight.Backend(), true
	case *Layer:
		return b.out, b.in, b.weight.Backend(), true
	}
	return 0, 0, nil, false
}

// logicalWeight returns a module's weight as [out, in] float64 (GPT-2
// Conv1D transposed), its backend, and whether FRoD supports the module.
func logicalWeight(m nn.Module) (w []float64, out, in int, be kernels.Backend, ok bool) {
	var t *nn.Tensor
	conv := false
	switch b := m.(type) {
	case *nn.Linear:
		t = b.Weight
	case *nn.Conv1D:
		t, conv = b.Weight, true
	case *Layer:
		t, conv = b.weight, b.conv1D
	default:
		return nil, 0, 0, nil, false
	}
	d := t.Data()
	r, c := t.Dim(0), t.Dim(1)
	w = make([]float64, len(d))
	if conv {
		for i := range r {
			for j := range c {
				w[j*r+i] = float64(d[i*c+j])
			}
		}
		return w, c, r, t.Backend(), true
	}
	for i, v := range d {
		w[i] = float64(v)
	}
	return w, r, c, t.Backend(), true
}

// Prepare sets up the adapter's shared state as PEFT's
// _init_frod_projections does: targets are grouped by Category and ordered
// by block index (layerIndex); each category gets a basis V (sharedBasis,
// derived from its modules' weights when first needed, and never when an
// adapter file saved with save_projection provides it) and, in sorted
// category order from one torch generator seeded with projection_prng_key,
// a sparse off-diagonal pattern (rotationPattern). With save_projection, V
// ("frod_V.<category>") and the pattern ("frod_s_indices.<category>",
// "frod_s_size.<category>") are saved.
func (Method) Prepare(root nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("frod: config is a %T, not a *frod.Config", c)
	}
	type entry struct {
		m       nn.Module
		out, in int
	}
	byCat := map[string]map[int]entry{}
	var be kernels.Backend
	pathCat := map[string]string{}
	fallback := 0
	for _, t := range targets {
		if l, ok := t.Module.(*Layer); ok {
			for _, name := range l.Adapters() {
				a, _ := l.Get(name)
				if a.cat.key != cfg.ProjectionPRNGKey {
					return nil, fmt.Errorf("frod: projection_prng_key must be the same for all adapters: got %d, adapter %q on %q has %d", cfg.ProjectionPRNGKey, name, t.Path, a.cat.key)
				}
				if a.cat.saved != cfg.SaveProjection {
					return nil, fmt.Errorf("frod: save_projection must be the same for all adapters: got %v, adapter %q on %q has %v", cfg.SaveProjection, name, t.Path, a.cat.saved)
				}
			}
		}
		out, in, b, ok := shapeOf(t.Module)
		if !ok {
			continue
		}
		be = b
		cat := Category(t.Path)
		idx := layerIndex(t.Path, fallback)
		fallback++
		if byCat[cat] == nil {
			byCat[cat] = map[int]entry{}
		}
		byCat[cat][idx] = entry{m: t.Module, out: out, in: in}
		pathCat[t.Path] = cat
	}
	if be == nil {
		return nil, fmt.Errorf("frod: no layer types compatible with FRoD were found (Linear, GPT-2 Conv1D); check target_modules")
	}
	names := make([]string, 0, len(byCat))
	for n := range byCat {
		names = append(names, n)
	}
	sort.Strings(names)
	gen := torchrand.New(cfg.ProjectionPRNGKey)
	s := &Shared{cats: map[string]*category{}, byPath: map[string]*category{}}
	sh := &tuners.Shared{State: s}
	for _, n := range names {
		layers := byCat[n]
		idxs := make([]int, 0, len(layers))
		for i := range layers {
			idxs = append(idxs, i)
		}
		sort.Ints(idxs)
		in := layers[idxs[0]].in
		c := &category{name: n, alpha: cfg.RegularizationAlpha, key: cfg.ProjectionPRNGKey, saved: cfg.SaveProjection}
		for _, i := range idxs {
			e := layers[i]
			if e.in != in {
				return nil, fmt.Errorf("frod: category %q: layers have %d and %d input features; FRoD shares one basis per category", n, in, e.in)
			}
			c.srcs = append(c.srcs, e.m)
		}
		c.v = nn.Zeros(be, in, in)
		pr, pc := rotationPattern(in, cfg.SparseRate, gen.Randperm)
		c.derivedIdx = append(append([]int64{}, pr...), pc...)
		c.derivedSz = []int64{int64(in), int64(in)}
		c.indices = &tuners.IntTensor{Name: "frod_s_indices." + n, Shape: []int{2, len(pr)}, Data: append([]int64{}, c.derivedIdx...)}
		c.size = &tuners.IntTensor{Name: "frod_s_size." + n, Shape: []int{2}, Data: []int64{int64(in), int64(in)}}
		s.cats[n] = c
		if cfg.SaveProjection {
			sh.Params = append(sh.Params, nn.Param{Name: "frod_V." + n, T: c.v})
			sh.Ints = append(sh.Ints, c.indices, c.size)
		}
	}
	for p, n := range pathCat {
		s.byPath[p] = s.cats[n]
	}
	return sh, nil
}

// Wrap adds adapter t.Adapter to the module at t.Path on its category's
// basis. Random perturbations (init_weights false) come from gopeft's
// Philox stream seeded by adapter name and path, not torch's. Like PEFT,
// wrapping a Linear sets fan_in_fan_out to false and a Conv1D to true.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("frod: module %q: config is a %T, not a *frod.Config", t.Path, t.Config)
	}
	var s *Shared
	if t.Shared != nil {
		s, _ = t.Shared.State.(*Shared)
	}
	if s == nil {
		return nil, fmt.Errorf("frod: module %q: adapter %q has no shared projections (Prepare did not run)", t.Path, t.Adapter)
	}
	cat := s.byPath[t.Path]
	if cat == nil {
		return nil, fmt.Errorf("frod: cannot adapt module %q (a %T): FRoD supports Linear and GPT-2 Conv1D layers", t.Path, t.Module)
	}
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("frod: module %q: %w", t.Path, err)
		}
		cfg.FanInFanOut = l.conv1D
	}
	if err := l.addAdapter(t.Adapter, cfg, cat, nn.NewRNG(seedFor(t.Adapter, t.Path))); err != nil {
		return nil, fmt.Errorf("frod: module %q: %w", t.Path, err)
	}
	return l, nil
}

// basis returns a category's live V as a float64 matrix.
func (c *category) basis() *mat.Dense {
	in := c.v.Dim(0)
	d := c.v.Data()
	m := mat.NewDense(in, in, nil)
	for i := range in {
		for j := range in {
			m.Set(i, j, float64(d[i*in+j]))
		}
	}
	return m
}

// seedFor derives a seed from the adapter name and module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}
