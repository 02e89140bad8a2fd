package nn

import (
	"fmt"
	"math"
	"slices"

	"github.com/gopeft/gopeft/kernels"
)

// ParamGroup is a set of parameters sharing a learning rate and weight
// decay, like a PyTorch param group. The values are used exactly as given;
// an optimizer's Groups may be edited between steps (learning-rate
// schedules).
type ParamGroup struct {
	Params      []*Tensor
	LR          float32
	WeightDecay float32
}

// Optimizer updates parameters from their accumulated gradients.
// Optimizers are not safe for concurrent use.
type Optimizer interface {
	// Step updates every parameter that has a gradient.
	Step()
	// ZeroGrad drops the gradients of every parameter.
	ZeroGrad()
}

func zeroGroups(groups []ParamGroup) {
	for _, g := range groups {
		for _, p := range g.Params {
			p.ZeroGrad()
		}
	}
}

// AdamWConfig holds AdamW's hyper-parameters.
type AdamWConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
}

// DefaultAdamW returns PyTorch's defaults: lr 1e-3, betas (0.9, 0.999),
// eps 1e-8, weight decay 0.01.
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// Group returns a ParamGroup of params with the config's learning rate and
// weight decay.
func (c AdamWConfig) Group(params ...*Tensor) ParamGroup {
	return ParamGroup{Params: params, LR: c.LR, WeightDecay: c.WeightDecay}
}

// AdamWState is the optimizer state of one parameter: the step count and
// the two moment estimates (nil before the first step).
type AdamWState struct {
	Step int
	M, V *Tensor
}

// AdamW is torch.optim.AdamW (decoupled weight decay) running the backend's
// fused AdamW kernel. Each group's LR and WeightDecay apply to its
// parameters; Beta1, Beta2 and Eps come from the config.
type AdamW struct {
	Groups []ParamGroup
	Config AdamWConfig
	state  map[*Tensor]*AdamWState
}

// NewAdamW returns an AdamW optimizer over groups.
func NewAdamW(c AdamWConfig, groups ...ParamGroup) *AdamW {
	return &AdamW{Groups: groups, Config: c, state: map[*Tensor]*AdamWState{}}
}

// Step performs one AdamW update of every parameter with a gradient,
// advancing that parameter's step count.
func (o *AdamW) Step() {
	for _, g := range o.Groups {
		for _, p := range g.Params {
			if p.grad == nil {
				continue
			}
			s := o.state[p]
			if s == nil {
				s = &AdamWState{M: ZerosLike(p), V: ZerosLike(p)}
				o.state[p] = s
			}
			s.Step++
			p.be.AdamW(p.buf, p.grad.buf, s.M.buf, s.V.buf, kernels.AdamWArgs{
				LR: g.LR, Beta1: o.Config.Beta1, Beta2: o.Config.Beta2, Eps: o.Config.Eps,
				WeightDecay: g.WeightDecay, Step: s.Step,
			})
		}
	}
}

// ZeroGrad drops the gradients of every parameter.
func (o *AdamW) ZeroGrad() { zeroGroups(o.Groups) }

// params lists the parameters in group order.
func groupParams(groups []ParamGroup) []*Tensor {
	var ps []*Tensor
	for _, g := range groups {
		ps = append(ps, g.Params...)
	}
	return ps
}

// State returns the state of every parameter in group order (like the
// integer keys of PyTorch's optimizer state dict); parameters never stepped
// have a zero AdamWState. The tensors are shared, not copied.
func (o *AdamW) State() []AdamWState {
	ps := groupParams(o.Groups)
	out := make([]AdamWState, len(ps))
	for i, p := range ps {
		if s := o.state[p]; s != nil {
			out[i] = *s
		}
	}
	return out
}

// LoadState restores the state State returned (copying the moments). It
// fails, changing nothing, when the number of entries or a moment's shape
// disagrees with the parameters.
func (o *AdamW) LoadState(st []AdamWState) error {
	ps := groupParams(o.Groups)
	if len(st) != len(ps) {
		return fmt.Errorf("nn: AdamW state has %d entries for %d parameters", len(st), len(ps))
	}
	for i, s := range st {
		if s.Step < 0 {
			return fmt.Errorf("nn: AdamW state %d: negative step %d", i, s.Step)
		}
		if s.Step == 0 {
			continue
		}
		for _, t := range []*Tensor{s.M, s.V} {
			if t == nil || !slices.Equal(t.shape, ps[i].shape) {
				return fmt.Errorf("nn: AdamW state %d: moment shape does not match parameter shape %v", i, ps[i].shape)
			}
		}
	}
	o.state = map[*Tensor]*AdamWState{}
	for i, s := range st {
		if s.Step == 0 {
			continue
		}
		p := ps[i]
		m, v := ZerosLike(p), ZerosLike(p)
		m.CopyFrom(s.M)
		v.CopyFrom(s.V)
		o.state[p] = &AdamWState{Step: s.Step, M: m, V: v}
	}
	return nil
}

