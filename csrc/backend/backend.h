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
 * (concatenated in sequence order) whose KV lands in `slots`.  Attention reads each sequence's
 * KV through kv_slots: the slot of every position 0..kv_len-1 of sequence s is
 * kv_slots[kv_start[s] + pos] (FlashInfer's indptr/indices layout, page size 1).  The engine
 * builds it on the host; backend->upload_batch gives the ops a copy they can read (the CPU
 * backend: the host arrays themselves). */
typedef struct forward_batch {
    int32_t num_tokens;
    const int32_t *token_ids;   /* [num_tokens] */
    const int32_t *positions;   /* [num_tokens] position of each token in its sequence */
    const int32_t *slots;       /* [num_tokens] KV slot written for each token */
    const int32_t *token_seq;   /* [num_tokens] sequence index of each token */
    int32_t num_seqs;
    const int32_t *q_start;     /* [num_seqs + 1] tokens of sequence s: [q_start[s], q_start[s+1]) */
    const int32_t *kv_start;    /* [num_seqs + 1] its slots: kv_slots[kv_start[s] .. kv_start[s+1]) */
    const int32_t *kv_slots;    /* [kv_start[num_seqs]] */
    int32_t max_q_len;          /* max over sequences of q_len (launch shapes) */
    int32_t max_kv_len;         /* max over sequences of kv_len */
    int32_t num_logits;
    const int32_t *logit_tokens;/* [num_logits] token indices whose logits are wanted */
} forward_batch;

typedef struct backend backend;

typedef struct attention_shape {
    int32_t num_heads, num_kv_heads, head_dim;
    float scale;                /* softmax scale, head_dim^-0.5 */
} attention_shape;

/* Per-row parameters of backend_ops.sample: the layout of kernels_sampling_params_t
 * (csrc/kernels/kernels.h; the CUDA backend checks it at compile time).  Values must pass
 * sampling_params_validate (engine/sampling.h), whose fields they copy. */
#define SAMPLE_MAX_LOGPROBS 20
#define SAMPLE_NO_TABLE 1u          /* flags: do not write this row's next-token table entry */
typedef struct sample_params {
    float temperature;          /* 0 = greedy */
    float top_p;                /* 1 = off */
    int32_t top_k;              /* -1 or 0 = off */
    float min_p;                /* 0 = off */
    float repetition_penalty;   /* 1 = off */
    float presence_penalty;     /* 0 = off */
    float frequency_penalty;    /* 0 = off */
    int32_t num_logprobs;       /* -1 = off; 0 = the token's logprob + rank; N <= 20: + top N */
    uint64_t rng_key;           /* Philox key and counter: sampling_uniform(rng_key, rng_counter) */
    uint64_t rng_counter;
    uint32_t flags;             /* SAMPLE_* */
    uint32_t reserved;
} sample_params;

/* Inputs of backend_ops.sample, every array device-readable (copy_to_device into backend
 * memory; the CPU backend: host memory).  CSR arrays may be NULL (none). */
typedef struct sample_batch {
    int32_t num_rows;
    const sample_params *params;      /* [num_rows] */
    const int32_t *penalty_offsets;   /* [num_rows + 1]: row i's entries [off[i], off[i+1]) */
    const int32_t *penalty_ids;       /*   distinct ids of prompt ∪ output, strictly ascending */
    const int32_t *penalty_counts;    /*   occurrences of each in the output (0 = prompt only) */
    const int32_t *banned_offsets;    /* [num_rows + 1] ids forced to -inf (EOS + stop ids under */
    const int32_t *banned_ids;        /*   min_tokens); any order */
    const uint32_t *allowed_mask;     /* [num_rows, ceil(vocab/32)] bit set = allowed, or NULL */
    const int32_t *table_index;       /* [num_rows] next-token table entry of each row (< 0: none), or NULL */
} sample_batch;

/* Outputs of backend_ops.sample (device memory; every slot written). */
typedef struct sample_output {
    int32_t *tokens;                  /* [num_rows] */
    float *logprobs;                  /* [num_rows] raw log_softmax of the token (0 when off) */
    int32_t *ranks;                   /* [num_rows] 1 + #raw logits above it (0 when off) */
    int32_t *top_ids;                 /* [num_rows, 20] top raw logprobs (unused: -1) */
    float *top_logprobs;              /* [num_rows, 20] (unused: -inf) */
    int32_t *next_token_table;        /* table[table_index[i]] = tokens[i]; NULL = none */
} sample_output;

typedef struct backend_ops {
    const char *name;
    void (*destroy)(backend *b);
    /* Sizes per-step buffers once, before the first forward (nothing allocates per step):
     * at most max_tokens tokens, max_seqs sequences, max_total_kv kv_slots entries per batch,
     * max_seq_len positions per sequence, attention with num_heads heads of head_dim. */
    status_t (*prepare)(backend *b, int32_t max_tokens, int32_t max_seqs, int64_t max_total_kv, int32_t max_seq_len,
                        int32_t num_heads, int32_t head_dim);
    /* The first device error since creation (sticky: a backend that failed refuses further work
     * rather than produce garbage); STATUS_OK on the CPU. Checked after every forward. */
    status_t (*last_error)(backend *b);
    /* Gives the ops a device-readable copy of the batch's index arrays (CPU: *dev = *host). */
    void (*upload_batch)(backend *b, const forward_batch *host, forward_batch *dev);
    /* Free and total bytes of the memory the backend allocates from (device memory; host RAM for
     * the CPU backend), for sizing the KV pool. */
    status_t (*memory_info)(backend *b, size_t *free_bytes, size_t *total_bytes);
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
    /* logits[n, out] (fp32 whatever the activation dtype) = x[n, in] · w[out, in]^T */
    void (*linear_logits)(backend *b, const void *x, const tensor_t *w, int32_t n, float *logits);
    /* In place on q[n, num_heads, head_dim] and k[n, num_kv_heads, head_dim]: optional per-head
     * RMSNorm (q_norm/k_norm weights [head_dim], NULL data = none), then rotary embedding with
     * rope_table[pos, head_dim] (cos | sin halves); then writes k and v[n, num_kv_heads, head_dim]
     * into kv_pool[slot, 2, num_kv_heads, head_dim] at batch->slots. */
    void (*qk_norm_rope_store)(backend *b, void *q, void *k, const void *v, const tensor_t *q_norm,
                               const tensor_t *k_norm, float eps, const float *rope_table,
                               const attention_shape *shape, const forward_batch *batch, void *kv_pool);
    /* out[n, num_heads, head_dim] = causal softmax(q·K^T·scale)·V: token t of sequence s attends
     * positions [0, positions[t]] of s, K/V read from kv_pool through kv_slots. */
    void (*attention)(backend *b, const void *q, const void *kv_pool, const attention_shape *shape,
                      const forward_batch *batch, void *out);
    /* out[n, dim] = silu(gate) * up */
    void (*silu_mul)(backend *b, const void *gate, const void *up, int32_t n, int32_t dim, void *out);
    /* out[m, dim] = x[rows[i], :] */
    void (*gather_rows)(backend *b, const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out);
    /* fp32 host copy of logits[m, vocab] (the CPU backend: memcpy) */
    void (*logits_to_host)(backend *b, const void *logits, int64_t count, float *host);
    /* One token per row of logits[num_rows, vocab] (fp32, read only), with engine/sampling.h's
     * semantics (masks, penalties, greedy / temperature / top_k / top_p / min_p, Philox draw,
     * raw logprobs), and the token written into the next-token table.  CPU backend:
     * sampling_sample_row per row (the reference); CUDA: kernels_sampling (same tokens but for
     * draws within float rounding of a boundary, see csrc/kernels/sampling.cu). */
    void (*sample)(backend *b, const float *logits, int32_t vocab, const sample_batch *batch, const sample_output *out);
} backend_ops;

struct backend {
    const backend_ops *ops;
    dtype_t act_dtype;          /* activation / KV dtype */
};

/* CPU backend: num_threads <= 0 = one per available CPU (or LIGHTLLM_NUM_THREADS). */
status_t backend_cpu_create(int num_threads, backend **out);

#ifdef LIGHTLLM_WITH_CUDA
/* CUDA backend on device `device` (bf16 activations and KV, fp32 accumulation, cuBLASLt GEMMs).
 * STATUS_DEVICE with the failing call's text when there is no usable GPU. */
status_t backend_cuda_create(int device, backend **out);
/* Number of CUDA devices (0 when none or no driver). */
int backend_cuda_device_count(void);
#endif

#endif
