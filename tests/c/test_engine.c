/* test_engine.c — the whole C engine on a real checkpoint, no Python: the qwen3 fixture's greedy
 * tokens (Hugging Face's) through continuous batching, a starved KV pool with preemption, and
 * an abort.  Run under ASan+UBSan in CI (LIGHTLLM_SANITIZE=1), so the model loader, forward,
 * scheduler, prefix cache and engine are checked for memory errors and leaks end to end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/json.h"
#include "engine/engine.h"
#include "test_fixture.h"
#include "test_util.h"

/* One tick of the engine.  mode 0: engine_step.  1: step k+1 is prepared before step k
 * completes and launched after it, so the scheduler plans with pending tokens, inputs come from
 * the next-token table and a sequence can finish while a step for it is already prepared.
 * 2: engine_step_ahead, the device-ahead order of the backend loop — step k+1 is also launched
 * before step k is collected. */
static int64_t table_inputs; /* decode inputs left to the next-token table */

static void count_table_inputs(const engine_step_ctx *c)
{
    for (int32_t t = 0; c && t < c->batch.num_tokens; t++) table_inputs += c->tokens[t] < 0;
}

static status_t tick(engine *e, int mode, engine_step_ctx **prev)
{
    if (mode == 0) return engine_step(e);
    if (mode == 2) {
        status_t s = engine_step_ahead(e);
        count_table_inputs(e->ahead);
        return s;
    }
    engine_step_ctx *next = NULL;
    status_t s = engine_prepare(e, &next);
    if (s != STATUS_OK) return s;
    count_table_inputs(next);
    s = engine_complete(e, *prev); /* prev was collected by the last tick */
    if (next) {
        engine_launch(e, next);
        engine_launch_sample(e, next);
        engine_collect(e, next);
    }
    *prev = next;
    return s;
}

/* Runs every fixture prompt (twice, as requests 0..2k-1) and checks the greedy tokens. */
static void run_greedy(int32_t num_slots, int32_t estimate_cap, int32_t chunk, int abort_one, int mode)
{
    fixture f;
    backend *be;
    engine *e;
    const engine_args a = {.chunked_prefill_size = chunk, .num_kv_slots = num_slots, .estimate_max_new_tokens = estimate_cap};
    if (!fixture_engine(&a, &f, &be, &e)) return;
    engine_request_params p;
    memset(&p, 0, sizeof p);
    sampling_params_default(&p.sp);
    p.sp.temperature = 0.0f;
    p.sp.max_tokens = 32;
    p.sp.ignore_eos = 1;
    const int32_t np = f.prompts->count;
    for (int32_t r = 0; r < 2 * np; r++) {
        const json_value *pr = &f.prompts->items[r % np];
        int32_t ids[64];
        for (int32_t i = 0; i < pr->count; i++) ids[i] = (int32_t)pr->items[i].i64;
        CHECK_EQ_INT(engine_add_request(e, r, ids, pr->count, &p), STATUS_OK);
    }
    int32_t finished = 0, aborted = 0, steps = 0;
    engine_step_ctx *prev = NULL;
    table_inputs = 0;
    while (engine_has_work(e) && steps++ < 10000) {
        CHECK_EQ_INT(tick(e, mode, &prev), STATUS_OK);
        if (abort_one && steps == 3) CHECK_EQ_INT(engine_abort(e, 2 * np - 1), STATUS_OK);
        for (int32_t u = 0; u < e->num_updates; u++) {
            seq *q = e->updates[u];
            if (q->status != SEQ_FINISHED) continue;
            if (q->finish == SEQ_FINISH_ABORT) { aborted++; continue; }
            const json_value *want = &f.greedy->items[q->req_id % np];
            CHECK_EQ_INT(q->finish, SEQ_FINISH_LENGTH);
            CHECK_EQ_INT(q->num_output, want->count);
            for (int32_t i = 0; i < want->count && i < q->num_output; i++)
                CHECK_EQ_INT(q->tokens[q->num_prompt + i], want->items[i].i64);
            finished++;
        }
    }
    CHECK_EQ_INT(tick(e, mode, &prev), STATUS_OK); /* reports a late abort, frees the last sequences */
    CHECK_EQ_INT(engine_num_inflight(e), 0);
    if (mode) CHECK(table_inputs > 0);
    aborted += e->num_updates;
    CHECK_EQ_INT(finished + aborted, 2 * np);
    if (abort_one) CHECK_EQ_INT(aborted, 1);
    if (estimate_cap) CHECK(e->sched.num_preemptions > 0);
    CHECK_EQ_INT(e->sched.kv.num_free + radix_cache_total_tokens(e->sched.rc), e->sched.kv.num_slots);
    engine_free(e);
    be->ops->destroy(be);
    json_doc_free(f.doc);
}

