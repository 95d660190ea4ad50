/* seq.h — one sequence (one of the n samples of a request) as the scheduler and engine see it.
 *
 * tokens = prompt + output so far.  KV exists for tokens[0, num_computed) in req_to_token row
 * `row`; of those, [0, num_in_tree) are slots owned by the radix tree (locked through `node`),
 * the rest are owned by the sequence.  The last token of a decoding sequence has no KV yet: it
 * is the input of the next step.  A paused (preempted) sequence is WAITING again with no row,
 * num_computed 0 and its output kept; it recomputes, reusing what the prefix cache still has.
 *
 * Steps overlap (engine.h): a step is prepared before the previous one's results are read, so a
 * sequence can have tokens that a launched step samples but the host has not appended yet
 * (num_pending); their values reach the next step through the backend's next-token table.
 * Launching a step counts its samples (num_launched); collecting it writes the sampled values
 * at tokens[dev_len++]; completing it appends them (num_tokens++).  seq_len() is the length the
 * scheduler plans with.
 */
#ifndef LIGHTLLM_ENGINE_SEQ_H
#define LIGHTLLM_ENGINE_SEQ_H

#include <stddef.h>
#include <stdint.h>

#include "engine/detokenizer.h"
#include "engine/radix_cache.h"
#include "engine/sampling.h"

typedef enum seq_status { SEQ_WAITING = 0, SEQ_RUNNING, SEQ_FINISHED } seq_status;
typedef enum seq_finish {
    SEQ_FINISH_NONE = 0, SEQ_FINISH_STOP, SEQ_FINISH_LENGTH, SEQ_FINISH_ABORT,
} seq_finish;

typedef struct engine_request engine_request;
typedef struct dpda_matcher dpda_matcher;

typedef struct seq {
    int64_t req_id;
    int32_t sample_index;
    int64_t arrival;            /* admission priority: lower first, kept across pauses */
    engine_request *req;        /* shared parameters of the request (not owned) */
    int32_t *group_prefilled;   /* shared by the n samples of a request (owned by the request, which
                                 * outlives them): set once sample 0's prompt is in KV or sample 0 is
                                 * gone; samples 1..n-1 wait for it to reuse that KV. NULL = no wait */
    seq_status status;
    seq_finish finish;

    int32_t *tokens;            /* [cap_tokens] prompt + output */
    int32_t num_tokens, cap_tokens, num_prompt;
    int32_t num_launched;       /* num_tokens + samples launched (their index keys the RNG) */
    dpda_matcher *matcher;      /* structured output: the grammar's state after tokens[num_prompt,
                                 * num_prompt + num_matched) (launch side); NULL = unconstrained */
    int32_t num_matched;
    int32_t dev_len;            /* tokens[0, dev_len) written: num_tokens + collected, not yet appended
                                 * (num_launched and dev_len: written only by the execute side) */
    int32_t num_pending;        /* tokens that prepared steps will sample and the host has not appended */
    int32_t num_inflight;       /* prepared steps not yet completed that include this sequence: it is
                                 * freed only at 0 */
    int32_t max_tokens;         /* output tokens allowed */

    int32_t row;                /* req_to_token row, -1 when none */
    int32_t num_computed;
    int32_t num_in_tree;
    radix_node *node;
    int32_t q_len;              /* tokens scheduled this step */
    int32_t prefill_done;       /* the whole prompt has KV (once true, stays true) */
    int32_t recomputing;        /* paused and re-admitted: its KV is being rebuilt */
    int32_t num_cached_tokens;  /* prompt tokens served by the prefix cache at first admission (-1 before) */

    /* output side (engine.c) */
    int32_t num_output;
    uint64_t rng_key;
    detok_state detok;
    char *text;
    size_t text_len, text_cap, text_reported;
    int32_t stop_string;        /* index of the stop string matched, -1 none */
    int32_t stop_token;         /* stop token id matched, -1 none */
    int32_t has_new_token;      /* a token was appended this step */
    sampling_result_t last;     /* the token sampled this step, with logprobs */
    double arrival_time, first_token_time, finish_time;
} seq;

/* Length the scheduler plans with: host tokens + those launched steps will add. */
static inline int32_t seq_len(const seq *q) { return q->num_tokens + q->num_pending; }

#endif
