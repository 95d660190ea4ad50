/* log.h — asserts for our own bugs (abort with file:line) and checked allocation.
 *
 * LL_ASSERT is always on (not tied to NDEBUG): an invariant broken inside the engine is a
 * bug, and continuing would produce garbage.  It is never used for user input; that is a
 * status_t (core/status.h).
 */
#ifndef LIGHTLLM_CORE_LOG_H
#define LIGHTLLM_CORE_LOG_H

#include <stddef.h>

void log_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define LL_ASSERT(cond) \
    do { if (!(cond)) log_assert_fail(#cond, __FILE__, __LINE__); } while (0)

/* malloc/calloc that assert on failure: only for small bookkeeping, never for pools sized by
 * the user (those return STATUS_NO_MEMORY). */
void *log_xmalloc(size_t bytes);
void *log_xcalloc(size_t count, size_t bytes);

#endif
