/* cpu_gemm.c — y[m, n] = x[m, k] · w[n, k]^T (+ bias): the CPU linear layer (contract: cpu_gemm.h).
 *
 * Summation order (the batch-invariance contract).  Every output is one sequential chain
 * over k:  acc = 0;  for kk = 0 .. k-1: acc = fma(x[i, kk], w[j, kk], acc);  y = acc + bias[j]
 * (the portable path uses acc = acc + x*w instead of fma).  Blocking over k keeps this
 * order exactly: between k blocks the running sum is stored to y and loaded back unchanged.
 * So the bits of y[i, j] depend only on row i of x, row j of w and k: never on m, on i, on
 * the tiling over m and n, on the task split or on the thread count.  SIMD lanes run over n
 * (16 columns per AVX-512 register), never over k, so no horizontal reduction exists.
 *
 * Design (BLIS-like).  The output is cut into tasks of at most GEMM_MC rows × nc columns
 * run by the threadpool (dynamic claiming; results do not depend on who runs what).  For
 * each k block and each micro-panel of NR columns a task packs w[jr:jr+NR, pc:pc+kc]
 * transposed into a k-major fp32 panel (converting bf16/f16 in registers; a 16×16
 * in-register transpose on AVX-512, software prefetch of the next panel), which every
 * MR-row micro-tile of the task's rows then streams over.  The micro-kernel keeps an
 * MR × NR tile of y in registers (AVX-512: 6 × 64 = 24 zmm; AVX2: 6 × 16 = 12 ymm) and
 * broadcasts x straight from its rows (x is not packed).  Two loop orders, same arithmetic:
 *  - many rows (prefill): k blocks of GEMM_KC outermost, so x[rows, block] stays in L2 and
 *    each panel is reused by (rows / MR) micro-tiles;
 *  - few rows (decode, <= GEMM_SMALL_M): panels outermost and k blocks of GEMM_KC_SMALL
 *    inside, so each weight row is read front to back once and converted straight into an
 *    L1-resident panel.
 *
 * Memory: the pack panel is a thread-local array (GEMM_KC × 64 floats = 128 KiB per thread
 * that ever runs a GEMM task, set up once by the C runtime); nothing is allocated per call.
 * The ISA (AVX-512 / AVX2+FMA / portable) is chosen once with __builtin_cpu_supports;
 * LIGHTLLM_CPU_GEMM_ISA=avx512|avx2|portable forces a path (tests).
 */
#include "backend/cpu/cpu_gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#if defined(__x86_64__) || defined(__i386__)
#define CPU_GEMM_X86 1
#include <immintrin.h>
#else
#define CPU_GEMM_X86 0
#endif

#define GEMM_KC 512            /* k block, many rows: fewer passes of y through registers */
#define GEMM_KC_SMALL 160      /* k block, few rows: the panel stays in L1, prefetch stays short */
#define GEMM_MC 512            /* rows per task */
#define GEMM_NC 256            /* columns per task (largest; shrunk for load balance) */
#define GEMM_TASKS_PER_THREAD 4
#define GEMM_SMALL_M 24        /* at most this many rows: decode loop order */

typedef struct cpu_gemm_args {
    const float *x;            /* [m, ldx] */
    int64_t ldx;
    const void *w;             /* [n, k] of dtype wt */
    dtype_t wt;
    const float *bias;         /* [n] or NULL */
    float *y;                  /* [m, ldy] */
    int64_t ldy;
    int64_t m, n, k;
    int64_t mc, nc;            /* task tile */
    int64_t num_nblocks;
} cpu_gemm_args;

/* Computes y[i0:i1, j0:j1] completely (all of k, then bias). */
typedef void (*cpu_gemm_block_fn)(const cpu_gemm_args *a, int64_t i0, int64_t i1, int64_t j0,
                                  int64_t j1);

/* The calling thread's pack panel: GEMM_KC × (widest NR) fp32 = 128 KiB, allocated by the
 * C runtime with the thread's TLS (once per thread), too big for every thread's stack. */
#define GEMM_PANEL_FLOATS (GEMM_KC * 64)
static _Thread_local float cpu_gemm_panel[GEMM_PANEL_FLOATS] __attribute__((aligned(64)));

static inline int64_t cpu_gemm_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---------------------------------------------------------------------------------------- */
/* Portable path: same blocking, scalar code; order acc = acc + x*w.                         */

