/* attention.cu — causal attention over token-slot KV (page size 1) on tensor cores.
 *
 * Layout (kernels.h): q/out bf16 [num_tokens, num_heads, head_dim]; kv_pool bf16
 * [num_slots, 2, num_kv_heads, head_dim]; position j of sequence s lives in slot
 * kv_slots[kv_start[s] + j]; token t attends positions [0, positions[t]].
 *
 * Two paths, both mma.sync m16n8k16 bf16 -> fp32 with an fp32 online softmax (exp2 domain):
 *  - decode (q_len == 1 sequences; every token when max_q_len <= kSmallQLen): one block per
 *    (token, kv head, split of the KV range).  The group's query heads are the 16 rows of the
 *    MMA (padded with zero rows), so each KV head is read once per step for all its query
 *    heads.  KV tiles of 64 positions are gathered through kv_slots by cp.async (16-byte
 *    chunks) in a 3-stage pipeline; each warp takes 16 positions of a tile, and the 4 warps'
 *    states are merged in shared memory.  With more than one split the block writes an
 *    unnormalised partial (max, sum, acc) to the workspace and attention_reduce_kernel merges
 *    the splits; splits are chosen so the grid fills the GPU (2 blocks per SM).  Splits that end
 *    before a sequence's newest positions request their first KV tiles before waiting on the
 *    kernel that writes q (programmatic dependent launch).
 *  - prefill (q_len > 1): FA2 — a block takes 64 query rows of one sequence and one head (16
 *    per warp, Q fragments held in registers) and loops over 64-position KV tiles gathered
 *    the same way (2 stages), masking by position (prefix-cached context counts).  The tile
 *    list (sequence, first row), heaviest tile of each sequence first, is built on the GPU by
 *    attention_schedule_kernel into the workspace, so the host never reads q_start.
 * Invariants: KV rows past the attended range are never read (zero-filled in shared memory),
 * so stale or NaN pool contents cannot leak; the launcher never allocates or synchronises and
 * fits the number of splits to the workspace it is given.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>

#include "kernels/kernels.h"
#include "kernels/pdl.cuh"

namespace {

typedef __nv_bfloat16 bf16;

constexpr int kThreads = 128;          /* 4 warps per block, both paths */
constexpr int kTileKV = 64;            /* KV positions per shared-memory tile */
constexpr int kPrefillRows = 64;       /* query rows per prefill block (16 per warp) */
constexpr int kDecodeStages = 3;
constexpr int kPrefillStages = 2;
constexpr int kSmallQLen = 4;          /* max_q_len <= this: every token through the decode path */
constexpr int kMinSplitChunk = 128;    /* fewest KV positions per decode split */
constexpr int kPartialRowsPerHead = 1024; /* workspace partial rows (token x split) per head */
constexpr int kScheduleThreads = 1024;

struct attn_params {
    const bf16 *q;
    const bf16 *kv;
    bf16 *out;
    const int32_t *positions, *token_seq, *q_start, *kv_start, *kv_slots;
    int num_heads, num_kv_heads, group;
    float scale_log2;                  /* softmax scale * log2(e) */
    int num_tokens, num_seqs;
};

struct decode_params {
    int by_seq;                        /* 1: item = sequence (q_len 1 only); 0: item = token */
    int splits, chunk, head_groups;    /* KV splits, positions per split, 16-row groups per kv head */
    float *ws_m, *ws_l, *ws_o;         /* partials [item, head, split] (+ [.., head_dim] for o) */
};

/* ---- PTX helpers ------------------------------------------------------------------------ */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte async copy global -> shared; zero-fills the destination when !valid (src unread). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}

/* c[16x8] += a[16x16] * b[16x8], bf16 inputs, fp32 accumulators */
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* ---- KV tile gather --------------------------------------------------------------------- */

