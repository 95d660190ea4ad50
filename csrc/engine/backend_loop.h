/* backend_loop.h — the ModelBackend's main loop: IO-buffer commands in, engine steps, tokens and
 * text out through each request's shared-memory ring.
 *
 * Each step: (1) pops the router's commands — ADD copies the slot's request (params, stop
 * strings/ids, prompt) into engine_add_request and marks the slot RUNNING; ABORT aborts it;
 * (2) runs one engine step (engine.h: prepare, execute, complete) when the engine has work; (3) for each sequence that produced a token
 * or finished, queues a token record and the new text up to engine_seq_stable_len (a tail that
 * could still begin a stop string waits), so text that a stop string later cuts is never sent;
 * (4) flushes the queues into the rings as far as they have
 * room (back-pressure: what does not fit waits for the next iteration; other requests are not
 * held up), and once a finished request's queue is empty, writes its finish fields, sets
 * FINISHED and releases the reference the router took for the backend; (5) publishes its status
 * (KV slots, running, waiting, step) for the router and /metrics.  An engine error finishes every
 * request with an error message, publishes healthy = 0 and returns the error (the process exits
 * and the launcher reports the server unhealthy).  Requests are engine request id = slot number.
 *
 * Overlap (LightLLM v1.1's CPU-GPU folding; on unless turned off): two inference threads take
 * steps alternately.  Step k's thread prepares k (1-2) under the lock, launches it (forward and
 * sampling, asynchronous on the device) and collects it (waits for its tokens) without the lock,
 * then completes it (3-5) under the lock.  Each phase runs in step order, so while the device
 * runs step k the other thread has already launched k+1 behind it, and then completes k and
 * prepares k+2 while k+1 runs: the host's scheduling, bookkeeping, detokenization and ring
 * writes hide under the device's work.  Decode inputs of k+1 come from the next-token table
 * (engine.h); a step whose sampling needs the previous tokens on the host (penalties) is
 * launched after the previous collect.  With overlap off one thread runs the four phases back
 * to back.  Greedy output is the same either way.  With overlap on, a third thread compiles the
 * grammars of structured-output requests before they are added (a new schema takes
 * milliseconds: the inference threads do not wait for it); with it off, add_request compiles.
 */
#ifndef LIGHTLLM_ENGINE_BACKEND_LOOP_H
#define LIGHTLLM_ENGINE_BACKEND_LOOP_H

#include <pthread.h>
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
    int64_t active_us;              /* wall time the engine had work (for the GPU idle fraction) */
    int64_t busy_since;             /* start of the current busy stretch, -1 when idle */
    int overlap;                    /* two folding threads (1) or one (0) */
    pthread_mutex_t mu;             /* everything above and the engine's host side */
    pthread_cond_t cv;
    int64_t turn_prepare, turn_launch, turn_collect, turn_complete; /* the step whose phase may run next */
    int quit;                       /* stop requested or an error: every thread leaves */
    int32_t *compile_queue;         /* [pool->num_slots] slots whose ADD waits for its grammar */
    int32_t num_compile_queued;     /* in compile_queue, not yet taken by the compiler */
    int32_t num_compiling;          /* ADDs deferred for their grammar, not yet added */
    pthread_cond_t compile_cv;
    int compiler_stop;
    char error[256];                /* the error's message (messages are per thread) */
} backend_loop;

/* overlap: run two folding inference threads (see above). */
status_t backend_loop_init(backend_loop *bl, engine *e, shm_req_pool *pool, io_buffer *io, int overlap);
void backend_loop_free(backend_loop *bl);
/* Runs steps until *stop is set or an error; idles briefly when there is nothing to do. */
status_t backend_loop_run(backend_loop *bl, volatile const int *stop);

#endif
