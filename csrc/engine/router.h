/* router.h — the Router (LightLLM v1.1): admits submitted requests to the ModelBackend.
 *
 * It runs in its own process over the shared request pool (engine/shm_req.h) and the IO buffer
 * (engine/io_buffer.h).  Every interval it:
 *   1. retires the requests it handed to the backend that have FINISHED (or whose slot was
 *      freed), and forwards abort requests of handed-over requests as ABORT commands;
 *   2. finishes SUBMITTED requests whose client already aborted, without troubling the backend;
 *   3. admits SUBMITTED requests in arrival order (submit_seq) while the estimated peak KV use
 *      of the handed-over set with the candidate stays within the backend's KV pool (LightLLM's
 *      past-future estimate, scheduler_peak_of, from each request's prompt length, tokens
 *      produced so far — its ring's write counter — and max_tokens) and fewer than max_num_seqs
 *      are in flight: it takes a pool reference on the backend's behalf and pushes ADD.
 * It never waits for the GPU: it reads the backend's published status and the slots' atomics.
 * An empty in-flight set always admits the head request (no deadlock); the backend's own
 * scheduler handles what the estimate gets wrong (pause + recompute).
 */
#ifndef LIGHTLLM_ENGINE_ROUTER_H
#define LIGHTLLM_ENGINE_ROUTER_H

#include <stdint.h>

#include "core/status.h"
#include "engine/io_buffer.h"
#include "engine/shm_req.h"

typedef struct router_args {
    double interval_ms;              /* --router-interval-ms */
    int32_t max_num_seqs;            /* requests in flight at most */
    int32_t max_model_len;           /* caps max_tokens in the estimate */
    int32_t estimate_max_new_tokens; /* --router-max-new-token-len (0 = each request's max_tokens) */
} router_args;

typedef struct router_entry {
    int32_t slot;
    uint64_t generation;
    int32_t num_prompt;
    int32_t max_tokens;
    int32_t abort_sent;
} router_entry;

typedef struct router {
    shm_req_pool *pool;              /* not owned */
    io_buffer *io;                   /* not owned */
    router_args args;
    router_entry *inflight;          /* [max_num_seqs] handed to the backend, not yet retired */
    int32_t num_inflight;
    int32_t *candidates;             /* [num_slots] SUBMITTED slots of this round */
    int64_t *pairs;                  /* [2 * (max_num_seqs + 1)] estimate scratch */
    int64_t num_admitted, num_aborted_early;
} router;

status_t router_init(router *r, shm_req_pool *pool, io_buffer *io, const router_args *args);
void router_free(router *r);
/* One round (steps 1-3 above); *num_admitted receives how many were admitted. */
void router_step(router *r, int32_t *num_admitted);
/* Rounds every interval_ms until *stop is set (by a signal handler of the caller). */
status_t router_run(router *r, volatile const int *stop);

#endif