#define PORT_MR 4
#define PORT_NR 16
_Static_assert(GEMM_KC * PORT_NR <= GEMM_PANEL_FLOATS, "pack panel too small");

/* wp[kk * NR + c] = w[jr + c, pc + kk] as fp32, 0 for columns at or past n. */
static void cpu_gemm_pack_portable(const cpu_gemm_args *a, int64_t jr, int64_t pc, int64_t kc,
                                   float *wp, int nr)
{
    for (int c = 0; c < nr; c++) {
        if (jr + c >= a->n) {
            for (int64_t kk = 0; kk < kc; kk++) wp[kk * nr + c] = 0.0f;
            continue;
        }
        int64_t base = (jr + c) * a->k + pc;
        for (int64_t kk = 0; kk < kc; kk++) wp[kk * nr + c] = dtype_load_f32(a->w, a->wt, base + kk);
    }
}

static void cpu_gemm_block_portable(const cpu_gemm_args *a, int64_t i0, int64_t i1, int64_t j0,
                                    int64_t j1)
{
    float *wp = cpu_gemm_panel;
    for (int64_t pc = 0; pc < a->k; pc += GEMM_KC) {
        int64_t kc = cpu_gemm_min(GEMM_KC, a->k - pc);
        int first = pc == 0, last = pc + kc == a->k;
        for (int64_t jr = j0; jr < j1; jr += PORT_NR) {
            int ncols = (int)cpu_gemm_min(PORT_NR, j1 - jr);
            cpu_gemm_pack_portable(a, jr, pc, kc, wp, PORT_NR);
            for (int64_t ir = i0; ir < i1; ir += PORT_MR) {
                int mr = (int)cpu_gemm_min(PORT_MR, i1 - ir);
                float acc[PORT_MR][PORT_NR];
                for (int r = 0; r < mr; r++) {
                    const float *yr = a->y + (ir + r) * a->ldy + jr;
                    for (int c = 0; c < PORT_NR; c++) acc[r][c] = (first || c >= ncols) ? 0.0f : yr[c];
                }
                for (int64_t kk = 0; kk < kc; kk++) {
                    const float *b = wp + kk * PORT_NR;
                    for (int r = 0; r < mr; r++) {
                        float xv = a->x[(ir + r) * a->ldx + pc + kk];
                        for (int c = 0; c < PORT_NR; c++) acc[r][c] = acc[r][c] + xv * b[c];
                    }
                }
                for (int r = 0; r < mr; r++) {
                    float *yr = a->y + (ir + r) * a->ldy + jr;
                    for (int c = 0; c < ncols; c++)
                        yr[c] = (last && a->bias) ? acc[r][c] + a->bias[jr + c] : acc[r][c];
                }
            }
        }
    }
}

#if CPU_GEMM_X86
/* ---------------------------------------------------------------------------------------- */
/* AVX-512 path: MR × NR = 6 × 64 micro-tile (24 zmm accumulators).                          */

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))
#define AVX512_INLINE static inline __attribute__((always_inline, target("avx512f,avx512bw,avx2,fma,f16c")))
#define A5_MR 6
#define A5_NV 4
#define A5_NR (16 * A5_NV)
_Static_assert(GEMM_KC * A5_NR <= GEMM_PANEL_FLOATS, "pack panel too small");

