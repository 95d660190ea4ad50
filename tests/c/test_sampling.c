/* test_sampling.c — the CPU sampler (engine/sampling.c) against its contract in sampling.h.
 *
 * Each parameter gets a case with a clear expected effect: greedy is the argmax, empirical
 * distributions over many rng counters match softmax(logits / T) restricted to the kept set,
 * penalties flip the greedy choice exactly at their thresholds, bans and the allowed mask are
 * never violated, draws depend only on (key, counter), logprobs equal a float64 log_softmax of
 * the raw logits, and every bad parameter gets a message naming it.  Inputs come from a fixed
 * LCG, so every run is identical.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "engine/sampling.h"
#include "test_util.h"

#define BIG_VOCAB 151936

static uint64_t lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 11;
}

/* Roughly normal(0, sigma): sum of 4 uniforms, centred. */
static void fill_logits(float *x, int32_t n, float sigma, uint64_t seed)
{
    uint64_t st = seed;
    for (int32_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int k = 0; k < 4; k++) s += (double)lcg_next(&st) * 0x1.0p-53;
        x[i] = (float)((s - 2.0) * sigma * 1.7320508);
    }
}

/* One row on a copy of `logits` (the sampler rewrites its input). */
static sampling_result_t sample_once(const sampling_params_t *p, const float *logits, int32_t v,
                                     const int32_t *prompt, int32_t num_prompt,
                                     const int32_t *output, int32_t num_output,
                                     const int32_t *banned, int32_t num_banned, const uint32_t *mask,
                                     uint64_t key, uint64_t counter, sampling_scratch_t *s)
{
    float *work = malloc((size_t)v * sizeof *work);
    memcpy(work, logits, (size_t)v * sizeof *work);
    sampling_result_t r;
    sampling_sample_row(p, work, v, prompt, num_prompt, output, num_output, banned, num_banned, mask,
                        key, counter, s, &r);
    free(work);
    return r;
}

static int32_t greedy_token(const sampling_params_t *p, const float *logits, int32_t v,
                            const int32_t *prompt, int32_t num_prompt, const int32_t *output,
                            int32_t num_output)
{
    sampling_params_t g = *p;
    g.temperature = 0.0f;
    sampling_scratch_t *s = sampling_scratch_create(v);
    int32_t t = sample_once(&g, logits, v, prompt, num_prompt, output, num_output, NULL, 0, NULL, 1, 0, s).token;
    sampling_scratch_free(s);
    return t;
}

/* Empirical frequencies over counters 0..num_draws-1 (freq has v entries). */
static void empirical(const sampling_params_t *p, const float *logits, int32_t v, int32_t num_draws,
                      const int32_t *banned, int32_t num_banned, const uint32_t *mask, double *freq)
{
    sampling_scratch_t *s = sampling_scratch_create(v);
    float *work = malloc((size_t)v * sizeof *work);
    for (int32_t i = 0; i < v; i++) freq[i] = 0.0;
    for (int32_t c = 0; c < num_draws; c++) {
        memcpy(work, logits, (size_t)v * sizeof *work);
        sampling_result_t r;
        sampling_sample_row(p, work, v, NULL, 0, NULL, 0, banned, num_banned, mask, 12345, (uint64_t)c, s, &r);
        CHECK(r.token >= 0 && r.token < v);
        if (r.token >= 0 && r.token < v) freq[r.token] += 1.0 / num_draws;
    }
    free(work);
    sampling_scratch_free(s);
}

/* softmax(logits / t) over the tokens with keep[i] (NULL = all). */
static void softmax_ref(const float *logits, int32_t v, double t, const int *keep, double *out)
{
    double m = -INFINITY, sum = 0.0;
    for (int32_t i = 0; i < v; i++)
        if ((!keep || keep[i]) && logits[i] / t > m) m = logits[i] / t;
    for (int32_t i = 0; i < v; i++) {
        out[i] = (!keep || keep[i]) ? exp(logits[i] / t - m) : 0.0;
        sum += out[i];
    }
    for (int32_t i = 0; i < v; i++) out[i] /= sum;
}

