/* emu_device.h — runs CUDA kernel source on the host, for tests without a GPU.
 *
 * Force-included (g++ -include) before a .cu compiled as C++ with -DKERNELS_SAMPLING_EMULATE.
 * A block is emulated by kThreads cooperative fibers (ucontext) on one OS thread, scheduled
 * round-robin; __syncthreads and every warp intrinsic (shuffles, ballot) are barriers at which
 * a fiber yields.  A barrier that not every (live) thread of its scope reaches is reported as a
 * deadlock (divergent __syncthreads / warp op: undefined on a GPU) and aborts.  Atomics are
 * plain read-modify-writes (one OS thread).  Float intrinsics map to plain IEEE operations
 * (compile with -ffp-contract=off); expf / exp / log are the host libm's.
 * What it cannot show: races that only a real GPU's concurrency exposes (memory ordering
 * without a barrier), performance, register / shared-memory limits.
 */
#ifndef LIGHTLLM_EMU_DEVICE_H
#define LIGHTLLM_EMU_DEVICE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(a, b)
#define __shared__
#define __align__(n) alignas(n)

struct emu_dim3 {
    unsigned x, y, z;
};
struct float4 {
    float x, y, z, w;
};
struct int2 {
    int x, y;
};
static inline int2 make_int2(int x, int y) { return int2{x, y}; }

/* ---- runtime (emu_runtime.cpp) */
extern "C" {
unsigned emu_thread_index(void);
unsigned emu_block_index(void);
void emu_sync_block(void);
void emu_sync_warp(void);
void *emu_warp_slot(void);      /* this warp's exchange area: 32 lanes × 8 bytes */
unsigned char *emu_shared_memory(void);
typedef void (*emu_kernel_fn)(void *args);
cudaError_t emu_launch_kernel(emu_kernel_fn fn, void *args, unsigned grid, unsigned block, size_t smem_bytes);
}
#define threadIdx (emu_dim3{emu_thread_index(), 0, 0})
#define blockIdx (emu_dim3{emu_block_index(), 0, 0})
#define __syncthreads() emu_sync_block()

/* kernel<<<grid, block, smem, st>>>(args) is written emu_launch(kernel, grid, block, smem, args) */
template <class A>
static inline cudaError_t emu_launch(void (*kernel)(A), unsigned grid, unsigned block, size_t smem, const A &args)
{
    struct Pack {
        void (*k)(A);
        A a;
    } pack{kernel, args};
    return emu_launch_kernel([](void *p) { Pack *q = (Pack *)p; q->k(q->a); }, &pack, grid, block, smem);
}

template <class T>
static inline T emu_exchange(T v, int src_lane)
{
    static_assert(sizeof(T) <= 8, "warp exchange of at most 8 bytes");
    unsigned char *slot = (unsigned char *)emu_warp_slot();
    const int lane = (int)(emu_thread_index() & 31);
    memcpy(slot + 8 * lane, &v, sizeof v);
    emu_sync_warp();
    T r;
    memcpy(&r, slot + 8 * src_lane, sizeof r);
    emu_sync_warp();
    return r;
}
template <class T>
static inline T __shfl_sync(unsigned, T v, int src) { return emu_exchange(v, src & 31); }
template <class T>
static inline T __shfl_xor_sync(unsigned, T v, int m) { return emu_exchange(v, (int)((emu_thread_index() & 31) ^ (unsigned)m)); }
template <class T>
static inline T __shfl_up_sync(unsigned, T v, unsigned d)
{
    const int lane = (int)(emu_thread_index() & 31);
    return emu_exchange(v, lane >= (int)d ? lane - (int)d : lane);
}
static inline unsigned __ballot_sync(unsigned, int pred)
{
    unsigned char *slot = (unsigned char *)emu_warp_slot();
    const int lane = (int)(emu_thread_index() & 31);
    slot[8 * lane] = pred != 0;
    emu_sync_warp();
    unsigned bits = 0;
    for (int l = 0; l < 32; l++) bits |= (unsigned)slot[8 * l] << l;
    emu_sync_warp();
    return bits;
}
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int __ffs(unsigned v) { return __builtin_ffs((int)v); }
static inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz((unsigned)v); }

static inline unsigned atomicAdd(unsigned *p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
static inline int atomicAdd(int *p, int v) { int o = *p; *p = o + v; return o; }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
    unsigned long long o = *p;
    *p = o + v;
    return o;
}
static inline unsigned atomicOr(unsigned *p, unsigned v) { unsigned o = *p; *p = o | v; return o; }

static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
static inline int __float2int_rz(float f) { return (int)f; }
static inline unsigned long long __float2ull_rn(float f) { return (unsigned long long)llrintf(f); }
static inline float __int2float_rn(int i) { return (float)i; }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
template <class T>
static inline T __ldg(const T *p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

#endif
