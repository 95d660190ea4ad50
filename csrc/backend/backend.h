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
#include "engine/sampling.h"

/* One forward step over a ragged batch: num_seqs sequences, each contributing q_len new tokens
 * (concatenated in sequence order) whose KV lands in `slots`.  Attention reads each sequence's
 * KV through kv_slots: the slot of every position 0..kv_len-1 of sequence s is
 * kv_slots[kv_start[s] + pos] (FlashInfer's indptr/indices layout, page size 1).  The engine
 * builds it on the host; backend->upload_batch gives the ops a copy they can read (the CPU
 * backend: the host arrays themselves). */
typedef struct forward_batch {
    int32_t num_tokens;
    const int32_t *token_ids;   /* [num_tokens]; -1 - r: entry r of the next-token table (the token a
                                 * previous step sampled there, not known to the host yet) */
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
    int32_t graph_key;          /* 0: run the ops; else 1 + the backend's graph key (backend_ops.graph_key):
                                 * the device copy is padded to the key's sizes */
} forward_batch;

typedef struct backend backend;

typedef struct attention_shape {
    int32_t num_heads, num_kv_heads, head_dim;
    float scale;                /* softmax scale, head_dim^-0.5 */
} attention_shape;

/* One row for backend_ops.sample: what sampling_sample_row takes besides the logits. */
typedef struct backend_sample_row {
    const sampling_params_t *sp;
    const int32_t *prompt_ids;      /* [num_prompt] (penalties) */
    int32_t num_prompt;
    const int32_t *output_ids;      /* [num_output] (penalties) */
    int32_t num_output;
    const int32_t *banned_ids;      /* [num_banned] */
    int32_t num_banned;
    const uint32_t *allowed_mask;   /* [ceil(vocab/32)] or NULL */
    uint64_t rng_key, rng_counter;
    int32_t table_index;            /* next-token table entry that receives the token (-1: none) */
} backend_sample_row;

#define BACKEND_STEP_SLOTS 2        /* steps in flight at once (engine.h: ENGINE_MAX_INFLIGHT) */