static double max_abs_diff(const double *a, const double *b, int32_t n)
{
    double d = 0.0;
    for (int32_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

/* Logits whose softmax is exactly `probs` (up to float rounding). */
static void logits_from_probs(const double *probs, int32_t n, float *logits)
{
    for (int32_t i = 0; i < n; i++) logits[i] = (float)log(probs[i]);
}

/* ---------------------------------------------------------------- parameters */

TEST_CASE(sampling_params_defaults_are_vllm)
{
    sampling_params_t p;
    memset(&p, 0x5A, sizeof p);
    sampling_params_default(&p);
    CHECK(p.temperature == 1.0f && p.top_p == 1.0f && p.min_p == 0.0f);
    CHECK_EQ_INT(p.top_k, -1);
    CHECK(p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f);
    CHECK_EQ_INT(p.max_tokens, 16);
    CHECK_EQ_INT(p.min_tokens, 0);
    CHECK_EQ_INT(p.n, 1);
    CHECK_EQ_INT(p.logprobs, -1);
    CHECK_EQ_INT(p.ignore_eos, 0);
    CHECK_EQ_INT(p.has_seed, 0);
    CHECK_EQ_INT(sampling_params_validate(&p), STATUS_OK);
}

typedef struct bad_case_t {
    const char *expect;          /* substring of the message */
    void (*mutate)(sampling_params_t *);
} bad_case_t;

static void bad_temperature(sampling_params_t *p) { p->temperature = -1.0f; }
static void bad_temperature_nan(sampling_params_t *p) { p->temperature = NAN; }
static void bad_temperature_inf(sampling_params_t *p) { p->temperature = INFINITY; }
static void bad_top_p_zero(sampling_params_t *p) { p->top_p = 0.0f; }
static void bad_top_p_big(sampling_params_t *p) { p->top_p = 1.5f; }
static void bad_top_p_nan(sampling_params_t *p) { p->top_p = NAN; }
static void bad_top_k(sampling_params_t *p) { p->top_k = -2; }
static void bad_min_p_neg(sampling_params_t *p) { p->min_p = -0.25f; }
static void bad_min_p_big(sampling_params_t *p) { p->min_p = 1.5f; }
static void bad_min_p_nan(sampling_params_t *p) { p->min_p = NAN; }
static void bad_rep_zero(sampling_params_t *p) { p->repetition_penalty = 0.0f; }
static void bad_rep_nan(sampling_params_t *p) { p->repetition_penalty = NAN; }
static void bad_presence(sampling_params_t *p) { p->presence_penalty = 2.5f; }
static void bad_presence_nan(sampling_params_t *p) { p->presence_penalty = NAN; }
static void bad_frequency(sampling_params_t *p) { p->frequency_penalty = -3.0f; }
static void bad_max_tokens(sampling_params_t *p) { p->max_tokens = 0; }
static void bad_min_tokens(sampling_params_t *p) { p->min_tokens = -1; }
static void bad_min_over_max(sampling_params_t *p) { p->max_tokens = 4; p->min_tokens = 5; }
static void bad_n_zero(sampling_params_t *p) { p->n = 0; }
static void bad_n_big(sampling_params_t *p) { p->n = 129; }
static void bad_logprobs_low(sampling_params_t *p) { p->logprobs = -2; }
static void bad_logprobs_high(sampling_params_t *p) { p->logprobs = 21; }

TEST_CASE(sampling_params_validate_names_each_bad_parameter)
{
    static const bad_case_t cases[] = {
        {"temperature must be >= 0, got -1", bad_temperature},
        {"temperature", bad_temperature_nan},
        {"temperature", bad_temperature_inf},
        {"top_p must be in (0, 1], got 0", bad_top_p_zero},
        {"top_p must be in (0, 1], got 1.5", bad_top_p_big},
        {"top_p", bad_top_p_nan},
        {"top_k must be -1 (disabled) or >= 1, got -2", bad_top_k},
        {"min_p must be in [0, 1], got -0.25", bad_min_p_neg},
        {"min_p must be in [0, 1], got 1.5", bad_min_p_big},
        {"min_p", bad_min_p_nan},
        {"repetition_penalty must be > 0, got 0", bad_rep_zero},
        {"repetition_penalty", bad_rep_nan},
        {"presence_penalty must be in [-2, 2], got 2.5", bad_presence},
        {"presence_penalty", bad_presence_nan},
        {"frequency_penalty must be in [-2, 2], got -3", bad_frequency},
        {"max_tokens must be >= 1, got 0", bad_max_tokens},
        {"min_tokens must be >= 0, got -1", bad_min_tokens},
        {"min_tokens must be <= max_tokens", bad_min_over_max},
        {"n must be in [1, 128], got 0", bad_n_zero},
        {"n must be in [1, 128], got 129", bad_n_big},
        {"logprobs must be -1 (off) or in [0, 20], got -2", bad_logprobs_low},
        {"logprobs must be -1 (off) or in [0, 20], got 21", bad_logprobs_high},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sampling_params_t p;
        sampling_params_default(&p);
        cases[i].mutate(&p);
        CHECK_EQ_INT(sampling_params_validate(&p), STATUS_INVALID_ARG);
        if (!strstr(status_message(), cases[i].expect)) {
            fprintf(stderr, "case %zu: message \"%s\" lacks \"%s\"\n", i, status_message(), cases[i].expect);
            CHECK(0);
        }
    }
}

TEST_CASE(sampling_params_validate_accepts_edges)
{
    sampling_params_t p;
    sampling_params_default(&p);
    p.temperature = 0.0f;
    p.top_p = 1.0f;
    p.top_k = 0;                 /* disabled too */
    p.min_p = 1.0f;
    p.repetition_penalty = 1e-3f;
    p.presence_penalty = -2.0f;
    p.frequency_penalty = 2.0f;
    p.max_tokens = 1;
    p.min_tokens = 1;
    p.n = 128;
    p.logprobs = 20;
    p.has_seed = 1;
    p.seed = UINT64_MAX;
    CHECK_EQ_INT(sampling_params_validate(&p), STATUS_OK);
    p.top_k = 1;
    p.logprobs = 0;
    p.min_tokens = 0;
    CHECK_EQ_INT(sampling_params_validate(&p), STATUS_OK);
}

/* ---------------------------------------------------------------- RNG */

TEST_CASE(sampling_uniform_is_philox_and_deterministic)
{
    /* Random123 known answer: Philox-4x32-10, counter 0, key 0 -> 0x6627e8d5 0xe169c58d ... */
    double expect = (double)((((uint64_t)0x6627e8d5u << 32) | 0xe169c58du) >> 11) * 0x1.0p-53;
    CHECK(sampling_uniform(0, 0) == expect);
    double sum = 0.0;
    int distinct = 1;
    for (uint64_t c = 0; c < 20000; c++) {
        double u = sampling_uniform(0xDEADBEEFCAFEull, c);
        CHECK(u >= 0.0 && u < 1.0);
        CHECK(u == sampling_uniform(0xDEADBEEFCAFEull, c));
        if (c > 0 && u == sampling_uniform(0xDEADBEEFCAFEull, c - 1)) distinct = 0;
        sum += u;
    }
    CHECK(distinct);
    CHECK(fabs(sum / 20000 - 0.5) < 0.01);
    CHECK(sampling_uniform(1, 7) != sampling_uniform(2, 7));
    CHECK(sampling_uniform(1, 7) != sampling_uniform(1, 7 + (1ull << 32)));
}

/* ---------------------------------------------------------------- greedy and temperature */

TEST_CASE(sampling_greedy_is_argmax_lowest_id_on_ties)
{
    float logits[7] = {0.5f, 3.0f, -2.0f, 3.0f, 1.0f, -INFINITY, 2.9f};
    sampling_params_t p;
    sampling_params_default(&p);
    p.temperature = 0.0f;
    sampling_scratch_t *s = sampling_scratch_create(7);
    for (uint64_t c = 0; c < 50; c++)   /* greedy ignores the RNG */
        CHECK_EQ_INT(sample_once(&p, logits, 7, NULL, 0, NULL, 0, NULL, 0, NULL, c * 977, c, s).token, 1);
    p.temperature = 1.5f;
    p.top_k = 1;                        /* top_k == 1 is greedy too */
    for (uint64_t c = 0; c < 50; c++)
        CHECK_EQ_INT(sample_once(&p, logits, 7, NULL, 0, NULL, 0, NULL, 0, NULL, 3, c, s).token, 1);
    sampling_scratch_free(s);
}

TEST_CASE(sampling_temperature_matches_softmax)
{
    const float logits[7] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, -0.5f};
    const float temps[3] = {1.0f, 0.5f, 2.0f};
    double freq[7], ref[7];
    sampling_params_t p;
    sampling_params_default(&p);
    for (int t = 0; t < 3; t++) {
        p.temperature = temps[t];
        empirical(&p, logits, 7, 20000, NULL, 0, NULL, freq);
        softmax_ref(logits, 7, temps[t], NULL, ref);
        double d = max_abs_diff(freq, ref, 7);
        if (!(d < 0.015)) fprintf(stderr, "T=%g: max |freq - softmax| = %g\n", temps[t], d);
        CHECK(d < 0.015);
    }
}

TEST_CASE(sampling_low_temperature_concentrates_high_spreads)
{
    const float logits[7] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, -0.5f};
    double freq[7];
    sampling_params_t p;
    sampling_params_default(&p);
    p.temperature = 0.05f;               /* gap 0.5 / 0.05 = 10 nats: argmax ~ always */
    empirical(&p, logits, 7, 4000, NULL, 0, NULL, freq);
    CHECK(freq[1] > 0.999);
    p.temperature = 1e-6f;               /* tiny but positive: still well defined */
    empirical(&p, logits, 7, 500, NULL, 0, NULL, freq);
    CHECK(freq[1] > 1.0 - 1e-9);
    p.temperature = 100.0f;              /* near uniform */
    empirical(&p, logits, 7, 20000, NULL, 0, NULL, freq);
    for (int i = 0; i < 7; i++) CHECK(fabs(freq[i] - 1.0 / 7) < 0.02);
}

