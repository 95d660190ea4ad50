/* shm_req.c — the shared-memory request pool; see shm_req.h for the contract.
 *
 * Design: every cross-process handshake is one atomic (state, ref_count, abort_requested,
 * generation, the ring counters); plain fields are published by the release store that
 * follows them and read after the matching acquire load.  Ring sizes are powers of two, so a
 * monotonic counter maps to an index with a mask and never needs to wrap.
 * Invariants: 0 <= write - read <= capacity for both rings; a FREE slot has ref_count 0; only
 * the claimer touches a CLAIMED slot's plain fields.
 */
#include "engine/shm_req.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static_assert(sizeof(sampling_params_t) == 64 && offsetof(sampling_params_t, seed) == 56,
              "sampling_params_t changed: the slot layout changed, bump SHM_REQ_LAYOUT_VERSION");
static_assert(SHM_REQ_MAX_TOP_LOGPROBS == SAMPLING_MAX_LOGPROBS, "top logprobs capacity");
static_assert(sizeof(shm_req_token_record) == 192, "token record layout");
static_assert(offsetof(shm_req_token_record, top_ids) == 16 && offsetof(shm_req_token_record, top_logprobs) == 96 &&
              offsetof(shm_req_token_record, text_offset) == 176, "token record layout");
static_assert(sizeof(shm_req) == 1728, "slot layout");
static_assert(offsetof(shm_req, generation) == 16 && offsetof(shm_req, request_id) == 32, "slot layout");
static_assert(offsetof(shm_req, params) == 64 && offsetof(shm_req, num_stop_strings) == 128, "slot layout");
static_assert(offsetof(shm_req, stop_token_ids) == 152 && offsetof(shm_req, stop_strings) == 216, "slot layout");
static_assert(offsetof(shm_req, grammar_kind) == 472 && offsetof(shm_req, grammar_bytes) == 476, "slot layout");
static_assert(offsetof(shm_req, finish_reason) == 480 && offsetof(shm_req, claim_us) == 496, "slot layout");
static_assert(offsetof(shm_req, error_message) == 536, "slot layout");
static_assert(offsetof(shm_req, record_write) == 1600 && offsetof(shm_req, record_read) == 1664, "slot layout");
static_assert(sizeof(shm_req_pool_header) == 128 && offsetof(shm_req_pool_header, claim_hint) == 64 &&
              offsetof(shm_req_pool_header, submit_counter) == 72, "pool header layout");
static_assert(offsetof(shm_req_pool_header, grammars_offset) == 56 &&
              offsetof(shm_req_pool_header, max_grammar_bytes) == 80, "pool header layout");

/* The plain fields reset at claim: from submit_seq up to the producer line. */
#define SHM_REQ_RESET_BEGIN offsetof(shm_req, submit_seq)
#define SHM_REQ_RESET_END offsetof(shm_req, record_write)

#define SHM_REQ_ALIGN 64u

static uint64_t shm_req_align_up(uint64_t x) { return (x + SHM_REQ_ALIGN - 1) & ~(uint64_t)(SHM_REQ_ALIGN - 1); }
static int shm_req_is_pow2(uint32_t x) { return x != 0 && (x & (x - 1)) == 0; }

int64_t shm_req_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Region offsets for a config; returns the total size. */
static uint64_t shm_req_layout(const shm_req_pool_config *cfg, shm_req_pool_header *h)
{
    uint64_t n = (uint64_t)cfg->num_slots;
    h->slots_offset = shm_req_align_up(sizeof(shm_header) + sizeof(shm_req_pool_header));
    h->prompts_offset = shm_req_align_up(h->slots_offset + n * sizeof(shm_req));
    h->records_offset = shm_req_align_up(h->prompts_offset + n * (uint64_t)cfg->max_prompt_tokens * sizeof(int32_t));
    h->texts_offset = shm_req_align_up(h->records_offset + n * cfg->num_ring_records * sizeof(shm_req_token_record));
    h->grammars_offset = shm_req_align_up(h->texts_offset + n * cfg->num_ring_text_bytes);
    return shm_req_align_up(h->grammars_offset + n * cfg->max_grammar_bytes);
}

