/* backend_loop.c — see backend_loop.h. */
#include "engine/backend_loop.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

struct backend_slot {
    int32_t compiling, compiled;    /* its ADD waits for the compiler thread / is ready to add */
    int32_t active;                 /* handed to us by the router, not yet released */
    int32_t finished;               /* the engine is done; finish fields below are final */
    uint32_t finish_reason, stop_kind;
    int32_t stop_value;
    size_t text_sent;               /* bytes of the sequence's text queued so far */
    shm_req_token_record *recs;     /* queued records [num_recs] */
    int32_t num_recs, cap_recs, first_rec;
    char *text;                     /* queued text bytes [text_len] */
    size_t text_len, cap_text, first_text;
    char error[SHM_REQ_ERROR_MESSAGE_BYTES];
};

status_t backend_loop_init(backend_loop *bl, engine *e, shm_req_pool *pool, io_buffer *io, int overlap)
{
    /* (the grammar compiler thread runs with overlap on; see backend_loop_commands) */
    memset(bl, 0, sizeof *bl);
    bl->e = e;
    bl->pool = pool;
    bl->io = io;
    bl->overlap = overlap != 0;
    bl->busy_since = -1;
    bl->slots = log_xcalloc((size_t)pool->num_slots, sizeof *bl->slots);
    bl->compile_queue = log_xcalloc((size_t)pool->num_slots, sizeof *bl->compile_queue);
    pthread_mutex_init(&bl->mu, NULL);
    pthread_cond_init(&bl->cv, NULL);
    pthread_cond_init(&bl->compile_cv, NULL);
    return STATUS_OK;
}

void backend_loop_free(backend_loop *bl)
{
    if (!bl->slots) return;
    pthread_mutex_destroy(&bl->mu);
    pthread_cond_destroy(&bl->cv);
    pthread_cond_destroy(&bl->compile_cv);
    free(bl->compile_queue);
    for (int32_t i = 0; i < bl->pool->num_slots; i++) {
        free(bl->slots[i].recs);
        free(bl->slots[i].text);
    }
    free(bl->slots);
    memset(bl, 0, sizeof *bl);
}

static void backend_slot_queue_text(backend_slot *b, const char *text, size_t n)
{
    if (n == 0) return;
    if (b->text_len + n > b->cap_text) {
        while (b->text_len + n > b->cap_text) b->cap_text = b->cap_text ? 2 * b->cap_text : 256;
        b->text = realloc(b->text, b->cap_text);
        LL_ASSERT(b->text);
    }
    memcpy(b->text + b->text_len, text, n);
    b->text_len += n;
}

static void backend_slot_queue_record(backend_slot *b, const shm_req_token_record *r)
{
    if (b->num_recs == b->cap_recs) {
        b->cap_recs = b->cap_recs ? 2 * b->cap_recs : 16;
        b->recs = realloc(b->recs, (size_t)b->cap_recs * sizeof *b->recs);
        LL_ASSERT(b->recs);
    }
    b->recs[b->num_recs++] = *r;
}

static void backend_slot_reset(backend_slot *b)
{
    b->active = b->finished = 0;
    b->num_recs = b->first_rec = 0;
    b->text_len = b->first_text = b->text_sent = 0;
    b->error[0] = '\0';
}

/* The slot's grammar spec (shared memory, read-only once submitted) as engine params. */
static void backend_loop_grammar_params(backend_loop *bl, int32_t slot, engine_request_params *p)
{
    const shm_req *q = shm_req_get(bl->pool, slot);
    p->grammar_kind = shm_req_grammar_kind_name(q->grammar_kind); /* NULL for SHM_REQ_GRAMMAR_NONE */
    p->grammar = q->grammar_kind != SHM_REQ_GRAMMAR_NONE ? shm_req_grammar(bl->pool, slot) : NULL;
    p->grammar_len = q->grammar_bytes;
    p->grammar_whitespace = (q->flags & SHM_REQ_FLAG_GRAMMAR_WHITESPACE) != 0;
}

/* ADD: the request in `slot` joins the engine (or finishes at once with the engine's error, or
 * with compile_error: its grammar did not compile). */
