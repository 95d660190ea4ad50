/* cpu_sample.c — backend_ops.sample on the CPU: engine/sampling.c's sampling_sample_row per
 * row, the reference the CUDA backend's kernels_sampling is tested against.
 *
 * The op's inputs are the GPU's (a CSR of distinct penalty ids with output counts, a CSR of
 * banned ids); the CPU sampler takes prompt and output lists, so each row passes its distinct
 * ids as the "prompt" and each id repeated by its count as the "output" — the same seen set
 * and output counts, hence the same penalties.  Ids outside [0, vocab) are dropped, as the
 * kernel ignores them.  The logits stay untouched (each row is copied first).  Scratch (the
 * sampler's, one row, one id list) is made at the first call and kept; the id list grows to
 * the largest row seen.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "core/log.h"
#include "engine/sampling.h"

void cpu_sample_free(cpu_backend *c)
{
    sampling_scratch_free(c->sample_scratch);
    free(c->sample_row);
    free(c->sample_ids);
    c->sample_scratch = NULL;
    c->sample_row = NULL;
    c->sample_ids = NULL;
    c->sample_vocab = 0;
    c->sample_ids_cap = 0;
}

static void cpu_sample_reserve(cpu_backend *c, int32_t vocab, int64_t num_ids)
{
    if (vocab > c->sample_vocab) {
        sampling_scratch_free(c->sample_scratch);
        free(c->sample_row);
        c->sample_scratch = sampling_scratch_create(vocab);
        LL_ASSERT(c->sample_scratch);
        c->sample_row = log_xmalloc((size_t)vocab * sizeof(float));
        c->sample_vocab = vocab;
    }
    if (num_ids > c->sample_ids_cap) {
        free(c->sample_ids);
        c->sample_ids = log_xmalloc((size_t)num_ids * sizeof(int32_t));
        c->sample_ids_cap = num_ids;
    }
}

void cpu_sample(backend *b, const float *logits, int32_t vocab, const sample_batch *batch, const sample_output *out)
{
    cpu_backend *c = cpu_backend_of(b);
    const int32_t words = (vocab + 31) / 32;
    for (int32_t i = 0; i < batch->num_rows; i++) {
        const sample_params *p = &batch->params[i];
        const int32_t pen_lo = batch->penalty_offsets ? batch->penalty_offsets[i] : 0;
        const int32_t pen_hi = batch->penalty_offsets ? batch->penalty_offsets[i + 1] : 0;
        const int32_t ban_lo = batch->banned_offsets ? batch->banned_offsets[i] : 0;
        const int32_t ban_hi = batch->banned_offsets ? batch->banned_offsets[i + 1] : 0;
        int64_t num_out = 0;
        for (int32_t j = pen_lo; j < pen_hi; j++)
            if (batch->penalty_ids[j] >= 0 && batch->penalty_ids[j] < vocab && batch->penalty_counts[j] > 0)
                num_out += batch->penalty_counts[j];
        cpu_sample_reserve(c, vocab, (int64_t)(pen_hi - pen_lo) + num_out + (ban_hi - ban_lo) + 1);

        /* id lists: [prompt (distinct ids) | output (ids × counts) | banned] */
        int32_t *prompt = c->sample_ids, n_prompt = 0;
        for (int32_t j = pen_lo; j < pen_hi; j++)
            if (batch->penalty_ids[j] >= 0 && batch->penalty_ids[j] < vocab) prompt[n_prompt++] = batch->penalty_ids[j];
        int32_t *output = prompt + n_prompt, n_output = 0;
        for (int32_t j = pen_lo; j < pen_hi; j++) {
            const int32_t t = batch->penalty_ids[j];
            if (t < 0 || t >= vocab) continue;
            for (int32_t k = 0; k < batch->penalty_counts[j]; k++) output[n_output++] = t;
        }
        int32_t *banned = output + n_output, n_banned = 0;
        for (int32_t j = ban_lo; j < ban_hi; j++)
            if (batch->banned_ids[j] >= 0 && batch->banned_ids[j] < vocab) banned[n_banned++] = batch->banned_ids[j];

        sampling_params_t sp;
        sampling_params_default(&sp);
        sp.temperature = p->temperature;
        sp.top_p = p->top_p;
        sp.top_k = p->top_k;
        sp.min_p = p->min_p;
        sp.repetition_penalty = p->repetition_penalty;
        sp.presence_penalty = p->presence_penalty;
        sp.frequency_penalty = p->frequency_penalty;
        sp.logprobs = p->num_logprobs < SAMPLE_MAX_LOGPROBS ? p->num_logprobs : SAMPLE_MAX_LOGPROBS;
        memcpy(c->sample_row, logits + (size_t)i * vocab, (size_t)vocab * sizeof(float));
        sampling_result_t r;
        sampling_sample_row(&sp, c->sample_row, vocab, prompt, n_prompt, output, n_output, banned, n_banned,
                            batch->allowed_mask ? batch->allowed_mask + (size_t)i * words : NULL, p->rng_key,
                            p->rng_counter, c->sample_scratch, &r);

        out->tokens[i] = r.token;
        out->logprobs[i] = r.logprob;
        out->ranks[i] = r.rank;
        for (int32_t j = 0; j < SAMPLE_MAX_LOGPROBS; j++) {
            const int used = j < r.num_top;
            out->top_ids[(size_t)i * SAMPLE_MAX_LOGPROBS + j] = used ? r.top_ids[j] : -1;
            out->top_logprobs[(size_t)i * SAMPLE_MAX_LOGPROBS + j] = used ? r.top_logprobs[j] : -INFINITY;
        }
        if (out->next_token_table && batch->table_index && !(p->flags & SAMPLE_NO_TABLE) && batch->table_index[i] >= 0)
            out->next_token_table[batch->table_index[i]] = r.token;
    }
}
