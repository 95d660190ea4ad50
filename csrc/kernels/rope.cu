/* rope.cu — per-head q/k RMSNorm (Qwen3), rotary embedding (rotate_half convention) and the
 * KV store, fused in one pass over the fused projection's q, k and v (qkv[n, (heads + 2 kv)
 * * head_dim], read only): q goes to q_out[n, heads, head_dim], k and v to the pool.
 *
 * One warp per (token, head) over the num_heads q heads and num_kv_heads k heads of each
 * token.  Lane l owns the rotation pairs (p, p + half) for p = l, l + 32, … (PAIRS per lane,
 * a compile-time constant: head_dim ≤ 64 → 1, ≤ 128 → 2, ≤ 192 → 3, ≤ 256 → 4), so the
 * per-head norm is a warp reduction and the rotation needs no exchange.  rope_table[pos, :]
 * holds cos in its first half and sin in its second (fp32).  A k-head warp also writes the
 * rotated k and the untouched v of its head into kv_pool[slot, 0|1, head, :].
 */
#include <cuda_bf16.h>

#include "kernels/kernels.h"
#include "kernels/pdl.cuh"

namespace {

constexpr int kWarpsPerBlock = 4;

template <int PAIRS>
__global__ void qk_norm_rope_store_kernel(const __nv_bfloat16 *qkv, const float *q_norm, const float *k_norm, float eps,
                                          const float *rope_table, int num_heads, int num_kv_heads, int head_dim,
                                          int n, const int32_t *positions, const int32_t *slots, __nv_bfloat16 *q_out,
                                          __nv_bfloat16 *kv_pool)
{
    PDL_TRIGGER(); /* the decode attention after it (PDL-launched) may become resident */
    PDL_WAIT();    /* launched with PDL: the qkv GEMV's output is complete */
    const int heads = num_heads + num_kv_heads;
    const int64_t item = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
    if (item >= (int64_t)n * heads) return;
    const int lane = threadIdx.x & 31;
    const int t = (int)(item / heads), h = (int)(item % heads);
    const bool is_q = h < num_heads;
    const int kh = h - num_heads;
    const __nv_bfloat16 *row = qkv + (int64_t)t * (num_heads + 2 * num_kv_heads) * head_dim;
    const __nv_bfloat16 *x = row + (int64_t)h * head_dim; /* k heads follow the q heads */
    const float *w = is_q ? q_norm : k_norm;
    const int half = head_dim / 2;

    float x1[PAIRS], x2[PAIRS];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < PAIRS; i++) {
        const int p = lane + 32 * i;
        x1[i] = p < half ? __bfloat162float(x[p]) : 0.0f;
        x2[i] = p < half ? __bfloat162float(x[p + half]) : 0.0f;
        ss += x1[i] * x1[i] + x2[i] * x2[i];
    }
    if (w) {
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float inv = rsqrtf(ss / (float)head_dim + eps);
#pragma unroll
        for (int i = 0; i < PAIRS; i++) {
            const int p = lane + 32 * i;
            if (p < half) {
                x1[i] = x1[i] * inv * w[p];
                x2[i] = x2[i] * inv * w[p + half];
            }
        }
    }
    const float *rope = rope_table + (int64_t)positions[t] * head_dim;
    __nv_bfloat16 *dst = is_q ? q_out + ((int64_t)t * num_heads + h) * head_dim
                              : kv_pool + ((int64_t)slots[t] * 2 * num_kv_heads + kh) * head_dim;
#pragma unroll
    for (int i = 0; i < PAIRS; i++) {
        const int p = lane + 32 * i;
        if (p < half) {
            const float c = rope[p], s = rope[half + p];
            dst[p] = __float2bfloat16(x1[i] * c - x2[i] * s);
            dst[p + half] = __float2bfloat16(x2[i] * c + x1[i] * s);
        }
    }
    if (!is_q) {
        const __nv_bfloat16 *vs = row + (int64_t)(num_heads + num_kv_heads + kh) * head_dim;
        __nv_bfloat16 *vd = dst + (int64_t)num_kv_heads * head_dim;
        for (int e = lane; e < head_dim; e += 32) vd[e] = vs[e];
    }
}

} // namespace

extern "C" cudaError_t kernels_qk_norm_rope_store(const void *qkv, const float *q_norm, const float *k_norm, float eps,
                                                  const float *rope_table, int32_t num_heads, int32_t num_kv_heads,
                                                  int32_t head_dim, int32_t n, const int32_t *positions, const int32_t *slots,
                                                  void *q_out, void *kv_pool, cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0 || head_dim % 2 != 0) return cudaErrorInvalidValue;
    const int64_t items = (int64_t)n * (num_heads + num_kv_heads);
    const int64_t blocks = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    auto *x = static_cast<const __nv_bfloat16 *>(qkv);
    auto *qo = static_cast<__nv_bfloat16 *>(q_out);
    auto *pool = static_cast<__nv_bfloat16 *>(kv_pool);
    const int pairs = (head_dim / 2 + 31) / 32;
#define ROPE_LAUNCH(P)                                                                                              \
    kernels_pdl::launch(qk_norm_rope_store_kernel<P>, dim3((unsigned)blocks), dim3(kWarpsPerBlock * 32), 0, st, x, q_norm, \
                        k_norm, eps, rope_table, num_heads, num_kv_heads, head_dim, n, positions, slots, qo, pool)
    switch (pairs) {
    case 1: return ROPE_LAUNCH(1);
    case 2: return ROPE_LAUNCH(2);
    case 3: return ROPE_LAUNCH(3);
    case 4: return ROPE_LAUNCH(4);
    default: return cudaErrorInvalidValue; /* head_dim > 256 unsupported */
    }
#undef ROPE_LAUNCH
}
