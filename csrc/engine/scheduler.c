/* scheduler.c — see scheduler.h for the policy.  All bookkeeping arrays are sized at init;
 * the per-step path does not allocate (the waiting queue grows by doubling when requests are
 * added, which is not the step path). */
#include "engine/scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

status_t scheduler_init(scheduler *s, int32_t num_slots, int32_t max_num_seqs, int32_t max_batch_tokens,
                        int32_t chunk_size, int32_t max_seq_len, int enable_prefix_cache)
{
    memset(s, 0, sizeof *s);
    STATUS_TRY(kv_cache_init(&s->kv, num_slots, max_num_seqs, max_seq_len));
    s->rc = enable_prefix_cache ? radix_cache_create() : NULL;
    s->max_num_seqs = max_num_seqs;
    s->max_batch_tokens = max_batch_tokens;
    s->chunk_size = chunk_size > 0 ? chunk_size : max_batch_tokens;
    s->max_seq_len = max_seq_len;
    s->cap_waiting = 64;
    s->waiting = log_xmalloc((size_t)s->cap_waiting * sizeof(seq *));
    s->running = log_xmalloc((size_t)max_num_seqs * sizeof(seq *));
    s->batch = log_xmalloc((size_t)max_num_seqs * sizeof(seq *));
    s->finished_by_capacity = log_xmalloc((size_t)max_num_seqs * sizeof(seq *));
    s->scratch_slots = log_xmalloc((size_t)(num_slots > max_seq_len ? num_slots : max_seq_len) * sizeof(int32_t));
    s->scratch_peak = log_xmalloc((size_t)(2 * max_num_seqs + 2) * sizeof(int64_t));
    return STATUS_OK;
}

void scheduler_free(scheduler *s)
{
    if (s->rc) radix_cache_free(s->rc, NULL);
    kv_cache_free(&s->kv);
    free(s->waiting);
    free(s->running);
    free(s->batch);
    free(s->finished_by_capacity);
    free(s->scratch_slots);
    free(s->scratch_peak);
    memset(s, 0, sizeof *s);
}

/* Inserts q into the waiting queue keeping arrival order (a paused sequence goes back ahead
 * of later arrivals). */
static void scheduler_enqueue(scheduler *s, seq *q)
{
    if (s->num_waiting == s->cap_waiting) {
        s->cap_waiting *= 2;
        s->waiting = realloc(s->waiting, (size_t)s->cap_waiting * sizeof(seq *));
        LL_ASSERT(s->waiting);
    }
    int32_t i = s->num_waiting;
    while (i > 0 && s->waiting[i - 1]->arrival > q->arrival) {
        s->waiting[i] = s->waiting[i - 1];
        i--;
    }
    s->waiting[i] = q;
    s->num_waiting++;
    q->status = SEQ_WAITING;
}

void scheduler_add(scheduler *s, seq *q)
{
    q->row = -1;
    q->num_computed = q->num_in_tree = 0;
    q->node = NULL;
    scheduler_enqueue(s, q);
}

int32_t scheduler_num_free_slots(const scheduler *s)
{
    return s->kv.num_free + (s->rc ? radix_cache_evictable_tokens(s->rc) : 0);
}

int scheduler_make_room(scheduler *s, int32_t n)
{
    if (kv_cache_can_alloc(&s->kv, n)) return 1;
    if (s->rc) {
        int32_t got = radix_cache_evict(s->rc, n - s->kv.num_free, s->scratch_slots);
        kv_cache_release(&s->kv, s->scratch_slots, got);
    }
    return kv_cache_can_alloc(&s->kv, n);
}

/* Hands the sequence's computed KV to the tree (deduplicating against what the tree already
 * holds) or back to the pool; leaves the row's slots for [0, n) tree-owned, n = the computed
 * tokens whose ids the host has (a launched step's sampled input may not be appended yet). */
static void scheduler_cache_prefix(scheduler *s, seq *q)
{
    int32_t *row = kv_cache_row(&s->kv, q->row);
    if (!s->rc) return;
    const int32_t n = q->num_computed < q->num_tokens ? q->num_computed : q->num_tokens;
    const int32_t present = radix_cache_insert(s->rc, q->tokens, row, n);
    if (present > q->num_in_tree) kv_cache_release(&s->kv, row + q->num_in_tree, present - q->num_in_tree);
    radix_node *node;
    const int32_t matched = radix_cache_match_prefix(s->rc, q->tokens, n, row, &node);
    LL_ASSERT(matched == n);
    radix_cache_lock(s->rc, node);
    if (q->node) radix_cache_unlock(s->rc, q->node);
    q->node = node;
    q->num_in_tree = n;
}

