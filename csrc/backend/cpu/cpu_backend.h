/* cpu_backend.h — internals shared by the CPU backend's files (not part of the op table). */
#ifndef LIGHTLLM_BACKEND_CPU_BACKEND_H
#define LIGHTLLM_BACKEND_CPU_BACKEND_H

#include "backend/backend.h"
#include "backend/host_sampler.h"
#include "core/threadpool.h"

typedef struct cpu_backend {
    backend base;
    threadpool *tp;
    int num_threads;
    int32_t max_tokens, max_seq_len;
    float *attn_scratch;        /* [num_threads, max_seq_len] scores */
    host_sampler sampler;       /* on tp */
    int32_t *next_tokens;       /* [max_seqs] the next-token table */
    int32_t max_seqs;
    sampling_result_t *slot_results[BACKEND_STEP_SLOTS]; /* [max_seqs] each: a step's sample output */
    double slot_begin[BACKEND_STEP_SLOTS], slot_seconds[BACKEND_STEP_SLOTS]; /* host timers */
    int32_t num_owned;
    void **owned;               /* [num_owned] fused weights made by upload_weight */
} cpu_backend;

static inline cpu_backend *cpu_backend_of(backend *b) { return (cpu_backend *)b; }

void cpu_ops_embedding(backend *b, const tensor_t *table, const int32_t *ids, int32_t n, void *out);
void cpu_ops_rmsnorm(backend *b, const void *x, const tensor_t *w, float eps, int32_t n, int32_t dim, void *out);
void cpu_ops_add_rmsnorm(backend *b, void *residual, const void *x, const tensor_t *w, float eps,
                         int32_t n, int32_t dim, void *out);
void cpu_ops_linear(backend *b, const void *x, const tensor_t *w, const tensor_t *bias, int32_t n, void *y);
void cpu_ops_linear_logits(backend *b, const void *x, const tensor_t *w, int32_t n, float *logits);
void cpu_ops_qk_norm_rope_store(backend *b, const void *qkv, const tensor_t *q_norm, const tensor_t *k_norm, float eps,
                                const float *rope_table, const attention_shape *shape, const forward_batch *batch,
                                void *q_out, void *kv_pool);
void cpu_ops_silu_mul(backend *b, const void *gate_up, int32_t n, int32_t dim, void *out);
void cpu_ops_linear_silu(backend *b, const void *x, const tensor_t *w, int32_t n, void *scratch, void *out);
void cpu_ops_linear_add_rmsnorm(backend *b, const void *x, const tensor_t *w, int32_t n, void *residual,
                                const tensor_t *norm_w, float eps, void *out);
void cpu_ops_gather_rows(backend *b, const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out);
void cpu_attention(backend *b, const void *q, const void *kv_pool, const attention_shape *shape,
                   const forward_batch *batch, void *out);

#endif
