/* test_scheduler.c — the scheduler in isolation (no model): the peak-KV estimate against its
 * formula, admission (held back by the estimate, the empty-running-set rule, FIFO), chunked
 * prefill and the shared token budget, max_num_seqs, prefix-cache reuse (other requests and
 * the n samples of one request), preemption and resume, finishing "length" for capacity, and a
 * randomized stress test that checks slot ownership and accounting after every step.
 *
 * The engine's loop is simulated: schedule → (forward) → commit → append a fake token to each
 * sequence whose chunk reached the end of its tokens → release at max_tokens.  Sequences are
 * set up like engine_add_request does (req NULL: the scheduler does not read it; the n samples
 * of a request share a group_prefilled flag owned by the simulated request). */
#include <stdlib.h>
#include <string.h>

#include "engine/scheduler.h"
#include "test_util.h"

/* ---- harness ------------------------------------------------------------------------------ */

typedef struct sched_sim {
    scheduler s;
    seq **all;             /* every live sequence (owned; freed by sched_sim_free) */
    int32_t num_all, cap_all;
    int32_t **flags;       /* one group_prefilled flag per request (owned) */
    int32_t num_flags, cap_flags;
    int64_t next_arrival;
    int32_t next_sample;
    int32_t num_added;
    int32_t num_done;      /* sequences FINISHED (by max_tokens or by capacity) */
    int32_t num_capacity;  /* of those, finished by capacity */
    uint64_t rng;          /* fake tokens in the stress test; 0 = 1000 + num_output */
} sched_sim;

static void sched_sim_init(sched_sim *m, int32_t num_slots, int32_t max_num_seqs, int32_t max_batch_tokens,
                           int32_t chunk, int32_t max_seq_len, int caching)
{
    memset(m, 0, sizeof *m);
    CHECK_EQ_INT(scheduler_init(&m->s, num_slots, max_num_seqs, max_batch_tokens, chunk, max_seq_len, caching), STATUS_OK);
}

static void sched_sim_free(sched_sim *m)
{
    scheduler *s = &m->s;
    while (s->num_running > 0) scheduler_release(s, s->running[0]);
    while (s->num_waiting > 0) scheduler_release(s, s->waiting[0]);
    scheduler_free(s);
    for (int32_t i = 0; i < m->num_all; i++) {
        free(m->all[i]->tokens);
        free(m->all[i]);
    }
    free(m->all);
    for (int32_t i = 0; i < m->num_flags; i++) free(m->flags[i]);
    free(m->flags);
}

/* Frees one (finished) sequence now, as the engine does a step after it finishes. */
static void sched_sim_free_seq(sched_sim *m, seq *q)
{
    CHECK_EQ_INT(q->status, SEQ_FINISHED);
    for (int32_t i = 0; i < m->num_all; i++) {
        if (m->all[i] != q) continue;
        m->all[i] = m->all[--m->num_all];
        free(q->tokens);
        free(q);
        return;
    }
    CHECK(0);
}

/* Adds one sequence the way engine_add_request does.  sibling_of: NULL for sample 0 of a new
 * request, else sample 0 of the request (samples are added right after it). */
static seq *sched_sim_add(sched_sim *m, const int32_t *prompt, int32_t num_prompt, int32_t max_tokens, seq *sibling_of)
{
    seq *q = calloc(1, sizeof *q);
    if (sibling_of) {
        q->req_id = sibling_of->req_id;
        q->sample_index = m->next_sample++;
        q->group_prefilled = sibling_of->group_prefilled;
    } else {
        q->req_id = m->num_added;
        q->sample_index = 0;
        m->next_sample = 1;
        if (m->num_flags == m->cap_flags) {
            m->cap_flags = m->cap_flags ? 2 * m->cap_flags : 16;
            m->flags = realloc(m->flags, (size_t)m->cap_flags * sizeof(int32_t *));
        }
        q->group_prefilled = calloc(1, sizeof(int32_t));
        m->flags[m->num_flags++] = q->group_prefilled;
    }
    q->arrival = m->next_arrival++;
    q->req = NULL;
    q->cap_tokens = num_prompt + max_tokens + 1;
    q->tokens = malloc((size_t)q->cap_tokens * sizeof(int32_t));
    memcpy(q->tokens, prompt, (size_t)num_prompt * sizeof(int32_t));
    q->num_tokens = q->num_prompt = num_prompt;
    q->max_tokens = max_tokens;
    q->num_cached_tokens = -1;
    q->stop_string = q->stop_token = -1;
    q->row = 1234; /* scheduler_add must reset it */
    scheduler_add(&m->s, q);
    CHECK_EQ_INT(q->row, -1);
    CHECK_EQ_INT(q->status, SEQ_WAITING);
    if (m->num_all == m->cap_all) {
        m->cap_all = m->cap_all ? 2 * m->cap_all : 16;
        m->all = realloc(m->all, (size_t)m->cap_all * sizeof(seq *));
    }
    m->all[m->num_all++] = q;
    m->num_added++;
    return q;
}

