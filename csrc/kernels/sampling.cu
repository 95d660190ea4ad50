/* sampling.cu — logits processing + sampling on the GPU: one 1024-thread block per row, no
 * full-vocabulary sort, no workspace, logits read only.  The CPU sampler (engine/sampling.c,
 * sampling_sample_row) is the specification; this file re-does its steps with the same
 * float arithmetic so that the same inputs give the same token.
 *
 * Per row (all state in shared memory, ~110 KB + 2 bits per token):
 *   0. bitsets of the banned ids and of the penalty ids (CSR inputs), so that every pass can
 *      compute the FINAL logit y of token i on the fly from the raw logit: allowed-mask bit
 *      clear or banned -> -inf; in the penalty set -> the CPU's penalty arithmetic, with the
 *      output count found by binary search in the row's ascending id list.  The raw logits are
 *      never written.
 *   P1 one pass over the row: raw max + log-sum-exp (online, double), the raw top-N (a sorted
 *      list per warp held one entry per lane, insertion by ballot + shuffle, then merged by
 *      warp 0), the argmax of y (lowest id on ties; NaN never wins) and y's finite minimum.
 *   greedy (temperature 0 or top_k 1), or y's max not finite: token = argmax.
 *   P2 one pass: z = (y - max) / T, p = exp(z) with the CPU's polynomial (bit-identical: every
 *      operation is a *_rn intrinsic, so nothing is contracted into an FMA), the CPU's linear
 *      bucket of -z (same span, same 4096-bucket cap), per-bucket count and mass, and the
 *      number of tokens with p >= min_p.  Masses are 64-bit fixed point (p * 2^42, rounded):
 *      integer atomics, exact and order-independent sums, so the GPU result is deterministic.
 *      Then an exclusive block scan turns the histograms into prefix sums.
 *   top_k, top_p, min_p and the draw then follow the CPU's decisions exactly: bucket-level
 *      decisions are binary searches over the prefix sums; decisions inside one bucket use a
 *      radix descent (8-bit digits) over the members' keys — rank order (z descending, id
 *      ascending) or id order — with a count or a mass criterion.  The members come from a
 *      window of up to 4096 tokens gathered into shared memory by one pass over the row (the
 *      longest run of buckets ending at the one asked for, extended forward), or, for a bucket
 *      larger than the window (massive exact ties), straight from the row (one pass per
 *      digit: slow but rare; diag flags it).
 *   The draw: u = Philox-4x32-10(rng_key, rng_counter) exactly as sampling_uniform; the
 *      inverse CDF in the CPU's order: whole buckets ascending with ids ascending inside, then
 *      the boundary bucket's kept members in rank order.
 *   Rank (logprobs on): 1 + #raw logits above the token's — read off the raw top-N list (or
 *      the raw max) when the token is in it, else one more pass.
 * Row reads: greedy 1; sampling typically 3 (P1, P2, one window gather) + 1 when the rank
 * needs its pass.  The exact bucket arithmetic (IEEE division, the exp polynomial) costs
 * ~50 instructions a token, so P2 is compute-bound; later passes run it only for tokens that
 * a conservative float prefilter (Row::maybe_bucket) cannot rule out.  Light passes issue
 * kUnroll float4 loads per thread before use.  One block per row leaves m = 1 far from the
 * bandwidth floor (several blocks or a cluster per row would be the next step); large
 * batches fill the GPU with rows.  The sampling phase keeps its loop invariants (Row) in
 * shared memory: 1024 threads have 64 registers each.
 *
 * Where GPU and CPU can differ (everything else is bit-identical given the same inputs):
 *   - masses: the CPU sums p (the top token's p is 1) in double in its own order; the GPU sums
 *     round(p * 2^42) exactly.  Each p moves by at most 2^-43, so a sum moves by at most
 *     vocab * 2^-43 (~1.7e-8 at 152k tokens; typically sqrt(vocab) * 2^-44, ~1e-11): the top_p
 *     cut (first cum >= top_p * mass) and the draw (first cum > u * total) can pick the
 *     neighbouring token only when their target lies that close to a boundary; diag reports
 *     the GPU's relative margins (tests accept a mismatch only with a margin < 1e-9).  A token
 *     with p < 2^-43 (1e-13 of the top token's probability) has zero mass here and is never
 *     drawn (the CPU draws it with that probability).
 *   - logprobs: the GPU's log-sum-exp uses expf with an online max (the CPU: its polynomial
 *     after a max pass): logprobs agree to ~1e-6; top ids, ranks and tokens exactly.
 *   - the CPU's unreachable fallbacks (zero total mass; no kept token reached by the draw)
 *     take the argmax of z there and of y here; these differ only if T is so large that z
 *     underflows to zero for a token below the max.
 *   - out-of-range ids in the CSR inputs are ignored here (the CPU sampler asserts).
 *   - exact equality assumes the CPU build does not contract float ops into FMAs (C11 mode,
 *     -std=c11: -ffp-contract=off) and uses IEEE division; setup.py's flags do.
 * tests/gpu/emu runs this file on the host (KERNELS_SAMPLING_EMULATE: two #ifdefs below).
 */
#include <stdint.h>

#include "kernels/kernels.h"

namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxBuckets = 4096;          /* NUM_BUCKETS of sampling.c */
constexpr uint32_t kZCutBits = 0x42AE0000u; /* 87.0f */
constexpr float kZCut = 87.0f;
constexpr int kWindow = 4096;              /* members gathered into shared memory at once */
constexpr int kMaxTop = KERNELS_SAMPLING_MAX_LOGPROBS;
constexpr float kMassScale = 4398046511104.0f; /* 2^42: fixed-point mass unit */
constexpr unsigned kFull = 0xffffffffu;
constexpr unsigned long long kNoLimit = ~0ull;
constexpr int kUnroll = 4;                 /* float4 loads in flight per thread in a row pass */