/* Rows of a shared tile are D + 8 elements: 16 bytes of padding keep ldmatrix conflict-free. */
template <int D> struct kv_tile {
    static constexpr int kStride = D + 8;
    static constexpr int kChunks = D / 8;                        /* 16-byte chunks per row */
    static constexpr int kRowStep = kThreads / kChunks;          /* rows one pass covers */
    static constexpr int kRowsPerThread = kTileKV / kRowStep;
    static constexpr int kStageElems = 2 * kTileKV * kStride;    /* K tile then V tile */

    /* Slots of this thread's rows of the tile starting at `first`; -1 past `end`. */
    static __device__ __forceinline__ void load_slots(int (&slot)[kRowsPerThread], const int32_t *slots, int first,
                                                      int end)
    {
        const int r0 = threadIdx.x / kChunks;
#pragma unroll
        for (int i = 0; i < kRowsPerThread; i++) {
            const int pos = first + r0 + i * kRowStep;
            slot[i] = pos < end ? __ldg(slots + pos) : -1;
        }
    }

    static __device__ __forceinline__ void issue(bf16 *stage, const int (&slot)[kRowsPerThread], const bf16 *kv,
                                                 int num_kv_heads, int kvh)
    {
        const int r0 = threadIdx.x / kChunks, c = (threadIdx.x % kChunks) * 8;
#pragma unroll
        for (int i = 0; i < kRowsPerThread; i++) {
            const int row = r0 + i * kRowStep;
            const bool valid = slot[i] >= 0;
            const bf16 *k = valid ? kv + ((int64_t)slot[i] * 2 * num_kv_heads + kvh) * D + c : kv;
            const bf16 *v = valid ? k + (int64_t)num_kv_heads * D : kv;
            cp_async16(stage + row * kStride + c, k, valid);
            cp_async16(stage + (kTileKV + row) * kStride + c, v, valid);
        }
    }
};

/* Online softmax over this thread's score fragments (rows g and g + 8 of the warp's 16),
 * values already in the exp2 domain; rescales o and l, leaves p = exp2(s - m) in sc. */
template <int NB, int DB>
__device__ __forceinline__ void online_softmax(float (&sc)[NB][4], float (&m)[2], float (&l)[2], float (&o)[DB][4])
{
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
        mx[0] = fmaxf(mx[0], fmaxf(sc[nb][0], sc[nb][1]));
        mx[1] = fmaxf(mx[1], fmaxf(sc[nb][2], sc[nb][3]));
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        base[r] = mx[r] == -INFINITY ? 0.0f : mx[r];
        const float alpha = fast_exp2(m[r] - base[r]);
        m[r] = mx[r];
        l[r] *= alpha;
#pragma unroll
        for (int db = 0; db < DB; db++) {
            o[db][2 * r] *= alpha;
            o[db][2 * r + 1] *= alpha;
        }
    }
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
        sc[nb][0] = fast_exp2(sc[nb][0] - base[0]);
        sc[nb][1] = fast_exp2(sc[nb][1] - base[0]);
        sc[nb][2] = fast_exp2(sc[nb][2] - base[1]);
        sc[nb][3] = fast_exp2(sc[nb][3] - base[1]);
        l[0] += sc[nb][0] + sc[nb][1];
        l[1] += sc[nb][2] + sc[nb][3];
    }
}

/* o[16 x D] += p[16 x 16 positions] * V[rows v_row0 .. +15 of the tile] */
template <int D>
__device__ __forceinline__ void mma_pv(float (&o)[D / 8][4], const uint32_t (&pa)[4], const bf16 *sv, int v_row0,
                                       int lane)
{
    const int mi = lane >> 3, r = lane & 7;
    const bf16 *base = sv + (v_row0 + (mi & 1) * 8 + r) * kv_tile<D>::kStride + (mi >> 1) * 8;
#pragma unroll
    for (int dp = 0; dp < D / 16; dp++) {
        uint32_t b[4];
        ldsm_x4_trans(b, base + dp * 16);
        mma_bf16(o[2 * dp], pa, b[0], b[1]);
        mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
    }
}

/* sc[2 n-blocks of 8 positions] += q[16 x D] * K[rows k_row0 .. +15 of the tile]^T */
template <int D>
__device__ __forceinline__ void mma_qk16(float (&sc)[2][4], const uint32_t (&qa)[D / 16][4], const bf16 *sk,
                                         int k_row0, int lane)
{
    const int mi = lane >> 3, r = lane & 7;
    const bf16 *base = sk + (k_row0 + (mi >> 1) * 8 + r) * kv_tile<D>::kStride + (mi & 1) * 8;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
        uint32_t b[4];
        ldsm_x4(b, base + ks * 16);
        mma_bf16(sc[0], qa[ks], b[0], b[1]);
        mma_bf16(sc[1], qa[ks], b[2], b[3]);
    }
}

/* A fragments of the 16 rows starting at row0 of a shared [rows][D + 8] tile. */
template <int D>
__device__ __forceinline__ void load_q_frags(uint32_t (&qa)[D / 16][4], const bf16 *sq, int row0, int lane)
{
    const int mi = lane >> 3, r = lane & 7;
    const bf16 *base = sq + (row0 + (mi & 1) * 8 + r) * kv_tile<D>::kStride + (mi >> 1) * 8;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) ldsm_x4(qa[ks], base + ks * 16);
}

/* ---- decode ----------------------------------------------------------------------------- */