/* ---------------------------------------------------------------- truncation */

TEST_CASE(sampling_top_k_only_yields_the_k_best)
{
    const float logits[7] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, -0.5f};
    double freq[7], ref[7];
    int keep[7] = {0, 1, 0, 0, 1, 0, 0};
    sampling_params_t p;
    sampling_params_default(&p);
    p.top_k = 2;
    empirical(&p, logits, 7, 20000, NULL, 0, NULL, freq);
    softmax_ref(logits, 7, 1.0, keep, ref);
    CHECK(max_abs_diff(freq, ref, 7) < 0.015);
    for (int i = 0; i < 7; i++)
        if (!keep[i]) CHECK(freq[i] == 0.0);

    /* equal logits: ties go to the lower ids, uniformly */
    float flat[7] = {0};
    p.top_k = 3;
    empirical(&p, flat, 7, 9000, NULL, 0, NULL, freq);
    for (int i = 0; i < 7; i++) CHECK(i < 3 ? fabs(freq[i] - 1.0 / 3) < 0.02 : freq[i] == 0.0);

    /* top_k >= vocab is off */
    p.top_k = 7;
    empirical(&p, logits, 7, 20000, NULL, 0, NULL, freq);
    softmax_ref(logits, 7, 1.0, NULL, ref);
    CHECK(max_abs_diff(freq, ref, 7) < 0.015);
}