enum { MODE_COUNT = 0, MODE_MASS_GE = 1, MODE_MASS_GT = 2 };
enum { PATH_GREEDY = 0, PATH_BUCKET = 1, PATH_BOUNDARY = 2, PATH_ARGMAX = 3, PATH_LAST = 4, PATH_ROW_SOURCE = 16 };

/* Dynamic shared memory: the fixed part, then two bitsets of ceil(vocab/32) words. */
struct Smem {
    unsigned long long mass[kMaxBuckets];  /* bucket mass, then exclusive prefix (fixed point) */
    unsigned long long win_key[kWindow];   /* window members' rank keys (P1: top-N merge scratch) */
    unsigned int count[kMaxBuckets];       /* bucket count, then exclusive prefix */
    float win_p[kWindow];
    unsigned short win_bucket[kWindow];
    unsigned long long bin_mass[256];
    unsigned int bin_count[256];
    unsigned long long red_u64[kWarps];
    double red_f64[kWarps];
    int red_i32[kWarps];
    float top_v[kMaxTop];                  /* the raw top-N values, best first (top_n valid) */
    int top_n;
    alignas(8) unsigned char row[160]; /* the Row (loop invariants kept in shared memory, not registers) */
    /* descent step result (written by one lane of warp 0) */
    unsigned long long d_mass_add, d_p, d_total_mass;
    unsigned int d_cnt_add, d_total_cnt;
    int d_digit, d_found;
    unsigned int win_n;
};

size_t smem_bytes(int32_t vocab) { return sizeof(Smem) + 2 * sizeof(uint32_t) * (size_t)((vocab + 31) / 32); }

struct Args {
    const float *logits;
    int32_t m, vocab;
    const kernels_sampling_params_t *params;
    const int32_t *pen_off, *pen_ids, *pen_cnt, *ban_off, *ban_ids;
    const uint32_t *mask;
    int32_t *tokens;
    float *logprobs;
    int32_t *ranks, *top_ids;
    float *top_logprobs;
    int32_t *table;
    const int32_t *table_index;
    double *diag;
};

/* ------------------------------------------------------------------ arithmetic shared with the CPU */

/* Order-preserving int key of a non-NaN float, -0 folded onto +0 (the CPU adds 0.0f first). */
__device__ __forceinline__ int32_t float_key(float x)
{
    int32_t b = __float_as_int(x);
    if ((b & 0x7FFFFFFF) == 0) b = 0;
    return b ^ ((b >> 31) & 0x7FFFFFFF);
}

__device__ __forceinline__ float key_float(int32_t k) { return __int_as_float(k ^ ((k >> 31) & 0x7FFFFFFF)); }

/* sampling.c exp_nonpositive, operation for operation (z in [-87, 0]). */
__device__ __forceinline__ float exp_nonpositive(float z)
{
    const float magic = 0x1.8p23f;
    const float t = __fadd_rn(__fmul_rn(z, 0x1.715476p+0f), magic);
    const float n = __fsub_rn(t, magic);
    float r = __fsub_rn(z, __fmul_rn(n, 0x1.62e400p-1f));
    r = __fsub_rn(r, __fmul_rn(n, 0x1.7f7d1cp-20f));
    float q = 0x1.6c16c2p-10f;
    q = __fadd_rn(__fmul_rn(q, r), 0x1.111112p-7f);
    q = __fadd_rn(__fmul_rn(q, r), 0x1.555556p-5f);
    q = __fadd_rn(__fmul_rn(q, r), 0x1.555556p-3f);
    q = __fadd_rn(__fmul_rn(q, r), 0.5f);
    q = __fadd_rn(__fmul_rn(q, r), 1.0f);
    q = __fadd_rn(__fmul_rn(q, r), 1.0f);
    const uint32_t sb = (__float_as_uint(t) - 0x4B400000u + 127u) << 23;
    return __fmul_rn(q, __uint_as_float(sb));
}

/* sampling.c sampling_uniform: Philox-4x32-10, counter {lo, hi, 0, 0}, key {lo, hi}. */
__device__ double philox_uniform(unsigned long long key, unsigned long long counter)
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#pragma unroll
    for (int round = 0; round < 10; round++) {
        const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    const unsigned long long bits = ((unsigned long long)c0 << 32) | c1;
    return (double)(bits >> 11) * 0x1.0p-53;
}

__device__ __forceinline__ unsigned long long mass_fx(float p) { return __float2ull_rn(__fmul_rn(p, kMassScale)); }

/* ------------------------------------------------------------------ block helpers */

__device__ __forceinline__ unsigned long long block_max_u64(unsigned long long v, Smem &s)
{
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long w = __shfl_xor_sync(kFull, v, o);
        v = w > v ? w : v;
    }
    if ((threadIdx.x & 31) == 0) s.red_u64[threadIdx.x >> 5] = v;
    __syncthreads();
    unsigned long long r = s.red_u64[0];
    for (int w = 1; w < kWarps; w++) r = s.red_u64[w] > r ? s.red_u64[w] : r;
    __syncthreads();
    return r;
}

/* op 0: max, 1: min, 2: sum */
__device__ __forceinline__ int block_reduce_i32(int v, int op, Smem &s)
{
    for (int o = 16; o > 0; o >>= 1) {
        const int w = __shfl_xor_sync(kFull, v, o);
        v = op == 0 ? max(v, w) : op == 1 ? min(v, w) : v + w;
    }
    if ((threadIdx.x & 31) == 0) s.red_i32[threadIdx.x >> 5] = v;
    __syncthreads();
    int r = s.red_i32[0];
    for (int w = 1; w < kWarps; w++) r = op == 0 ? max(r, s.red_i32[w]) : op == 1 ? min(r, s.red_i32[w]) : r + s.red_i32[w];
    __syncthreads();
    return r;
}