/* 16 consecutive weights of one row as fp32. */
AVX512_INLINE __m512 cpu_gemm_load16_avx512(const void *w, dtype_t wt, int64_t i)
{
    if (wt == DTYPE_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (wt == DTYPE_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* In-place 16×16 transpose: r[i][j] -> r[j][i]. */
AVX512_INLINE void cpu_gemm_transpose16_avx512(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
        __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* r[4i+e] now holds, in 128-bit lane L, element 4L+e of rows 4i..4i+3. */
    for (int e = 0; e < 4; e++) {
        __m512 ab_lo = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x44);
        __m512 ab_hi = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xEE);
        __m512 cd_lo = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x44);
        __m512 cd_hi = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xEE);
        t[e] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
        t[4 + e] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
        t[8 + e] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
        t[12 + e] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

AVX512_INLINE void cpu_gemm_pack_avx512_dt(const cpu_gemm_args *a, dtype_t wt, int64_t jr,
                                           int64_t pc, int64_t kc, float *wp, int64_t pf_delta)
{
    int64_t kc16 = kc & ~(int64_t)15;
    const int64_t pf_mask = wt == DTYPE_F32 ? 15 : 31; /* one prefetch per 64-byte line */
    const char *wb = a->w;
    const int64_t esize = dtype_size(wt);
    for (int g = 0; g < A5_NV; g++) {
        int64_t j = jr + 16 * g;
        int rows = (int)(a->n - j < 0 ? 0 : cpu_gemm_min(16, a->n - j));
        const int64_t row0 = j * a->k + pc;
        for (int64_t kk = 0; kk < kc16; kk += 16) {
            __m512 r[16];
            if (rows == 16) {
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) r[i] = cpu_gemm_load16_avx512(a->w, wt, row0 + i * a->k + kk);
            } else {
                for (int i = 0; i < 16; i++)
                    r[i] = i < rows ? cpu_gemm_load16_avx512(a->w, wt, row0 + i * a->k + kk) : _mm512_setzero_ps();
            }
            if ((kk & pf_mask) == 0) {
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++)
                    _mm_prefetch(wb + (row0 + i * a->k + kk + pf_delta) * esize, _MM_HINT_T0);
            }
            cpu_gemm_transpose16_avx512(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_store_ps(wp + (kk + i) * A5_NR + 16 * g, r[i]);
        }
        for (int64_t kk = kc16; kk < kc; kk++)
            for (int i = 0; i < 16; i++)
                wp[kk * A5_NR + 16 * g + i] = i < rows ? dtype_load_f32(a->w, wt, row0 + i * a->k + kk) : 0.0f;
    }
}

/* pf_delta: element offset from this panel to the next one packed (prefetched meanwhile). */
AVX512_TARGET static void cpu_gemm_pack_avx512(const cpu_gemm_args *a, int64_t jr, int64_t pc,
                                                int64_t kc, float *wp, int64_t pf_delta)
{
    switch (a->wt) {
    case DTYPE_BF16: cpu_gemm_pack_avx512_dt(a, DTYPE_BF16, jr, pc, kc, wp, pf_delta); break;
    case DTYPE_F16: cpu_gemm_pack_avx512_dt(a, DTYPE_F16, jr, pc, kc, wp, pf_delta); break;
    default: cpu_gemm_pack_avx512_dt(a, DTYPE_F32, jr, pc, kc, wp, pf_delta); break;
    }
}

/* y[0:mr, 0:ncols] (+)= x[0:mr, 0:kc] · panel; acc starts at 0 when first, bias added if set. */
AVX512_INLINE void cpu_gemm_kernel_avx512(const int mr, int64_t kc, const float *x, int64_t ldx,
                                          const float *wp, float *y, int64_t ldy, int ncols,
                                          int first, const float *bias)
{
    __mmask16 mask[A5_NV];
    for (int v = 0; v < A5_NV; v++) {
        int c = ncols - 16 * v;
        mask[v] = c >= 16 ? (__mmask16)0xFFFF : c <= 0 ? (__mmask16)0 : (__mmask16)((1u << c) - 1u);
    }
    __m512 acc[A5_MR][A5_NV];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < A5_NV; v++)
            acc[r][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[v], y + r * ldy + 16 * v);
    const float *xr[A5_MR];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) xr[r] = x + r * ldx;
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *b = wp + kk * A5_NR;
        __m512 bv[A5_NV];
#pragma GCC unroll 4
        for (int v = 0; v < A5_NV; v++) bv[v] = _mm512_load_ps(b + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            __m512 xv = _mm512_set1_ps(xr[r][kk]);
#pragma GCC unroll 4
            for (int v = 0; v < A5_NV; v++) acc[r][v] = _mm512_fmadd_ps(xv, bv[v], acc[r][v]);
        }
    }
    if (bias) {
#pragma GCC unroll 4
        for (int v = 0; v < A5_NV; v++) {
            __m512 bv = _mm512_maskz_loadu_ps(mask[v], bias + 16 * v);
#pragma GCC unroll 16
            for (int r = 0; r < mr; r++) acc[r][v] = _mm512_add_ps(acc[r][v], bv);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < A5_NV; v++) _mm512_mask_storeu_ps(y + r * ldy + 16 * v, mask[v], acc[r][v]);
}

