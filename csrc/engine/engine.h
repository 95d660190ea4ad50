/* engine.h — the inference engine: requests in, one scheduled forward + sampling per step,
 * sequences' tokens, text and finish states out.
 *
 * A step has three phases, so that two threads can fold one step's CPU work under the next
 * step's forward (LightLLM's overlap; engine/backend_loop.c drives it):
 *   engine_prepare  (host, under the caller's lock): schedule (scheduler.c), commit, gather the
 *                   batch into one of ENGINE_MAX_INFLIGHT step contexts.  A decode input that a
 *                   launched step samples is -1 - row: the device reads it from the backend's
 *                   next-token table, where that step's sampling wrote it.
 *   engine_launch   (the device side, in prepare order, no lock needed): model_forward_logits
 *                   and backend_ops.sample for each sequence whose logits are computed
 *                   (sampling.c semantics), asynchronously.  When a step's rows need the previous
 *                   tokens' values on the host (penalties: needs_history), launch enqueues the
 *                   forward only and engine_launch_sample, called after the previous step is
 *                   collected, the sampling: the host prepares it while the forward runs.
 *   engine_collect  (the device side, in prepare order): waits for the step; writes each
 *                   sampled token at tokens[dev_len++].
 *   engine_complete (host, in prepare order, under the lock): append each sampled token,
 *                   detokenize (detokenizer.c), check eos / stop ids / stop strings / max_tokens /
 *                   context limit, release finished sequences' KV.  A sequence that finished
 *                   while a later step was already prepared for it ignores that step's token.
 * Order: each phase in step order; launch(k) < launch_sample(k) < launch(k+1); launch(k) <
 * collect(k) < complete(k); complete(k-1) < prepare(k+1); collect(k-1) < launch_sample(k).
 * launch(k+1) may come before collect(k) (the device runs it after step k) and prepare(k+1)
 * before complete(k).  engine_step() runs them back to back.  After a complete, e->updates lists every sequence
 * that produced a token or finished (finishes from engine_abort and from scheduling for
 * capacity are reported by the next complete); finished ones are freed by a later complete once
 * no launched step holds them (the caller reads them first).  Greedy output does not depend on
 * batch composition, chunking, the prefix cache or overlap: every op computes a row
 * independently of the others, and the RNG is keyed per sequence and output index.
 */
#ifndef LIGHTLLM_ENGINE_ENGINE_H
#define LIGHTLLM_ENGINE_ENGINE_H

#include <stdint.h>

#include "engine/detokenizer.h"
#include "engine/sampling.h"
#include "engine/scheduler.h"
#include "engine/seq.h"
#include "grammar/grammar_cache.h"
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
    grammar_compiled *grammar;      /* structured output (held from the engine's cache), or NULL */
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
    /* structured output (grammar/grammar_cache.h): kind "json_schema", "regex", "choice" (a JSON
     * list of strings) or "ebnf"; NULL = none.  whitespace: bounded whitespace allowed in JSON */
    const char *grammar_kind;
    const char *grammar;
    size_t grammar_len;
    int32_t grammar_whitespace;
} engine_request_params;

#define ENGINE_MAX_INFLIGHT 2
#define ENGINE_MAX_BANNED 64        /* eos + stop ids banned before min_tokens */
#define ENGINE_GRAMMAR_ROLLBACK_BYTES 1024   /* a constrained sequence's matcher keeps this much rollback (compacted beyond) */

/* One prepared step: the batch (read by launch) and what collect received (read by complete). */
typedef struct engine_step_ctx {
    int32_t *tokens, *positions, *slots, *token_seq, *logit_tokens; /* [max_batch_tokens]; tokens[t] = -1 - r:
                                                                     * the next-token table's entry r */
    int32_t *q_start, *kv_start;    /* [max_num_seqs + 1] */
    int32_t *kv_slots;              /* [cap_kv_slots] */
    int64_t cap_kv_slots;
    seq **seqs;                     /* [max_num_seqs] the batch's sequences */
    seq **logit_seqs;               /* [max_num_seqs] those sampled, in logits order */
    int32_t *logit_rows;            /* [max_num_seqs] their rows at prepare: next-token table entries */
    sampling_result_t *results;     /* [max_num_seqs] what was sampled for logit_seqs */
    forward_batch batch;
    int32_t slot;                   /* its index in engine.steps: the backend's step slot */
    int32_t needs_history;          /* a row's sampling reads the previous tokens' values */
    int32_t sampled;                /* its sampling is launched */
    float *logits;                  /* the forward's logits (device) until sampled */
    status_t status;                /* launch's and collect's result, and its message (per thread) */
    char error[256];
    double forward_seconds;         /* device time of the step */
} engine_step_ctx;

