/* test_kv_cache.c — unit tests for engine/kv_cache: init argument checks, slot alloc/release
 * of the whole pool, reuse, row exhaustion and reuse, req_to_token row addressing, and that double release
 * aborts (LL_ASSERT, checked in a forked child). */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/status.h"
#include "engine/kv_cache.h"
#include "test_util.h"

TEST_CASE(kv_cache_init_rejects_bad_sizes)
{
    kv_cache kv;
    CHECK_EQ_INT(kv_cache_init(&kv, 0, 4, 16), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "num_slots") != NULL);
    kv_cache_free(&kv);
    CHECK_EQ_INT(kv_cache_init(&kv, -5, 4, 16), STATUS_INVALID_ARG);
    kv_cache_free(&kv);
    CHECK_EQ_INT(kv_cache_init(&kv, 8, 0, 16), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "max_reqs") != NULL);
    kv_cache_free(&kv);
    CHECK_EQ_INT(kv_cache_init(&kv, 8, 4, 0), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "max_seq_len") != NULL);
    kv_cache_free(&kv);
    /* kv_cache_free is safe on a failed init and twice in a row. */
    kv_cache_free(&kv);
}

TEST_CASE(kv_cache_alloc_release_all)
{
    kv_cache kv;
    const int32_t n = 1000;
    CHECK_EQ_INT(kv_cache_init(&kv, n, 4, 64), STATUS_OK);
    CHECK_EQ_INT(kv.num_free, n);
    CHECK(kv_cache_can_alloc(&kv, n));
    CHECK(!kv_cache_can_alloc(&kv, n + 1));
    int32_t *slots = malloc((size_t)n * sizeof *slots);
    uint8_t *seen = calloc((size_t)n, 1);
    kv_cache_alloc(&kv, 10, slots);
    for (int32_t i = 0; i < 10; i++) CHECK_EQ_INT(slots[i], i); /* fresh pool: ascending */
    kv_cache_alloc(&kv, n - 10, slots + 10);
    CHECK_EQ_INT(kv.num_free, 0);
    CHECK(!kv_cache_can_alloc(&kv, 1));
    CHECK(kv_cache_can_alloc(&kv, 0));
    for (int32_t i = 0; i < n; i++) {
        CHECK(slots[i] >= 0 && slots[i] < n);
        if (slots[i] >= 0 && slots[i] < n) {
            CHECK(!seen[slots[i]]);
            seen[slots[i]] = 1;
        }
    }
    kv_cache_release(&kv, slots, n);
    CHECK_EQ_INT(kv.num_free, n);
    kv_cache_alloc(&kv, 0, slots); /* zero is a no-op */
    CHECK_EQ_INT(kv.num_free, n);
    free(seen);
    free(slots);
    kv_cache_free(&kv);
}

TEST_CASE(kv_cache_reuse_released_slots)
{
    kv_cache kv;
    CHECK_EQ_INT(kv_cache_init(&kv, 16, 2, 8), STATUS_OK);
    int32_t a[16], b[4];
    kv_cache_alloc(&kv, 16, a);
    int32_t back[3] = {a[3], a[7], a[11]};
    kv_cache_release(&kv, back, 3);
    CHECK_EQ_INT(kv.num_free, 3);
    CHECK(kv_cache_can_alloc(&kv, 3));
    CHECK(!kv_cache_can_alloc(&kv, 4));
    kv_cache_alloc(&kv, 3, b);
    /* LIFO: the last released comes out first; the set is exactly what was released. */
    CHECK_EQ_INT(b[0], a[11]);
    CHECK_EQ_INT(b[1], a[7]);
    CHECK_EQ_INT(b[2], a[3]);
    CHECK_EQ_INT(kv.num_free, 0);
    kv_cache_release(&kv, a, 3);
    kv_cache_release(&kv, a + 4, 3);
    kv_cache_release(&kv, a + 8, 3);
    kv_cache_release(&kv, a + 12, 4);
    kv_cache_release(&kv, b, 3);
    CHECK_EQ_INT(kv.num_free, 16);
    for (int32_t s = 0; s < 16; s++) CHECK_EQ_INT(kv.slot_in_use[s], 0);
    kv_cache_free(&kv);
}

