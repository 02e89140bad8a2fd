// Package poly implements Polytropon and Multi-Head Routing (peft_type
// "POLY", PEFT's PolyConfig): every adapted nn.Linear holds a bank of
// n_skills LoRA skills of rank r, each split into n_splits heads along the
// input and output features, and a router with one row of logits per task.
// A batch row of task t mixes the skills of each split with weights
// w = sigma(logits[t]) / (sum sigma(logits[t]) + 1e-12) (a relaxed
// Bernoulli sample in training instead of the sigmoid), and the layer adds
// x A_w B_w / r to the base output, where A_w and B_w are the mixed banks.
//
// The task ids come from peft.Model.ForwardTasks (or CausalLMLoss with task
// ids), as PEFT's forward(task_ids=...) passes them to every Poly layer;
// a forward pass without them fails, as in PEFT. Layers implement
// tuners.TaskRouter for this.
//
// Saved tensors are PEFT's: "poly_lora_A" [n_splits, n_skills,
// in/n_splits, r], "poly_lora_B" [n_splits, n_skills, r, out/n_splits] and
// "poly_router.module_logits" [n_tasks, n_splits*n_skills].
//
// Poly has no merge in PEFT (the update depends on each row's task), so
// Merge returns an error; Unmerge has nothing to undo.
//
// Where gopeft differs from PEFT: initial values (Kaiming-uniform banks,
// router logits in U(-1e-3, 1e-3)) and the relaxed Bernoulli noise of
// training come from gopeft's Philox stream, not torch's generator.
package poly
