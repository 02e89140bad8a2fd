package lily

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of Lily's parameter names.
const Prefix = "lily_"

// Method is Lily as a tuners.Method: it wraps nn.Linear modules and, as a
// tuners.Preparer, decides which of them share lily_A and lily_B. The zero
// value is ready to use and stateless.
type Method struct{}

var (
	_ tuners.Method   = Method{}
	_ tuners.Preparer = Method{}
)

// Type returns "LILY".
func (Method) Type() string { return PeftType }

// Prefix returns "lily_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// sharing is the Shared state of one adapter: the lily_A and lily_B of each
// grouped target path.
type sharing map[string]struct{ a, b *nn.Tensor }

// groupKey returns the target_modules entry path matched (the pattern
// itself for a regex; the longest entry the path ends with for a list),
// or "" when none (the layer then shares nothing, as in PEFT).
func groupKey(tc *tuners.TargetConfig, path string) string {
	if tc.TargetModules.IsPattern() {
		return tc.TargetModules.Pattern
	}
	best := ""
	for _, s := range tc.TargetModules.Names {
		if strings.HasSuffix(path, s) && len(s) > len(best) {
			best = s
		}
	}
	return best
}

// Prepare groups the targets (see the package doc) and creates the lily_A
// and lily_B every group's layers share. Tensors are saved per layer, so
// nothing is saved at model level.
func (Method) Prepare(_ nn.Module, c tuners.Config, adapter string, targets []tuners.Target) (*tuners.Shared, error) {
	cfg, ok := c.(*Config)
	if !ok {
		return nil, fmt.Errorf("lily: config is a %T, not a *lily.Config", c)
	}
	type group struct {
		n int
		a *nn.Tensor
		b *nn.Tensor
	}
	groups := map[string]*group{}
	share := sharing{}
	for _, t := range targets {
		base := t.Module
		if l, ok := base.(*Layer); ok {
			base = l.base
		}
		lin, ok := base.(*nn.Linear)
		if !ok {
			continue // Wrap reports the unsupported module
		}
		key := groupKey(cfg.Targeting(), t.Path)
		if key == "" {
			continue
		}
		out, in := lin.Weight.Dim(0), lin.Weight.Dim(1)
		gk := fmt.Sprintf("%s\x00%d\x00%d", key, out, in)
		g := groups[gk]
		rng := nn.NewRNG(seedFor(adapter, t.Path))
		be := lin.Weight.Backend()
		if g == nil {
			g = &group{b: newB(be, rng, cfg, out)}
			groups[gk] = g
		}
		if g.n%cfg.StrideA == 0 {
			g.a = newA(be, rng, cfg, in)
		}
		g.n++
		share[t.Path] = struct{ a, b *nn.Tensor }{g.a, g.b}
	}
	return &tuners.Shared{State: share}, nil
}

// Wrap adds adapter t.Adapter to the module at t.Path: to the Lily layer
// already there or to a new one wrapping the nn.Linear, with the lily_A and
// lily_B Prepare assigned to the path (fresh ones without). The
// kaiming-uniform initial values come from Philox streams seeded by the
// adapter name and path: reproducible, but not torch's draws. The new
// adapter's tensors require gradients.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("lily: module %q: config is a %T, not a *lily.Config", t.Path, t.Config)
	}
	var a, b *nn.Tensor
	if t.Shared != nil {
		if s, ok := t.Shared.State.(sharing); ok {
			e := s[t.Path]
			a, b = e.a, e.b
		}
	}
	rng := nn.NewRNG(seedFor(t.Adapter, t.Path) ^ 0x9e3779b97f4a7c15)
	l, ok := t.Module.(*Layer)
	if !ok {
		var err error
		if l, err = newLayer(t.Module, seedFor("dropout", t.Path)); err != nil {
			return nil, fmt.Errorf("lily: module %q: %w", t.Path, err)
		}
	}
	if err := l.addAdapter(t.Adapter, cfg, a, b, rng, true); err != nil {
		return nil, fmt.Errorf("lily: module %q: %w", t.Path, err)
	}
	return l, nil
}

// seedFor derives a seed from the adapter name and module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}