TEST_CASE(sampling_top_p_keeps_smallest_nucleus)
{
    const double probs[5] = {0.45, 0.25, 0.15, 0.1, 0.05};
    float logits[5];
    logits_from_probs(probs, 5, logits);
    double freq[5], ref[5];
    sampling_params_t p;
    sampling_params_default(&p);

    /* 0.45 < 0.6 <= 0.70: {0, 1} */
    int keep01[5] = {1, 1, 0, 0, 0};
    p.top_p = 0.6f;
    empirical(&p, logits, 5, 20000, NULL, 0, NULL, freq);
    softmax_ref(logits, 5, 1.0, keep01, ref);
    CHECK(max_abs_diff(freq, ref, 5) < 0.015);
    CHECK(freq[2] == 0.0 && freq[3] == 0.0 && freq[4] == 0.0);

    /* cumulative 0.45 0.70 0.85: 0.70 < 0.82 <= 0.85 gives {0, 1, 2} */
    int keep012[5] = {1, 1, 1, 0, 0};
    p.top_p = 0.82f;
    empirical(&p, logits, 5, 20000, NULL, 0, NULL, freq);
    softmax_ref(logits, 5, 1.0, keep012, ref);
    CHECK(max_abs_diff(freq, ref, 5) < 0.015);
    CHECK(freq[3] == 0.0 && freq[4] == 0.0);

    /* tiny top_p always keeps the top token */
    p.top_p = 0.01f;
    empirical(&p, logits, 5, 500, NULL, 0, NULL, freq);
    CHECK(freq[0] > 1.0 - 1e-9);

    /* top_p applies to the top-k set renormalised: top-3 mass 0.85, 0.45 / 0.85 = 0.53 >= 0.5 */
    p.top_k = 3;
    p.top_p = 0.5f;
    empirical(&p, logits, 5, 500, NULL, 0, NULL, freq);
    CHECK(freq[0] > 1.0 - 1e-9);
    p.top_k = -1;                        /* without top_k, 0.45 < 0.5: {0, 1} */
    empirical(&p, logits, 5, 4000, NULL, 0, NULL, freq);
    CHECK(freq[0] < 0.8 && freq[1] > 0.2 && freq[2] == 0.0);
}

TEST_CASE(sampling_min_p_drops_low_tokens)
{
    const double probs[5] = {0.45, 0.25, 0.15, 0.1, 0.05};
    float logits[5];
    logits_from_probs(probs, 5, logits);
    double freq[5], ref[5];
    sampling_params_t p;
    sampling_params_default(&p);
    p.min_p = 0.3f;                      /* keep prob >= 0.135: {0, 1, 2} */
    int keep[5] = {1, 1, 1, 0, 0};
    empirical(&p, logits, 5, 20000, NULL, 0, NULL, freq);
    softmax_ref(logits, 5, 1.0, keep, ref);
    CHECK(max_abs_diff(freq, ref, 5) < 0.015);
    CHECK(freq[3] == 0.0 && freq[4] == 0.0);
    p.min_p = 0.6f;                      /* keep prob >= 0.27: {0} */
    empirical(&p, logits, 5, 500, NULL, 0, NULL, freq);
    CHECK(freq[0] > 1.0 - 1e-9);
    p.min_p = 1.0f;                      /* the top token survives */
    empirical(&p, logits, 5, 500, NULL, 0, NULL, freq);
    CHECK(freq[0] > 1.0 - 1e-9);
}

/* ---------------------------------------------------------------- penalties */

