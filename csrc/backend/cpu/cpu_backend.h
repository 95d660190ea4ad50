/* cpu_backend.h — internals shared by the CPU backend's files (not part of the op table). */
#ifndef LIGHTLLM_BACKEND_CPU_BACKEND_H
#define LIGHTLLM_BACKEND_CPU_BACKEND_H

#include "backend/backend.h"
#include "core/threadpool.h"

typedef struct cpu_backend {
    backend base;
    threadpool *tp;
    int num_threads;
    int32_t max_tokens, max_seq_len;
    float *attn_scratch;        /* [num_threads, max_seq_len] scores */
    /* sample: made at the first call, regrown for a larger vocabulary (cpu_sample.c) */
    struct sampling_scratch_t *sample_scratch;
    int32_t sample_vocab;
    float *sample_row;          /* [sample_vocab] the row the CPU sampler may rewrite */
    int32_t *sample_ids;        /* [sample_ids_cap] prompt / output / banned id lists */
    int64_t sample_ids_cap;
} cpu_backend;

static inline cpu_backend *cpu_backend_of(backend *b) { return (cpu_backend *)b; }

void cpu_ops_embedding(backend *b, const tensor_t *table, const int32_t *ids, int32_t n, void *out);
void cpu_ops_rmsnorm(backend *b, const void *x, const tensor_t *w, float eps, int32_t n, int32_t dim, void *out);
void cpu_ops_add_rmsnorm(backend *b, void *residual, const void *x, const tensor_t *w, float eps,
                         int32_t n, int32_t dim, void *out);
void cpu_ops_linear(backend *b, const void *x, const tensor_t *w, const tensor_t *bias, int32_t n, void *y);
void cpu_ops_linear_logits(backend *b, const void *x, const tensor_t *w, int32_t n, float *logits);
void cpu_ops_qk_norm_rope_store(backend *b, void *q, void *k, const void *v, const tensor_t *q_norm,
                                const tensor_t *k_norm, float eps, const float *rope_table,
                                const attention_shape *shape, const forward_batch *batch, void *kv_pool);
void cpu_ops_silu_mul(backend *b, const void *gate, const void *up, int32_t n, int32_t dim, void *out);
void cpu_ops_gather_rows(backend *b, const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out);
void cpu_sample(backend *b, const float *logits, int32_t vocab, const sample_batch *batch, const sample_output *out);
void cpu_sample_free(cpu_backend *c);
void cpu_attention(backend *b, const void *q, const void *kv_pool, const attention_shape *shape,
                   const forward_batch *batch, void *out);

#endif
