/* test_shm_req.c — engine/shm_req: config checks, attach checks, claim until full (also from
 * concurrent forked processes), request fields and their validation, reference counting across
 * fork() (the last release frees, a stale generation is refused), the output ring (full, wrap,
 * all-or-nothing push, UTF-8-safe text pops), a forked producer streaming 100k records to the
 * parent with back-pressure, abort/finish visibility across processes.  Segments are named
 * "/lightllm-ut<pid>-<what>"; each test checks none is left. */
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/shm.h"
#include "engine/io_buffer.h"
#include "engine/shm_req.h"
#include "test_shm_util.h"
#include "test_util.h"

static int shm_req_test_past(int64_t deadline_us) { return shm_req_now_us() > deadline_us; }

static shm_req_pool_config shm_req_test_config(int32_t num_slots, int32_t max_prompt, uint32_t records, uint32_t text)
{
    shm_req_pool_config c = {num_slots, max_prompt, records, text, 0};
    return c;
}

/* Claims a slot, writes a small valid request and submits it. */
static int32_t shm_req_test_submit_one(shm_req_pool *pool, int64_t request_id)
{
    int32_t slot = shm_req_claim(pool);
    CHECK(slot >= 0);
    if (slot < 0) return slot;
    sampling_params_t p;
    sampling_params_default(&p);
    CHECK_EQ_INT(shm_req_set_request(pool, slot, request_id, request_id, 0, &p, 0), STATUS_OK);
    int32_t ids[3] = {11, 12, 13};
    CHECK_EQ_INT(shm_req_set_prompt(pool, slot, ids, 3), STATUS_OK);
    shm_req_submit(pool, slot);
    return slot;
}

