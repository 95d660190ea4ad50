/* engine.h — the inference engine: requests in, one scheduled forward + sampling per step,
 * sequences' tokens, text and finish states out.
 *
 * engine_step(): schedule (scheduler.c) → gather the batch → model_forward → commit →
 * sample each sequence whose logits were computed (sampling.c) → append token, detokenize
 * (detokenizer.c), check eos / stop ids / stop strings / max_tokens / context limit → release
 * finished sequences' KV.  After a step, e->updates lists every sequence that produced a token
 * or finished; finished ones are freed at the start of the next step (the caller reads them
 * first).  Greedy output does not depend on batch composition, chunking, or the prefix cache:
 * every op computes a row independently of the others, and the RNG is keyed per sequence and
 * output index.
 */
#ifndef LIGHTLLM_ENGINE_ENGINE_H
#define LIGHTLLM_ENGINE_ENGINE_H

#include <stdint.h>

#include "engine/detokenizer.h"
#include "engine/sampling.h"
#include "engine/scheduler.h"
#include "engine/seq.h"
#include "model/model.h"

typedef struct engine_args {
    int32_t max_num_seqs;           /* --running-max-req-size */
    int32_t max_batch_tokens;       /* --batch-max-tokens: tokens per forward */
    int32_t chunked_prefill_size;   /* prompt tokens per sequence per step (0 = max_batch_tokens) */
    int32_t max_model_len;          /* context limit (0 = max_position_embeddings) */
    int32_t num_kv_slots;           /* --max-total-token-num (0 = from memory budget) */
    int64_t kv_memory_bytes;        /* budget when num_kv_slots == 0 (0 = from mem_fraction) */
    double mem_fraction;            /* --mem-fraction: share of the backend's memory the engine may
                                     * fill (weights + activations + KV) when sizing by memory */
    int32_t enable_prefix_caching;
    int32_t estimate_max_new_tokens; /* admission estimate cap (0 = each request's max_tokens) */
    uint64_t seed;                  /* for requests without a seed */
} engine_args;

typedef struct engine_stop_strings {
    int32_t num;
    char **strs;
    size_t *lens;
} engine_stop_strings;

struct engine_request {
    int64_t req_id;
    sampling_params_t sp;
    engine_stop_strings stops;
    int32_t *stop_token_ids;
    int32_t num_stop_token_ids;
    int32_t include_stop_str_in_output;
    int32_t skip_special_tokens;
    int32_t num_live;               /* sequences not yet freed */
    int32_t group_prefilled;        /* seq.group_prefilled points here */
};

/* What a request asks for besides its prompt (copied by engine_add_request). */
typedef struct engine_request_params {
    sampling_params_t sp;
    int32_t num_stops;
    const char *const *stops;
    const int32_t *stop_token_ids;
    int32_t num_stop_token_ids;
    int32_t include_stop_str_in_output;
    int32_t skip_special_tokens;
} engine_request_params;

typedef struct engine {
    model *m;                       /* owned */
    const detok_vocab *vocab;       /* not owned (may be NULL: no text) */
    engine_args args;
    int32_t *eos_ids;
    int32_t num_eos;
    scheduler sched;
    sampling_scratch_t *scratch;
    int64_t next_arrival;
    uint64_t num_requests;
    char *text_tmp;                 /* [detok_max_token_bytes + 8] */

    /* step buffers, sized at create */
    int32_t *b_tokens, *b_positions, *b_slots, *b_token_seq, *b_logit_tokens;   /* [max_batch_tokens] */
    int32_t *b_q_start, *b_kv_start;                                            /* [max_num_seqs + 1] */
    int32_t *b_kv_slots;                                                        /* [cap_kv_slots] */
    int64_t cap_kv_slots;
    seq **b_logit_seqs;
    float *logits;                  /* [max_num_seqs, vocab] */
    seq **updates;
    int32_t num_updates, cap_updates;
    seq **to_free;                  /* reported by this step, freed by the next */
    int32_t num_to_free, cap_to_free;
    seq **aborted;                  /* aborted between steps, reported by the next */
    int32_t num_aborted, cap_aborted;

    /* counters */
    int64_t num_steps, num_generated_tokens;
    double forward_seconds;
} engine;

/* Takes ownership of m.  eos_ids: the model's end-of-sequence ids. */
status_t engine_create(model *m, const engine_args *args, const detok_vocab *vocab, const int32_t *eos_ids,
                       int32_t num_eos, engine **out);
void engine_free(engine *e);
/* STATUS_INVALID_ARG naming the problem for bad parameters, empty or over-long prompts, token
 * ids outside the vocabulary, or a duplicate req_id. */
status_t engine_add_request(engine *e, int64_t req_id, const int32_t *prompt, int32_t num_prompt,
                            const engine_request_params *p);
/* Finishes every sequence of req_id with reason "abort" (reported by the next step).
 * STATUS_NOT_FOUND if no live sequence has that id. */
status_t engine_abort(engine *e, int64_t req_id);
status_t engine_step(engine *e);
int engine_has_unfinished(const engine *e);
/* Full-prompt logits of ids (fp32 [n, vocab]) using free KV slots, no caching; for tests and
 * scoring. */
status_t engine_score(engine *e, const int32_t *ids, int32_t n, float *logits);
const char *engine_finish_name(seq_finish f);
/* Bytes of the sequence's text that no stop string can cut any more: all of it once finished;
 * while running, all but the longest tail that is a proper prefix of one of its stop strings
 * (never splitting a character).  Never decreases.  Streams send text up to here. */
size_t engine_seq_stable_len(const seq *q);

#endif