template <int D> constexpr size_t decode_smem_bytes()
{
    return (size_t)(16 * kv_tile<D>::kStride + kDecodeStages * kv_tile<D>::kStageElems) * sizeof(bf16);
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2) attention_decode_kernel(attn_params p, decode_params dp)
{
    typedef kv_tile<D> T;
    constexpr int S = T::kStride;
    static_assert(4 * 16 * D * sizeof(float) + 128 * sizeof(float) <= kDecodeStages * T::kStageElems * sizeof(bf16),
                  "merge buffer must fit in the stage buffers");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16 *sq = reinterpret_cast<bf16 *>(smem_raw);
    bf16 *skv = sq + 16 * S;

    PDL_TRIGGER();   /* the reduce may launch early */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int split = blockIdx.x % dp.splits, item = blockIdx.x / dp.splits;
    const int kvh = blockIdx.y / dp.head_groups, hg = blockIdx.y % dp.head_groups;
    /* the batch arrays are copied from the host before the step's first kernel: readable before the wait */
    int t, s;
    if (dp.by_seq) {
        s = item;
        t = p.q_start[s];
    } else {
        t = item;
        s = p.token_seq[t];
    }
    const int len = p.positions[t] + 1;
    const int begin = split * dp.chunk;
    if (begin >= len || (dp.by_seq && p.q_start[s + 1] - t != 1)) {
        PDL_WAIT();   /* every block waits: this grid's completion implies its predecessor's */
        return;
    }
    const int end = min(begin + dp.chunk, len);
    const int32_t *slots = p.kv_slots + p.kv_start[s];
    const int h0 = kvh * p.group + hg * 16;
    const int rows = min(16, p.group - hg * 16);

    /* A split whose positions all lie before a sequence's newest kSmallQLen (the most a decode item's
     * sequence writes this step) reads KV written by earlier steps: its first tiles are requested
     * before waiting for the kernel that writes q and the new KV (programmatic dependent launch),
     * overlapping that kernel's tail. */
    const bool early = end <= len - kSmallQLen;
    if (!early) PDL_WAIT();
    const int ntiles = (end - begin + kTileKV - 1) / kTileKV;
    int slot[kDecodeStages - 1][T::kRowsPerThread];
#pragma unroll
    for (int st = 0; st < kDecodeStages - 1; st++)
        if (st < ntiles) T::load_slots(slot[st], slots, begin + st * kTileKV, end);
#pragma unroll
    for (int st = 0; st < kDecodeStages - 1; st++) {
        if (st < ntiles) T::issue(skv + st * T::kStageElems, slot[st], p.kv, p.num_kv_heads, kvh);
        cp_async_commit();
    }
    int next[T::kRowsPerThread];
    if (kDecodeStages - 1 < ntiles) T::load_slots(next, slots, begin + (kDecodeStages - 1) * kTileKV, end);
    if (early) PDL_WAIT();
    /* q rows of the group (zero rows past it), by plain loads: visible after the loop's first barrier */
    for (int i = tid; i < 16 * T::kChunks; i += kThreads) {
        const int r = i / T::kChunks, c = (i % T::kChunks) * 8;
        *reinterpret_cast<uint4 *>(sq + r * S + c) =
            r < rows ? *reinterpret_cast<const uint4 *>(p.q + ((int64_t)t * p.num_heads + h0 + r) * D + c)
                     : make_uint4(0u, 0u, 0u, 0u);
    }

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    uint32_t qa[D / 16][4];

    for (int j = 0; j < ntiles; j++) {
        cp_async_wait<kDecodeStages - 2>();
        __syncthreads();
        if (j == 0) load_q_frags<D>(qa, sq, 0, lane);
        const int jn = j + kDecodeStages - 1;
        if (jn < ntiles) T::issue(skv + (jn % kDecodeStages) * T::kStageElems, next, p.kv, p.num_kv_heads, kvh);
        cp_async_commit();
        if (jn + 1 < ntiles) T::load_slots(next, slots, begin + (jn + 1) * kTileKV, end);

        const bf16 *sk = skv + (j % kDecodeStages) * T::kStageElems;
        const bf16 *sv = sk + kTileKV * S;
        float sc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
        mma_qk16<D>(sc, qa, sk, warp * 16, lane);
        const int pos0 = begin + j * kTileKV + warp * 16 + (lane & 3) * 2;
#pragma unroll
        for (int nb = 0; nb < 2; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                sc[nb][e] = pos0 + nb * 8 + (e & 1) < end ? sc[nb][e] * p.scale_log2 : -INFINITY;
        online_softmax<2, D / 8>(sc, m, l, o);
        const uint32_t pa[4] = {pack_bf16(sc[0][0], sc[0][1]), pack_bf16(sc[0][2], sc[0][3]),
                                pack_bf16(sc[1][0], sc[1][1]), pack_bf16(sc[1][2], sc[1][3])};
        mma_pv<D>(o, pa, sv, warp * 16, lane);
    }
    cp_async_wait<0>();
    __syncthreads();

    /* merge the 4 warps' states through shared memory (the stage buffers are free now) */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    float *red_o = reinterpret_cast<float *>(skv);   /* [4 warps][16][D] */
    float *red_m = red_o + 4 * 16 * D;                /* [4][16] */
    float *red_l = red_m + 64;
    const int g = lane >> 2, tig = lane & 3;
    if (tig == 0) {
        red_m[warp * 16 + g] = m[0];
        red_m[warp * 16 + g + 8] = m[1];
        red_l[warp * 16 + g] = l[0];
        red_l[warp * 16 + g + 8] = l[1];
    }
#pragma unroll
    for (int nb = 0; nb < D / 8; nb++) {
        const int col = nb * 8 + tig * 2;
        *reinterpret_cast<float2 *>(red_o + (warp * 16 + g) * D + col) = make_float2(o[nb][0], o[nb][1]);
        *reinterpret_cast<float2 *>(red_o + (warp * 16 + g + 8) * D + col) = make_float2(o[nb][2], o[nb][3]);
    }
    __syncthreads();
    for (int i = tid; i < rows * (D / 4); i += kThreads) {
        const int r = i / (D / 4), c4 = (i % (D / 4)) * 4;
        float mx = red_m[r];
#pragma unroll
        for (int w = 1; w < 4; w++) mx = fmaxf(mx, red_m[w * 16 + r]);
        float sum = 0.0f;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int w = 0; w < 4; w++) {
            const float f = fast_exp2(red_m[w * 16 + r] - mx);
            const float4 v = *reinterpret_cast<const float4 *>(red_o + (w * 16 + r) * D + c4);
            sum += f * red_l[w * 16 + r];
            acc.x += f * v.x;
            acc.y += f * v.y;
            acc.z += f * v.z;
            acc.w += f * v.w;
        }
        if (dp.splits == 1) {
            const float inv = 1.0f / sum;
            uint2 packed = make_uint2(pack_bf16(acc.x * inv, acc.y * inv), pack_bf16(acc.z * inv, acc.w * inv));
            *reinterpret_cast<uint2 *>(p.out + ((int64_t)t * p.num_heads + h0 + r) * D + c4) = packed;
        } else {
            const int64_t row = ((int64_t)item * p.num_heads + h0 + r) * dp.splits + split;
            *reinterpret_cast<float4 *>(dp.ws_o + row * D + c4) = acc;
            if (c4 == 0) {
                dp.ws_m[row] = mx;
                dp.ws_l[row] = sum;
            }
        }
    }
}