static uint64_t sched_rng(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int32_t sched_rand(uint64_t *x, int32_t lo, int32_t hi) /* [lo, hi] */
{
    return lo + (int32_t)(sched_rng(x) % (uint64_t)(hi - lo + 1));
}

/* The rest of the engine's step after scheduler_schedule: commit, sample, finish. */
static void sched_sim_finish_step(sched_sim *m)
{
    scheduler *s = &m->s;
    seq *sampled[64];
    int32_t num_sampled = 0;
    CHECK(s->num_batch <= 64);
    for (int32_t i = 0; i < s->num_finished_by_capacity; i++) {
        CHECK_EQ_INT(s->finished_by_capacity[i]->status, SEQ_FINISHED);
        CHECK_EQ_INT(s->finished_by_capacity[i]->finish, SEQ_FINISH_LENGTH);
        CHECK_EQ_INT(s->finished_by_capacity[i]->row, -1);
        m->num_done++;
        m->num_capacity++;
    }
    for (int32_t i = 0; i < s->num_batch && i < 64; i++) {
        seq *q = s->batch[i];
        if (q->num_computed + q->q_len == q->num_tokens) sampled[num_sampled++] = q;
    }
    scheduler_commit(s);
    for (int32_t i = 0; i < num_sampled; i++) {
        seq *q = sampled[i];
        CHECK(q->num_tokens < q->cap_tokens);
        CHECK(q->num_output < q->max_tokens);
        q->tokens[q->num_tokens++] = m->rng ? (int32_t)(sched_rng(&m->rng) % 6) : 1000 + q->num_output;
        q->num_output++;
        if (q->num_output == q->max_tokens) {
            q->finish = SEQ_FINISH_LENGTH;
            scheduler_release(s, q);
            CHECK_EQ_INT(q->status, SEQ_FINISHED);
            CHECK_EQ_INT(q->row, -1);
            m->num_done++;
        }
    }
}

static void sched_sim_step(sched_sim *m)
{
    scheduler_schedule(&m->s);
    sched_sim_finish_step(m);
}

static int sched_in_batch(const scheduler *s, const seq *q)
{
    for (int32_t i = 0; i < s->num_batch; i++)
        if (s->batch[i] == q) return 1;
    return 0;
}

static int32_t sched_tree_tokens(const scheduler *s) { return s->rc ? radix_cache_total_tokens(s->rc) : 0; }

/* Nothing leaked: every slot is free or in the tree, and no tree node is still locked. */
static void sched_check_drained(const scheduler *s)
{
    CHECK_EQ_INT(s->num_running, 0);
    CHECK_EQ_INT(s->num_waiting, 0);
    CHECK_EQ_INT(s->kv.num_free + sched_tree_tokens(s), s->kv.num_slots);
    CHECK_EQ_INT(s->kv.num_free_rows, s->kv.max_reqs);
    if (s->rc) CHECK_EQ_INT(radix_cache_evictable_tokens(s->rc), radix_cache_total_tokens(s->rc));
    CHECK_EQ_INT(scheduler_num_free_slots(s), s->kv.num_slots);
}

/* Runs until nothing is left (or max_steps); returns the steps taken. */
static int32_t sched_sim_run(sched_sim *m, int32_t max_steps)
{
    int32_t steps = 0;
    while ((m->s.num_running > 0 || m->s.num_waiting > 0) && steps < max_steps) {
        sched_sim_step(m);
        steps++;
    }
    CHECK(steps < max_steps);
    return steps;
}

static void sched_fill(int32_t *p, int32_t n, int32_t base)
{
    for (int32_t i = 0; i < n; i++) p[i] = base + i;
}

/* ---- the peak estimate --------------------------------------------------------------------- */

/* Independent reference: sort (remaining, held) by remaining descending; peak = max over
 * i = 1..n of (held_1 + … + held_i) + i * remaining_i. */
static int64_t sched_ref_peak(const int64_t *rem_in, const int64_t *held_in, int32_t n)
{
    int64_t rem[32], held[32];
    memcpy(rem, rem_in, (size_t)n * sizeof(int64_t));
    memcpy(held, held_in, (size_t)n * sizeof(int64_t));
    for (int32_t i = 1; i < n; i++)
        for (int32_t j = i; j > 0 && rem[j - 1] < rem[j]; j--) {
            int64_t t = rem[j]; rem[j] = rem[j - 1]; rem[j - 1] = t;
            t = held[j]; held[j] = held[j - 1]; held[j - 1] = t;
        }
    int64_t cum = 0, peak = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += held[i];
        if (cum + (i + 1) * rem[i] > peak) peak = cum + (i + 1) * rem[i];
    }
    return peak;
}

static void sched_set_seq(seq *q, int32_t num_tokens, int32_t max_tokens, int32_t num_output)
{
    memset(q, 0, sizeof *q);
    q->num_tokens = num_tokens;
    q->num_prompt = num_tokens - num_output;
    q->max_tokens = max_tokens;
    q->num_output = num_output;
    q->row = -1;
}

TEST_CASE(scheduler_peak_tokens_formula)
{
    scheduler s;
    CHECK_EQ_INT(scheduler_init(&s, 1000, 8, 64, 0, 256, 0), STATUS_OK);
    CHECK_EQ_INT(s.chunk_size, 64); /* chunk 0 = max_batch_tokens */
    seq q[9];
    CHECK_EQ_INT(scheduler_peak_tokens(&s, NULL), 0);

    /* held (num_tokens) / remaining (max_tokens - num_output): (10,5) (20,1) (5,8) */
    sched_set_seq(&q[0], 10, 7, 2);
    sched_set_seq(&q[1], 20, 4, 3);
    sched_set_seq(&q[2], 5, 8, 0);
    sched_set_seq(&q[3], 3, 10, 0); /* the extra */
    CHECK_EQ_INT(scheduler_peak_tokens(&s, &q[3]), 3 + 10); /* alone: held + remaining */
    for (int32_t i = 0; i < 3; i++) s.running[i] = &q[i];
    s.num_running = 3;
    /* sorted (5,8) (10,5) (20,1): 5+8=13, 15+10=25, 35+3=38 */
    CHECK_EQ_INT(scheduler_peak_tokens(&s, NULL), 38);
    /* + (3,10): (3,10) (5,8) (10,5) (20,1): 13, 24, 33, 42 */
    CHECK_EQ_INT(scheduler_peak_tokens(&s, &q[3]), 42);
    /* an extra with a large remaining count dominates: (3,100) (5,8) (10,5) (20,1): 103, 24, 33, 42 */
    q[3].max_tokens = 100;
    CHECK_EQ_INT(scheduler_peak_tokens(&s, &q[3]), 103);
    /* output beyond max_tokens counts as 0 remaining, never negative */
    sched_set_seq(&q[4], 50, 3, 5);
    s.running[3] = &q[4];
    s.num_running = 4;
    /* (5,8) (10,5) (20,1) (50,0): 13, 25, 38, 85 */
    CHECK_EQ_INT(scheduler_peak_tokens(&s, NULL), 85);

    /* estimate_max_new_tokens caps remaining: cap 2 → (10,2) (5,2) (20,1) (50,0): 12, 19, 38, 85 */
    s.estimate_max_new_tokens = 2;
    CHECK_EQ_INT(scheduler_peak_tokens(&s, NULL), 85);
    s.num_running = 3; /* (10,2) (5,2) (20,1): 12, 15+4=19, 35+3=38 */
    CHECK_EQ_INT(scheduler_peak_tokens(&s, NULL), 38);
    sched_set_seq(&q[5], 1, 1000, 0);
    s.running[0] = &q[5]; /* (1,1000→2) (5,8→2) (20,1): 3, 6+4=10, 26+3=29 */
    CHECK_EQ_INT(scheduler_peak_tokens(&s, NULL), 29);
    s.estimate_max_new_tokens = 0; /* (1,1000) (5,8) (20,1): 1001, 22, 29 */
    CHECK_EQ_INT(scheduler_peak_tokens(&s, NULL), 1001);

    /* random sets against the reference, with and without extra, with and without the cap */
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int32_t trial = 0; trial < 2000; trial++) {
        const int32_t n = sched_rand(&rng, 0, 8);
        const int32_t cap = sched_rand(&rng, 0, 2) == 0 ? 0 : sched_rand(&rng, 1, 20);
        const int use_extra = sched_rand(&rng, 0, 1);
        int64_t rem[9], held[9];
        int32_t k = 0;
        for (int32_t i = 0; i < n + use_extra; i++) {
            const int32_t out = sched_rand(&rng, 0, 30);
            sched_set_seq(&q[i], sched_rand(&rng, 1, 60) + out, sched_rand(&rng, 1, 40), out);
            int64_t r = q[i].max_tokens - q[i].num_output;
            if (r < 0) r = 0;
            if (cap > 0 && r > cap) r = cap;
            rem[k] = r;
            held[k] = q[i].num_tokens;
            k++;
        }
        for (int32_t i = 0; i < n; i++) s.running[i] = &q[i];
        s.num_running = n;
        s.estimate_max_new_tokens = cap;
        CHECK_EQ_INT(scheduler_peak_tokens(&s, use_extra ? &q[n] : NULL), sched_ref_peak(rem, held, k));
    }
    s.num_running = 0;
    scheduler_free(&s);
}