TEST_CASE(shm_req_pool_config_checks)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "cfg");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(0, 16, 8, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "num_slots") != NULL);
    c = shm_req_test_config(4, 0, 8, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "max_prompt_tokens") != NULL);
    c = shm_req_test_config(4, 16, 12, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "num_ring_records") != NULL);
    c = shm_req_test_config(4, 16, 8, 32);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "num_ring_text_bytes") != NULL);
    shm_req_pool_detach(&pool); /* safe after a failed create */
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_pool_attach_checks)
{
    char name[SHM_NAME_MAX_CHARS], io_name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "attach");
    test_shm_name(io_name, sizeof io_name, "io");
    shm_req_pool pool, other;
    shm_req_pool_config c = shm_req_test_config(3, 100, 16, 128);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    CHECK_EQ_INT(shm_req_pool_attach(&other, name), STATUS_OK);
    CHECK_EQ_INT(other.num_slots, 3);
    CHECK_EQ_INT(other.max_prompt_tokens, 100);
    CHECK_EQ_INT(other.num_ring_records, 16);
    CHECK_EQ_INT(other.num_ring_text_bytes, 128);
    CHECK_EQ_INT(other.slots[2].slot_index, 2);
    CHECK_EQ_INT(shm_req_get_state(&other, 1), SHM_REQ_STATE_FREE);
    /* every region is 64-byte aligned and inside the segment */
    CHECK_EQ_INT(other.header->slots_offset % 64, 0);
    CHECK_EQ_INT(other.header->prompts_offset % 64, 0);
    CHECK_EQ_INT(other.header->records_offset % 64, 0);
    CHECK_EQ_INT(other.header->texts_offset % 64, 0);
    CHECK(other.header->texts_offset + 3 * 128 <= other.seg.total_bytes);
    shm_req_pool_detach(&other);

    /* another layout version: refused, with both versions in the message */
    shm_get_header(&pool.seg)->layout_version = SHM_REQ_LAYOUT_VERSION + 1;
    CHECK_EQ_INT(shm_req_pool_attach(&other, name), STATUS_FORMAT);
    CHECK(strstr(status_message(), "layout version") != NULL);
    shm_get_header(&pool.seg)->layout_version = SHM_REQ_LAYOUT_VERSION;
    /* a corrupt geometry */
    pool.header->num_ring_records = 17;
    CHECK_EQ_INT(shm_req_pool_attach(&other, name), STATUS_FORMAT);
    CHECK(strstr(status_message(), "corrupt") != NULL);
    pool.header->num_ring_records = 16;
    pool.header->prompts_offset += 64;
    CHECK_EQ_INT(shm_req_pool_attach(&other, name), STATUS_FORMAT);
    pool.header->prompts_offset -= 64;
    /* an io buffer is not a request pool */
    io_buffer io;
    CHECK_EQ_INT(io_buffer_create(&io, io_name, 8), STATUS_OK);
    CHECK_EQ_INT(shm_req_pool_attach(&other, io_name), STATUS_FORMAT);
    CHECK(strstr(status_message(), "io buffer") != NULL);
    CHECK_EQ_INT(io_buffer_destroy(&io), STATUS_OK);
    /* missing */
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(shm_req_pool_attach(&other, name), STATUS_NOT_FOUND);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_claim_until_full)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "full");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(5, 8, 4, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    int seen[5] = {0};
    for (int i = 0; i < 5; i++) {
        int32_t s = shm_req_claim(&pool);
        CHECK(s >= 0 && s < 5);
        if (s < 0 || s >= 5) continue;
        seen[s]++;
        CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_CLAIMED);
        CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 1);
        CHECK_EQ_INT(shm_req_get_generation(&pool, s), 1);
    }
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK_EQ_INT(shm_req_pool_num_in_use(&pool), 5);
    CHECK_EQ_INT(shm_req_claim(&pool), -1);
    CHECK_EQ_INT(shm_req_claim(&pool), -1);
    /* freeing one makes exactly that one claimable again, with a new generation */
    CHECK_EQ_INT(shm_req_release(&pool, 2), 1);
    CHECK_EQ_INT(shm_req_get_state(&pool, 2), SHM_REQ_STATE_FREE);
    CHECK_EQ_INT(shm_req_pool_num_in_use(&pool), 4);
    CHECK_EQ_INT(shm_req_claim(&pool), 2);
    CHECK_EQ_INT(shm_req_get_generation(&pool, 2), 2);
    CHECK_EQ_INT(shm_req_claim(&pool), -1);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(shm_req_release(&pool, i), 1);
    CHECK_EQ_INT(shm_req_pool_num_in_use(&pool), 0);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_claim_concurrent_processes)
{
    enum { NUM_SLOTS = 64, NUM_CHILDREN = 4 };
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "race");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(NUM_SLOTS, 8, 4, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    pid_t pids[NUM_CHILDREN];
    for (int k = 0; k < NUM_CHILDREN; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            shm_req_pool mine;
            if (shm_req_pool_attach(&mine, name) != STATUS_OK) _exit(255);
            int claimed = 0;
            for (int32_t s; (s = shm_req_claim(&mine)) >= 0;) {
                shm_req_get(&mine, s)->request_id = getpid(); /* the claimer alone writes a CLAIMED slot */
                claimed++;
                sched_yield();
            }
            shm_req_pool_detach(&mine);
            _exit(claimed);
        }
    }
    int total = 0;
    for (int k = 0; k < NUM_CHILDREN; k++) {
        int claimed = test_shm_wait(pids[k], 10000);
        CHECK(claimed >= 0 && claimed <= NUM_SLOTS);
        total += claimed;
        int owned = 0;
        for (int s = 0; s < NUM_SLOTS; s++) owned += shm_req_get(&pool, s)->request_id == pids[k];
        CHECK_EQ_INT(owned, claimed); /* no slot went to two children */
    }
    CHECK_EQ_INT(total, NUM_SLOTS);
    CHECK_EQ_INT(shm_req_pool_num_in_use(&pool), NUM_SLOTS);
    for (int s = 0; s < NUM_SLOTS; s++) {
        CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 1);
        CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    }
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_request_fields)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "fields");
    shm_req_pool pool, other;
    shm_req_pool_config c = shm_req_test_config(2, 6, 4, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    int32_t s = shm_req_claim(&pool);
    CHECK_EQ_INT(s, 0);

    sampling_params_t p;
    sampling_params_default(&p);
    p.temperature = -1;
    CHECK_EQ_INT(shm_req_set_request(&pool, s, 7, 7, 0, &p, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "temperature") != NULL);
    sampling_params_default(&p);
    p.n = 2;
    p.temperature = 0.5f;
    p.ignore_eos = 1;
    CHECK_EQ_INT(shm_req_set_request(&pool, s, 7, 7, 2, &p, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "sample_index") != NULL);
    CHECK_EQ_INT(shm_req_set_request(&pool, s, 7, 7, 1, &p, 0x100), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "flags") != NULL);
    CHECK_EQ_INT(shm_req_set_request(&pool, s, 123456789012LL, 99, 1, &p,
                                     SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS | SHM_REQ_FLAG_INCLUDE_STOP_STR_IN_OUTPUT),
                 STATUS_OK);

    int32_t ids[7] = {1, 2, 3, 4, 5, 6, 7};
    CHECK_EQ_INT(shm_req_set_prompt(&pool, s, ids, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "empty") != NULL);
    CHECK_EQ_INT(shm_req_set_prompt(&pool, s, ids, 7), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "7 tokens, the maximum is 6") != NULL);
    CHECK_EQ_INT(shm_req_set_prompt(&pool, s, ids + 1, 6), STATUS_OK);

    const char *strs[5] = {"###", "\xe5\x81\x9c", "END", "x", "y"}; /* "停" is 3 bytes */
    int32_t lens[5] = {3, 3, 3, 1, 1};
    int32_t stop_ids[17];
    for (int i = 0; i < 17; i++) stop_ids[i] = 1000 + i;
    CHECK_EQ_INT(shm_req_set_stop(&pool, s, strs, lens, 5, NULL, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "stop strings") != NULL);
    int32_t bad_lens[2] = {3, 65};
    CHECK_EQ_INT(shm_req_set_stop(&pool, s, strs, bad_lens, 2, NULL, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "stop[1]") != NULL);
    CHECK_EQ_INT(shm_req_set_stop(&pool, s, NULL, NULL, 0, stop_ids, 17), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "stop_token_ids") != NULL);
    int32_t neg = -3;
    CHECK_EQ_INT(shm_req_set_stop(&pool, s, NULL, NULL, 0, &neg, 1), STATUS_INVALID_ARG);
    CHECK_EQ_INT(shm_req_set_stop(&pool, s, strs, lens, 4, stop_ids, 16), STATUS_OK);
    shm_req_submit(&pool, s);
    int32_t s2 = shm_req_test_submit_one(&pool, 8);

    /* another mapping (another process's view) sees it all */
    CHECK_EQ_INT(shm_req_pool_attach(&other, name), STATUS_OK);
    const shm_req *r = shm_req_get(&other, s);
    CHECK_EQ_INT(shm_req_get_state(&other, s), SHM_REQ_STATE_SUBMITTED);
    CHECK(r->request_id == 123456789012LL);
    CHECK_EQ_INT(r->group_id, 99);
    CHECK_EQ_INT(r->sample_index, 1);
    CHECK_EQ_INT(r->num_samples, 2);
    CHECK(r->params.temperature == 0.5f);
    CHECK_EQ_INT(r->params.ignore_eos, 1);
    CHECK_EQ_INT(r->flags, SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS | SHM_REQ_FLAG_INCLUDE_STOP_STR_IN_OUTPUT);
    CHECK_EQ_INT(r->num_prompt_tokens, 6);
    const int32_t *prompt = shm_req_prompt(&other, s);
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(prompt[i], i + 2);
    CHECK_EQ_INT(r->num_stop_strings, 4);
    CHECK_EQ_INT(r->stop_string_bytes[1], 3);
    CHECK(memcmp(r->stop_strings[1], "\xe5\x81\x9c", 3) == 0);
    CHECK(memcmp(r->stop_strings[3], "x", 1) == 0);
    CHECK_EQ_INT(r->num_stop_token_ids, 16);
    CHECK_EQ_INT(r->stop_token_ids[15], 1015);
    CHECK_EQ_INT(r->submit_seq, 1);
    CHECK_EQ_INT(shm_req_get(&other, s2)->submit_seq, 2);
    CHECK(r->claim_us > 0 && r->submit_us >= r->claim_us);
    CHECK_EQ_INT(r->finish_reason, SHM_REQ_FINISH_NONE);

    /* backend side: running, an error finish with a truncated message */
    CHECK_EQ_INT(shm_req_mark_running(&other, s), 1);
    CHECK_EQ_INT(shm_req_mark_running(&other, s), 0);
    char longmsg[SHM_REQ_ERROR_MESSAGE_BYTES + 100];
    memset(longmsg, 'e', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    shm_req_finish_error(&other, s, longmsg);
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_FINISHED);
    CHECK_EQ_INT(shm_req_get(&pool, s)->finish_reason, SHM_REQ_FINISH_ERROR);
    CHECK_EQ_INT(strlen(shm_req_get(&pool, s)->error_message), SHM_REQ_ERROR_MESSAGE_BYTES - 1);
    CHECK(shm_req_get(&pool, s)->finish_us >= shm_req_get(&pool, s)->start_us);
    shm_req_pool_detach(&other);

    /* a reclaimed slot comes back reset */
    CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    CHECK_EQ_INT(shm_req_release(&pool, s2), 1);
    int32_t again = shm_req_claim(&pool);
    CHECK(again >= 0);
    if (again >= 0) {
        const shm_req *q = shm_req_get(&pool, again);
        CHECK_EQ_INT(q->num_prompt_tokens, 0);
        CHECK_EQ_INT(q->num_stop_strings, 0);
        CHECK_EQ_INT(q->finish_reason, SHM_REQ_FINISH_NONE);
        CHECK_EQ_INT(q->error_message[0], 0);
        CHECK_EQ_INT(q->params.max_tokens, 16); /* defaults */
        CHECK_EQ_INT(shm_req_num_pending_tokens(&pool, again), 0);
        CHECK_EQ_INT(shm_req_release(&pool, again), 1);
    }
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

