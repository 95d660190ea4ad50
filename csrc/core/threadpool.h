/* threadpool.h — a persistent pool of worker threads running parallel-for loops.
 *
 * CONTRACT (implementation: core/threadpool.c)
 * - threadpool_create(n): n >= 1 threads in total, counting the caller of threadpool_run
 *   (so n-1 pthreads are started). n <= 0 means "one per CPU the process may run on"
 *   (sched_getaffinity), or the LIGHTLLM_NUM_THREADS environment variable when set.
 * - threadpool_run(tp, fn, ctx, num_tasks): calls fn(ctx, task, thread) once for every task in
 *   [0, num_tasks), spread over the threads (the caller runs tasks too), and returns when all
 *   are done.  thread is in [0, threadpool_num_threads(tp)) and no two concurrently running
 *   calls share a thread index, so fn may use per-thread scratch indexed by it.  Not
 *   re-entrant: fn must not call threadpool_run on the same pool.  num_tasks == 1 or a
 *   1-thread pool runs inline with no synchronisation.
 * - Workers sleep on a condition variable between runs (no busy spinning while idle beyond a
 *   short spin).
 */
#ifndef LIGHTLLM_CORE_THREADPOOL_H
#define LIGHTLLM_CORE_THREADPOOL_H

typedef struct threadpool threadpool;
typedef void (*threadpool_fn)(void *ctx, int task, int thread);

threadpool *threadpool_create(int num_threads);
void threadpool_free(threadpool *tp);
int threadpool_num_threads(const threadpool *tp);
void threadpool_run(threadpool *tp, threadpool_fn fn, void *ctx, int num_tasks);

#endif