/* ---- admission ----------------------------------------------------------------------------- */

TEST_CASE(scheduler_admission_held_back_until_first_finishes)
{
    sched_sim m;
    sched_sim_init(&m, 100, 4, 512, 0, 128, 0);
    int32_t p[40];
    sched_fill(p, 40, 1);
    seq *a = sched_sim_add(&m, p, 40, 30, NULL);
    seq *b = sched_sim_add(&m, p, 40, 30, NULL); /* both: 80 held + 2 × 30 = 140 > 100 */
    int32_t steps = 0;
    while (a->status != SEQ_FINISHED && steps < 100) {
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(a->status, SEQ_RUNNING);
        CHECK_EQ_INT(b->status, SEQ_WAITING);
        CHECK_EQ_INT(m.s.num_batch, 1);
        CHECK(m.s.batch[0] == a);
        CHECK(scheduler_peak_tokens(&m.s, b) > m.s.kv.num_slots);
        sched_sim_finish_step(&m);
        steps++;
    }
    CHECK_EQ_INT(steps, 30);
    CHECK_EQ_INT(a->num_output, 30);
    scheduler_schedule(&m.s);
    CHECK_EQ_INT(b->status, SEQ_RUNNING);
    CHECK(m.s.num_batch == 1 && m.s.batch[0] == b);
    CHECK_EQ_INT(b->q_len, 40);
    sched_sim_finish_step(&m);
    sched_sim_run(&m, 100);
    CHECK_EQ_INT(b->num_output, 30);
    CHECK_EQ_INT(m.s.num_preemptions, 0);
    sched_check_drained(&m.s);
    sched_sim_free(&m);
}

TEST_CASE(scheduler_admission_empty_running_set_always_admits)
{
    for (int caching = 0; caching <= 1; caching++) {
        sched_sim m;
        sched_sim_init(&m, 50, 4, 512, 0, 256, caching);
        int32_t p[10];
        sched_fill(p, 10, 1);
        seq *a = sched_sim_add(&m, p, 10, 30, NULL);  /* estimate 40 fits */
        seq *b = sched_sim_add(&m, p, 10, 200, NULL); /* estimate 210 > 50: only when alone */
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(a->status, SEQ_RUNNING);
        CHECK_EQ_INT(b->status, SEQ_WAITING);
        CHECK(scheduler_peak_tokens(&m.s, b) > 50);
        sched_sim_finish_step(&m);
        int32_t steps = 0;
        while (a->status != SEQ_FINISHED && steps++ < 100) {
            sched_sim_step(&m);
            if (a->status != SEQ_FINISHED) CHECK_EQ_INT(b->status, SEQ_WAITING);
        }
        CHECK_EQ_INT(a->num_output, 30);
        scheduler_schedule(&m.s); /* running set empty: b is admitted despite its estimate */
        CHECK_EQ_INT(b->status, SEQ_RUNNING);
        CHECK(m.s.num_batch == 1 && m.s.batch[0] == b);
        sched_sim_finish_step(&m);
        sched_sim_run(&m, 1000);
        CHECK_EQ_INT(b->status, SEQ_FINISHED);
        CHECK_EQ_INT(b->finish, SEQ_FINISH_LENGTH);
        CHECK_EQ_INT(m.num_capacity, 1); /* 10 + 200 tokens never fit in 50 slots */
        CHECK_EQ_INT(b->num_output, 50 - 10 + 1);
        sched_check_drained(&m.s);
        sched_sim_free(&m);
    }
}

