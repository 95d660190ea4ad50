/* sampling.cu — logits processing + sampling on the GPU: one 1024-thread block per row (for
 * small batches, helped by several blocks per row: the split path below), no full-vocabulary
 * sort, logits read only.  The CPU sampler (engine/sampling.c, sampling_sample_row) is the
 * specification; this file re-does its steps with the same float arithmetic so that the same
 * inputs give the same token.
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
 * bandwidth floor; large batches fill the GPU with rows.  The sampling phase keeps its loop
 * invariants (Row) in shared memory: 1024 threads have 64 registers each.
 *
 * The split path (m rows too few to fill the GPU; kernels_sampling_blocks_per_row picks B):
 * each row's passes run over B blocks of 512 threads, block j over a slice of the row (a
 * multiple of 32 tokens), in kernels launched in stream order (no block waits for another;
 * each kernel's writes are visible to the next), with a workspace (SplitRow per row):
 *   split_p1      P1 over the slice -> the slice's statistics (argmax packed as a 64-bit max,
 *                 finite minimum, raw max, (max, sum) of the log-sum-exp, raw top-N); zeroes the
 *                 row's histograms and flags.
 *   split_p2      sampled rows: y's max and minimum from the statistics, the slice's bucket
 *                 counts and fixed-point masses in shared memory, added to the row's with
 *                 integer atomics (exact, order-independent: the same histograms as P2).
 *   split_window  sampled rows: the bucket the per-row block will first need (top_k's, else
 *                 top_p's, min_p's or the draw's) and its window (as ensure_window picks it):
 *                 the slice's members gathered into the workspace.
 *   sampling_kernel<true>  the per-row block above, starting from the reduced statistics
 *                 (thread t < B holds block t's; warps merge the top-N lists), the histograms
 *                 and the prefetched window instead of reading the row; a window it lacks
 *                 after all (a wrong guess) it gathers itself.  A rank it cannot read off the
 *                 top-N list is left to
 *   split_rank    the count of raw logits above the token's, added to the rank by atomics.
 * Every decision uses the same integers as the single-block path, so tokens, ranks, top ids
 * and diag are identical; the log-sum-exp adds the same terms in another order (logprobs
 * agree to the last bit or so).  LIGHTLLM_SAMPLE_BLOCKS (cuda_sample.c) forces B.
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
constexpr int kSplitThreads = 512;         /* threads of a split_p1 / split_p2 block */
constexpr int kSplitWarps = kSplitThreads / 32;
constexpr int kSplitMaxBlocks = KERNELS_SAMPLING_SPLIT_MAX_BLOCKS; /* blocks per row */
constexpr int kSplitMinTokens = 2048;      /* automatic split: tokens per block at least */

enum { MODE_COUNT = 0, MODE_MASS_GE = 1, MODE_MASS_GT = 2 };
enum { PATH_GREEDY = 0, PATH_BUCKET = 1, PATH_BOUNDARY = 2, PATH_ARGMAX = 3, PATH_LAST = 4, PATH_ROW_SOURCE = 16,
       PATH_ROW_GATHER = 32 };

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
    int32_t split, slice; /* split > 1: the split path, `split` blocks of `slice` tokens per row */
    void *ws;             /* split: SplitRow[m] */
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

template <int NT = kThreads, class S>
__device__ __forceinline__ unsigned long long block_max_u64(unsigned long long v, S &s)
{
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long w = __shfl_xor_sync(kFull, v, o);
        v = w > v ? w : v;
    }
    if ((threadIdx.x & 31) == 0) s.red_u64[threadIdx.x >> 5] = v;
    __syncthreads();
    unsigned long long r = s.red_u64[0];
    for (int w = 1; w < NT / 32; w++) r = s.red_u64[w] > r ? s.red_u64[w] : r;
    __syncthreads();
    return r;
}

/* op 0: max, 1: min, 2: sum */
template <int NT = kThreads, class S>
__device__ __forceinline__ int block_reduce_i32(int v, int op, S &s)
{
    for (int o = 16; o > 0; o >>= 1) {
        const int w = __shfl_xor_sync(kFull, v, o);
        v = op == 0 ? max(v, w) : op == 1 ? min(v, w) : v + w;
    }
    if ((threadIdx.x & 31) == 0) s.red_i32[threadIdx.x >> 5] = v;
    __syncthreads();
    int r = s.red_i32[0];
    for (int w = 1; w < NT / 32; w++) r = op == 0 ? max(r, s.red_i32[w]) : op == 1 ? min(r, s.red_i32[w]) : r + s.red_i32[w];
    __syncthreads();
    return r;
}

template <int NT = kThreads, class S>
__device__ __forceinline__ double block_sum_f64(double v, S &s)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if ((threadIdx.x & 31) == 0) s.red_f64[threadIdx.x >> 5] = v;
    __syncthreads();
    double r = s.red_f64[0];
    for (int w = 1; w < NT / 32; w++) r += s.red_f64[w];
    __syncthreads();
    return r;
}