TEST_CASE(kv_cache_rows_exhaust_and_reuse)
{
    kv_cache kv;
    CHECK_EQ_INT(kv_cache_init(&kv, 64, 3, 10), STATUS_OK);
    int32_t r0 = kv_cache_alloc_row(&kv), r1 = kv_cache_alloc_row(&kv), r2 = kv_cache_alloc_row(&kv);
    CHECK_EQ_INT(r0, 0);
    CHECK_EQ_INT(r1, 1);
    CHECK_EQ_INT(r2, 2);
    CHECK_EQ_INT(kv_cache_alloc_row(&kv), -1);
    CHECK_EQ_INT(kv_cache_alloc_row(&kv), -1);
    CHECK_EQ_INT(kv.num_free_rows, 0);
    /* Rows address disjoint stripes of req_to_token. */
    for (int32_t r = 0; r < 3; r++)
        for (int32_t p = 0; p < 10; p++) kv_cache_row(&kv, r)[p] = 100 * r + p;
    for (int32_t r = 0; r < 3; r++)
        for (int32_t p = 0; p < 10; p++) CHECK_EQ_INT(kv.req_to_token[r * 10 + p], 100 * r + p);
    CHECK(kv_cache_row(&kv, 2) == kv.req_to_token + 20);
    kv_cache_release_row(&kv, r1);
    CHECK_EQ_INT(kv.num_free_rows, 1);
    CHECK_EQ_INT(kv_cache_alloc_row(&kv), r1);
    CHECK_EQ_INT(kv_cache_alloc_row(&kv), -1);
    kv_cache_release_row(&kv, r0);
    kv_cache_release_row(&kv, r1);
    kv_cache_release_row(&kv, r2);
    CHECK_EQ_INT(kv.num_free_rows, 3);
    int32_t got[3];
    for (int i = 0; i < 3; i++) got[i] = kv_cache_alloc_row(&kv);
    CHECK_EQ_INT(got[0] + got[1] + got[2], 3);
    CHECK(got[0] != got[1] && got[1] != got[2] && got[0] != got[2]);
    CHECK_EQ_INT(kv_cache_alloc_row(&kv), -1);
    kv_cache_free(&kv);
}

TEST_CASE(kv_cache_random_alloc_release)
{
    /* Random churn against a simple ownership model: every slot is free or held once. */
    kv_cache kv;
    const int32_t n = 257;
    CHECK_EQ_INT(kv_cache_init(&kv, n, 1, 1), STATUS_OK);
    int32_t *held = malloc((size_t)n * sizeof *held);
    int32_t num_held = 0;
    uint8_t *owned = calloc((size_t)n, 1);
    unsigned seed = 12345;
    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        int32_t k = (int32_t)((seed >> 16) % 9);
        if ((seed >> 8) & 1) {
            if (kv_cache_can_alloc(&kv, k)) {
                kv_cache_alloc(&kv, k, held + num_held);
                for (int32_t i = 0; i < k; i++) {
                    CHECK(!owned[held[num_held + i]]);
                    owned[held[num_held + i]] = 1;
                }
                num_held += k;
            } else {
                CHECK(k > kv.num_free);
            }
        } else {
            if (k > num_held) k = num_held;
            /* release the last k (arbitrary choice of which) */
            for (int32_t i = 0; i < k; i++) owned[held[num_held - k + i]] = 0;
            kv_cache_release(&kv, held + num_held - k, k);
            num_held -= k;
        }
        CHECK_EQ_INT(kv.num_free + num_held, n);
    }
    kv_cache_release(&kv, held, num_held);
    CHECK_EQ_INT(kv.num_free, n);
    free(owned);
    free(held);
    kv_cache_free(&kv);
}

/* Runs fn in a forked child (stderr silenced); returns 1 when the child aborted. */
static int kv_cache_test_aborts(void (*fn)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        fn();
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return 0;
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void kv_cache_test_double_release_slot(void)
{
    kv_cache kv;
    int32_t s[2];
    if (kv_cache_init(&kv, 4, 1, 1) != STATUS_OK) _exit(3);
    kv_cache_alloc(&kv, 2, s);
    kv_cache_release(&kv, s, 1);
    kv_cache_release(&kv, s, 1);
    kv_cache_free(&kv);
}

static void kv_cache_test_release_out_of_range(void)
{
    kv_cache kv;
    int32_t bad = 4;
    if (kv_cache_init(&kv, 4, 1, 1) != STATUS_OK) _exit(3);
    kv_cache_release(&kv, &bad, 1);
    kv_cache_free(&kv);
}

static void kv_cache_test_double_release_row(void)
{
    kv_cache kv;
    if (kv_cache_init(&kv, 4, 3, 1) != STATUS_OK) _exit(3);
    int32_t r = kv_cache_alloc_row(&kv);
    kv_cache_alloc_row(&kv);
    kv_cache_release_row(&kv, r);
    kv_cache_release_row(&kv, r);
    kv_cache_free(&kv);
}

static void kv_cache_test_over_alloc(void)
{
    kv_cache kv;
    int32_t s[5];
    if (kv_cache_init(&kv, 4, 1, 1) != STATUS_OK) _exit(3);
    kv_cache_alloc(&kv, 5, s);
    kv_cache_free(&kv);
}

TEST_CASE(kv_cache_misuse_asserts)
{
    CHECK(kv_cache_test_aborts(kv_cache_test_double_release_slot));
    CHECK(kv_cache_test_aborts(kv_cache_test_release_out_of_range));
    CHECK(kv_cache_test_aborts(kv_cache_test_double_release_row));
    CHECK(kv_cache_test_aborts(kv_cache_test_over_alloc));
}
