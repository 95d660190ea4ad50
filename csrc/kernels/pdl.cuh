/* pdl.cuh — programmatic dependent launch (Hopper+): a kernel launched with kernels_launch_pdl
 * may start while the kernel before it on the stream is still running, once every block of that
 * kernel has executed PDL_TRIGGER() (or exited).  Its blocks must execute PDL_WAIT() before they
 * touch anything the earlier kernel writes or reads; what they do before it (address math, L2
 * prefetch of weights) overlaps the earlier kernel's tail and the launch latency.  Both are
 * no-ops below sm_90 and for kernels launched the ordinary way, and work inside CUDA graphs.
 */
#ifndef LIGHTLLM_KERNELS_PDL_CUH
#define LIGHTLLM_KERNELS_PDL_CUH

#include <atomic>

#include <cuda_runtime.h>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define PDL_WAIT() asm volatile("griddepcontrol.wait;\n" ::: "memory")
#define PDL_TRIGGER() asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory")
#else
#define PDL_WAIT() ((void)0)
#define PDL_TRIGGER() ((void)0)
#endif

/* Whether the current device runs PDL (compute capability >= 9), looked up once per device. */
inline bool kernels_pdl_supported()
{
    static std::atomic<int> major[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    int m = major[dev].load(std::memory_order_relaxed);
    if (m == 0) {
        if (cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
            (void)cudaGetLastError();
            return false;
        }
        major[dev].store(m, std::memory_order_relaxed);
    }
    return m >= 9;
}

/* kernel<<<grid, block, smem, st>>>(args...) with programmatic stream serialization where the
 * device supports it (else, or if that launch is refused, an ordinary launch). */
template <typename... Params, typename... Args>
cudaError_t kernels_launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                               Args... args)
{
    if (kernels_pdl_supported()) {
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = st;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        if (cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...) == cudaSuccess) return cudaSuccess;
        (void)cudaGetLastError();
    }
    kernel<<<grid, block, smem, st>>>(static_cast<Params>(args)...);
    return cudaGetLastError();
}

#endif