typedef struct backend_ops {
    const char *name;
    int weights_in_device_memory;   /* 1: every weight is copied into the memory memory_info reports
                                     * (model_load checks the config's weight bytes against it first) */
    void (*destroy)(backend *b);
    /* Sizes per-step buffers once, before the first forward (nothing allocates per step):
     * at most max_tokens tokens, max_seqs sequences, max_total_kv kv_slots entries per batch,
     * max_seq_len positions per sequence, attention with num_heads heads of head_dim; the
     * next-token table has max_seqs entries. */
    status_t (*prepare)(backend *b, int32_t max_tokens, int32_t max_seqs, int64_t max_total_kv, int32_t max_seq_len,
                        int32_t num_heads, int32_t head_dim);
    /* The first device error since creation (sticky: a backend that failed refuses further work
     * rather than produce garbage); STATUS_OK on the CPU. Checked after every forward. */
    status_t (*last_error)(backend *b);
    /* Gives the ops a device-readable copy of the batch's index arrays (CPU: *dev = *host).  With
     * host->graph_key set, the copy is padded to the key's batch (extra rows: token 0 at position
     * 0 writing and reading only the pad KV slot b->kv_pad_slot) and max_kv_len to the key's. */
    void (*upload_batch)(backend *b, const forward_batch *host, forward_batch *dev);
    /* CUDA graphs (NULL on the CPU backend).  graph_key: 1 + a key for a decode batch that can run
     * as a captured graph, 0 when it cannot (or graphs are off).  graph_run launches the key's
     * graph when one is captured (1) or returns 0; graph_begin starts capturing the ops that
     * follow (0: not this time — a key runs eagerly once before it is captured); graph_end ends
     * the capture and launches it. */
    int32_t (*graph_key)(backend *b, const forward_batch *host);
    int (*graph_run)(backend *b, int32_t key);
    int (*graph_begin)(backend *b, int32_t key);
    void (*graph_end)(backend *b, int32_t key);
    /* Free and total bytes of the memory the backend allocates from (device memory; host RAM for
     * the CPU backend), for sizing the KV pool. */
    status_t (*memory_info)(backend *b, size_t *free_bytes, size_t *total_bytes);
    /* Device memory (the CPU backend: aligned host memory). */
    status_t (*alloc)(backend *b, size_t bytes, void **out);
    void (*release)(backend *b, void *p);
    /* Makes one weight usable by the ops out of num_parts host tensors (same trailing dims)
     * concatenated along dim 0 (q, k and v as one [q + 2 kv, hidden] matrix) or, with interleave,
     * with their rows alternating (parts of equal rows: part i's row j becomes row j * num_parts
     * + i; gate|up so that rows 2j, 2j+1 are gate_j, up_j).  One part: the CPU backend aliases the
     * host data (mmap); several: it copies them (one dtype, or fp32 when they differ).  The CUDA
     * backend stores matrices in bf16 and 1-D weights in fp32. */
    status_t (*upload_weight)(backend *b, const tensor_t *parts, int32_t num_parts, int interleave, tensor_t *out);
    /* Host → device copy of int32 step inputs (the CPU backend: no-op alias). */
    void (*copy_to_device)(backend *b, void *dst, const void *src, size_t bytes);

    /* out[n, dim] = table[ids[i], :]; ids[i] < 0 reads the token from the next-token table
     * entry -1 - ids[i] (written by an earlier sample, in step order) */
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
    /* qkv[n, (num_heads + 2 num_kv_heads) * head_dim] holds each token's q heads, then k heads,
     * then v heads (the fused projection's output; read only).  Optional per-head RMSNorm of q
     * and k (q_norm/k_norm weights [head_dim], NULL data = none), then rotary embedding with
     * rope_table[pos, head_dim] (cos | sin halves); q goes to q_out[n, num_heads, head_dim], k
     * and v to kv_pool[slot, 2, num_kv_heads, head_dim] at batch->slots. */
    void (*qk_norm_rope_store)(backend *b, const void *qkv, const tensor_t *q_norm, const tensor_t *k_norm, float eps,
                               const float *rope_table, const attention_shape *shape, const forward_batch *batch,
                               void *q_out, void *kv_pool);
    /* out[n, num_heads, head_dim] = causal softmax(q·K^T·scale)·V: token t of sequence s attends
     * positions [0, positions[t]] of s, K/V read from kv_pool through kv_slots. */
    void (*attention)(backend *b, const void *q, const void *kv_pool, const attention_shape *shape,
                      const forward_batch *batch, void *out);
    /* out[n, dim] = silu(gate) * up, gate_up[n, 2 * dim] = each row's (gate_j, up_j) pairs (the
     * output of the row-interleaved gate|up projection) */
    void (*silu_mul)(backend *b, const void *gate_up, int32_t n, int32_t dim, void *out);
    /* out[n, w.out / 2] = silu_mul(x[n, in] · w[out, in]^T) for a row-interleaved gate|up weight;
     * scratch[n, w.out] may be written (the projection's output where the backend does not fuse) */
    void (*linear_silu)(backend *b, const void *x, const tensor_t *w, int32_t n, void *scratch, void *out);
    /* residual[n, w.out] += x[n, in] · w[out, in]^T; out = rmsnorm(residual) * norm_w — linear then
     * add_rmsnorm (the o and down projections into the next norm); out must not alias x */
    void (*linear_add_rmsnorm)(backend *b, const void *x, const tensor_t *w, int32_t n, void *residual,
                               const tensor_t *norm_w, float eps, void *out);
    /* out[m, dim] = x[rows[i], :] */
    void (*gather_rows)(backend *b, const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out);
    /* fp32 host copy of logits[m, vocab] (the CPU backend: memcpy) */
    void (*logits_to_host)(backend *b, const void *logits, int64_t count, float *host);
    /* Steps are asynchronous: step_begin(slot) marks the start of a step's forward, step_forward_end
     * its end, sample does the step's sampling, sample_wait collects it.  A slot (0 ..
     * BACKEND_STEP_SLOTS-1) is reused only after its sample_wait; the next step may be launched
     * before the previous one is waited for.  The host may enqueue sample well after the forward
     * (it computes what sampling needs meanwhile). */
    void (*step_begin)(backend *b, int slot);
    void (*step_forward_end)(backend *b, int slot);
    /* Picks each row's next token from logits[n, vocab] (fp32, as linear_logits wrote them; may be
     * modified) exactly as sampling_sample_row does with rows[i], and writes it to next-token
     * table entry rows[i].table_index.  Reads rows only during the call. */
    void (*sample)(backend *b, int slot, float *logits, int32_t n, int32_t vocab, const backend_sample_row *rows);
    /* Waits for the slot's step: out[n] (the rows of its sample) on the host, and the device time
     * of its forward and of its sampling (not the time queued, nor a wait between the two). */
    void (*sample_wait)(backend *b, int slot, int32_t n, sampling_result_t *out, double *device_seconds);
} backend_ops;

struct backend {
    const backend_ops *ops;
    dtype_t act_dtype;          /* activation / KV dtype */
    int32_t kv_pad_slot;        /* a KV slot no sequence owns (padding rows of graph batches) */
    int64_t num_graph_replays;  /* forwards run as a captured CUDA graph */
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
