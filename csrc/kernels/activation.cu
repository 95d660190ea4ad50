/* activation.cu — SwiGLU's elementwise half: out[n, dim] = silu(gate) * up, fp32 math, where
 * gate_up[n, 2 dim] holds each row's (gate_j, up_j) pairs (the row-interleaved projection's
 * output).  A grid-stride loop over 8-byte output vectors (4 bf16, from one 16-byte input vector)
 * when dim % 4 == 0 and the pointers are aligned, else over elements.
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
    if constexpr (VEC) { /* out element 4v + e = pair e of input vector v (rows are whole vectors) */
        for (int64_t v = tid; v < n * dim / 4; v += stride) {
            bf16x8 gu;
            gu.u = reinterpret_cast<const uint4 *>(gate_up)[v];
            union { uint2 u; __nv_bfloat16 h[4]; } y;
#pragma unroll
            for (int e = 0; e < 4; e++) y.h[e] = __float2bfloat16(silu_mul1(__bfloat162float(gu.h[2 * e]), __bfloat162float(gu.h[2 * e + 1])));
            reinterpret_cast<uint2 *>(out)[v] = y.u;
        }
    } else {
        for (int64_t i = tid; i < n * dim; i += stride) /* pairs are contiguous: element i's pair is 2i, 2i+1 */
            out[i] = __float2bfloat16(silu_mul1(__bfloat162float(gate_up[2 * i]), __bfloat162float(gate_up[2 * i + 1])));
    }
}

} // namespace

extern "C" cudaError_t kernels_silu_mul(const void *gate_up, int32_t n, int32_t dim, void *out, cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (dim <= 0) return cudaErrorInvalidValue;
    const int64_t count = (int64_t)n * dim;
    const bool vec = dim % 4 == 0 && ((uintptr_t)gate_up & 15u) == 0 && ((uintptr_t)out & 7u) == 0;
    const int threads = 256;
    int64_t blocks = ((vec ? count / 4 : count) + threads - 1) / threads;
    if (blocks < 1) blocks = 1;
    if (blocks > 8192) blocks = 8192;
    auto *gu = static_cast<const __nv_bfloat16 *>(gate_up);
    auto *y = static_cast<__nv_bfloat16 *>(out);
    if (vec) silu_mul_kernel<true><<<(unsigned)blocks, threads, 0, st>>>(gu, n, dim, y);
    else silu_mul_kernel<false><<<(unsigned)blocks, threads, 0, st>>>(gu, n, dim, y);
    return cudaGetLastError();
}