static status_t shm_req_check_config(const shm_req_pool_config *cfg)
{
    if (cfg->num_slots < 1 || cfg->num_slots > SHM_REQ_MAX_SLOTS)
        return status_set(STATUS_INVALID_ARG, "request pool num_slots must be in [1, %d], got %d", SHM_REQ_MAX_SLOTS,
                          cfg->num_slots);
    if (cfg->max_prompt_tokens < 1)
        return status_set(STATUS_INVALID_ARG, "request pool max_prompt_tokens must be >= 1, got %d",
                          cfg->max_prompt_tokens);
    if (!shm_req_is_pow2(cfg->num_ring_records) || cfg->num_ring_records < 2 || cfg->num_ring_records > (1u << 20))
        return status_set(STATUS_INVALID_ARG, "request pool num_ring_records must be a power of two in [2, 2^20], "
                          "got %u", cfg->num_ring_records);
    if (!shm_req_is_pow2(cfg->num_ring_text_bytes) || cfg->num_ring_text_bytes < 64 ||
        cfg->num_ring_text_bytes > (1u << 24))
        return status_set(STATUS_INVALID_ARG, "request pool num_ring_text_bytes must be a power of two in "
                          "[64, 2^24], got %u", cfg->num_ring_text_bytes);
    if (cfg->max_grammar_bytes % SHM_REQ_ALIGN != 0 || cfg->max_grammar_bytes > SHM_REQ_MAX_GRAMMAR_BYTES)
        return status_set(STATUS_INVALID_ARG, "request pool max_grammar_bytes must be 0 or a multiple of 64 in "
                          "[64, 2^24], got %u", cfg->max_grammar_bytes);
    return STATUS_OK;
}

/* Fills the process-local pointers from the mapping. */
static void shm_req_pool_bind(shm_req_pool *pool)
{
    uint8_t *base = pool->seg.base;
    shm_req_pool_header *h = (shm_req_pool_header *)(base + sizeof(shm_header));
    pool->header = h;
    pool->slots = (shm_req *)(base + h->slots_offset);
    pool->prompts = (int32_t *)(base + h->prompts_offset);
    pool->records = (shm_req_token_record *)(base + h->records_offset);
    pool->texts = base + h->texts_offset;
    pool->grammars = (char *)(base + h->grammars_offset);
    pool->max_grammar_bytes = h->max_grammar_bytes;
    pool->num_slots = h->num_slots;
    pool->max_prompt_tokens = h->max_prompt_tokens;
    pool->num_ring_records = h->num_ring_records;
    pool->num_ring_text_bytes = h->num_ring_text_bytes;
}

status_t shm_req_pool_create(shm_req_pool *pool, const char *name, const shm_req_pool_config *cfg)
{
    memset(pool, 0, sizeof(*pool));
    STATUS_TRY(shm_req_check_config(cfg));
    shm_req_pool_header layout;
    memset(&layout, 0, sizeof layout);
    uint64_t total = shm_req_layout(cfg, &layout);
    STATUS_TRY(shm_create_segment(&pool->seg, name, (size_t)total, SHM_KIND_REQ_POOL, SHM_REQ_LAYOUT_VERSION));
    shm_req_pool_header *h = (shm_req_pool_header *)((uint8_t *)pool->seg.base + sizeof(shm_header));
    h->num_slots = cfg->num_slots;
    h->max_prompt_tokens = cfg->max_prompt_tokens;
    h->num_ring_records = cfg->num_ring_records;
    h->num_ring_text_bytes = cfg->num_ring_text_bytes;
    h->max_grammar_bytes = cfg->max_grammar_bytes;
    h->slot_bytes = sizeof(shm_req);
    h->record_bytes = sizeof(shm_req_token_record);
    h->slots_offset = layout.slots_offset;
    h->prompts_offset = layout.prompts_offset;
    h->records_offset = layout.records_offset;
    h->texts_offset = layout.texts_offset;
    h->grammars_offset = layout.grammars_offset;
    pool->is_creator = 1;
    shm_req_pool_bind(pool);
    /* The mapping is zero-filled: every slot is FREE with ref_count 0. */
    for (int32_t i = 0; i < pool->num_slots; i++) pool->slots[i].slot_index = (uint32_t)i;
    shm_mark_ready(&pool->seg);
    return STATUS_OK;
}

