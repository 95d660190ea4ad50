/* kernels.h — C-callable launchers of the CUDA kernels (csrc/kernels/<family>.cu), used by the CUDA
 * backend (csrc/backend/cuda).  One .cu per op family; launchers take the stream explicitly,
 * never allocate, never synchronise, and return the launch's cudaError_t.  Activations, KV and
 * matrices are bf16 (passed as void *); 1-D weights (norms, biases) and the rotary table are
 * fp32; accumulation is fp32.  Shapes are in the comments.  Every launcher has a CPU reference
 * op of the same name family in csrc/backend/cpu, and a test in tests/gpu/.
 */
#ifndef LIGHTLLM_KERNELS_KERNELS_H
#define LIGHTLLM_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[n, dim] = table[ids[i], :]; ids[i] < 0: the id is next_tokens[-1 - ids[i]] (the next-token
 * table; may be NULL when no id is negative) */
cudaError_t kernels_embedding(const void *table, const int32_t *ids, const int32_t *next_tokens, int32_t n, int32_t dim,
                              void *out, cudaStream_t st);
/* out[n, dim] = x * rsqrt(mean(x^2) + eps) * w[dim] */
cudaError_t kernels_rmsnorm(const void *x, const float *w, float eps, int32_t n, int32_t dim, void *out, cudaStream_t st);
/* residual[n, dim] += x; out = rmsnorm(residual) * w  (out may alias x) */
cudaError_t kernels_add_rmsnorm(void *residual, const void *x, const float *w, float eps, int32_t n, int32_t dim,
                                void *out, cudaStream_t st);
/* y[n, dim] += bias[dim] */
cudaError_t kernels_add_bias(void *y, const float *bias, int32_t n, int32_t dim, cudaStream_t st);
/* qkv[n, (num_heads + 2 kv_heads) * head_dim] (each token's q, k, v heads; read only): optional
 * per-head RMSNorm of q and k (q_norm/k_norm [head_dim] or NULL), rotary embedding with
 * rope_table[pos, head_dim] (cos | sin halves, fp32) at positions[n]; q to q_out[n, num_heads,
 * head_dim], k and v to kv_pool[slot, 2, kv_heads, head_dim] at slots[n]. */
cudaError_t kernels_qk_norm_rope_store(const void *qkv, const float *q_norm, const float *k_norm, float eps,
                                       const float *rope_table, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                                       int32_t n, const int32_t *positions, const int32_t *slots, void *q_out,
                                       void *kv_pool, cudaStream_t st);
/* out[n, dim] = silu(gate) * up with gate_up[n, 2 dim] = each row's (gate_j, up_j) pairs */
cudaError_t kernels_silu_mul(const void *gate_up, int32_t n, int32_t dim, void *out, cudaStream_t st);

/* ---- Skinny linear layers (csrc/kernels/gemv.cu): y[n, m] = x[n, k] · w[m, k]^T (+ bias[m],
 * fp32), n <= KERNELS_GEMV_MAX_ROWS token rows, one pass over w with no split-K workspace;
 * y bf16, or fp32 with out_f32.  kernels_gemv_supported: whether the shape and alignment qualify
 * (k % 8 == 0, x and w 16-byte aligned). */
#define KERNELS_GEMV_MAX_ROWS 8
/* on: the GEMVs are launched with programmatic dependent launch (sm_90+; csrc/kernels/pdl.cuh):
 * each starts its weight stream during the tail of the kernel before it (the norms, the attention
 * reduce and the GEMVs let it).  Process-wide; off until set (the CUDA backend sets it from
 * LIGHTLLM_PDL, default on). */
void kernels_set_pdl(int on);
int kernels_gemv_supported(const void *x, const void *w, int32_t n, int64_t m, int64_t k);
cudaError_t kernels_gemv(const void *x, const void *w, int32_t n, int64_t m, int64_t k, const float *bias, void *y,
                         int out_f32, cudaStream_t st);
/* y[n, m / 2] = silu(gate) * up of z = x · w^T for a row-interleaved gate|up w (z's rows 2j, 2j+1
 * are gate_j, up_j; each rounded to bf16 first, as kernels_gemv + kernels_silu_mul store them). */