/* The grammar region: config checks, kind names, the spec round trip to another mapping (and a
 * forked process), the NUL after the text, the capacity limit naming the grammar, the whitespace
 * flag in either call order, a pool without a region, and the reset at reclaim. */
TEST_CASE(shm_req_grammar_region)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "grammar");
    shm_req_pool pool, other;
    shm_req_pool_config c = shm_req_test_config(3, 8, 4, 64);
    c.max_grammar_bytes = 100;
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "max_grammar_bytes") != NULL);
    c.max_grammar_bytes = SHM_REQ_MAX_GRAMMAR_BYTES + 64;
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_INVALID_ARG);
    c.max_grammar_bytes = 128;
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    CHECK_EQ_INT(pool.max_grammar_bytes, 128);
    CHECK(pool.header->grammars_offset % 64 == 0 && pool.header->grammars_offset >= pool.header->texts_offset + 3 * 64);

    uint32_t kind = 99;
    const char *names[] = {"json_schema", "regex", "choice", "ebnf"};
    for (uint32_t k = 0; k < 4; k++) {
        CHECK_EQ_INT(shm_req_grammar_kind_from_name(names[k], &kind), STATUS_OK);
        CHECK_EQ_INT(kind, k + 1);
        CHECK(strcmp(shm_req_grammar_kind_name(kind), names[k]) == 0);
    }
    CHECK(shm_req_grammar_kind_name(SHM_REQ_GRAMMAR_NONE) == NULL);
    CHECK(shm_req_grammar_kind_name(SHM_REQ_GRAMMAR_NUM_KINDS) == NULL);
    CHECK_EQ_INT(shm_req_grammar_kind_from_name("lark", &kind), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "grammar_kind") != NULL && strstr(status_message(), "lark") != NULL);

    /* slot a: a JSON schema with whitespace, set before the request (the flag survives set_request) */
    const char *schema = "{\"type\": \"object\", \"properties\": {\"\xc3\xa9t\xc3\xa9\": {\"type\": \"integer\"}}}";
    int32_t a = shm_req_claim(&pool), b = shm_req_claim(&pool), d = shm_req_claim(&pool);
    CHECK(a >= 0 && b >= 0 && d >= 0);
    CHECK_EQ_INT(shm_req_set_grammar(&pool, a, SHM_REQ_GRAMMAR_NONE, "x", 1, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "grammar_kind") != NULL);
    CHECK_EQ_INT(shm_req_set_grammar(&pool, a, SHM_REQ_GRAMMAR_JSON_SCHEMA, schema, strlen(schema), 1), STATUS_OK);
    sampling_params_t p;
    sampling_params_default(&p);
    CHECK_EQ_INT(shm_req_set_request(&pool, a, 1, 1, 0, &p, SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS), STATUS_OK);
    CHECK_EQ_INT(shm_req_set_request(&pool, b, 2, 2, 0, &p, SHM_REQ_FLAG_GRAMMAR_WHITESPACE), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "flags") != NULL); /* the grammar bit is set_grammar's */
    int32_t ids[2] = {5, 6};
    CHECK_EQ_INT(shm_req_set_prompt(&pool, a, ids, 2), STATUS_OK);
    shm_req_submit(&pool, a);

    /* slot b: the capacity is max_grammar_bytes - 1 (the NUL); a too-long spec leaves the slot as it was */
    char big[129];
    memset(big, 'a', sizeof big);
    CHECK_EQ_INT(shm_req_set_request(&pool, b, 2, 2, 0, &p, 0), STATUS_OK);
    CHECK_EQ_INT(shm_req_set_grammar(&pool, b, SHM_REQ_GRAMMAR_REGEX, big, 128, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "grammar spec is 128 bytes") != NULL);
    CHECK(strstr(status_message(), "--max-grammar-bytes") != NULL);
    CHECK_EQ_INT(shm_req_get(&pool, b)->grammar_kind, SHM_REQ_GRAMMAR_NONE);
    CHECK_EQ_INT(shm_req_set_grammar(&pool, b, SHM_REQ_GRAMMAR_REGEX, big, 127, 1), STATUS_OK);
    CHECK_EQ_INT(shm_req_set_grammar(&pool, b, SHM_REQ_GRAMMAR_REGEX, "[0-9]+", 6, 0), STATUS_OK); /* rewrite */
    CHECK_EQ_INT(shm_req_set_prompt(&pool, b, ids, 2), STATUS_OK);
    shm_req_submit(&pool, b);
    /* slot d: no grammar, an empty one is allowed (the compiler judges it) */
    CHECK_EQ_INT(shm_req_set_request(&pool, d, 3, 3, 0, &p, 0), STATUS_OK);
    CHECK_EQ_INT(shm_req_set_prompt(&pool, d, ids, 2), STATUS_OK);
    shm_req_submit(&pool, d);

    /* a forked process (the backend's view) reads the specs through its own mapping */
    pid_t pid = fork();
    if (pid == 0) {
        int bad = shm_req_pool_attach(&other, name) != STATUS_OK;
        if (!bad) {
            const shm_req *ra = shm_req_get(&other, a), *rb = shm_req_get(&other, b), *rd = shm_req_get(&other, d);
            bad |= ra->grammar_kind != SHM_REQ_GRAMMAR_JSON_SCHEMA || ra->grammar_bytes != strlen(schema);
            bad |= memcmp(shm_req_grammar(&other, a), schema, strlen(schema) + 1) != 0; /* with its NUL */
            bad |= ra->flags != (SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS | SHM_REQ_FLAG_GRAMMAR_WHITESPACE);
            bad |= rb->grammar_kind != SHM_REQ_GRAMMAR_REGEX || rb->grammar_bytes != 6;
            bad |= strcmp(shm_req_grammar(&other, b), "[0-9]+") != 0 || (rb->flags & SHM_REQ_FLAG_GRAMMAR_WHITESPACE);
            bad |= rd->grammar_kind != SHM_REQ_GRAMMAR_NONE || rd->grammar_bytes != 0;
            bad |= strcmp(shm_req_grammar_kind_name(rb->grammar_kind), "regex") != 0;
            shm_req_pool_detach(&other);
        }
        _exit(bad);
    }
    CHECK_EQ_INT(test_shm_wait(pid, 10000), 0);

    /* a reclaimed slot comes back without a grammar */
    for (int32_t s = 0; s < 3; s++) CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    int32_t again = shm_req_claim(&pool);
    CHECK(again >= 0);
    if (again >= 0) {
        CHECK_EQ_INT(shm_req_get(&pool, again)->grammar_kind, SHM_REQ_GRAMMAR_NONE);
        CHECK_EQ_INT(shm_req_get(&pool, again)->grammar_bytes, 0);
        CHECK_EQ_INT(shm_req_get(&pool, again)->flags, 0);
        CHECK_EQ_INT(shm_req_release(&pool, again), 1);
    }
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);

    /* a pool without a grammar region refuses every spec, naming the flag */
    c.max_grammar_bytes = 0;
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    CHECK(pool.grammars != NULL && shm_req_grammar(&pool, 0) == NULL);
    int32_t s0 = shm_req_claim(&pool);
    CHECK_EQ_INT(shm_req_set_grammar(&pool, s0, SHM_REQ_GRAMMAR_CHOICE, "[\"a\"]", 5, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "--max-grammar-bytes 0") != NULL);
    CHECK_EQ_INT(shm_req_release(&pool, s0), 1);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_ref_count_across_fork)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "refs");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(4, 8, 4, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);

    /* 1. the child (a backend) attaches, takes a ref, waits for "go" (the abort flag), releases;
     *    the front end's ref keeps the slot */
    int32_t s = shm_req_test_submit_one(&pool, 1);
    uint64_t gen = shm_req_get_generation(&pool, s);
    pid_t pid = fork();
    if (pid == 0) {
        shm_req_pool p;
        if (shm_req_pool_attach(&p, name) != STATUS_OK) _exit(10);
        if (shm_req_try_acquire(&p, s, gen + 1) != 0) _exit(11);   /* wrong generation: refused */
        if (shm_req_get_ref_count(&p, s) != 1) _exit(12);          /* ... and undone */
        if (shm_req_try_acquire(&p, s, gen) != 1) _exit(13);
        if (shm_req_mark_running(&p, s) != 1) _exit(14);
        int64_t deadline = shm_req_now_us() + 5000000;
        while (!shm_req_is_abort_requested(&p, s))
            if (shm_req_test_past(deadline)) _exit(15);
        int freed = shm_req_release(&p, s);
        shm_req_pool_detach(&p);
        _exit(freed == 0 ? 0 : 16);
    }
    int64_t deadline = shm_req_now_us() + 5000000;
    while (shm_req_get_state(&pool, s) != SHM_REQ_STATE_RUNNING && !shm_req_test_past(deadline)) sched_yield();
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_RUNNING);
    CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 2);
    shm_req_set_abort(&pool, s);
    CHECK_EQ_INT(test_shm_wait(pid, 5000), 0);
    CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 1);
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_RUNNING);
    CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_FREE);

    /* 2. the front end lets go first (client gone); the child's release is the last and frees */
    s = shm_req_test_submit_one(&pool, 2);
    gen = shm_req_get_generation(&pool, s);
    pid = fork();
    if (pid == 0) {
        shm_req_pool p;
        if (shm_req_pool_attach(&p, name) != STATUS_OK) _exit(10);
        if (shm_req_try_acquire(&p, s, gen) != 1) _exit(13);
        shm_req_add_ref(&p, s); /* e.g. the router handing a reference to a backend */
        if (shm_req_mark_running(&p, s) != 1) _exit(14);
        int64_t dl = shm_req_now_us() + 5000000;
        while (!shm_req_is_abort_requested(&p, s))
            if (shm_req_test_past(dl)) _exit(15);
        if (shm_req_release(&p, s) != 0) _exit(16);
        shm_req_finish(&p, s, SHM_REQ_FINISH_ABORT, SHM_REQ_STOP_NONE, 0);
        int freed = shm_req_release(&p, s);
        shm_req_pool_detach(&p);
        _exit(freed == 1 ? 0 : 17);
    }
    deadline = shm_req_now_us() + 5000000;
    while (shm_req_get_state(&pool, s) != SHM_REQ_STATE_RUNNING && !shm_req_test_past(deadline)) sched_yield();
    CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 3);
    shm_req_set_abort(&pool, s);
    CHECK_EQ_INT(shm_req_release(&pool, s), 0);
    CHECK_EQ_INT(test_shm_wait(pid, 5000), 0);
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_FREE);
    CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 0);
    CHECK_EQ_INT(shm_req_pool_num_in_use(&pool), 0);
    /* a freed slot cannot be acquired, whatever the generation */
    CHECK_EQ_INT(shm_req_try_acquire(&pool, s, gen), 0);
    CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 0);

    /* 3. releasing without a reference is our bug: it asserts */
    pid = fork();
    if (pid == 0) {
        shm_req_release(&pool, s);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);

    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