static void backend_loop_add(backend_loop *bl, int32_t slot, const char *compile_error)
{
    backend_slot *b = &bl->slots[slot];
    shm_req *q = shm_req_get(bl->pool, slot);
    backend_slot_reset(b);
    b->active = 1;
    bl->num_active++;
    if (!shm_req_mark_running(bl->pool, slot)) { /* finished meanwhile (aborted before it ran) */
        b->finished = 1;
        b->finish_reason = q->finish_reason ? q->finish_reason : SHM_REQ_FINISH_ABORT;
        return;
    }
    if (shm_req_is_abort_requested(bl->pool, slot)) { /* its ABORT came before it could be added */
        b->finished = 1;
        b->finish_reason = SHM_REQ_FINISH_ABORT;
        return;
    }
    const char *stops[SHM_REQ_MAX_STOP_STRINGS];
    char stop_buf[SHM_REQ_MAX_STOP_STRINGS][SHM_REQ_MAX_STOP_STRING_BYTES + 1];
    for (uint32_t i = 0; i < q->num_stop_strings && i < SHM_REQ_MAX_STOP_STRINGS; i++) {
        const uint32_t n = q->stop_string_bytes[i];
        memcpy(stop_buf[i], q->stop_strings[i], n);
        stop_buf[i][n] = '\0';
        stops[i] = stop_buf[i];
    }
    engine_request_params p = {
        .sp = q->params,
        .num_stops = (int32_t)q->num_stop_strings,
        .stops = stops,
        .stop_token_ids = q->stop_token_ids,
        .num_stop_token_ids = (int32_t)q->num_stop_token_ids,
        .include_stop_str_in_output = (q->flags & SHM_REQ_FLAG_INCLUDE_STOP_STR_IN_OUTPUT) != 0,
        .skip_special_tokens = (q->flags & SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS) != 0,
    };
    backend_loop_grammar_params(bl, slot, &p);
    p.sp.n = 1; /* the n samples of a request are n slots: a seeded request's samples get distinct
                 * seeds derived from it, so they differ as the n samples of one engine request do */
    if (p.sp.has_seed && q->sample_index > 0) p.sp.seed ^= 0x9E3779B97F4A7C15ull * (uint64_t)q->sample_index;
    status_t s = compile_error ? STATUS_INVALID_ARG
                               : engine_add_request(bl->e, slot, shm_req_prompt(bl->pool, slot), q->num_prompt_tokens, &p);
    if (s != STATUS_OK) {
        b->finished = 1;
        b->finish_reason = SHM_REQ_FINISH_ERROR;
        snprintf(b->error, sizeof b->error, "%s", compile_error ? compile_error : status_message());
    }
}

/* The grammar compiler thread: compiles the grammars of queued ADDs into the engine's cache off
 * the inference threads (a new schema takes milliseconds); the next step's commands add them. */
static void *backend_loop_compiler(void *arg)
{
    backend_loop *bl = arg;
    pthread_mutex_lock(&bl->mu);
    for (;;) {
        while (bl->num_compile_queued == 0 && !bl->compiler_stop) pthread_cond_wait(&bl->compile_cv, &bl->mu);
        if (bl->compiler_stop) break;
        const int32_t slot = bl->compile_queue[--bl->num_compile_queued];
        engine_request_params p;
        memset(&p, 0, sizeof p);
        backend_loop_grammar_params(bl, slot, &p);
        pthread_mutex_unlock(&bl->mu);
        const status_t s = engine_compile_grammar(bl->e, &p);
        pthread_mutex_lock(&bl->mu);
        backend_slot *b = &bl->slots[slot];
        b->compiling = 0;
        b->compiled = 1;
        if (s != STATUS_OK) snprintf(b->error, sizeof b->error, "%s", status_message());
        else b->error[0] = '\0';
    }
    pthread_mutex_unlock(&bl->mu);
    return NULL;
}

/* Compiled grammars' ADDs join the engine now (holding mu). */
static int backend_loop_add_compiled(backend_loop *bl)
{
    int any = 0;
    for (int32_t slot = 0; bl->num_compiling > 0 && slot < bl->pool->num_slots; slot++) {
        backend_slot *b = &bl->slots[slot];
        if (!b->compiled) continue;
        char error[SHM_REQ_ERROR_MESSAGE_BYTES];
        snprintf(error, sizeof error, "%s", b->error);
        b->compiled = 0;
        bl->num_compiling--;
        backend_loop_add(bl, slot, error[0] ? error : NULL);
        any = 1;
    }
    return any;
}

