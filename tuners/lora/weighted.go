package lora

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Combination types of AddWeighted (PEFT's add_weighted_adapter).
const (
	CombineSVD               = "svd"
	CombineLinear            = "linear"
	CombineCat               = "cat"
	CombineTies              = "ties"
	CombineTiesSVD           = "ties_svd"
	CombineDareTies          = "dare_ties"
	CombineDareLinear        = "dare_linear"
	CombineDareTiesSVD       = "dare_ties_svd"
	CombineDareLinearSVD     = "dare_linear_svd"
	CombineMagnitudePrune    = "magnitude_prune"
	CombineMagnitudePruneSVD = "magnitude_prune_svd"
)

// WeightedOptions are the optional parameters of PEFT's
// add_weighted_adapter.
type WeightedOptions struct {
	// CombinationType is one of the Combine* constants; empty means "svd",
	// PEFT's default. With a single adapter it is always "linear".
	CombinationType string
	// SVDRank is the rank of the result of the svd types; 0 means the
	// largest rank of the combined adapters.
	SVDRank int
	// SVDClamp, when in (0, 1], clamps the SVD factors to the quantile
	// SVDClamp of their values (and its negative); 0 means no clamping.
	SVDClamp float64
	// Density is the fraction of values kept by the ties, dare and
	// magnitude_prune types, in [0, 1].
	Density float64
	// MajoritySignMethod is "total" (default) or "frequency" (ties types).
	MajoritySignMethod string
	// Seed seeds the random masks of the dare types (gopeft's Philox
	// stream, so masks differ from torch's).
	Seed uint64
}

// WeightedConfig returns the config of the adapter PEFT's
// add_weighted_adapter creates from the adapters' configs (in the order of
// the adapters), the combination type it will use and the new rank: a copy
// of the first config with r and lora_alpha set to the new rank, no
// rank/alpha patterns, and target_modules the union of the lists (or the
// alternation of the regular expressions).
func WeightedConfig(configs []*Config, o WeightedOptions) (*Config, string, error) {
	if len(configs) == 0 {
		return nil, "", fmt.Errorf("lora: add_weighted_adapter: no adapters")
	}
	ctype := o.CombinationType
	if ctype == "" {
		ctype = CombineSVD
	}
	if len(configs) == 1 {
		ctype = CombineLinear
	}
	ranks := make([]int, len(configs))
	for i, c := range configs {
		ranks[i] = c.R
		for _, r := range c.RankPattern {
			ranks[i] = max(ranks[i], r)
		}
	}
	var newRank int
	switch ctype {
	case CombineLinear, CombineTies, CombineDareTies, CombineDareLinear, CombineMagnitudePrune:
		for _, r := range ranks {
			if r != ranks[0] {
				return nil, "", fmt.Errorf("lora: add_weighted_adapter: all adapters must have the same r for combination_type %q, got %v", ctype, ranks)
			}
		}
		newRank = ranks[0]
	case CombineCat:
		for _, r := range ranks {
			newRank += r
		}
	case CombineSVD, CombineTiesSVD, CombineDareLinearSVD, CombineDareTiesSVD, CombineMagnitudePruneSVD:
		newRank = o.SVDRank
		if newRank == 0 {
			newRank = slices.Max(ranks)
		}
	default:
		return nil, "", fmt.Errorf("lora: add_weighted_adapter: invalid combination_type %q", ctype)
	}
	pattern := configs[0].TargetModules.IsPattern()
	var exprs []string
	union := map[string]bool{}
	for _, c := range configs {
		if c.TargetModules.IsPattern() != pattern {
			return nil, "", fmt.Errorf("lora: add_weighted_adapter: adapters mix list and regex target_modules")
		}
		if pattern {
			exprs = append(exprs, "("+c.TargetModules.Pattern+")")
		}
		for _, n := range c.TargetModules.Names {
			union[n] = true
		}
	}
	nc := configs[0].clone()
	nc.R, nc.Alpha = newRank, float64(newRank)
	nc.RankPattern, nc.AlphaPattern = map[string]int{}, map[string]float64{}
	nc.rankOrder, nc.alphaOrder = nil, nil
	if pattern {
		nc.TargetModules = tuners.Pattern(strings.Join(exprs, "|"))
	} else {
		nc.TargetModules = tuners.Names(slices.Sorted(maps.Keys(union))...)
	}
	return nc, ctype, nil
}

// clone returns a deep copy of c.
func (c *Config) clone() *Config {
	n := *c
	n.RankPattern = maps.Clone(c.RankPattern)
	n.AlphaPattern = maps.Clone(c.AlphaPattern)
	n.Extra = maps.Clone(c.Extra)
	n.TargetModules.Names = slices.Clone(c.TargetModules.Names)
	n.ExcludeModules.Names = slices.Clone(c.ExcludeModules.Names)
	n.LayersToTransform = slices.Clone(c.LayersToTransform)
	n.LayersPattern = slices.Clone(c.LayersPattern)
	n.ModulesToSave = slices.Clone(c.ModulesToSave)
	return &n
}

// AddWeighted fills adapter name, which must already exist (created with the
// config from WeightedConfig) on the LoRA layers under root, with the
// weighted combination of adapters, as PEFT's add_weighted_adapter does
// after injecting it. ctype is the type WeightedConfig returned. The new
// adapter's tensors are frozen. Not safe for concurrent use.
//
// The combination runs once, in float64 on host copies of the factors (the
// svd types need an SVD, the pruning types top-k selection, which nn does
// not have), and the results are copied back to the layers' backend.
func AddWeighted(root nn.Module, adapters []string, weights []float64, name, ctype string, o WeightedOptions) error {
	if len(adapters) != len(weights) {
		return fmt.Errorf("lora: add_weighted_adapter: %d adapters but %d weights", len(adapters), len(weights))
	}
	if o.MajoritySignMethod == "" {
		o.MajoritySignMethod = "total"
	}
	if o.MajoritySignMethod != "total" && o.MajoritySignMethod != "frequency" {
		return fmt.Errorf("lora: add_weighted_adapter: majority_sign_method %q is not total or frequency", o.MajoritySignMethod)
	}
	if o.Density < 0 {
		return fmt.Errorf("lora: add_weighted_adapter: density must be >= 0, got %v", o.Density)
	}
	rng := nn.NewRNG(o.Seed)
	return tuners.WalkTargets(root, func(n tuners.Node) error {
		l, ok := n.Module.(AdapterLayer)
		if !ok {
			return nil
		}
		c := l.coreOf()
		if _, ok := c.adapters[name]; !ok {
			return nil
		}
		if err := c.combine(name, adapters, weights, ctype, o, rng); err != nil {
			return fmt.Errorf("lora: add_weighted_adapter on %q: %w", n.Path, err)
		}
		c.SetTrainable(name, false)
		return nil
	})
}

// host64 is a float64 host copy of a tensor.
type host64 struct {
	d     []float64
	shape []int
}

func toHost(t *nn.Tensor) host64 {
	src := t.Data()
	d := make([]float64, len(src))
	for i, v := range src {
		d[i] = float64(v)
	}
	return host64{d: d, shape: t.Shape()}
}

func (h host64) store(t *nn.Tensor) {
	d := make([]float32, len(h.d))
	for i, v := range h.d {
		d[i] = float32(v)
	}
	t.CopyFromHost(d)
}

// combine computes adapter name on one layer.
func (c *core) combine(name string, adapters []string, weights []float64, ctype string, o WeightedOptions, rng *nn.RNG) error {
	target := c.adapters[name]
	var present []*adapter
	var ws []float64
	for i, n := range adapters {
		if a, ok := c.adapters[n]; ok {
			present = append(present, a)
			ws = append(ws, weights[i])
		}
	}
	for _, a := range append(present, target) {
		if a.blockDiagonal() {
			return fmt.Errorf("combining BD-LoRA (block-diagonal) adapters is not supported")
		}
	}
	tA, tB := toHost(target.a), toHost(target.b)
	clear(tA.d)
	clear(tB.d)
	switch ctype {
	case CombineCat:
		if len(present) == 0 {
			return fmt.Errorf("no matching LoRA adapters")
		}
		rowLen := len(tA.d) / target.r
		row := 0
		for i, a := range present {
			A, B := toHost(a.a), toHost(a.b)
			f := ws[i] * a.scale
			for k := range a.r {
				for j := range rowLen {
					tA.d[(row+k)*rowLen+j] = A.d[k*rowLen+j] * f
				}
				for o := range c.out {
					tB.d[o*target.r+row+k] = B.d[o*a.r+k]
				}
			}
			row += a.r
		}
	case CombineLinear, CombineTies, CombineDareLinear, CombineDareTies, CombineMagnitudePrune:
		if len(present) == 0 {
			return nil
		}
		var As, Bs []host64
		var wA, wB []float64
		for i, a := range present {
			// The sign goes on A only; both factors get sqrt(|w*s|).
			f := ws[i] * a.scale
			sq := math.Sqrt(math.Abs(f))
			if f < 0 {
				wA = append(wA, -sq)
			} else {
				wA = append(wA, sq)
			}
			wB = append(wB, sq)
			As, Bs = append(As, toHost(a.a)), append(Bs, toHost(a.b))
		}
		var err error
		if tA.d, err = mergeTasks(ctype, As, wA, o, rng); err != nil {
			return err
		}
		if tB.d, err = mergeTasks(ctype, Bs, wB, o, rng); err != nil {
			return err
		}
	default: // the svd types
		if len(present) == 0 {
			return fmt.Errorf("no matching LoRA adapters")
		}
		if c.kind == kindConv1d {
			return fmt.Errorf("combination_type %q is not supported for Conv1d layers", ctype)
		}
		var deltas []host64
		var vw []float64
		for i, a := range present {
			deltas = append(deltas, toHost(c.delta(a)))
			// PEFT weighs the deltas (which already include the scaling)
			// by weight * scaling.
			vw = append(vw, ws[i]*a.scale)
		}
		base := strings.TrimSuffix(ctype, "_svd")
		if ctype == CombineSVD {
			base = CombineLinear
		}
		d, err := mergeTasks(base, deltas, vw, o, rng)
		if err != nil {
			return err
		}
		rows := c.out
		cols := len(d) / rows
		m := mat.NewDense(rows, cols, nil)
		for i := range rows {
			for j := range cols {
				if c.kind == kindConv1D || c.kind == kindEmbedding {
					m.Set(i, j, d[j*rows+i]) // base layout [in, out] -> [out, in]
				} else {
					m.Set(i, j, d[i*cols+j])
				}
			}
		}
		r := target.r
		if r > min(rows, cols) {
			return fmt.Errorf("svd rank %d exceeds the delta weight's size %dx%d", r, rows, cols)
		}
		var svd mat.SVD
		if !svd.Factorize(m, mat.SVDThin) {
			return fmt.Errorf("SVD of the combined delta weight did not converge")
		}
		var u, v mat.Dense
		svd.UTo(&u)
		svd.VTo(&v)
		s := svd.Values(nil)
		for i := range rows {
			for k := range r {
				tB.d[i*r+k] = u.At(i, k) * s[k]
			}
		}
		for k := range r {
			for j := range cols {
				tA.d[k*cols+j] = v.At(j, k)
			}
		}
		if o.SVDClamp > 0 {
			all := append(slices.Clone(tB.d), tA.d...)
			hi := quantile(all, o.SVDClamp)
			for _, x := range [][]float64{tA.d, tB.d} {
				for i := range x {
					x[i] = math.Max(-hi, math.Min(hi, x[i]))
				}
			}
		}
	}
	tA.store(target.a)
	tB.store(target.b)
	return nil
}

// quantile is torch.quantile with linear interpolation.
func quantile(x []float64, q float64) float64 {
	s := slices.Clone(x)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
}

// mergeTasks combines same-shaped task tensors with weights the way PEFT's
// merge_utils do: task_arithmetic (linear), ties, dare_linear, dare_ties,
// magnitude_prune.
func mergeTasks(ctype string, ts []host64, w []float64, o WeightedOptions, rng *nn.RNG) ([]float64, error) {
	n := len(ts[0].d)
	for _, t := range ts {
		if len(t.d) != n {
			return nil, fmt.Errorf("tensors of shapes %v and %v cannot be combined", ts[0].shape, t.shape)
		}
	}
	tasks := make([][]float64, len(ts))
	for i, t := range ts {
		tasks[i] = slices.Clone(t.d)
	}
	prune := func(method string) error {
		if o.Density >= 1 {
			return nil
		}
		for i, t := range tasks {
			switch method {
			case "magnitude":
				k := int(o.Density * float64(n))
				idx := make([]int, n)
				for j := range idx {
					idx[j] = j
				}
				sort.SliceStable(idx, func(a, b int) bool { return math.Abs(t[idx[a]]) > math.Abs(t[idx[b]]) })
				keep := make([]bool, n)
				for _, j := range idx[:k] {
					keep[j] = true
				}
				for j := range t {
					if !keep[j] {
						t[j] = 0
					}
				}
			case "random":
				u := nn.Uniform(nn.DefaultBackend(), rng, 0, 1, n).Data()
				for j := range t {
					if float64(u[j]) < o.Density {
						t[j] /= o.Density
					} else {
						t[j] = 0
					}
				}
			}
			tasks[i] = t
		}
		return nil
	}
	ties := false
	switch ctype {
	case CombineLinear:
	case CombineMagnitudePrune:
		_ = prune("magnitude")
	case CombineTies:
		_ = prune("magnitude")
		ties = true
	case CombineDareLinear:
		_ = prune("random")
	case CombineDareTies:
		_ = prune("random")
		ties = true
	default:
		return nil, fmt.Errorf("invalid combination_type %q", ctype)
	}
	out := make([]float64, n)
	if !ties {
		for i, t := range tasks {
			for j, v := range t {
				out[j] += v * w[i]
			}
		}
		return out, nil
	}
	for j := range n {
		total := 0.0
		for _, t := range tasks {
			if o.MajoritySignMethod == "frequency" {
				total += sign(t[j])
			} else {
				total += t[j]
			}
		}
		major := 1.0
		if total < 0 {
			major = -1
		}
		sum, count := 0.0, 0.0
		for i, t := range tasks {
			if sign(t[j]) == major {
				sum += t[j] * w[i]
				count++
			}
		}
		out[j] = sum / math.Max(count, 1)
	}
	return out, nil
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}