/* Runs the micro-kernel over rows [i0, i1) for one packed panel. */
AVX512_TARGET static void cpu_gemm_panel_avx512(const cpu_gemm_args *a, int64_t i0, int64_t i1,
                                                 int64_t jr, int64_t pc, int64_t kc, int ncols,
                                                 const float *wp)
{
    int first = pc == 0;
    const float *bias = pc + kc == a->k && a->bias ? a->bias + jr : NULL;
    for (int64_t ir = i0; ir < i1; ir += A5_MR) {
        const float *x = a->x + ir * a->ldx + pc;
        float *y = a->y + ir * a->ldy + jr;
        switch (cpu_gemm_min(A5_MR, i1 - ir)) {
#define A5_CASE(R) case R: cpu_gemm_kernel_avx512(R, kc, x, a->ldx, wp, y, a->ldy, ncols, first, bias); break;
#if A5_MR > 8
        A5_CASE(14) A5_CASE(13) A5_CASE(12) A5_CASE(11) A5_CASE(10) A5_CASE(9)
#endif
#if A5_MR > 6
        A5_CASE(8) A5_CASE(7)
#endif
        A5_CASE(6) A5_CASE(5) A5_CASE(4) A5_CASE(3) A5_CASE(2) A5_CASE(1)
#undef A5_CASE
        default: LL_ASSERT(0);
        }
    }
}

