/* test_io_buffer.c — engine/io_buffer: capacity checks, empty/full behaviour and sequence
 * numbers over many laps, attach checks, a forked router pushing 100k commands to the parent
 * (order, content, no loss or duplication, back-pressure), and the status block published by
 * a forked backend read back as consistent snapshots.  Segments are named
 * "/lightllm-ut<pid>-<what>"; each test checks none is left. */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
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

/* Command i: kind cycles ADD/ABORT/STOP, 1..12 slots derived from i. */
static int32_t io_buffer_test_cmd(uint64_t i, uint32_t *kind, int32_t *slots)
{
    *kind = IO_BUFFER_CMD_ADD + (uint32_t)(i % 3);
    int32_t n = 1 + (int32_t)(i % IO_BUFFER_CMD_MAX_SLOTS);
    for (int32_t k = 0; k < n; k++) slots[k] = (int32_t)((i * 7 + (uint64_t)k) % 65536);
    return n;
}

static int io_buffer_test_cmd_ok(uint64_t i, const io_buffer_cmd *c)
{
    uint32_t kind;
    int32_t slots[IO_BUFFER_CMD_MAX_SLOTS];
    int32_t n = io_buffer_test_cmd(i, &kind, slots);
    if (c->seq != i + 1 || c->kind != kind || c->num_slots != n) return 0;
    return memcmp(c->slots, slots, (size_t)n * sizeof(int32_t)) == 0;
}

