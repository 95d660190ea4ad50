/* cpu_gemm.h — the CPU backend's matrix product for linear layers (fp32 compute).
 *
 * CONTRACT (implementation: backend/cpu/cpu_gemm.c)
 *   y[m, n] = x[m, k] · w[n, k]^T (+ bias[n] when bias != NULL)
 * - x: fp32, row-major, row stride ldx floats (ldx >= k).
 * - w: tensor_t of shape [n, k] (the Hugging Face nn.Linear layout), dtype F32, F16 or BF16,
 *   converted to fp32 inside the kernel (no pre-converted copy of the weights is kept).
 * - bias: fp32 [n] or NULL.  y: fp32, row stride ldy.  y must not alias x.
 * - Determinism: every y[i, j] is computed with a summation order that depends only on k
 *   (and the dtype), never on m, on i, or on the thread count: the same row gives bitwise the
 *   same result alone or inside a batch.  The engine relies on this for batch invariance.
 * - Multi-threaded over tp (NULL = single thread); SIMD (AVX-512 / AVX2+FMA chosen at run time
 *   with __builtin_cpu_supports, plus a portable fallback) — the fast paths and the fallback
 *   must also agree bitwise per the rule above only within one machine (same path chosen).
 */
#ifndef LIGHTLLM_BACKEND_CPU_GEMM_H
#define LIGHTLLM_BACKEND_CPU_GEMM_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/threadpool.h"

void cpu_gemm_linear(threadpool *tp, const float *x, int64_t ldx, const tensor_t *w,
                     const float *bias, float *y, int64_t ldy, int64_t m);

#endif