TEST_CASE(scheduler_admission_fifo_head_blocks_later_arrivals)
{
    sched_sim m;
    sched_sim_init(&m, 100, 4, 512, 0, 128, 0);
    int32_t p[40];
    sched_fill(p, 40, 1);
    seq *a = sched_sim_add(&m, p, 40, 30, NULL);
    seq *b = sched_sim_add(&m, p, 40, 30, NULL);
    seq *c = sched_sim_add(&m, p, 5, 1, NULL); /* with a alone it would fit: 40+30, 45+2 */
    scheduler_schedule(&m.s);
    CHECK(scheduler_peak_tokens(&m.s, c) <= 100);
    CHECK(scheduler_peak_tokens(&m.s, b) > 100);
    CHECK_EQ_INT(b->status, SEQ_WAITING);
    CHECK_EQ_INT(c->status, SEQ_WAITING); /* blocked behind b */
    CHECK(m.s.num_waiting == 2 && m.s.waiting[0] == b && m.s.waiting[1] == c);
    sched_sim_finish_step(&m);
    int32_t steps = 0;
    while (a->status != SEQ_FINISHED && steps++ < 100) {
        sched_sim_step(&m);
        if (a->status != SEQ_FINISHED) {
            CHECK_EQ_INT(b->status, SEQ_WAITING);
            CHECK_EQ_INT(c->status, SEQ_WAITING);
        }
    }
    scheduler_schedule(&m.s); /* b (alone), then c: 40+30=70, 45+2 */
    CHECK_EQ_INT(m.s.num_batch, 2);
    CHECK(m.s.batch[0] == b && m.s.batch[1] == c);
    sched_sim_finish_step(&m);
    CHECK_EQ_INT(c->status, SEQ_FINISHED);
    sched_sim_run(&m, 100);
    CHECK_EQ_INT(b->num_output, 30);
    sched_check_drained(&m.s);
    sched_sim_free(&m);
}

/* ---- chunked prefill, budget, rows --------------------------------------------------------- */

TEST_CASE(scheduler_chunked_prefill_30_30_30_10)
{
    for (int caching = 0; caching <= 1; caching++) {
        sched_sim m;
        sched_sim_init(&m, 300, 4, 256, 30, 256, caching);
        int32_t p[100];
        sched_fill(p, 100, 1);
        seq *a = sched_sim_add(&m, p, 100, 3, NULL);
        const int32_t expect[4] = {30, 30, 30, 10};
        for (int32_t k = 0; k < 4; k++) {
            scheduler_schedule(&m.s);
            CHECK(m.s.num_batch == 1 && m.s.batch[0] == a);
            CHECK_EQ_INT(a->q_len, expect[k]);
            CHECK_EQ_INT(a->num_computed, 30 * k);
            CHECK_EQ_INT(m.s.num_batch_tokens, expect[k]);
            CHECK_EQ_INT(a->num_computed + a->q_len == a->num_tokens, k == 3); /* only the last samples */
            CHECK_EQ_INT(a->prefill_done, 0);
            sched_sim_finish_step(&m);
            CHECK_EQ_INT(a->num_output, k == 3 ? 1 : 0);
            CHECK_EQ_INT(a->prefill_done, k == 3);
        }
        CHECK_EQ_INT(a->num_in_tree, caching ? 100 : 0); /* the prompt went into the tree at once */
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(a->q_len, 1); /* decode */
        sched_sim_finish_step(&m);
        sched_sim_run(&m, 10);
        CHECK_EQ_INT(a->num_output, 3);
        CHECK_EQ_INT(m.s.num_prompt_tokens, 100);
        CHECK_EQ_INT(m.s.num_cached_prompt_tokens, 0);
        sched_check_drained(&m.s);
        sched_sim_free(&m);
    }
}

TEST_CASE(scheduler_budget_decodes_before_new_prefills)
{
    sched_sim m;
    sched_sim_init(&m, 500, 8, 16, 16, 256, 0);
    int32_t p[60];
    sched_fill(p, 60, 1);
    seq *a = sched_sim_add(&m, p, 4, 20, NULL);
    seq *b = sched_sim_add(&m, p + 10, 5, 20, NULL);
    sched_sim_step(&m); /* a: 4, b: 5 */
    CHECK_EQ_INT(a->num_output, 1);
    CHECK_EQ_INT(b->num_output, 1);
    seq *c = sched_sim_add(&m, p + 20, 40, 5, NULL);
    for (int32_t k = 0; k < 3; k++) {
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(m.s.num_batch, 3);
        CHECK(m.s.batch[0] == a && m.s.batch[1] == b && m.s.batch[2] == c);
        CHECK_EQ_INT(a->q_len, 1);
        CHECK_EQ_INT(b->q_len, 1);
        CHECK_EQ_INT(c->q_len, k < 2 ? 14 : 12); /* what the decodes leave of 16 */
        CHECK_EQ_INT(m.s.num_batch_tokens, k < 2 ? 16 : 14);
        sched_sim_finish_step(&m);
    }
    CHECK_EQ_INT(c->num_output, 1);
    sched_sim_run(&m, 100);
    sched_check_drained(&m.s);
    sched_sim_free(&m);

    /* a budget smaller than the running set: admission stops when it is spent */
    sched_sim_init(&m, 500, 8, 2, 2, 256, 0);
    seq *q[3];
    for (int32_t i = 0; i < 3; i++) q[i] = sched_sim_add(&m, p + i, 1, 4, NULL);
    scheduler_schedule(&m.s);
    CHECK_EQ_INT(m.s.num_batch, 2);
    CHECK(m.s.batch[0] == q[0] && m.s.batch[1] == q[1]);
    CHECK_EQ_INT(q[2]->status, SEQ_WAITING);
    sched_sim_finish_step(&m);
    scheduler_schedule(&m.s); /* q0, q1 decode; q2 waits for budget */
    CHECK_EQ_INT(m.s.num_batch, 2);
    CHECK_EQ_INT(q[2]->status, SEQ_WAITING);
    sched_sim_finish_step(&m);
    sched_sim_run(&m, 100);
    for (int32_t i = 0; i < 3; i++) CHECK_EQ_INT(q[i]->num_output, 4);
    sched_check_drained(&m.s);
    sched_sim_free(&m);
}

