// Package frod implements PEFT's FRoD (PEFT v0.20.0 "FROD") for Linear and
// GPT-2 Conv1D layers: each adapted weight is rewritten as U (S + L) V^T
// over a basis V shared by the layers of one module category (derived from
// their stacked weights), with a trainable diagonal L (frod_lambda_l) and
// trainable sparse off-diagonal entries of S (frod_lambda_s_values) at
// torch-drawn positions.
//
// Saved tensors: per layer "frod_lambda_l" [in] and "frod_lambda_s_values"
// [nnz]; with save_projection the method-level "base_model.frod_V.<cat>"
// [in, in] and int64 "base_model.frod_s_indices.<cat>" [2, nnz] and
// "base_model.frod_s_size.<cat>" [2]. U is derived from the base weight and
// the (loaded) V, as PEFT derives it.
package frod