/* In-place exclusive prefix sum of a[kMaxBuckets] by NT threads (E consecutive entries each). */
template <int NT = kThreads, class T>
__device__ void block_exclusive_scan(T *a, T *warp_totals)
{
    constexpr int E = kMaxBuckets / NT;
    static_assert(E * NT == kMaxBuckets, "kMaxBuckets must be a multiple of the block size");
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    T v[E], sum = 0;
#pragma unroll
    for (int e = 0; e < E; e++) sum += (v[e] = a[E * t + e]);
    T inc = sum;
    for (int o = 1; o < 32; o <<= 1) {
        const T n = __shfl_up_sync(kFull, inc, o);
        if (lane >= o) inc += n;
    }
    if (lane == 31) warp_totals[warp] = inc;
    __syncthreads();
    T pre = 0;
    for (int w = 0; w < warp; w++) pre += warp_totals[w];
    T ex = pre + inc - sum;
#pragma unroll
    for (int e = 0; e < E; e++) {
        a[E * t + e] = ex;
        ex += v[e];
    }
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
    const uint32_t *banned;           /* shared bitset of tokens [32 word0, ...) or NULL */
    const uint32_t *penalized;        /* shared bitset of tokens [32 word0, ...) or NULL */
    const int32_t *pen_ids, *pen_cnt; /* this row's CSR entries with ids in the tokens covered */
    int pen_n, word0;
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
        if (banned && ((banned[(i >> 5) - word0] >> (i & 31)) & 1u)) return -__int_as_float(0x7f800000);
        if (penalized && ((penalized[(i >> 5) - word0] >> (i & 31)) & 1u)) {
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

    /* f(i, raw logit) for every token of [lo, hi) (lo a multiple of 4; hi too when vec) by a
     * block of NT threads: 4 consecutive tokens per thread per step, the loads of U steps issued
     * before any use.  A light f (a compare) needs U = kUnroll for memory parallelism (one block
     * per row); a heavy f (the exact bucket arithmetic) hides the latency itself and takes U = 1
     * (16 inlined copies would spill).  Per-thread trip counts differ: f must not contain
     * barriers or warp operations. */
    template <int NT, int U, class F>
    __device__ __forceinline__ void for_range(int lo, int hi, F &&f) const
    {
        for (int base0 = lo + threadIdx.x * 4; base0 < hi; base0 += 4 * NT * U) {
            float v[U][4];
#pragma unroll
            for (int u = 0; u < U; u++) load4(x, base0 + u * 4 * NT, hi, vec, v[u]);
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = base0 + u * 4 * NT + e;
                    if (i < hi) f(i, v[u][e]);
                }
        }
    }

    /* for_range over the whole row by the 1024-thread block */
    template <int U, class F>
    __device__ __forceinline__ void for_each(F &&f) const
    {
        for_range<kThreads, U>(0, vocab, f);
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
    int gathers; /* windows gathered by a pass over the row */
};

/* The window's buckets [blo, bhi] for bucket b (b < tail) from the exclusive count prefix cnt:
 * the longest run of buckets ending at b whose members fit, extended forward; false when b
 * alone does not fit. */
__device__ __forceinline__ bool window_range(const unsigned int *cnt, int tail, int b, int &blo, int &bhi)
{
    if (cnt[b + 1] - cnt[b] > (unsigned)kWindow) return false;
    const unsigned int need = cnt[b + 1] > (unsigned)kWindow ? cnt[b + 1] - kWindow : 0u;
    int lo = 0, hi = b; /* first lo with cnt[lo] >= need */
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (cnt[mid] >= need) hi = mid;
        else lo = mid + 1;
    }
    blo = lo;
    const unsigned int cap = cnt[blo] + kWindow;
    lo = b;
    hi = tail - 1; /* last h with cnt[h + 1] <= cap */
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (cnt[mid + 1] <= cap) lo = mid;
        else hi = mid - 1;
    }
    bhi = lo;
    return true;
}

/* Makes bucket b readable from the window when it fits (else returns false: read the row):
 * the members of window_range's buckets, gathered by a pass over the row. */