__device__ __forceinline__ double block_sum_f64(double v, Smem &s)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if ((threadIdx.x & 31) == 0) s.red_f64[threadIdx.x >> 5] = v;
    __syncthreads();
    double r = s.red_f64[0];
    for (int w = 1; w < kWarps; w++) r += s.red_f64[w];
    __syncthreads();
    return r;
}

/* In-place exclusive prefix sum of a[kThreads * 4] (4 consecutive entries per thread). */
template <class T>
__device__ void block_exclusive_scan4(T *a, T *warp_totals)
{
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const T v0 = a[4 * t], v1 = a[4 * t + 1], v2 = a[4 * t + 2], v3 = a[4 * t + 3];
    const T sum = v0 + v1 + v2 + v3;
    T inc = sum;
    for (int o = 1; o < 32; o <<= 1) {
        const T n = __shfl_up_sync(kFull, inc, o);
        if (lane >= o) inc += n;
    }
    if (lane == 31) warp_totals[warp] = inc;
    __syncthreads();
    T pre = 0;
    for (int w = 0; w < warp; w++) pre += warp_totals[w];
    const T ex = pre + inc - sum;
    a[4 * t] = ex;
    a[4 * t + 1] = ex + v0;
    a[4 * t + 2] = ex + v0 + v1;
    a[4 * t + 3] = ex + v0 + v1 + v2;
    __syncthreads();
}

/* Raw top-N: rank order value descending, id ascending; (-inf, INT32_MAX) is the empty slot. */
__device__ __forceinline__ bool better(float av, int ai, float bv, int bi) { return av > bv || (av == bv && ai < bi); }

/* Offers each lane's candidate (when `valid`) to the warp's sorted list: lane l < n holds entry l;
 * (wv, wi) is entry n-1, the bar to clear.  Must be called by all 32 lanes. */
__device__ __forceinline__ void warp_top_offer(float &lv, int &li, float &wv, int &wi, float cv, int ci, bool valid, int n)
{
    const int lane = threadIdx.x & 31;
    unsigned want = __ballot_sync(kFull, valid && better(cv, ci, wv, wi));
    while (want) {
        const int src = __ffs(want) - 1;
        want &= want - 1;
        const float bv = __shfl_sync(kFull, cv, src);
        const int bi = __shfl_sync(kFull, ci, src);
        if (!better(bv, bi, wv, wi)) continue; /* (wv, wi) is warp-uniform */
        const int pos = __popc(__ballot_sync(kFull, lane < n && better(lv, li, bv, bi)));
        const float uv = __shfl_up_sync(kFull, lv, 1);
        const int ui = __shfl_up_sync(kFull, li, 1);
        if (lane == pos) {
            lv = bv;
            li = bi;
        } else if (lane > pos && lane < n) {
            lv = uv;
            li = ui;
        }
        wv = __shfl_sync(kFull, lv, n - 1);
        wi = __shfl_sync(kFull, li, n - 1);
    }
}

/* ------------------------------------------------------------------ the row */

/* x[base .. base+3] into v (NaN past the end); one 16-byte load when vec (vocab % 4 == 0 and
 * the logits 16-byte aligned). */
__device__ __forceinline__ void load4(const float *x, int base, int vocab, bool vec, float v[4])
{
    if (vec && base < vocab) {
        const float4 q = __ldg(reinterpret_cast<const float4 *>(x + base));
        v[0] = q.x;
        v[1] = q.y;
        v[2] = q.z;
        v[3] = q.w;
    } else {
#pragma unroll
        for (int e = 0; e < 4; e++) v[e] = base + e < vocab ? __ldg(x + base + e) : __int_as_float(0x7fffffff);
    }
}

struct Row {
    const float *x;                   /* [vocab] raw logits */
    int vocab;
    bool vec;                         /* float4 loads allowed */
    const uint32_t *mask;             /* [ceil(vocab/32)] or NULL */
    const uint32_t *banned;           /* shared bitset or NULL */
    const uint32_t *penalized;        /* shared bitset or NULL */
    const int32_t *pen_ids, *pen_cnt; /* this row's CSR slice */
    int pen_n;
    bool use_rep, use_out;
    float rep, presence, frequency;
    /* sampling (after P1) */
    float m, temperature, inv_w, top;
    float fscale, rtemp;              /* inv_w / T and 1 / T, for the bucket prefilter only */
    uint32_t top_bits;
    int tail, id_bits;

    /* y: the logit after masks and penalties (sampling.c apply_masks + apply_penalties). */
    __device__ __forceinline__ float final_logit(int i, float v) const
    {
        if (mask && !((mask[i >> 5] >> (i & 31)) & 1u)) return -__int_as_float(0x7f800000);
        if (banned && ((banned[i >> 5] >> (i & 31)) & 1u)) return -__int_as_float(0x7f800000);
        if (penalized && ((penalized[i >> 5] >> (i & 31)) & 1u)) {
            int lo = 0, hi = pen_n; /* first entry >= i */
            while (lo < hi) {
                const int mid = (lo + hi) >> 1;
                if (pen_ids[mid] < i) lo = mid + 1;
                else hi = mid;
            }
            const int c = lo < pen_n && pen_ids[lo] == i ? pen_cnt[lo] : 0;
            if (use_rep) v = v > 0.0f ? __fdiv_rn(v, rep) : __fmul_rn(v, rep);
            if (use_out && c > 0) {
                v = __fsub_rn(v, __fmul_rn(frequency, __int2float_rn(c)));
                v = __fsub_rn(v, presence);
            }
        }
        return v;
    }

