// Package peft is gopeft's public API, HuggingFace PEFT for Go: it loads
// adapters trained with Python PEFT and gives the same numbers, trains new
// ones, merges them into the base weights, and saves folders that Python's
// PeftModel.from_pretrained loads.
//
// # Loading and running an adapter
//
// An adapter folder holds adapter_config.json and adapter_model.safetensors,
// as PEFT's save_pretrained writes them. Load injects the adapter into a
// base model (any nn.Module tree with HF module names, such as a
// models/llama model) and loads its weights:
//
//	m, err := peft.Load(base, "path/to/adapter")
//	logits, err := m.Forward(models.Input{IDs: ids, Shape: []int{1, len(ids)}})
//
// The adapter lives inside the base model's module tree, so the base model's
// own forward function runs it too. More adapters load side by side with
// LoadAdapter and are switched with SetAdapter; DisableAdapters runs code
// on the bare base model.
//
// # Training
//
// New injects a fresh adapter described by a method's config (lora.Config,
// ...); its tensors require gradients and every base tensor is frozen.
// TrainableParameters lists what to hand to an nn optimizer. Save writes
// the folder:
//
//	cfg := lora.NewConfig()
//	cfg.R, cfg.Alpha = 16, 32
//	cfg.TargetModules = tuners.Names("q_proj", "v_proj")
//	m, err := peft.New(base, cfg)
//	// ... forward, loss.Backward(), optimizer.Step() ...
//	err = m.Save("out/adapter")
//
// # Merging
//
// Merge folds the active adapters into the base weights in place (Unmerge
// undoes it); MergeAndUnload also removes the adapter layers and returns
// the plain base model.
//
// # Files
//
// Save follows PEFT's layout: the adapter named "default" goes to the
// folder itself, any other adapter to a sub-folder named after it. Keys are
// "base_model.model." + module path + tensor name without the adapter name,
// the metadata is {"format": "pt"}, and files are written atomically.
// Loading is strict: a missing, unexpected or mis-shaped key is an error
// naming it.
//
// # Methods
//
// Each PEFT method is a tuners.Method (adapters injected into modules) or a
// tuners.PromptMethod (prompt learning) in its own package under tuners/;
// the registry (Method, Methods) is a plain map from peft_type to method.
// Prompt-learning adapters need a base model that runs from embeddings
// (PromptModel, such as models/llama): Forward then prepends the virtual
// tokens (the output has T more positions, as in PEFT) or feeds them as
// past keys and values.
//
// # Concurrency
//
// Forward on a model in eval mode (nn.SetTraining(base, false)) may run from
// many goroutines at once. Everything that changes adapters (New, Load,
// AddAdapter, LoadAdapter, SetAdapter, DeleteAdapter, DisableAdapters,
// Merge, Unmerge, Unload, training steps) must not run concurrently with
// anything else on the same model.
package peft
