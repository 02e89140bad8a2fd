// Package multitaskprompt is PEFT's multitask prompt tuning
// (MULTITASK_PROMPT_TUNING, Wang et al. 2023): a shared prompt embedding
// [T, token_dim] modulated per task by a rank-R matrix, the product of
// prefix_task_cols[t] [T, R] and prefix_task_rows[t] [R, token_dim]:
//
//	prompt[n] = embedding * (prefix_task_cols[task[n]] @ prefix_task_rows[task[n]])
//
// (elementwise), prepended to the token embeddings of row n. Every forward
// pass needs one task id per batch row. The adapter file holds the three
// tensors: prompt_embeddings (the shared embedding itself), prefix_task_cols
// and prefix_task_rows.
package multitaskprompt