cudaError_t kernels_gemv_silu(const void *x, const void *w, int32_t n, int64_t m, int64_t k, void *y, cudaStream_t st);
/* residual[n, m] += x · w^T; y[n, m] = rmsnorm(residual) * norm_w (kernels_gemv then
 * kernels_add_rmsnorm in one launch: the last block to finish does the norm).  counter: one
 * device unsigned, 0 before the launch (the kernel leaves it 0); launches using it must not run
 * concurrently.  y must not alias x. */
cudaError_t kernels_gemv_add_rmsnorm(const void *x, const void *w, int32_t n, int64_t m, int64_t k, void *residual,
                                     const float *norm_w, float eps, void *y, unsigned *counter, cudaStream_t st);
/* out[m, dim] = x[rows[i], :] */
cudaError_t kernels_gather_rows(const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out, cudaStream_t st);

/* Causal attention over token-slot KV (page size 1), the batch layout of backend.h:
 * q[num_tokens, num_heads, head_dim], out likewise; token t (of sequence token_seq[t]) attends
 * positions [0, positions[t]] whose KV slots are kv_slots[kv_start[s] + pos].  head_dim 16, 32, 64 or
 * 128; num_heads % num_kv_heads == 0.  workspace: scratch for split-K partials, size from
 * kernels_attention_workspace_bytes. */
size_t kernels_attention_workspace_bytes(int32_t max_tokens, int32_t num_heads, int32_t head_dim, int32_t max_seq_len);
cudaError_t kernels_attention(const void *q, const void *kv_pool, int32_t num_heads, int32_t num_kv_heads,
                              int32_t head_dim, float scale, int32_t num_tokens, int32_t num_seqs,
                              const int32_t *positions, const int32_t *token_seq, const int32_t *q_start,
                              const int32_t *kv_start, const int32_t *kv_slots, int32_t max_q_len, int32_t max_kv_len,
                              void *out, void *workspace, size_t workspace_bytes, cudaStream_t st);

/* ---- Sampling (csrc/kernels/sampling.cu): logits processing + sampling, one block per row
 * (for few rows, the passes over the row split over several blocks first: see sampling.cu).
 * Reproduces the CPU sampler engine/sampling.c (sampling_sample_row) step for step: logprobs of
 * the raw logits; banned ids and the allowed mask -> -inf; repetition / frequency / presence
 * penalties; greedy argmax (temperature 0 or top_k 1, ties -> lowest id); else the same
 * bucketed top_k / top_p / min_p selection and the same inverse-CDF order, with u from the
 * same Philox-4x32-10 (sampling_uniform).  Where the two can differ: see sampling.cu. */
#define KERNELS_SAMPLING_MAX_LOGPROBS 20
#define KERNELS_SAMPLING_NO_TABLE 1u        /* flags: do not write this row's next-token table entry */
#define KERNELS_SAMPLING_NUM_DIAG 4         /* doubles per row of the optional diagnostics */
#define KERNELS_SAMPLING_SPLIT_MAX_BLOCKS 256 /* blocks per row of the split path, at most */
#define KERNELS_SAMPLING_SPLIT_MAX_ROWS 64  /* rows a workspace is sized for, at most */

/* Per-row parameters (host builds them from sampling_params_t; values must pass
 * sampling_params_validate).  56 bytes, no implicit padding. */
typedef struct kernels_sampling_params_t {
    float temperature;          /* 0 = greedy */
    float top_p;                /* 1 = off */
    int32_t top_k;              /* -1 or 0 = off; 1 = greedy */
    float min_p;                /* 0 = off */
    float repetition_penalty;   /* 1 = off */
    float presence_penalty;     /* 0 = off */
    float frequency_penalty;    /* 0 = off */
    int32_t num_logprobs;       /* -1 = off; 0 = the sampled token's logprob + rank; N <= 20: + top N */
    uint64_t rng_key;           /* Philox key (the request's seed) */
    uint64_t rng_counter;       /* Philox counter (e.g. the output position) */
    uint32_t flags;             /* KERNELS_SAMPLING_* */
    uint32_t reserved;          /* 0 */
} kernels_sampling_params_t;

/* Largest vocab_size kernels_sampling accepts on the current device (shared-memory bound;
 * about 450k on H100/H200), or 0 when the device cannot run it. */
