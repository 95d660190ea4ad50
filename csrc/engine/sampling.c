/* sampling.c — sampling parameters (defaults, validation) and the CPU sampler; see sampling.h.
 *
 * Design.  One row costs O(vocab) in a few flat passes plus O(num_prompt + num_output) for the
 * penalties; nothing sorts the whole vocabulary:
 *   - logprobs: max + log-sum-exp of the raw logits, then the top-N with a small
 *     insertion-sorted array.  The raw logits are copied to scratch first, since later steps
 *     rewrite `logits` and the sampled token's logprob is read after the draw.
 *   - penalties: a per-token seen flag and output count in scratch, plus a touched list that
 *     resets exactly the entries it set, so the scratch is all-zero between rows.
 *   - sampling: z = (logit - max) / temperature (so z <= 0; the top token has z = 0 and
 *     unnormalised probability p = exp(z) = 1).  Every token falls in one of up to NUM_BUCKETS
 *     linear buckets of -z spanning the row's own range (a count and a mass per bucket).  top_k,
 *     top_p and min_p (p >= min_p, since max p is 1) each keep a prefix of the rank order
 *     (z descending, id ascending), so the kept set is the shortest of three prefixes and ends
 *     inside one bucket: only that bucket's members are gathered and sorted.
 *   - the draw: u from Philox-4x32-10 keyed by (rng_key, rng_counter) (Random123's block, so a
 *     GPU kernel can reproduce it); inverse CDF over the kept tokens in a fixed order: buckets
 *     ascending with ids ascending inside each, then the boundary bucket's kept members in rank
 *     order.  The bucket masses locate the drawn bucket; only its ids are scanned.
 *   - the hot loops are branch-free on float bits so that -O3 vectorises them; exp is a local
 *     polynomial (same bits everywhere, no libm) accurate to ~2e-7 relative.
 * Invariants: between calls every scratch->seen / scratch->out_count entry is 0; tokens with
 * z < -Z_CUT (or -inf, or NaN) have p = 0 and sit in the row's tail bucket (the last); a token
 * with p = 0 is never drawn.  Degenerate rows (every token banned / masked / -inf) return the
 * lowest id among the maximal final logits, i.e. token 0 when all are -inf; NaN never wins.
 */
#include "engine/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define NUM_BUCKETS 4096        /* at most; the last one of a row's buckets is its tail */
/* exp(-87) ~ 1.6e-38 is about FLT_MIN: below it p is set to 0 (no denormals, no effect on any
 * draw a 53-bit u can resolve). */
#define Z_CUT 87.0f

typedef struct sampling_member_t {
    float z;
    float p;
    int32_t id;
} sampling_member_t;

struct sampling_scratch_t {
    int32_t vocab_size;
    float *raw;                   /* [vocab] raw logits, when logprobs are on */
    float *probs;                 /* [vocab] p = exp(z), 0 in the tail */
    uint16_t *bucket;             /* [vocab] bucket of each token */
    uint8_t *seen;                /* [vocab] 1 = in prompt or output; 0 between rows */
    int32_t *out_count;           /* [vocab] occurrences in output; 0 between rows */
    int32_t *touched;             /* [vocab] ids whose seen flag is set this row */
    sampling_member_t *members;   /* [vocab] members of one boundary bucket, rank order */
    int32_t members_bucket;       /* which bucket `members` holds (-1: none) */
    int32_t tail;                 /* this row's tail bucket (its bucket count - 1) */
    uint32_t hist_count[NUM_BUCKETS];
    double hist_mass[NUM_BUCKETS];
};

/* ---------------------------------------------------------------- parameters */

void sampling_params_default(sampling_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->top_k = -1;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->max_tokens = 16;
    p->min_tokens = 0;
    p->n = 1;
    p->logprobs = -1;
    p->ignore_eos = 0;
    p->has_seed = 0;
    p->seed = 0;
}

