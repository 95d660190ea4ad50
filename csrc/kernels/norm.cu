/* norm.cu — RMSNorm, residual add + RMSNorm, and bias add over bf16 rows (fp32 math).
 *
 * One block per row; each thread walks the row in 16-byte vectors (8 bf16) when the row
 * length and the pointers allow, else element by element (odd dims).  The sum of squares is a
 * warp-shuffle + shared-memory block reduction in fp32.  add_rmsnorm rounds the new residual
 * to bf16 before normalising it, as a bf16 model does (the stored residual is what is
 * normalised); the second pass re-reads the row (L1/L2 hits) rather than caching it, so any
 * dim works with one code path.  No allocation; launchers return the launch's error.
 */
#include <cuda_bf16.h>

#include "kernels/kernels.h"
#include "kernels/pdl.cuh"

namespace {

constexpr int kVec = 8; /* bf16 per 16-byte vector */

union bf16x8 {
    uint4 u;
    __nv_bfloat16 h[kVec];
};

__device__ __forceinline__ float block_sum(float v, float *shared)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int num_warps = (blockDim.x + 31) >> 5;
    v = lane < num_warps ? shared[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ADD: residual[row] += x[row] (rounded to bf16) first; the norm reads `src` (x or residual). */
template <bool VEC, bool ADD>
__global__ void rmsnorm_kernel(__nv_bfloat16 *residual, const __nv_bfloat16 *x, const float *w, float eps, int dim,
                               __nv_bfloat16 *out)
{
    PDL_TRIGGER(); /* the GEMV after the norm (PDL-launched) may start loading its weights */
    PDL_WAIT();    /* launched with PDL: the GEMV before it is complete */
    __shared__ float shared[32];
    const int64_t base = (int64_t)blockIdx.x * dim;
    const __nv_bfloat16 *xr = x + base;
    __nv_bfloat16 *rr = ADD ? residual + base : nullptr;
    const __nv_bfloat16 *src = ADD ? rr : xr;
    float ss = 0.0f;
    if (VEC) {
        for (int j = threadIdx.x * kVec; j < dim; j += blockDim.x * kVec) {
            bf16x8 a;
            a.u = *reinterpret_cast<const uint4 *>(xr + j);
            if (ADD) {
                bf16x8 r;
                r.u = *reinterpret_cast<const uint4 *>(rr + j);
#pragma unroll
                for (int e = 0; e < kVec; e++) a.h[e] = __float2bfloat16(__bfloat162float(r.h[e]) + __bfloat162float(a.h[e]));
                *reinterpret_cast<uint4 *>(rr + j) = a.u;
            }
#pragma unroll
            for (int e = 0; e < kVec; e++) {
                const float f = __bfloat162float(a.h[e]);
                ss += f * f;
            }
        }
    } else {
        for (int j = threadIdx.x; j < dim; j += blockDim.x) {
            __nv_bfloat16 a = xr[j];
            if (ADD) {
                a = __float2bfloat16(__bfloat162float(rr[j]) + __bfloat162float(a));
                rr[j] = a;
            }
            const float f = __bfloat162float(a);
            ss += f * f;
        }
    }
    /* the barrier inside block_sum also orders this block's x reads before any out write (out may alias x) */
    const float inv = rsqrtf(block_sum(ss, shared) / (float)dim + eps);
    __nv_bfloat16 *yr = out + base;
    if (VEC) {
        for (int j = threadIdx.x * kVec; j < dim; j += blockDim.x * kVec) {
            bf16x8 a;
            a.u = *reinterpret_cast<const uint4 *>(src + j);
            const float4 w0 = *reinterpret_cast<const float4 *>(w + j), w1 = *reinterpret_cast<const float4 *>(w + j + 4);
            const float ww[kVec] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
            for (int e = 0; e < kVec; e++) a.h[e] = __float2bfloat16(__bfloat162float(a.h[e]) * inv * ww[e]);
            *reinterpret_cast<uint4 *>(yr + j) = a.u;
        }
    } else {
        for (int j = threadIdx.x; j < dim; j += blockDim.x)
            yr[j] = __float2bfloat16(__bfloat162float(src[j]) * inv * w[j]);
    }
}

template <bool VEC>
__global__ void add_bias_kernel(__nv_bfloat16 *y, const float *bias, int64_t n, int dim)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if (VEC) { /* dim % 8 == 0: a vector never crosses a row */
        const int64_t num_vec = n * dim / kVec;
        for (int64_t v = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; v < num_vec; v += stride) {
            bf16x8 a;
            a.u = reinterpret_cast<const uint4 *>(y)[v];
            const int j = (int)((v * kVec) % dim);
#pragma unroll
            for (int e = 0; e < kVec; e++) a.h[e] = __float2bfloat16(__bfloat162float(a.h[e]) + bias[j + e]);
            reinterpret_cast<uint4 *>(y)[v] = a.u;
        }
    } else {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * dim; i += stride)
            y[i] = __float2bfloat16(__bfloat162float(y[i]) + bias[i % dim]);
    }
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

int row_threads(int dim, bool vec)
{
    const int units = vec ? dim / kVec : dim;
    int t = (units + 31) / 32 * 32;
    if (t < 32) t = 32;
    if (t > 1024) t = 1024;
    return t;
}

template <bool ADD>
cudaError_t rmsnorm_launch(void *residual, const void *x, const float *w, float eps, int32_t n, int32_t dim, void *out,
                           cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (dim <= 0) return cudaErrorInvalidValue;
    const bool vec = dim % kVec == 0 && aligned16(x) && aligned16(out) && aligned16(w) && (!ADD || aligned16(residual));
    const int threads = row_threads(dim, vec);
    auto *r = static_cast<__nv_bfloat16 *>(residual);
    auto *xx = static_cast<const __nv_bfloat16 *>(x);
    auto *y = static_cast<__nv_bfloat16 *>(out);
    if (vec) return kernels_pdl::launch(rmsnorm_kernel<true, ADD>, dim3(n), dim3(threads), 0, st, r, xx, w, eps, dim, y);
    return kernels_pdl::launch(rmsnorm_kernel<false, ADD>, dim3(n), dim3(threads), 0, st, r, xx, w, eps, dim, y);
}

} // namespace

extern "C" cudaError_t kernels_rmsnorm(const void *x, const float *w, float eps, int32_t n, int32_t dim, void *out,
                                       cudaStream_t st)
{
    return rmsnorm_launch<false>(nullptr, x, w, eps, n, dim, out, st);
}

extern "C" cudaError_t kernels_add_rmsnorm(void *residual, const void *x, const float *w, float eps, int32_t n,
                                           int32_t dim, void *out, cudaStream_t st)
{
    return rmsnorm_launch<true>(residual, x, w, eps, n, dim, out, st);
}

extern "C" cudaError_t kernels_add_bias(void *y, const float *bias, int32_t n, int32_t dim, cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (dim <= 0) return cudaErrorInvalidValue;
    const bool vec = dim % kVec == 0 && aligned16(y);
    const int64_t units = vec ? (int64_t)n * dim / kVec : (int64_t)n * dim;
    const int threads = 256;
    int64_t blocks = (units + threads - 1) / threads;
    if (blocks > 65535) blocks = 65535;
    auto *yy = static_cast<__nv_bfloat16 *>(y);
    if (vec) add_bias_kernel<true><<<(unsigned)blocks, threads, 0, st>>>(yy, bias, n, dim);
    else add_bias_kernel<false><<<(unsigned)blocks, threads, 0, st>>>(yy, bias, n, dim);
    return cudaGetLastError();
}