/* Merges the splits of each (item, head) (launched with programmatic dependent launch on
 * sm_90+, so its launch overlaps the decode grid's tail): out = sum_i 2^(m_i - M) acc_i / sum_i 2^(m_i - M) l_i. */
template <int D>
__global__ void __launch_bounds__(kThreads) attention_reduce_kernel(attn_params p, decode_params dp)
{
    constexpr int kHeadsPerBlock = kThreads / (D / 4);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");   /* decode grid done, partials visible */
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); /* the o projection (PDL) may start its loads */
#endif
    const int item = blockIdx.x;
    int t;
    if (dp.by_seq) {
        t = p.q_start[item];
        if (p.q_start[item + 1] - t != 1) return;
    } else {
        t = item;
    }
    const int h = blockIdx.y * kHeadsPerBlock + threadIdx.x / (D / 4);
    if (h >= p.num_heads) return;
    const int c4 = (threadIdx.x % (D / 4)) * 4;
    const int len = p.positions[t] + 1;
    const int n = min(dp.splits, (len + dp.chunk - 1) / dp.chunk);
    const int64_t row0 = ((int64_t)item * p.num_heads + h) * dp.splits;
    float mx = -INFINITY;
#pragma unroll 8
    for (int i = 0; i < n; i++) mx = fmaxf(mx, dp.ws_m[row0 + i]);
    float sum = 0.0f;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
    for (int i = 0; i < n; i++) {
        const float f = fast_exp2(dp.ws_m[row0 + i] - mx);
        const float4 v = *reinterpret_cast<const float4 *>(dp.ws_o + (row0 + i) * D + c4);
        sum += f * dp.ws_l[row0 + i];
        acc.x += f * v.x;
        acc.y += f * v.y;
        acc.z += f * v.z;
        acc.w += f * v.w;
    }
    const float inv = 1.0f / sum;
    uint2 packed = make_uint2(pack_bf16(acc.x * inv, acc.y * inv), pack_bf16(acc.z * inv, acc.w * inv));
    *reinterpret_cast<uint2 *>(p.out + ((int64_t)t * p.num_heads + h) * D + c4) = packed;
}