/* Gives up the sequence's row and KV (to the tree when caching). */
static void scheduler_drop_kv(scheduler *s, seq *q)
{
    if (q->row < 0) return;
    int32_t *row = kv_cache_row(&s->kv, q->row);
    if (s->rc) {
        if (q->num_computed > 0) scheduler_cache_prefix(s, q);
        if (q->node) radix_cache_unlock(s->rc, q->node);
        if (q->num_computed > q->num_in_tree) kv_cache_release(&s->kv, row + q->num_in_tree, q->num_computed - q->num_in_tree);
    } else if (q->num_computed > 0) {
        kv_cache_release(&s->kv, row, q->num_computed);
    }
    q->node = NULL;
    q->num_in_tree = 0;
    q->num_computed = 0;
    kv_cache_release_row(&s->kv, q->row);
    q->row = -1;
}

static void scheduler_remove_running(scheduler *s, seq *q)
{
    for (int32_t i = 0; i < s->num_running; i++) {
        if (s->running[i] == q) {
            memmove(&s->running[i], &s->running[i + 1], (size_t)(s->num_running - i - 1) * sizeof(seq *));
            s->num_running--;
            return;
        }
    }
}

static void scheduler_remove_waiting(scheduler *s, seq *q)
{
    for (int32_t i = 0; i < s->num_waiting; i++) {
        if (s->waiting[i] == q) {
            memmove(&s->waiting[i], &s->waiting[i + 1], (size_t)(s->num_waiting - i - 1) * sizeof(seq *));
            s->num_waiting--;
            return;
        }
    }
}

void scheduler_release(scheduler *s, seq *q)
{
    if (q->sample_index == 0 && q->group_prefilled) *q->group_prefilled = 1; /* siblings stop waiting */
    if (q->status == SEQ_RUNNING) scheduler_remove_running(s, q);
    else if (q->status == SEQ_WAITING) scheduler_remove_waiting(s, q);
    scheduler_drop_kv(s, q);
    q->status = SEQ_FINISHED;
}

static void scheduler_pause(scheduler *s, seq *q)
{
    scheduler_remove_running(s, q);
    scheduler_drop_kv(s, q);
    q->recomputing = 1;
    scheduler_enqueue(s, q);
    s->num_preemptions++;
}

static int scheduler_cmp_desc(const void *a, const void *b)
{
    const int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x < y) - (x > y);
}

int64_t scheduler_peak_of(int64_t *pairs, int32_t n)
{
    qsort(pairs, (size_t)n, 2 * sizeof(int64_t), scheduler_cmp_desc);
    int64_t held = 0, peak = 0;
    for (int32_t i = 0; i < n; i++) {
        held += pairs[2 * i + 1];
        const int64_t use = held + pairs[2 * i] * (i + 1);
        if (use > peak) peak = use;
    }
    return peak;
}

int64_t scheduler_peak_tokens(scheduler *s, const seq *extra)
{
    int64_t *pairs = s->scratch_peak; /* (remaining, held) pairs */
    int32_t n = 0;
    for (int32_t i = 0; i <= s->num_running; i++) {
        const seq *q = i < s->num_running ? s->running[i] : extra;
        if (!q) continue;
        int64_t rem = q->max_tokens - q->num_output - q->num_pending;
        if (s->estimate_max_new_tokens > 0 && rem > s->estimate_max_new_tokens) rem = s->estimate_max_new_tokens;
        pairs[2 * n] = rem > 0 ? rem : 0;
        pairs[2 * n + 1] = seq_len(q);
        n++;
    }
    return scheduler_peak_of(pairs, n);
}

static int scheduler_in_batch(const scheduler *s, const seq *q)
{
    for (int32_t i = 0; i < s->num_batch; i++)
        if (s->batch[i] == q) return 1;
    return 0;
}

static void scheduler_take(scheduler *s, seq *q, int32_t n)
{
    kv_cache_alloc(&s->kv, n, kv_cache_row(&s->kv, q->row) + q->num_computed);
    q->q_len = n;
    s->batch[s->num_batch++] = q;
    s->num_batch_tokens += n;
}

static int32_t scheduler_chunk(const scheduler *s, const seq *q)
{
    int32_t n = seq_len(q) - q->num_computed;
    const int32_t budget = s->max_batch_tokens - s->num_batch_tokens;
    if (n > s->chunk_size) n = s->chunk_size;
    if (n > budget) n = budget;
    return n;
}