    /* Can a token with final logit y fall in a bucket of [blo, bhi] (bhi < tail)?  A cheap,
     * conservative test before the exact arithmetic: the bucket is trunc(f) (clamped), with
     * f = |z| * inv_w within 4e-7 relative of (m - y) * inv_w / T (three roundings), and the
     * bucket is monotone in y; the 1e-5 margins leave room for the float estimate's own
     * roundings.  NaN fails every comparison and is passed on to the exact path. */
    __device__ __forceinline__ bool maybe_bucket(float y, int blo, int bhi) const
    {
        const float dm = m - y;
        if (bhi >= tail - 1) {
            if (dm * rtemp > kZCut * 1.00001f) return false; /* surely below the cut: the tail */
        } else if (dm * fscale * 0.99999f >= (float)(bhi + 1)) {
            return false;
        }
        if (blo > 0 && dm * fscale * 1.00001f < (float)blo) return false;
        return true;
    }

    /* Token i's bucket (tail: no mass), p = exp(z), and rank key ((~ord(z)) << id_bits | i):
     * ascending key = z descending, then id ascending (sampling.c exp_shifted + bucket_row).
     * Returns false, computing nothing, when the prefilter rules out buckets [blo, bhi]. */
    __device__ __forceinline__ bool member(int i, float raw, int blo, int bhi, int &bucket, unsigned long long &key,
                                           float &p) const
    {
        const float y = final_logit(i, raw);
        if (!maybe_bucket(y, blo, bhi)) return false;
        const float d = __fdiv_rn(__fsub_rn(y, m), temperature);
        const uint32_t db = __float_as_uint(d), mag = db & 0x7FFFFFFFu;
        if (mag > kZCutBits) { /* below the cut, -inf or NaN */
            bucket = tail;
            key = 0;
            p = 0.0f;
            return true;
        }
        p = exp_nonpositive(d);
        float f = __fmul_rn(__uint_as_float(mag), inv_w);
        if (__float_as_uint(f) > top_bits) f = top;
        bucket = __float2int_rz(f);
        const uint32_t zb = mag == 0 ? 0u : db;
        const uint32_t ord = (zb & 0x80000000u) ? ~zb : (zb | 0x80000000u);
        key = ((unsigned long long)(~ord) << id_bits) | (unsigned long long)i;
        return true;
    }

    /* f(i, raw logit) for every token: 4 consecutive tokens per thread per step, the loads of
     * U steps issued before any use.  A light f (a compare) needs U = kUnroll for memory
     * parallelism (one block per row); a heavy f (the exact bucket arithmetic) hides the
     * latency itself and takes U = 1 (16 inlined copies would spill).  Per-thread trip counts
     * differ: f must not contain barriers or warp operations. */
    template <int U, class F>
    __device__ __forceinline__ void for_each(F &&f) const
    {
        for (int base0 = threadIdx.x * 4; base0 < vocab; base0 += 4 * kThreads * U) {
            float v[U][4];
#pragma unroll
            for (int u = 0; u < U; u++) load4(x, base0 + u * 4 * kThreads, vocab, vec, v[u]);
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = base0 + u * 4 * kThreads + e;
                    if (i < vocab) f(i, v[u][e]);
                }
        }
    }
};

struct Found {
    bool found;
    unsigned long long key;        /* the element's key (rank or id order) */
    unsigned long long p;          /* its mass */
    unsigned long long mass_before;/* mass of the elements before it (excluding base) */
    unsigned int cnt_before;
};

struct Window {
    int lo, hi; /* buckets [lo, hi] are in shared memory; lo > hi: none */
    unsigned int n;
};

/* Makes bucket b readable from the window when it fits (else returns false: read the row).
 * The window is the longest run of buckets ending at b that fits, extended forward. */
__device__ bool ensure_window(const Row &r, Smem &s, Window &w, int b)
{
    if (b >= w.lo && b <= w.hi) return true;
    const unsigned int *cnt = s.count;
    if (cnt[b + 1] - cnt[b] > (unsigned)kWindow) return false;
    const unsigned int need = cnt[b + 1] > (unsigned)kWindow ? cnt[b + 1] - kWindow : 0u;
    int lo = 0, hi = b; /* first lo with cnt[lo] >= need */
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (cnt[mid] >= need) hi = mid;
        else lo = mid + 1;
    }
    const int blo = lo;
    const unsigned int cap = cnt[blo] + kWindow;
    lo = b;
    hi = r.tail - 1; /* last h with cnt[h + 1] <= cap */
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (cnt[mid + 1] <= cap) lo = mid;
        else hi = mid - 1;
    }
    const int bhi = lo;
    if (threadIdx.x == 0) s.win_n = 0;
    __syncthreads();
    r.for_each<1>([&](int i, float raw) {
        int bk;
        unsigned long long key;
        float p;
        if (r.member(i, raw, blo, bhi, bk, key, p) && bk >= blo && bk <= bhi) {
            const unsigned int slot = atomicAdd(&s.win_n, 1u);
            s.win_key[slot] = key;
            s.win_p[slot] = p;
            s.win_bucket[slot] = (unsigned short)bk;
        }
    });
    __syncthreads();
    w.lo = blo;
    w.hi = bhi;
    w.n = s.win_n;
    __syncthreads();
    return true;
}

/* The first member of bucket b, in rank-key order (rank) or id order (!rank), among those with
 * key <= lim, at which the running count reaches `want` (MODE_COUNT) or base + running mass
 * reaches target (MODE_MASS_GE: >=, MODE_MASS_GT: >).  Not found: cnt_before / mass_before are
 * the totals.  Radix descent, 8 bits per step; block-uniform call. */
