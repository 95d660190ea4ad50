/* test_threadpool.c — threadpool_run: every task exactly once, thread indices in range and
 * never shared by two concurrently running calls, many runs in a row, 1-thread pools. */
#include <stdatomic.h>
#include <stdlib.h>

#include "core/threadpool.h"
#include "test_util.h"

#define TP_TEST_MAX_TASKS 4096
#define TP_TEST_MAX_THREADS 16

typedef struct tp_test_ctx {
    atomic_int hits[TP_TEST_MAX_TASKS];
    atomic_int busy[TP_TEST_MAX_THREADS];  /* 1 while a call with that thread index runs */
    atomic_int bad_thread;                 /* thread index out of range */
    atomic_int shared_thread;              /* two concurrent calls with one index */
    int num_threads;
    int work;                              /* busy-loop length per task */
} tp_test_ctx;

static void tp_test_task(void *ctx_, int task, int thread)
{
    tp_test_ctx *ctx = ctx_;
    if (thread < 0 || thread >= ctx->num_threads || thread >= TP_TEST_MAX_THREADS) {
        atomic_fetch_add(&ctx->bad_thread, 1);
        return;
    }
    if (atomic_exchange(&ctx->busy[thread], 1) != 0) atomic_fetch_add(&ctx->shared_thread, 1);
    volatile unsigned sink = 0;
    for (int i = 0; i < ctx->work; i++) sink += (unsigned)i * (unsigned)task;
    atomic_fetch_add(&ctx->hits[task], 1);
    atomic_store(&ctx->busy[thread], 0);
}

static tp_test_ctx *tp_test_ctx_new(int num_threads, int work)
{
    tp_test_ctx *ctx = calloc(1, sizeof(*ctx));
    ctx->num_threads = num_threads;
    ctx->work = work;
    return ctx;
}

/* Runs num_tasks tasks `runs` times and checks each ran exactly `runs` times. */
static void tp_test_check_runs(threadpool *tp, int num_tasks, int runs, int work)
{
    tp_test_ctx *ctx = tp_test_ctx_new(threadpool_num_threads(tp), work);
    for (int r = 0; r < runs; r++) threadpool_run(tp, tp_test_task, ctx, num_tasks);
    int wrong = 0;
    for (int t = 0; t < num_tasks; t++) wrong += atomic_load(&ctx->hits[t]) != runs;
    for (int t = num_tasks; t < TP_TEST_MAX_TASKS; t++) wrong += atomic_load(&ctx->hits[t]) != 0;
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(atomic_load(&ctx->bad_thread), 0);
    CHECK_EQ_INT(atomic_load(&ctx->shared_thread), 0);
    free(ctx);
}

TEST_CASE(threadpool_every_task_once)
{
    threadpool *tp = threadpool_create(4);
    CHECK_EQ_INT(threadpool_num_threads(tp), 4);
    int sizes[] = {0, 1, 2, 3, 4, 5, 7, 64, 1000, TP_TEST_MAX_TASKS};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        tp_test_check_runs(tp, sizes[i], 1, 0);
        tp_test_check_runs(tp, sizes[i], 1, 2000);
    }
    threadpool_free(tp);
}

TEST_CASE(threadpool_many_runs)
{
    threadpool *tp = threadpool_create(3);
    tp_test_check_runs(tp, 17, 5000, 0);       /* back to back: exercises the spin path */
    tp_test_check_runs(tp, 3, 2000, 100);
    tp_test_check_runs(tp, 256, 200, 500);
    threadpool_free(tp);
}

TEST_CASE(threadpool_sleep_between_runs)
{
    /* Runs separated by more than the spin window, so workers go to sleep each time. */
    threadpool *tp = threadpool_create(3);
    for (int r = 0; r < 20; r++) {
        tp_test_check_runs(tp, 9, 1, 0);
        volatile unsigned sink = 0;
        for (int i = 0; i < 3000000; i++) sink += (unsigned)i;
    }
    threadpool_free(tp);
}

TEST_CASE(threadpool_single_thread)
{
    threadpool *tp = threadpool_create(1);
    CHECK_EQ_INT(threadpool_num_threads(tp), 1);
    tp_test_check_runs(tp, 100, 10, 10);
    threadpool_free(tp);
    /* NULL pool: inline on the caller. */
    CHECK_EQ_INT(threadpool_num_threads(NULL), 1);
    tp_test_check_runs(NULL, 50, 3, 0);
}

TEST_CASE(threadpool_more_threads_than_cpus)
{
    threadpool *tp = threadpool_create(TP_TEST_MAX_THREADS);
    CHECK_EQ_INT(threadpool_num_threads(tp), TP_TEST_MAX_THREADS);
    tp_test_check_runs(tp, 1000, 20, 200);
    tp_test_check_runs(tp, 5, 200, 0);
    threadpool_free(tp);
}

TEST_CASE(threadpool_default_size)
{
    threadpool *tp = threadpool_create(0);
    CHECK(threadpool_num_threads(tp) >= 1);
    tp_test_check_runs(tp, 33, 10, 0);
    threadpool_free(tp);
    threadpool_free(NULL);
}
