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
 * Two fused epilogues remove the elementwise kernels that follow the decode GEMVs (each a
 * launch-bound ~5 µs at batch 1): kernels_gemv_silu emits silu(gate_j) * up_j from a warp's two
 * rows of the row-interleaved gate|up weight; kernels_gemv_add_rmsnorm lets the last block to
 * finish (an atomic count) add the output into the residual and RMS-normalise it.
 * Each output's summation order depends on (m, k) only, never on n: a row's result does not
 * change with the batch it is in.  Requires k % 8 == 0 and 16-byte aligned x and w (the launcher
 * refuses otherwise; the backend then uses cuBLASLt).
 */
#include <cuda_bf16.h>

#include "kernels/kernels.h"
#include "kernels/pdl.cuh"

namespace {

constexpr int kWarps = 4;        /* warps per block */
constexpr int kRows = 2;         /* output rows per warp */
constexpr int kUnroll = 4;       /* 16-byte vectors per row in flight per lane */
constexpr int kTargetWarps = 8192; /* ~62 warps per SM on 132 SMs: the loads in flight hide HBM latency */

__device__ __forceinline__ uint4 gemv_load_weight(const uint4 *p)
{
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];" /* volatile: stays before PDL_WAIT */
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

__device__ __forceinline__ float gemv_round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

/* What happens to the outputs (EPI): 0 y = x·w^T (+ bias); 1 (rows interleaved gate_j, up_j)
 * y[t, j] = silu(gate) * up, each rounded to bf16 first as the unfused path stores them; 2 y =
 * x·w^T, then the last block to finish does residual += y; y = rmsnorm(residual) * norm_w. */
struct gemv_epilogue {
    __nv_bfloat16 *residual;    /* EPI 2: [N, m] */
    const float *norm_w;        /* EPI 2: [m] */
    float eps;
    unsigned *counter;          /* EPI 2: blocks done; 0 before the launch, reset to 0 by the last block */
};

/* EPI 2's tail, run by the last block: the add_rmsnorm of norm.cu over N rows of m (same rounding:
 * the new residual is stored in bf16 and that is what is normalised). */
template <int N>
__device__ void gemv_add_rmsnorm_tail(__nv_bfloat16 *y, int m, const gemv_epilogue &e)
{
    __shared__ float red[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int t = 0; t < N; t++) {
        __nv_bfloat16 *yr = y + (size_t)t * m, *rr = e.residual + (size_t)t * m;
        float ss = 0.0f;
        for (int j = threadIdx.x; j < m; j += blockDim.x) {
            const float d = __bfloat162float(__ushort_as_bfloat16(__ldcg(reinterpret_cast<const unsigned short *>(yr) + j)));
            const __nv_bfloat16 a = __float2bfloat16(__bfloat162float(rr[j]) + d);
            rr[j] = a;
            ss += __bfloat162float(a) * __bfloat162float(a);
        }
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0) red[warp] = ss;
        __syncthreads();
        ss = 0.0f;
#pragma unroll
        for (int i = 0; i < kWarps; i++) ss += red[i];
        const float inv = rsqrtf(ss / (float)m + e.eps);
        for (int j = threadIdx.x; j < m; j += blockDim.x) yr[j] = __float2bfloat16(__bfloat162float(rr[j]) * inv * e.norm_w[j]);
        __syncthreads(); /* red[] is reused by the next row */
    }
}

/* x[N, k], w[m, k], bias[m] or NULL, y[N, m] (EPI 1: [N, m / 2]).  A block is kWarps warps:
 * kWarps / KS row groups of kRows rows, each split over KS warps along k (warp s of a group reads
 * vectors s*32 + lane, stepping 32*KS: the group's loads are contiguous runs of KS*512 bytes).
 * The KS partial sums of an output meet in shared memory and are added in warp order. */
