package tuners

import (
	"github.com/gopeft/gopeft/nn"
)

// Layer is an adapted module: the wrapper a method puts in place of a
// targeted module of the base model (PEFT's BaseTunerLayer). It holds the
// wrapped module and any number of named adapters of one method.
//
// # The module tree
//
// A Layer is an nn.Module that replaces the target in its parent (through
// the parent's SetChild), so the base model's own Forward runs through it. It
// therefore also implements whatever call interface the parent uses on the
// replaced module (nn.Layer's Forward for Linear, Conv1d, Conv2d and GPT-2's
// Conv1D; Embedding's Lookup for embeddings).
//
// Its nn view must name parameters exactly as PEFT's named_parameters does,
// relative to the layer:
//   - Children() lists the wrapped module first, under the name "base_layer"
//     (so the base weight is "<path>.base_layer.weight", and bias="all"
//     saves "<path>.base_layer.bias", as PEFT does);
//   - the adapter tensors appear, through Params() and/or further children,
//     under PEFT's live names with the adapter name inside:
//     "lora_A.default.weight", "lora_embedding_A.default",
//     "lora_magnitude_vector.default.weight". The peft package lists a
//     model's parameters (TrainableParameters, parameter counts) through
//     this view, so a tensor the layer trains without saving it must
//     appear here too.
//
// SetChild on a Layer may refuse every name but "base_layer".
//
// # Saved keys
//
// AdapterParams(adapter) is what the peft package saves and loads: the adapter's
// tensors keyed by their state-dict fragment WITHOUT the adapter name, as
// PEFT writes them in adapter_model.safetensors after "<path>.":
//
//	live (nn) name                          saved fragment (Param.Name)
//	lora_A.default.weight               ->  lora_A.weight
//	lora_B.default.bias                 ->  lora_B.bias
//	lora_embedding_A.default            ->  lora_embedding_A
//	lora_magnitude_vector.default.weight ->  lora_magnitude_vector   (DoRA)
//
// The saved key of a tensor is "base_model.model." + path + "." + Param.Name.
// The rule PEFT uses to go from a saved key back to a live name is
// InsertAdapterName; a method whose names do not follow it (DoRA above)
// still only has to return the saved fragment here.
//
// # Concurrency
//
// Forward in eval mode may run from many goroutines at once. Every other
// method mutates the layer and must not run concurrently with anything else.
type Layer interface {
	nn.Module

	// Base returns the wrapped module of the base model.
	Base() nn.Module
	// Method returns the peft_type of the method that made the layer.
	Method() string

	// Adapters returns the names of the adapters the layer holds, in the
	// order they were added.
	Adapters() []string
	// SetActive selects the adapters that Forward applies (PEFT's
	// set_adapter on the layer; several for methods that sum adapters).
	// Names the layer does not hold are ignored: another adapter may not
	// target this module.
	SetActive(names []string)
	// Active returns the active adapters held by this layer.
	Active() []string
	// SetTrainable marks the trainable tensors of adapter as requiring
	// gradients (on) or not (off). Tensors the method never trains
	// (buffers, frozen projections) are left alone.
	SetTrainable(adapter string, on bool)
	// SetDisabled turns every adapter off (Forward computes the wrapped
	// module alone) or back on. It does not touch merged weights: the peft
	// package unmerges a layer before disabling it, as PEFT does.
	SetDisabled(disabled bool)
	// Disabled reports whether the adapters are turned off.
	Disabled() bool

	// Merge folds the given adapters (nil: the active ones) into the wrapped
	// module's weights in place. Adapters already merged are skipped. With
	// safe it computes the merged weights in a copy first and fails, leaving
	// the weights untouched, if they hold NaN or Inf. The error names the
	// adapter.
	Merge(adapters []string, safe bool) error
	// Unmerge subtracts every merged adapter again, newest first.
	Unmerge() error
	// Merged returns the merged adapters in merge order.
	Merged() []string

	// Delete removes an adapter and its tensors. It fails if the layer does
	// not hold it or holds it merged.
	Delete(adapter string) error
	// AdapterParams returns the saved tensors of adapter on this layer, keyed by
	// their state-dict fragment (see the type's doc), in a fixed order. It
	// returns nil if the layer does not hold adapter. The tensors are the
	// live ones: loading copies into them.
	AdapterParams(adapter string) []nn.Param
}