TEST_CASE(scheduler_max_num_seqs_caps_running)
{
    sched_sim m;
    sched_sim_init(&m, 500, 2, 256, 0, 64, 0);
    int32_t p[8];
    sched_fill(p, 8, 1);
    seq *q[5];
    for (int32_t i = 0; i < 5; i++) q[i] = sched_sim_add(&m, p, 8, 3 + i, NULL);
    scheduler_schedule(&m.s);
    CHECK_EQ_INT(m.s.num_running, 2);
    CHECK_EQ_INT(m.s.num_waiting, 3);
    CHECK_EQ_INT(m.s.num_batch, 2);
    CHECK(m.s.batch[0] == q[0] && m.s.batch[1] == q[1]);
    sched_sim_finish_step(&m);
    int32_t steps = 0;
    while ((m.s.num_running > 0 || m.s.num_waiting > 0) && steps++ < 100) {
        scheduler_schedule(&m.s);
        CHECK(m.s.num_running <= 2);
        CHECK(m.s.num_batch <= 2);
        sched_sim_finish_step(&m);
    }
    for (int32_t i = 0; i < 5; i++) CHECK_EQ_INT(q[i]->num_output, 3 + i);
    sched_check_drained(&m.s);
    sched_sim_free(&m);
}

/* ---- prefix cache -------------------------------------------------------------------------- */

TEST_CASE(scheduler_prefix_cache_reuse)
{
    for (int caching = 0; caching <= 1; caching++) {
        sched_sim m;
        sched_sim_init(&m, 200, 4, 256, 0, 64, caching);
        int32_t p[20], p2[20];
        sched_fill(p, 20, 1);
        memcpy(p2, p, sizeof p);
        for (int32_t i = 10; i < 20; i++) p2[i] = 500 + i; /* shares 10 tokens with p */
        seq *a = sched_sim_add(&m, p, 20, 5, NULL);
        sched_sim_step(&m);
        CHECK_EQ_INT(a->prefill_done, 1);
        CHECK_EQ_INT(a->num_cached_tokens, 0);

        seq *b = sched_sim_add(&m, p, 20, 3, NULL);
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(b->status, SEQ_RUNNING);
        CHECK_EQ_INT(b->num_computed, caching ? 19 : 0); /* all but the last token */
        CHECK_EQ_INT(b->q_len, caching ? 1 : 20);
        CHECK_EQ_INT(b->num_cached_tokens, caching ? 19 : 0);
        CHECK_EQ_INT(m.s.num_cached_prompt_tokens, caching ? 19 : 0);
        const int32_t *ra = kv_cache_row(&m.s.kv, a->row), *rb = kv_cache_row(&m.s.kv, b->row);
        CHECK(a->row != b->row);
        if (caching) {
            CHECK(memcmp(ra, rb, 19 * sizeof(int32_t)) == 0);
            CHECK(rb[19] != ra[19]); /* recomputed into its own slot this step */
        } else {
            for (int32_t i = 0; i < 20; i++)
                for (int32_t j = 0; j < 21; j++) CHECK(rb[i] != ra[j]);
        }
        const int32_t free_before = m.s.kv.num_free;
        sched_sim_finish_step(&m);
        if (caching) { /* at prompt completion the duplicate last slot goes back to the pool */
            CHECK(memcmp(ra, rb, 20 * sizeof(int32_t)) == 0);
            CHECK_EQ_INT(b->num_in_tree, 20);
            CHECK_EQ_INT(m.s.kv.num_free, free_before + 1);
        }

        seq *c = sched_sim_add(&m, p2, 20, 2, NULL); /* partial hit */
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(c->num_computed, caching ? 10 : 0);
        if (caching) CHECK(memcmp(ra, kv_cache_row(&m.s.kv, c->row), 10 * sizeof(int32_t)) == 0);
        sched_sim_finish_step(&m);
        sched_sim_run(&m, 100);
        CHECK_EQ_INT(m.s.num_prompt_tokens, 60);
        CHECK_EQ_INT(m.s.num_cached_prompt_tokens, caching ? 29 : 0);
        CHECK_EQ_INT(sched_tree_tokens(&m.s) > 0, caching);
        sched_check_drained(&m.s);
        sched_sim_free(&m);
    }
}

TEST_CASE(scheduler_prefix_cache_siblings_wait_for_sample0)
{
    for (int caching = 0; caching <= 1; caching++) {
        sched_sim m;
        sched_sim_init(&m, 400, 8, 64, 20, 128, caching);
        int32_t p[50], p3[5];
        sched_fill(p, 50, 1);
        sched_fill(p3, 5, 700);
        seq *l = sched_sim_add(&m, p, 50, 4, NULL);
        seq *s1 = sched_sim_add(&m, p, 50, 4, l);
        seq *s2 = sched_sim_add(&m, p, 50, 4, l);
        seq *other = sched_sim_add(&m, p3, 5, 2, NULL); /* a later request passes the waiting siblings */
        CHECK(s1->group_prefilled == l->group_prefilled && s2->group_prefilled == l->group_prefilled);
        CHECK(other->group_prefilled != l->group_prefilled);
        scheduler_schedule(&m.s);
        if (caching) {
            CHECK_EQ_INT(m.s.num_batch, 2);
            CHECK(m.s.batch[0] == l && m.s.batch[1] == other);
            CHECK_EQ_INT(s1->status, SEQ_WAITING);
            CHECK_EQ_INT(s2->status, SEQ_WAITING);
        } else { /* nothing to share: all admitted at once (the budget leaves 4 for `other`) */
            CHECK(m.s.num_batch == 4 && m.s.batch[0] == l && m.s.batch[1] == s1 && m.s.batch[2] == s2);
        }
        sched_sim_finish_step(&m);
        if (caching) {
            for (int32_t k = 0; k < 2; k++) { /* sample 0 chunks 20, 20, 10; siblings keep waiting */
                sched_sim_step(&m);
                CHECK_EQ_INT(s1->status, SEQ_WAITING);
                CHECK_EQ_INT(s2->status, SEQ_WAITING);
            }
            CHECK_EQ_INT(l->prefill_done, 1);
            CHECK_EQ_INT(*l->group_prefilled, 1);
            scheduler_schedule(&m.s);
            CHECK_EQ_INT(s1->status, SEQ_RUNNING);
            CHECK_EQ_INT(s2->status, SEQ_RUNNING);
            const int32_t *rl = kv_cache_row(&m.s.kv, l->row);
            for (int32_t k = 0; k < 2; k++) {
                seq *q = k ? s2 : s1;
                CHECK_EQ_INT(q->num_computed, 49);
                CHECK_EQ_INT(q->q_len, 1);
                CHECK_EQ_INT(q->num_cached_tokens, 49);
                CHECK(memcmp(rl, kv_cache_row(&m.s.kv, q->row), 49 * sizeof(int32_t)) == 0);
            }
            sched_sim_finish_step(&m);
        }
        sched_sim_run(&m, 100);
        CHECK_EQ_INT(l->num_output, 4);
        CHECK_EQ_INT(s1->num_output, 4);
        CHECK_EQ_INT(s2->num_output, 4);
        CHECK_EQ_INT(m.s.num_cached_prompt_tokens, caching ? 98 : 0);
        sched_check_drained(&m.s);
        sched_sim_free(&m);
    }
}

