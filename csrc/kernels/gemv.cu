/* gemv.cu — skinny linear layers for decode: y[n, m] = x[n, k] · w[m, k]^T (+ bias[m]) for
 * n ≤ KERNELS_GEMV_MAX_ROWS token rows, bf16 in, fp32 accumulation, bf16 or fp32 out.
 *
 * At batch 1–8 a linear layer is a stream over its weight matrix: the time floor is the
 * matrix's bytes over the memory bandwidth.  cuBLASLt's choices for these shapes split K and
 * run a second reduction kernel, and reach about 73% of copy bandwidth on H200 (ncu,
 * benchmarks/profile_decode.py).  Here one kernel reads every weight byte once, with no
 * workspace and no second pass:
 *   - a warp owns 2 consecutive output rows and a 1/KS share of k; each lane reads 16-byte
 *     vectors (8 bf16) of its rows, 4 vectors per row in flight (ld.global.nc with
 *     L1::no_allocate: weights are read once per step);
 *   - the matching 8 elements of each of the n x rows are loaded once per vector position and
 *     used for both rows (x stays in L1/L2: it is tiny);
 *   - KS (1, 2 or 4, from the shape only) is chosen so that small matrices still have ~8k warps
 *     streaming: bytes in flight, not instructions, bound a GEMV;
 *   - fp32 partial dot products are reduced across the warp by shuffles and across the KS warps
 *     in shared memory, in a fixed order.
 * Each output's summation order depends on (m, k) only, never on n: a row's result does not
 * change with the batch it is in.  Requires k % 8 == 0 and 16-byte aligned x and w (the launcher
 * refuses otherwise; the backend then uses cuBLASLt).
 */
#include <cuda_bf16.h>

#include "kernels/kernels.h"

namespace {

constexpr int kWarps = 4;        /* warps per block */
constexpr int kRows = 2;         /* output rows per warp */
constexpr int kUnroll = 4;       /* 16-byte vectors per row in flight per lane */
constexpr int kTargetWarps = 8192; /* ~62 warps per SM on 132 SMs: the loads in flight hide HBM latency */

__device__ __forceinline__ uint4 gemv_load_weight(const uint4 *p)
{
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

/* fp32 dot product of 8 bf16 pairs packed in two 16-byte vectors. */
__device__ __forceinline__ float gemv_dot8(const uint4 &a, const uint4 &b, float acc)
{
    const uint32_t av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        acc = fmaf(__uint_as_float(av[i] << 16), __uint_as_float(bv[i] << 16), acc);
        acc = fmaf(__uint_as_float(av[i] & 0xffff0000u), __uint_as_float(bv[i] & 0xffff0000u), acc);
    }
    return acc;
}

template <typename OUT> __device__ __forceinline__ void gemv_store(OUT *p, float v);
template <> __device__ __forceinline__ void gemv_store<float>(float *p, float v) { *p = v; }
template <> __device__ __forceinline__ void gemv_store<__nv_bfloat16>(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

/* x[N, k], w[m, k], bias[m] or NULL, y[N, m].  A block is kWarps warps: kWarps / KS row groups of
 * kRows rows, each split over KS warps along k (warp s of a group reads vectors s*32 + lane,
 * stepping 32*KS: the group's loads are contiguous runs of KS*512 bytes).  The KS partial sums
 * of an output meet in shared memory and are added in warp order. */
template <int N, int KS, typename OUT>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __nv_bfloat16 *__restrict__ x,
                                                           const __nv_bfloat16 *__restrict__ w, int m, int k,
                                                           const float *__restrict__ bias, OUT *__restrict__ y)
{
    constexpr int R = kRows;
    __shared__ float partial[KS > 1 ? kWarps : 1][N * R];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int slice = warp % KS;
    const int row0 = (blockIdx.x * (kWarps / KS) + warp / KS) * R;
    const int num_vec = k / 8;
    const uint4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = reinterpret_cast<const uint4 *>(w) + (size_t)min(row0 + r, m - 1) * num_vec;
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);

