/* emu_runtime.cpp — the host side of emu_device.h: fiber scheduler for one block at a time,
 * barriers with deadlock detection, and the CUDA runtime calls the tests use (host memory
 * stands in for device memory; streams and events are no-ops; launches run synchronously). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <vector>

#include "emu_device.h"

/* Context switch: x86-64 saves the callee-saved registers on the old stack and swaps stack
 * pointers (no signal-mask syscall, unlike swapcontext); other machines use ucontext. */
#if defined(__x86_64__)
extern "C" void emu_switch(void **save_sp, void *next_sp);
asm(".text\n"
    ".globl emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n");
#define EMU_FAST_SWITCH 1
#endif

namespace {

enum { RUNNABLE, AT_BLOCK, AT_WARP, DONE };

struct Fiber {
    ucontext_t ctx;
    void *sp;
    int state;
};

constexpr size_t kStack = 64 * 1024;
constexpr size_t kMaxShared = 232448;

#ifndef EMU_FAST_SWITCH
ucontext_t g_sched;
#endif
std::vector<Fiber> g_fibers;
std::vector<char> g_stacks;
std::vector<unsigned char> g_warp_slots;
alignas(16) unsigned char g_shared[kMaxShared];
unsigned g_block_dim, g_block, g_current;
emu_kernel_fn g_fn;
void *g_args;
cudaError_t g_last = cudaSuccess;

void *g_sched_sp;

void switch_to_sched(Fiber &f)
{
#ifdef EMU_FAST_SWITCH
    emu_switch(&f.sp, g_sched_sp);
#else
    swapcontext(&f.ctx, &g_sched);
#endif
}

void switch_to_fiber(Fiber &f)
{
#ifdef EMU_FAST_SWITCH
    emu_switch(&g_sched_sp, f.sp);
#else
    swapcontext(&g_sched, &f.ctx);
#endif
}

void trampoline()
{
    g_fn(g_args);
    g_fibers[g_current].state = DONE;
    switch_to_sched(g_fibers[g_current]);
    abort(); /* never resumed */
}

/* Barrier bookkeeping: a fiber that arrives counts itself; the last arrival of its scope
 * (32 lanes of the warp, or every thread of the block) queues the whole scope to run again. */
std::vector<unsigned> g_queue;
size_t g_queue_head;
std::vector<int> g_warp_waiting;
int g_block_waiting, g_done;

void yield(int state)
{
    Fiber &f = g_fibers[g_current];
    f.state = state;
    if (state == AT_WARP) {
        const unsigned w = g_current / 32;
        if (++g_warp_waiting[w] == 32) {
            g_warp_waiting[w] = 0;
            for (unsigned l = 0; l < 32; l++) g_queue.push_back(w * 32 + l);
        }
    } else if (state == AT_BLOCK) {
        if (++g_block_waiting == (int)g_block_dim) {
            g_block_waiting = 0;
            for (unsigned t = 0; t < g_block_dim; t++) g_queue.push_back(t);
        }
    }
    switch_to_sched(f);
}

void fiber_init(Fiber &f, char *stack)
{
#ifdef EMU_FAST_SWITCH
    /* a frame emu_switch can "return" into: 6 saved registers, then trampoline's address; the
     * stack is 16-byte aligned at trampoline's entry minus 8, as after a call */
    uintptr_t top = ((uintptr_t)(stack + kStack)) & ~(uintptr_t)15;
    void **sp = (void **)(top - 8);
    *--sp = (void *)trampoline;
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, trampoline, 0);
#endif
}

void run_block()
{
    const unsigned n = g_block_dim;
    g_queue.clear();
    g_queue_head = 0;
    g_warp_waiting.assign((n + 31) / 32, 0);
    g_block_waiting = 0;
    g_done = 0;
    for (unsigned t = 0; t < n; t++) {
        Fiber &f = g_fibers[t];
        fiber_init(f, &g_stacks[(size_t)t * kStack]);
        f.state = RUNNABLE;
        g_queue.push_back(t);
    }
    while (g_queue_head < g_queue.size()) {
        const unsigned t = g_queue[g_queue_head++];
        if (g_queue_head == g_queue.size()) { /* keep the queue small */
            g_queue.clear();
            g_queue_head = 0;
        }
        g_current = t;
        g_fibers[t].state = RUNNABLE;
        switch_to_fiber(g_fibers[t]);
        if (g_fibers[t].state == DONE) g_done++;
    }
    if (g_done != (int)n) {
        int at_block = 0, at_warp = 0;
        for (unsigned t = 0; t < n; t++) {
            at_block += g_fibers[t].state == AT_BLOCK;
            at_warp += g_fibers[t].state == AT_WARP;
        }
        fprintf(stderr, "emu: block %u: deadlock: %d threads exited, %d at __syncthreads, %d at warp ops "
                        "(a barrier or warp op not reached by its whole scope)\n", g_block, g_done, at_block, at_warp);
        abort();
    }
}

} // namespace

extern "C" {

unsigned emu_thread_index(void) { return g_current; }
unsigned emu_block_index(void) { return g_block; }
void emu_sync_block(void) { yield(AT_BLOCK); }
void emu_sync_warp(void) { yield(AT_WARP); }
void *emu_warp_slot(void) { return &g_warp_slots[(size_t)(g_current / 32) * 32 * 8]; }
unsigned char *emu_shared_memory(void) { return g_shared; }

cudaError_t emu_launch_kernel(emu_kernel_fn fn, void *args, unsigned grid, unsigned block, size_t smem_bytes)
{
    if (block == 0 || block > 1024 || block % 32 || smem_bytes > kMaxShared) return g_last = cudaErrorInvalidValue;
    g_fibers.assign(block, Fiber());
    g_stacks.resize((size_t)block * kStack);
    g_warp_slots.assign((size_t)block * 8, 0);
    g_block_dim = block;
    g_fn = fn;
    g_args = args;
    for (unsigned b = 0; b < grid; b++) {
        memset(g_shared, 0xA5, sizeof g_shared); /* shared memory starts as garbage */
        g_block = b;
        run_block();
    }
    return cudaSuccess;
}

const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated CUDA error"; }
cudaError_t cudaGetLastError(void)
{
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaGetDevice(int *dev) { *dev = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int) { strcpy(p->name, "host emulator"); return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int)
{
    /* an H200's shared memory per block and SM count */
    *v = a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? (int)kMaxShared : a == cudaDevAttrMultiProcessorCount ? 132 : 0;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t emu_malloc(void **p, size_t bytes)
{
    *p = malloc(bytes ? bytes : 1);
    if (*p) memset(*p, 0xCD, bytes);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind) { memcpy(dst, src, bytes); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind, cudaStream_t)
{
    memcpy(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t bytes) { memset(p, v, bytes); return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = nullptr; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t) { *ms = 0.0f; return cudaSuccess; }

}