/* Comparisons are written so that NaN fails them (NaN is never in range). */
status_t sampling_params_validate(const sampling_params_t *p)
{
    if (!(p->temperature >= 0.0f))
        return status_set(STATUS_INVALID_ARG, "temperature must be >= 0, got %g", (double)p->temperature);
    if (isinf(p->temperature))
        return status_set(STATUS_INVALID_ARG, "temperature must be finite (>= 0), got %g",
                          (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return status_set(STATUS_INVALID_ARG, "top_p must be in (0, 1], got %g", (double)p->top_p);
    if (p->top_k < -1)
        return status_set(STATUS_INVALID_ARG, "top_k must be -1 (disabled) or >= 1, got %d", (int)p->top_k);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return status_set(STATUS_INVALID_ARG, "min_p must be in [0, 1], got %g", (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f))
        return status_set(STATUS_INVALID_ARG, "repetition_penalty must be > 0, got %g",
                          (double)p->repetition_penalty);
    if (isinf(p->repetition_penalty))
        return status_set(STATUS_INVALID_ARG, "repetition_penalty must be finite (> 0), got %g",
                          (double)p->repetition_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return status_set(STATUS_INVALID_ARG, "presence_penalty must be in [-2, 2], got %g",
                          (double)p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return status_set(STATUS_INVALID_ARG, "frequency_penalty must be in [-2, 2], got %g",
                          (double)p->frequency_penalty);
    if (p->max_tokens < 1)
        return status_set(STATUS_INVALID_ARG, "max_tokens must be >= 1, got %d", (int)p->max_tokens);
    if (p->min_tokens < 0)
        return status_set(STATUS_INVALID_ARG, "min_tokens must be >= 0, got %d", (int)p->min_tokens);
    if (p->min_tokens > p->max_tokens)
        return status_set(STATUS_INVALID_ARG, "min_tokens must be <= max_tokens (%d), got %d",
                          (int)p->max_tokens, (int)p->min_tokens);
    if (p->n < 1 || p->n > 128)
        return status_set(STATUS_INVALID_ARG, "n must be in [1, 128], got %d", (int)p->n);
    if (p->logprobs < -1 || p->logprobs > SAMPLING_MAX_LOGPROBS)
        return status_set(STATUS_INVALID_ARG, "logprobs must be -1 (off) or in [0, %d], got %d",
                          SAMPLING_MAX_LOGPROBS, (int)p->logprobs);
    return STATUS_OK;
}

/* ---------------------------------------------------------------- scratch */

sampling_scratch_t *sampling_scratch_create(int32_t vocab_size)
{
    if (vocab_size < 1) return NULL;
    size_t v = (size_t)vocab_size;
    sampling_scratch_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->vocab_size = vocab_size;
    s->raw = malloc(v * sizeof *s->raw);
    s->probs = malloc(v * sizeof *s->probs);
    s->bucket = malloc(v * sizeof *s->bucket);
    s->seen = calloc(v, sizeof *s->seen);
    s->out_count = calloc(v, sizeof *s->out_count);
    s->touched = malloc(v * sizeof *s->touched);
    s->members = malloc(v * sizeof *s->members);
    if (!s->raw || !s->probs || !s->bucket || !s->seen || !s->out_count || !s->touched ||
        !s->members) {
        sampling_scratch_free(s);
        return NULL;
    }
    return s;
}

void sampling_scratch_free(sampling_scratch_t *s)
{
    if (!s) return;
    free(s->raw);
    free(s->probs);
    free(s->bucket);
    free(s->seen);
    free(s->out_count);
    free(s->touched);
    free(s->members);
    free(s);
}

/* ---------------------------------------------------------------- RNG */

/* Philox-4x32-10 (Salmon et al. 2011, Random123), one block. */
static void philox4x32_10(uint32_t ctr[4], uint32_t key0, uint32_t key1)
{
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr[2];
        uint32_t c0 = (uint32_t)(p1 >> 32) ^ ctr[1] ^ key0;
        uint32_t c1 = (uint32_t)p1;
        uint32_t c2 = (uint32_t)(p0 >> 32) ^ ctr[3] ^ key1;
        uint32_t c3 = (uint32_t)p0;
        ctr[0] = c0; ctr[1] = c1; ctr[2] = c2; ctr[3] = c3;
        key0 += 0x9E3779B9u;
        key1 += 0xBB67AE85u;
    }
}

/* Counter block {counter lo, counter hi, 0, 0}, key {key lo, key hi}; the first two output
 * words give 64 bits, of which the top 53 make the double. */
double sampling_uniform(uint64_t key, uint64_t counter)
{
    uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0, 0};
    philox4x32_10(ctr, (uint32_t)key, (uint32_t)(key >> 32));
    uint64_t bits = ((uint64_t)ctr[0] << 32) | ctr[1];
    return (double)(bits >> 11) * 0x1.0p-53;
}

/* ---------------------------------------------------------------- steps */

/* Row scans.  The hot loops are written branch-free on float bit patterns (masks, integer
 * compares) so that GCC vectorises them under the default -ftrapping-math, which refuses to
 * if-convert float compares. */

/* Order-preserving integer key of a non-NaN float (callers add 0.0f first so -0 == +0). */
static inline int32_t float_key(float x)
{
    int32_t b;
    memcpy(&b, &x, sizeof b);
    return b ^ ((b >> 31) & 0x7FFFFFFF);
}

static inline float key_float(int32_t k)
{
    int32_t b = k ^ ((k >> 31) & 0x7FFFFFFF);
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* Keys of the max (NaN skipped; INT32_MIN when all NaN) and of the min over the finite values
 * (INT32_MAX when none). */
static void row_key_range(const float *x, int32_t n, int32_t *max_key, int32_t *min_finite_key)
{
    int32_t hi = INT32_MIN, lo = INT32_MAX;
    for (int32_t i = 0; i < n; i++) {
        float v = x[i] + 0.0f;
        int32_t b;
        memcpy(&b, &v, sizeof b);
        int32_t a = b & 0x7FFFFFFF, k = b ^ ((b >> 31) & 0x7FFFFFFF);
        int32_t nan_mask = -(int32_t)(a > 0x7F800000), nonfinite_mask = -(int32_t)(a >= 0x7F800000);
        int32_t k_hi = (k & ~nan_mask) | (INT32_MIN & nan_mask);
        int32_t k_lo = (k & ~nonfinite_mask) | (INT32_MAX & nonfinite_mask);
        hi = k_hi > hi ? k_hi : hi;
        lo = k_lo < lo ? k_lo : lo;
    }
    *max_key = hi;
    *min_finite_key = lo;
}

/* exp(z) for z in [-Z_CUT, 0], branch-free, and the same bits on every platform (no libm):
 * Cody-Waite reduction z = n ln2 + r, |r| <= ln2/2, degree-6 Taylor polynomial (relative
 * error ~2e-7), times 2^n built in the exponent field (n >= -126: a normal float). */
static inline float exp_nonpositive(float z)
{
    const float magic = 0x1.8p23f;                 /* round to integer via the float adder */
    float t = z * 0x1.715476p+0f + magic;          /* z * log2(e) + magic */
    float n = t - magic;
    float r = z - n * 0x1.62e400p-1f;              /* ln2 high part: n * hi is exact */
    r = r - n * 0x1.7f7d1cp-20f;                   /* ln2 low part */
    float q = 0x1.6c16c2p-10f;                     /* 1/720 */
    q = q * r + 0x1.111112p-7f;                    /* 1/120 */
    q = q * r + 0x1.555556p-5f;                    /* 1/24 */
    q = q * r + 0x1.555556p-3f;                    /* 1/6 */
    q = q * r + 0.5f;
    q = q * r + 1.0f;
    q = q * r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23;  /* (n + 127) << 23 */
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    return q * scale;
}

#define Z_CUT_BITS 0x42AE0000u        /* 87.0f */
#define NEG_Z_CUT_BITS 0xC2AE0000u    /* -87.0f */
#define NEG_INF_BITS 0xFF800000u

/* d = (x[i] - m) / div; out[i] = exp(d) if d >= -Z_CUT, else 0 (also for -inf and NaN); when z
 * is not NULL, z[i] = d (-inf below the cut).  m is finite and >= every x[i]. */
static void exp_shifted(const float *x, float m, float div, float *z, float *out, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        float d = (x[i] - m) / div;
        uint32_t db;
        memcpy(&db, &d, sizeof db);
        uint32_t in_mask = 0u - (uint32_t)((db & 0x7FFFFFFFu) <= Z_CUT_BITS);
        uint32_t clamped = (db & in_mask) | (NEG_Z_CUT_BITS & ~in_mask);
        float dc;
        memcpy(&dc, &clamped, sizeof dc);
        float e = exp_nonpositive(dc);
        uint32_t eb;
        memcpy(&eb, &e, sizeof eb);
        eb &= in_mask;
        memcpy(&out[i], &eb, sizeof eb);
        if (z) {
            uint32_t zb = (db & in_mask) | (NEG_INF_BITS & ~in_mask);
            memcpy(&z[i], &zb, sizeof zb);
        }
    }
}

/* Sum in a fixed order (8 interleaved partial sums), so the result depends only on x. */
static double sum_floats(const float *x, int32_t n)
{
    double acc[8] = {0.0};
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int32_t j = 0; j < 8; j++) acc[j] += (double)x[i + j];
    double total = 0.0;
    for (; i < n; i++) total += (double)x[i];
    for (int32_t j = 0; j < 8; j++) total += acc[j];
    return total;
}

/* Step 1: logprobs of the raw logits (top list now; the sampled token's after the draw).
 * `tmp` is [vocab] scratch. */
static double raw_logsumexp(const float *logits, int32_t vocab_size, float *tmp)
{
    int32_t max_key, min_key;
    row_key_range(logits, vocab_size, &max_key, &min_key);
    float m = key_float(max_key);
    if (!(m > -INFINITY && m < INFINITY)) return (double)m;
    exp_shifted(logits, m, 1.0f, NULL, tmp, vocab_size);
    return (double)m + log(sum_floats(tmp, vocab_size));
}

static void raw_top_logprobs(const float *logits, int32_t vocab_size, int32_t num_top,
                             double lse, sampling_result_t *out)
{
    float vals[SAMPLING_MAX_LOGPROBS];
    int32_t ids[SAMPLING_MAX_LOGPROBS];
    int32_t n = 0;
    for (int32_t i = 0; i < vocab_size; i++) {
        float x = logits[i];
        if (x != x) continue;   /* NaN */
        /* ids come in ascending order, so an equal value never displaces an earlier one */
        if (n == num_top && !(x > vals[n - 1])) continue;
        int32_t j = n < num_top ? n++ : n - 1;
        while (j > 0 && x > vals[j - 1]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = x;
        ids[j] = i;
    }
    out->num_top = n;
    for (int32_t j = 0; j < n; j++) {
        out->top_ids[j] = ids[j];
        out->top_logprobs[j] = (float)((double)vals[j] - lse);
    }
}

/* Step 2: bans and the allowed mask. */
static void apply_masks(float *logits, int32_t vocab_size, const int32_t *banned_ids, int32_t num_banned,
                        const uint32_t *allowed_mask)
{
    for (int32_t i = 0; i < num_banned; i++) {
        LL_ASSERT(banned_ids[i] >= 0 && banned_ids[i] < vocab_size);
        logits[banned_ids[i]] = -INFINITY;
    }
    if (!allowed_mask) return;
    int32_t num_words = (vocab_size + 31) / 32;
    for (int32_t w = 0; w < num_words; w++) {
        uint32_t word = allowed_mask[w];
        if (word == 0xFFFFFFFFu) continue;
        int32_t end = w * 32 + 32 < vocab_size ? w * 32 + 32 : vocab_size;
        for (int32_t i = w * 32; i < end; i++)
            if (!((word >> (i - w * 32)) & 1u)) logits[i] = -INFINITY;
    }
}

/* Step 3: repetition penalty over prompt + output, frequency / presence over output. */
static void apply_penalties(const sampling_params_t *p, float *logits, int32_t vocab_size,
                            const int32_t *prompt_ids, int32_t num_prompt,
                            const int32_t *output_ids, int32_t num_output, sampling_scratch_t *s)
{
    int use_rep = p->repetition_penalty != 1.0f;
    int use_out = p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
    if (!use_rep && !use_out) return;
    int32_t num_touched = 0;
    if (use_rep) {
        for (int32_t i = 0; i < num_prompt; i++) {
            int32_t t = prompt_ids[i];
            LL_ASSERT(t >= 0 && t < vocab_size);
            if (!s->seen[t]) { s->seen[t] = 1; s->touched[num_touched++] = t; }
        }
    }
    for (int32_t i = 0; i < num_output; i++) {
        int32_t t = output_ids[i];
        LL_ASSERT(t >= 0 && t < vocab_size);
        if (!s->seen[t]) { s->seen[t] = 1; s->touched[num_touched++] = t; }
        s->out_count[t]++;
    }
    float rp = p->repetition_penalty;
    for (int32_t i = 0; i < num_touched; i++) {
        int32_t t = s->touched[i];
        float x = logits[t];
        if (use_rep) x = x > 0.0f ? x / rp : x * rp;
        int32_t c = s->out_count[t];
        if (use_out && c > 0) {
            x -= p->frequency_penalty * (float)c;
            x -= p->presence_penalty;
        }
        logits[t] = x;
        s->seen[t] = 0;
        s->out_count[t] = 0;
    }
}

/* Step 4: argmax, lowest id on ties; NaN never wins; 0 when every value is NaN. */
static int32_t argmax_row(const float *logits, int32_t vocab_size)
{
    int32_t max_key, min_key;
    row_key_range(logits, vocab_size, &max_key, &min_key);
    for (int32_t i = 0; i < vocab_size; i++) {
        float x = logits[i] + 0.0f;
        if (x == x && float_key(x) == max_key) return i;
    }
    return 0;
}

/* Rank order: z descending, then id ascending. */
static int member_cmp(const void *a, const void *b)
{
    const sampling_member_t *x = a, *y = b;
    if (x->z > y->z) return -1;
    if (x->z < y->z) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The next index >= i whose bucket is b, or n.  Blocks of 32 are tested branch-free first. */
static int32_t next_in_bucket(const uint16_t *bucket, int32_t i, int32_t n, int32_t b)
{
    uint16_t want = (uint16_t)b;
    while (i + 32 <= n) {
        int32_t any = 0;
        for (int32_t j = 0; j < 32; j++) any |= bucket[i + j] == want;
        if (any) break;
        i += 32;
    }
    while (i < n && bucket[i] != want) i++;
    return i;
}

/* The members of bucket `b` into s->members in rank order (once per bucket). */
static void gather_bucket(sampling_scratch_t *s, const float *z, int32_t vocab_size, int32_t b)
{
    if (s->members_bucket == b) return;
    int32_t n = 0, want = (int32_t)s->hist_count[b];
    for (int32_t i = next_in_bucket(s->bucket, 0, vocab_size, b); n < want && i < vocab_size;
         i = next_in_bucket(s->bucket, i + 1, vocab_size, b)) {
        s->members[n].z = z[i];
        s->members[n].p = s->probs[i];
        s->members[n].id = i;
        n++;
    }
    qsort(s->members, (size_t)n, sizeof *s->members, member_cmp);
    s->members_bucket = b;
}

/* A rank prefix: every token of buckets < b, then the first n members of bucket b.
 * b == s->tail means every token with mass (the tail has none). */
typedef struct sampling_prefix_t {
    int32_t b;
    int32_t n;
} sampling_prefix_t;

static sampling_prefix_t prefix_of_length(const sampling_scratch_t *s, int64_t k)
{
    int64_t cum = 0;
    int32_t b = 0;
    while (b < s->tail && cum + s->hist_count[b] < k) cum += s->hist_count[b++];
    sampling_prefix_t pre = {b, b < s->tail ? (int32_t)(k - cum) : 0};
    return pre;
}

static int prefix_is_shorter(sampling_prefix_t a, sampling_prefix_t b)
{
    return a.b < b.b || (a.b == b.b && a.n < b.n);
}

/* bucket[i] = floor(-z[i] * inv_w) clamped to tail - 1, or tail when z[i] < -Z_CUT (-inf).
 * Branch-free (see the row scans above). */
static void bucket_row(const float *z, float inv_w, int32_t tail, uint16_t *bucket, int32_t n)
{
    float top = (float)(tail - 1);
    uint32_t top_bits;
    memcpy(&top_bits, &top, sizeof top_bits);
    for (int32_t i = 0; i < n; i++) {
        uint32_t zb;
        memcpy(&zb, &z[i], sizeof zb);
        uint32_t in_mask = 0u - (uint32_t)((zb & 0x7FFFFFFFu) <= Z_CUT_BITS);
        uint32_t mag = zb & 0x7FFFFFFFu & in_mask;   /* |z|, 0 when out */
        float f;
        memcpy(&f, &mag, sizeof f);
        f *= inv_w;
        uint32_t fb;
        memcpy(&fb, &f, sizeof fb);
        uint32_t big_mask = 0u - (uint32_t)(fb > top_bits);
        fb = (fb & ~big_mask) | (top_bits & big_mask);
        memcpy(&f, &fb, sizeof f);
        uint32_t b = (uint32_t)(int32_t)f;
        bucket[i] = (uint16_t)((b & in_mask) | ((uint32_t)tail & ~in_mask));
    }
}

/* Steps 5-6 for temperature > 0 and top_k != 1.  Returns the drawn token. */
static int32_t sample_tempered(const sampling_params_t *p, float *logits, int32_t vocab_size,
                               uint64_t rng_key, uint64_t rng_counter, sampling_scratch_t *s)
{
    int32_t max_key, min_key;
    row_key_range(logits, vocab_size, &max_key, &min_key);
    float m = key_float(max_key), lo = key_float(min_key);
    if (!(m > -INFINITY && m < INFINITY)) return argmax_row(logits, vocab_size);

    /* z = (logit - max) / T <= 0 in place and p = exp(z); below -Z_CUT (and -inf, NaN) z = -inf,
     * p = 0 */
    float temperature = p->temperature;
    exp_shifted(logits, m, temperature, logits, s->probs, vocab_size);

    /* linear buckets of -z over the row's span (capped at Z_CUT): count, mass and, for min_p,
     * the number of tokens with p >= min_p (a rank prefix, since max p is 1) */
    float span = (m - lo) / temperature;
    if (!(span >= 1e-6f)) span = 1.0f;
    else if (span > Z_CUT) span = Z_CUT;
    /* small vocabularies use fewer buckets (the clearing below is per row) */
    s->tail = vocab_size + 1 < NUM_BUCKETS - 1 ? vocab_size + 1 : NUM_BUCKETS - 1;
    bucket_row(logits, (float)(s->tail - 1) / span, s->tail, s->bucket, vocab_size);
    memset(s->hist_count, 0, (size_t)s->tail * sizeof s->hist_count[0]);
    memset(s->hist_mass, 0, (size_t)s->tail * sizeof s->hist_mass[0]);
    float min_p = p->min_p;
    int64_t num_min_p = 0;
    for (int32_t i = 0; i < vocab_size; i++) {
        int32_t b = s->bucket[i];
        if (b == s->tail) continue;   /* no mass; never counted */
        s->hist_count[b]++;
        s->hist_mass[b] += s->probs[i];
    }
    if (min_p > 0.0f)
        for (int32_t i = 0; i < vocab_size; i++) num_min_p += s->probs[i] >= min_p;
    s->members_bucket = -1;

    /* top_k, then top_p over the top-k mass, then min_p: the kept set is the shortest prefix */
    sampling_prefix_t end = {s->tail, 0};
    if (p->top_k > 1 && p->top_k < vocab_size) end = prefix_of_length(s, p->top_k);
    double mass_k = 0.0;
    for (int32_t b = 0; b < end.b; b++) mass_k += s->hist_mass[b];
    if (end.b < s->tail) {
        gather_bucket(s, logits, vocab_size, end.b);
        for (int32_t j = 0; j < end.n; j++) mass_k += s->members[j].p;
    }
    if (p->top_p < 1.0f) {
        double target = (double)p->top_p * mass_k, cum = 0.0;
        int32_t b = 0;
        while (b < end.b && cum + s->hist_mass[b] < target) cum += s->hist_mass[b++];
        if (b < s->tail) {
            int32_t limit = b == end.b ? end.n : (int32_t)s->hist_count[b], j = 0;
            gather_bucket(s, logits, vocab_size, b);
            while (j < limit) {
                cum += s->members[j++].p;
                if (cum >= target) break;
            }
            end.b = b;
            end.n = j;
        }
    }
    if (min_p > 0.0f) {
        sampling_prefix_t end_min_p = prefix_of_length(s, num_min_p);
        if (prefix_is_shorter(end_min_p, end)) end = end_min_p;
    }
    if (end.b < s->tail) gather_bucket(s, logits, vocab_size, end.b);

    /* inverse CDF in the order: buckets ascending (ids ascending inside each), then the
     * boundary bucket's kept members in rank order */
    double total = 0.0;
    for (int32_t b = 0; b < end.b; b++) total += s->hist_mass[b];
    int32_t end_n = end.b < s->tail ? end.n : 0;
    for (int32_t j = 0; j < end_n; j++) total += s->members[j].p;
    if (!(total > 0.0)) return argmax_row(logits, vocab_size);
    double target = sampling_uniform(rng_key, rng_counter) * total, cum = 0.0;
    int32_t last = -1;
    for (int32_t b = 0; b < end.b; b++) {
        if (s->hist_count[b] == 0) continue;
        if (cum + s->hist_mass[b] <= target) {
            cum += s->hist_mass[b];
            continue;
        }
        int32_t seen = 0, want = (int32_t)s->hist_count[b];
        for (int32_t i = next_in_bucket(s->bucket, 0, vocab_size, b); seen < want && i < vocab_size;
             i = next_in_bucket(s->bucket, i + 1, vocab_size, b)) {
            seen++;
            last = i;
            cum += s->probs[i];
            if (cum > target) return i;
        }
        return last;   /* the bucket's mass summed in another order: rounding */
    }
    for (int32_t j = 0; j < end_n; j++) {
        if (s->members[j].p <= 0.0f) continue;
        last = s->members[j].id;
        cum += s->members[j].p;
        if (cum > target) return last;
    }
    if (last < 0) return argmax_row(logits, vocab_size);
    return last;
}

/* ---------------------------------------------------------------- the row */

void sampling_sample_row(const sampling_params_t *p, float *logits, int32_t vocab_size,
                         const int32_t *prompt_ids, int32_t num_prompt,
                         const int32_t *output_ids, int32_t num_output,
                         const int32_t *banned_ids, int32_t num_banned,
                         const uint32_t *allowed_mask,
                         uint64_t rng_key, uint64_t rng_counter,
                         sampling_scratch_t *scratch, sampling_result_t *out)
{
    LL_ASSERT(vocab_size >= 1 && scratch && vocab_size <= scratch->vocab_size);
    LL_ASSERT(p->logprobs >= -1 && p->logprobs <= SAMPLING_MAX_LOGPROBS);
    memset(out, 0, sizeof *out);

    double lse = 0.0;
    if (p->logprobs >= 0) {
        memcpy(scratch->raw, logits, (size_t)vocab_size * sizeof *logits);
        lse = raw_logsumexp(logits, vocab_size, scratch->probs);
        if (p->logprobs > 0) raw_top_logprobs(logits, vocab_size, p->logprobs, lse, out);
    }

    apply_masks(logits, vocab_size, banned_ids, num_banned, allowed_mask);
    apply_penalties(p, logits, vocab_size, prompt_ids, num_prompt, output_ids, num_output, scratch);

    if (p->temperature == 0.0f || p->top_k == 1)
        out->token = argmax_row(logits, vocab_size);
    else
        out->token = sample_tempered(p, logits, vocab_size, rng_key, rng_counter, scratch);

    if (p->logprobs >= 0) {
        const float v = scratch->raw[out->token];
        int32_t above = 0;
        for (int32_t i = 0; i < vocab_size; i++) above += scratch->raw[i] > v;
        out->logprob = (float)((double)v - lse);
        out->rank = above + 1;
    }
}