int32_t kernels_sampling_max_vocab(void);

/* Bytes of the workspace that lets kernels_sampling split the rows of a launch of up to
 * min(max_rows, KERNELS_SAMPLING_SPLIT_MAX_ROWS) rows over several blocks (~152 KB a row,
 * 9.5 MiB for 64); 0 when max_rows < 1. */
size_t kernels_sampling_workspace_bytes(int32_t max_rows);
/* Blocks per row kernels_sampling uses for m rows (1: the single-block path): blocks_per_row
 * when > 1 (at most KERNELS_SAMPLING_SPLIT_MAX_BLOCKS), 1 when blocks_per_row is 1 or the
 * workspace is too small for m rows; blocks_per_row <= 0: automatic (two blocks per SM in
 * all, at least 2048 tokens each; 1 when that is fewer than 2). */
int32_t kernels_sampling_blocks_per_row(int32_t m, int32_t vocab_size, size_t workspace_bytes, int32_t blocks_per_row);

/* Samples one token per row of logits[m, vocab_size] (fp32, read only; m <= 65535 rows).
 *   params[m]                   per-row parameters.
 *   penalty_offsets[m + 1]      CSR of the penalty set (NULL = no penalties): row i's entries
 *   penalty_ids[nnz]              are [penalty_offsets[i], penalty_offsets[i+1]); its ids are the
 *   penalty_counts[nnz]           DISTINCT tokens of prompt ∪ output, STRICTLY ASCENDING, each
 *                                 with its number of occurrences in the output (0 = prompt only).
 *   banned_offsets[m + 1]       CSR of ids set to -inf (min_tokens not reached: EOS + stop ids;
 *   banned_ids[nnz]               NULL = none; any order, duplicates allowed).
 *   allowed_mask[m, ceil(vocab/32)]  bit i%32 of word i/32 set = token i allowed; NULL = all.
 * Out-of-range ids in either CSR are ignored.
 * Outputs (all written for every row): out_tokens[m]; out_logprobs[m] (raw log_softmax of the
 * token, 0 when num_logprobs < 0); out_ranks[m] (1 + number of raw logits above the token's, 0
 * when off); out_top_ids / out_top_logprobs [m, 20] (the first max(num_logprobs, 0) slots:
 * top raw logprobs, highest first, ties -> lower id; unused slots: id -1, logprob -inf).
 *   next_token_table / table_index[m]: next_token_table[table_index[i]] = out_tokens[i] unless
 *   table_index[i] < 0 or params[i].flags has KERNELS_SAMPLING_NO_TABLE (both NULL = no table).
 *   diag[m, KERNELS_SAMPLING_NUM_DIAG] or NULL (tests): u (-1: no draw); the draw's distance to
 *   the nearest inverse-CDF boundary and the top_p cut's distance to its target, each relative
 *   to its mass (-1: none); the path (0 greedy, 1 draw in a whole bucket, 2 draw in the
 *   boundary bucket, 3 argmax fallback, 4 last-token fallback; +16: a bucket read from the row;
 *   +32: a window of buckets gathered by the per-row block's own pass over the row).
 * workspace[workspace_bytes] (device memory, or NULL: single-block path) holds the split path's
 * per-row partial results (kernels_sampling_workspace_bytes); launches using one workspace must
 * not run concurrently.  blocks_per_row: see kernels_sampling_blocks_per_row (0 = automatic,
 * 1 = the single-block path).  Both paths give the same tokens, ranks, top ids and diag;
 * logprobs can differ in the last bit (the log-sum-exp is summed in another order). */
cudaError_t kernels_sampling(const float *logits, int32_t m, int32_t vocab_size, const kernels_sampling_params_t *params,
                             const int32_t *penalty_offsets, const int32_t *penalty_ids, const int32_t *penalty_counts,
                             const int32_t *banned_offsets, const int32_t *banned_ids, const uint32_t *allowed_mask,
                             int32_t *out_tokens, float *out_logprobs, int32_t *out_ranks, int32_t *out_top_ids,
                             float *out_top_logprobs, int32_t *next_token_table, const int32_t *table_index,
                             double *diag, void *workspace, size_t workspace_bytes, int32_t blocks_per_row,
                             cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
