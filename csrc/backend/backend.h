/* backend.h — the op table the forward pass is written against, and the batch it reads.
 *
 * The model code (model/llama.c) calls only these ops; backend/cpu implements every one in
 * plain C (fp32 activations: the reference and the CI path) and the CUDA backend (bf16
 * activations) implements the same table.  Activation pointers are `void *` in the backend's
 * activation dtype (backend->act_dtype); weights are tensor_t made by upload_weight; shapes of
 * every pointer are in the comments.  Ops never allocate: the caller passes outputs, and every
 * scratch buffer comes from the backend's arenas, sized at init.
 */
#ifndef LIGHTLLM_BACKEND_BACKEND_H
#define LIGHTLLM_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

/* One forward step over a ragged batch: num_seqs sequences, each contributing q_len new tokens
 * whose KV lands in `slots`; token arrays are concatenated in sequence order. */
typedef struct forward_batch {
    int32_t num_tokens;
    const int32_t *token_ids;   /* [num_tokens] */
    const int32_t *positions;   /* [num_tokens] position of each token in its sequence */
    const int32_t *slots;       /* [num_tokens] KV slot written for each token */
    int32_t num_seqs;
    const int32_t *seq_rows;    /* [num_seqs] row of req_to_token */
    const int32_t *seq_q_start; /* [num_seqs] first token of the sequence in the token arrays */
    const int32_t *seq_q_len;   /* [num_seqs] new tokens this step */
    const int32_t *seq_kv_len;  /* [num_seqs] KV length after this step (cached + new) */
    const int32_t *req_to_token;/* [max_reqs, max_seq_len] slot of each position */
    int32_t max_seq_len;
    int32_t num_logits;
    const int32_t *logit_tokens;/* [num_logits] token indices whose logits are wanted */
} forward_batch;

typedef struct backend backend;

typedef struct attention_shape {
    int32_t num_heads, num_kv_heads, head_dim;
    float scale;                /* softmax scale, head_dim^-0.5 */
} attention_shape;

typedef struct backend_ops {
    const char *name;
    void (*destroy)(backend *b);
    /* Sizes per-step scratch once, before the first forward (nothing allocates per step). */
    status_t (*prepare)(backend *b, int32_t max_tokens, int32_t max_seq_len, int32_t num_heads);
    /* Device memory (the CPU backend: aligned host memory). */
    status_t (*alloc)(backend *b, size_t bytes, void **out);
    void (*release)(backend *b, void *p);
    /* Makes a weight usable by the ops; the CPU backend aliases the host data (mmap). */
    status_t (*upload_weight)(backend *b, const tensor_t *host, tensor_t *out);
    /* Host → device copy of int32 step inputs (the CPU backend: no-op alias). */
    void (*copy_to_device)(backend *b, void *dst, const void *src, size_t bytes);

    /* out[n, dim] = table[ids[i], :] */
    void (*embedding)(backend *b, const tensor_t *table, const int32_t *ids, int32_t n, void *out);
    /* out[n, dim] = rmsnorm(x) * w */
    void (*rmsnorm)(backend *b, const void *x, const tensor_t *w, float eps, int32_t n, int32_t dim, void *out);
    /* residual[n, dim] += x; out = rmsnorm(residual) * w */
    void (*add_rmsnorm)(backend *b, void *residual, const void *x, const tensor_t *w, float eps,
                        int32_t n, int32_t dim, void *out);
    /* y[n, out] = x[n, in] · w[out, in]^T (+ bias[out] when bias->data) */
    void (*linear)(backend *b, const void *x, const tensor_t *w, const tensor_t *bias, int32_t n, void *y);
    /* In place on q[n, num_heads, head_dim] and k[n, num_kv_heads, head_dim]: optional per-head
     * RMSNorm (q_norm/k_norm weights [head_dim], NULL data = none), then rotary embedding with
     * rope_table[pos, head_dim] (cos | sin halves); then writes k and v[n, num_kv_heads, head_dim]
     * into kv_pool[slot, 2, num_kv_heads, head_dim] at batch->slots. */
    void (*qk_norm_rope_store)(backend *b, void *q, void *k, const void *v, const tensor_t *q_norm,
                               const tensor_t *k_norm, float eps, const float *rope_table,
                               const attention_shape *shape, const forward_batch *batch, void *kv_pool);
    /* out[n, num_heads, head_dim] = causal softmax(q·K^T·scale)·V over each sequence's
     * positions [0, kv_len - q_len + i], K/V read from kv_pool through req_to_token. */
    void (*attention)(backend *b, const void *q, const void *kv_pool, const attention_shape *shape,
                      const forward_batch *batch, void *out);
    /* out[n, dim] = silu(gate) * up */
    void (*silu_mul)(backend *b, const void *gate, const void *up, int32_t n, int32_t dim, void *out);
    /* out[m, dim] = x[rows[i], :] */
    void (*gather_rows)(backend *b, const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out);
    /* fp32 host copy of logits[m, vocab] (the CPU backend: memcpy) */
    void (*logits_to_host)(backend *b, const void *logits, int64_t count, float *host);
} backend_ops;

struct backend {
    const backend_ops *ops;
    dtype_t act_dtype;          /* activation / KV dtype */
};

/* CPU backend: num_threads <= 0 = one per available CPU (or LIGHTLLM_NUM_THREADS). */
status_t backend_cpu_create(int num_threads, backend **out);

#endif
