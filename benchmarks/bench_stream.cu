/* bench_stream.cu — read-only streaming kernels for bench_kernels: the read-bandwidth ceiling that
 * a weight-streaming GEMV could reach on this card (the copy ceiling counts a read and a write
 * per byte).  Two ways of reading `bytes` once:
 *   0  each thread loads 16-byte vectors (ld.global.nc, L1::no_allocate), 8 in flight, grid-stride;
 *   1  one thread per block moves 32 KB chunks into shared memory with cp.async.bulk (sm_90 bulk
 *      copies completing on an mbarrier), 4 stages; the block's threads read the landed chunk.
 * Both fold the data into a value stored only if it matches a constant, so no load is dead.
 */
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 8;
constexpr int kChunk = 32 * 1024;
constexpr int kStages = 4;

__device__ __forceinline__ uint4 ld_nc(const uint4 *p)
{
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

__global__ void __launch_bounds__(kThreads) stream_vec_kernel(const uint4 *p, size_t n, unsigned *sink)
{
    unsigned acc = 0;
    const size_t stride = (size_t)gridDim.x * kThreads;
    size_t i = (size_t)blockIdx.x * kThreads + threadIdx.x;
    for (; i + (kUnroll - 1) * stride < n; i += kUnroll * stride) {
        uint4 v[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) v[u] = ld_nc(p + i + u * stride);
#pragma unroll
        for (int u = 0; u < kUnroll; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) {
        const uint4 v = ld_nc(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
#endif

/* chunks blockIdx.x, +gridDim.x, ... of the buffer (bytes % kChunk == 0) */
__global__ void __launch_bounds__(kThreads) stream_bulk_kernel(const char *p, size_t chunks, unsigned *sink)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) uint4 buf[]; /* [kStages][kChunk / 16] */
    __shared__ __align__(8) uint64_t full[kStages];
    const int tid = threadIdx.x;
    if (tid == 0) {
        for (int s = 0; s < kStages; s++) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&full[s])));
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    const size_t mine = chunks > blockIdx.x ? (chunks - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
    auto issue = [&](size_t j) {
        const int s = (int)(j % kStages);
        const char *src = p + (blockIdx.x + j * gridDim.x) * (size_t)kChunk;
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(&full[s])), "r"(kChunk)
                     : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                         smem_addr(buf + (size_t)s * (kChunk / 16))),
                     "l"(src), "r"(kChunk), "r"(smem_addr(&full[s]))
                     : "memory");
    };
    if (tid == 0)
        for (size_t j = 0; j < mine && j < kStages; j++) issue(j);
    unsigned acc = 0;
    for (size_t j = 0; j < mine; j++) {
        const int s = (int)(j % kStages);
        const uint32_t parity = (uint32_t)((j / kStages) & 1);
        uint32_t done = 0;
        while (!done)
            asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                         : "=r"(done)
                         : "r"(smem_addr(&full[s])), "r"(parity)
                         : "memory");
        const uint4 *c = buf + (size_t)s * (kChunk / 16);
        for (int i = tid; i < kChunk / 16; i += kThreads) acc ^= c[i].x ^ c[i].y ^ c[i].z ^ c[i].w;
        __syncthreads(); /* every thread is done with stage s */
        if (tid == 0 && j + kStages < mine) issue(j + kStages);
    }
    if (acc == 0x9e3779b9u) *sink = acc;
#else
    if (threadIdx.x == 0 && blockIdx.x == 0 && chunks == (size_t)-1) *sink = 0;
#endif
}

} // namespace

/* One read of bytes at p (16-byte aligned; variant 1: a multiple of 32 KB) by `variant`. */
extern "C" cudaError_t bench_stream_read(const void *p, size_t bytes, int variant, unsigned *sink, cudaStream_t st)
{
    int dev = 0, sms = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess) return e;
    if (variant == 0) {
        stream_vec_kernel<<<sms * 8, kThreads, 0, st>>>(static_cast<const uint4 *>(p), bytes / 16, sink);
    } else {
        const size_t smem = (size_t)kStages * kChunk;
        e = cudaFuncSetAttribute(stream_bulk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        stream_bulk_kernel<<<sms, kThreads, smem, st>>>(static_cast<const char *>(p), bytes / kChunk, sink);
    }
    return cudaGetLastError();
}