/* Queues what one engine update adds to its slot's stream. */
static void backend_loop_collect(backend_loop *bl, const seq *q)
{
    const int32_t slot = (int32_t)q->req_id;
    backend_slot *b = &bl->slots[slot];
    if (!b->active || b->finished) return;
    if (q->has_new_token) {
        shm_req_token_record r;
        memset(&r, 0, sizeof r);
        r.token_id = q->last.token;
        if (q->req->sp.logprobs >= 0) {
            r.logprob = q->last.logprob;
            r.rank = q->last.rank;
            r.num_top = q->last.num_top;
            for (int32_t i = 0; i < q->last.num_top && i < SHM_REQ_MAX_TOP_LOGPROBS; i++) {
                r.top_ids[i] = q->last.top_ids[i];
                r.top_logprobs[i] = q->last.top_logprobs[i];
            }
        }
        if (q->status == SEQ_FINISHED) r.flags |= SHM_REQ_RECORD_FINAL;
        backend_slot_queue_record(b, &r);
    }
    const int done = q->status == SEQ_FINISHED;
    const size_t upto = engine_seq_stable_len(q);
    if (upto > b->text_sent) {
        backend_slot_queue_text(b, q->text + b->text_sent, upto - b->text_sent);
        b->text_sent = upto;
    }
    if (done) {
        b->finished = 1;
        b->finish_reason = q->finish == SEQ_FINISH_STOP ? SHM_REQ_FINISH_STOP
                           : q->finish == SEQ_FINISH_LENGTH ? SHM_REQ_FINISH_LENGTH : SHM_REQ_FINISH_ABORT;
        b->stop_kind = q->stop_string >= 0 ? SHM_REQ_STOP_STRING : (q->stop_token >= 0 ? SHM_REQ_STOP_TOKEN : SHM_REQ_STOP_NONE);
        b->stop_value = q->stop_string >= 0 ? q->stop_string : q->stop_token;
        shm_req_get(bl->pool, slot)->num_cached_tokens = q->num_cached_tokens < 0 ? 0 : q->num_cached_tokens;
    }
}

/* Bytes of text[0, n) that end on a UTF-8 character boundary (n itself when it does). */
static size_t backend_loop_char_prefix(const char *text, size_t n)
{
    size_t k = n;
    while (k > 0 && (((uint8_t)text[k - 1]) & 0xC0) == 0x80) k--;
    if (k == 0) return n; /* no lead byte in sight: not UTF-8 we produced; send as is */
    const uint8_t lead = (uint8_t)text[k - 1];
    const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (n - (k - 1) >= need) ? n : k - 1;
}

/* Moves queued records and text into the ring; finishes the slot when all is out. */
static void backend_loop_flush(backend_loop *bl, int32_t slot)
{
    backend_slot *b = &bl->slots[slot];
    const uint32_t ring_text = bl->pool->num_ring_text_bytes;
    while (b->first_rec < b->num_recs && shm_req_push_token(bl->pool, slot, &b->recs[b->first_rec], NULL, 0)) b->first_rec++;
    while (b->first_text < b->text_len) {
        size_t n = b->text_len - b->first_text;
        if (n > ring_text / 2) n = backend_loop_char_prefix(b->text + b->first_text, ring_text / 2);
        if (!shm_req_push_text(bl->pool, slot, b->text + b->first_text, (uint32_t)n)) break;
        b->first_text += n;
    }
    if (b->first_rec == b->num_recs) b->first_rec = b->num_recs = 0;
    if (b->first_text == b->text_len) b->first_text = b->text_len = 0;
    if (b->finished && b->num_recs == 0 && b->text_len == 0) {
        if (b->finish_reason == SHM_REQ_FINISH_ERROR) shm_req_finish_error(bl->pool, slot, b->error);
        else if (shm_req_get_state(bl->pool, slot) == SHM_REQ_STATE_RUNNING)
            shm_req_finish(bl->pool, slot, b->finish_reason, b->stop_kind, b->stop_value);
        backend_slot_reset(b);
        bl->num_active--;
        shm_req_release(bl->pool, slot); /* the reference the router took for us */
    }
}

static void backend_loop_publish(backend_loop *bl, int healthy)
{
    const scheduler *s = &bl->e->sched;
    const int64_t now = shm_req_now_us();
    io_buffer_status st = {
        .kv_slots_total = s->kv.num_slots, .kv_slots_free = s->kv.num_free,
        .kv_slots_cached = s->rc ? radix_cache_evictable_tokens(s->rc) : 0,
        .num_running = s->num_running, .num_waiting = s->num_waiting, .step = bl->num_steps,
        .last_step_us = now, .healthy = healthy,
        .forward_us = (int64_t)(bl->e->forward_seconds * 1e6),
        .active_us = bl->active_us + (bl->busy_since >= 0 ? now - bl->busy_since : 0),
        .num_preemptions = s->num_preemptions,
    };
    io_buffer_publish_status(bl->io, &st);
}

