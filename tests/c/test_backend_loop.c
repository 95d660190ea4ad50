/* test_backend_loop.c — the ModelBackend loop on its own, in one process: requests written to a
 * shared-memory pool as the API server does, ADD commands in the IO buffer as the router does,
 * the loop on its own thread.  With overlap on (two inference threads and the grammar
 * compiler) and off, every request streams the fixture's greedy tokens (Hugging Face's) and
 * finishes "length"; an aborted one finishes "abort"; every slot is released and every KV slot
 * returns.  Run under ASan+UBSan too (tests/test_c_units.py). */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "engine/backend_loop.h"
#include "engine/io_buffer.h"
#include "engine/shm_req.h"
#include "test_fixture.h"
#include "test_shm_util.h"
#include "test_util.h"

typedef struct loop_thread {
    backend_loop *bl;
    volatile int stop;
    status_t status;
} loop_thread;

static void *loop_thread_main(void *p)
{
    loop_thread *t = p;
    t->status = backend_loop_run(t->bl, &t->stop);
    return NULL;
}

static void run_loop(int overlap)
{
    fixture f;
    backend *be;
    engine *e;
    const engine_args a = {.chunked_prefill_size = 16};
    if (!fixture_engine(&a, &f, &be, &e)) return;
    char name[SHM_NAME_MAX_CHARS], io_name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, overlap ? "loop1" : "loop0");
    test_shm_name(io_name, sizeof io_name, overlap ? "loopio1" : "loopio0");
    shm_req_pool pool;
    io_buffer io;
    const shm_req_pool_config c = {8, 256, 64, 1024, 0};
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    CHECK_EQ_INT(io_buffer_create(&io, io_name, 64), STATUS_OK);
    backend_loop bl;
    CHECK_EQ_INT(backend_loop_init(&bl, e, &pool, &io, overlap), STATUS_OK);
    loop_thread t = {.bl = &bl};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, loop_thread_main, &t), 0);

    const int32_t num = 2 * f.prompts->count, aborted = num - 1; /* the last one is aborted at once */
    int32_t slots[16], got[16][40], num_got[16];
    memset(num_got, 0, sizeof num_got);
    sampling_params_t sp;
    sampling_params_default(&sp);
    sp.temperature = 0.0f;
    sp.max_tokens = 32;
    sp.ignore_eos = 1;
    for (int32_t r = 0; r < num; r++) {
        int32_t ids[64];
        const int32_t n = fixture_prompt(&f, r, ids);
        slots[r] = shm_req_claim(&pool);
        CHECK(slots[r] >= 0);
        CHECK_EQ_INT(shm_req_set_request(&pool, slots[r], r, r, 0, &sp, 0), STATUS_OK);
        CHECK_EQ_INT(shm_req_set_prompt(&pool, slots[r], ids, n), STATUS_OK);
        shm_req_submit(&pool, slots[r]);
        /* the router's part: a reference for the backend, then ADD */
        CHECK(shm_req_try_acquire(&pool, slots[r], shm_req_get_generation(&pool, slots[r])));
        CHECK(io_buffer_push_cmd(&io, IO_BUFFER_CMD_ADD, &slots[r], 1) > 0);
        if (r == aborted) {
            shm_req_set_abort(&pool, slots[r]);
            CHECK(io_buffer_push_cmd(&io, IO_BUFFER_CMD_ABORT, &slots[r], 1) > 0);
        }
    }
    const time_t deadline = time(NULL) + 120;
    for (int done = 0; !done && time(NULL) < deadline;) {
        done = 1;
        for (int32_t r = 0; r < num; r++) {
            shm_req_token_record rec[64];
            const int finished = shm_req_get_state(&pool, slots[r]) == SHM_REQ_STATE_FINISHED; /* before draining */
            const int32_t k = shm_req_pop_tokens(&pool, slots[r], rec, 64);
            for (int32_t i = 0; i < k && num_got[r] < 40; i++) got[r][num_got[r]++] = rec[i].token_id;
            char text[256];
            while (shm_req_pop_text(&pool, slots[r], text, sizeof text) > 0) {}
            if (!finished || k > 0) done = 0;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    for (int32_t r = 0; r < num; r++) {
        const shm_req *q = shm_req_get(&pool, slots[r]);
        CHECK_EQ_INT(shm_req_get_state(&pool, slots[r]), SHM_REQ_STATE_FINISHED);
        if (r == aborted) {
            CHECK_EQ_INT(q->finish_reason, SHM_REQ_FINISH_ABORT);
        } else {
            const json_value *want = &f.greedy->items[r % f.prompts->count];
            CHECK_EQ_INT(q->finish_reason, SHM_REQ_FINISH_LENGTH);
            CHECK_EQ_INT(num_got[r], want->count);
            for (int32_t i = 0; i < want->count && i < num_got[r]; i++) CHECK_EQ_INT(got[r][i], want->items[i].i64);
        }
        shm_req_release(&pool, slots[r]); /* the front end's reference: the slot is free again */
    }
    t.stop = 1;
    pthread_join(th, NULL);
    CHECK_EQ_INT(t.status, STATUS_OK);
    CHECK_EQ_INT(shm_req_pool_num_in_use(&pool), 0);
    CHECK_EQ_INT(e->sched.kv.num_free + radix_cache_total_tokens(e->sched.rc), e->sched.kv.num_slots);
    backend_loop_free(&bl);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(io_buffer_destroy(&io), STATUS_OK);
    engine_free(e);
    be->ops->destroy(be);
    json_doc_free(f.doc);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(backend_loop_serial_streams_greedy_tokens) { run_loop(0); }
TEST_CASE(backend_loop_overlap_streams_greedy_tokens) { run_loop(1); }
