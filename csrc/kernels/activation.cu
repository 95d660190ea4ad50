/* activation.cu — SwiGLU's elementwise half: out = silu(gate) * up over bf16 [n, dim], fp32
 * math.  The rows are contiguous, so the n*dim elements are one flat range: a grid-stride
 * loop over 16-byte vectors (8 bf16) when the pointers are aligned, then a scalar tail.  out
 * may alias gate (each element is read before it is written, by the same thread).
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
__global__ void silu_mul_kernel(const __nv_bfloat16 *gate, const __nv_bfloat16 *up, int64_t count, __nv_bfloat16 *out)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (VEC) {
        const int64_t num_vec = count / 8;
        for (int64_t v = tid; v < num_vec; v += stride) {
            bf16x8 g, u;
            g.u = reinterpret_cast<const uint4 *>(gate)[v];
            u.u = reinterpret_cast<const uint4 *>(up)[v];
#pragma unroll
            for (int e = 0; e < 8; e++) g.h[e] = __float2bfloat16(silu_mul1(__bfloat162float(g.h[e]), __bfloat162float(u.h[e])));
            reinterpret_cast<uint4 *>(out)[v] = g.u;
        }
        done = num_vec * 8;
    }
    for (int64_t i = done + tid; i < count; i += stride)
        out[i] = __float2bfloat16(silu_mul1(__bfloat162float(gate[i]), __bfloat162float(up[i])));
}

} // namespace

extern "C" cudaError_t kernels_silu_mul(const void *gate, const void *up, int32_t n, int32_t dim, void *out,
                                        cudaStream_t st)
{
    if (n <= 0) return cudaSuccess;
    if (dim <= 0) return cudaErrorInvalidValue;
    const int64_t count = (int64_t)n * dim;
    const bool vec = (((uintptr_t)gate | (uintptr_t)up | (uintptr_t)out) & 15u) == 0;
    const int threads = 256;
    int64_t blocks = ((vec ? count / 8 : count) + threads - 1) / threads;
    if (blocks < 1) blocks = 1;
    if (blocks > 8192) blocks = 8192;
    auto *g = static_cast<const __nv_bfloat16 *>(gate);
    auto *u = static_cast<const __nv_bfloat16 *>(up);
    auto *y = static_cast<__nv_bfloat16 *>(out);
    if (vec) silu_mul_kernel<true><<<(unsigned)blocks, threads, 0, st>>>(g, u, count, y);
    else silu_mul_kernel<false><<<(unsigned)blocks, threads, 0, st>>>(g, u, count, y);
    return cudaGetLastError();
}