__device__ Found descend(const Row &r, Smem &s, Window &w, int b, bool rank, unsigned long long lim, int mode,
                         unsigned int want, unsigned long long base, double target, bool *row_source)
{
    const bool use_win = ensure_window(r, s, w, b);
    if (!use_win) *row_source = true;
    const int width = rank ? 32 + r.id_bits : r.id_bits;
    const unsigned long long id_mask = (1ull << r.id_bits) - 1;
    unsigned long long prefix = 0, mass_before = 0, p_last = 0;
    unsigned int cnt_before = 0;
    const int tid = threadIdx.x, lane = tid & 31;
    for (int lev = (width + 7) / 8 - 1; lev >= 0; lev--) {
        const int shift = 8 * lev;
        if (tid < 256) {
            s.bin_count[tid] = 0;
            s.bin_mass[tid] = 0;
        }
        __syncthreads();
        auto visit = [&](unsigned long long key, float p) {
            const unsigned long long k = rank ? key : (key & id_mask);
            if (k > lim || ((k >> shift) >> 8) != prefix) return;
            const int d = (int)((k >> shift) & 255u);
            atomicAdd(&s.bin_count[d], 1u);
            atomicAdd(&s.bin_mass[d], mass_fx(p));
        };
        if (use_win) {
            for (unsigned int j = tid; j < w.n; j += kThreads)
                if (s.win_bucket[j] == b) visit(s.win_key[j], s.win_p[j]);
        } else {
            r.for_each<1>([&](int i, float raw) {
                int bk;
                unsigned long long key;
                float p;
                if (r.member(i, raw, b, b, bk, key, p) && bk == b) visit(key, p);
            });
        }
        __syncthreads();
        if (tid < 32) {
            unsigned int c[8], csum = 0;
            unsigned long long ms[8], msum = 0;
#pragma unroll
            for (int q = 0; q < 8; q++) {
                c[q] = s.bin_count[lane * 8 + q];
                ms[q] = s.bin_mass[lane * 8 + q];
                csum += c[q];
                msum += ms[q];
            }
            unsigned int cinc = csum;
            unsigned long long minc = msum;
            for (int o = 1; o < 32; o <<= 1) {
                const unsigned int cn = __shfl_up_sync(kFull, cinc, o);
                const unsigned long long mn = __shfl_up_sync(kFull, minc, o);
                if (lane >= o) {
                    cinc += cn;
                    minc += mn;
                }
            }
            unsigned int cacc = cinc - csum;
            unsigned long long macc = minc - msum;
            int hit = -1;
#pragma unroll
            for (int q = 0; q < 8; q++) {
                if (hit < 0 && c[q] > 0) {
                    bool cross;
                    if (mode == MODE_COUNT) cross = cnt_before + cacc + c[q] >= want;
                    else {
                        const double cum = (double)(base + mass_before + macc + ms[q]);
                        cross = mode == MODE_MASS_GE ? cum >= target : cum > target;
                    }
                    if (cross) hit = q;
                }
                if (hit < 0) {
                    cacc += c[q];
                    macc += ms[q];
                }
            }
            const unsigned ballot = __ballot_sync(kFull, hit >= 0);
            const unsigned int tot_c = __shfl_sync(kFull, cinc, 31);
            const unsigned long long tot_m = __shfl_sync(kFull, minc, 31);
            if (ballot && lane == __ffs(ballot) - 1) {
                s.d_found = 1;
                s.d_digit = lane * 8 + hit;
                s.d_cnt_add = cacc;
                s.d_mass_add = macc;
                s.d_p = ms[hit];
            }
            if (!ballot && lane == 0) {
                s.d_found = 0;
                s.d_total_cnt = tot_c;
                s.d_total_mass = tot_m;
            }
        }
        __syncthreads();
        const bool found = s.d_found != 0;
        if (!found) {
            Found f{false, 0, 0, mass_before + s.d_total_mass, cnt_before + s.d_total_cnt};
            __syncthreads();
            return f;
        }
        prefix = (prefix << 8) | (unsigned long long)s.d_digit;
        cnt_before += s.d_cnt_add;
        mass_before += s.d_mass_add;
        p_last = s.d_p;
        __syncthreads();
    }
    return Found{true, prefix, p_last, mass_before, cnt_before};
}

/* A kept rank prefix: every token of buckets < b, then the first n members of bucket b (b ==
 * tail: all tokens with mass).  key: the n-th member's rank key (kNoLimit when n is the whole
 * bucket); mass: the mass of those n members. */
struct Prefix {
    int b;
    unsigned int n;
    unsigned long long key, mass;
};

/* sampling.c prefix_of_length: the first b whose inclusive count reaches k. */
__device__ Prefix prefix_of_length(const Row &r, Smem &s, Window &w, long long k, bool with_key, bool *row_source)
{
    int lo = 0, hi = r.tail;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if ((long long)s.count[mid + 1] >= k) hi = mid;
        else lo = mid + 1;
    }
    Prefix e{lo, 0, kNoLimit, 0};
    if (lo == r.tail) return e;
    e.n = (unsigned int)(k - (long long)s.count[lo]);
    if (!with_key || e.n == 0) return e; /* n == 0: only for k <= 0 (never: the top token always counts) */
    const unsigned int count_b = s.count[lo + 1] - s.count[lo];
    if (e.n == count_b) {
        e.mass = s.mass[lo + 1] - s.mass[lo];
    } else {
        const Found f = descend(r, s, w, lo, true, kNoLimit, MODE_COUNT, e.n, 0, 0.0, row_source);
        e.key = f.key;
        e.mass = f.mass_before + f.p;
    }
    return e;
}