/* ---- prefill ---------------------------------------------------------------------------- */

/* Tile list: for every sequence with q_len > 1, ceil(q_len / 64) entries (sequence, first
 * token), heaviest (last) tile first.  One block; scans the sequences 1024 at a time. */
__global__ void __launch_bounds__(kScheduleThreads) attention_schedule_kernel(const int32_t *q_start, int num_seqs,
                                                                             int2 *tiles, int *num_tiles)
{
    __shared__ int warp_sums[kScheduleThreads / 32];
    __shared__ int base;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    if (tid == 0) base = 0;
    __syncthreads();
    for (int s0 = 0; s0 < num_seqs; s0 += kScheduleThreads) {
        const int s = s0 + tid;
        int first = 0, n = 0;
        if (s < num_seqs) {
            first = q_start[s];
            const int q_len = q_start[s + 1] - first;
            n = q_len > 1 ? (q_len + kPrefillRows - 1) / kPrefillRows : 0;
        }
        int incl = n;
#pragma unroll
        for (int d = 1; d < 32; d <<= 1) {
            const int v = __shfl_up_sync(0xffffffffu, incl, d);
            if (lane >= d) incl += v;
        }
        if (lane == 31) warp_sums[warp] = incl;
        __syncthreads();
        if (warp == 0) {
            int w = warp_sums[lane];
#pragma unroll
            for (int d = 1; d < 32; d <<= 1) {
                const int v = __shfl_up_sync(0xffffffffu, w, d);
                if (lane >= d) w += v;
            }
            warp_sums[lane] = w;   /* inclusive over warps */
        }
        __syncthreads();
        const int off = base + (warp ? warp_sums[warp - 1] : 0) + incl - n;
        for (int i = 0; i < n; i++) tiles[off + i] = make_int2(s, first + (n - 1 - i) * kPrefillRows);
        __syncthreads();
        if (tid == 0) base += warp_sums[kScheduleThreads / 32 - 1];
        __syncthreads();
    }
    if (tid == 0) *num_tiles = base;
}