// Target is one module a method is asked to adapt.
type Target struct {
	// Path is the module's HF dotted path in the base model.
	Path string
	// Module is the module now at Path: a plain module of the base model,
	// or a Layer (of this method, made for an earlier adapter) to which the
	// new adapter must be added.
	Module nn.Module
	// Root is the whole base model (some methods look at the model, e.g.
	// to share projections sized for the largest target).
	Root nn.Module
	// Config is the adapter's configuration (the method's own type).
	Config Config
	// Adapter is the new adapter's name.
	Adapter string
	// Shared is what Preparer.Prepare returned for this adapter (nil if the
	// method has no Preparer).
	Shared *Shared
}

// Method is one PEFT method that adapts modules (LoRA, LoHa, IA3, ...). A
// Method value is stateless; per-model state lives in the Layers it makes and
// in Shared. The peft package keeps a plain map from peft_type to Method.
type Method interface {
	// Type returns the peft_type, e.g. "LORA".
	Type() string
	// Prefix returns the prefix of the method's parameter names ("lora_",
	// "hada_", "vera_lambda_"), PEFT's PEFT_TYPE_TO_PREFIX_MAPPING entry.
	Prefix() string
	// NewConfig returns a config holding the method's defaults, with
	// PeftType set; LoadConfig decodes adapter_config.json into it.
	NewConfig() Config
	// Wrap adds the adapter t.Adapter with config t.Config to the module at
	// t.Path. If t.Module is already a Layer of this method it adds the
	// adapter to it and returns it; otherwise it returns a new Layer
	// wrapping t.Module. The new adapter's tensors are initialised as the
	// config says (init_lora_weights, seeds...) and require gradients.
	// Unsupported module types return an error naming the path and type.
	Wrap(t Target) (Layer, error)
}

// Shared holds the state of one adapter that does not belong to a single
// layer: VeRA's shared projections, VB-LoRA's vector bank, TinyLoRA's
// shared vectors.
type Shared struct {
	// Params are saved under "base_model." + Param.Name (no "model." and
	// no adapter name): "vera_A", "vblora_vector_bank", "tinylora_v.0".
	// Those created requiring gradients are trained while the adapter is
	// active.
	Params []nn.Param
	// Ints are integer tensors saved the same way ("frod_s_indices.lin0").
	Ints []*IntTensor
	// State is private to the method, handed back in every Target.
	State any
}

// IntTensor is integer adapter state that is saved and loaded but never
// trained (indices and sizes, such as FRoD's): nn tensors hold float32 only.
// The adapter file stores it as I64.
type IntTensor struct {
	// Name is the saved-key fragment, as for nn.Param.
	Name string
	// Shape is the tensor's shape.
	Shape []int
	// Data holds the elements, row-major; loading overwrites them in
	// place, so len(Data) must be the product of Shape.
	Data []int64
}

// IntStater is implemented by layers that hold integer state for an
// adapter; the peft package saves and loads it beside AdapterParams, under
// "base_model.model." + path + "." + IntTensor.Name.
type IntStater interface {
	AdapterInts(adapter string) []*IntTensor
}

// Preparer is implemented by methods that need a look at every target
// before wrapping any of them (to size and create shared tensors).
type Preparer interface {
	// Prepare runs once per added adapter, after matching and before the
	// first Wrap, with every matched target (Shared is nil in them).
	Prepare(root nn.Module, cfg Config, adapter string, targets []Target) (*Shared, error)
}

// ConfigResolver is implemented by methods whose configs need the model to
// be completed: default feed-forward modules (IA3), per-layer ranks, ...
// ResolveConfig runs before matching, after the default target_modules and
// "all-linear" were resolved.
type ConfigResolver interface {
	ResolveConfig(root nn.Module, cfg Config) error
}