__global__ void __launch_bounds__(kThreads, 1) sampling_kernel(Args a)
{
#ifdef KERNELS_SAMPLING_EMULATE /* tests/gpu/emu runs this file on the host */
    unsigned char *smem_raw = emu_shared_memory();
#else
    extern __shared__ __align__(16) unsigned char smem_raw[];
#endif
    Smem &s = *reinterpret_cast<Smem *>(smem_raw);
    const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int vocab = a.vocab;
    const kernels_sampling_params_t P = a.params[row];
    const float NEG_INF = -__int_as_float(0x7f800000);
    const int words = (vocab + 31) / 32;
    uint32_t *banned_bits = reinterpret_cast<uint32_t *>(smem_raw + sizeof(Smem));
    uint32_t *pen_bits = banned_bits + words;

    Row rl; /* built by every thread, published by thread 0: see Smem::row */
    Row &r = rl;
    r.x = a.logits + (size_t)row * vocab;
    r.vocab = vocab;
    r.vec = (vocab & 3) == 0 && (((uintptr_t)a.logits) & 15u) == 0;
    r.mask = a.mask ? a.mask + (size_t)row * words : nullptr;
    r.use_rep = P.repetition_penalty != 1.0f;
    r.use_out = P.frequency_penalty != 0.0f || P.presence_penalty != 0.0f;
    r.rep = P.repetition_penalty;
    r.presence = P.presence_penalty;
    r.frequency = P.frequency_penalty;
    const int ban_lo = a.ban_off ? a.ban_off[row] : 0, ban_hi = a.ban_off ? a.ban_off[row + 1] : 0;
    const int pen_lo = a.pen_off ? a.pen_off[row] : 0, pen_hi = a.pen_off ? a.pen_off[row + 1] : 0;
    const bool has_ban = ban_hi > ban_lo, has_pen = pen_hi > pen_lo && (r.use_rep || r.use_out);
    r.banned = has_ban ? banned_bits : nullptr;
    r.penalized = has_pen ? pen_bits : nullptr;
    r.pen_ids = has_pen ? a.pen_ids + pen_lo : nullptr;
    r.pen_cnt = has_pen ? a.pen_cnt + pen_lo : nullptr;
    r.pen_n = has_pen ? pen_hi - pen_lo : 0;
    r.id_bits = vocab > 1 ? 32 - __clz(vocab - 1) : 1;
    static_assert(sizeof(Row) <= sizeof(s.row), "Smem::row too small");

    /* 0. bitsets */
    if (has_ban || has_pen) {
        for (int w = tid; w < words; w += kThreads) {
            banned_bits[w] = 0;
            pen_bits[w] = 0;
        }
        __syncthreads();
        for (int j = ban_lo + tid; j < ban_hi; j += kThreads) {
            const int id = a.ban_ids[j];
            if (id >= 0 && id < vocab) atomicOr(&banned_bits[id >> 5], 1u << (id & 31));
        }
        if (has_pen)
            for (int j = pen_lo + tid; j < pen_hi; j += kThreads) {
                const int id = a.pen_ids[j];
                if (id >= 0 && id < vocab) atomicOr(&pen_bits[id >> 5], 1u << (id & 31));
            }
        __syncthreads();
    }

    /* P1: raw statistics + the argmax and finite minimum of y */
    const int num_lp = P.num_logprobs;
    const int num_top = num_lp > kMaxTop ? kMaxTop : (num_lp > 0 ? num_lp : 0);
    const bool want_lp = num_lp >= 0;
    int raw_max_key = INT32_MIN, min_key = INT32_MAX;
    float run_max = NEG_INF;
    double run_sum = 0.0;
    unsigned long long best = 0; /* (key ^ sign) << 32 | ~id: max = largest key, then smallest id */
    float lv = NEG_INF, wv = NEG_INF;
    int li = INT32_MAX, wi = INT32_MAX;
    /* the same walk as Row::for_each, but with a block-uniform trip count (warp ops inside) */
    const int iters = (vocab + 4 * kThreads * kUnroll - 1) / (4 * kThreads * kUnroll);
    for (int it = 0; it < iters; it++) {
        const int base0 = it * 4 * kThreads * kUnroll + tid * 4;
        float v[kUnroll][4];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) load4(r.x, base0 + u * 4 * kThreads, vocab, r.vec, v[u]);
#pragma unroll
        for (int q = 0; q < 4 * kUnroll; q++) {
            const int i = base0 + (q >> 2) * 4 * kThreads + (q & 3);
            const float xv = v[q >> 2][q & 3];
            if (i >= vocab) continue;
            if (want_lp && xv == xv) { /* NaN never counts */
                raw_max_key = max(raw_max_key, float_key(xv));
                if (xv > run_max) {
                    run_sum = run_sum * (double)expf(run_max - xv) + 1.0;
                    run_max = xv;
                } else if (xv > NEG_INF) {
                    run_sum += (double)expf(xv - run_max);
                }
            }
            const float y = r.final_logit(i, xv);
            if (y != y) continue;
            const int32_t k = float_key(y);
            const unsigned long long packed =
                ((unsigned long long)((uint32_t)k ^ 0x80000000u) << 32) | (unsigned long long)(0xFFFFFFFFu - (uint32_t)i);
            best = packed > best ? packed : best;
            if (y > NEG_INF && y < -NEG_INF) min_key = min(min_key, k);
        }
        if (num_top > 0) {
#pragma unroll
            for (int q = 0; q < 4 * kUnroll; q++) {
                const int i = base0 + (q >> 2) * 4 * kThreads + (q & 3);
                const float xv = v[q >> 2][q & 3];
                warp_top_offer(lv, li, wv, wi, xv, i, i < vocab && xv == xv, num_top);
            }
        }
    }
    best = block_max_u64(best, s);
    min_key = block_reduce_i32(min_key, 1, s);
    const int argmax = best == 0 ? 0 : (int)(0xFFFFFFFFu - (uint32_t)best);
    double lse = 0.0;
    float mraw = 0.0f;
    if (want_lp) {
        raw_max_key = block_reduce_i32(raw_max_key, 0, s);
        mraw = key_float(raw_max_key);
        if (mraw > NEG_INF && mraw < -NEG_INF) {
            const double part = run_max > NEG_INF ? run_sum * exp((double)run_max - (double)mraw) : 0.0;
            lse = (double)mraw + log(block_sum_f64(part, s));
        } else {
            lse = (double)mraw;
        }
    }
    if (num_top > 0) {
        int2 *scratch = reinterpret_cast<int2 *>(s.win_key); /* [kWarps][kMaxTop] (value bits, id) */
        if (lane < num_top) scratch[warp * kMaxTop + lane] = make_int2(__float_as_int(lv), li);
        __syncthreads();
        if (warp == 0) {
            lv = wv = NEG_INF;
            li = wi = INT32_MAX;
            for (int c = 0; c < kWarps * kMaxTop / 32; c++) {
                const int idx = c * 32 + lane;
                const int2 e = scratch[idx];
                const bool ok = (idx % kMaxTop) < num_top && e.y != INT32_MAX;
                warp_top_offer(lv, li, wv, wi, __int_as_float(e.x), e.y, ok, num_top);
            }
            const unsigned valid = __ballot_sync(kFull, lane < num_top && li != INT32_MAX);
            if (lane < num_top) s.top_v[lane] = lv;
            if (lane == 0) s.top_n = __popc(valid);
            if (lane < kMaxTop) {
                const bool ok = lane < num_top && li != INT32_MAX;
                a.top_ids[(size_t)row * kMaxTop + lane] = ok ? li : -1;
                a.top_logprobs[(size_t)row * kMaxTop + lane] = ok ? (float)((double)lv - lse) : NEG_INF;
            }
        }
        __syncthreads();
    } else if (tid < kMaxTop) {
        a.top_ids[(size_t)row * kMaxTop + tid] = -1;
        a.top_logprobs[(size_t)row * kMaxTop + tid] = NEG_INF;
    }

    /* greedy, or sample (sampling.c sample_tempered) */
    int token = argmax;
    int path = PATH_GREEDY;
    double d_u = -1.0, d_draw = -1.0, d_top_p = -1.0;
    bool row_source = false;
    const float mfin = best == 0 ? __int_as_float(0x7fffffff) : key_float((int32_t)((uint32_t)(best >> 32) ^ 0x80000000u));
    if (!(P.temperature == 0.0f || P.top_k == 1) && mfin > NEG_INF && mfin < -NEG_INF) {
        const float lo_v = key_float(min_key);
        float span = __fdiv_rn(__fsub_rn(mfin, lo_v), P.temperature);
        if (!(span >= 1e-6f)) span = 1.0f;
        else if (span > kZCut) span = kZCut;
        rl.m = mfin;
        rl.temperature = P.temperature;
        rl.tail = vocab + 1 < kMaxBuckets - 1 ? vocab + 1 : kMaxBuckets - 1;
        rl.inv_w = __fdiv_rn((float)(rl.tail - 1), span);
        rl.top = (float)(rl.tail - 1);
        rl.fscale = rl.inv_w / P.temperature;
        rl.rtemp = 1.0f / P.temperature;
        rl.top_bits = __float_as_uint(rl.top);
        if (tid == 0) *reinterpret_cast<Row *>(s.row) = rl;
        __syncthreads();
        const Row &r = *reinterpret_cast<const Row *>(s.row);

        /* P2: histograms */
        for (int b = tid; b < kMaxBuckets; b += kThreads) {
            s.count[b] = 0;
            s.mass[b] = 0;
        }
        __syncthreads();
        const float min_p = P.min_p;
        int num_min_p = 0;
        r.for_each<1>([&](int i, float raw) {
            int bk;
            unsigned long long key;
            float p;
            if (!r.member(i, raw, 0, r.tail - 1, bk, key, p) || bk == r.tail) return; /* the tail: no mass */
            atomicAdd(&s.count[bk], 1u);
            atomicAdd(&s.mass[bk], mass_fx(p));
            num_min_p += min_p > 0.0f && p >= min_p;
        });
        num_min_p = block_reduce_i32(num_min_p, 2, s);
        block_exclusive_scan4(s.count, reinterpret_cast<unsigned int *>(s.red_i32));
        block_exclusive_scan4(s.mass, s.red_u64);
        const unsigned int *cnt = s.count;
        const unsigned long long *mass = s.mass;
        Window w{1, 0, 0};

        /* top_k, then top_p over the top-k mass, then min_p: the shortest prefix */
        Prefix end{r.tail, 0, kNoLimit, 0};
        if (P.top_k > 1 && P.top_k < vocab) end = prefix_of_length(r, s, w, P.top_k, true, &row_source);
        const unsigned long long mass_k = mass[end.b] + (end.b < r.tail ? end.mass : 0ull);
        if (P.top_p < 1.0f) {
            const double target = (double)P.top_p * (double)mass_k;
            int lo = 0, hi = end.b; /* first b < end.b with inclusive mass >= target */
            while (lo < hi) {
                const int mid = (lo + hi) >> 1;
                if ((double)mass[mid + 1] >= target) hi = mid;
                else lo = mid + 1;
            }
            const int b = lo;
            if (b < r.tail) {
                const bool is_end = b == end.b;
                const unsigned long long lim = is_end ? end.key : kNoLimit;
                const Found f = descend(r, s, w, b, true, lim, MODE_MASS_GE, 0, mass[b], target, &row_source);
                if (f.found) {
                    const double before = (double)(mass[b] + f.mass_before), after = (double)(mass[b] + f.mass_before + f.p);
                    d_top_p = fmin(target - before, after - target) / (double)mass_k;
                    end = Prefix{b, f.cnt_before + 1, f.key, f.mass_before + f.p};
                } else if (!is_end) {
                    end = Prefix{b, cnt[b + 1] - cnt[b], kNoLimit, mass[b + 1] - mass[b]};
                }
            }
        }
        if (P.min_p > 0.0f) {
            const Prefix e2 = prefix_of_length(r, s, w, num_min_p, false, &row_source);
            if (e2.b < end.b || (e2.b == end.b && e2.n < end.n)) end = prefix_of_length(r, s, w, num_min_p, true, &row_source);
        }

        /* the draw */
        const unsigned long long total = mass[end.b] + (end.b < r.tail ? end.mass : 0ull);
        path = PATH_ARGMAX;
        if (total > 0) {
            const double u = philox_uniform(P.rng_key, P.rng_counter);
            const double target = u * (double)total;
            d_u = u;
            int lo = 0, hi = end.b; /* first b < end.b with inclusive mass > target */
            while (lo < hi) {
                const int mid = (lo + hi) >> 1;
                if ((double)mass[mid + 1] > target) hi = mid;
                else lo = mid + 1;
            }
            const int b = lo;
            Found f{false, 0, 0, 0, 0};
            int fb = -1;
            if (b < end.b) {
                fb = b;
                f = descend(r, s, w, b, false, kNoLimit, MODE_MASS_GT, 0, mass[b], target, &row_source);
                path = PATH_BUCKET;
                if (!f.found) { /* the bucket's last id */
                    f = descend(r, s, w, b, false, kNoLimit, MODE_COUNT, cnt[b + 1] - cnt[b], 0, 0.0, &row_source);
                    path = PATH_LAST;
                }
            } else if (end.b < r.tail && end.n > 0) {
                fb = end.b;
                f = descend(r, s, w, end.b, true, end.key, MODE_MASS_GT, 0, mass[end.b], target, &row_source);
                path = PATH_BOUNDARY;
                if (!f.found) { /* the last kept member */
                    f = descend(r, s, w, end.b, true, kNoLimit, MODE_COUNT, end.n, 0, 0.0, &row_source);
                    path = PATH_LAST;
                }
            }
            if (fb >= 0 && f.found) {
                token = (int)(f.key & ((1ull << r.id_bits) - 1));
                const double before = (double)(mass[fb] + f.mass_before), after = (double)(mass[fb] + f.mass_before + f.p);
                d_draw = fmin(target - before, after - target) / (double)total;
            }
        }
        if (row_source) path += PATH_ROW_SOURCE;
    }

    /* rank of the token among the raw logits: from the top-N list (or the max) when the token
     * is in it (every raw logit above the token's is then in the list), else a pass */
    if (want_lp) {
        const float v = __ldg(r.x + token);
        int above = 0;
        bool known = false;
        if (num_top > 0) {
            const int n = s.top_n;
            if (n < num_top || (n > 0 && v >= s.top_v[n - 1])) {
                known = true;
                for (int j = 0; j < n; j++) above += s.top_v[j] > v;
            }
        } else if (v >= mraw) {
            known = true;
        }
        if (!known) {
            r.for_each<kUnroll>([&](int, float raw) { above += raw > v; });
            above = block_reduce_i32(above, 2, s);
        }
        if (tid == 0) {
            a.logprobs[row] = (float)((double)v - lse);
            a.ranks[row] = above + 1;
        }
    } else if (tid == 0) {
        a.logprobs[row] = 0.0f;
        a.ranks[row] = 0;
    }
    if (tid == 0) {
        a.tokens[row] = token;
        if (a.table && a.table_index && !(P.flags & KERNELS_SAMPLING_NO_TABLE)) {
            const int slot = a.table_index[row];
            if (slot >= 0) a.table[slot] = token;
        }
        if (a.diag) {
            double *d = a.diag + (size_t)row * KERNELS_SAMPLING_NUM_DIAG;
            d[0] = d_u;
            d[1] = d_draw;
            d[2] = d_top_p;
            d[3] = (double)path;
        }
    }
}