/* Pops the router's commands; returns whether there were any.  An ADD with a grammar goes to the
 * compiler thread first (with overlap on); an ABORT that arrives while it compiles is seen as the
 * slot's abort request when it is added. */
static int backend_loop_commands(backend_loop *bl)
{
    int any = backend_loop_add_compiled(bl);
    io_buffer_cmd cmd;
    while (io_buffer_pop_cmd(bl->io, &cmd)) {
        any = 1;
        for (int32_t i = 0; i < cmd.num_slots; i++) {
            const int32_t slot = cmd.slots[i];
            if (cmd.kind == IO_BUFFER_CMD_ADD) {
                if (bl->overlap && shm_req_get(bl->pool, slot)->grammar_kind != SHM_REQ_GRAMMAR_NONE) {
                    bl->slots[slot].compiling = 1;
                    bl->num_compiling++;
                    bl->compile_queue[bl->num_compile_queued++] = slot;
                    pthread_cond_signal(&bl->compile_cv);
                } else {
                    backend_loop_add(bl, slot, NULL);
                }
            } else if (bl->slots[slot].active && !bl->slots[slot].finished) {
                engine_abort(bl->e, slot); /* ABORT, STOP */
            }
        }
    }
    return any;
}

/* An engine error: every request finishes with its message; the loop stops. */
static status_t backend_loop_fail(backend_loop *bl, status_t s)
{
    char msg[SHM_REQ_ERROR_MESSAGE_BYTES];
    snprintf(msg, sizeof msg, "%s", status_message());
    for (int32_t slot = 0; slot < bl->pool->num_slots; slot++) {
        backend_slot *b = &bl->slots[slot];
        if (!b->active) continue;
        b->finished = 1;
        b->finish_reason = SHM_REQ_FINISH_ERROR;
        snprintf(b->error, sizeof b->error, "%s", msg);
        b->num_recs = b->first_rec = 0;
        b->text_len = b->first_text = 0;
        backend_loop_flush(bl, slot);
    }
    backend_loop_publish(bl, 0);
    bl->quit = 1;
    snprintf(bl->error, sizeof bl->error, "%.255s", msg);
    return status_set(s, "%s", msg);
}

/* Waits (holding mu) until *turn == k; 0 when the loop is quitting instead. */
static int backend_loop_wait_turn(backend_loop *bl, const int64_t *turn, int64_t k)
{
    while (*turn != k && !bl->quit) pthread_cond_wait(&bl->cv, &bl->mu);
    return !bl->quit;
}

static void backend_loop_pass_turn(backend_loop *bl, int64_t *turn)
{
    (*turn)++;
    pthread_cond_broadcast(&bl->cv);
}

/* Step k of the loop: prepare (commands in, schedule), launch (forward + sampling, outside the
 * lock; a needs_history step's sampling once the previous step is collected), collect (wait
 * for the device, outside the lock), complete (tokens and text out, rings flushed, status
 * published); each phase in step order across the threads.  *did_work says whether anything
 * happened. */
