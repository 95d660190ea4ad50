/* test_shm_util.h — helpers shared by the shared-memory tests (test_shm.c, test_shm_req.c,
 * test_io_buffer.c): per-process segment names, a leftover count, and waiting for a forked child. */
#ifndef LIGHTLLM_TEST_SHM_UTIL_H
#define LIGHTLLM_TEST_SHM_UTIL_H

#include <signal.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/shm.h"
#include "test_util.h"

/* "/lightllm-ut<pid>-<what>": unique to this test process. */
static inline void test_shm_name(char *out, size_t cap, const char *what)
{
    char id[32];
    snprintf(id, sizeof id, "ut%d", (int)getpid());
    CHECK_EQ_INT(shm_make_name(out, cap, id, what), STATUS_OK);
}

/* Segments this test process left in /dev/shm. */
static inline int32_t test_shm_leftovers(void)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "lightllm-ut%d-", (int)getpid());
    int32_t n = -1;
    CHECK_EQ_INT(shm_count_segments(prefix, &n), STATUS_OK);
    return n;
}

/* Waits up to timeout_ms for pid; its exit code, or -1 (killed on timeout, or died by a signal). */
static inline int test_shm_wait(pid_t pid, int timeout_ms)
{
    for (int waited = 0;; waited++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

#endif
