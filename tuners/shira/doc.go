// Package shira implements SHiRA, sparse high-rank adapters (peft_type
// "SHIRA", PEFT's ShiraConfig), for nn.Linear layers: a fixed sparse set
// of r*(out+in) weight positions is trained, ΔW[rows[k], cols[k]] =
// shira_weight[k] * scaling, and the layer computes x (W + ΔW)^T + b.
//
// The positions come from PEFT's random mask: the first r*(out+in) entries
// of torch.randperm(out*in) drawn from a generator seeded with random_seed
// (torch.Generator's default seed 67280421310721 when it is null),
// reproduced with internal/torchrand, then taken in row-major order (the
// order of torch.where on the mask), which is the order of shira_weight.
// They are not saved: loading re-derives them, as PEFT does.
//
// Merging adds ΔW to the weight in place; unmerging subtracts it. The
// saved tensor is "shira_weight". Custom mask functions (a mask_type other
// than "random") exist only as Python callables and are rejected.
//
// No golden case covers SHiRA (PEFT's SHiRA needs torch >= 2.0); the tests
// pin the mask and the formula independently.
package shira