/* Sample 0 finishes (max_tokens 1) in the step its prefill completes and is freed before its
 * siblings are admitted; or it is released (aborted) before its prefill completes.  Either
 * way the siblings are admitted afterwards without touching sample 0 (ASan checks that). */
TEST_CASE(scheduler_siblings_after_sample0_is_gone)
{
    for (int abort_first = 0; abort_first <= 1; abort_first++) {
        sched_sim m;
        sched_sim_init(&m, 400, 8, 64, 20, 128, 1);
        int32_t p[30];
        sched_fill(p, 30, 1);
        seq *l = sched_sim_add(&m, p, 30, 1, NULL);
        seq *s1 = sched_sim_add(&m, p, 30, 3, l);
        seq *s2 = sched_sim_add(&m, p, 30, 3, l);
        sched_sim_step(&m); /* sample 0: 20 of 30 */
        CHECK_EQ_INT(s1->status, SEQ_WAITING);
        if (abort_first) {
            scheduler_release(&m.s, l);
            l->finish = SEQ_FINISH_ABORT;
        } else {
            sched_sim_step(&m); /* sample 0 completes its prompt, samples, finishes */
            CHECK_EQ_INT(l->status, SEQ_FINISHED);
            CHECK_EQ_INT(s1->status, SEQ_WAITING);
        }
        sched_sim_free_seq(&m, l);
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(s1->status, SEQ_RUNNING);
        CHECK_EQ_INT(s2->status, SEQ_RUNNING);
        CHECK_EQ_INT(s1->num_computed, abort_first ? 20 : 29); /* the aborted chunk stays in the tree */
        sched_sim_finish_step(&m);
        sched_sim_run(&m, 100);
        CHECK_EQ_INT(s1->num_output, 3);
        CHECK_EQ_INT(s2->num_output, 3);
        sched_check_drained(&m.s);
        sched_sim_free(&m);
    }
}

/* ---- preemption and capacity --------------------------------------------------------------- */

TEST_CASE(scheduler_preemption_pause_resume)
{
    for (int caching = 0; caching <= 1; caching++) {
        sched_sim m;
        sched_sim_init(&m, 64, 4, 256, 0, 64, caching);
        m.s.estimate_max_new_tokens = 1;
        int32_t p[4][10];
        seq *q[4];
        for (int32_t i = 0; i < 4; i++) {
            sched_fill(p[i], 10, 100 * i);
            q[i] = sched_sim_add(&m, p[i], 10, 20, NULL); /* 4 × 30 tokens in a 64-slot pool */
        }
        scheduler_schedule(&m.s);
        CHECK_EQ_INT(m.s.num_running, 4); /* optimistic: 40 held + 4 × 1 */
        sched_sim_finish_step(&m);
        int32_t first_paused = -1, out_at_pause[4] = {0}, resumed[4] = {0}, paused[4] = {0};
        int32_t steps = 0;
        while ((m.s.num_running > 0 || m.s.num_waiting > 0) && steps++ < 1000) {
            int32_t out_before[4];
            seq_status st_before[4];
            for (int32_t i = 0; i < 4; i++) { out_before[i] = q[i]->num_output; st_before[i] = q[i]->status; }
            const int64_t pre = m.s.num_preemptions;
            scheduler_schedule(&m.s);
            int32_t num_paused_now = 0;
            for (int32_t i = 0; i < 4; i++) {
                if (st_before[i] == SEQ_RUNNING && q[i]->status == SEQ_WAITING) {
                    if (first_paused < 0) first_paused = i;
                    paused[i]++;
                    num_paused_now++;
                    out_at_pause[i] = out_before[i];
                    CHECK_EQ_INT(q[i]->num_computed, 0);
                    CHECK_EQ_INT(q[i]->row, -1);
                    CHECK_EQ_INT(q[i]->num_in_tree, 0);
                    CHECK(q[i]->node == NULL);
                    CHECK_EQ_INT(q[i]->num_output, out_before[i]); /* output kept */
                    CHECK_EQ_INT(q[i]->num_tokens, 10 + out_before[i]);
                    CHECK_EQ_INT(q[i]->prefill_done, 1);
                    CHECK(!sched_in_batch(&m.s, q[i]));
                }
                if (st_before[i] == SEQ_WAITING && q[i]->status == SEQ_RUNNING && paused[i]) {
                    resumed[i]++;
                    CHECK_EQ_INT(q[i]->num_output, out_at_pause[i]);
                    CHECK_EQ_INT(q[i]->num_cached_tokens, 0); /* set at first admission only */
                }
            }
            CHECK_EQ_INT(m.s.num_preemptions - pre, num_paused_now);
            sched_sim_finish_step(&m);
        }
        CHECK(steps < 1000);
        CHECK(m.s.num_preemptions > 0);
        CHECK_EQ_INT(first_paused, 3); /* the latest arrival goes first */
        for (int32_t i = 0; i < 4; i++) {
            CHECK_EQ_INT(q[i]->num_output, 20);
            CHECK_EQ_INT(q[i]->status, SEQ_FINISHED);
            if (paused[i]) CHECK(resumed[i] == paused[i]);
        }
        CHECK_EQ_INT(m.num_capacity, 0);
        sched_check_drained(&m.s);
        if (!caching) CHECK_EQ_INT(m.s.kv.num_free, 64);
        sched_sim_free(&m);
    }
}