template <int N, int KS, int EPI, typename OUT>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __nv_bfloat16 *__restrict__ x,
                                                           const __nv_bfloat16 *__restrict__ w, int m, int k,
                                                           const float *__restrict__ bias, OUT *__restrict__ y,
                                                           gemv_epilogue epi)
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
    /* Launched with PDL (pdl.cuh): at 1-2 rows the first group of weight loads is issued before
     * waiting for the kernel that writes x (weights are constant), so the stream starts during that
     * kernel's tail; from 3 rows the wait comes first (the early loads cost registers — 72 → 86 at
     * 4 rows — and the step got slower). */
    PDL_TRIGGER(); /* a PDL-launched GEMV after this one may start its own first loads */
    bool waited = N > 2;
    if (waited) PDL_WAIT();
    if (row0 < m) {
        for (; v + step * (kUnroll - 1) < num_vec; v += step * kUnroll) { /* full groups: no bounds checks */
            uint4 wv[kUnroll][R];
#pragma unroll
            for (int u = 0; u < kUnroll; u++)
#pragma unroll
                for (int r = 0; r < R; r++) wv[u][r] = gemv_load_weight(wr[r] + v + step * u);
            if (!waited) { /* the first group's loads are in flight: now wait for x's writer */
                PDL_WAIT();
                waited = true;
            }
#pragma unroll
            for (int u = 0; u < kUnroll; u++)
#pragma unroll
                for (int t = 0; t < N; t++) {
                    const uint4 xx = __ldg(xv + (size_t)t * num_vec + v + step * u);
#pragma unroll
                    for (int r = 0; r < R; r++) acc[t][r] = gemv_dot8(wv[u][r], xx, acc[t][r]);
                }
        }
        if (!waited) PDL_WAIT();
        waited = true;
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
    if (!waited) PDL_WAIT(); /* every block waits before any write */

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
    const bool writer = KS == 1 || slice == 0; /* the warp that holds its group's totals */
    if constexpr (KS > 1) {
        if (lane < N * R) partial[warp][lane] = mine;
        __syncthreads();
        mine = 0.0f;
        if (writer && lane < N * R)
#pragma unroll
            for (int s = 0; s < KS; s++) mine += partial[warp + s][lane];
    }
    if constexpr (EPI == 1) {
        const float up = __shfl_xor_sync(0xffffffffu, mine, 1); /* lane 2t: gate, lane 2t + 1: up */
        if (writer && lane < N * R && (lane & 1) == 0 && row0 < m) {
            const float g = gemv_round_bf16(mine), u = gemv_round_bf16(up);
            gemv_store(y + (size_t)(lane / 2) * (m / 2) + row0 / 2, g / (1.0f + __expf(-g)) * u);
        }
    } else if (writer && lane < N * R) {
        const int t = lane / R, row = row0 + lane % R;
        if (row < m) gemv_store(y + (size_t)t * m + row, mine + (bias ? bias[row] : 0.0f));
    }
    if constexpr (EPI == 2) {
        __shared__ bool last;
        __threadfence(); /* this block's y before its count */
        __syncthreads();
        if (threadIdx.x == 0) last = atomicAdd(epi.counter, 1u) == gridDim.x - 1;
        __syncthreads();
        if (!last) return;
        __threadfence(); /* every block's y is visible */
        gemv_add_rmsnorm_tail<N>(reinterpret_cast<__nv_bfloat16 *>(y), m, epi);
        if (threadIdx.x == 0) *epi.counter = 0u;
    }
}

template <int N, int KS, int EPI, typename OUT>
cudaError_t gemv_launch(const void *x, const void *w, int m, int k, const float *bias, void *y, const gemv_epilogue &e,
                        cudaStream_t st)
{
    const int groups = (m + kRows - 1) / kRows, per_block = kWarps / KS;
    const int blocks = (groups + per_block - 1) / per_block;
    return kernels_pdl::launch(gemv_kernel<N, KS, EPI, OUT>, dim3(blocks), dim3(kWarps * 32), 0, st,
                               static_cast<const __nv_bfloat16 *>(x), static_cast<const __nv_bfloat16 *>(w), m, k, bias,
                               static_cast<OUT *>(y), e);
}

template <int N, int EPI, typename OUT>
cudaError_t gemv_split(const void *x, const void *w, int m, int k, const float *bias, void *y, const gemv_epilogue &e,
                       cudaStream_t st)
{
    /* enough warps to keep ~kTargetWarps loads streams going, and at least kUnroll vectors per lane */
    const int groups = (m + kRows - 1) / kRows, num_vec = k / 8;
    int ks = 1;
    while (ks < kWarps && groups * ks < kTargetWarps && num_vec >= 32 * kUnroll * ks * 2) ks *= 2;
    switch (ks) {
    case 1: return gemv_launch<N, 1, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 2: return gemv_launch<N, 2, EPI, OUT>(x, w, m, k, bias, y, e, st);
    default: return gemv_launch<N, 4, EPI, OUT>(x, w, m, k, bias, y, e, st);
    }
}

template <int EPI, typename OUT>
cudaError_t gemv_dispatch(const void *x, const void *w, int n, int m, int k, const float *bias, void *y,
                          const gemv_epilogue &e, cudaStream_t st)
{
    switch (n) {
    case 1: return gemv_split<1, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 2: return gemv_split<2, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 3: return gemv_split<3, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 4: return gemv_split<4, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 5: return gemv_split<5, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 6: return gemv_split<6, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 7: return gemv_split<7, EPI, OUT>(x, w, m, k, bias, y, e, st);
    case 8: return gemv_split<8, EPI, OUT>(x, w, m, k, bias, y, e, st);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" void kernels_set_pdl(int on) { kernels_pdl::g_enabled.store(on != 0, std::memory_order_relaxed); }

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
    const gemv_epilogue none = {};
    return out_f32 ? gemv_dispatch<0, float>(x, w, n, (int)m, (int)k, bias, y, none, st)
                   : gemv_dispatch<0, __nv_bfloat16>(x, w, n, (int)m, (int)k, bias, y, none, st);
}

extern "C" cudaError_t kernels_gemv_silu(const void *x, const void *w, int32_t n, int64_t m, int64_t k, void *y,
                                         cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (!kernels_gemv_supported(x, w, n, m, k) || m % 2 != 0) return cudaErrorInvalidValue;
    const gemv_epilogue none = {};
    return gemv_dispatch<1, __nv_bfloat16>(x, w, n, (int)m, (int)k, nullptr, y, none, st);
}

extern "C" cudaError_t kernels_gemv_add_rmsnorm(const void *x, const void *w, int32_t n, int64_t m, int64_t k,
                                                void *residual, const float *norm_w, float eps, void *y,
                                                unsigned *counter, cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (!kernels_gemv_supported(x, w, n, m, k) || !residual || !norm_w || !counter) return cudaErrorInvalidValue;
    const gemv_epilogue e = {static_cast<__nv_bfloat16 *>(residual), norm_w, eps, counter};
    return gemv_dispatch<2, __nv_bfloat16>(x, w, n, (int)m, (int)k, nullptr, y, e, st);
}
