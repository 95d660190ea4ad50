/* sampling.h — per-request sampling parameters, their validation, and the CPU sampler.
 *
 * CONTRACT (implementation: engine/sampling.c)
 * sampling_params_t is the one place sampling options live; the grammar work later adds a
 * token mask through the `allowed_mask` argument of sampling_sample_row, nothing else.
 *
 * sampling_params_validate(): returns STATUS_INVALID_ARG with a message that names the
 * parameter, the allowed range and the value given, e.g.
 *   "temperature must be >= 0, got -1"          "top_p must be in (0, 1], got 0"
 *   "top_k must be -1 (disabled) or >= 1, got 0" ... (0 is accepted as "disabled" too)
 * Ranges (vLLM's): temperature >= 0; top_p in (0, 1]; top_k == -1, 0 or >= 1; min_p in [0, 1];
 * repetition_penalty > 0; presence_penalty and frequency_penalty in [-2, 2]; max_tokens >= 1;
 * min_tokens >= 0 and <= max_tokens; n >= 1 (and <= 128); logprobs -1 (off) or 0..20;
 * seed any 64-bit value.  vocab_size bounds nothing here (token ids are checked by the engine).
 *
 * sampling_sample_row(): picks the next token for one sequence from its raw logits.
 * Order of processing (vLLM's):
 *   1. logprobs (if p->logprobs >= 0) are taken from log_softmax of the RAW logits: the sampled
 *      token's logprob and the top-p->logprobs (id, logprob) pairs, highest first (ties: lower id
 *      first), and the sampled token's rank (1 + the number of tokens with a larger raw logit).
 *   2. banned_ids get -inf (min_tokens not reached yet: EOS + stop ids);
 *      allowed_mask (bit i of word i/32 set = token i allowed; NULL = all) masks the rest.
 *   3. repetition_penalty over tokens seen in prompt or output (logit > 0 ? /= : *=);
 *      frequency_penalty * count and presence_penalty * (count > 0) over OUTPUT tokens.
 *   4. temperature == 0 (or top_k == 1): greedy argmax (ties: lowest id) — steps 5-6 skipped.
 *   5. logits /= temperature; top_k; top_p (smallest set whose probability >= top_p, always
 *      keeps the top token); min_p (drop tokens with prob < min_p * max prob).  These must not
 *      sort the whole vocabulary on the common path (select candidates first).
 *   6. draw u in [0,1) from a counter-based generator keyed by (rng_key, rng_counter): the
 *      same key + counter give the same u whatever else is in the batch; sample by inverse CDF
 *      over the kept tokens in a deterministic order.
 * Scratch: the caller passes a sampling_scratch_t sized for the vocabulary (one per thread).
 * logits is modified in place.
 */
#ifndef LIGHTLLM_ENGINE_SAMPLING_H
#define LIGHTLLM_ENGINE_SAMPLING_H

#include <stdint.h>

#include "core/status.h"

#define SAMPLING_MAX_LOGPROBS 20

typedef struct sampling_params_t {
    float temperature;          /* 0 = greedy */
    float top_p;                /* 1 = off */
    int32_t top_k;              /* -1 or 0 = off */
    float min_p;                /* 0 = off */
    float repetition_penalty;   /* 1 = off */
    float presence_penalty;     /* 0 = off */
    float frequency_penalty;    /* 0 = off */
    int32_t max_tokens;
    int32_t min_tokens;
    int32_t n;
    int32_t logprobs;           /* -1 = off; 0 = sampled token only; N = sampled + top N */
    int32_t ignore_eos;
    int32_t has_seed;
    uint64_t seed;
} sampling_params_t;

/* vLLM defaults: temperature 1, top_p 1, top_k -1, min_p 0, penalties off, max_tokens 16,
 * min_tokens 0, n 1, logprobs -1, no seed. */
void sampling_params_default(sampling_params_t *p);
status_t sampling_params_validate(const sampling_params_t *p);
/* Any of the repetition / presence / frequency penalties is on (sampling reads the history). */
static inline int sampling_params_has_penalty(const sampling_params_t *p)
{
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

typedef struct sampling_result_t {
    int32_t token;
    float logprob;                                   /* of `token`, raw log_softmax; 0 if off */
    int32_t rank;                                    /* of `token` in the raw logits, 1 = best; 0 if off */
    int32_t num_top;                                 /* = max(p->logprobs, 0) */
    int32_t top_ids[SAMPLING_MAX_LOGPROBS];
    float top_logprobs[SAMPLING_MAX_LOGPROBS];
} sampling_result_t;

typedef struct sampling_scratch_t sampling_scratch_t;
sampling_scratch_t *sampling_scratch_create(int32_t vocab_size);
void sampling_scratch_free(sampling_scratch_t *s);

/* Counter-based uniform in [0, 1): same (key, counter) -> same value. */
double sampling_uniform(uint64_t key, uint64_t counter);

void sampling_sample_row(const sampling_params_t *p,
                         float *logits,                 /* [vocab_size] raw, modified */
                         int32_t vocab_size,
                         const int32_t *prompt_ids, int32_t num_prompt,
                         const int32_t *output_ids, int32_t num_output,
                         const int32_t *banned_ids, int32_t num_banned,
                         const uint32_t *allowed_mask,  /* [ceil(vocab/32)] or NULL */
                         uint64_t rng_key, uint64_t rng_counter,
                         sampling_scratch_t *scratch,
                         sampling_result_t *out);

#endif