status_t shm_req_pool_attach(shm_req_pool *pool, const char *name)
{
    memset(pool, 0, sizeof(*pool));
    STATUS_TRY(shm_attach_segment(&pool->seg, name, SHM_KIND_REQ_POOL, SHM_REQ_LAYOUT_VERSION));
    shm_req_pool_header *h = (shm_req_pool_header *)((uint8_t *)pool->seg.base + sizeof(shm_header));
    shm_req_pool_config cfg = {h->num_slots, h->max_prompt_tokens, h->num_ring_records, h->num_ring_text_bytes,
                               h->max_grammar_bytes};
    shm_req_pool_header expect;
    memset(&expect, 0, sizeof expect);
    status_t st = STATUS_OK;
    if (pool->seg.total_bytes < sizeof(shm_header) + sizeof(shm_req_pool_header))
        st = status_set(STATUS_FORMAT, "request pool %s: segment too small for the pool header", name);
    else if (shm_req_check_config(&cfg) != STATUS_OK) {
        char why[256]; /* status_message() is the buffer status_set writes: copy it first */
        snprintf(why, sizeof why, "%s", status_message());
        st = status_set(STATUS_FORMAT, "request pool %s: corrupt header: %s", name, why);
    }
    else if (h->slot_bytes != sizeof(shm_req) || h->record_bytes != sizeof(shm_req_token_record))
        st = status_set(STATUS_FORMAT, "request pool %s: slot/record sizes %u/%u, this build has %zu/%zu", name,
                        h->slot_bytes, h->record_bytes, sizeof(shm_req), sizeof(shm_req_token_record));
    else if (shm_req_layout(&cfg, &expect) != pool->seg.total_bytes || expect.slots_offset != h->slots_offset ||
             expect.prompts_offset != h->prompts_offset || expect.records_offset != h->records_offset ||
             expect.texts_offset != h->texts_offset || expect.grammars_offset != h->grammars_offset)
        st = status_set(STATUS_FORMAT, "request pool %s: region offsets do not match its configuration", name);
    if (st != STATUS_OK) {
        shm_detach_segment(&pool->seg);
        return st;
    }
    shm_req_pool_bind(pool);
    return STATUS_OK;
}

void shm_req_pool_detach(shm_req_pool *pool)
{
    shm_detach_segment(&pool->seg);
    pool->header = NULL;
    pool->slots = NULL;
    pool->prompts = NULL;
    pool->records = NULL;
    pool->texts = NULL;
    pool->grammars = NULL;
    pool->num_slots = 0;
    pool->max_grammar_bytes = 0;
}

status_t shm_req_pool_destroy(shm_req_pool *pool)
{
    char name[SHM_NAME_MAX_CHARS];
    memcpy(name, pool->seg.name, sizeof name);
    shm_req_pool_detach(pool);
    pool->seg.name[0] = '\0'; /* a second destroy is a no-op */
    if (name[0] == '\0') return STATUS_OK;
    return shm_unlink_segment(name);
}

int32_t shm_req_pool_num_in_use(const shm_req_pool *pool)
{
    return (int32_t)atomic_load_explicit(&pool->header->num_in_use, memory_order_acquire);
}

/* --- lifecycle --- */

