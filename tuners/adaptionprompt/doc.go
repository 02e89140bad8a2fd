// Package adaptionprompt is PEFT's adaption prompt (ADAPTION_PROMPT,
// LLaMA-Adapter, Zhang et al. 2023) for models/llama: in each of the top
// adapter_layers attention layers, adapter_len learned prompt vectors
// [1, adapter_len, hidden] are projected by the layer's own k_proj and
// v_proj, every query (after its rotary embedding) attends to them in a
// separate softmax, and the result, scaled by a learned gate that starts at
// zero, goes through o_proj and is added to the layer's output:
//
//	out += o_proj(gate * softmax(q k_proj(P)^T / sqrt(d)) v_proj(P))
//
// (grouped-query heads share key/value heads as in the attention itself).
// The prompts enter through llama's Attention.Extension while the adapter
// is enabled. The adapter file holds, per adapted layer,
// base_model.model.<path>.adaption_prompt and .adaption_gate, as PEFT
// writes them.
package adaptionprompt
