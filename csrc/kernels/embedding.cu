/* embedding.cu — row gathers over bf16 matrices: token embedding lookup and gather_rows
 * (the logit rows).  Both are out[i, :] = src[idx[i], :]; one block per output row copies the
 * row in 16-byte vectors when dim and the pointers allow, else element by element.  For the
 * embedding a negative index -1 - r reads the token from next_tokens[r] (the next-token table
 * the sampling kernel wrote earlier on the stream).
 */
#include <cuda_bf16.h>

#include "kernels/kernels.h"

namespace {

template <bool VEC>
__global__ void copy_rows_kernel(const __nv_bfloat16 *src, const int32_t *idx, const int32_t *next_tokens, int dim,
                                 __nv_bfloat16 *out)
{
    const int32_t i = idx[blockIdx.x];
    const int64_t row = i >= 0 || !next_tokens ? i : next_tokens[-1 - i];
    const __nv_bfloat16 *s = src + row * dim;
    __nv_bfloat16 *d = out + (int64_t)blockIdx.x * dim;
    if (VEC) {
        const uint4 *sv = reinterpret_cast<const uint4 *>(s);
        uint4 *dv = reinterpret_cast<uint4 *>(d);
        for (int j = threadIdx.x; j < dim / 8; j += blockDim.x) dv[j] = sv[j];
    } else {
        for (int j = threadIdx.x; j < dim; j += blockDim.x) d[j] = s[j];
    }
}

cudaError_t copy_rows(const void *src, const int32_t *idx, const int32_t *next_tokens, int32_t m, int32_t dim, void *out,
                      cudaStream_t st)
{
    if (m <= 0) return cudaSuccess;
    if (dim <= 0) return cudaErrorInvalidValue;
    const bool vec = dim % 8 == 0 && ((uintptr_t)src & 15u) == 0 && ((uintptr_t)out & 15u) == 0;
    const int units = vec ? dim / 8 : dim;
    int threads = (units + 31) / 32 * 32;
    if (threads > 512) threads = 512;
    auto *s = static_cast<const __nv_bfloat16 *>(src);
    auto *d = static_cast<__nv_bfloat16 *>(out);
    if (vec) copy_rows_kernel<true><<<m, threads, 0, st>>>(s, idx, next_tokens, dim, d);
    else copy_rows_kernel<false><<<m, threads, 0, st>>>(s, idx, next_tokens, dim, d);
    return cudaGetLastError();
}

} // namespace

extern "C" cudaError_t kernels_embedding(const void *table, const int32_t *ids, const int32_t *next_tokens, int32_t n,
                                         int32_t dim, void *out, cudaStream_t st)
{
    return copy_rows(table, ids, next_tokens, n, dim, out, st);
}

extern "C" cudaError_t kernels_gather_rows(const void *x, const int32_t *rows, int32_t m, int32_t dim, void *out,
                                           cudaStream_t st)
{
    return copy_rows(x, rows, NULL, m, dim, out, st);
}