int32_t shm_req_claim(shm_req_pool *pool)
{
    uint32_t n = (uint32_t)pool->num_slots;
    uint32_t start = atomic_load_explicit(&pool->header->claim_hint, memory_order_relaxed) % n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = (start + i) % n;
        shm_req *r = &pool->slots[s];
        uint32_t expected = SHM_REQ_STATE_FREE;
        if (atomic_load_explicit(&r->state, memory_order_relaxed) != SHM_REQ_STATE_FREE) continue;
        if (!atomic_compare_exchange_strong_explicit(&r->state, &expected, SHM_REQ_STATE_CLAIMED,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        LL_ASSERT(atomic_load_explicit(&r->ref_count, memory_order_relaxed) == 0);
        atomic_store_explicit(&pool->header->claim_hint, (s + 1) % n, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->generation, 1, memory_order_relaxed);
        memset((uint8_t *)r + SHM_REQ_RESET_BEGIN, 0, SHM_REQ_RESET_END - SHM_REQ_RESET_BEGIN);
        sampling_params_default(&r->params);
        r->num_samples = 1;
        r->claim_us = shm_req_now_us();
        atomic_store_explicit(&r->record_write, 0, memory_order_relaxed);
        atomic_store_explicit(&r->text_write, 0, memory_order_relaxed);
        atomic_store_explicit(&r->record_read, 0, memory_order_relaxed);
        atomic_store_explicit(&r->text_read, 0, memory_order_relaxed);
        atomic_store_explicit(&r->abort_requested, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&pool->header->num_in_use, 1, memory_order_relaxed);
        /* Publishes the reset (and the new generation) to try_acquire's acquire CAS. */
        atomic_store_explicit(&r->ref_count, 1, memory_order_release);
        return (int32_t)s;
    }
    return -1;
}

static shm_req *shm_req_claimed(const shm_req_pool *pool, int32_t slot)
{
    shm_req *r = shm_req_get(pool, slot);
    LL_ASSERT(atomic_load_explicit(&r->state, memory_order_relaxed) == SHM_REQ_STATE_CLAIMED);
    return r;
}

status_t shm_req_set_request(shm_req_pool *pool, int32_t slot, int64_t request_id, int64_t group_id,
                             int32_t sample_index, const sampling_params_t *params, uint32_t flags)
{
    shm_req *r = shm_req_claimed(pool, slot);
    STATUS_TRY(sampling_params_validate(params));
    if (sample_index < 0 || sample_index >= params->n)
        return status_set(STATUS_INVALID_ARG, "sample_index must be in [0, n=%d), got %d", params->n, sample_index);
    uint32_t known = SHM_REQ_FLAG_INCLUDE_STOP_STR_IN_OUTPUT | SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS; /* the grammar
                                                                                      * bit: set_grammar's */
    if (flags & ~known) return status_set(STATUS_INVALID_ARG, "request flags 0x%x has unknown bits", flags);
    r->request_id = request_id;
    r->group_id = group_id;
    r->sample_index = sample_index;
    r->num_samples = params->n;
    r->params = *params;
    r->flags = flags | (r->flags & SHM_REQ_FLAG_GRAMMAR_WHITESPACE);
    return STATUS_OK;
}

status_t shm_req_set_prompt(shm_req_pool *pool, int32_t slot, const int32_t *ids, int32_t num_ids)
{
    shm_req *r = shm_req_claimed(pool, slot);
    if (num_ids < 1) return status_set(STATUS_INVALID_ARG, "prompt must not be empty");
    if (num_ids > pool->max_prompt_tokens)
        return status_set(STATUS_INVALID_ARG, "prompt has %d tokens, the maximum is %d (max_prompt_tokens)", num_ids,
                          pool->max_prompt_tokens);
    memcpy(shm_req_prompt(pool, slot), ids, (size_t)num_ids * sizeof(int32_t));
    r->num_prompt_tokens = num_ids;
    return STATUS_OK;
}

status_t shm_req_set_stop(shm_req_pool *pool, int32_t slot, const char *const *strings,
                          const int32_t *string_bytes, int32_t num_strings, const int32_t *token_ids,
                          int32_t num_token_ids)
{
    shm_req *r = shm_req_claimed(pool, slot);
    if (num_strings < 0 || num_strings > SHM_REQ_MAX_STOP_STRINGS)
        return status_set(STATUS_INVALID_ARG, "stop: at most %d stop strings, got %d", SHM_REQ_MAX_STOP_STRINGS,
                          num_strings);
    for (int32_t i = 0; i < num_strings; i++)
        if (string_bytes[i] < 1 || string_bytes[i] > SHM_REQ_MAX_STOP_STRING_BYTES)
            return status_set(STATUS_INVALID_ARG, "stop[%d] must be 1..%d bytes (UTF-8), got %d", i,
                              SHM_REQ_MAX_STOP_STRING_BYTES, string_bytes[i]);
    if (num_token_ids < 0 || num_token_ids > SHM_REQ_MAX_STOP_TOKEN_IDS)
        return status_set(STATUS_INVALID_ARG, "stop_token_ids: at most %d ids, got %d", SHM_REQ_MAX_STOP_TOKEN_IDS,
                          num_token_ids);
    for (int32_t i = 0; i < num_token_ids; i++)
        if (token_ids[i] < 0)
            return status_set(STATUS_INVALID_ARG, "stop_token_ids[%d] must be >= 0, got %d", i, token_ids[i]);
    memset(r->stop_strings, 0, sizeof r->stop_strings);
    memset(r->stop_string_bytes, 0, sizeof r->stop_string_bytes);
    memset(r->stop_token_ids, 0, sizeof r->stop_token_ids);
    for (int32_t i = 0; i < num_strings; i++) {
        memcpy(r->stop_strings[i], strings[i], (size_t)string_bytes[i]);
        r->stop_string_bytes[i] = (uint32_t)string_bytes[i];
    }
    if (num_token_ids > 0) memcpy(r->stop_token_ids, token_ids, (size_t)num_token_ids * sizeof(int32_t));
    r->num_stop_strings = (uint32_t)num_strings;
    r->num_stop_token_ids = (uint32_t)num_token_ids;
    return STATUS_OK;
}

static const char *const shm_req_grammar_kind_names[SHM_REQ_GRAMMAR_NUM_KINDS] = {
    [SHM_REQ_GRAMMAR_JSON_SCHEMA] = "json_schema", [SHM_REQ_GRAMMAR_REGEX] = "regex",
    [SHM_REQ_GRAMMAR_CHOICE] = "choice", [SHM_REQ_GRAMMAR_EBNF] = "ebnf"};

const char *shm_req_grammar_kind_name(uint32_t kind)
{
    return kind < SHM_REQ_GRAMMAR_NUM_KINDS ? shm_req_grammar_kind_names[kind] : NULL;
}

status_t shm_req_grammar_kind_from_name(const char *name, uint32_t *kind)
{
    for (uint32_t k = 1; k < SHM_REQ_GRAMMAR_NUM_KINDS; k++)
        if (strcmp(name, shm_req_grammar_kind_names[k]) == 0) {
            *kind = k;
            return STATUS_OK;
        }
    return status_set(STATUS_INVALID_ARG, "grammar_kind must be one of json_schema, regex, choice, ebnf, got '%.40s'",
                      name);
}

status_t shm_req_set_grammar(shm_req_pool *pool, int32_t slot, uint32_t kind, const char *text, size_t num_bytes,
                             int whitespace)
{
    shm_req *r = shm_req_claimed(pool, slot);
    if (shm_req_grammar_kind_name(kind) == NULL)
        return status_set(STATUS_INVALID_ARG, "grammar_kind %u is not a grammar kind", kind);
    if (num_bytes >= pool->max_grammar_bytes)
        return status_set(STATUS_INVALID_ARG, "grammar spec is %zu bytes, more than the %u bytes a request slot holds "
                          "(--max-grammar-bytes %u)", num_bytes, pool->max_grammar_bytes ? pool->max_grammar_bytes - 1 : 0,
                          pool->max_grammar_bytes);
    char *dst = (char *)shm_req_grammar(pool, slot);
    if (num_bytes > 0) memcpy(dst, text, num_bytes);
    dst[num_bytes] = '\0';
    r->grammar_kind = kind;
    r->grammar_bytes = (uint32_t)num_bytes;
    if (whitespace) r->flags |= SHM_REQ_FLAG_GRAMMAR_WHITESPACE;
    else r->flags &= ~(uint32_t)SHM_REQ_FLAG_GRAMMAR_WHITESPACE;
    return STATUS_OK;
}

void shm_req_submit(shm_req_pool *pool, int32_t slot)
{
    shm_req *r = shm_req_claimed(pool, slot);
    LL_ASSERT(r->num_prompt_tokens > 0);
    r->submit_seq = atomic_fetch_add_explicit(&pool->header->submit_counter, 1, memory_order_relaxed) + 1;
    r->submit_us = shm_req_now_us();
    atomic_store_explicit(&r->state, SHM_REQ_STATE_SUBMITTED, memory_order_release);
}

uint32_t shm_req_get_state(const shm_req_pool *pool, int32_t slot)
{
    return atomic_load_explicit(&shm_req_get(pool, slot)->state, memory_order_acquire);
}

uint64_t shm_req_get_generation(const shm_req_pool *pool, int32_t slot)
{
    return atomic_load_explicit(&shm_req_get(pool, slot)->generation, memory_order_acquire);
}

uint32_t shm_req_get_ref_count(const shm_req_pool *pool, int32_t slot)
{
    return atomic_load_explicit(&shm_req_get(pool, slot)->ref_count, memory_order_acquire);
}

int shm_req_try_acquire(shm_req_pool *pool, int32_t slot, uint64_t generation)
{
    shm_req *r = shm_req_get(pool, slot);
    uint32_t refs = atomic_load_explicit(&r->ref_count, memory_order_acquire);
    do {
        if (refs == 0) return 0;
    } while (!atomic_compare_exchange_weak_explicit(&r->ref_count, &refs, refs + 1, memory_order_acq_rel,
                                                    memory_order_acquire));
    if (atomic_load_explicit(&r->generation, memory_order_acquire) != generation) {
        shm_req_release(pool, slot); /* a reused slot: give back the reference we just took */
        return 0;
    }
    return 1;
}

void shm_req_add_ref(shm_req_pool *pool, int32_t slot)
{
    uint32_t prev = atomic_fetch_add_explicit(&shm_req_get(pool, slot)->ref_count, 1, memory_order_relaxed);
    LL_ASSERT(prev > 0);
}

int shm_req_release(shm_req_pool *pool, int32_t slot)
{
    shm_req *r = shm_req_get(pool, slot);
    uint32_t prev = atomic_fetch_sub_explicit(&r->ref_count, 1, memory_order_acq_rel);
    LL_ASSERT(prev > 0);
    if (prev != 1) return 0;
    atomic_fetch_sub_explicit(&pool->header->num_in_use, 1, memory_order_relaxed);
    atomic_store_explicit(&r->state, SHM_REQ_STATE_FREE, memory_order_release);
    return 1;
}

int shm_req_mark_running(shm_req_pool *pool, int32_t slot)
{
    shm_req *r = shm_req_get(pool, slot);
    uint32_t expected = SHM_REQ_STATE_SUBMITTED;
    if (!atomic_compare_exchange_strong_explicit(&r->state, &expected, SHM_REQ_STATE_RUNNING, memory_order_acq_rel,
                                                 memory_order_acquire))
        return 0;
    r->start_us = shm_req_now_us();
    return 1;
}

void shm_req_finish(shm_req_pool *pool, int32_t slot, uint32_t finish_reason, uint32_t stop_reason_kind,
                    int32_t stop_reason_value)
{
    shm_req *r = shm_req_get(pool, slot);
    uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
    LL_ASSERT(state == SHM_REQ_STATE_SUBMITTED || state == SHM_REQ_STATE_RUNNING);
    LL_ASSERT(finish_reason >= SHM_REQ_FINISH_STOP && finish_reason <= SHM_REQ_FINISH_ERROR);
    LL_ASSERT(stop_reason_kind <= SHM_REQ_STOP_STRING);
    r->finish_reason = finish_reason;
    r->stop_reason_kind = stop_reason_kind;
    r->stop_reason_value = stop_reason_value;
    r->finish_us = shm_req_now_us();
    atomic_store_explicit(&r->state, SHM_REQ_STATE_FINISHED, memory_order_release);
}

void shm_req_finish_error(shm_req_pool *pool, int32_t slot, const char *message)
{
    shm_req *r = shm_req_get(pool, slot);
    size_t n = strlen(message);
    if (n >= sizeof r->error_message) n = sizeof r->error_message - 1;
    memcpy(r->error_message, message, n);
    r->error_message[n] = '\0';
    shm_req_finish(pool, slot, SHM_REQ_FINISH_ERROR, SHM_REQ_STOP_NONE, 0);
}

/* --- abort --- */

void shm_req_set_abort(shm_req_pool *pool, int32_t slot)
{
    atomic_store_explicit(&shm_req_get(pool, slot)->abort_requested, 1, memory_order_release);
}

int shm_req_is_abort_requested(const shm_req_pool *pool, int32_t slot)
{
    return atomic_load_explicit(&shm_req_get(pool, slot)->abort_requested, memory_order_acquire) != 0;
}

/* --- output ring --- */

static shm_req_token_record *shm_req_ring_records(const shm_req_pool *pool, int32_t slot)
{
    return pool->records + (int64_t)slot * pool->num_ring_records;
}

static uint8_t *shm_req_ring_text(const shm_req_pool *pool, int32_t slot)
{
    return pool->texts + (int64_t)slot * pool->num_ring_text_bytes;
}

int shm_req_can_push(const shm_req_pool *pool, int32_t slot, uint32_t num_records, uint32_t num_text_bytes)
{
    shm_req *r = shm_req_get(pool, slot);
    uint64_t used_records = atomic_load_explicit(&r->record_write, memory_order_relaxed) -
                            atomic_load_explicit(&r->record_read, memory_order_acquire);
    uint64_t used_text = atomic_load_explicit(&r->text_write, memory_order_relaxed) -
                         atomic_load_explicit(&r->text_read, memory_order_acquire);
    return used_records + num_records <= pool->num_ring_records && used_text + num_text_bytes <= pool->num_ring_text_bytes;
}

/* Copies n bytes into the text ring at stream position pos (wrapping). */
static void shm_req_text_copy_in(const shm_req_pool *pool, int32_t slot, uint64_t pos, const char *src, uint32_t n)
{
    uint8_t *ring = shm_req_ring_text(pool, slot);
    uint32_t cap = pool->num_ring_text_bytes;
    uint32_t at = (uint32_t)(pos & (cap - 1));
    uint32_t first = n < cap - at ? n : cap - at;
    memcpy(ring + at, src, first);
    if (n > first) memcpy(ring, src + first, n - first);
}

static void shm_req_text_copy_out(const shm_req_pool *pool, int32_t slot, uint64_t pos, char *dst, uint32_t n)
{
    const uint8_t *ring = shm_req_ring_text(pool, slot);
    uint32_t cap = pool->num_ring_text_bytes;
    uint32_t at = (uint32_t)(pos & (cap - 1));
    uint32_t first = n < cap - at ? n : cap - at;
    memcpy(dst, ring + at, first);
    if (n > first) memcpy(dst + first, ring, n - first);
}

int shm_req_push_token(shm_req_pool *pool, int32_t slot, const shm_req_token_record *rec, const char *text,
                       uint32_t text_bytes)
{
    shm_req *r = shm_req_get(pool, slot);
    LL_ASSERT(text_bytes <= pool->num_ring_text_bytes);
    LL_ASSERT(rec->num_top >= 0 && rec->num_top <= SHM_REQ_MAX_TOP_LOGPROBS);
    uint64_t w = atomic_load_explicit(&r->record_write, memory_order_relaxed);
    uint64_t tw = atomic_load_explicit(&r->text_write, memory_order_relaxed);
    if (w - atomic_load_explicit(&r->record_read, memory_order_acquire) >= pool->num_ring_records) return 0;
    if (tw - atomic_load_explicit(&r->text_read, memory_order_acquire) + text_bytes > pool->num_ring_text_bytes)
        return 0;
    if (text_bytes > 0) shm_req_text_copy_in(pool, slot, tw, text, text_bytes);
    shm_req_token_record *dst = &shm_req_ring_records(pool, slot)[w & (pool->num_ring_records - 1)];
    *dst = *rec;
    dst->text_offset = tw;
    dst->text_bytes = text_bytes;
    if (w == 0) r->first_token_us = shm_req_now_us();
    atomic_store_explicit(&r->text_write, tw + text_bytes, memory_order_release);
    atomic_store_explicit(&r->record_write, w + 1, memory_order_release);
    return 1;
}

int shm_req_push_text(shm_req_pool *pool, int32_t slot, const char *text, uint32_t text_bytes)
{
    shm_req *r = shm_req_get(pool, slot);
    LL_ASSERT(text_bytes <= pool->num_ring_text_bytes);
    uint64_t tw = atomic_load_explicit(&r->text_write, memory_order_relaxed);
    if (tw - atomic_load_explicit(&r->text_read, memory_order_acquire) + text_bytes > pool->num_ring_text_bytes)
        return 0;
    if (text_bytes > 0) shm_req_text_copy_in(pool, slot, tw, text, text_bytes);
    atomic_store_explicit(&r->text_write, tw + text_bytes, memory_order_release);
    return 1;
}

int32_t shm_req_pop_tokens(shm_req_pool *pool, int32_t slot, shm_req_token_record *out, int32_t max_records)
{
    shm_req *r = shm_req_get(pool, slot);
    uint64_t rd = atomic_load_explicit(&r->record_read, memory_order_relaxed);
    uint64_t avail = atomic_load_explicit(&r->record_write, memory_order_acquire) - rd;
    LL_ASSERT(avail <= pool->num_ring_records);
    int32_t n = max_records < 0 ? 0 : (avail < (uint64_t)max_records ? (int32_t)avail : max_records);
    const shm_req_token_record *ring = shm_req_ring_records(pool, slot);
    for (int32_t i = 0; i < n; i++) out[i] = ring[(rd + (uint64_t)i) & (pool->num_ring_records - 1)];
    if (n > 0) atomic_store_explicit(&r->record_read, rd + (uint64_t)n, memory_order_release);
    return n;
}

static int shm_req_is_utf8_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

uint32_t shm_req_pop_text(shm_req_pool *pool, int32_t slot, char *out, uint32_t max_bytes)
{
    shm_req *r = shm_req_get(pool, slot);
    uint64_t rd = atomic_load_explicit(&r->text_read, memory_order_relaxed);
    uint64_t avail = atomic_load_explicit(&r->text_write, memory_order_acquire) - rd;
    LL_ASSERT(avail <= pool->num_ring_text_bytes);
    uint32_t n = avail < max_bytes ? (uint32_t)avail : max_bytes;
    if (n < avail) {
        /* Cutting inside the stream: back off to the start of the sequence the cut falls in
         * (at most 3 continuation bytes); bytes that are not UTF-8 are cut anywhere. */
        const uint8_t *ring = shm_req_ring_text(pool, slot);
        uint32_t mask = pool->num_ring_text_bytes - 1;
        uint32_t cut = n;
        for (int k = 0; k < 3 && cut > 0 && shm_req_is_utf8_continuation(ring[(rd + cut) & mask]); k++) cut--;
        if (!shm_req_is_utf8_continuation(ring[(rd + cut) & mask])) n = cut;
    }
    if (n == 0) return 0;
    shm_req_text_copy_out(pool, slot, rd, out, n);
    atomic_store_explicit(&r->text_read, rd + n, memory_order_release);
    return n;
}

uint32_t shm_req_num_pending_tokens(const shm_req_pool *pool, int32_t slot)
{
    shm_req *r = shm_req_get(pool, slot);
    uint64_t rd = atomic_load_explicit(&r->record_read, memory_order_acquire); /* read first: never above write */
    return (uint32_t)(atomic_load_explicit(&r->record_write, memory_order_acquire) - rd);
}

uint32_t shm_req_num_pending_text_bytes(const shm_req_pool *pool, int32_t slot)
{
    shm_req *r = shm_req_get(pool, slot);
    uint64_t rd = atomic_load_explicit(&r->text_read, memory_order_acquire);
    return (uint32_t)(atomic_load_explicit(&r->text_write, memory_order_acquire) - rd);
}