TEST_CASE(scheduler_lone_sequence_finishes_for_capacity)
{
    for (int caching = 0; caching <= 1; caching++) {
        sched_sim m;
        sched_sim_init(&m, 40, 4, 256, 16, 128, caching);
        int32_t p[30];
        sched_fill(p, 30, 1);
        seq *a = sched_sim_add(&m, p, 30, 50, NULL);
        int32_t steps = 0, capacity_steps = 0;
        while (a->status != SEQ_FINISHED && steps++ < 200) {
            scheduler_schedule(&m.s);
            if (m.s.num_finished_by_capacity > 0) {
                capacity_steps++;
                CHECK_EQ_INT(m.s.num_finished_by_capacity, 1);
                CHECK(m.s.finished_by_capacity[0] == a);
                CHECK_EQ_INT(m.s.num_batch, 0);
            }
            sched_sim_finish_step(&m);
        }
        CHECK_EQ_INT(capacity_steps, 1);
        CHECK_EQ_INT(a->finish, SEQ_FINISH_LENGTH);
        CHECK_EQ_INT(a->status, SEQ_FINISHED);
        CHECK_EQ_INT(a->row, -1);
        CHECK_EQ_INT(a->num_output, 40 - 30 + 1); /* KV for 40 tokens, the 41st is the next input */
        CHECK_EQ_INT(a->num_tokens, 41);
        CHECK_EQ_INT(m.num_capacity, 1);
        sched_check_drained(&m.s);
        CHECK_EQ_INT(sched_tree_tokens(&m.s), caching ? 40 : 0); /* its KV went to the tree */
        scheduler_schedule(&m.s); /* nothing left */
        CHECK_EQ_INT(m.s.num_batch, 0);
        CHECK_EQ_INT(m.s.num_finished_by_capacity, 0);
        sched_sim_free(&m);
    }
}

/* The earlier arrival outgrows the pool: the later one is paused, the earlier finishes
 * "length" once alone, then the later resumes and completes. */
TEST_CASE(scheduler_capacity_after_preemption)
{
    for (int caching = 0; caching <= 1; caching++) {
        sched_sim m;
        sched_sim_init(&m, 40, 4, 256, 0, 128, caching);
        m.s.estimate_max_new_tokens = 1;
        int32_t p[30];
        sched_fill(p, 30, 1);
        seq *a = sched_sim_add(&m, p, 10, 60, NULL);
        while (a->num_computed < 30) sched_sim_step(&m);
        seq *b = sched_sim_add(&m, p + 10, 5, 8, NULL);
        scheduler_schedule(&m.s); /* estimate (31,1) (5,1): 32, 38 <= 40 */
        CHECK_EQ_INT(b->status, SEQ_RUNNING);
        sched_sim_finish_step(&m);
        int32_t b_paused = 0, steps = 0;
        while ((m.s.num_running > 0 || m.s.num_waiting > 0) && steps++ < 500) {
            const seq_status before = b->status;
            sched_sim_step(&m);
            b_paused += before == SEQ_RUNNING && b->status == SEQ_WAITING;
        }
        CHECK(b_paused >= 1);
        CHECK_EQ_INT(m.s.num_preemptions, b_paused);
        CHECK_EQ_INT(a->finish, SEQ_FINISH_LENGTH);
        CHECK_EQ_INT(a->num_output, 40 - 10 + 1);
        CHECK_EQ_INT(b->num_output, 8);
        CHECK_EQ_INT(m.num_capacity, 1);
        sched_check_drained(&m.s);
        sched_sim_free(&m);
    }
}

/* ---- randomized stress --------------------------------------------------------------------- */

typedef struct sched_owner { const seq *q; int32_t pos; int32_t tree; } sched_owner;

/* Slot ownership and accounting; after scheduler_schedule (q_len set) or after the step. */
static void sched_check_invariants(sched_sim *m, sched_owner *own, int committed)
{
    scheduler *s = &m->s;
    const int32_t num_slots = s->kv.num_slots;
    CHECK(s->num_running <= s->max_num_seqs);
    int32_t sum = 0;
    for (int32_t i = 0; i < s->num_batch && !committed; i++) {
        const seq *q = s->batch[i];
        CHECK(q->q_len >= 1);
        CHECK_EQ_INT(q->status, SEQ_RUNNING);
        CHECK(q->num_computed + q->q_len <= q->num_tokens);
        CHECK(q->q_len <= s->chunk_size);
        for (int32_t j = 0; j < i; j++) CHECK(s->batch[j] != q);
        sum += q->q_len;
    }
    if (!committed) CHECK_EQ_INT(sum, s->num_batch_tokens);
    CHECK(sum <= s->max_batch_tokens);
    for (int32_t i = 0; i < s->num_waiting; i++) {
        const seq *q = s->waiting[i];
        CHECK_EQ_INT(q->status, SEQ_WAITING);
        CHECK_EQ_INT(q->row, -1);
        CHECK_EQ_INT(q->num_computed, 0);
        CHECK_EQ_INT(q->num_in_tree, 0);
        CHECK(q->node == NULL);
        if (i > 0) CHECK(s->waiting[i - 1]->arrival < q->arrival);
    }
    for (int32_t i = 0; i < num_slots; i++) own[i].q = NULL;
    int32_t owned = 0;
    for (int32_t i = 0; i < s->num_running; i++) {
        const seq *q = s->running[i];
        CHECK_EQ_INT(q->status, SEQ_RUNNING);
        if (i > 0) CHECK(s->running[i - 1]->arrival < q->arrival);
        CHECK(q->row >= 0 && q->row < s->kv.max_reqs);
        for (int32_t j = 0; j < i; j++) CHECK(s->running[j]->row != q->row);
        const int32_t q_len = committed ? 0 : sched_in_batch(s, q) ? q->q_len : 0;
        if (committed) CHECK_EQ_INT(q->q_len, 0);
        CHECK(q->num_in_tree <= q->num_computed);
        CHECK(q->num_computed < q->num_tokens); /* the last token is always the next input */
        if (!s->rc) CHECK_EQ_INT(q->num_in_tree, 0);
        if (s->rc) CHECK(q->node != NULL);
        const int32_t *row = kv_cache_row(&s->kv, q->row);
        for (int32_t pos = 0; pos < q->num_computed + q_len; pos++) {
            const int32_t slot = row[pos];
            if (slot < 0 || slot >= num_slots) { CHECK(0); return; }
            CHECK(s->kv.slot_in_use[slot]);
            const int tree = pos < q->num_in_tree;
            sched_owner *o = &own[slot];
            if (!o->q) {
                o->q = q; o->pos = pos; o->tree = tree;
                owned += !tree;
                continue;
            }
            /* seen before: only a tree slot, shared by sequences with the same prefix */
            CHECK(tree && o->tree);
            CHECK_EQ_INT(o->pos, pos);
            if (tree && o->tree && o->pos == pos)
                CHECK(memcmp(o->q->tokens, q->tokens, (size_t)(pos + 1) * sizeof(int32_t)) == 0);
        }
    }
    const int32_t tree = sched_tree_tokens(s);
    CHECK_EQ_INT(s->kv.num_free + tree + owned, num_slots);
    if (s->rc) CHECK(radix_cache_evictable_tokens(s->rc) <= tree);
    CHECK_EQ_INT(s->kv.num_free_rows + s->num_running, s->kv.max_reqs);
}