typedef struct engine {
    model *m;                       /* owned */
    const detok_vocab *vocab;       /* not owned (may be NULL: no text) */
    engine_args args;
    int32_t *eos_ids;
    int32_t num_eos;
    scheduler sched;
    int64_t next_arrival;
    uint64_t num_requests;
    char *text_tmp;                 /* [detok_max_token_bytes + 8] */

    engine_step_ctx steps[ENGINE_MAX_INFLIGHT];   /* step k uses steps[k % ENGINE_MAX_INFLIGHT] */
    int64_t num_prepared, num_completed;
    engine_step_ctx *ahead;         /* engine_step_ahead: launched, completed by the next call */
    backend_sample_row *sample_rows; /* [max_num_seqs] (launch side) */
    int32_t *banned;                /* [max_num_seqs, ENGINE_MAX_BANNED] (launch side) */
    /* structured output, made at the first constrained request (needs a vocabulary) */
    token_vocab *grammar_vocab;
    grammar_cache *grammars;
    uint32_t *masks;                /* [max_num_seqs, mask_words] allowed tokens (launch side) */
    int32_t mask_words;
    int64_t num_grammar_rejects;    /* sampled tokens the grammar refused (a bug if ever > 0) */
    seq **updates;
    int32_t num_updates, cap_updates;
    seq **to_free;                  /* finished and reported: freed by a later complete */
    int32_t num_to_free, cap_to_free;
    seq **deferred;                 /* finished outside a complete (abort, capacity): reported by the next */
    int32_t num_deferred, cap_deferred;

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
/* Compiles p's grammar into the engine's cache without adding a request, so that a later
 * engine_add_request with it finds it compiled; may run on another thread than the engine's
 * (the cache is locked), but the first call must not race with an engine_add_request that
 * carries a grammar.  STATUS_INVALID_ARG with the front end's message when it does not compile. */
status_t engine_compile_grammar(engine *e, const engine_request_params *p);
/* Finishes every sequence of req_id with reason "abort" (reported by the next step).
 * STATUS_NOT_FOUND if no live sequence has that id. */
status_t engine_abort(engine *e, int64_t req_id);
/* *out = the prepared step, or NULL when nothing is scheduled (complete(NULL) still reports
 * aborts and capacity finishes).  At most ENGINE_MAX_INFLIGHT steps are prepared and not
 * completed. */
status_t engine_prepare(engine *e, engine_step_ctx **out);
void engine_launch(engine *e, engine_step_ctx *c);
/* The sampling of a needs_history step (a no-op when launch did it). */
void engine_launch_sample(engine *e, engine_step_ctx *c);
void engine_collect(engine *e, engine_step_ctx *c);
/* The device error of launch or collect, if any (the engine then refuses further work). */
status_t engine_complete(engine *e, engine_step_ctx *c);
status_t engine_step(engine *e);
/* One step in the device-ahead order on one thread: prepares and launches the next step before
 * waiting for the one the previous call launched, then completes that one (the updates are
 * its), so the host's complete and prepare run while the device works.  Loop while
 * engine_has_work.  Do not mix with engine_step while a step is ahead. */
status_t engine_step_ahead(engine *e);
int engine_has_unfinished(const engine *e);
/* Requests waiting or running, or a step launched and not completed. */
static inline int engine_has_work(const engine *e)
{
    return engine_has_unfinished(e) || e->num_prepared > e->num_completed;
}
/* Prepared steps not yet completed. */
static inline int32_t engine_num_inflight(const engine *e) { return (int32_t)(e->num_prepared - e->num_completed); }
/* Full-prompt logits of ids (fp32 [n, vocab]) using free KV slots, no caching; for tests and
 * scoring. */
status_t engine_score(engine *e, const int32_t *ids, int32_t n, float *logits);
const char *engine_finish_name(seq_finish f);
/* Bytes of the sequence's text that no stop string can cut any more: all of it once finished;
 * while running, all but the longest tail that is a proper prefix of one of its stop strings
 * (never splitting a character).  Never decreases.  Streams send text up to here. */
size_t engine_seq_stable_len(const seq *q);

#endif
