/* router.c — admission of submitted requests to the backend; see router.h. */
#include "engine/router.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "engine/scheduler.h"

status_t router_init(router *r, shm_req_pool *pool, io_buffer *io, const router_args *args)
{
    memset(r, 0, sizeof *r);
    if (args->max_num_seqs <= 0) return status_set(STATUS_INVALID_ARG, "router: max_num_seqs must be >= 1, got %d", args->max_num_seqs);
    if (!(args->interval_ms >= 0.0)) return status_set(STATUS_INVALID_ARG, "router_interval_ms must be >= 0, got %g", args->interval_ms);
    r->pool = pool;
    r->io = io;
    r->args = *args;
    r->inflight = log_xcalloc((size_t)args->max_num_seqs, sizeof *r->inflight);
    r->candidates = log_xmalloc((size_t)pool->num_slots * sizeof *r->candidates);
    r->pairs = log_xmalloc((size_t)(2 * args->max_num_seqs + 2) * sizeof *r->pairs);
    return STATUS_OK;
}

void router_free(router *r)
{
    free(r->inflight);
    free(r->candidates);
    free(r->pairs);
    memset(r, 0, sizeof *r);
}

static int router_is_inflight(const router *r, int32_t slot, uint64_t generation)
{
    for (int32_t i = 0; i < r->num_inflight; i++)
        if (r->inflight[i].slot == slot && r->inflight[i].generation == generation) return 1;
    return 0;
}

/* Step 1: retire finished requests, forward aborts. */
static void router_retire(router *r)
{
    int32_t kept = 0;
    for (int32_t i = 0; i < r->num_inflight; i++) {
        router_entry *e = &r->inflight[i];
        const uint32_t state = shm_req_get_state(r->pool, e->slot);
        if (shm_req_get_generation(r->pool, e->slot) != e->generation || state == SHM_REQ_STATE_FINISHED ||
            state == SHM_REQ_STATE_FREE)
            continue;
        if (!e->abort_sent && shm_req_is_abort_requested(r->pool, e->slot))
            e->abort_sent = io_buffer_push_cmd(r->io, IO_BUFFER_CMD_ABORT, &e->slot, 1) != 0;
        r->inflight[kept++] = *e;
    }
    r->num_inflight = kept;
}

static int router_cmp_submit(const void *a, const void *b, void *pool)
{
    const uint64_t x = shm_req_get(pool, *(const int32_t *)a)->submit_seq;
    const uint64_t y = shm_req_get(pool, *(const int32_t *)b)->submit_seq;
    return (x > y) - (x < y);
}

static int32_t router_max_tokens(const router *r, const shm_req *q)
{
    int64_t m = q->params.max_tokens;
    const int64_t room = (int64_t)r->args.max_model_len - q->num_prompt_tokens;
    if (r->args.max_model_len > 0 && m > room) m = room;
    return (int32_t)(m > 0 ? m : 0);
}

/* Estimated peak KV use of the in-flight set plus a candidate (prompt, max_tokens). */
static int64_t router_peak(router *r, int32_t num_prompt, int32_t max_tokens)
{
    int32_t n = 0;
    const int32_t cap = r->args.estimate_max_new_tokens;
    for (int32_t i = 0; i <= r->num_inflight; i++) {
        int64_t held, rem;
        if (i < r->num_inflight) {
            const router_entry *e = &r->inflight[i];
            const int64_t produced = (int64_t)atomic_load_explicit(&shm_req_get(r->pool, e->slot)->record_write,
                                                                   memory_order_acquire);
            held = e->num_prompt + produced;
            rem = e->max_tokens - produced;
        } else {
            held = num_prompt;
            rem = max_tokens;
        }
        if (cap > 0 && rem > cap) rem = cap;
        r->pairs[2 * n] = rem > 0 ? rem : 0;
        r->pairs[2 * n + 1] = held;
        n++;
    }
    return scheduler_peak_of(r->pairs, n);
}

void router_step(router *r, int32_t *num_admitted)
{
    *num_admitted = 0;
    router_retire(r);
    io_buffer_status st;
    const int have_status = io_buffer_read_status(r->io, &st) && st.healthy;

    int32_t n = 0;
    for (int32_t slot = 0; slot < r->pool->num_slots; slot++) {
        if (shm_req_get_state(r->pool, slot) != SHM_REQ_STATE_SUBMITTED) continue;
        const uint64_t gen = shm_req_get_generation(r->pool, slot);
        if (router_is_inflight(r, slot, gen)) continue;
        if (shm_req_is_abort_requested(r->pool, slot)) { /* step 2: never reaches the backend */
            if (shm_req_try_acquire(r->pool, slot, gen)) {
                if (shm_req_get_state(r->pool, slot) == SHM_REQ_STATE_SUBMITTED)
                    shm_req_finish(r->pool, slot, SHM_REQ_FINISH_ABORT, SHM_REQ_STOP_NONE, 0);
                shm_req_release(r->pool, slot);
                r->num_aborted_early++;
            }
            continue;
        }
        r->candidates[n++] = slot;
    }
    if (!have_status || n == 0) return;
    qsort_r(r->candidates, (size_t)n, sizeof *r->candidates, router_cmp_submit, r->pool);

    for (int32_t i = 0; i < n && r->num_inflight < r->args.max_num_seqs; i++) {
        const int32_t slot = r->candidates[i];
        const uint64_t gen = shm_req_get_generation(r->pool, slot);
        if (!shm_req_try_acquire(r->pool, slot, gen)) continue; /* freed meanwhile */
        const shm_req *q = shm_req_get(r->pool, slot);
        const int32_t max_tokens = router_max_tokens(r, q);
        if (r->num_inflight > 0 && router_peak(r, q->num_prompt_tokens, max_tokens) > st.kv_slots_total) {
            shm_req_release(r->pool, slot);
            break; /* FCFS: later arrivals wait behind the head */
        }
        if (io_buffer_push_cmd(r->io, IO_BUFFER_CMD_ADD, &slot, 1) == 0) {
            shm_req_release(r->pool, slot);
            break; /* command ring full: next round */
        }
        /* the reference taken above now belongs to the backend, which releases it when done */
        r->inflight[r->num_inflight++] = (router_entry){slot, gen, q->num_prompt_tokens, max_tokens, 0};
        r->num_admitted++;
        (*num_admitted)++;
    }
}

status_t router_run(router *r, volatile const int *stop)
{
    const long ns = (long)(r->args.interval_ms * 1e6);
    while (!*stop) {
        int32_t admitted;
        router_step(r, &admitted);
        struct timespec ts = {.tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L};
        if (ns > 0) nanosleep(&ts, NULL);
    }
    return STATUS_OK;
}