__device__ bool ensure_window(const Row &r, Smem &s, Window &w, int b)
{
    if (b >= w.lo && b <= w.hi) return true;
    int blo, bhi;
    if (!window_range(s.count, r.tail, b, blo, bhi)) return false;
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
    w.gathers++;
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

/* ------------------------------------------------------------------ pieces shared by both paths */

/* The row's fields (Row::final_logit's inputs) for tokens [lo, hi) of row `row` (lo a multiple
 * of 32): the banned and penalized bitsets of those tokens are built in bits[2 * ceil((hi - lo)
 * / 32)] (shared memory) and only the penalty entries with ids in [lo, hi) are kept (the CSR is
 * ascending).  Block-uniform call by NT threads (barriers inside). */
template <int NT>
__device__ void row_init(Row &r, const Args &a, const kernels_sampling_params_t &P, int row, int lo, int hi,
                         uint32_t *bits)
{
    const int tid = threadIdx.x, vocab = a.vocab, words = (vocab + 31) / 32, nw = (hi - lo + 31) / 32;
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
    int pen_lo = a.pen_off ? a.pen_off[row] : 0, pen_hi = a.pen_off ? a.pen_off[row + 1] : 0;
    const bool has_ban = ban_hi > ban_lo, has_pen = pen_hi > pen_lo && (r.use_rep || r.use_out);
    if (has_pen) { /* the entries with ids in [lo, hi) */
        int l = pen_lo, h = pen_hi;
        while (l < h) {
            const int mid = (l + h) >> 1;
            if (a.pen_ids[mid] < lo) l = mid + 1;
            else h = mid;
        }
        const int first = l;
        h = pen_hi;
        while (l < h) {
            const int mid = (l + h) >> 1;
            if (a.pen_ids[mid] < hi) l = mid + 1;
            else h = mid;
        }
        pen_lo = first;
        pen_hi = l;
    }
    uint32_t *banned_bits = bits, *pen_bits = bits + nw;
    r.word0 = lo >> 5;
    r.banned = has_ban ? banned_bits : nullptr;
    r.penalized = has_pen ? pen_bits : nullptr;
    r.pen_ids = has_pen ? a.pen_ids + pen_lo : nullptr;
    r.pen_cnt = has_pen ? a.pen_cnt + pen_lo : nullptr;
    r.pen_n = has_pen ? pen_hi - pen_lo : 0;
    r.id_bits = vocab > 1 ? 32 - __clz(vocab - 1) : 1;
    if (has_ban || has_pen) {
        for (int w = tid; w < nw; w += NT) {
            banned_bits[w] = 0;
            pen_bits[w] = 0;
        }
        __syncthreads();
        for (int j = ban_lo + tid; j < ban_hi; j += NT) {
            const int id = a.ban_ids[j];
            if (id >= lo && id < hi) atomicOr(&banned_bits[(id >> 5) - r.word0], 1u << (id & 31));
        }
        if (has_pen)
            for (int j = pen_lo + tid; j < pen_hi; j += NT) {
                const int id = a.pen_ids[j];
                if (id >= lo && id < hi) atomicOr(&pen_bits[(id >> 5) - r.word0], 1u << (id & 31));
            }
        __syncthreads();
    }
}

/* The sampling fields of the row (sampling.c sample_tempered: the buckets' span), from y's max
 * mfin and y's finite minimum (as a float_key). */
__device__ __forceinline__ void row_begin_sampling(Row &r, float mfin, int32_t min_key, float temperature)
{
    const float lo_v = key_float(min_key);
    float span = __fdiv_rn(__fsub_rn(mfin, lo_v), temperature);
    if (!(span >= 1e-6f)) span = 1.0f;
    else if (span > kZCut) span = kZCut;
    r.m = mfin;
    r.temperature = temperature;
    r.tail = r.vocab + 1 < kMaxBuckets - 1 ? r.vocab + 1 : kMaxBuckets - 1;
    r.inv_w = __fdiv_rn((float)(r.tail - 1), span);
    r.top = (float)(r.tail - 1);
    r.fscale = r.inv_w / temperature;
    r.rtemp = 1.0f / temperature;
    r.top_bits = __float_as_uint(r.top);
}

/* y's max (NaN when no token has a non-NaN y) from P1's packed argmax. */
__device__ __forceinline__ float best_value(unsigned long long best)
{
    return best == 0 ? __int_as_float(0x7fffffff) : key_float((int32_t)((uint32_t)(best >> 32) ^ 0x80000000u));
}

/* One thread's P1 statistics: the raw max (float_key), the online log-sum-exp (run_max,
 * run_sum), y's packed argmax and finite minimum, and its warp's raw top-N list (lane l holds
 * entry l; (wv, wi) is entry num_top - 1). */
struct P1Acc {
    int raw_max_key, min_key;
    float run_max;
    double run_sum;
    unsigned long long best; /* (key ^ sign) << 32 | ~id: max = largest key, then smallest id */
    float lv, wv;
    int li, wi;
};

__device__ __forceinline__ void p1_init(P1Acc &q)
{
    q.raw_max_key = INT32_MIN;
    q.min_key = INT32_MAX;
    q.run_max = -__int_as_float(0x7f800000);
    q.run_sum = 0.0;
    q.best = 0;
    q.lv = q.wv = -__int_as_float(0x7f800000);
    q.li = q.wi = INT32_MAX;
}

/* P1 over tokens [lo, hi) by a block of NT threads: the walk of Row::for_range, but with a
 * block-uniform trip count (warp operations inside). */
template <int NT>
__device__ __forceinline__ void p1_range(const Row &r, int lo, int hi, bool want_lp, int num_top, P1Acc &q)
{
    const float NEG_INF = -__int_as_float(0x7f800000);
    const int iters = (hi - lo + 4 * NT * kUnroll - 1) / (4 * NT * kUnroll);
    for (int it = 0; it < iters; it++) {
        const int base0 = lo + it * 4 * NT * kUnroll + (int)threadIdx.x * 4;
        float v[kUnroll][4];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) load4(r.x, base0 + u * 4 * NT, hi, r.vec, v[u]);
#pragma unroll
        for (int e = 0; e < 4 * kUnroll; e++) {
            const int i = base0 + (e >> 2) * 4 * NT + (e & 3);
            const float xv = v[e >> 2][e & 3];
            if (i >= hi) continue;
            if (want_lp && xv == xv) { /* NaN never counts */
                q.raw_max_key = max(q.raw_max_key, float_key(xv));
                if (xv > q.run_max) {
                    q.run_sum = q.run_sum * (double)expf(q.run_max - xv) + 1.0;
                    q.run_max = xv;
                } else if (xv > NEG_INF) {
                    q.run_sum += (double)expf(xv - q.run_max);
                }
            }
            const float y = r.final_logit(i, xv);
            if (y != y) continue;
            const int32_t k = float_key(y);
            const unsigned long long packed =
                ((unsigned long long)((uint32_t)k ^ 0x80000000u) << 32) | (unsigned long long)(0xFFFFFFFFu - (uint32_t)i);
            q.best = packed > q.best ? packed : q.best;
            if (y > NEG_INF && y < -NEG_INF) q.min_key = min(q.min_key, k);
        }
        if (num_top > 0) {
#pragma unroll
            for (int e = 0; e < 4 * kUnroll; e++) {
                const int i = base0 + (e >> 2) * 4 * NT + (e & 3);
                const float xv = v[e >> 2][e & 3];
                warp_top_offer(q.lv, q.li, q.wv, q.wi, xv, i, i < hi && xv == xv, num_top);
            }
        }
    }
}