template <int D> constexpr size_t prefill_smem_bytes()
{
    return (size_t)(kPrefillRows * kv_tile<D>::kStride + kPrefillStages * kv_tile<D>::kStageElems) * sizeof(bf16);
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2) attention_prefill_kernel(attn_params p, const int2 *tiles,
                                                                       const int *num_tiles)
{
    typedef kv_tile<D> T;
    constexpr int S = T::kStride;
    constexpr int NB = kTileKV / 8;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16 *sq = reinterpret_cast<bf16 *>(smem_raw);
    bf16 *skv = sq + kPrefillRows * S;
    __shared__ int s_max_pos, s_min_pos;

    if ((int)blockIdx.y >= *num_tiles) return;
    const int2 tile = tiles[blockIdx.y];
    const int s = tile.x, row0 = tile.y, h = blockIdx.x, kvh = h / p.group;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int nrows = min(kPrefillRows, p.q_start[s + 1] - row0);
    if (tid == 0) {
        s_max_pos = -1;
        s_min_pos = 0x7fffffff;
    }
    for (int i = tid; i < kPrefillRows * T::kChunks; i += kThreads) {
        const int r = i / T::kChunks, c = (i % T::kChunks) * 8;
        const bool valid = r < nrows;
        cp_async16(sq + r * S + c, p.q + ((int64_t)(row0 + (valid ? r : 0)) * p.num_heads + h) * D + c, valid);
    }
    __syncthreads();
    if (tid < nrows) {
        const int pos = p.positions[row0 + tid];
        atomicMax(&s_max_pos, pos);
        atomicMin(&s_min_pos, pos);
    }
    __syncthreads();
    const int kv_len = s_max_pos + 1, min_pos = s_min_pos;
    const int g = lane >> 2, tig = lane & 3;
    int row_pos[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = warp * 16 + g + r * 8;
        row_pos[r] = row < nrows ? p.positions[row0 + row] : -1;
    }
    const int32_t *slots = p.kv_slots + p.kv_start[s];
    const int ntiles = (kv_len + kTileKV - 1) / kTileKV;
    int slot[T::kRowsPerThread];
#pragma unroll
    for (int st = 0; st < kPrefillStages - 1; st++) {
        if (st < ntiles) {
            T::load_slots(slot, slots, st * kTileKV, kv_len);
            T::issue(skv + st * T::kStageElems, slot, p.kv, p.num_kv_heads, kvh);
        }
        cp_async_commit();
    }
    if (kPrefillStages - 1 < ntiles) T::load_slots(slot, slots, (kPrefillStages - 1) * kTileKV, kv_len);

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    uint32_t qa[D / 16][4];

    for (int j = 0; j < ntiles; j++) {
        cp_async_wait<kPrefillStages - 2>();
        __syncthreads();
        if (j == 0) load_q_frags<D>(qa, sq, warp * 16, lane);
        const int jn = j + kPrefillStages - 1;
        if (jn < ntiles) T::issue(skv + (jn % kPrefillStages) * T::kStageElems, slot, p.kv, p.num_kv_heads, kvh);
        cp_async_commit();
        if (jn + 1 < ntiles) T::load_slots(slot, slots, (jn + 1) * kTileKV, kv_len);

        const bf16 *sk = skv + (j % kPrefillStages) * T::kStageElems;
        const bf16 *sv = sk + kTileKV * S;
        float sc[NB][4];
#pragma unroll
        for (int nb = 0; nb < NB; nb++) sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.0f;
#pragma unroll
        for (int np = 0; np < NB / 2; np++) {
            float(&pair)[2][4] = *reinterpret_cast<float(*)[2][4]>(&sc[2 * np]);
            mma_qk16<D>(pair, qa, sk, np * 16, lane);
        }
        const int key0 = j * kTileKV;
        if (key0 + kTileKV - 1 > min_pos) {
#pragma unroll
            for (int nb = 0; nb < NB; nb++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = key0 + nb * 8 + tig * 2 + (e & 1);
                    sc[nb][e] = key <= row_pos[e >> 1] ? sc[nb][e] * p.scale_log2 : -INFINITY;
                }
        } else {
#pragma unroll
            for (int nb = 0; nb < NB; nb++)
#pragma unroll
                for (int e = 0; e < 4; e++) sc[nb][e] *= p.scale_log2;
        }
        online_softmax<NB, D / 8>(sc, m, l, o);
#pragma unroll
        for (int kk = 0; kk < kTileKV / 16; kk++) {
            const uint32_t pa[4] = {pack_bf16(sc[2 * kk][0], sc[2 * kk][1]), pack_bf16(sc[2 * kk][2], sc[2 * kk][3]),
                                    pack_bf16(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                    pack_bf16(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
            mma_pv<D>(o, pa, sv, kk * 16, lane);
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        const int row = warp * 16 + g + r * 8;
        if (row >= nrows) continue;
        const float inv = 1.0f / l[r];
        bf16 *dst = p.out + ((int64_t)(row0 + row) * p.num_heads + h) * D + tig * 2;
#pragma unroll
        for (int nb = 0; nb < D / 8; nb++)
            *reinterpret_cast<uint32_t *>(dst + nb * 8) = pack_bf16(o[nb][2 * r] * inv, o[nb][2 * r + 1] * inv);
    }
}

/* ---- host side -------------------------------------------------------------------------- */

inline size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Upper bound of prefill tiles: each sequence with q_len > 1 adds at most one partial tile. */
inline int64_t prefill_tile_cap(int64_t num_tokens, int64_t num_seqs)
{
    const int64_t seqs = num_seqs < num_tokens / 2 ? num_seqs : num_tokens / 2;
    return (num_tokens + kPrefillRows - 1) / kPrefillRows + seqs;
}

inline size_t schedule_bytes(int64_t num_tokens, int64_t num_seqs)
{
    return align_up(256 + (size_t)prefill_tile_cap(num_tokens, num_seqs) * sizeof(int2), 256);
}

/* Per-device facts the launcher needs on every call, looked up once: SM count, compute
 * capability major, and whether each kernel's dynamic shared-memory limit has been raised. */
constexpr int kMaxDevices = 64;
std::atomic<int> g_sm_count[kMaxDevices];
std::atomic<int> g_cc_major[kMaxDevices];
std::atomic<unsigned> g_smem_ready[kMaxDevices];
std::atomic<int> g_decode_occ[kMaxDevices][4];   /* resident decode blocks per SM, by head_dim_index */

/* 0..3 for head_dim 16, 32, 64, 128: indexes the per-kernel caches above. */
template <int D> constexpr int head_dim_index() { return D == 16 ? 0 : D == 32 ? 1 : D == 64 ? 2 : 3; }

cudaError_t device_info(int *dev, int *sms, int *major)
{
    cudaError_t e = cudaGetDevice(dev);
    if (e != cudaSuccess) return e;
    if (*dev < 0 || *dev >= kMaxDevices) return cudaErrorInvalidDevice;
    *sms = g_sm_count[*dev].load(std::memory_order_relaxed);
    *major = g_cc_major[*dev].load(std::memory_order_relaxed);
    if (*sms > 0) return cudaSuccess;
    e = cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, *dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, *dev);
    if (e != cudaSuccess) return e;
    g_cc_major[*dev].store(*major, std::memory_order_relaxed);
    g_sm_count[*dev].store(*sms, std::memory_order_relaxed);
    return cudaSuccess;
}

/* Raises `kernel`'s dynamic shared-memory limit once per device (bit `which` of the mask). */
template <typename K> cudaError_t ensure_smem(int dev, unsigned which, K kernel, size_t bytes)
{
    if (g_smem_ready[dev].load(std::memory_order_acquire) & (1u << which)) return cudaSuccess;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e == cudaSuccess) g_smem_ready[dev].fetch_or(1u << which, std::memory_order_release);
    return e;
}

/* KV splits for `blocks` decode blocks per split, `per_wave` blocks resident at once: the count
 * s <= most that minimises waves per unit of work, ceil(blocks * s / per_wave) / s, preferring
 * fewer splits on ties (each split costs a partial row and reduce work).  1 when one split
 * already fills a wave. */
inline int64_t choose_splits(int64_t blocks, int64_t per_wave, int64_t most)
{
    if (blocks <= 0 || per_wave <= 0 || most <= 1 || blocks >= per_wave) return 1;
    int64_t best = 1;
    double best_cost = 1.0;
    const int64_t limit = most < 2 * per_wave / blocks + 1 ? most : 2 * per_wave / blocks + 1;
    for (int64_t s = 2; s <= limit; s++) {
        const double cost = (double)((blocks * s + per_wave - 1) / per_wave) / (double)s;
        if (cost < best_cost * 0.99) {
            best = s;
            best_cost = cost;
        }
    }
    return best;
}

template <int D>
cudaError_t attention_launch(const attn_params &p, int max_q_len, int max_kv_len, void *workspace,
                             size_t workspace_bytes, cudaStream_t st)
{
    const bool all_decode = max_q_len <= kSmallQLen;
    char *ws = static_cast<char *>(workspace);
    size_t used = 0;
    int *num_tiles = nullptr;
    int2 *tiles = nullptr;
    int64_t tile_cap = 0;
    if (!all_decode) {
        tile_cap = prefill_tile_cap(p.num_tokens, p.num_seqs);
        used = schedule_bytes(p.num_tokens, p.num_seqs);
        if (!ws || workspace_bytes < used || tile_cap > 65535) return cudaErrorInvalidValue;
        num_tiles = reinterpret_cast<int *>(ws);
        tiles = reinterpret_cast<int2 *>(ws + 256);
    }

    int dev = 0, sms = 0, major = 0;
    cudaError_t err = device_info(&dev, &sms, &major);
    if (err != cudaSuccess) return err;
    constexpr unsigned kDecodeBit = head_dim_index<D>(), kPrefillBit = 4 + head_dim_index<D>();

    decode_params dp = {};
    dp.by_seq = all_decode ? 0 : 1;
    dp.head_groups = (p.group + 15) / 16;
    const int64_t items = all_decode ? p.num_tokens : p.num_seqs;
    if (items > 0) {
        /* splits: fill whole waves of resident blocks, at least kMinSplitChunk positions each */
        const size_t smem = decode_smem_bytes<D>();
        cudaError_t e = ensure_smem(dev, kDecodeBit, attention_decode_kernel<D>, smem);
        if (e != cudaSuccess) return e;
        int occ = g_decode_occ[dev][head_dim_index<D>()].load(std::memory_order_relaxed);
        if (occ <= 0) {
            e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, attention_decode_kernel<D>, kThreads, smem);
            if (e != cudaSuccess) return e;
            if (occ < 1) occ = 1;
            g_decode_occ[dev][head_dim_index<D>()].store(occ, std::memory_order_relaxed);
        }
        const int64_t blocks = items * p.num_kv_heads * dp.head_groups;
        int64_t splits = choose_splits(blocks, (int64_t)occ * sms, (max_kv_len + kMinSplitChunk - 1) / kMinSplitChunk);
        if (splits > 1) {
            const size_t per_split = (size_t)items * p.num_heads * (D + 2) * sizeof(float);
            const size_t avail = workspace_bytes > used + 512 ? workspace_bytes - used - 512 : 0;
            const int64_t fit = ws ? (int64_t)(avail / per_split) : 0;
            if (splits > fit) splits = fit;
        }
        if (splits > 1) {
            int64_t chunk = (max_kv_len + splits - 1) / splits;
            chunk = (chunk + kTileKV - 1) / kTileKV * kTileKV;
            splits = (max_kv_len + chunk - 1) / chunk;
            dp.chunk = (int)chunk;
        }
        if (splits <= 1) {
            splits = 1;
            dp.chunk = 0x3fffffff;   /* one split covers any length */
        }
        dp.splits = (int)splits;
        if (splits > 1) {
            const size_t rows = (size_t)items * p.num_heads * splits;
            char *base = ws + used;
            dp.ws_m = reinterpret_cast<float *>(base);
            dp.ws_l = reinterpret_cast<float *>(base + align_up(rows * sizeof(float), 256));
            dp.ws_o = reinterpret_cast<float *>(base + 2 * align_up(rows * sizeof(float), 256));
        }
        if (items * splits > 0x7fffffff || (int64_t)p.num_kv_heads * dp.head_groups > 65535)
            return cudaErrorInvalidValue;
        e = kernels_pdl::launch(attention_decode_kernel<D>, dim3((unsigned)(items * splits), p.num_kv_heads * dp.head_groups),
                                dim3(kThreads), smem, st, p, dp);
        if (e != cudaSuccess) return e;
        if (splits > 1) {
            constexpr int kHeadsPerBlock = kThreads / (D / 4);
            const dim3 grid((unsigned)items, (p.num_heads + kHeadsPerBlock - 1) / kHeadsPerBlock);
            /* programmatic dependent launch on sm_90+ whatever LIGHTLLM_PDL says: overlap the launch with the decode tail */
            e = kernels_pdl::launch_if(major >= 9, attention_reduce_kernel<D>, grid, dim3(kThreads), 0, st, p, dp);
            if (e != cudaSuccess) return e;
        }
    }
    if (!all_decode) {
        attention_schedule_kernel<<<1, kScheduleThreads, 0, st>>>(p.q_start, p.num_seqs, tiles, num_tiles);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
        constexpr size_t smem = prefill_smem_bytes<D>();
        e = ensure_smem(dev, kPrefillBit, attention_prefill_kernel<D>, smem);
        if (e != cudaSuccess) return e;
        attention_prefill_kernel<D><<<dim3(p.num_heads, (unsigned)tile_cap), kThreads, smem, st>>>(p, tiles, num_tiles);
        e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

} // namespace

extern "C" size_t kernels_attention_workspace_bytes(int32_t max_tokens, int32_t num_heads, int32_t head_dim,
                                                    int32_t max_seq_len)
{
    (void)max_seq_len;
    if (max_tokens < 1) max_tokens = 1;
    const size_t rows = (size_t)kPartialRowsPerHead * (num_heads > 0 ? num_heads : 1);
    return schedule_bytes(max_tokens, max_tokens) + 512 + 2 * align_up(rows * sizeof(float), 256) +
           rows * (size_t)(head_dim > 0 ? head_dim : 0) * sizeof(float);
}

extern "C" cudaError_t kernels_attention(const void *q, const void *kv_pool, int32_t num_heads, int32_t num_kv_heads,
                                         int32_t head_dim, float scale, int32_t num_tokens, int32_t num_seqs,
                                         const int32_t *positions, const int32_t *token_seq, const int32_t *q_start,
                                         const int32_t *kv_start, const int32_t *kv_slots, int32_t max_q_len,
                                         int32_t max_kv_len, void *out, void *workspace, size_t workspace_bytes,
                                         cudaStream_t st)
{
    if (num_tokens <= 0) return cudaSuccess;
    if (num_kv_heads <= 0 || num_heads <= 0 || num_heads % num_kv_heads != 0 || num_seqs <= 0 || max_kv_len <= 0)
        return cudaErrorInvalidValue;
    attn_params p;
    p.q = static_cast<const bf16 *>(q);
    p.kv = static_cast<const bf16 *>(kv_pool);
    p.out = static_cast<bf16 *>(out);
    p.positions = positions;
    p.token_seq = token_seq;
    p.q_start = q_start;
    p.kv_start = kv_start;
    p.kv_slots = kv_slots;
    p.num_heads = num_heads;
    p.num_kv_heads = num_kv_heads;
    p.group = num_heads / num_kv_heads;
    p.scale_log2 = scale * 1.4426950408889634f;
    p.num_tokens = num_tokens;
    p.num_seqs = num_seqs;
    /* The one dispatch point: head_dim is a compile-time constant; any GQA group size works
     * (the decode path packs a group into 16-row MMA tiles, the prefill path maps h -> h / group). */
    switch (head_dim) {
    case 16: return attention_launch<16>(p, max_q_len, max_kv_len, workspace, workspace_bytes, st);
    case 32: return attention_launch<32>(p, max_q_len, max_kv_len, workspace, workspace_bytes, st);
    case 64: return attention_launch<64>(p, max_q_len, max_kv_len, workspace, workspace_bytes, st);
    case 128: return attention_launch<128>(p, max_q_len, max_kv_len, workspace, workspace_bytes, st);
    default: return cudaErrorInvalidValue;   /* unsupported head_dim */
    }
}
