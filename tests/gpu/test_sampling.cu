/* test_sampling.cu — kernels_sampling (csrc/kernels/sampling.cu) against the CPU sampler
 * (engine/sampling.c, sampling_sample_row), row by row, plus a distribution check and timing.
 *
 * Cases: vocab 1000 / 32000 / 151936 × rows 1 / 7 / 64 / 256, several seeds each (and vocab 50257,
 * odd: the unvectorised path, up to 64 rows); every row
 * draws a parameter combination (greedy, top_k 1, temperature only, top_k, top_p, min_p,
 * mixes, large top_k, high and tiny temperature, penalties with rep > 1 and < 1, banned ids,
 * allowed masks of several densities), a logprobs setting (-1, 0, 5, 20) and a logits shape
 * (normal, peaked "LLM-like", heavy ties (buckets larger than the kernel's window), a constant
 * row, sprinkled NaN / -inf, a mostly masked row).  Outputs, diagnostics and the next-token
 * table are poisoned before each launch; every slot must be written.
 * Checks (each failure prints the row, its parameters and both answers):
 *   - u: the kernel's Philox draw (diag) equals sampling_uniform bit for bit;
 *   - greedy rows: token identical;  logprobs: rank and top ids identical, logprobs within 1e-4;
 *   - sampled rows: token identical in >= 99.9% of rows, and every mismatch has a near-boundary
 *     margin (< 1e-9 of the mass) on the GPU side (draw or top_p cut): printed;
 *   - the next-token table holds each row's token at its index, other entries untouched;
 *   - the same launch twice gives identical bits (the GPU sampler is deterministic);
 *   - chi-square: 32768 draws from fixed rows (several parameter sets) against the exact
 *     probabilities (computed here in double), and no draw outside the kept set.
 *   - the split path (several blocks per row, m <= KERNELS_SAMPLING_SPLIT_MAX_ROWS) against the
 *     single-block path on every case (block counts 2 .. 256): tokens, ranks, top ids, table
 *     and diag identical, logprobs within 2 ulp (the number not bit-equal is printed).
 * Then timing: per-batch time at vocab 151936 for m = 1, 64, 256 beside the floor (logits
 * bytes / 4 TB/s), the single-block path's time and a device-to-device copy of the same bytes.
 *
 * Build (tests/gpu/test_gpu_sampling.py does this):
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Icsrc -c csrc/engine/sampling.c csrc/core/log.c csrc/core/status.c
 *   nvcc -O3 -std=c++17 -Icsrc -gencode=arch=compute_90a,code=sm_90a tests/gpu/test_sampling.cu \
 *        csrc/kernels/sampling.cu *.o -o test_sampling -lm
 * Run: ./test_sampling [--quick] [--bench] [--no-bench] [--blocks N]   (prints ALL PASSED; exit 0 pass,
 *      1 fail, 77 no GPU).  --blocks N (or LIGHTLLM_SAMPLE_BLOCKS=N): blocks per row of every
 *      launch (0 automatic, the default; 1 the single-block path).
 */
#include <cuda_runtime.h>

#include <algorithm>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

extern "C" {
#include "engine/sampling.h"
#include "kernels/kernels.h"
}

#include "cuda_ok.h"


