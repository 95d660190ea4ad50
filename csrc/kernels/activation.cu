/* activation.cu — SwiGLU's elementwise half: out[n, dim] = silu(gate) * up, fp32 math, where
 * gate_up[n, 2 dim] holds each row's gate then its up (the fused projection's output).  A
 * grid-stride loop over 16-byte vectors (8 bf16) of the output when dim % 8 == 0 and the
 * pointers are aligned, else over elements.
 */
#include <cuda_bf16.h>

#include "kernels/kernels.h"

namespace {

union bf16x8 {
    uint4 u;
    __nv_bfloat16 h[8];
};

__device__ __forceinline__ float silu_mul1(float g, float u) { return g / (1.0f + __expf(-g)) * u; }

template <bool VEC>
__global__ void silu_mul_kernel(const __nv_bfloat16 *gate_up, int64_t n, int dim, __nv_bfloat16 *out)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if constexpr (VEC) {
        const int per_row = dim / 8;
        for (int64_t v = tid; v < n * per_row; v += stride) {
            const int64_t t = v / per_row, j = v % per_row;
            const uint4 *row = reinterpret_cast<const uint4 *>(gate_up + t * 2 * dim);
            bf16x8 g, u;
            g.u = row[j];
            u.u = row[per_row + j];
#pragma unroll
            for (int e = 0; e < 8; e++) g.h[e] = __float2bfloat16(silu_mul1(__bfloat162float(g.h[e]), __bfloat162float(u.h[e])));
            reinterpret_cast<uint4 *>(out)[v] = g.u;
        }
    } else {
        for (int64_t i = tid; i < n * dim; i += stride) {
            const int64_t t = i / dim, j = i % dim;
            const __nv_bfloat16 *row = gate_up + t * 2 * dim;
            out[i] = __float2bfloat16(silu_mul1(__bfloat162float(row[j]), __bfloat162float(row[dim + j])));
        }
    }
}

} // namespace

extern "C" cudaError_t kernels_silu_mul(const void *gate_up, int32_t n, int32_t dim, void *out, cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (dim <= 0) return cudaErrorInvalidValue;
    const int64_t count = (int64_t)n * dim;
    const bool vec = dim % 8 == 0 && (((uintptr_t)gate_up | (uintptr_t)out) & 15u) == 0;
    const int threads = 256;
    int64_t blocks = ((vec ? count / 8 : count) + threads - 1) / threads;
    if (blocks < 1) blocks = 1;
    if (blocks > 8192) blocks = 8192;
    auto *gu = static_cast<const __nv_bfloat16 *>(gate_up);
    auto *y = static_cast<__nv_bfloat16 *>(out);
    if (vec) silu_mul_kernel<true><<<(unsigned)blocks, threads, 0, st>>>(gu, n, dim, y);
    else silu_mul_kernel<false><<<(unsigned)blocks, threads, 0, st>>>(gu, n, dim, y);
    return cudaGetLastError();
}