static status_t backend_loop_ticket(backend_loop *bl, int64_t k, volatile const int *stop, int *did_work)
{
    engine *e = bl->e;
    engine_step_ctx *c = NULL;
    status_t s = STATUS_OK;
    *did_work = 0;
    pthread_mutex_lock(&bl->mu);
    if (!backend_loop_wait_turn(bl, &bl->turn_prepare, k)) goto out;
    if (*stop) {
        bl->quit = 1;
        pthread_cond_broadcast(&bl->cv);
        goto out;
    }
    *did_work = backend_loop_commands(bl);
    if (engine_has_unfinished(e)) s = engine_prepare(e, &c);
    if (s != STATUS_OK) {
        s = backend_loop_fail(bl, s);
        pthread_cond_broadcast(&bl->cv);
        goto out;
    }
    if (c) {
        *did_work = 1;
        bl->num_steps++;
        if (bl->busy_since < 0) bl->busy_since = shm_req_now_us();
    }
    backend_loop_pass_turn(bl, &bl->turn_prepare);
    if (!backend_loop_wait_turn(bl, &bl->turn_launch, k)) goto out;
    pthread_mutex_unlock(&bl->mu);
    if (c) engine_launch(e, c);
    pthread_mutex_lock(&bl->mu);
    if (c && !c->sampled) { /* needs_history: sampled once the previous step is collected */
        if (!backend_loop_wait_turn(bl, &bl->turn_collect, k)) goto out;
        pthread_mutex_unlock(&bl->mu);
        engine_launch_sample(e, c);
        pthread_mutex_lock(&bl->mu);
    }
    backend_loop_pass_turn(bl, &bl->turn_launch);
    if (!backend_loop_wait_turn(bl, &bl->turn_collect, k)) goto out;
    pthread_mutex_unlock(&bl->mu);
    if (c) engine_collect(e, c);
    pthread_mutex_lock(&bl->mu);
    backend_loop_pass_turn(bl, &bl->turn_collect);
    if (!backend_loop_wait_turn(bl, &bl->turn_complete, k)) goto out;
    if (c || e->num_deferred > 0) *did_work = 1;
    s = engine_complete(e, c);
    if (s != STATUS_OK) {
        s = backend_loop_fail(bl, s);
        pthread_cond_broadcast(&bl->cv);
        goto out;
    }
    for (int32_t i = 0; i < e->num_updates; i++) backend_loop_collect(bl, e->updates[i]);
    for (int32_t slot = 0; bl->num_active > 0 && slot < bl->pool->num_slots; slot++)
        if (bl->slots[slot].active) backend_loop_flush(bl, slot);
    const int64_t now = shm_req_now_us();
    if (bl->busy_since >= 0) bl->active_us += now - bl->busy_since;
    bl->busy_since = engine_has_unfinished(e) || engine_num_inflight(e) > 0 ? now : -1;
    backend_loop_publish(bl, 1);
    backend_loop_pass_turn(bl, &bl->turn_complete);
out:
    pthread_mutex_unlock(&bl->mu);
    return s;
}

typedef struct backend_loop_thread_arg {
    backend_loop *bl;
    int64_t first, stride;
    volatile const int *stop;
    status_t status;
} backend_loop_thread_arg;

static void *backend_loop_thread(void *p)
{
    backend_loop_thread_arg *a = p;
    backend_loop *bl = a->bl;
    for (int64_t k = a->first; a->status == STATUS_OK; k += a->stride) {
        int did_work;
        a->status = backend_loop_ticket(bl, k, a->stop, &did_work);
        pthread_mutex_lock(&bl->mu);
        const int quit = bl->quit;
        pthread_mutex_unlock(&bl->mu);
        if (quit) break;
        if (!did_work) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000}; /* 0.1 ms idle poll */
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

status_t backend_loop_run(backend_loop *bl, volatile const int *stop)
{
    pthread_mutex_lock(&bl->mu);
    backend_loop_publish(bl, 1);
    pthread_mutex_unlock(&bl->mu);
    const int n = bl->overlap ? 2 : 1;
    backend_loop_thread_arg args[2];
    pthread_t threads[2];
    for (int i = 0; i < n; i++) args[i] = (backend_loop_thread_arg){.bl = bl, .first = i, .stride = n, .stop = stop};
    /* the second thread and the grammar compiler are ours; the first runs on the caller's */
    pthread_t compiler;
    if (n == 2 && pthread_create(&compiler, NULL, backend_loop_compiler, bl) != 0)
        return status_set(STATUS_NO_MEMORY, "cannot start the backend's grammar compiler thread");
    if (n == 2 && pthread_create(&threads[1], NULL, backend_loop_thread, &args[1]) != 0) {
        bl->overlap = 0; /* no thread to fold with: grammars compile inline */
        args[0].stride = 1;
    }
    backend_loop_thread(&args[0]);
    if (n == 2 && args[0].stride == 2) pthread_join(threads[1], NULL);
    if (n == 2) {
        pthread_mutex_lock(&bl->mu);
        bl->compiler_stop = 1;
        pthread_cond_signal(&bl->compile_cv);
        pthread_mutex_unlock(&bl->mu);
        pthread_join(compiler, NULL);
    }
    for (int i = 0; i < (args[0].stride == 2 ? 2 : 1); i++)
        if (args[i].status != STATUS_OK) return status_set(args[i].status, "%s", bl->error); /* set on its thread */
    return STATUS_OK;
}