static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static uint64_t rng_next()
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit() { return (double)(rng_next() >> 11) * 0x1.0p-53; }
static int rng_int(int n) { return (int)(rng_next() % (uint64_t)n); }
static float rng_normal()
{
    double u1 = rng_unit(), u2 = rng_unit();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

static int g_fail, g_checks;
#define MAX_FAIL_PRINTS 40
static int g_prints;
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    g_fail++;
    if (g_prints++ >= MAX_FAIL_PRINTS) return;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* ------------------------------------------------------------------ one batch, host side */

struct RowIn {
    sampling_params_t sp;
    uint64_t key, counter;
    std::vector<int32_t> prompt, output, banned;
    int shape;       /* logits shape, for the report */
    int combo;
};

struct Batch {
    int m = 0, vocab = 0;
    bool has_mask = false, has_pen = false, has_ban = false;
    std::vector<float> logits;                /* [m, vocab] */
    std::vector<uint32_t> mask;               /* [m, words] */
    std::vector<RowIn> rows;
    /* CSR */
    std::vector<int32_t> pen_off, pen_ids, pen_cnt, ban_off, ban_ids;
    std::vector<kernels_sampling_params_t> kp;
    std::vector<int32_t> table_index;
    int table_size = 0;
};

static int g_scale = 1, g_force_shape = -1; /* --scale: more seeds (emulator); --shape: one logits shape */
/* --blocks N (default: LIGHTLLM_SAMPLE_BLOCKS, else 0 = automatic): kernels_sampling's blocks_per_row */
static int g_blocks = 0;
static void *g_ws;         /* the split path's workspace, for KERNELS_SAMPLING_SPLIT_MAX_ROWS rows */
static size_t g_ws_bytes;
static const char *SHAPES[] = {"normal", "llm", "ties", "constant", "nan-inf", "narrow", "offset"};
#define NUM_SHAPES 7
#define NUM_COMBOS 16

static void fill_logits(float *x, int vocab, int shape)
{
    switch (shape) {
    case 0: /* normal, sigma 2 */
        for (int i = 0; i < vocab; i++) x[i] = 2.0f * rng_normal();
        break;
    case 1: { /* peaked: a long low tail and a handful of strong tokens */
        for (int i = 0; i < vocab; i++) x[i] = 1.5f * rng_normal() - 4.0f;
        int k = 1 + rng_int(8);
        for (int j = 0; j < k; j++) x[rng_int(vocab)] = 6.0f + 6.0f * (float)rng_unit();
        break;
    }
    case 2: /* heavy ties: half-integer steps (buckets with many equal z) */
        for (int i = 0; i < vocab; i++) x[i] = roundf(2.0f * rng_normal()) * 0.5f;
        break;
    case 3: /* constant row: one bucket holds everything */
        for (int i = 0; i < vocab; i++) x[i] = 1.25f;
        break;
    case 4: /* sprinkled NaN / -inf / one huge negative outlier */
        for (int i = 0; i < vocab; i++) x[i] = 3.0f * rng_normal();
        for (int j = 0; j < 1 + vocab / 500; j++) x[rng_int(vocab)] = NAN;
        for (int j = 0; j < 1 + vocab / 300; j++) x[rng_int(vocab)] = -INFINITY;
        x[rng_int(vocab)] = -1.0e4f;
        break;
    case 5: /* narrow: tiny spread (span < 1e-6 after / T for some T) */
        for (int i = 0; i < vocab; i++) x[i] = 0.5f + 1e-7f * (float)rng_int(5);
        break;
    default: /* offset: large magnitudes, so y - max rounds */
        for (int i = 0; i < vocab; i++) x[i] = 3000.0f + 3.0f * rng_normal();
        break;
    }
}

/* combo -> parameters (penalties / bans / mask are separate draws) */
static void set_combo(sampling_params_t *p, int combo, int vocab)
{
    sampling_params_default(p);
    switch (combo) {
    case 0: p->temperature = 0.0f; break;
    case 1: p->top_k = 1; p->temperature = 0.8f; break;
    case 2: p->temperature = 1.0f; break;
    case 3: p->temperature = 0.7f; p->top_k = 50; break;
    case 4: p->top_p = 0.9f; break;
    case 5: p->temperature = 0.8f; p->top_k = 40; p->top_p = 0.95f; p->min_p = 0.05f; break;
    case 6: p->temperature = 1.3f; p->min_p = 0.1f; break;
    case 7: p->top_k = std::min(5000, vocab - 1); p->temperature = 1.1f; break;
    case 8: p->temperature = 0.5f; p->top_p = 0.5f; p->repetition_penalty = 1.2f; p->frequency_penalty = 0.5f;
            p->presence_penalty = 0.3f; break;
    case 9: p->temperature = 2.0f; p->top_k = 100; p->top_p = 0.8f; p->repetition_penalty = 0.8f; break;
    case 10: p->temperature = 100.0f; p->top_p = 0.99f; break;
    case 11: p->top_k = vocab - 1; break;
    case 12: p->temperature = 0.01f; break;
    case 13: p->temperature = 0.9f; p->top_p = 0.3f; p->min_p = 0.02f; p->frequency_penalty = -1.0f;
             p->presence_penalty = -0.5f; break;
    case 14: p->temperature = 1.0f; p->top_k = 3000; p->top_p = 0.97f; break;
    default: p->temperature = 0.6f; p->min_p = 0.5f; p->repetition_penalty = 1.5f; break;
    }
}

static void build_batch(Batch &b, int m, int vocab, bool with_mask)
{
    b.m = m;
    b.vocab = vocab;
    const int words = (vocab + 31) / 32;
    b.logits.assign((size_t)m * vocab, 0.0f);
    b.has_mask = with_mask;
    b.mask.assign(with_mask ? (size_t)m * words : 0, 0xFFFFFFFFu);
    b.rows.assign(m, RowIn());
    b.pen_off.assign(1, 0);
    b.ban_off.assign(1, 0);
    b.pen_ids.clear();
    b.pen_cnt.clear();
    b.ban_ids.clear();
    for (int r = 0; r < m; r++) {
        RowIn &ri = b.rows[r];
        ri.combo = rng_int(NUM_COMBOS);
        ri.shape = rng_int(10) < 5 ? rng_int(2) : rng_int(NUM_SHAPES);
        if (g_force_shape >= 0) ri.shape = g_force_shape % NUM_SHAPES;
        fill_logits(&b.logits[(size_t)r * vocab], vocab, ri.shape);
        set_combo(&ri.sp, ri.combo, vocab);
        static const int LP[] = {-1, 0, 5, 20};
        ri.sp.logprobs = LP[rng_int(4)];
        ri.key = rng_next();
        ri.counter = rng_next() >> rng_int(64);
        /* penalties for about half the rows (the combo's own, or extra ones) */
        if (rng_int(2) || ri.sp.repetition_penalty != 1.0f || ri.sp.frequency_penalty != 0.0f) {
            if (ri.sp.repetition_penalty == 1.0f && ri.sp.frequency_penalty == 0.0f && rng_int(2)) {
                ri.sp.repetition_penalty = 1.1f;
                ri.sp.presence_penalty = 0.2f;
                ri.sp.frequency_penalty = 0.1f;
            }
            int np = rng_int(std::min(vocab, 3000)), no = rng_int(200);
            for (int j = 0; j < np; j++) ri.prompt.push_back(rng_int(vocab));
            for (int j = 0; j < no; j++) ri.output.push_back(rng_int(rng_int(3) ? std::min(vocab, 300) : vocab));
        }
        /* banned ids (min_tokens) for a quarter of the rows, sometimes the argmax */
        if (rng_int(4) == 0) {
            int nb = 1 + rng_int(5);
            for (int j = 0; j < nb; j++) ri.banned.push_back(rng_int(vocab));
            const float *x = &b.logits[(size_t)r * vocab];
            int am = 0;
            for (int i = 1; i < vocab; i++)
                if (x[i] > x[am]) am = i;
            if (rng_int(2)) ri.banned.push_back(am);
            if (rng_int(3) == 0) ri.banned.push_back(ri.banned[0]); /* a duplicate */
        }
        if (with_mask) {
            uint32_t *mk = &b.mask[(size_t)r * words];
            int kind = rng_int(4);
            for (int w = 0; w < words; w++) {
                uint32_t v = 0xFFFFFFFFu;
                if (kind == 1) v = (uint32_t)rng_next(); /* ~50% */
                if (kind == 2) v = rng_int(30) == 0 ? (1u << rng_int(32)) : 0u; /* ~0.1% */
                mk[w] = v;
            }
            if (kind == 3 && vocab > 100) { /* only a few tokens allowed */
                for (int w = 0; w < words; w++) mk[w] = 0;
                for (int j = 0; j < 7; j++) {
                    int t = rng_int(vocab);
                    mk[t >> 5] |= 1u << (t & 31);
                }
            }
            if (vocab % 32) mk[words - 1] |= ~0u << (vocab % 32); /* bits past the end: must be ignored */
        }
        /* CSR: distinct ascending prompt ∪ output with output counts */
        std::vector<int32_t> ids(ri.prompt);
        ids.insert(ids.end(), ri.output.begin(), ri.output.end());
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        for (int32_t t : ids) {
            b.pen_ids.push_back(t);
            b.pen_cnt.push_back((int32_t)std::count(ri.output.begin(), ri.output.end(), t));
        }
        b.pen_off.push_back((int32_t)b.pen_ids.size());
        for (int32_t t : ri.banned) b.ban_ids.push_back(t);
        b.ban_off.push_back((int32_t)b.ban_ids.size());
    }
    b.has_pen = !b.pen_ids.empty();
    b.has_ban = !b.ban_ids.empty();
    b.kp.resize(m);
    for (int r = 0; r < m; r++) {
        const sampling_params_t &p = b.rows[r].sp;
        kernels_sampling_params_t &k = b.kp[r];
        memset(&k, 0, sizeof k);
        k.temperature = p.temperature;
        k.top_p = p.top_p;
        k.top_k = p.top_k;
        k.min_p = p.min_p;
        k.repetition_penalty = p.repetition_penalty;
        k.presence_penalty = p.presence_penalty;
        k.frequency_penalty = p.frequency_penalty;
        k.num_logprobs = p.logprobs;
        k.rng_key = b.rows[r].key;
        k.rng_counter = b.rows[r].counter;
        k.flags = (r % 11 == 5) ? KERNELS_SAMPLING_NO_TABLE : 0u;
    }
    /* next-token table: a larger table, rows at a random permutation of its slots, one row -1 */
    b.table_size = 2 * m + 3;
    std::vector<int32_t> perm(b.table_size);
    for (int i = 0; i < b.table_size; i++) perm[i] = i;
    for (int i = b.table_size - 1; i > 0; i--) std::swap(perm[i], perm[rng_int(i + 1)]);
    b.table_index.assign(perm.begin(), perm.begin() + m);
    if (m > 3) b.table_index[3] = -1;
}

/* ------------------------------------------------------------------ device side */

struct Dev {
    float *logits = nullptr;
    uint32_t *mask = nullptr;
    kernels_sampling_params_t *params = nullptr;
    int32_t *pen_off = nullptr, *pen_ids = nullptr, *pen_cnt = nullptr, *ban_off = nullptr, *ban_ids = nullptr;
    int32_t *tokens = nullptr, *ranks = nullptr, *top_ids = nullptr, *table = nullptr, *table_index = nullptr;
    float *logprobs = nullptr, *top_lp = nullptr;
    double *diag = nullptr;
};

template <class T>
static T *upload(const std::vector<T> &v)
{
    if (v.empty()) return nullptr;
    T *d;
    CUDA_OK(cudaMalloc(&d, v.size() * sizeof(T)));
    CUDA_OK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

static void dev_free(Dev &d)
{
    void *ps[] = {d.logits, d.mask, d.params, d.pen_off, d.pen_ids, d.pen_cnt, d.ban_off, d.ban_ids, d.tokens,
                  d.ranks, d.top_ids, d.table, d.table_index, d.logprobs, d.top_lp, d.diag};
    for (void *p : ps)
        if (p) CUDA_OK(cudaFree(p));
    d = Dev();
}

#define POISON_I32 0x5A5A5A5A

static void dev_upload(Dev &d, const Batch &b)
{
    d.logits = upload(b.logits);
    d.mask = b.has_mask ? upload(b.mask) : nullptr;
    d.params = upload(b.kp);
    if (b.has_pen) {
        d.pen_off = upload(b.pen_off);
        d.pen_ids = upload(b.pen_ids);
        d.pen_cnt = upload(b.pen_cnt);
    }
    if (b.has_ban) {
        d.ban_off = upload(b.ban_off);
        d.ban_ids = upload(b.ban_ids);
    }
    d.table_index = upload(b.table_index);
    CUDA_OK(cudaMalloc(&d.tokens, b.m * sizeof(int32_t)));
    CUDA_OK(cudaMalloc(&d.ranks, b.m * sizeof(int32_t)));
    CUDA_OK(cudaMalloc(&d.top_ids, (size_t)b.m * KERNELS_SAMPLING_MAX_LOGPROBS * sizeof(int32_t)));
    CUDA_OK(cudaMalloc(&d.table, b.table_size * sizeof(int32_t)));
    CUDA_OK(cudaMalloc(&d.logprobs, b.m * sizeof(float)));
    CUDA_OK(cudaMalloc(&d.top_lp, (size_t)b.m * KERNELS_SAMPLING_MAX_LOGPROBS * sizeof(float)));
    CUDA_OK(cudaMalloc(&d.diag, (size_t)b.m * KERNELS_SAMPLING_NUM_DIAG * sizeof(double)));
}

struct Out {
    std::vector<int32_t> tokens, ranks, top_ids, table;
    std::vector<float> logprobs, top_lp;
    std::vector<double> diag;
};

static void dev_poison(Dev &d, const Batch &b)
{
    CUDA_OK(cudaMemset(d.tokens, 0x5A, b.m * sizeof(int32_t)));
    CUDA_OK(cudaMemset(d.ranks, 0x5A, b.m * sizeof(int32_t)));
    CUDA_OK(cudaMemset(d.top_ids, 0x5A, (size_t)b.m * KERNELS_SAMPLING_MAX_LOGPROBS * sizeof(int32_t)));
    CUDA_OK(cudaMemset(d.table, 0x5A, b.table_size * sizeof(int32_t)));
    CUDA_OK(cudaMemset(d.logprobs, 0xFF, b.m * sizeof(float)));                       /* NaN */
    CUDA_OK(cudaMemset(d.top_lp, 0xFF, (size_t)b.m * KERNELS_SAMPLING_MAX_LOGPROBS * sizeof(float)));
    CUDA_OK(cudaMemset(d.diag, 0xFF, (size_t)b.m * KERNELS_SAMPLING_NUM_DIAG * sizeof(double)));
}

static cudaError_t dev_launch(Dev &d, const Batch &b, cudaStream_t st, int blocks = g_blocks)
{
    return kernels_sampling(d.logits, b.m, b.vocab, d.params, d.pen_off, d.pen_ids, d.pen_cnt, d.ban_off, d.ban_ids,
                            d.mask, d.tokens, d.logprobs, d.ranks, d.top_ids, d.top_lp, d.table, d.table_index,
                            d.diag, g_ws, g_ws_bytes, blocks, st);
}

static int plan_blocks(const Batch &b, int blocks = g_blocks)
{
    return kernels_sampling_blocks_per_row(b.m, b.vocab, g_ws_bytes, blocks);
}

static void dev_download(Dev &d, const Batch &b, Out &o)
{
    const size_t nt = (size_t)b.m * KERNELS_SAMPLING_MAX_LOGPROBS;
    o.tokens.resize(b.m);
    o.ranks.resize(b.m);
    o.top_ids.resize(nt);
    o.table.resize(b.table_size);
    o.logprobs.resize(b.m);
    o.top_lp.resize(nt);
    o.diag.resize((size_t)b.m * KERNELS_SAMPLING_NUM_DIAG);
    CUDA_OK(cudaMemcpy(o.tokens.data(), d.tokens, b.m * sizeof(int32_t), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(o.ranks.data(), d.ranks, b.m * sizeof(int32_t), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(o.top_ids.data(), d.top_ids, nt * sizeof(int32_t), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(o.table.data(), d.table, b.table_size * sizeof(int32_t), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(o.logprobs.data(), d.logprobs, b.m * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(o.top_lp.data(), d.top_lp, nt * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(o.diag.data(), d.diag, o.diag.size() * sizeof(double), cudaMemcpyDeviceToHost));
}

/* ------------------------------------------------------------------ comparison */

static bool lp_close(float a, float b)
{
    if (a != a || b != b) return a != a && b != b;
    if (isinf(a) || isinf(b)) return a == b;
    return fabsf(a - b) <= 1e-4f;
}

static const char *PATHS[] = {"greedy", "bucket", "boundary", "argmax", "last"};

static void describe_row(char *buf, size_t n, const Batch &b, int r, const Out &o)
{
    const RowIn &ri = b.rows[r];
    const sampling_params_t &p = ri.sp;
    const double *dg = &o.diag[(size_t)r * KERNELS_SAMPLING_NUM_DIAG];
    const int path = dg[3] == dg[3] && dg[3] >= 0.0 && dg[3] < 64.0 ? (int)dg[3] : -1;
    snprintf(buf, n,
             "vocab=%d m=%d row=%d combo=%d shape=%s T=%g top_k=%d top_p=%g min_p=%g rep=%g pres=%g freq=%g lp=%d "
             "prompt=%zu output=%zu banned=%zu mask=%d key=%016llx ctr=%llu | gpu path=%s%s%s u=%.17g draw_margin=%.3g "
             "top_p_margin=%.3g",
             b.vocab, b.m, r, ri.combo, SHAPES[ri.shape], (double)p.temperature, p.top_k, (double)p.top_p,
             (double)p.min_p, (double)p.repetition_penalty, (double)p.presence_penalty, (double)p.frequency_penalty,
             p.logprobs, ri.prompt.size(), ri.output.size(), ri.banned.size(), (int)b.has_mask,
             (unsigned long long)ri.key, (unsigned long long)ri.counter, path >= 0 && (path & 15) <= 4 ? PATHS[path & 15] : "unwritten",
             (path & 16) ? "+row-source" : "", (path & 32) ? "+row-gather" : "", dg[0], dg[1], dg[2]);
}

struct Tally {
    long rows = 0, sampled = 0, mism = 0, explained = 0, greedy = 0, row_source = 0, row_gather = 0;
};

static void compare(const Batch &b, const Out &o, sampling_scratch_t *scratch, Tally &t)
{
    const int vocab = b.vocab, words = (vocab + 31) / 32;
    std::vector<float> row(vocab);
    std::vector<bool> table_written(b.table_size, false);
    char desc[1024];
    for (int r = 0; r < b.m; r++) {
        const RowIn &ri = b.rows[r];
        memcpy(row.data(), &b.logits[(size_t)r * vocab], vocab * sizeof(float));
        sampling_result_t c;
        sampling_sample_row(&ri.sp, row.data(), vocab, ri.prompt.data(), (int32_t)ri.prompt.size(), ri.output.data(),
                            (int32_t)ri.output.size(), ri.banned.data(), (int32_t)ri.banned.size(),
                            b.has_mask ? &b.mask[(size_t)r * words] : nullptr, ri.key, ri.counter, scratch, &c);
        const int32_t g = o.tokens[r];
        const double *dg = &o.diag[(size_t)r * KERNELS_SAMPLING_NUM_DIAG];
        const bool greedy = ri.sp.temperature == 0.0f || ri.sp.top_k == 1;
        t.rows++;
        g_checks++;
        if (!(dg[3] == dg[3])) {
            describe_row(desc, sizeof desc, b, r, o);
            fail("diagnostics not written | %s", desc);
            continue;
        }
        if (((int)dg[3]) & 16) t.row_source++;
        if (((int)dg[3]) & 32) t.row_gather++;
        if (g < 0 || g >= vocab) {
            describe_row(desc, sizeof desc, b, r, o);
            fail("token out of range / unwritten: gpu=%d cpu=%d | %s", g, c.token, desc);
            continue;
        }
        /* the kernel's u must be sampling_uniform's, bit for bit, whenever it drew */
        if (dg[0] >= 0.0) {
            const double u = sampling_uniform(ri.key, ri.counter);
            if (dg[0] != u) {
                describe_row(desc, sizeof desc, b, r, o);
                fail("Philox u differs: gpu=%.17g cpu=%.17g | %s", dg[0], u, desc);
            }
        }
        if (greedy) {
            t.greedy++;
            if (g != c.token) {
                describe_row(desc, sizeof desc, b, r, o);
                fail("greedy token differs: gpu=%d cpu=%d (raw %g vs %g) | %s", g, c.token,
                     (double)b.logits[(size_t)r * vocab + g], (double)b.logits[(size_t)r * vocab + c.token], desc);
            }
        } else {
            t.sampled++;
            if (g != c.token) {
                t.mism++;
                const bool near = (dg[1] >= 0.0 && dg[1] < 1e-9) || (dg[2] >= 0.0 && dg[2] < 1e-9);
                describe_row(desc, sizeof desc, b, r, o);
                if (near) {
                    t.explained++;
                    printf("near-boundary mismatch (allowed): gpu=%d cpu=%d | %s\n", g, c.token, desc);
                } else {
                    fail("sampled token differs, not near a boundary: gpu=%d cpu=%d | %s", g, c.token, desc);
                }
            }
        }
        /* logprobs (compared when both picked the same token) */
        if (ri.sp.logprobs >= 0 && g == c.token) {
            if (o.ranks[r] != c.rank || !lp_close(o.logprobs[r], c.logprob)) {
                describe_row(desc, sizeof desc, b, r, o);
                fail("token logprob/rank: gpu (%.7g, %d) cpu (%.7g, %d) | %s", (double)o.logprobs[r], o.ranks[r],
                     (double)c.logprob, c.rank, desc);
            }
        } else if (ri.sp.logprobs < 0 && (o.ranks[r] != 0 || o.logprobs[r] != 0.0f)) {
            describe_row(desc, sizeof desc, b, r, o);
            fail("logprobs off but rank/logprob = %d / %g | %s", o.ranks[r], (double)o.logprobs[r], desc);
        }
        const int nt = ri.sp.logprobs > 0 ? ri.sp.logprobs : 0;
        for (int j = 0; j < KERNELS_SAMPLING_MAX_LOGPROBS; j++) {
            const int32_t gid = o.top_ids[(size_t)r * KERNELS_SAMPLING_MAX_LOGPROBS + j];
            const float glp = o.top_lp[(size_t)r * KERNELS_SAMPLING_MAX_LOGPROBS + j];
            const bool used = j < nt && j < c.num_top;
            const int32_t cid = used ? c.top_ids[j] : -1;
            const bool ok = gid == cid && (used ? lp_close(glp, c.top_logprobs[j]) : (isinf(glp) && glp < 0));
            if (!ok) {
                describe_row(desc, sizeof desc, b, r, o);
                fail("top[%d] (of %d, cpu num_top %d): gpu (%d, %.7g) cpu (%d, %.7g) | %s", j, nt, c.num_top, gid,
                     (double)glp, cid, used ? (double)c.top_logprobs[j] : -INFINITY, desc);
                break;
            }
        }
        /* next-token table */
        const int slot = b.table_index[r];
        if (slot >= 0 && !(b.kp[r].flags & KERNELS_SAMPLING_NO_TABLE)) {
            table_written[slot] = true;
            if (o.table[slot] != g) fail("table[%d] = %d, want row %d's token %d", slot, o.table[slot], r, g);
        }
    }
    for (int i = 0; i < b.table_size; i++)
        if (!table_written[i] && o.table[i] != POISON_I32) fail("table[%d] written (%d) but no row owns it", i, o.table[i]);
}

/* ------------------------------------------------------------------ split path == single-block path */

/* Floats equal, or within max_ulp of each other (same sign, both finite); NaN == NaN. */
static bool ulp_close(float a, float b, int max_ulp, bool *exact)
{
    *exact = memcmp(&a, &b, sizeof a) == 0 || (a != a && b != b);
    if (*exact) return true;
    if (!(isfinite(a) && isfinite(b)) || (a < 0) != (b < 0)) return false;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return abs(ia - ib) <= max_ulp;
}

struct PathTally {
    long rows = 0, lp_values = 0, lp_inexact = 0, gather_single = 0, gather_split = 0;
};

/* The same batch through the single-block path (blocks_per_row 1) and the split path with
 * `split` blocks per row: every output but the logprobs must be identical bit for bit (tokens,
 * ranks, top ids, the next-token table, diag: the masses are exact integers in both), logprobs
 * within 2 ulp (the log-sum-exp's double sum runs in another order; counted).  Diag's path may
 * differ in PATH +32 only (the per-row block gathered a window itself: counted per path; the
 * split path's split_window usually gathers it first). */
static void compare_paths(Dev &d, const Batch &b, int split, PathTally &t)
{
    Out o1, o2;
    dev_poison(d, b);
    CUDA_OK(dev_launch(d, b, 0, 1));
    CUDA_OK(cudaDeviceSynchronize());
    dev_download(d, b, o1);
    dev_poison(d, b);
    CUDA_OK(dev_launch(d, b, 0, split));
    CUDA_OK(cudaDeviceSynchronize());
    dev_download(d, b, o2);
    g_checks++;
    char desc[1024];
    for (int r = 0; r < b.m; r++) {
        t.rows++;
        const int K = KERNELS_SAMPLING_MAX_LOGPROBS;
        const double *d1 = &o1.diag[(size_t)r * KERNELS_SAMPLING_NUM_DIAG], *d2 = &o2.diag[(size_t)r * KERNELS_SAMPLING_NUM_DIAG];
        const int p1 = d1[3] == d1[3] ? (int)d1[3] : -1, p2 = d2[3] == d2[3] ? (int)d2[3] : -1;
        t.gather_single += p1 >= 0 && (p1 & 32);
        t.gather_split += p2 >= 0 && (p2 & 32);
        bool same = o1.tokens[r] == o2.tokens[r] && o1.ranks[r] == o2.ranks[r] &&
                    !memcmp(&o1.top_ids[(size_t)r * K], &o2.top_ids[(size_t)r * K], K * sizeof(int32_t)) &&
                    !memcmp(d1, d2, 3 * sizeof(double)) && p1 >= 0 && (p1 & ~32) == (p2 & ~32);
        int bad_lp = -1;
        for (int j = -1; j < K; j++) {
            const float x = j < 0 ? o1.logprobs[r] : o1.top_lp[(size_t)r * K + j];
            const float y = j < 0 ? o2.logprobs[r] : o2.top_lp[(size_t)r * K + j];
            bool exact;
            if (!ulp_close(x, y, 2, &exact) && bad_lp < 0) bad_lp = j + 1;
            if (!(x == -INFINITY && y == -INFINITY) && !(x == 0.0f && y == 0.0f)) {
                t.lp_values++;
                t.lp_inexact += !exact;
            }
        }
        if (!same || bad_lp >= 0) {
            describe_row(desc, sizeof desc, b, r, o2);
            fail("split path (%d blocks per row, plan %d) differs from the single-block path: token %d / %d, rank %d / %d, "
                 "logprob %.9g / %.9g, first bad logprob slot %d, path %g / %g | %s",
                 split, plan_blocks(b, split), o1.tokens[r], o2.tokens[r], o1.ranks[r], o2.ranks[r],
                 (double)o1.logprobs[r], (double)o2.logprobs[r], bad_lp, o1.diag[(size_t)r * KERNELS_SAMPLING_NUM_DIAG + 3],
                 o2.diag[(size_t)r * KERNELS_SAMPLING_NUM_DIAG + 3], desc);
        }
    }
    if (o1.table != o2.table) fail("split path (%d blocks per row): the next-token table differs", split);
}

/* ------------------------------------------------------------------ distribution check */

/* Exact probabilities of the kept set, in double, straight from the definition (sorted). */
static std::vector<double> exact_probs(const std::vector<float> &x, const sampling_params_t &p)
{
    const int n = (int)x.size();
    std::vector<int> order(n);
    for (int i = 0; i < n; i++) order[i] = i;
    std::sort(order.begin(), order.end(), [&](int a, int b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
    const double mx = x[order[0]];
    std::vector<double> e(n, 0.0);
    int keep = n;
    if (p.top_k > 1 && p.top_k < n) keep = p.top_k;
    double mass = 0.0;
    for (int j = 0; j < keep; j++) mass += exp(((double)x[order[j]] - mx) / p.temperature);
    if (p.top_p < 1.0f) {
        double cum = 0.0, target = p.top_p * mass;
        int j = 0;
        while (j < keep) {
            cum += exp(((double)x[order[j++]] - mx) / p.temperature);
            if (cum >= target) break;
        }
        keep = j;
    }
    if (p.min_p > 0.0f) {
        int j = 0;
        while (j < keep && exp(((double)x[order[j]] - mx) / p.temperature) >= p.min_p) j++;
        keep = j;
    }
    double tot = 0.0;
    for (int j = 0; j < keep; j++) tot += (e[order[j]] = exp(((double)x[order[j]] - mx) / p.temperature));
    for (double &v : e) v /= tot;
    return e;
}

static void chi_square_case(const char *name, int vocab, const sampling_params_t &sp, int num_draws,
                            sampling_scratch_t *scratch)
{
    const int m = 64, launches = num_draws / m; /* m <= KERNELS_SAMPLING_SPLIT_MAX_ROWS: --blocks N splits */
    std::vector<float> row(vocab);
    for (int i = 0; i < vocab; i++) row[i] = 1.5f * rng_normal();
    for (int j = 0; j < 10; j++) row[rng_int(vocab)] = 3.0f + 2.0f * (float)rng_unit();
    Batch b;
    b.m = m;
    b.vocab = vocab;
    b.logits.resize((size_t)m * vocab);
    for (int r = 0; r < m; r++) memcpy(&b.logits[(size_t)r * vocab], row.data(), vocab * sizeof(float));
    b.rows.assign(m, RowIn());
    b.kp.assign(m, kernels_sampling_params_t());
    b.table_size = m;
    b.table_index.assign(m, -1);
    const uint64_t key = rng_next();
    for (int r = 0; r < m; r++) {
        b.rows[r].sp = sp;
        b.rows[r].key = key;
        kernels_sampling_params_t &k = b.kp[r];
        memset(&k, 0, sizeof k);
        k.temperature = sp.temperature;
        k.top_p = sp.top_p;
        k.top_k = sp.top_k;
        k.min_p = sp.min_p;
        k.repetition_penalty = 1.0f;
        k.num_logprobs = -1;
        k.rng_key = key;
    }
    Dev d;
    dev_upload(d, b);
    std::vector<long> hist(vocab, 0);
    long cpu_mism = 0;
    Out o;
    std::vector<float> tmp(vocab);
    for (int l = 0; l < launches; l++) {
        for (int r = 0; r < m; r++) b.kp[r].rng_counter = b.rows[r].counter = (uint64_t)l * m + r;
        CUDA_OK(cudaMemcpy(d.params, b.kp.data(), m * sizeof(kernels_sampling_params_t), cudaMemcpyHostToDevice));
        dev_poison(d, b);
        CUDA_OK(dev_launch(d, b, 0));
        CUDA_OK(cudaDeviceSynchronize());
        dev_download(d, b, o);
        for (int r = 0; r < m; r++) {
            const int t = o.tokens[r];
            if (t < 0 || t >= vocab) {
                fail("chi2 %s: token %d out of range", name, t);
                continue;
            }
            hist[t]++;
            if (r % 8 == 0) { /* spot-check against the CPU sampler */
                memcpy(tmp.data(), row.data(), vocab * sizeof(float));
                sampling_result_t c;
                sampling_sample_row(&sp, tmp.data(), vocab, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, key,
                                    b.rows[r].counter, scratch, &c);
                cpu_mism += c.token != t;
            }
        }
    }
    dev_free(d);
    const std::vector<double> e = exact_probs(row, sp);
    const long n = (long)launches * m;
    double chi2 = 0.0, pool_obs = 0.0, pool_exp = 0.0;
    int dof = -1, kept = 0;
    long outside = 0;
    for (int i = 0; i < vocab; i++) {
        if (e[i] == 0.0) {
            outside += hist[i];
            continue;
        }
        kept++;
        const double ex = e[i] * n;
        if (ex < 5.0) {
            pool_obs += hist[i];
            pool_exp += ex;
            continue;
        }
        chi2 += (hist[i] - ex) * (hist[i] - ex) / ex;
        dof++;
    }
    if (pool_exp > 0.0) {
        chi2 += (pool_obs - pool_exp) * (pool_obs - pool_exp) / pool_exp;
        dof++;
    }
    const double limit = dof + 6.0 * sqrt(2.0 * (dof > 0 ? dof : 1)) + 10.0;
    const bool ok = outside == 0 && chi2 <= limit && cpu_mism == 0;
    g_checks++;
    /* "<op> ... err=E tol=T ok|FAIL": the line format tests/gpu/run.sh summarises */
    printf("sampling_chi2 %-26s draws=%ld kept=%d dof=%d chi2=%.1f outside=%ld cpu_mismatch=%ld err=%.3e tol=1e+00 %s\n",
           name, n, kept, dof, chi2, outside, cpu_mism, chi2 / limit, ok ? "ok" : "FAIL");
    if (!ok) fail("chi-square %s", name);
}

/* ------------------------------------------------------------------ timing */

static void bench(sampling_scratch_t *scratch)
{
    const int vocab = 151936;
    const int ms[] = {1, 64, 256};
    cudaDeviceProp prop;
    int dev;
    CUDA_OK(cudaGetDevice(&dev));
    CUDA_OK(cudaGetDeviceProperties(&prop, dev));
    printf("timing on %s (vocab %d, 1024 threads per row; floor = logits bytes / 4 TB/s)\n", prop.name, vocab);
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    for (int mode = 0; mode < 3; mode++) {
        for (int m : ms) {
            Batch b;
            build_batch(b, m, vocab, false);
            for (int r = 0; r < m; r++) {
                sampling_params_t &p = b.rows[r].sp;
                fill_logits(&b.logits[(size_t)r * vocab], vocab, 1);
                sampling_params_default(&p);
                if (mode == 0) p.temperature = 0.0f;
                if (mode == 1) { p.temperature = 0.8f; p.top_k = 50; p.top_p = 0.95f; }
                if (mode == 2) { p.temperature = 1.0f; p.top_p = 0.9f; p.logprobs = 5; p.repetition_penalty = 1.1f; }
                kernels_sampling_params_t &k = b.kp[r];
                k.temperature = p.temperature;
                k.top_k = p.top_k;
                k.top_p = p.top_p;
                k.min_p = p.min_p;
                k.repetition_penalty = p.repetition_penalty;
                k.presence_penalty = p.presence_penalty;
                k.frequency_penalty = p.frequency_penalty;
                k.num_logprobs = p.logprobs;
            }
            Dev d;
            dev_upload(d, b);
            /* median time of 25 launches with blocks_per_row `blocks`, after 3 warm-up launches */
            auto time_us = [&](int blocks) {
                for (int i = 0; i < 3; i++) CUDA_OK(dev_launch(d, b, 0, blocks));
                CUDA_OK(cudaDeviceSynchronize());
                std::vector<float> ts;
                for (int i = 0; i < 25; i++) {
                    CUDA_OK(cudaEventRecord(e0));
                    CUDA_OK(dev_launch(d, b, 0, blocks));
                    CUDA_OK(cudaEventRecord(e1));
                    CUDA_OK(cudaEventSynchronize(e1));
                    float ms_ = 0;
                    CUDA_OK(cudaEventElapsedTime(&ms_, e0, e1));
                    ts.push_back(ms_ * 1000.0f);
                }
                std::sort(ts.begin(), ts.end());
                return (double)ts[ts.size() / 2];
            };
            /* mean time of 20 launches back to back (the host's launch cost hidden while the GPU is busy) */
            auto time_b2b_us = [&](int blocks) {
                CUDA_OK(cudaEventRecord(e0));
                for (int i = 0; i < 20; i++) CUDA_OK(dev_launch(d, b, 0, blocks));
                CUDA_OK(cudaEventRecord(e1));
                CUDA_OK(cudaEventSynchronize(e1));
                float ms_ = 0;
                CUDA_OK(cudaEventElapsedTime(&ms_, e0, e1));
                return (double)ms_ * 1000.0 / 20.0;
            };
            const int plan = plan_blocks(b);
            const double t_us = time_us(g_blocks), t_single_us = plan > 1 ? time_us(1) : t_us;
            const double t_b2b_us = time_b2b_us(g_blocks);
            /* a D2D copy of the same bytes, for the achievable bandwidth at this size */
            float *cp;
            const size_t bytes = (size_t)m * vocab * sizeof(float);
            CUDA_OK(cudaMalloc(&cp, bytes));
            std::vector<float> tc;
            for (int i = 0; i < 10; i++) {
                CUDA_OK(cudaEventRecord(e0));
                CUDA_OK(cudaMemcpyAsync(cp, d.logits, bytes, cudaMemcpyDeviceToDevice));
                CUDA_OK(cudaEventRecord(e1));
                CUDA_OK(cudaEventSynchronize(e1));
                float ms_ = 0;
                CUDA_OK(cudaEventElapsedTime(&ms_, e0, e1));
                tc.push_back(ms_ * 1000.0f);
            }
            std::sort(tc.begin(), tc.end());
            CUDA_OK(cudaFree(cp));
            const double floor_us = (double)bytes / 4e12 * 1e6;
            static const char *MODES[] = {"greedy", "T0.8 k50 p0.95", "T1 p0.9 lp5 rep1.1"};
            printf("bench %-20s m=%3d  median %8.1f us  floor %6.1f us  ratio %6.1fx  (blocks/row %3d; back to back "
                   "%8.1f us; single-block %8.1f us; d2d copy of the logits %6.1f us)\n",
                   MODES[mode], m, t_us, floor_us, t_us / floor_us, plan, t_b2b_us, t_single_us, (double)tc[tc.size() / 2]);
            if (m <= KERNELS_SAMPLING_SPLIT_MAX_ROWS) { /* other block counts, for tuning the automatic choice */
                printf("bench %-20s m=%3d  blocks/row:", MODES[mode], m);
                for (int nb : {2, 4, 8, 16, 32, 48, 64, 96, 132, 192, 256})
                    if (plan_blocks(b, nb) == nb) printf(" %d: %.1f us", nb, time_us(nb));
                printf("\n");
            }
            dev_free(d);
        }
    }
    (void)scratch;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    bool quick = false, bench_only = false, small = false, no_bench = false;
    if (getenv("LIGHTLLM_SAMPLE_BLOCKS")) g_blocks = atoi(getenv("LIGHTLLM_SAMPLE_BLOCKS"));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        if (!strcmp(argv[i], "--bench")) bench_only = true;
        if (!strcmp(argv[i], "--small")) small = quick = true; /* the host emulator: few rows, no timing */
        if (!strcmp(argv[i], "--scale") && i + 1 < argc) g_scale = atoi(argv[++i]);
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) g_force_shape = atoi(argv[++i]);
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) g_rng = strtoull(argv[++i], nullptr, 0);
        if (!strcmp(argv[i], "--blocks") && i + 1 < argc) g_blocks = atoi(argv[++i]);
        if (!strcmp(argv[i], "--no-bench")) no_bench = true;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device\n");
        return 77;
    }
    printf("kernels_sampling_max_vocab = %d\n", kernels_sampling_max_vocab());
    g_ws_bytes = kernels_sampling_workspace_bytes(KERNELS_SAMPLING_SPLIT_MAX_ROWS);
    CUDA_OK(cudaMalloc(&g_ws, g_ws_bytes));
    printf("blocks_per_row %d (0: automatic; m=1 vocab 151936 -> %d, m=64 -> %d); workspace %zu bytes\n", g_blocks,
           kernels_sampling_blocks_per_row(1, 151936, g_ws_bytes, g_blocks),
           kernels_sampling_blocks_per_row(64, 151936, g_ws_bytes, g_blocks), g_ws_bytes);
    sampling_scratch_t *scratch = sampling_scratch_create(151936);
    if (!bench_only) {
        /* 50257: odd, no 16-byte row alignment; 1..33: degenerate tiny vocabularies */
        const int vocabs[] = {1000, 32000, 151936, 50257, 1, 2, 3, 5, 33};
        const int rows[] = {1, 7, 64, 256};
        for (int vocab : vocabs) {
            for (int m : rows) {
                if (small && (m > 7 || (vocab > 1000 && m > 1))) continue;
                if ((vocab == 50257 && m > 64) || (vocab < 100 && m != 7)) continue;
                const int seeds = vocab < 100 ? 6 * g_scale
                                  : small ? g_scale * (vocab == 1000 ? (m == 1 ? 16 : 8) : vocab == 32000 ? 3 : 1)
                                        : quick ? 1 : (vocab == 1000 ? 12 : vocab == 32000 ? 6 : (m == 256 ? 2 : 3));
                Tally t;
                PathTally pt;
                static const int SPLITS[] = {2, 3, 5, 7, 16, 37, 256};
                const int fail_before = g_fail;
                for (int sd = 0; sd < seeds; sd++) {
                    Batch b;
                    build_batch(b, m, vocab, sd % 2 == 1);
                    Dev d;
                    dev_upload(d, b);
                    dev_poison(d, b);
                    CUDA_OK(dev_launch(d, b, 0));
                    CUDA_OK(cudaDeviceSynchronize());
                    Out o, o2;
                    dev_download(d, b, o);
                    compare(b, o, scratch, t);
                    if (sd == 0) { /* determinism: the same launch again, same bits */
                        dev_poison(d, b);
                        CUDA_OK(dev_launch(d, b, 0));
                        CUDA_OK(cudaDeviceSynchronize());
                        dev_download(d, b, o2);
                        g_checks++;
                        if (o.tokens != o2.tokens || memcmp(o.logprobs.data(), o2.logprobs.data(), m * sizeof(float)) ||
                            o.top_ids != o2.top_ids)
                            fail("vocab %d m %d: a second identical launch gave different results", vocab, m);
                    }
                    if (m <= KERNELS_SAMPLING_SPLIT_MAX_ROWS) { /* the split path against the single-block path */
                        int split = SPLITS[(sd + m + vocab) % (int)(sizeof SPLITS / sizeof SPLITS[0])];
                        while (small && m * split > 300) split /= 2; /* the emulator runs blocks one by one */
                        compare_paths(d, b, split, pt);
                    }
                    dev_free(d);
                }
                const double rate = t.sampled ? (double)t.mism / (double)t.sampled : 0.0;
                if (rate > 1e-3) fail("vocab %d m %d: mismatch rate %.3e > 1e-3", vocab, m, rate);
                const int case_failures = g_fail - fail_before;
                if (pt.rows)
                    printf("sampling_paths vocab=%6d m=%3d rows=%5ld split-vs-single: logprobs %ld, not bit-equal %ld; rows "
                           "whose per-row block gathered a window from the row: single %ld, split %ld\n",
                           vocab, m, pt.rows, pt.lp_values, pt.lp_inexact, pt.gather_single, pt.gather_split);
                printf("sampling vocab=%6d m=%3d blocks/row=%3d rows=%5ld greedy=%5ld sampled=%5ld mismatches=%ld near_boundary=%ld "
                       "row_source=%ld row_gather=%ld failures=%d err=%.3e tol=1e-03 %s\n",
                       vocab, m, kernels_sampling_blocks_per_row(m, vocab, g_ws_bytes, g_blocks), t.rows, t.greedy, t.sampled,
                       t.mism, t.explained, t.row_source, t.row_gather, case_failures, rate,
                       case_failures == 0 ? "ok" : "FAIL");
            }
        }
        sampling_params_t sp;
        const int draws = small ? 1024 : quick ? 8192 : 32768;
        sampling_params_default(&sp);
        sp.temperature = 0.9f;
        sp.top_k = 50;
        sp.top_p = 0.9f;
        chi_square_case("T0.9 top_k50 top_p0.9", 1000, sp, draws, scratch);
        sampling_params_default(&sp);
        sp.temperature = 1.5f;
        sp.min_p = 0.02f;
        chi_square_case("T1.5 min_p0.02", 1000, sp, draws, scratch);
        if (!small) {
        sampling_params_default(&sp);
        sp.temperature = 0.7f;
        chi_square_case("T0.7 (32000 tokens)", 32000, sp, draws, scratch);
        sampling_params_default(&sp);
        sp.top_p = 0.6f;
        chi_square_case("T1 top_p0.6 (151936)", 151936, sp, draws, scratch);
        }
    }
    if (!small && !no_bench) bench(scratch);
    sampling_scratch_free(scratch);
    CUDA_OK(cudaFree(g_ws));
    printf("%d checks, %d failures\n", g_checks, g_fail);
    if (g_fail) return 1;
    printf("ALL PASSED\n");
    return 0;
}