TEST_CASE(sampling_repetition_penalty)
{
    sampling_params_t p;
    sampling_params_default(&p);
    /* positive seen logit is divided: 2.0 / 1.5 = 1.33 < 1.8 */
    const float pos[4] = {2.0f, 1.8f, -1.0f, -1.2f};
    int32_t seen0[1] = {0};
    CHECK_EQ_INT(greedy_token(&p, pos, 4, seen0, 1, NULL, 0), 0);
    p.repetition_penalty = 1.5f;
    CHECK_EQ_INT(greedy_token(&p, pos, 4, seen0, 1, NULL, 0), 1);     /* seen in the prompt */
    CHECK_EQ_INT(greedy_token(&p, pos, 4, NULL, 0, seen0, 1), 1);     /* seen in the output */
    p.repetition_penalty = 1.1f;                                      /* 1.82 > 1.8: stays */
    CHECK_EQ_INT(greedy_token(&p, pos, 4, seen0, 1, NULL, 0), 0);
    p.repetition_penalty = 1.12f;                                     /* 1.786 < 1.8: flips */
    CHECK_EQ_INT(greedy_token(&p, pos, 4, seen0, 1, NULL, 0), 1);

    /* negative seen logit is multiplied (more negative): -1.0 * 1.15 = -1.15 < -1.1 */
    const float neg[3] = {-1.0f, -1.1f, -3.0f};
    p.repetition_penalty = 1.05f;                                     /* -1.05 > -1.1 */
    CHECK_EQ_INT(greedy_token(&p, neg, 3, seen0, 1, NULL, 0), 0);
    p.repetition_penalty = 1.15f;
    CHECK_EQ_INT(greedy_token(&p, neg, 3, seen0, 1, NULL, 0), 1);
    /* penalty < 1 rewards: -1.1 * 0.85 = -0.935 > -1.0 */
    int32_t seen1[1] = {1};
    p.repetition_penalty = 0.85f;
    CHECK_EQ_INT(greedy_token(&p, neg, 3, seen1, 1, NULL, 0), 1);

    /* the scratch is clean afterwards: a penalised row, then a plain row on the same scratch */
    sampling_scratch_t *s = sampling_scratch_create(4);
    p.temperature = 0.0f;
    p.repetition_penalty = 1.5f;
    CHECK_EQ_INT(sample_once(&p, pos, 4, seen0, 1, seen0, 1, NULL, 0, NULL, 0, 0, s).token, 1);
    p.repetition_penalty = 1.0f;
    CHECK_EQ_INT(sample_once(&p, pos, 4, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0, s).token, 0);
    p.frequency_penalty = 0.15f;         /* 2.0 - 0.15 = 1.85 > 1.8; a leftover count would flip it */
    CHECK_EQ_INT(sample_once(&p, pos, 4, seen0, 1, seen0, 1, NULL, 0, NULL, 0, 0, s).token, 0);
    sampling_scratch_free(s);
}

TEST_CASE(sampling_presence_and_frequency_penalties)
{
    sampling_params_t p;
    sampling_params_default(&p);
    const float logits[3] = {1.0f, 0.0f, -5.0f};
    int32_t out3[4] = {0, 2, 0, 0};      /* token 0 three times, token 2 once */
    /* frequency: 1.0 - 3f */
    p.frequency_penalty = 0.3f;          /* 0.1 > 0 */
    CHECK_EQ_INT(greedy_token(&p, logits, 3, NULL, 0, out3, 4), 0);
    p.frequency_penalty = 0.35f;         /* -0.05 < 0 */
    CHECK_EQ_INT(greedy_token(&p, logits, 3, NULL, 0, out3, 4), 1);
    /* presence: once, whatever the count */
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.95f;          /* 0.05 > 0 */
    CHECK_EQ_INT(greedy_token(&p, logits, 3, NULL, 0, out3, 4), 0);
    p.presence_penalty = 1.05f;          /* -0.05 < 0 */
    CHECK_EQ_INT(greedy_token(&p, logits, 3, NULL, 0, out3, 4), 1);
    /* both: 1.0 - 3 * 0.2 - 0.35 = 0.05 > 0; with presence 0.45: -0.05 */
    p.frequency_penalty = 0.2f;
    p.presence_penalty = 0.35f;
    CHECK_EQ_INT(greedy_token(&p, logits, 3, NULL, 0, out3, 4), 0);
    p.presence_penalty = 0.45f;
    CHECK_EQ_INT(greedy_token(&p, logits, 3, NULL, 0, out3, 4), 1);
    /* prompt tokens do not count */
    p.frequency_penalty = 2.0f;
    p.presence_penalty = 2.0f;
    CHECK_EQ_INT(greedy_token(&p, logits, 3, out3, 4, NULL, 0), 0);
    /* negative penalties reward repeats */
    p.frequency_penalty = -2.0f;
    p.presence_penalty = -2.0f;
    int32_t out2[3] = {2, 2, 2};         /* -5 + 6 + 2 = 3 > 1 */
    CHECK_EQ_INT(greedy_token(&p, logits, 3, NULL, 0, out2, 3), 2);
}

/* ---------------------------------------------------------------- masks */

TEST_CASE(sampling_banned_ids_never_sampled)
{
    const float logits[7] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, -0.5f};
    int32_t banned[2] = {1, 4};
    double freq[7], ref[7];
    int keep[7] = {1, 0, 1, 1, 0, 1, 1};
    sampling_params_t p;
    sampling_params_default(&p);
    empirical(&p, logits, 7, 20000, banned, 2, NULL, freq);
    CHECK(freq[1] == 0.0 && freq[4] == 0.0);
    softmax_ref(logits, 7, 1.0, keep, ref);
    CHECK(max_abs_diff(freq, ref, 7) < 0.015);
    CHECK_EQ_INT(greedy_token(&p, logits, 7, NULL, 0, NULL, 0), 1);
    p.temperature = 0.0f;
    sampling_scratch_t *s = sampling_scratch_create(7);
    CHECK_EQ_INT(sample_once(&p, logits, 7, NULL, 0, NULL, 0, banned, 2, NULL, 0, 0, s).token, 0);
    sampling_scratch_free(s);
}