    float acc[N][R];
#pragma unroll
    for (int t = 0; t < N; t++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[t][r] = 0.0f;

    constexpr int step = 32 * KS;
    int v = slice * 32 + lane;
    if (row0 < m) {
        for (; v + step * (kUnroll - 1) < num_vec; v += step * kUnroll) { /* full groups: no bounds checks */
            uint4 wv[kUnroll][R];
#pragma unroll
            for (int u = 0; u < kUnroll; u++)
#pragma unroll
                for (int r = 0; r < R; r++) wv[u][r] = gemv_load_weight(wr[r] + v + step * u);
#pragma unroll
            for (int u = 0; u < kUnroll; u++)
#pragma unroll
                for (int t = 0; t < N; t++) {
                    const uint4 xx = __ldg(xv + (size_t)t * num_vec + v + step * u);
#pragma unroll
                    for (int r = 0; r < R; r++) acc[t][r] = gemv_dot8(wv[u][r], xx, acc[t][r]);
                }
        }
        for (; v < num_vec; v += step) { /* the tail, one vector at a time */
            uint4 wv[R];
#pragma unroll
            for (int r = 0; r < R; r++) wv[r] = gemv_load_weight(wr[r] + v);
#pragma unroll
            for (int t = 0; t < N; t++) {
                const uint4 xx = __ldg(xv + (size_t)t * num_vec + v);
#pragma unroll
                for (int r = 0; r < R; r++) acc[t][r] = gemv_dot8(wv[r], xx, acc[t][r]);
            }
        }
    }

    float mine = 0.0f; /* lane i ends up with output (i / R, i % R) */
#pragma unroll
    for (int t = 0; t < N; t++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float s = acc[t][r];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == t * R + r) mine = s;
        }
    if constexpr (KS > 1) {
        if (lane < N * R) partial[warp][lane] = mine;
        __syncthreads();
        if (slice != 0) return;
        mine = 0.0f;
        if (lane < N * R)
#pragma unroll
            for (int s = 0; s < KS; s++) mine += partial[warp + s][lane];
    }
    if (lane < N * R) {
        const int t = lane / R, row = row0 + lane % R;
        if (row < m) gemv_store(y + (size_t)t * m + row, mine + (bias ? bias[row] : 0.0f));
    }
}

template <int N, int KS, typename OUT>
cudaError_t gemv_launch(const void *x, const void *w, int m, int k, const float *bias, void *y, cudaStream_t st)
{
    const int groups = (m + kRows - 1) / kRows, per_block = kWarps / KS;
    const int blocks = (groups + per_block - 1) / per_block;
    gemv_kernel<N, KS, OUT><<<blocks, kWarps * 32, 0, st>>>(static_cast<const __nv_bfloat16 *>(x),
                                                           static_cast<const __nv_bfloat16 *>(w), m, k, bias,
                                                           static_cast<OUT *>(y));
    return cudaGetLastError();
}

template <int N, typename OUT>
cudaError_t gemv_split(const void *x, const void *w, int m, int k, const float *bias, void *y, cudaStream_t st)
{
    /* enough warps to keep ~kTargetWarps loads streams going, and at least kUnroll vectors per lane */
    const int groups = (m + kRows - 1) / kRows, num_vec = k / 8;
    int ks = 1;
    while (ks < kWarps && groups * ks < kTargetWarps && num_vec >= 32 * kUnroll * ks * 2) ks *= 2;
    switch (ks) {
    case 1: return gemv_launch<N, 1, OUT>(x, w, m, k, bias, y, st);
    case 2: return gemv_launch<N, 2, OUT>(x, w, m, k, bias, y, st);
    default: return gemv_launch<N, 4, OUT>(x, w, m, k, bias, y, st);
    }
}

template <typename OUT>
cudaError_t gemv_dispatch(const void *x, const void *w, int n, int m, int k, const float *bias, void *y, cudaStream_t st)
{
    switch (n) {
    case 1: return gemv_split<1, OUT>(x, w, m, k, bias, y, st);
    case 2: return gemv_split<2, OUT>(x, w, m, k, bias, y, st);
    case 3: return gemv_split<3, OUT>(x, w, m, k, bias, y, st);
    case 4: return gemv_split<4, OUT>(x, w, m, k, bias, y, st);
    case 5: return gemv_split<5, OUT>(x, w, m, k, bias, y, st);
    case 6: return gemv_split<6, OUT>(x, w, m, k, bias, y, st);
    case 7: return gemv_split<7, OUT>(x, w, m, k, bias, y, st);
    case 8: return gemv_split<8, OUT>(x, w, m, k, bias, y, st);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" int kernels_gemv_supported(const void *x, const void *w, int32_t n, int64_t m, int64_t k)
{
    return n >= 1 && n <= KERNELS_GEMV_MAX_ROWS && k > 0 && k % 8 == 0 && m > 0 && m < (1ll << 31) && k < (1ll << 31) &&
           (((uintptr_t)x | (uintptr_t)w) & 15u) == 0;
}

extern "C" cudaError_t kernels_gemv(const void *x, const void *w, int32_t n, int64_t m, int64_t k, const float *bias,
                                    void *y, int out_f32, cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (!kernels_gemv_supported(x, w, n, m, k)) return cudaErrorInvalidValue;
    return out_f32 ? gemv_dispatch<float>(x, w, n, (int)m, (int)k, bias, y, st)
                   : gemv_dispatch<__nv_bfloat16>(x, w, n, (int)m, (int)k, bias, y, st);
}