TEST_CASE(io_buffer_capacity_checks)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "cap");
    io_buffer io;
    CHECK_EQ_INT(io_buffer_create(&io, name, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "capacity") != NULL);
    CHECK_EQ_INT(io_buffer_create(&io, name, 12), STATUS_INVALID_ARG);
    CHECK_EQ_INT(io_buffer_create(&io, name, 1u << 21), STATUS_INVALID_ARG);
    io_buffer_detach(&io);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(io_buffer_full_empty_wrap)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "fe");
    io_buffer tx, rx;
    CHECK_EQ_INT(io_buffer_create(&tx, name, 8), STATUS_OK);
    CHECK_EQ_INT(io_buffer_attach(&rx, name), STATUS_OK);
    CHECK_EQ_INT(rx.capacity, 8);
    io_buffer_cmd c;
    CHECK_EQ_INT(io_buffer_pop_cmd(&rx, &c), 0);
    CHECK_EQ_INT(io_buffer_num_pending(&rx), 0);
    uint32_t kind;
    int32_t slots[IO_BUFFER_CMD_MAX_SLOTS];
    for (uint64_t i = 0; i < 8; i++) {
        int32_t n = io_buffer_test_cmd(i, &kind, slots);
        CHECK_EQ_INT(io_buffer_push_cmd(&tx, kind, slots, n), i + 1);
    }
    CHECK(io_buffer_is_full(&tx));
    int32_t n = io_buffer_test_cmd(8, &kind, slots);
    CHECK_EQ_INT(io_buffer_push_cmd(&tx, kind, slots, n), 0); /* full: refused, nothing written */
    CHECK_EQ_INT(io_buffer_num_pending(&rx), 8);
    CHECK_EQ_INT(io_buffer_pop_cmd(&rx, &c), 1);
    CHECK(io_buffer_test_cmd_ok(0, &c));
    CHECK(!io_buffer_is_full(&tx));
    CHECK_EQ_INT(io_buffer_push_cmd(&tx, kind, slots, n), 9);
    for (uint64_t i = 1; i <= 8; i++) {
        CHECK_EQ_INT(io_buffer_pop_cmd(&rx, &c), 1);
        CHECK(io_buffer_test_cmd_ok(i, &c));
    }
    CHECK_EQ_INT(io_buffer_pop_cmd(&rx, &c), 0);
    /* many laps with uneven batches */
    uint64_t next_push = 9, next_pop = 9;
    int bad = 0;
    for (int round = 0; round < 5000; round++) {
        for (int k = 0; k < 1 + round % 5; k++) {
            n = io_buffer_test_cmd(next_push, &kind, slots);
            if (io_buffer_push_cmd(&tx, kind, slots, n) != 0) next_push++;
        }
        for (int k = 0; k < 1 + round % 4 && io_buffer_pop_cmd(&rx, &c); k++) bad += !io_buffer_test_cmd_ok(next_pop++, &c);
    }
    while (io_buffer_pop_cmd(&rx, &c)) bad += !io_buffer_test_cmd_ok(next_pop++, &c);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(next_pop, next_push);
    CHECK(next_pop > 5000);
    io_buffer_detach(&rx);
    CHECK_EQ_INT(io_buffer_destroy(&tx), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(io_buffer_attach_checks)
{
    char name[SHM_NAME_MAX_CHARS], pool_name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "chk");
    test_shm_name(pool_name, sizeof pool_name, "pool");
    io_buffer io, other;
    CHECK_EQ_INT(io_buffer_attach(&other, name), STATUS_NOT_FOUND);
    CHECK_EQ_INT(io_buffer_create(&io, name, 4), STATUS_OK);
    CHECK_EQ_INT(io_buffer_create(&other, name, 4), STATUS_IO); /* the name is taken */
    io.header->capacity = 8; /* corrupt geometry */
    CHECK_EQ_INT(io_buffer_attach(&other, name), STATUS_FORMAT);
    CHECK(strstr(status_message(), "corrupt") != NULL);
    io.header->capacity = 4;
    shm_get_header(&io.seg)->layout_version = IO_BUFFER_LAYOUT_VERSION + 1;
    CHECK_EQ_INT(io_buffer_attach(&other, name), STATUS_FORMAT);
    CHECK(strstr(status_message(), "layout version") != NULL);
    shm_get_header(&io.seg)->layout_version = IO_BUFFER_LAYOUT_VERSION;
    shm_req_pool pool;
    shm_req_pool_config c = {2, 4, 4, 64, 0};
    CHECK_EQ_INT(shm_req_pool_create(&pool, pool_name, &c), STATUS_OK);
    CHECK_EQ_INT(io_buffer_attach(&other, pool_name), STATUS_FORMAT);
    CHECK(strstr(status_message(), "request pool") != NULL);
    CHECK_EQ_INT(shm_req_pool_destroy(&pool), STATUS_OK);
    CHECK_EQ_INT(io_buffer_attach(&other, name), STATUS_OK);
    io_buffer_detach(&other);
    CHECK_EQ_INT(io_buffer_destroy(&io), STATUS_OK);
    CHECK_EQ_INT(io_buffer_destroy(&io), STATUS_OK); /* already destroyed: no-op */
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(io_buffer_order_across_processes)
{
    enum { NUM_CMDS = 100000, CAPACITY = 16 };
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "order");
    io_buffer rx;
    CHECK_EQ_INT(io_buffer_create(&rx, name, CAPACITY), STATUS_OK);
    _Atomic int64_t *num_full_seen = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(num_full_seen != MAP_FAILED);
    atomic_store(num_full_seen, 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* the router: pushes NUM_CMDS commands, retrying when the ring is full */
        io_buffer tx;
        if (io_buffer_attach(&tx, name) != STATUS_OK) _exit(10);
        int64_t deadline = shm_req_now_us() + 30000000, num_full = 0;
        for (uint64_t i = 0; i < NUM_CMDS; i++) {
            uint32_t kind;
            int32_t slots[IO_BUFFER_CMD_MAX_SLOTS];
            int32_t n = io_buffer_test_cmd(i, &kind, slots);
            uint64_t seq;
            while ((seq = io_buffer_push_cmd(&tx, kind, slots, n)) == 0) {
                atomic_store(num_full_seen, ++num_full);
                if (shm_req_now_us() > deadline) _exit(11);
                sched_yield();
            }
            if (seq != i + 1) _exit(12);
        }
        io_buffer_detach(&tx);
        _exit(0);
    }
    /* the backend: lets the router hit a full ring first, then consumes in uneven batches */
    int64_t deadline = shm_req_now_us() + 30000000;
    while (atomic_load(num_full_seen) == 0 && shm_req_now_us() < deadline) sched_yield();
    CHECK(atomic_load(num_full_seen) > 0);
    CHECK_EQ_INT(io_buffer_num_pending(&rx), CAPACITY);
    uint64_t next = 0;
    int64_t bad = 0;
    int round = 0;
    while (next < NUM_CMDS && shm_req_now_us() < deadline) {
        io_buffer_cmd c;
        int got = 0;
        for (int k = 0; k < 1 + round % 7 && io_buffer_pop_cmd(&rx, &c); k++, got++) bad += !io_buffer_test_cmd_ok(next++, &c);
        CHECK(io_buffer_num_pending(&rx) <= CAPACITY);
        if (got == 0) sched_yield();
        round++;
    }
    CHECK_EQ_INT(next, NUM_CMDS);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(test_shm_wait(pid, 30000), 0);
    io_buffer_cmd c;
    CHECK_EQ_INT(io_buffer_pop_cmd(&rx, &c), 0); /* nothing duplicated at the end */
    munmap((void *)num_full_seen, 4096);
    CHECK_EQ_INT(io_buffer_destroy(&rx), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

/* Status i: every field derived from the step, so a torn snapshot shows. */
static void io_buffer_test_status(uint64_t step, io_buffer_status *s)
{
    memset(s, 0, sizeof(*s));
    s->kv_slots_total = 100000;
    s->kv_slots_free = 100000 - (int64_t)(step % 1000);
    s->kv_slots_cached = (int64_t)(step % 1000) / 2;
    s->num_running = (int32_t)(step % 64);
    s->num_waiting = (int32_t)(step % 17);
    s->step = step;
    s->last_step_us = (int64_t)step * 10;
    s->healthy = 1; /* until the final publish */
}

TEST_CASE(io_buffer_status_across_processes)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "status");
    io_buffer router;
    CHECK_EQ_INT(io_buffer_create(&router, name, 4), STATUS_OK);
    io_buffer_status st;
    CHECK_EQ_INT(io_buffer_read_status(&router, &st), 1);
    CHECK_EQ_INT(st.step, 0);
    CHECK_EQ_INT(st.healthy, 0); /* not healthy until the backend says so */
    _Atomic int *stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(stop != MAP_FAILED);
    atomic_store(stop, 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* the backend: publishes a status every step until told to stop, then reports unhealthy */
        io_buffer b;
        if (io_buffer_attach(&b, name) != STATUS_OK) _exit(10);
        io_buffer_status s;
        int64_t deadline = shm_req_now_us() + 30000000;
        uint64_t step = 1;
        for (; !atomic_load(stop) && shm_req_now_us() < deadline; step++) {
            io_buffer_test_status(step, &s);
            io_buffer_publish_status(&b, &s);
        }
        s.healthy = 0;
        io_buffer_publish_status(&b, &s);
        io_buffer_detach(&b);
        _exit(0);
    }
    /* the router: many reads while the backend publishes; every snapshot must be one publish */
    int64_t deadline = shm_req_now_us() + 30000000;
    uint64_t last = 0;
    int64_t torn = 0, backwards = 0, changes = 0, failed = 0;
    for (int64_t reads = 0;; reads++) {
        if (io_buffer_read_status(&router, &st) != 1) {
            failed++;
            break;
        }
        if (st.step < last) backwards++;
        changes += st.step != last;
        last = st.step;
        if (st.step > 0) {
            io_buffer_status want;
            io_buffer_test_status(st.step, &want);
            want.healthy = st.healthy == 0 ? 0 : 1; /* the final publish only */
            if (memcmp(&st, &want, sizeof st) != 0) torn++;
        }
        if (reads == 200000 || shm_req_now_us() > deadline) atomic_store(stop, 1);
        if ((st.step > 0 && st.healthy == 0) || shm_req_now_us() > deadline) break;
    }
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(torn, 0);
    CHECK_EQ_INT(backwards, 0);
    CHECK(changes > 1);
    CHECK(st.step > 0);
    CHECK_EQ_INT(st.healthy, 0);
    CHECK_EQ_INT(test_shm_wait(pid, 30000), 0);

    /* a writer that died mid-publish (odd version) makes the reader give up, not hang */
    atomic_fetch_add(&router.header->status_version, 1);
    CHECK_EQ_INT(io_buffer_read_status(&router, &st), 0);
    munmap((void *)stop, 4096);
    CHECK_EQ_INT(io_buffer_destroy(&router), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}
