/* test_backend_sample.c — the CPU backend's sample op (backend/cpu/cpu_sample.c) against
 * sampling_sample_row called directly with the raw prompt / output / banned lists.
 *
 * The op takes the GPU kernel's inputs (distinct ascending penalty ids with output counts,
 * a banned CSR where out-of-range ids are ignored); it must give exactly the sampler's answer
 * for the raw lists those were built from, leave the logits untouched, fill every output
 * slot, and write the next-token table (not for SAMPLE_NO_TABLE rows or negative indices).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "engine/sampling.h"
#include "test_util.h"

#define VOCAB 3001
#define ROWS 12
#define MAX_LIST 400

static uint64_t g_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void)
{
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_state >> 33);
}

static int cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

TEST_CASE(backend_cpu_sample_matches_sampler_on_raw_lists)
{
    backend *be = NULL;
    CHECK_EQ_INT(backend_cpu_create(1, &be), STATUS_OK);
    if (!be) return;
    const int32_t words = (VOCAB + 31) / 32;
    float *logits = malloc((size_t)ROWS * VOCAB * sizeof(float)), *copy = malloc((size_t)ROWS * VOCAB * sizeof(float));
    float *row = malloc(VOCAB * sizeof(float));
    uint32_t *mask = malloc((size_t)ROWS * words * sizeof(uint32_t));
    int32_t prompt[ROWS][MAX_LIST], output[ROWS][MAX_LIST], n_prompt[ROWS], n_output[ROWS];
    int32_t pen_off[ROWS + 1], ban_off[ROWS + 1], pen_ids[ROWS * 2 * MAX_LIST], pen_cnt[ROWS * 2 * MAX_LIST];
    int32_t ban_ids[ROWS * 4], banned[ROWS][4], n_banned[ROWS], table_index[ROWS], table[ROWS + 2];
    sample_params prm[ROWS];
    for (int64_t i = 0; i < (int64_t)ROWS * VOCAB; i++) logits[i] = (float)((int32_t)(next_u32() % 20001) - 10000) * 1e-3f;
    memcpy(copy, logits, (size_t)ROWS * VOCAB * sizeof(float));
    pen_off[0] = ban_off[0] = 0;
    int32_t np = 0, nb = 0;
    for (int32_t r = 0; r < ROWS; r++) {
        sample_params *p = &prm[r];
        memset(p, 0, sizeof *p);
        p->temperature = r % 4 == 0 ? 0.0f : 0.6f + 0.2f * (float)(r % 3);
        p->top_p = r % 3 == 1 ? 0.85f : 1.0f;
        p->top_k = r % 5 == 2 ? 30 : -1;
        p->min_p = r % 6 == 5 ? 0.1f : 0.0f;
        p->repetition_penalty = r % 2 ? 1.4f : (r % 4 == 2 ? 0.9f : 1.0f);
        p->frequency_penalty = r % 3 == 0 ? 0.7f : 0.0f;
        p->presence_penalty = r % 3 == 0 ? -0.4f : 0.0f;
        p->num_logprobs = (int32_t)(r % 4) * 7 - 1; /* -1, 6, 13, 20 */
        p->rng_key = 0xABCDEF12345ull + (uint64_t)r;
        p->rng_counter = (uint64_t)r * 31u;
        p->flags = r == 7 ? SAMPLE_NO_TABLE : 0u;
        /* raw lists with repeats; the prompt and output overlap */
        n_prompt[r] = (int32_t)(next_u32() % MAX_LIST);
        n_output[r] = (int32_t)(next_u32() % MAX_LIST);
        for (int32_t j = 0; j < n_prompt[r]; j++) prompt[r][j] = (int32_t)(next_u32() % 200);
        for (int32_t j = 0; j < n_output[r]; j++) output[r][j] = (int32_t)(next_u32() % (j % 2 ? 100 : VOCAB));
        int32_t all[2 * MAX_LIST], n = 0;
        for (int32_t j = 0; j < n_prompt[r]; j++) all[n++] = prompt[r][j];
        for (int32_t j = 0; j < n_output[r]; j++) all[n++] = output[r][j];
        qsort(all, (size_t)n, sizeof all[0], cmp_i32);
        for (int32_t j = 0; j < n; j++) {
            if (j > 0 && all[j] == all[j - 1]) continue;
            int32_t c = 0;
            for (int32_t k = 0; k < n_output[r]; k++) c += output[r][k] == all[j];
            pen_ids[np] = all[j];
            pen_cnt[np++] = c;
        }
        pen_off[r + 1] = np;
        n_banned[r] = 0;
        if (r % 3 == 2) {
            banned[r][n_banned[r]++] = (int32_t)(next_u32() % VOCAB);
            banned[r][n_banned[r]++] = 0;
            ban_ids[nb++] = banned[r][0];
            ban_ids[nb++] = VOCAB + 5; /* out of range: ignored */
            ban_ids[nb++] = banned[r][1];
        }
        ban_off[r + 1] = nb;
        for (int32_t w = 0; w < words; w++) mask[(size_t)r * words + w] = r % 4 == 3 ? next_u32() | 1u : 0xFFFFFFFFu;
        table_index[r] = r == 4 ? -1 : ROWS + 1 - r;
    }
    for (int32_t i = 0; i < ROWS + 2; i++) table[i] = -9;
    int32_t tokens[ROWS], ranks[ROWS], top_ids[ROWS * SAMPLE_MAX_LOGPROBS];
    float lps[ROWS], top_lps[ROWS * SAMPLE_MAX_LOGPROBS];
    for (int32_t i = 0; i < ROWS; i++) tokens[i] = ranks[i] = -5, lps[i] = NAN;
    for (int32_t i = 0; i < ROWS * SAMPLE_MAX_LOGPROBS; i++) top_ids[i] = -5, top_lps[i] = NAN;
    const sample_batch batch = {ROWS, prm, pen_off, pen_ids, pen_cnt, ban_off, ban_ids, mask, table_index};
    const sample_output out = {tokens, lps, ranks, top_ids, top_lps, table};
    be->ops->sample(be, logits, VOCAB, &batch, &out);
    CHECK(memcmp(copy, logits, (size_t)ROWS * VOCAB * sizeof(float)) == 0);

    sampling_scratch_t *scratch = sampling_scratch_create(VOCAB);
    for (int32_t r = 0; r < ROWS; r++) {
        const sample_params *p = &prm[r];
        sampling_params_t sp;
        sampling_params_default(&sp);
        sp.temperature = p->temperature;
        sp.top_p = p->top_p;
        sp.top_k = p->top_k;
        sp.min_p = p->min_p;
        sp.repetition_penalty = p->repetition_penalty;
        sp.presence_penalty = p->presence_penalty;
        sp.frequency_penalty = p->frequency_penalty;
        sp.logprobs = p->num_logprobs;
        memcpy(row, copy + (size_t)r * VOCAB, VOCAB * sizeof(float));
        sampling_result_t want;
        sampling_sample_row(&sp, row, VOCAB, prompt[r], n_prompt[r], output[r], n_output[r], banned[r], n_banned[r],
                            mask + (size_t)r * words, p->rng_key, p->rng_counter, scratch, &want);
        CHECK_EQ_INT(tokens[r], want.token);
        CHECK_EQ_INT(ranks[r], want.rank);
        CHECK(memcmp(&lps[r], &want.logprob, sizeof(float)) == 0);
        for (int32_t j = 0; j < SAMPLE_MAX_LOGPROBS; j++) {
            const int32_t k = r * SAMPLE_MAX_LOGPROBS + j;
            if (j < want.num_top) {
                CHECK_EQ_INT(top_ids[k], want.top_ids[j]);
                CHECK(top_lps[k] == want.top_logprobs[j]);
            } else {
                CHECK_EQ_INT(top_ids[k], -1);
                CHECK(isinf(top_lps[k]) && top_lps[k] < 0);
            }
        }
        if (table_index[r] >= 0) CHECK_EQ_INT(table[table_index[r]], p->flags & SAMPLE_NO_TABLE ? -9 : tokens[r]);
    }
    CHECK_EQ_INT(table[ROWS + 1 - 4], -9); /* row 4 has index -1: its would-be slot is untouched */
    sampling_scratch_free(scratch);
    be->ops->destroy(be);
    free(logits);
    free(copy);
    free(row);
    free(mask);
}