TEST_CASE(sampling_allowed_mask_respected)
{
    enum { V = 50 };
    float logits[V];
    fill_logits(logits, V, 1.0f, 77);
    uint32_t mask[2] = {0, 0};
    const int32_t allowed[3] = {1, 5, 40};
    for (int i = 0; i < 3; i++) mask[allowed[i] / 32] |= 1u << (allowed[i] % 32);
    int keep[V] = {0};
    for (int i = 0; i < 3; i++) keep[allowed[i]] = 1;
    double freq[V], ref[V];
    sampling_params_t p;
    sampling_params_default(&p);
    p.temperature = 0.7f;
    empirical(&p, logits, V, 20000, NULL, 0, mask, freq);
    softmax_ref(logits, V, 0.7, keep, ref);
    CHECK(max_abs_diff(freq, ref, V) < 0.015);
    for (int i = 0; i < V; i++)
        if (!keep[i]) CHECK(freq[i] == 0.0);
    /* greedy picks the best allowed token; a ban on top of the mask removes it too */
    int32_t best = allowed[0];
    for (int i = 1; i < 3; i++)
        if (logits[allowed[i]] > logits[best]) best = allowed[i];
    p.temperature = 0.0f;
    sampling_scratch_t *s = sampling_scratch_create(V);
    CHECK_EQ_INT(sample_once(&p, logits, V, NULL, 0, NULL, 0, NULL, 0, mask, 0, 0, s).token, best);
    p.temperature = 1.0f;
    for (uint64_t c = 0; c < 200; c++) {
        int32_t t = sample_once(&p, logits, V, NULL, 0, NULL, 0, &best, 1, mask, 9, c, s).token;
        CHECK(keep[t] && t != best);
    }
    sampling_scratch_free(s);
}

/* ---------------------------------------------------------------- determinism */

TEST_CASE(sampling_same_key_counter_same_token)
{
    enum { V = 1000, N = 200 };
    float logits[V], other[V];
    fill_logits(logits, V, 1.0f, 5);
    fill_logits(other, V, 3.0f, 6);
    sampling_params_t p, q;
    sampling_params_default(&p);
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    sampling_params_default(&q);
    q.top_k = 5;
    sampling_scratch_t *s = sampling_scratch_create(V);
    int32_t forward[N];
    for (int c = 0; c < N; c++)
        forward[c] = sample_once(&p, logits, V, NULL, 0, NULL, 0, NULL, 0, NULL, 42, (uint64_t)c, s).token;
    int differ = 0, distinct = 0;
    for (int c = N - 1; c >= 0; c--) {  /* reverse order, other rows in between */
        sample_once(&q, other, V, NULL, 0, NULL, 0, NULL, 0, NULL, 43, (uint64_t)c * 7, s);
        CHECK_EQ_INT(sample_once(&p, logits, V, NULL, 0, NULL, 0, NULL, 0, NULL, 42, (uint64_t)c, s).token,
                     forward[c]);
        if (sample_once(&p, logits, V, NULL, 0, NULL, 0, NULL, 0, NULL, 4242, (uint64_t)c, s).token != forward[c])
            differ++;
        if (c > 0 && forward[c] != forward[c - 1]) distinct++;
    }
    CHECK(differ > N / 2);               /* another key draws differently */
    CHECK(distinct > N / 2);             /* successive counters draw differently */
    sampling_scratch_free(s);
}

/* ---------------------------------------------------------------- logprobs */

