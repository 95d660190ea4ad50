/* scheduler.h — continuous batching with chunked prefill, admission by estimated peak KV use,
 * the prefix cache, and preemption (pause + recompute) when KV runs out.
 *
 * Each step scheduler_schedule() builds the batch:
 *   1. running sequences in arrival order: a decoding sequence takes 1 token, a prefilling one
 *      a chunk (<= chunked_prefill_size) of what is left, within max_batch_tokens.  When KV
 *      slots run out, unreferenced prefix-cache leaves are evicted (LRU) and then the
 *      latest-arriving running sequence not yet in the batch is paused: its KV goes into the
 *      prefix tree, it returns to the waiting queue keeping its output, and recomputes when
 *      re-admitted.  A sequence alone in the pool that still cannot grow finishes "length".
 *   2. waiting sequences in arrival order, while rows, tokens and KV allow: the longest cached
 *      prefix is reused (all but the last token), and a sequence is admitted only if the
 *      estimated peak KV use of the running set with it stays within the pool (LightLLM's
 *      estimate: sort by remaining output tokens descending; peak = max over i of the
 *      cumulative tokens held by the first i + i × remaining_i; remaining is capped by
 *      estimate_max_new_tokens when set — LightLLM's router_max_new_token_len — which admits
 *      more and relies on preemption when the guess is short).  An empty running set always
 *      admits the first waiting sequence, so nothing deadlocks.  The n samples of a request
 *      wait for sample 0's prefill, then share its prompt KV through the prefix cache.
 * scheduler_commit() advances each scheduled sequence by its q_len after the forward; when a
 * prompt completes, its KV is inserted into the prefix tree at once (so siblings and other
 * requests reuse it while it runs).  scheduler_release() returns a finished sequence's KV (to
 * the tree when caching is on).
 * Overlapped steps: a sequence is planned at seq_len() (its tokens + those launched steps will
 * sample).  One whose pending token is its last (max_tokens or the context limit) is not
 * scheduled again; a paused one with a pending token is re-admitted only after it is appended;
 * the tree only receives KV of tokens the host has.  Releasing KV while a launched step still
 * writes it is safe: steps run on the device in order, so a slot handed out again is written by
 * a later step only.
 */
#ifndef LIGHTLLM_ENGINE_SCHEDULER_H
#define LIGHTLLM_ENGINE_SCHEDULER_H

#include <stdint.h>

#include "engine/kv_cache.h"
#include "engine/radix_cache.h"
#include "engine/seq.h"

typedef struct scheduler {
    kv_cache kv;
    radix_cache *rc;            /* NULL when prefix caching is off */
    int32_t max_num_seqs;
    int32_t max_batch_tokens;
    int32_t chunk_size;
    int32_t max_seq_len;
    int32_t estimate_max_new_tokens; /* cap on remaining tokens in the estimate (0 = none) */

    seq **waiting;              /* [cap] sorted by arrival */
    int32_t num_waiting;
    seq **running;              /* [max_num_seqs] sorted by arrival */
    int32_t num_running;
    int32_t cap_waiting;

    seq **batch;                /* [max_num_seqs] this step's scheduled sequences */
    int32_t num_batch;
    int32_t num_batch_tokens;

    int32_t *scratch_slots;     /* [max(num_slots, max_seq_len)] */
    int64_t *scratch_peak;      /* [2 * max_num_seqs] */
    seq **finished_by_capacity; /* [max_num_seqs] finished "length" inside schedule */
    int32_t num_finished_by_capacity;

    /* counters */
    int64_t num_preemptions;
    int64_t num_prompt_tokens;
    int64_t num_cached_prompt_tokens;
} scheduler;

status_t scheduler_init(scheduler *s, int32_t num_slots, int32_t max_num_seqs, int32_t max_batch_tokens,
                        int32_t chunk_size, int32_t max_seq_len, int enable_prefix_cache);
void scheduler_free(scheduler *s);
void scheduler_add(scheduler *s, seq *q);
/* Plans this step into s->batch (possibly empty); sequences that had to finish for capacity
 * are listed in s->finished_by_capacity (already released). */
void scheduler_schedule(scheduler *s);
void scheduler_commit(scheduler *s);
/* Removes a sequence (finished or aborted) from the queues and frees its KV. */
void scheduler_release(scheduler *s, seq *q);
int32_t scheduler_num_free_slots(const scheduler *s);   /* free + evictable */
/* Evicts unreferenced prefix-cache leaves until n slots are free; returns whether they are. */
int scheduler_make_room(scheduler *s, int32_t n);
/* LightLLM's estimate over n (remaining, held) pairs [n, 2] (sorted in place): the peak of
 * cumulative held + i x remaining_i, remaining descending.  Shared with the router. */
int64_t scheduler_peak_of(int64_t *pairs, int32_t n);
/* Estimated peak KV use of the running set if `extra` joined it (extra may be NULL). */
int64_t scheduler_peak_tokens(scheduler *s, const seq *extra);

#endif