/* Merges the NT / 32 warps' top-N lists into warp 0's (q.lv, q.li); scratch: [NT / 32][kMaxTop]
 * (value bits, id) in shared memory.  Block-uniform call (a barrier inside); the caller
 * synchronises before scratch is reused. */
template <int NT>
__device__ __forceinline__ void top_merge_warps(P1Acc &q, int num_top, int2 *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane < num_top) scratch[warp * kMaxTop + lane] = make_int2(__float_as_int(q.lv), q.li);
    __syncthreads();
    if (warp == 0) {
        q.lv = q.wv = -__int_as_float(0x7f800000);
        q.li = q.wi = INT32_MAX;
        for (int c = 0; c < (NT / 32) * kMaxTop / 32; c++) {
            const int idx = c * 32 + lane;
            const int2 e = scratch[idx];
            const bool ok = (idx % kMaxTop) < num_top && e.y != INT32_MAX;
            warp_top_offer(q.lv, q.li, q.wv, q.wi, __int_as_float(e.x), e.y, ok, num_top);
        }
    }
}

/* ------------------------------------------------------------------ the split path (small m)
 *
 * split_p1 and split_p2 each run `split` blocks of kSplitThreads per row, block j over the
 * tokens [j * slice, (j + 1) * slice) (slice a multiple of 32; the last slices may be short or
 * empty): split_p1 writes its slice's P1 statistics to the workspace (SplitPart) and zeroes
 * its share of the row's histograms; split_p2 (rows that sample) reduces the P1 statistics it
 * needs (y's max and finite minimum), builds the slice's bucket histograms in shared memory
 * and adds them to the row's with integer atomics (exact, order-independent).  sampling_kernel
 * then starts from the reduced state instead of reading the row for P1 and P2.  Stream order
 * makes each kernel's writes visible to the next; no block waits for another. */

/* One block's P1 statistics over its slice. */
struct SplitPart {
    unsigned long long best; /* packed argmax of y (0: none) */
    double run_sum;          /* sum of exp(raw - run_max) over the slice (logprobs on) */
    float run_max;           /* the slice's raw max; -inf when it is not finite (logprobs on) */
    int raw_max_key, min_key, pad;
    int2 top[kMaxTop];       /* the slice's raw top-N (value bits, id); (-inf, INT32_MAX): empty */
};

/* The workspace of one row. */
struct SplitRow {
    SplitPart part[kSplitMaxBlocks];
    unsigned long long mass[kMaxBuckets]; /* bucket mass (fixed point), summed over the blocks */
    unsigned long long win_key[kWindow];  /* the prefetched window's members (any order): rank key, */
    unsigned int count[kMaxBuckets];      /* bucket count, summed over the blocks */
    float win_p[kWindow];                 /*   p, */
    unsigned short win_bucket[kWindow];   /*   bucket */
    unsigned int num_min_p;               /* tokens with p >= min_p */
    unsigned int win_n;                   /* members gathered */
    int win_lo, win_hi;                   /* the window's buckets; win_lo > win_hi: none */
    int rank_pending;                     /* the per-row block left the rank to split_rank */
    float rank_v;                         /* then: the token's raw logit */
    unsigned int pad[2];
};

struct SplitP1Smem {
    int2 scratch[kSplitWarps * kMaxTop];
    unsigned long long red_u64[kSplitWarps];
    double red_f64[kSplitWarps];
    int red_i32[kSplitWarps];
};

struct SplitP2Smem {
    unsigned long long mass[kMaxBuckets];
    unsigned int count[kMaxBuckets];
    unsigned long long red_u64[kSplitWarps];
    double red_f64[kSplitWarps];
    int red_i32[kSplitWarps];
    alignas(8) unsigned char row[160];
};

/* The kernel's dynamic shared memory (tests/gpu/emu runs this file on the host: its buffer there). */
__device__ __forceinline__ unsigned char *sampling_smem()
{
#ifdef KERNELS_SAMPLING_EMULATE
    return emu_shared_memory();
#else
    extern __shared__ __align__(16) unsigned char sampling_smem_raw[];
    return sampling_smem_raw;
#endif
}

__device__ __forceinline__ SplitRow &split_row(const Args &a, int row) { return reinterpret_cast<SplitRow *>(a.ws)[row]; }

/* y's max over the row (NaN: none) and y's finite minimum (min_key), from the blocks' P1
 * statistics.  Block-uniform call by the split kernel's threads. */
__device__ float split_row_max(const Args &a, const SplitRow &w, SplitP2Smem &s, int &min_key)
{
    unsigned long long best = 0;
    int mk = INT32_MAX;
    for (int t = threadIdx.x; t < a.split; t += kSplitThreads) {
        best = w.part[t].best > best ? w.part[t].best : best;
        mk = min(mk, w.part[t].min_key);
    }
    best = block_max_u64<kSplitThreads>(best, s);
    min_key = block_reduce_i32<kSplitThreads>(mk, 1, s);
    return best_value(best);
}

/* The shared start of split_p2 / split_window: the slice [lo, hi) of a sampled row, its Row
 * (sampling begun at y's max) in s.row.  false (the block returns) when the row is greedy or y
 * has no finite max (sampling_kernel takes the argmax).  Block-uniform. */