TEST_CASE(sampling_logprobs_from_raw_logits)
{
    enum { V = 1000 };
    float logits[V];
    fill_logits(logits, V, 2.0f, 11);
    logits[10] = logits[20] = 9.0f;      /* a tie at the top: lower id first */
    logits[30] = 8.5f;
    double m = -INFINITY, sum = 0.0, ref[V];
    for (int i = 0; i < V; i++) m = fmax(m, logits[i]);
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - m);
    for (int i = 0; i < V; i++) ref[i] = (double)logits[i] - m - log(sum);

    sampling_params_t p;
    sampling_params_default(&p);
    p.logprobs = 5;
    p.temperature = 0.8f;
    p.repetition_penalty = 1.3f;         /* none of these may touch the logprobs */
    p.presence_penalty = 1.0f;
    int32_t out[2] = {10, 3};
    int32_t banned[1] = {20};
    sampling_scratch_t *s = sampling_scratch_create(V);
    for (uint64_t c = 0; c < 20; c++) {
        sampling_result_t r = sample_once(&p, logits, V, out, 2, out, 2, banned, 1, NULL, 1, c, s);
        CHECK(r.token != 20);
        CHECK(fabs(r.logprob - ref[r.token]) < 1e-5);
        CHECK_EQ_INT(r.num_top, 5);
        CHECK_EQ_INT(r.top_ids[0], 10);
        CHECK_EQ_INT(r.top_ids[1], 20);
        CHECK_EQ_INT(r.top_ids[2], 30);
        for (int j = 0; j < r.num_top; j++) {
            CHECK(fabs(r.top_logprobs[j] - ref[r.top_ids[j]]) < 1e-5);
            if (j > 0) CHECK(r.top_logprobs[j] <= r.top_logprobs[j - 1]);
        }
        /* the top list is the true top 5 */
        int rank = 0;
        for (int i = 0; i < V; i++) rank += logits[i] > logits[r.top_ids[4]];
        CHECK_EQ_INT(rank, 4);
    }
    p.logprobs = 0;                      /* sampled token only */
    p.temperature = 0.0f;
    sampling_result_t r = sample_once(&p, logits, V, NULL, 0, NULL, 0, NULL, 0, NULL, 1, 0, s);
    CHECK_EQ_INT(r.token, 10);
    CHECK_EQ_INT(r.num_top, 0);
    CHECK(fabs(r.logprob - ref[10]) < 1e-5);
    p.logprobs = -1;                     /* off */
    r = sample_once(&p, logits, V, NULL, 0, NULL, 0, NULL, 0, NULL, 1, 0, s);
    CHECK_EQ_INT(r.num_top, 0);
    CHECK(r.logprob == 0.0f);
    p.logprobs = 20;                     /* the maximum, with -inf entries present */
    float with_inf[V];
    memcpy(with_inf, logits, sizeof with_inf);
    for (int i = 500; i < V; i++) with_inf[i] = -INFINITY;
    r = sample_once(&p, with_inf, V, NULL, 0, NULL, 0, NULL, 0, NULL, 1, 0, s);
    CHECK_EQ_INT(r.num_top, 20);
    CHECK(isfinite(r.top_logprobs[19]) && r.top_logprobs[19] < r.top_logprobs[0]);
    sampling_scratch_free(s);
}

/* ---------------------------------------------------------------- vocabulary sizes */

TEST_CASE(sampling_vocab_size_one)
{
    float logit = 0.3f;
    sampling_scratch_t *s = sampling_scratch_create(1);
    sampling_params_t p;
    sampling_params_default(&p);
    p.logprobs = 1;
    p.top_p = 0.5f;
    p.min_p = 0.5f;
    for (uint64_t c = 0; c < 10; c++) {
        sampling_result_t r = sample_once(&p, &logit, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 1, c, s);
        CHECK_EQ_INT(r.token, 0);
        CHECK(fabs(r.logprob) < 1e-6);
        CHECK_EQ_INT(r.num_top, 1);
        CHECK_EQ_INT(r.top_ids[0], 0);
    }
    p.temperature = 0.0f;
    CHECK_EQ_INT(sample_once(&p, &logit, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 1, 0, s).token, 0);
    CHECK(sampling_scratch_create(0) == NULL);
    sampling_scratch_free(s);
    sampling_scratch_free(NULL);
}

/* Brute-force nucleus: sort by (prob desc, id asc), keep the top_k, then the smallest prefix
 * with mass >= top_p of that, then prob >= min_p * max. */
