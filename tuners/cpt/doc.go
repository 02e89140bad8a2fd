// Package cpt is PEFT's context-aware prompt tuning (CPT, Blau et al.
// 2024): the prompt is the base model's embeddings of given context tokens
// (cpt_token_ids: in-context examples with their templates and labels) plus
// a trainable delta, prepended to the token embeddings. Each token has a
// type (cpt_tokens_type_mask: v % 4 == 1 input template, 2 input, 3 output
// template, 0 output label, for v > 0; 0 none).
//
// Every encoder pass first projects the delta (in place, outside autograd):
// a row longer than its radius eps is scaled back to length eps, where eps
// is opt_projection_format_epsilon*sqrt(D/2048) for templates,
// opt_projection_epsilon*sqrt(D/2048) for inputs and 1e-10 otherwise. The
// gradient of the delta is zero on the rows of labels and untyped tokens
// (PEFT's gradient hook).
//
// Loss is CPT's training loss: cross-entropy on the label tokens of the
// context and of the input, optionally weighted by an exponential decay
// over the label groups. The adapter file holds prompt_embeddings, the
// encoder's output; a loaded adapter uses it as the frozen base of a new,
// zero delta.
package cpt
