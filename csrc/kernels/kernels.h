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

/* out[n, dim] = table[ids[i], :] */
cudaError_t kernels_embedding(const void *table, const int32_t *ids, int32_t n, int32_t dim, void *out, cudaStream_t st);
/* out[n, dim] = x * rsqrt(mean(x^2) + eps) * w[dim] */
cudaError_t kernels_rmsnorm(const void *x, const float *w, float eps, int32_t n, int32_t dim, void *out, cudaStream_t st);
/* residual[n, dim] += x; out = rmsnorm(residual) * w  (out may alias x) */
cudaError_t kernels_add_rmsnorm(void *residual, const void *x, const float *w, float eps, int32_t n, int32_t dim,
                                void *out, cudaStream_t st);
/* y[n, dim] += bias[dim] */
cudaError_t kernels_add_bias(void *y, const float *bias, int32_t n, int32_t dim, cudaStream_t st);
/* In place: optional per-head RMSNorm (q_norm/k_norm [head_dim] or NULL), rotary embedding with
 * rope_table[pos, head_dim] (cos | sin halves, fp32) at positions[n]; then k and v[n, kv_heads,
 * head_dim] are written to kv_pool[slot, 2, kv_heads, head_dim] at slots[n]. */
cudaError_t kernels_qk_norm_rope_store(void *q, void *k, const void *v, const float *q_norm, const float *k_norm,
                                       float eps, const float *rope_table, int32_t num_heads, int32_t num_kv_heads,
                                       int32_t head_dim, int32_t n, const int32_t *positions, const int32_t *slots,
                                       void *kv_pool, cudaStream_t st);
/* out[n, dim] = silu(gate) * up  (out may alias gate) */
cudaError_t kernels_silu_mul(const void *gate, const void *up, int32_t n, int32_t dim, void *out, cudaStream_t st);
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

#ifdef __cplusplus
}
#endif

#endif