static const float *cmp_logits;
static int cmp_rank(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (cmp_logits[x] != cmp_logits[y]) return cmp_logits[x] > cmp_logits[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static void reference_keep(const float *logits, int32_t v, const sampling_params_t *p, int *keep)
{
    int32_t *order = malloc((size_t)v * sizeof *order);
    double *prob = malloc((size_t)v * sizeof *prob);
    for (int32_t i = 0; i < v; i++) order[i] = i;
    cmp_logits = logits;
    qsort(order, (size_t)v, sizeof *order, cmp_rank);
    int32_t n = p->top_k > 0 && p->top_k < v ? p->top_k : v;
    double m = logits[order[0]], mass = 0.0;
    for (int32_t j = 0; j < n; j++) {
        prob[j] = exp(((double)logits[order[j]] - m) / p->temperature);
        mass += prob[j];
    }
    double cum = 0.0;
    int32_t len = 0;
    while (len < n) {
        cum += prob[len++];
        if (cum >= p->top_p * mass) break;
    }
    for (int32_t i = 0; i < v; i++) keep[i] = 0;
    for (int32_t j = 0; j < len; j++)
        if (prob[j] >= p->min_p) keep[order[j]] = 1;
    free(order);
    free(prob);
}

TEST_CASE(sampling_big_vocab_matches_bruteforce_sets)
{
    int32_t v = BIG_VOCAB;
    float *logits = malloc((size_t)v * sizeof *logits);
    int *keep = malloc((size_t)v * sizeof *keep);
    sampling_scratch_t *s = sampling_scratch_create(v);
    sampling_params_t p;
    sampling_params_default(&p);
    struct { float sigma, temperature, top_p, min_p; int32_t top_k; } cfg[] = {
        {3.0f, 0.7f, 0.9f, 0.0f, -1},    /* peaked-ish: small nucleus */
        {0.3f, 0.7f, 0.9f, 0.0f, -1},    /* flat: a nucleus of ~100k tokens */
        {2.0f, 1.0f, 1.0f, 0.0f, 50},
        {2.0f, 1.0f, 0.5f, 0.0f, 1000},
        {2.0f, 0.5f, 1.0f, 0.05f, -1},
    };
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        fill_logits(logits, v, cfg[k].sigma, 100 + k);
        p.temperature = cfg[k].temperature;
        p.top_p = cfg[k].top_p;
        p.top_k = cfg[k].top_k;
        p.min_p = cfg[k].min_p;
        reference_keep(logits, v, &p, keep);
        int32_t num_keep = 0, first_out = -1;
        for (int32_t i = 0; i < v; i++) num_keep += keep[i];
        for (uint64_t c = 0; c < 6; c++) {
            int32_t t = sample_once(&p, logits, v, NULL, 0, NULL, 0, NULL, 0, NULL, 99, c, s).token;
            CHECK(t >= 0 && t < v);
            if (t >= 0 && t < v && !keep[t] && first_out < 0) first_out = t;
        }
        if (first_out >= 0) fprintf(stderr, "config %zu: token %d outside the %d kept\n", k, first_out, num_keep);
        CHECK(first_out < 0);
    }
    /* greedy at full size */
    fill_logits(logits, v, 2.0f, 7);
    logits[123456] = 50.0f;
    CHECK_EQ_INT(greedy_token(&p, logits, v, NULL, 0, NULL, 0), 123456);
    free(logits);
    free(keep);
    sampling_scratch_free(s);
}

TEST_CASE(sampling_big_vocab_distribution_over_kept_set)
{
    /* A 151936 vocab with a known head: 4 strong tokens far from a flat tail, top_p cut inside
     * the head, so the draw frequencies over the head are checkable. */
    int32_t v = BIG_VOCAB;
    float *logits = malloc((size_t)v * sizeof *logits);
    fill_logits(logits, v, 0.5f, 3);
    const int32_t head[4] = {151935, 7, 70000, 3};
    const float head_logit[4] = {14.0f, 13.5f, 13.0f, 10.0f};
    for (int i = 0; i < 4; i++) logits[head[i]] = head_logit[i];
    sampling_params_t p;
    sampling_params_default(&p);
    p.top_p = 0.9f;                      /* head probs ~ 0.50 0.30 0.18 0.01 -> first 3 */
    sampling_scratch_t *s = sampling_scratch_create(v);
    double count[3] = {0};
    const int N = 200;
    for (int c = 0; c < N; c++) {
        int32_t t = sample_once(&p, logits, v, NULL, 0, NULL, 0, NULL, 0, NULL, 5, (uint64_t)c, s).token;
        int found = 0;
        for (int i = 0; i < 3; i++)
            if (t == head[i]) { count[i] += 1.0 / N; found = 1; }
        CHECK(found);
    }
    double e0 = 1.0, e1 = exp(-0.5), e2 = exp(-1.0), z = e0 + e1 + e2;
    CHECK(fabs(count[0] - e0 / z) < 0.1);
    CHECK(fabs(count[1] - e1 / z) < 0.1);
    CHECK(fabs(count[2] - e2 / z) < 0.1);
    free(logits);
    sampling_scratch_free(s);
}

TEST_CASE(sampling_all_masked_row_is_defined)
{
    /* every token banned: a defined token (0), no crash, for greedy and sampling */
    float logits[7] = {1, 2, 3, 4, 5, 6, 7};
    int32_t banned[7] = {0, 1, 2, 3, 4, 5, 6};
    sampling_scratch_t *s = sampling_scratch_create(7);
    sampling_params_t p;
    sampling_params_default(&p);
    CHECK_EQ_INT(sample_once(&p, logits, 7, NULL, 0, NULL, 0, banned, 7, NULL, 1, 0, s).token, 0);
    p.temperature = 0.0f;
    CHECK_EQ_INT(sample_once(&p, logits, 7, NULL, 0, NULL, 0, banned, 7, NULL, 1, 0, s).token, 0);
    /* a NaN logit never wins */
    float with_nan[3] = {NAN, 1.0f, 0.5f};
    CHECK_EQ_INT(sample_once(&p, with_nan, 3, NULL, 0, NULL, 0, NULL, 0, NULL, 1, 0, s).token, 1);
    p.temperature = 1.0f;
    for (uint64_t c = 0; c < 50; c++)
        CHECK(sample_once(&p, with_nan, 3, NULL, 0, NULL, 0, NULL, 0, NULL, 1, c, s).token != 0);
    sampling_scratch_free(s);
}