__device__ bool split_sampled_slice(const Args &a, const kernels_sampling_params_t &P, const SplitRow &w, SplitP2Smem &s,
                                    unsigned char *smem_raw, int &lo, int &hi)
{
    if (P.temperature == 0.0f || P.top_k == 1) return false; /* greedy: no histograms, no window */
    const float NEG_INF = -__int_as_float(0x7f800000);
    int min_key;
    const float mfin = split_row_max(a, w, s, min_key);
    if (!(mfin > NEG_INF && mfin < -NEG_INF)) return false;
    const int row = blockIdx.x / a.split, j = blockIdx.x % a.split;
    lo = min(j * a.slice, a.vocab);
    hi = min(lo + a.slice, a.vocab);
    Row rl;
    row_init<kSplitThreads>(rl, a, P, row, lo, hi, reinterpret_cast<uint32_t *>(smem_raw + sizeof(SplitP2Smem)));
    row_begin_sampling(rl, mfin, min_key, P.temperature);
    static_assert(sizeof(Row) <= sizeof(s.row), "SplitP2Smem::row too small");
    if (threadIdx.x == 0) *reinterpret_cast<Row *>(s.row) = rl;
    return true;
}

/* The bucket the per-row block will first need the members of (a guess that is usually right;
 * a wrong guess costs that block one pass over the row, never a wrong result): top_k's
 * boundary bucket, else top_p's, else min_p's, else the draw's (over all tokens).  cnt / mass:
 * exclusive prefix sums. */
