/* pdl.cuh — programmatic dependent launch (sm_90+) for the decode GEMVs.  A kernel launched with
 * kernels_launch_pdl may start while the kernel before it on the stream is still running, once
 * every block of that kernel has executed PDL_TRIGGER() (or exited).  Its blocks must execute
 * PDL_WAIT() before they read anything an earlier kernel writes and before they write anything
 * an earlier kernel reads; what they do before it (address math, loads of constant weights) overlaps
 * the earlier kernel's tail and the launch latency.  Every block of a PDL-launched kernel executes
 * PDL_WAIT(), so its completion implies its predecessor's (ordering stays transitive).  Both are
 * no-ops below sm_90 and for kernels launched the ordinary way, and work inside CUDA graphs.
 * kernels_set_pdl (kernels.h) turns the PDL launches on or off for the process.
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

namespace kernels_pdl {

/* 1: on; 0: off; -1: not yet looked up (compute capability >= 9 of the current device, once) */
inline std::atomic<int> g_enabled{0};
inline std::atomic<int> g_device_ok{-1};

inline bool enabled()
{
    if (!g_enabled.load(std::memory_order_relaxed)) return false;
    int ok = g_device_ok.load(std::memory_order_relaxed);
    if (ok < 0) {
        int dev = 0, major = 0;
        ok = cudaGetDevice(&dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
        if (!ok) (void)cudaGetLastError();
        g_device_ok.store(ok, std::memory_order_relaxed);
    }
    return ok != 0;
}

/* kernel<<<grid, block, smem, st>>>(args...), with programmatic stream serialization when pdl
 * (a refused PDL launch falls back to the ordinary one). */
template <typename... Params, typename... Args>
cudaError_t launch_if(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                      Args... args)
{
    if (pdl) {
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

/* launch_if with the process-wide setting (kernels_set_pdl) */
template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, Args... args)
{
    return launch_if(enabled(), kernel, grid, block, smem, st, args...);
}

} // namespace kernels_pdl

#endif