typedef struct sched_stress_totals { int32_t steps, capacity; int64_t preemptions, cached_tokens; } sched_stress_totals;

static void sched_stress_one(uint64_t seed, int caching, sched_stress_totals *t)
{
    uint64_t rng = seed;
    const int32_t num_slots = sched_rand(&rng, 24, 160);
    const int32_t max_num_seqs = sched_rand(&rng, 1, 8);
    const int32_t max_batch_tokens = sched_rand(&rng, 1, 64);
    const int32_t chunk = sched_rand(&rng, 0, 3) == 0 ? 0 : sched_rand(&rng, 1, 32);
    const int32_t max_seq_len = 96;
    sched_sim m;
    sched_sim_init(&m, num_slots, max_num_seqs, max_batch_tokens, chunk, max_seq_len, caching);
    m.s.estimate_max_new_tokens = sched_rand(&rng, 0, 1) ? 0 : sched_rand(&rng, 1, 6);
    m.rng = seed * 2654435761u + 1;
    sched_owner *own = calloc((size_t)num_slots, sizeof *own);

    int32_t bases[3][48];
    for (int32_t b = 0; b < 3; b++)
        for (int32_t i = 0; i < 48; i++) bases[b][i] = sched_rand(&rng, 0, 5);
    const int32_t num_requests = sched_rand(&rng, 10, 40);
    int32_t added = 0, steps = 0;
    while ((added < num_requests || m.s.num_running > 0 || m.s.num_waiting > 0) && steps < 20000) {
        while (added < num_requests && sched_rand(&rng, 0, 2) == 0) {
            int32_t prompt[48];
            int32_t n = sched_rand(&rng, 1, 40);
            if (n + 1 > num_slots) n = num_slots - 1; /* engine_add_request's limit */
            const int32_t shared = sched_rand(&rng, 0, n);
            memcpy(prompt, bases[sched_rand(&rng, 0, 2)], (size_t)shared * sizeof(int32_t));
            for (int32_t i = shared; i < n; i++) prompt[i] = sched_rand(&rng, 0, 5);
            const int32_t max_tokens = sched_rand(&rng, 1, 40);
            const int32_t samples = sched_rand(&rng, 0, 3) == 0 ? sched_rand(&rng, 2, 3) : 1;
            seq *first = NULL;
            for (int32_t k = 0; k < samples; k++) {
                seq *q = sched_sim_add(&m, prompt, n, max_tokens, first);
                if (!first) first = q;
            }
            added++;
        }
        scheduler_schedule(&m.s);
        sched_check_invariants(&m, own, 0);
        for (int32_t i = 0; i < m.s.num_finished_by_capacity; i++) {
            const seq *q = m.s.finished_by_capacity[i];
            CHECK(q->num_tokens > num_slots); /* only a sequence that outgrew the whole pool */
            CHECK(q->num_output < q->max_tokens);
        }
        sched_sim_finish_step(&m);
        sched_check_invariants(&m, own, 1);
        steps++;
    }
    CHECK(steps < 20000);
    CHECK_EQ_INT(m.num_done, m.num_all);
    for (int32_t i = 0; i < m.num_all; i++) {
        const seq *q = m.all[i];
        CHECK_EQ_INT(q->status, SEQ_FINISHED);
        CHECK_EQ_INT(q->finish, SEQ_FINISH_LENGTH);
        if (q->num_prompt + q->max_tokens <= num_slots + 1) CHECK_EQ_INT(q->num_output, q->max_tokens);
        CHECK(q->num_cached_tokens >= 0 && q->num_cached_tokens < q->num_prompt);
        if (!caching) CHECK_EQ_INT(q->num_cached_tokens, 0);
    }
    sched_check_drained(&m.s);
    if (!caching) CHECK_EQ_INT(m.s.kv.num_free, num_slots);
    t->steps += steps;
    t->capacity += m.num_capacity;
    t->preemptions += m.s.num_preemptions;
    t->cached_tokens += m.s.num_cached_prompt_tokens;
    free(own);
    sched_sim_free(&m);
}

TEST_CASE(scheduler_stress_random)
{
    sched_stress_totals t = {0, 0, 0, 0};
    for (uint64_t seed = 1; seed <= 80; seed++) {
        const int failures_before = test_failures;
        sched_stress_one(seed * 0x9e3779b97f4a7c15ull + 7, (int)(seed & 1), &t);
        if (test_failures != failures_before) {
            fprintf(stderr, "scheduler_stress_random: seed %llu failed\n", (unsigned long long)seed);
            break;
        }
    }
    /* the runs reach every path: preemption, finishing for capacity, prefix reuse */
    CHECK(t.steps > 3000);
    CHECK(t.preemptions > 0);
    CHECK(t.capacity > 0);
    CHECK(t.cached_tokens > 0);
    fprintf(stderr, "scheduler_stress_random: %d steps, %lld preemptions, %d finished for capacity, %lld cached prompt tokens\n",
            (int)t.steps, (long long)t.preemptions, (int)t.capacity, (long long)t.cached_tokens);
}