__device__ int split_first_bucket(const kernels_sampling_params_t &P, const unsigned int *cnt,
                                  const unsigned long long *mass, int tail, int vocab, unsigned int num_min_p)
{
    auto first_count = [&](long long k) { /* first b whose inclusive count reaches k (tail: none) */
        int lo = 0, hi = tail;
        while (lo < hi) {
            const int mid = (lo + hi) >> 1;
            if ((long long)cnt[mid + 1] >= k) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    };
    if (P.top_k > 1 && P.top_k < vocab) {
        const int b = first_count(P.top_k);
        if (b < tail) return b;
    }
    const double total = (double)mass[tail];
    double target;
    bool strict = false;
    if (P.top_p < 1.0f) {
        target = (double)P.top_p * total;
    } else if (P.min_p > 0.0f) {
        return first_count(num_min_p);
    } else {
        target = philox_uniform(P.rng_key, P.rng_counter) * total;
        strict = true;
    }
    int lo = 0, hi = tail;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (strict ? (double)mass[mid + 1] > target : (double)mass[mid + 1] >= target) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Dynamic shared memory of a split kernel: its fixed part, then two bitsets of the slice. */
template <class S>
size_t split_smem_bytes(int32_t slice) { return sizeof(S) + 2 * sizeof(uint32_t) * (size_t)((slice + 31) / 32); }

__global__ void __launch_bounds__(kSplitThreads, 2) sampling_split_p1_kernel(Args a)
{
    unsigned char *smem_raw = sampling_smem();
    SplitP1Smem &s = *reinterpret_cast<SplitP1Smem *>(smem_raw);
    const int row = blockIdx.x / a.split, j = blockIdx.x % a.split, tid = threadIdx.x, lane = tid & 31;
    const int lo = min(j * a.slice, a.vocab), hi = min(lo + a.slice, a.vocab);
    const kernels_sampling_params_t P = a.params[row];
    const float NEG_INF = -__int_as_float(0x7f800000);
    SplitRow &w = split_row(a, row);
    for (int b = j * kSplitThreads + tid; b < kMaxBuckets; b += a.split * kSplitThreads) {
        w.count[b] = 0;
        w.mass[b] = 0;
    }
    if (blockIdx.x % a.split == 0 && tid == 0) { /* the row's first slice records the window */
        w.num_min_p = 0;
        w.win_n = 0;
        w.win_lo = 1;
        w.win_hi = 0;
        w.rank_pending = 0;
    }

    Row r;
    row_init<kSplitThreads>(r, a, P, row, lo, hi, reinterpret_cast<uint32_t *>(smem_raw + sizeof(SplitP1Smem)));
    const int num_lp = P.num_logprobs;
    const int num_top = num_lp > kMaxTop ? kMaxTop : (num_lp > 0 ? num_lp : 0);
    const bool want_lp = num_lp >= 0;
    P1Acc q;
    p1_init(q);
    p1_range<kSplitThreads>(r, lo, hi, want_lp, num_top, q);
    const unsigned long long best = block_max_u64<kSplitThreads>(q.best, s);
    const int min_key = block_reduce_i32<kSplitThreads>(q.min_key, 1, s);
    int raw_max_key = INT32_MIN;
    float run_max = NEG_INF;
    double run_sum = 0.0;
    if (want_lp) {
        raw_max_key = block_reduce_i32<kSplitThreads>(q.raw_max_key, 0, s);
        const float mraw = key_float(raw_max_key);
        if (mraw > NEG_INF && mraw < -NEG_INF) {
            const double part = q.run_max > NEG_INF ? q.run_sum * exp((double)q.run_max - (double)mraw) : 0.0;
            run_sum = block_sum_f64<kSplitThreads>(part, s);
            run_max = mraw;
        }
    }
    SplitPart &out = w.part[j];
    if (num_top > 0) {
        top_merge_warps<kSplitThreads>(q, num_top, s.scratch);
        if (tid < 32 && lane < kMaxTop)
            out.top[lane] = lane < num_top ? make_int2(__float_as_int(q.lv), q.li) : make_int2(__float_as_int(NEG_INF), INT32_MAX);
    }
    if (tid == 0) {
        out.best = best;
        out.run_sum = run_sum;
        out.run_max = run_max;
        out.raw_max_key = raw_max_key;
        out.min_key = min_key;
        out.pad = 0;
    }
}

__global__ void __launch_bounds__(kSplitThreads, 2) sampling_split_p2_kernel(Args a)
{
    unsigned char *smem_raw = sampling_smem();
    SplitP2Smem &s = *reinterpret_cast<SplitP2Smem *>(smem_raw);
    const int row = blockIdx.x / a.split, tid = threadIdx.x;
    const kernels_sampling_params_t P = a.params[row];
    SplitRow &w = split_row(a, row);
    int lo, hi;
    if (!split_sampled_slice(a, P, w, s, smem_raw, lo, hi)) return;
    for (int b = tid; b < kMaxBuckets; b += kSplitThreads) {
        s.count[b] = 0;
        s.mass[b] = 0;
    }
    __syncthreads();
    const Row &r = *reinterpret_cast<const Row *>(s.row);
    const float min_p = P.min_p;
    int num_min_p = 0;
    r.for_range<kSplitThreads, 1>(lo, hi, [&](int i, float raw) {
        int bk;
        unsigned long long key;
        float p;
        if (!r.member(i, raw, 0, r.tail - 1, bk, key, p) || bk == r.tail) return; /* the tail: no mass */
        atomicAdd(&s.count[bk], 1u);
        atomicAdd(&s.mass[bk], mass_fx(p));
        num_min_p += min_p > 0.0f && p >= min_p;
    });
    num_min_p = block_reduce_i32<kSplitThreads>(num_min_p, 2, s); /* barriers: the histograms are complete */
    for (int b = tid; b < r.tail; b += kSplitThreads)
        if (s.count[b]) {
            atomicAdd(&w.count[b], s.count[b]);
            atomicAdd(&w.mass[b], s.mass[b]);
        }
    if (tid == 0 && num_min_p > 0) atomicAdd(&w.num_min_p, (unsigned int)num_min_p);
}

/* The members of the window the per-row block will most likely need first (split_first_bucket,
 * window_range), gathered from every slice into the workspace. */
__global__ void __launch_bounds__(kSplitThreads, 2) sampling_split_window_kernel(Args a)
{
    unsigned char *smem_raw = sampling_smem();
    SplitP2Smem &s = *reinterpret_cast<SplitP2Smem *>(smem_raw);
    const int row = blockIdx.x / a.split, tid = threadIdx.x;
    const kernels_sampling_params_t P = a.params[row];
    SplitRow &w = split_row(a, row);
    int lo, hi;
    if (!split_sampled_slice(a, P, w, s, smem_raw, lo, hi)) return;
    for (int b = tid; b < kMaxBuckets; b += kSplitThreads) {
        s.count[b] = w.count[b];
        s.mass[b] = w.mass[b];
    }
    __syncthreads();
    block_exclusive_scan<kSplitThreads>(s.count, reinterpret_cast<unsigned int *>(s.red_i32));
    block_exclusive_scan<kSplitThreads>(s.mass, s.red_u64);
    const Row &r = *reinterpret_cast<const Row *>(s.row);
    const int b = split_first_bucket(P, s.count, s.mass, r.tail, a.vocab, w.num_min_p);
    int blo, bhi;
    if (b >= r.tail || !window_range(s.count, r.tail, b, blo, bhi)) return;
    r.for_range<kSplitThreads, 1>(lo, hi, [&](int i, float raw) {
        int bk;
        unsigned long long key;
        float p;
        if (r.member(i, raw, blo, bhi, bk, key, p) && bk >= blo && bk <= bhi) {
            const unsigned int slot = atomicAdd(&w.win_n, 1u);
            if (slot < (unsigned)kWindow) { /* always: the histograms counted these members */
                w.win_key[slot] = key;
                w.win_p[slot] = p;
                w.win_bucket[slot] = (unsigned short)bk;
            }
        }
    });
    if (blockIdx.x % a.split == 0 && tid == 0) { /* the row's first slice records the window */
        w.win_lo = blo;
        w.win_hi = bhi;
    }
}

/* The rank's pass when the per-row block could not read it off the top-N list: adds the number
 * of the slice's raw logits above the token's to the row's rank (1 + those above). */
__global__ void __launch_bounds__(kSplitThreads, 2) sampling_split_rank_kernel(Args a)
{
    unsigned char *smem_raw = sampling_smem();
    SplitP1Smem &s = *reinterpret_cast<SplitP1Smem *>(smem_raw);
    const int row = blockIdx.x / a.split, j = blockIdx.x % a.split;
    const SplitRow &w = split_row(a, row);
    if (!w.rank_pending) return;
    const float v = w.rank_v;
    const int lo = min(j * a.slice, a.vocab), hi = min(lo + a.slice, a.vocab);
    Row r; /* only the raw logits */
    r.x = a.logits + (size_t)row * a.vocab;
    r.vocab = a.vocab;
    r.vec = (a.vocab & 3) == 0 && (((uintptr_t)a.logits) & 15u) == 0;
    int above = 0;
    r.for_range<kSplitThreads, kUnroll>(lo, hi, [&](int, float raw) { above += raw > v; });
    above = block_reduce_i32<kSplitThreads>(above, 2, s);
    if (threadIdx.x == 0 && above > 0) atomicAdd(&a.ranks[row], above);
}

/* ------------------------------------------------------------------ the per-row block */

/* kSplit: P1 and P2 come from the split kernels (a.split > 1); a separate instantiation, so that
 * the single-block path's register allocation is not burdened by the other's code. */
template <bool kSplit>
__global__ void __launch_bounds__(kThreads, 1) sampling_kernel(Args a)
{
    unsigned char *smem_raw = sampling_smem();
    Smem &s = *reinterpret_cast<Smem *>(smem_raw);
    const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int vocab = a.vocab;
    const kernels_sampling_params_t P = a.params[row];
    const float NEG_INF = -__int_as_float(0x7f800000);

    Row rl; /* built by every thread, published by thread 0: see Smem::row */
    Row &r = rl;
    row_init<kThreads>(r, a, P, row, 0, vocab, reinterpret_cast<uint32_t *>(smem_raw + sizeof(Smem)));
    static_assert(sizeof(Row) <= sizeof(s.row), "Smem::row too small");

    /* P1: raw statistics + the argmax and finite minimum of y (split: the blocks' statistics,
     * thread t < split holding block t's, each warp offering some blocks' top-N lists) */
    const int num_lp = P.num_logprobs;
    const int num_top = num_lp > kMaxTop ? kMaxTop : (num_lp > 0 ? num_lp : 0);
    const bool want_lp = num_lp >= 0;
    P1Acc q;
    p1_init(q);
    if (kSplit) {
        const SplitRow &w = split_row(a, row);
        if (tid < a.split) {
            const SplitPart &pt = w.part[tid];
            q.best = pt.best;
            q.min_key = pt.min_key;
            q.raw_max_key = pt.raw_max_key;
            q.run_max = pt.run_max;
            q.run_sum = pt.run_sum;
        }
        if (num_top > 0)
            for (int t = warp; t < a.split; t += kWarps) {
                const int2 e = lane < kMaxTop ? w.part[t].top[lane] : make_int2(0, INT32_MAX);
                warp_top_offer(q.lv, q.li, q.wv, q.wi, __int_as_float(e.x), e.y, lane < num_top && e.y != INT32_MAX,
                               num_top);
            }
    } else {
        p1_range<kThreads>(r, 0, vocab, want_lp, num_top, q);
    }
    const unsigned long long best = block_max_u64(q.best, s);
    const int min_key = block_reduce_i32(q.min_key, 1, s);
    const int argmax = best == 0 ? 0 : (int)(0xFFFFFFFFu - (uint32_t)best);
    double lse = 0.0;
    float mraw = 0.0f;
    if (want_lp) {
        const int raw_max_key = block_reduce_i32(q.raw_max_key, 0, s);
        mraw = key_float(raw_max_key);
        if (mraw > NEG_INF && mraw < -NEG_INF) {
            const double part = q.run_max > NEG_INF ? q.run_sum * exp((double)q.run_max - (double)mraw) : 0.0;
            lse = (double)mraw + log(block_sum_f64(part, s));
        } else {
            lse = (double)mraw;
        }
    }
    if (num_top > 0) {
        top_merge_warps<kThreads>(q, num_top, reinterpret_cast<int2 *>(s.win_key));
        if (warp == 0) {
            const unsigned valid = __ballot_sync(kFull, lane < num_top && q.li != INT32_MAX);
            if (lane < num_top) s.top_v[lane] = q.lv;
            if (lane == 0) s.top_n = __popc(valid);
            if (lane < kMaxTop) {
                const bool ok = lane < num_top && q.li != INT32_MAX;
                a.top_ids[(size_t)row * kMaxTop + lane] = ok ? q.li : -1;
                a.top_logprobs[(size_t)row * kMaxTop + lane] = ok ? (float)((double)q.lv - lse) : NEG_INF;
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
    const float mfin = best_value(best);
    if (!(P.temperature == 0.0f || P.top_k == 1) && mfin > NEG_INF && mfin < -NEG_INF) {
        row_begin_sampling(rl, mfin, min_key, P.temperature);
        if (tid == 0) *reinterpret_cast<Row *>(s.row) = rl;
        __syncthreads();
        const Row &r = *reinterpret_cast<const Row *>(s.row);

        /* P2: histograms (split: the blocks' sums) */
        const float min_p = P.min_p;
        int num_min_p = 0;
        if (kSplit) {
            const SplitRow &w = split_row(a, row);
            for (int b = tid; b < kMaxBuckets; b += kThreads) {
                s.count[b] = w.count[b];
                s.mass[b] = w.mass[b];
            }
            num_min_p = (int)w.num_min_p;
            __syncthreads();
        } else {
            for (int b = tid; b < kMaxBuckets; b += kThreads) {
                s.count[b] = 0;
                s.mass[b] = 0;
            }
            __syncthreads();
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
        }
        block_exclusive_scan(s.count, reinterpret_cast<unsigned int *>(s.red_i32));
        block_exclusive_scan(s.mass, s.red_u64);
        const unsigned int *cnt = s.count;
        const unsigned long long *mass = s.mass;
        Window w{1, 0, 0, 0};
        if (kSplit) { /* split_window's members */
            const SplitRow &ws = split_row(a, row);
            if (ws.win_lo <= ws.win_hi) {
                const unsigned int n = ws.win_n < (unsigned)kWindow ? ws.win_n : (unsigned)kWindow;
                for (unsigned int j = tid; j < n; j += kThreads) {
                    s.win_key[j] = ws.win_key[j];
                    s.win_p[j] = ws.win_p[j];
                    s.win_bucket[j] = ws.win_bucket[j];
                }
                w = Window{ws.win_lo, ws.win_hi, n, 0};
                __syncthreads();
            }
        }

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
        if (w.gathers) path += PATH_ROW_GATHER;
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
        if (!known && kSplit) { /* split_rank adds the count */
            if (tid == 0) {
                SplitRow &ws = split_row(a, row);
                ws.rank_v = v;
                ws.rank_pending = 1;
            }
        } else if (!known) {
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

extern "C" size_t kernels_sampling_workspace_bytes(int32_t max_rows)
{
    const int32_t rows = max_rows < KERNELS_SAMPLING_SPLIT_MAX_ROWS ? max_rows : KERNELS_SAMPLING_SPLIT_MAX_ROWS;
    return rows > 0 ? (size_t)rows * sizeof(SplitRow) : 0;
}

extern "C" int32_t kernels_sampling_blocks_per_row(int32_t m, int32_t vocab_size, size_t workspace_bytes,
                                                   int32_t blocks_per_row)
{
    if (m < 1 || vocab_size < 1 || blocks_per_row == 1 || (size_t)m > workspace_bytes / sizeof(SplitRow)) return 1;
    long long n = blocks_per_row;
    if (n <= 0) { /* two split blocks per SM in all, each of kSplitMinTokens tokens at least */
        int dev = 0, sms = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return 1;
        n = 2LL * sms / m;
        const long long by_size = (vocab_size + kSplitMinTokens - 1) / kSplitMinTokens;
        if (n > by_size) n = by_size;
    }
    if (n > kSplitMaxBlocks) n = kSplitMaxBlocks;
    return n < 2 ? 1 : (int32_t)n;
}

extern "C" cudaError_t kernels_sampling(const float *logits, int32_t m, int32_t vocab_size,
                                        const kernels_sampling_params_t *params, const int32_t *penalty_offsets,
                                        const int32_t *penalty_ids, const int32_t *penalty_counts,
                                        const int32_t *banned_offsets, const int32_t *banned_ids,
                                        const uint32_t *allowed_mask, int32_t *out_tokens, float *out_logprobs,
                                        int32_t *out_ranks, int32_t *out_top_ids, float *out_top_logprobs,
                                        int32_t *next_token_table, const int32_t *table_index, double *diag,
                                        void *workspace, size_t workspace_bytes, int32_t blocks_per_row,
                                        cudaStream_t st)
{
    if (m == 0) return cudaSuccess;
    if (m < 0 || vocab_size < 1 || vocab_size > (1 << 22) || !logits || !params || !out_tokens || !out_logprobs ||
        !out_ranks || !out_top_ids || !out_top_logprobs || (penalty_offsets && (!penalty_ids || !penalty_counts)) ||
        (banned_offsets && !banned_ids))
        return cudaErrorInvalidValue;
    const size_t bytes = smem_bytes(vocab_size);
    const long long optin = device_smem_optin();
    if ((long long)bytes > optin) return cudaErrorInvalidValue;
    cudaError_t e;
    Args a{logits,      m,          vocab_size,   params,      penalty_offsets, penalty_ids,     penalty_counts,
           banned_offsets, banned_ids, allowed_mask, out_tokens, out_logprobs,    out_ranks,       out_top_ids,
           out_top_logprobs, next_token_table, table_index, diag, 1, vocab_size, nullptr};
    const int32_t nb = workspace ? kernels_sampling_blocks_per_row(m, vocab_size, workspace_bytes, blocks_per_row) : 1;
    if (nb > 1) {
        const int32_t slice = ((vocab_size + nb - 1) / nb + 31) / 32 * 32;
        const size_t b1 = split_smem_bytes<SplitP1Smem>(slice), b2 = split_smem_bytes<SplitP2Smem>(slice);
        if ((long long)b2 > optin || (long long)b1 > optin) return cudaErrorInvalidValue; /* never: b2 < bytes */
        a.split = nb;
        a.slice = slice;
        a.ws = workspace;
        const unsigned grid = (unsigned)m * (unsigned)nb;
        if ((e = cudaFuncSetAttribute(sampling_split_p1_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)b1)) !=
                cudaSuccess ||
            (e = cudaFuncSetAttribute(sampling_split_p2_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)b2)) !=
                cudaSuccess ||
            (e = cudaFuncSetAttribute(sampling_split_window_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)b2)) !=
                cudaSuccess ||
            (e = cudaFuncSetAttribute(sampling_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes)) !=
                cudaSuccess)
            return e;
#ifdef KERNELS_SAMPLING_EMULATE
        if ((e = emu_launch(sampling_split_p1_kernel, grid, kSplitThreads, b1, a)) != cudaSuccess ||
            (e = emu_launch(sampling_split_p2_kernel, grid, kSplitThreads, b2, a)) != cudaSuccess ||
            (e = emu_launch(sampling_split_window_kernel, grid, kSplitThreads, b2, a)) != cudaSuccess ||
            (e = emu_launch(sampling_kernel<true>, (unsigned)m, kThreads, bytes, a)) != cudaSuccess)
            return e;
        return emu_launch(sampling_split_rank_kernel, grid, kSplitThreads, sizeof(SplitP1Smem), a);
#else
        sampling_split_p1_kernel<<<grid, kSplitThreads, b1, st>>>(a);
        sampling_split_p2_kernel<<<grid, kSplitThreads, b2, st>>>(a);
        sampling_split_window_kernel<<<grid, kSplitThreads, b2, st>>>(a);
        sampling_kernel<true><<<m, kThreads, bytes, st>>>(a);
        sampling_split_rank_kernel<<<grid, kSplitThreads, sizeof(SplitP1Smem), st>>>(a);
        return cudaGetLastError();
#endif
    } else if ((e = cudaFuncSetAttribute(sampling_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes)) !=
               cudaSuccess) {
        return e;
    }
#ifdef KERNELS_SAMPLING_EMULATE
    (void)st;
    return emu_launch(sampling_kernel<false>, (unsigned)m, kThreads, bytes, a);
#else
    sampling_kernel<false><<<m, kThreads, bytes, st>>>(a);
    return cudaGetLastError();
#endif
}