/* Step 1: running sequences; pauses later arrivals when KV is short. */
static void scheduler_schedule_running(scheduler *s)
{
    for (int32_t i = 0; i < s->num_running; i++) {
        seq *q = s->running[i];
        /* its pending token is its last: the step that appends it finishes it */
        if (q->num_pending > 0 && (q->num_output + q->num_pending >= q->max_tokens || seq_len(q) >= s->max_seq_len)) continue;
        const int32_t n = scheduler_chunk(s, q);
        if (n <= 0) break; /* token budget spent: later sequences wait a step */
        int fits = scheduler_make_room(s, n);
        while (!fits) {
            seq *victim = NULL;
            for (int32_t j = s->num_running - 1; j >= 0 && !victim; j--)
                if (s->running[j] != q && !scheduler_in_batch(s, s->running[j])) victim = s->running[j];
            if (!victim) break;
            scheduler_pause(s, victim);
            fits = scheduler_make_room(s, n);
        }
        if (fits) {
            scheduler_take(s, q, n);
        } else if (s->num_batch == 0) {
            /* alone and the pool cannot hold one more token: it ends here, once the token a
             * launched step samples for it is appended */
            if (q->num_pending > 0) continue;
            q->finish = SEQ_FINISH_LENGTH;
            scheduler_release(s, q);
            s->finished_by_capacity[s->num_finished_by_capacity++] = q;
            i--;
        } else {
            scheduler_pause(s, q); /* earlier arrivals in the batch go first */
            i--;
        }
    }
}

/* Step 2: admit waiting sequences in arrival order. */
static void scheduler_schedule_waiting(scheduler *s)
{
    int32_t i = 0;
    while (i < s->num_waiting && s->num_running < s->max_num_seqs && s->num_batch_tokens < s->max_batch_tokens) {
        seq *q = s->waiting[i];
        /* a paused sequence whose last sampled token is not appended yet, or a sample waiting for
         * sample 0's prompt KV, is admitted a step later */
        if (q->num_pending > 0 || (s->rc && q->sample_index > 0 && q->group_prefilled && !*q->group_prefilled)) {
            i++;
            continue;
        }
        if (s->num_running > 0 && scheduler_peak_tokens(s, q) > s->kv.num_slots) break;
        const int32_t row = kv_cache_alloc_row(&s->kv);
        LL_ASSERT(row >= 0); /* rows == max_num_seqs */
        q->row = row;
        if (s->rc) {
            radix_node *node;
            const int32_t hit = radix_cache_match_prefix(s->rc, q->tokens, q->num_tokens - 1, kv_cache_row(&s->kv, row), &node);
            radix_cache_lock(s->rc, node);
            q->node = node;
            q->num_in_tree = q->num_computed = hit;
        }
        const int32_t n = scheduler_chunk(s, q);
        if (n <= 0 || !scheduler_make_room(s, n)) {
            scheduler_drop_kv(s, q);
            break;
        }
        if (q->num_cached_tokens < 0) { /* first admission */
            q->num_cached_tokens = q->num_computed;
            s->num_prompt_tokens += q->num_prompt;
            s->num_cached_prompt_tokens += q->num_computed;
        }
        scheduler_remove_waiting(s, q);
        q->status = SEQ_RUNNING;
        int32_t j = s->num_running;
        while (j > 0 && s->running[j - 1]->arrival > q->arrival) {
            s->running[j] = s->running[j - 1];
            j--;
        }
        s->running[j] = q;
        s->num_running++;
        scheduler_take(s, q, n);
    }
}

void scheduler_schedule(scheduler *s)
{
    s->num_batch = 0;
    s->num_batch_tokens = 0;
    s->num_finished_by_capacity = 0;
    scheduler_schedule_running(s);
    scheduler_schedule_waiting(s);
}

void scheduler_commit(scheduler *s)
{
    for (int32_t i = 0; i < s->num_batch; i++) {
        seq *q = s->batch[i];
        q->num_computed += q->q_len;
        q->q_len = 0;
        if (!q->prefill_done && q->num_computed >= q->num_prompt) {
            q->prefill_done = 1;
            if (q->sample_index == 0 && q->group_prefilled) *q->group_prefilled = 1;
            if (s->rc) scheduler_cache_prefix(s, q);
        } else if (q->recomputing && q->num_computed >= q->num_tokens - 1) {
            q->recomputing = 0; /* rebuilt after a pause: share it again at once */
            if (s->rc) scheduler_cache_prefix(s, q);
        }
    }
}