AVX512_TARGET static void cpu_gemm_block_avx512(const cpu_gemm_args *a, int64_t i0, int64_t i1,
                                                 int64_t j0, int64_t j1)
{
    float *wp = cpu_gemm_panel;
    if (i1 - i0 <= GEMM_SMALL_M) {
        /* Few rows (decode): each weight is used once; walk every row of w along k in turn. */
        for (int64_t jr = j0; jr < j1; jr += A5_NR) {
            int ncols = (int)cpu_gemm_min(A5_NR, j1 - jr);
            for (int64_t pc = 0; pc < a->k; pc += GEMM_KC_SMALL) {
                int64_t kc = cpu_gemm_min(GEMM_KC_SMALL, a->k - pc);
                cpu_gemm_pack_avx512(a, jr, pc, kc, wp, pc + kc < a->k ? kc : A5_NR * a->k - pc);
                cpu_gemm_panel_avx512(a, i0, i1, jr, pc, kc, ncols, wp);
            }
        }
        return;
    }
    /* Many rows (prefill): x[i0:i1, pc:pc+kc] stays in L2 while the panels of w go by. */
    for (int64_t pc = 0; pc < a->k; pc += GEMM_KC) {
        int64_t kc = cpu_gemm_min(GEMM_KC, a->k - pc);
        for (int64_t jr = j0; jr < j1; jr += A5_NR) {
            int ncols = (int)cpu_gemm_min(A5_NR, j1 - jr);
            cpu_gemm_pack_avx512(a, jr, pc, kc, wp, A5_NR * a->k);
            cpu_gemm_panel_avx512(a, i0, i1, jr, pc, kc, ncols, wp);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* AVX2 + FMA path: MR × NR = 6 × 16 micro-tile (12 ymm accumulators).                       */

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define A2_MR 6
#define A2_NV 2
#define A2_NR (8 * A2_NV)
_Static_assert(GEMM_KC * A2_NR <= GEMM_PANEL_FLOATS, "pack panel too small");

AVX2_INLINE __m256 cpu_gemm_load8_avx2(const void *w, dtype_t wt, int64_t i)
{
    if (wt == DTYPE_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (wt == DTYPE_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

AVX2_INLINE void cpu_gemm_transpose8_avx2(__m256 r[8])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        s[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    /* s[4i+e] holds, in 128-bit lane L, element 4L+e of rows 4i..4i+3. */
    for (int e = 0; e < 4; e++) {
        r[e] = _mm256_permute2f128_ps(s[e], s[4 + e], 0x20);
        r[4 + e] = _mm256_permute2f128_ps(s[e], s[4 + e], 0x31);
    }
}

AVX2_INLINE void cpu_gemm_pack_avx2_dt(const cpu_gemm_args *a, dtype_t wt, int64_t jr, int64_t pc,
                                       int64_t kc, float *wp)
{
    int64_t kc8 = kc & ~(int64_t)7;
    for (int g = 0; g < A2_NV; g++) {
        int64_t j = jr + 8 * g;
        int rows = (int)(a->n - j < 0 ? 0 : cpu_gemm_min(8, a->n - j));
        const int64_t row0 = j * a->k + pc;
        for (int64_t kk = 0; kk < kc8; kk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < rows ? cpu_gemm_load8_avx2(a->w, wt, row0 + i * a->k + kk) : _mm256_setzero_ps();
            cpu_gemm_transpose8_avx2(r);
            for (int i = 0; i < 8; i++) _mm256_store_ps(wp + (kk + i) * A2_NR + 8 * g, r[i]);
        }
        for (int64_t kk = kc8; kk < kc; kk++)
            for (int i = 0; i < 8; i++)
                wp[kk * A2_NR + 8 * g + i] = i < rows ? dtype_load_f32(a->w, wt, row0 + i * a->k + kk) : 0.0f;
    }
}

AVX2_TARGET static void cpu_gemm_pack_avx2(const cpu_gemm_args *a, int64_t jr, int64_t pc,
                                            int64_t kc, float *wp)
{
    switch (a->wt) {
    case DTYPE_BF16: cpu_gemm_pack_avx2_dt(a, DTYPE_BF16, jr, pc, kc, wp); break;
    case DTYPE_F16: cpu_gemm_pack_avx2_dt(a, DTYPE_F16, jr, pc, kc, wp); break;
    default: cpu_gemm_pack_avx2_dt(a, DTYPE_F32, jr, pc, kc, wp); break;
    }
}

/* Lanes [0, c) of an 8-float vector as a maskload mask. */
AVX2_INLINE __m256i cpu_gemm_mask8_avx2(int c)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2_INLINE void cpu_gemm_kernel_avx2(const int mr, int64_t kc, const float *x, int64_t ldx,
                                      const float *wp, float *y, int64_t ldy, int ncols, int first,
                                      const float *bias)
{
    __m256i mask[A2_NV];
    for (int v = 0; v < A2_NV; v++) mask[v] = cpu_gemm_mask8_avx2(ncols - 8 * v);
    __m256 acc[A2_MR][A2_NV];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < A2_NV; v++)
            acc[r][v] = first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + r * ldy + 8 * v, mask[v]);
    const float *xr[A2_MR];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) xr[r] = x + r * ldx;
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *b = wp + kk * A2_NR;
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            __m256 xv = _mm256_broadcast_ss(xr[r] + kk);
            acc[r][0] = _mm256_fmadd_ps(xv, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xv, b1, acc[r][1]);
        }
    }
    if (bias) {
#pragma GCC unroll 2
        for (int v = 0; v < A2_NV; v++) {
            __m256 bv = _mm256_maskload_ps(bias + 8 * v, mask[v]);
#pragma GCC unroll 16
            for (int r = 0; r < mr; r++) acc[r][v] = _mm256_add_ps(acc[r][v], bv);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < A2_NV; v++) _mm256_maskstore_ps(y + r * ldy + 8 * v, mask[v], acc[r][v]);
}

AVX2_TARGET static void cpu_gemm_block_avx2(const cpu_gemm_args *a, int64_t i0, int64_t i1,
                                             int64_t j0, int64_t j1)
{
    float *wp = cpu_gemm_panel;
    for (int64_t pc = 0; pc < a->k; pc += GEMM_KC) {
        int64_t kc = cpu_gemm_min(GEMM_KC, a->k - pc);
        int first = pc == 0;
        const float *bias = pc + kc == a->k ? a->bias : NULL;
        for (int64_t jr = j0; jr < j1; jr += A2_NR) {
            int ncols = (int)cpu_gemm_min(A2_NR, j1 - jr);
            const float *bias_jr = bias ? bias + jr : NULL;
            cpu_gemm_pack_avx2(a, jr, pc, kc, wp);
            for (int64_t ir = i0; ir < i1; ir += A2_MR) {
                const float *x = a->x + ir * a->ldx + pc;
                float *y = a->y + ir * a->ldy + jr;
                switch (cpu_gemm_min(A2_MR, i1 - ir)) {
                case 1: cpu_gemm_kernel_avx2(1, kc, x, a->ldx, wp, y, a->ldy, ncols, first, bias_jr); break;
                case 2: cpu_gemm_kernel_avx2(2, kc, x, a->ldx, wp, y, a->ldy, ncols, first, bias_jr); break;
                case 3: cpu_gemm_kernel_avx2(3, kc, x, a->ldx, wp, y, a->ldy, ncols, first, bias_jr); break;
                case 4: cpu_gemm_kernel_avx2(4, kc, x, a->ldx, wp, y, a->ldy, ncols, first, bias_jr); break;
                case 5: cpu_gemm_kernel_avx2(5, kc, x, a->ldx, wp, y, a->ldy, ncols, first, bias_jr); break;
                default: cpu_gemm_kernel_avx2(6, kc, x, a->ldx, wp, y, a->ldy, ncols, first, bias_jr); break;
                }
            }
        }
    }
}
#endif /* CPU_GEMM_X86 */

/* ---------------------------------------------------------------------------------------- */
/* Dispatch.                                                                                 */

typedef struct cpu_gemm_isa {
    cpu_gemm_block_fn block;
    int64_t nr;                /* micro-panel width: task column tiles are multiples of it */
} cpu_gemm_isa;

static cpu_gemm_isa cpu_gemm_chosen;
static pthread_once_t cpu_gemm_once = PTHREAD_ONCE_INIT;

static void cpu_gemm_choose_isa(void)
{
    const char *force = getenv("LIGHTLLM_CPU_GEMM_ISA");
    cpu_gemm_chosen = (cpu_gemm_isa){cpu_gemm_block_portable, PORT_NR};
    if (force && strcmp(force, "portable") == 0) return;
#if CPU_GEMM_X86
    __builtin_cpu_init();
    int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    if (has_avx512 && !(force && strcmp(force, "avx2") == 0)) {
        cpu_gemm_chosen = (cpu_gemm_isa){cpu_gemm_block_avx512, A5_NR};
    } else if (has_avx2) {
        cpu_gemm_chosen = (cpu_gemm_isa){cpu_gemm_block_avx2, A2_NR};
    }
#endif
}

static void cpu_gemm_task(void *ctx, int task, int thread)
{
    const cpu_gemm_args *a = ctx;
    int64_t ib = task / a->num_nblocks, jb = task % a->num_nblocks;
    int64_t i0 = ib * a->mc, j0 = jb * a->nc;
    cpu_gemm_chosen.block(a, i0, cpu_gemm_min(i0 + a->mc, a->m), j0, cpu_gemm_min(j0 + a->nc, a->n));
}

void cpu_gemm_linear(threadpool *tp, const float *x, int64_t ldx, const tensor_t *w,
                     const float *bias, float *y, int64_t ldy, int64_t m)
{
    LL_ASSERT(w->ndim == 2);
    LL_ASSERT(w->dtype == DTYPE_F32 || w->dtype == DTYPE_F16 || w->dtype == DTYPE_BF16);
    int64_t n = w->shape[0], k = w->shape[1];
    LL_ASSERT(m >= 0 && ldx >= k && ldy >= n);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) y[i * ldy + j] = bias ? bias[j] : 0.0f;
        return;
    }
    pthread_once(&cpu_gemm_once, cpu_gemm_choose_isa);
    const int64_t nr = cpu_gemm_chosen.nr;
    cpu_gemm_args a = {
        .x = x, .ldx = ldx, .w = w->data, .wt = w->dtype, .bias = bias, .y = y, .ldy = ldy,
        .m = m, .n = n, .k = k,
    };
    int num_threads = threadpool_num_threads(tp);
    a.mc = m < GEMM_MC ? m : GEMM_MC;
    int64_t num_mblocks = (m + a.mc - 1) / a.mc;
    /* Column tile: at most GEMM_NC, small enough to give every thread a few tasks. */
    int64_t want_nblocks = (GEMM_TASKS_PER_THREAD * num_threads + num_mblocks - 1) / num_mblocks;
    int64_t nc = (n + want_nblocks - 1) / want_nblocks;
    nc = (nc + nr - 1) / nr * nr;
    if (nc > GEMM_NC) nc = GEMM_NC;
    if (nc < nr) nc = nr;
    a.nc = nc;
    a.num_nblocks = (n + nc - 1) / nc;
    int64_t num_tasks = num_mblocks * a.num_nblocks;
    LL_ASSERT(num_tasks <= 0x7fffffff);
    threadpool_run(tp, cpu_gemm_task, &a, (int)num_tasks);
}