/* Seeded sampling with penalties (steps that need the previous tokens on the host), n = 2,
 * min_tokens and greedy requests mixed in one batch: every overlap order gives the tokens of
 * engine_step. */
static void run_sampled(int mode, int32_t out[8][2][24])
{
    fixture f;
    backend *be;
    engine *e;
    const engine_args a = {.chunked_prefill_size = 16};
    if (!fixture_engine(&a, &f, &be, &e)) return;
    const int32_t np = f.prompts->count;
    for (int32_t r = 0; r < 2 * np; r++) {
        engine_request_params p;
        memset(&p, 0, sizeof p);
        sampling_params_default(&p.sp);
        p.sp.max_tokens = 24;
        p.sp.ignore_eos = 1;
        if (r % 2 == 0) { /* penalised, seeded, two samples */
            p.sp.temperature = 0.8f;
            p.sp.repetition_penalty = 1.3f;
            p.sp.frequency_penalty = 0.5f;
            p.sp.presence_penalty = 0.2f;
            p.sp.min_tokens = 5;
            p.sp.n = 2;
            p.sp.has_seed = 1;
            p.sp.seed = 1000 + (uint64_t)r;
        } else {
            p.sp.temperature = 0.0f;
        }
        const json_value *pr = &f.prompts->items[r % np];
        int32_t ids[64];
        for (int32_t i = 0; i < pr->count; i++) ids[i] = (int32_t)pr->items[i].i64;
        CHECK_EQ_INT(engine_add_request(e, r, ids, pr->count, &p), STATUS_OK);
    }
    engine_step_ctx *prev = NULL;
    for (int32_t steps = 0; engine_has_work(e) && steps < 10000; steps++) {
        CHECK_EQ_INT(tick(e, mode, &prev), STATUS_OK);
        for (int32_t u = 0; u < e->num_updates; u++) {
            const seq *q = e->updates[u];
            if (q->status != SEQ_FINISHED) continue;
            CHECK_EQ_INT(q->num_output, 24);
            for (int32_t i = 0; i < 24 && i < q->num_output; i++) out[q->req_id][q->sample_index][i] = q->tokens[q->num_prompt + i];
        }
    }
    CHECK_EQ_INT(tick(e, mode, &prev), STATUS_OK);
    engine_free(e);
    be->ops->destroy(be);
    json_doc_free(f.doc);
}

TEST_CASE(engine_overlap_sampled_with_penalties_matches_serial)
{
    static int32_t want[8][2][24], got[8][2][24];
    memset(want, 0xff, sizeof want);
    run_sampled(0, want);
    for (int mode = 1; mode <= 2; mode++) {
        memset(got, 0xff, sizeof got);
        run_sampled(mode, got);
        CHECK(memcmp(want, got, sizeof want) == 0);
    }
    CHECK(want[0][0][0] >= 0 && want[0][1][0] >= 0 && memcmp(want[0][0], want[0][1], sizeof want[0][0]) != 0);
}

TEST_CASE(engine_fixture_greedy_matches_transformers) { run_greedy(0, 0, 0, 0, 0); }
TEST_CASE(engine_fixture_small_pool_preempts_and_matches) { run_greedy(80, 4, 16, 0, 0); }
TEST_CASE(engine_fixture_chunked_prefill_with_abort) { run_greedy(0, 0, 3, 1, 0); }
TEST_CASE(engine_overlap_greedy_matches_transformers) { for (int m = 1; m <= 2; m++) run_greedy(0, 0, 0, 0, m); }
TEST_CASE(engine_overlap_small_pool_preempts_and_matches) { for (int m = 1; m <= 2; m++) run_greedy(80, 4, 16, 0, m); }
TEST_CASE(engine_overlap_chunked_prefill_with_abort) { for (int m = 1; m <= 2; m++) run_greedy(0, 0, 3, 1, m); }