// SGDConfig holds SGD's hyper-parameters (PyTorch's torch.optim.SGD).
type SGDConfig struct {
	LR, Momentum, Dampening, WeightDecay float32
	Nesterov                             bool
}

// Group returns a ParamGroup of params with the config's learning rate and
// weight decay.
func (c SGDConfig) Group(params ...*Tensor) ParamGroup {
	return ParamGroup{Params: params, LR: c.LR, WeightDecay: c.WeightDecay}
}

// SGD is torch.optim.SGD: with weight decay wd, momentum mu and dampening
// tau, d = g + wd*p; buf = d on the first step, else mu*buf + (1-tau)*d;
// d = d + mu*buf with Nesterov, else buf; p -= lr*d. Weight decay is
// coupled (added to the gradient), unlike AdamW's.
type SGD struct {
	Groups []ParamGroup
	Config SGDConfig
	bufs   map[*Tensor]*Tensor
}

// NewSGD returns an SGD optimizer over groups.
func NewSGD(c SGDConfig, groups ...ParamGroup) *SGD {
	return &SGD{Groups: groups, Config: c, bufs: map[*Tensor]*Tensor{}}
}

// Step performs one SGD update of every parameter with a gradient.
func (o *SGD) Step() {
	mu, tau := o.Config.Momentum, o.Config.Dampening
	for _, g := range o.Groups {
		for _, p := range g.Params {
			if p.grad == nil {
				continue
			}
			be := p.be
			d := p.grad.buf
			var tmp kernels.Buffer
			if g.WeightDecay != 0 {
				tmp = be.Alloc(p.Len())
				be.Copy(tmp, d)
				be.Axpy(tmp, p.buf, g.WeightDecay)
				d = tmp
			}
			if mu != 0 {
				buf := o.bufs[p]
				if buf == nil {
					buf = ZerosLike(p)
					be.Copy(buf.buf, d)
					o.bufs[p] = buf
				} else {
					be.Affine(buf.buf, buf.buf, mu, 0)
					be.Axpy(buf.buf, d, 1-tau)
				}
				if o.Config.Nesterov {
					if tmp == nil {
						tmp = be.Alloc(p.Len())
						be.Copy(tmp, d)
						d = tmp
					}
					be.Axpy(tmp, buf.buf, mu)
				} else {
					d = buf.buf
				}
			}
			be.Axpy(p.buf, d, -g.LR)
			if tmp != nil {
				be.Free(tmp)
			}
		}
	}
}

// ZeroGrad drops the gradients of every parameter.
func (o *SGD) ZeroGrad() { zeroGroups(o.Groups) }

// MomentumBuffers returns each parameter's momentum buffer in group order
// (nil before its first step with momentum); the tensors are shared.
func (o *SGD) MomentumBuffers() []*Tensor {
	ps := groupParams(o.Groups)
	out := make([]*Tensor, len(ps))
	for i, p := range ps {
		out[i] = o.bufs[p]
	}
	return out
}

// LoadMomentumBuffers restores buffers MomentumBuffers returned (copying).
func (o *SGD) LoadMomentumBuffers(bufs []*Tensor) error {
	ps := groupParams(o.Groups)
	if len(bufs) != len(ps) {
		return fmt.Errorf("nn: SGD state has %d entries for %d parameters", len(bufs), len(ps))
	}
	for i, b := range bufs {
		if b != nil && !slices.Equal(b.shape, ps[i].shape) {
			return fmt.Errorf("nn: SGD state %d: shape %v for parameter shape %v", i, b.shape, ps[i].shape)
		}
	}
	o.bufs = map[*Tensor]*Tensor{}
	for i, b := range bufs {
		if b != nil {
			c := ZerosLike(ps[i])
			c.CopyFrom(b)
			o.bufs[ps[i]] = c
		}
	}
	return nil
}

// ClipGradNorm scales the gradients of params in place so that their joint
// L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_, with its 1e-6
// guard), and returns the norm before clipping. Parameters without a
// gradient are skipped. Only the final norm is read back to the host.
func ClipGradNorm(params []*Tensor, maxNorm float32) float32 {
	var gs []*Tensor
	for _, p := range params {
		if p.grad != nil {
			gs = append(gs, p.grad)
		}
	}
	if len(gs) == 0 {
		return 0
	}
	be := gs[0].be
	parts := be.Alloc(len(gs))
	for i, g := range gs {
		if g.be != be {
			panic("nn.ClipGradNorm: gradients on different backends")
		}
		be.Reduce(kernels.SumSquares, parts.Slice(i, 1), g.buf, 1, g.Len(), 1)
	}
	total := be.Alloc(1)
	be.Reduce(kernels.Sum, total, parts, 1, len(gs), 1)
	var host [1]float32
	be.ToHost(host[:], total)
	be.Free(parts)
	be.Free(total)
	norm := float32(math.Sqrt(float64(host[0])))
	if coef := maxNorm / (norm + 1e-6); coef < 1 {
		for _, g := range gs {
			be.Affine(g.buf, g.buf, coef, 0)
		}
	}
	return norm
}
