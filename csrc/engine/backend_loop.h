/* backend_loop.h — the ModelBackend's main loop: IO-buffer commands in, engine steps, tokens and
 * text out through each request's shared-memory ring.
 *
 * Each iteration: (1) pops the router's commands — ADD copies the slot's request (params, stop
 * strings/ids, prompt) into engine_add_request and marks the slot RUNNING; ABORT aborts it;
 * (2) runs one engine_step when the engine has work; (3) for each sequence that produced a token
 * or finished, queues a token record and the new text up to engine_seq_stable_len (a tail that
 * could still begin a stop string waits), so text that a stop string later cuts is never sent;
 * (4) flushes the queues into the rings as far as they have
 * room (back-pressure: what does not fit waits for the next iteration; other requests are not
 * held up), and once a finished request's queue is empty, writes its finish fields, sets
 * FINISHED and releases the reference the router took for the backend; (5) publishes its status
 * (KV slots, running, waiting, step) for the router and /metrics.  An engine error finishes every
 * request with an error message, publishes healthy = 0 and returns the error (the process exits
 * and the launcher reports the server unhealthy).  Requests are engine request id = slot number.
 * Overlap of CPU post-processing with the next forward (two folding threads) is not here yet:
 * steps run one after another on this thread.
 */
#ifndef LIGHTLLM_ENGINE_BACKEND_LOOP_H
#define LIGHTLLM_ENGINE_BACKEND_LOOP_H

#include <stdint.h>

#include "core/status.h"
#include "engine/engine.h"
#include "engine/io_buffer.h"
#include "engine/shm_req.h"

typedef struct backend_slot backend_slot;

typedef struct backend_loop {
    engine *e;                      /* not owned */
    shm_req_pool *pool;             /* not owned */
    io_buffer *io;                  /* not owned */
    backend_slot *slots;            /* [pool->num_slots] */
    int32_t num_active;
    uint64_t num_steps;
    int64_t active_us;              /* time of iterations that had work (for the GPU idle fraction) */
} backend_loop;

status_t backend_loop_init(backend_loop *bl, engine *e, shm_req_pool *pool, io_buffer *io);
void backend_loop_free(backend_loop *bl);
/* One iteration; *did_work says whether anything happened (the caller may idle otherwise). */
status_t backend_loop_step(backend_loop *bl, int *did_work);
/* Iterates until *stop is set or an error; idles briefly when there is nothing to do. */
status_t backend_loop_run(backend_loop *bl, volatile const int *stop);

#endif
