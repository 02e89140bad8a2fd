// Package tuners holds what every PEFT method that adapts modules shares:
// the common config fields and their JSON form, PEFT's rules for choosing
// target modules, the default targets per model type, and the interfaces a
// method implements so that the peft package can inject, run, merge, save
// and load it without knowing the method.
//
// # Writing a method
//
// A method lives in its own package under tuners/ and provides:
//
//   - a config struct embedding BaseConfig and TargetConfig, with the
//     method's fields under PEFT's JSON names, a Validate method, and
//     optionally BiasMode (see BiasConfig);
//   - a Layer: the wrapper that replaces a targeted module, runs the
//     wrapped module plus the active adapters, merges and unmerges in place,
//     and reports each adapter's tensors under their saved names (embedding
//     Bookkeeping gives it the adapter names, active set, disabled flag and
//     merge order);
//   - a Method value: Type ("LORA"), Prefix ("lora_"), NewConfig (defaults)
//     and Wrap (make a Layer for a target, or add an adapter to an existing
//     Layer). Optional interfaces add model-wide steps: Preparer (shared
//     tensors such as VeRA's projections), ConfigResolver (config fields
//     that depend on the model), LoadPreparer (layers reshaped to a file
//     before it loads, as AdaLoRA's pruned ranks), and the training hooks
//     StepHook, AfterStepHook and LossTermer on layers or shared state.
//
// A prompt-learning method (prompt tuning, p-tuning, prefix tuning, ...)
// instead provides a config embedding BaseConfig and PromptConfig and a
// PromptMethod whose PromptEncoder computes the virtual tokens; the peft
// package feeds them to the base model and saves what the encoder reports.
//
// The peft package maps each peft_type to its Method in a plain map and
// drives everything else: Inject (here) finds and wraps the targets; peft
// saves "base_model.model." + path + "." + Param.Name for every Layer's
// AdapterParams(adapter), "base_model." + name for Shared params, plus biases and
// modules_to_save as PEFT does.
//
// # Names
//
// Module paths are HF dotted paths ("model.layers.0.self_attn.q_proj").
// Live parameter names carry the adapter name ("lora_A.default.weight");
// saved keys do not ("lora_A.weight"). RemoveAdapterName and
// InsertAdapterName are PEFT's two conversions.
//
// # Concurrency
//
// Matching and config helpers are safe for concurrent use. Inject and every
// Layer method except Forward mutate the model and must not run
// concurrently with anything else on it.
package tuners
