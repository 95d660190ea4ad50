/* threadpool.c — persistent worker threads running parallel-for loops (contract: threadpool.h).
 *
 * Design: one job at a time.  threadpool_run publishes (fn, ctx, num_tasks) under the mutex,
 * bumps `generation` and broadcasts cv_work; every thread (the caller as thread 0, worker w
 * as thread w) then claims task indices from the atomic counter `next_task` until it runs
 * past num_tasks, so tasks are spread dynamically and each runs exactly once.  A worker
 * that is out of tasks decrements `num_active`; the last one signals cv_done, and the caller
 * returns once num_active is 0, i.e. when no worker can still touch the job.
 *
 * Idle workers spin for a short while on `generation` (back-to-back runs, as in a decode
 * step of many small GEMMs, then start without a futex wake-up) and then sleep on cv_work.
 * The caller likewise spins briefly on num_active before sleeping on cv_done.
 *
 * Invariants: `generation` only changes under `mu`, so a worker that checks it under `mu`
 * before waiting cannot miss a wake-up; the job fields are written before the generation
 * bump (release) and read after seeing it (acquire); they are not rewritten before
 * num_active reaches 0.
 */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/log.h"

#define THREADPOOL_MAX_THREADS 1024
#define THREADPOOL_SPIN_ITERS 2000 /* ~tens of microseconds of pause */

struct threadpool {
    int num_threads;             /* including the caller of threadpool_run */
    pthread_t *workers;          /* [num_threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    threadpool_fn fn;            /* the current job, valid while num_active > 0 */
    void *ctx;
    int num_tasks;
    atomic_int next_task;
    atomic_int num_active;       /* workers not yet done with the current job */
    atomic_uint generation;      /* bumped once per job */
    atomic_int stop;
};

typedef struct threadpool_worker_arg {
    threadpool *tp;
    int thread;
} threadpool_worker_arg;

static inline void threadpool_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void threadpool_run_tasks(threadpool *tp, threadpool_fn fn, void *ctx, int num_tasks,
                                 int thread)
{
    for (;;) {
        int task = atomic_fetch_add_explicit(&tp->next_task, 1, memory_order_relaxed);
        if (task >= num_tasks) break;
        fn(ctx, task, thread);
    }
}

static void *threadpool_worker_main(void *arg_)
{
    threadpool_worker_arg arg = *(threadpool_worker_arg *)arg_;
    free(arg_);
    threadpool *tp = arg.tp;
    unsigned seen = 0; /* the generation at creation: a job published before this thread
                          got here must still be seen as new */
    for (;;) {
        unsigned gen = seen;
        for (int i = 0; i < THREADPOOL_SPIN_ITERS && gen == seen; i++) {
            threadpool_cpu_relax();
            gen = atomic_load_explicit(&tp->generation, memory_order_acquire);
            if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) return NULL;
        }
        if (gen == seen) {
            pthread_mutex_lock(&tp->mu);
            while ((gen = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
                   !atomic_load_explicit(&tp->stop, memory_order_relaxed))
                pthread_cond_wait(&tp->cv_work, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) return NULL;
        seen = gen;
        threadpool_run_tasks(tp, tp->fn, tp->ctx, tp->num_tasks, arg.thread);
        if (atomic_fetch_sub_explicit(&tp->num_active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&tp->mu);
            pthread_cond_signal(&tp->cv_done);
            pthread_mutex_unlock(&tp->mu);
        }
    }
}

static int threadpool_default_threads(void)
{
    const char *env = getenv("LIGHTLLM_NUM_THREADS");
    if (env && *env) {
        int n = atoi(env);
        if (n > 0) return n;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    return 1;
}

threadpool *threadpool_create(int num_threads)
{
    if (num_threads <= 0) num_threads = threadpool_default_threads();
    if (num_threads > THREADPOOL_MAX_THREADS) num_threads = THREADPOOL_MAX_THREADS;
    threadpool *tp = log_xcalloc(1, sizeof(*tp));
    tp->num_threads = num_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv_work, NULL);
    pthread_cond_init(&tp->cv_done, NULL);
    atomic_init(&tp->next_task, 0);
    atomic_init(&tp->num_active, 0);
    atomic_init(&tp->generation, 0);
    atomic_init(&tp->stop, 0);
    if (num_threads > 1) tp->workers = log_xcalloc((size_t)num_threads - 1, sizeof(pthread_t));
    for (int t = 1; t < num_threads; t++) {
        threadpool_worker_arg *arg = log_xmalloc(sizeof(*arg));
        arg->tp = tp;
        arg->thread = t;
        int rc = pthread_create(&tp->workers[t - 1], NULL, threadpool_worker_main, arg);
        if (rc != 0) {
            /* Could not start more threads: run with the ones we have. */
            free(arg);
            log_warn("threadpool: pthread_create failed (%d); using %d threads", rc, t);
            tp->num_threads = t;
            break;
        }
    }
    return tp;
}

void threadpool_free(threadpool *tp)
{
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->cv_work);
    pthread_mutex_unlock(&tp->mu);
    for (int t = 1; t < tp->num_threads; t++) pthread_join(tp->workers[t - 1], NULL);
    pthread_cond_destroy(&tp->cv_done);
    pthread_cond_destroy(&tp->cv_work);
    pthread_mutex_destroy(&tp->mu);
    free(tp->workers);
    free(tp);
}

int threadpool_num_threads(const threadpool *tp)
{
    return tp ? tp->num_threads : 1;
}

void threadpool_run(threadpool *tp, threadpool_fn fn, void *ctx, int num_tasks)
{
    if (num_tasks <= 0) return;
    if (!tp || tp->num_threads == 1 || num_tasks == 1) {
        for (int task = 0; task < num_tasks; task++) fn(ctx, task, 0);
        return;
    }
    LL_ASSERT(atomic_load(&tp->num_active) == 0); /* not re-entrant */
    pthread_mutex_lock(&tp->mu);
    tp->fn = fn;
    tp->ctx = ctx;
    tp->num_tasks = num_tasks;
    atomic_store_explicit(&tp->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&tp->num_active, tp->num_threads - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&tp->generation, 1, memory_order_release);
    pthread_cond_broadcast(&tp->cv_work);
    pthread_mutex_unlock(&tp->mu);

    threadpool_run_tasks(tp, fn, ctx, num_tasks, 0);

    for (int i = 0; i < THREADPOOL_SPIN_ITERS; i++) {
        if (atomic_load_explicit(&tp->num_active, memory_order_acquire) == 0) return;
        threadpool_cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    while (atomic_load_explicit(&tp->num_active, memory_order_acquire) != 0)
        pthread_cond_wait(&tp->cv_done, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
}
