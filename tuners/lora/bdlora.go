package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/gopeft/gopeft/nn"
)

// BD-LoRA (block-diagonal LoRA) makes lora_A or lora_B of chosen Linear
// layers block-diagonal with nblocks blocks, so that a sharded serving
// engine needs no communication for them. The compact factor is stored and
// saved as PEFT stores it: the blocks stacked along the rows, lora_A
// [r, in/nblocks] or lora_B [out, r/nblocks]; block i of A maps input block
// i to rank block i.

// bdLoRAOptions is use_bdlora (PEFT's BdLoraConfig).
type bdLoRAOptions struct {
	TargetModulesBDA []string `json:"target_modules_bd_a"`
	TargetModulesBDB []string `json:"target_modules_bd_b"`
	NBlocks          int      `json:"nblocks"`
	MatchStrict      bool     `json:"match_strict"`
}

// parseBDLoRA reads use_bdlora (nil when unset), with PEFT's defaults
// (nblocks 1, match_strict true).
func parseBDLoRA(raw json.RawMessage) (*bdLoRAOptions, error) {
	if isDefaultRaw(raw) {
		return nil, nil
	}
	o := &bdLoRAOptions{NBlocks: 1, MatchStrict: true}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(o); err != nil {
		return nil, fmt.Errorf("lora: use_bdlora: %w", err)
	}
	if o.NBlocks < 1 {
		return nil, fmt.Errorf("lora: use_bdlora: nblocks must be positive, got %d", o.NBlocks)
	}
	for _, a := range o.TargetModulesBDA {
		for _, b := range o.TargetModulesBDB {
			if a == b {
				return nil, fmt.Errorf("lora: use_bdlora: %q is in both target_modules_bd_a and target_modules_bd_b", a)
			}
		}
	}
	return o, nil
}

// bdSide decides, with PEFT's substring rule, whether the layer at path gets
// a block-diagonal A ('a'), B ('b') or neither (0).
func (o *bdLoRAOptions) bdSide(path string) (byte, error) {
	has := func(patterns []string) bool {
		for _, p := range patterns {
			if strings.Contains(path, p) {
				return true
			}
		}
		return false
	}
	a, b := has(o.TargetModulesBDA), has(o.TargetModulesBDB)
	switch {
	case a && b:
		return 0, fmt.Errorf("use_bdlora: module %q matches both the A and the B block-diagonal patterns", path)
	case a:
		return 'a', nil
	case b:
		return 'b', nil
	case o.MatchStrict:
		return 0, fmt.Errorf("use_bdlora: module %q matches neither target_modules_bd_a nor target_modules_bd_b (set match_strict false to allow plain LoRA there)", path)
	}
	return 0, nil
}

// applyBDLoRA replaces the chosen factor of a freshly initialised adapter
// by its compact block-diagonal form, initialised as PEFT does: A
// kaiming-uniform with a = 0 (bound sqrt(6/fan_in)), B zero.
func (c *core) applyBDLoRA(name, path string, a *adapter, o *bdLoRAOptions, rng *nn.RNG) error {
	if c.kind != kindLinear {
		return fmt.Errorf("adapter %q: use_bdlora is only supported for Linear layers, not %s", name, c.kind)
	}
	side, err := o.bdSide(path)
	if err != nil || side == 0 {
		return err
	}
	nb := o.NBlocks
	be := c.weight.Backend()
	switch side {
	case 'a':
		if c.in%nb != 0 || a.r%nb != 0 {
			return fmt.Errorf("adapter %q: block-diagonal A needs in (%d) and r (%d) divisible by nblocks %d", name, c.in, a.r, nb)
		}
		bound := float32(math.Sqrt(6 / float64(c.in/nb)))
		a.a = nn.Uniform(be, rng, -bound, bound, a.r, c.in/nb)
		a.bdA = nb
	case 'b':
		if c.out%nb != 0 || a.r%nb != 0 {
			return fmt.Errorf("adapter %q: block-diagonal B needs out (%d) and r (%d) divisible by nblocks %d", name, c.out, a.r, nb)
		}
		a.b = nn.Zeros(be, c.out, a.r/nb)
		a.bdB = nb
	}
	return nil
}

// blockDiag expands a compact block-diagonal factor w [R, C] with nb blocks
// (block i is rows i*R/nb..) into the full [R, C*nb] matrix, differentiably.
func blockDiag(w *nn.Tensor, nb int) *nn.Tensor {
	if nb <= 1 {
		return w
	}
	rows, cols := w.Dim(0), w.Dim(1)
	n := rows / nb
	be := w.Backend()
	blocks := make([]*nn.Tensor, nb)
	for i := range nb {
		var parts []*nn.Tensor
		if i > 0 {
			parts = append(parts, nn.Zeros(be, n, i*cols))
		}
		parts = append(parts, nn.Slice(w, 0, i*n, (i+1)*n))
		if i < nb-1 {
			parts = append(parts, nn.Zeros(be, n, (nb-1-i)*cols))
		}
		blocks[i] = nn.Concat(1, parts...)
	}
	return nn.Concat(0, blocks...)
}

// fullA returns A as a dense [r, in...] tensor.
func (a *adapter) fullA() *nn.Tensor { return blockDiag(a.a, a.bdA) }

// fullB returns B as a dense [out, r...] tensor.
func (a *adapter) fullB() *nn.Tensor { return blockDiag(a.b, a.bdB) }

// blockDiagonal reports whether a factor of a is stored compactly.
func (a *adapter) blockDiagonal() bool { return a.bdA > 0 || a.bdB > 0 }