/* A deterministic record for token i. */
static void shm_req_test_record(int64_t i, shm_req_token_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->token_id = (int32_t)i;
    rec->logprob = -(float)(i % 1000) / 8.0f;
    rec->rank = 1 + (int32_t)(i % 7);
    rec->num_top = (int32_t)(i % 21);
    for (int k = 0; k < rec->num_top; k++) {
        rec->top_ids[k] = (int32_t)(i + k);
        rec->top_logprobs[k] = -0.5f * (float)k;
    }
}

static int shm_req_test_record_ok(int64_t i, const shm_req_token_record *got)
{
    shm_req_token_record want;
    shm_req_test_record(i, &want);
    if (got->token_id != want.token_id || got->logprob != want.logprob || got->rank != want.rank ||
        got->num_top != want.num_top)
        return 0;
    for (int k = 0; k < want.num_top; k++)
        if (got->top_ids[k] != want.top_ids[k] || got->top_logprobs[k] != want.top_logprobs[k]) return 0;
    return 1;
}

/* The text token i adds: 0..3 copies of one of five pieces of 1-4 UTF-8 bytes (0..12 bytes). */
static const char *const shm_req_test_pieces[5] = {"a", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", " t"};
static uint32_t shm_req_test_text(int64_t i, char *out)
{
    const char *piece = shm_req_test_pieces[i % 5];
    uint32_t len = (uint32_t)strlen(piece), n = 0;
    for (int64_t k = 0; k < i % 4; k++, n += len) memcpy(out + n, piece, len);
    return n;
}

static int shm_req_test_is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

TEST_CASE(shm_req_ring_full_and_wrap)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "ring");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(2, 8, 4, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    int32_t s = shm_req_test_submit_one(&pool, 1);
    CHECK_EQ_INT(shm_req_mark_running(&pool, s), 1);
    shm_req_token_record rec, out[8];
    char text[64];
    CHECK_EQ_INT(shm_req_pop_tokens(&pool, s, out, 8), 0); /* empty */
    CHECK_EQ_INT(shm_req_pop_text(&pool, s, text, 64), 0);

    /* record ring full: the 5th push is refused and writes nothing */
    for (int i = 0; i < 4; i++) {
        shm_req_test_record(i, &rec);
        CHECK_EQ_INT(shm_req_push_token(&pool, s, &rec, "ab", 2), 1);
    }
    CHECK(shm_req_get(&pool, s)->first_token_us > 0);
    CHECK(!shm_req_can_push(&pool, s, 1, 0));
    shm_req_test_record(4, &rec);
    CHECK_EQ_INT(shm_req_push_token(&pool, s, &rec, "ab", 2), 0);
    CHECK_EQ_INT(shm_req_num_pending_tokens(&pool, s), 4);
    CHECK_EQ_INT(shm_req_num_pending_text_bytes(&pool, s), 8);
    CHECK_EQ_INT(shm_req_pop_tokens(&pool, s, out, 3), 3);
    for (int i = 0; i < 3; i++) {
        CHECK(shm_req_test_record_ok(i, &out[i]));
        CHECK_EQ_INT(out[i].text_offset, 2 * i);
        CHECK_EQ_INT(out[i].text_bytes, 2);
    }
    CHECK_EQ_INT(shm_req_push_token(&pool, s, &rec, "ab", 2), 1);

    /* text ring full: a record with too much text is refused, record ring untouched */
    CHECK_EQ_INT(shm_req_pop_text(&pool, s, text, 64), 10);
    CHECK(memcmp(text, "ababababab", 10) == 0);
    char big[64];
    memset(big, 'z', sizeof big);
    CHECK_EQ_INT(shm_req_push_text(&pool, s, big, 60), 1);
    CHECK_EQ_INT(shm_req_push_text(&pool, s, big, 5), 0);
    shm_req_test_record(5, &rec);
    CHECK_EQ_INT(shm_req_push_token(&pool, s, &rec, "xyzab", 5), 0);
    CHECK_EQ_INT(shm_req_num_pending_tokens(&pool, s), 2);
    CHECK_EQ_INT(shm_req_num_pending_text_bytes(&pool, s), 60);
    CHECK_EQ_INT(shm_req_push_token(&pool, s, &rec, "wxyz", 4), 1); /* exactly fills the text ring */
    CHECK(!shm_req_can_push(&pool, s, 0, 1));
    CHECK_EQ_INT(shm_req_pop_tokens(&pool, s, out, 8), 3);
    CHECK(shm_req_test_record_ok(3, &out[0]) && shm_req_test_record_ok(4, &out[1]) &&
          shm_req_test_record_ok(5, &out[2]));
    CHECK_EQ_INT(out[2].text_offset, 70);
    CHECK_EQ_INT(out[2].text_bytes, 4);
    CHECK_EQ_INT(shm_req_pop_text(&pool, s, text, 64), 64);
    CHECK_EQ_INT(shm_req_num_pending_text_bytes(&pool, s), 0);

    /* many laps around both rings, one to three records at a time */
    int64_t next_push = 6, next_pop = 6;
    uint64_t text_pos = 74;
    for (int lap = 0; lap < 2000; lap++) {
        int k = 1 + lap % 3;
        for (int j = 0; j < k; j++) {
            char t[16];
            uint32_t n = shm_req_test_text(next_push, t);
            shm_req_test_record(next_push, &rec);
            if (shm_req_push_token(&pool, s, &rec, t, n)) next_push++;
        }
        int32_t got = shm_req_pop_tokens(&pool, s, out, 8);
        for (int32_t j = 0; j < got; j++, next_pop++) {
            CHECK(shm_req_test_record_ok(next_pop, &out[j]));
            char t[16];
            uint32_t n = shm_req_test_text(next_pop, t);
            CHECK_EQ_INT(out[j].text_offset, text_pos);
            CHECK_EQ_INT(out[j].text_bytes, n);
            char back[64];
            CHECK_EQ_INT(shm_req_pop_text(&pool, s, back, n), n);
            CHECK(memcmp(back, t, n) == 0);
            text_pos += n;
        }
    }
    CHECK(next_pop > 2000);
    CHECK_EQ_INT(next_pop, next_push);
    CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_text_ring_utf8)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "utf8");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(1, 8, 64, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    int32_t s = shm_req_test_submit_one(&pool, 1);
    CHECK_EQ_INT(shm_req_mark_running(&pool, s), 1);
    /* a pop too small for the next sequence returns nothing rather than half of it */
    CHECK_EQ_INT(shm_req_push_text(&pool, s, "\xf0\x9f\x98\x80", 4), 1);
    char buf[64];
    CHECK_EQ_INT(shm_req_pop_text(&pool, s, buf, 1), 0);
    CHECK_EQ_INT(shm_req_pop_text(&pool, s, buf, 3), 0);
    CHECK_EQ_INT(shm_req_pop_text(&pool, s, buf, 4), 4);
    CHECK(memcmp(buf, "\xf0\x9f\x98\x80", 4) == 0);

    /* a stream of 1-4 byte sequences through a 64-byte ring, popped with every size from 4 to
     * 11: the sequences wrap around the ring end, each pop ends on a sequence boundary, and the
     * bytes come back in order */
    char sent[4096], got[4096];
    uint32_t num_sent = 0, num_got = 0;
    int64_t i = 0;
    for (int round = 0; round < 3000 && num_sent < 3900; round++) {
        char t[16];
        uint32_t n = shm_req_test_text(i, t);
        if (shm_req_push_text(&pool, s, t, n)) {
            memcpy(sent + num_sent, t, n);
            num_sent += n;
            i++;
        }
        uint32_t max = 4 + (uint32_t)round % 8;
        uint32_t k = shm_req_pop_text(&pool, s, got + num_got, max);
        CHECK(k <= max);
        num_got += k;
        if (num_got < num_sent) CHECK(!shm_req_test_is_cont((uint8_t)sent[num_got]));
    }
    num_got += shm_req_pop_text(&pool, s, got + num_got, 64);
    CHECK(num_sent > 1000);
    CHECK_EQ_INT(num_got, num_sent);
    CHECK(memcmp(sent, got, num_sent) == 0);
    CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_ring_across_processes_100k)
{
    enum { NUM_TOKENS = 100000, RING_RECORDS = 64, RING_TEXT = 256 };
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "stream");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(3, 16, RING_RECORDS, RING_TEXT);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    shm_req_test_submit_one(&pool, 1);
    int32_t s = shm_req_test_submit_one(&pool, 2); /* not slot 0, so slot offsets matter */
    uint64_t gen = shm_req_get_generation(&pool, s);

    /* the expected text stream */
    uint64_t *offsets = malloc((NUM_TOKENS + 1) * sizeof(uint64_t));
    char *stream = malloc((size_t)NUM_TOKENS * 12);
    offsets[0] = 0;
    for (int64_t i = 0; i < NUM_TOKENS; i++) offsets[i + 1] = offsets[i] + shm_req_test_text(i, stream + offsets[i]);

    /* test-side channel: the producer counts the pushes refused as full */
    _Atomic int64_t *num_full_seen = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(num_full_seen != MAP_FAILED);
    atomic_store(num_full_seen, 0);

    pid_t pid = fork();
    if (pid == 0) {
        /* the backend: produces NUM_TOKENS records, retrying when the ring is full */
        shm_req_pool p;
        if (shm_req_pool_attach(&p, name) != STATUS_OK) _exit(10);
        if (shm_req_try_acquire(&p, s, gen) != 1 || shm_req_mark_running(&p, s) != 1) _exit(11);
        int64_t deadline = shm_req_now_us() + 30000000;
        int64_t num_full = 0;
        for (int64_t i = 0; i < NUM_TOKENS; i++) {
            shm_req_token_record rec;
            char t[16];
            uint32_t n = shm_req_test_text(i, t);
            shm_req_test_record(i, &rec);
            while (!shm_req_push_token(&p, s, &rec, t, n)) {
                num_full++;
                atomic_store(num_full_seen, num_full);
                if (shm_req_test_past(deadline)) _exit(12);
                sched_yield();
            }
        }
        shm_req_finish(&p, s, SHM_REQ_FINISH_LENGTH, SHM_REQ_STOP_NONE, 0);
        shm_req_release(&p, s);
        shm_req_pool_detach(&p);
        _exit(num_full > 0 ? 0 : 13);
    }

    /* the front end: first let the producer run into a full ring (back-pressure) */
    int64_t deadline = shm_req_now_us() + 30000000;
    while (atomic_load(num_full_seen) == 0 && !shm_req_test_past(deadline)) sched_yield();
    CHECK(atomic_load(num_full_seen) > 0);
    CHECK(shm_req_num_pending_tokens(&pool, s) <= RING_RECORDS);
    CHECK(shm_req_num_pending_text_bytes(&pool, s) <= RING_TEXT);
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_RUNNING); /* it waits, it does not finish */

    int64_t next = 0, bad_records = 0, bad_text = 0, split = 0;
    uint64_t text_pos = 0;
    int round = 0;
    while ((next < NUM_TOKENS || text_pos < offsets[NUM_TOKENS]) && !shm_req_test_past(deadline)) {
        shm_req_token_record out[17];
        int32_t got = shm_req_pop_tokens(&pool, s, out, 1 + round % 17);
        for (int32_t j = 0; j < got; j++, next++)
            if (next >= NUM_TOKENS || !shm_req_test_record_ok(next, &out[j]) || out[j].text_offset != offsets[next] ||
                out[j].text_bytes != offsets[next + 1] - offsets[next])
                bad_records++;
        char buf[64];
        uint32_t k = shm_req_pop_text(&pool, s, buf, 4 + (uint32_t)round % 40);
        if (text_pos + k > offsets[NUM_TOKENS] || memcmp(buf, stream + text_pos, k) != 0) bad_text++;
        text_pos += k;
        if (text_pos < offsets[NUM_TOKENS] && shm_req_test_is_cont((uint8_t)stream[text_pos])) split++;
        if (got == 0 && k == 0) sched_yield();
        round++;
    }
    CHECK_EQ_INT(next, NUM_TOKENS);
    CHECK_EQ_INT(text_pos, offsets[NUM_TOKENS]);
    CHECK_EQ_INT(bad_records, 0);
    CHECK_EQ_INT(bad_text, 0);
    CHECK_EQ_INT(split, 0);
    CHECK_EQ_INT(test_shm_wait(pid, 30000), 0);
    /* finished, and nothing after the last record */
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_FINISHED);
    CHECK_EQ_INT(shm_req_get(&pool, s)->finish_reason, SHM_REQ_FINISH_LENGTH);
    shm_req_token_record extra;
    CHECK_EQ_INT(shm_req_pop_tokens(&pool, s, &extra, 1), 0);
    CHECK_EQ_INT(shm_req_get_ref_count(&pool, s), 1);
    CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    CHECK_EQ_INT(shm_req_release(&pool, 0), 1);
    munmap((void *)num_full_seen, 4096);
    free(offsets);
    free(stream);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_req_abort_across_processes)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "abort");
    shm_req_pool pool;
    shm_req_pool_config c = shm_req_test_config(2, 8, 8, 64);
    CHECK_EQ_INT(shm_req_pool_create(&pool, name, &c), STATUS_OK);
    int32_t s = shm_req_test_submit_one(&pool, 1);
    uint64_t gen = shm_req_get_generation(&pool, s);
    pid_t pid = fork();
    if (pid == 0) {
        /* the backend: streams tokens until it sees the abort flag, then finishes ABORT */
        shm_req_pool p;
        if (shm_req_pool_attach(&p, name) != STATUS_OK) _exit(10);
        if (shm_req_try_acquire(&p, s, gen) != 1 || shm_req_mark_running(&p, s) != 1) _exit(11);
        int64_t deadline = shm_req_now_us() + 5000000;
        int32_t pushed = 0;
        while (!shm_req_is_abort_requested(&p, s)) {
            if (shm_req_test_past(deadline)) _exit(12);
            shm_req_token_record rec;
            shm_req_test_record(pushed, &rec);
            if (pushed < 5 && shm_req_push_token(&p, s, &rec, "ok", 2)) pushed++;
            sched_yield();
        }
        shm_req_get(&p, s)->num_cached_tokens = 2;
        shm_req_finish(&p, s, SHM_REQ_FINISH_ABORT, SHM_REQ_STOP_NONE, 0);
        shm_req_release(&p, s);
        shm_req_pool_detach(&p);
        _exit(0);
    }
    /* the front end: waits for the first token, then the client "disconnects" */
    int64_t deadline = shm_req_now_us() + 5000000;
    shm_req_token_record out[8];
    int32_t got = 0;
    while (got == 0 && !shm_req_test_past(deadline)) got = shm_req_pop_tokens(&pool, s, out, 8);
    CHECK(got >= 1);
    CHECK_EQ_INT(shm_req_is_abort_requested(&pool, s), 0);
    shm_req_set_abort(&pool, s);
    CHECK_EQ_INT(shm_req_is_abort_requested(&pool, s), 1);
    while (shm_req_get_state(&pool, s) != SHM_REQ_STATE_FINISHED && !shm_req_test_past(deadline)) sched_yield();
    CHECK_EQ_INT(shm_req_get_state(&pool, s), SHM_REQ_STATE_FINISHED);
    /* everything written before FINISHED is visible after it */
    CHECK_EQ_INT(shm_req_get(&pool, s)->finish_reason, SHM_REQ_FINISH_ABORT);
    CHECK_EQ_INT(shm_req_get(&pool, s)->num_cached_tokens, 2);
    CHECK(shm_req_get(&pool, s)->start_us > 0 && shm_req_get(&pool, s)->finish_us >= shm_req_get(&pool, s)->start_us);
    got += shm_req_pop_tokens(&pool, s, out, 8);
    CHECK(got >= 1 && got <= 5);
    CHECK_EQ_INT(test_shm_wait(pid, 5000), 0);
    CHECK_EQ_INT(shm_req_release(&pool, s), 1);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}