// TargetDefaulter is implemented by methods whose default target_modules
// depend on the model itself rather than on its model_type (trainable
// tokens: the path of the input embedding). Inject asks it first when a
// config leaves target_modules empty.
type TargetDefaulter interface {
	DefaultTargets(root nn.Module) (Targets, error)
}

// ActiveChecker is implemented by layers that cannot apply every set of
// adapters at once (LN tuning runs a single copy of its module; trainable
// tokens refuse active adapters whose token indices overlap). The peft
// package calls CheckActive before activating adapters and fails, naming
// the module, on its error.
type ActiveChecker interface {
	CheckActive(names []string) error
}

// BiasConfig is implemented by configs that have PEFT's bias option ("none",
// "all", or the method's "<x>_only": LoRA's "lora_only", BOFT's
// "boft_only"). The peft package then marks and saves biases as PEFT does:
// "all" trains and saves every parameter whose name contains "bias";
// "<x>_only" trains the biases of the adapted layers' wrapped modules and
// saves "<path>.bias" entries that exist (for adapted layers PEFT's lookup
// misses, so none are saved there).
type BiasConfig interface {
	BiasMode() string
}

// StepHook is implemented by layers (or Shared.State values) that act
// between backward and the optimizer step (CPT's projection, OSF's gradient
// projection). The peft package calls every hook from Model.AfterBackward.
// AdaLoRA's rank allocation runs after the optimizer step instead, so it is
// not a StepHook (see adalora.Allocator).
type StepHook interface {
	AfterBackward(step int) error
}

// AfterStepHook is implemented by Shared.State values (or layers) that act
// after the optimizer step and before the gradients are zeroed: AdaLoRA's
// rank allocation (PEFT's update_and_allocate), which reads the gradients
// and masks the freshly updated singular values. The peft package calls
// the hooks of adapters created for training from Model.AfterStep.
type AfterStepHook interface {
	AfterStep(step int) error
}

// LossTermer is implemented by Shared.State values whose method adds a
// term to the training loss: AdaLoRA's orthogonality regulariser, which
// PEFT's forward adds whenever it computes a loss. The peft package sums
// the terms of the adapters created for training in Model.LossTerms.
type LossTermer interface {
	LossTerm() (*nn.Tensor, error)
}

// LoadPreparer is implemented by methods whose layers must change shape to
// fit an adapter file before it is loaded: AdaLoRA's rank_pattern prunes
// the saved ranks, and PEFT resizes the layers to them just before loading
// (set_peft_model_state_dict). The peft package calls PrepareLoad with the
// model root, the adapter's config and its name after injecting the adapter
// and before reading its file; creating an adapter (New, AddAdapter) does
// not call it.
type LoadPreparer interface {
	PrepareLoad(root nn.Module, cfg Config, adapter string) error
}

// RowAdapters is implemented by layers that can apply a different adapter
// to each row of a batch (PEFT's mixed-batch inference with adapter_names).
type RowAdapters interface {
	// SetBatchAdapters makes Forward apply adapter names[i] alone to batch
	// row i; BaseAdapterName or an adapter the layer does not hold leaves
	// the row to the wrapped module. nil turns it off.
	SetBatchAdapters(names []string) error
}

// BaseAdapterName stands for "no adapter" in per-row adapter lists (PEFT's
// "__base__").
const BaseAdapterName = "__base__"

// ModelTyper is implemented by base models that know their HF model_type
// ("llama", "gpt2"). It selects the default target_modules.
type ModelTyper interface {
	ModelType() string
}

// OutputLayerer is implemented by base models with an output (LM head)
// layer that "all-linear" must leave out, as PEFT does for transformers
// models. Models that do not implement it get every linear layer.
type OutputLayerer interface {
	// OutputLayer returns the path of the output layer ("lm_head"), or "".
	OutputLayer() string
}