int device_smem_optin()
{
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) return 0;
    return optin;
}

} // namespace

extern "C" int32_t kernels_sampling_max_vocab(void)
{
    const long long optin = device_smem_optin();
    const long long room = optin - (long long)sizeof(Smem);
    if (room < 8) return 0;
    const long long v = room / 8 * 32; /* two bits per token */
    return v > (1 << 22) ? (1 << 22) : (int32_t)v; /* 2^22: the fixed-point mass (p * 2^42) fits 64 bits */
}

extern "C" cudaError_t kernels_sampling(const float *logits, int32_t m, int32_t vocab_size,
                                        const kernels_sampling_params_t *params, const int32_t *penalty_offsets,
                                        const int32_t *penalty_ids, const int32_t *penalty_counts,
                                        const int32_t *banned_offsets, const int32_t *banned_ids,
                                        const uint32_t *allowed_mask, int32_t *out_tokens, float *out_logprobs,
                                        int32_t *out_ranks, int32_t *out_top_ids, float *out_top_logprobs,
                                        int32_t *next_token_table, const int32_t *table_index, double *diag,
                                        cudaStream_t st)
{
    if (m == 0) return cudaSuccess;
    if (m < 0 || vocab_size < 1 || vocab_size > (1 << 22) || !logits || !params || !out_tokens || !out_logprobs ||
        !out_ranks || !out_top_ids || !out_top_logprobs || (penalty_offsets && (!penalty_ids || !penalty_counts)) ||
        (banned_offsets && !banned_ids))
        return cudaErrorInvalidValue;
    const size_t bytes = smem_bytes(vocab_size);
    if ((long long)bytes > (long long)device_smem_optin()) return cudaErrorInvalidValue;
    cudaError_t e = cudaFuncSetAttribute(sampling_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) return e;
    Args a{logits,      m,          vocab_size,   params,      penalty_offsets, penalty_ids,     penalty_counts,
           banned_offsets, banned_ids, allowed_mask, out_tokens, out_logprobs,    out_ranks,       out_top_ids,
           out_top_logprobs, next_token_table, table_index, diag};
#ifdef KERNELS_SAMPLING_EMULATE
    (void)st;
    return emu_launch(sampling_kernel, (unsigned)m, kThreads, bytes, a);
#else
    sampling_kernel<<<m, kThreads, bytes, st>>>(a);
    return cudaGetLastError();
#endif
}
