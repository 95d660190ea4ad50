/* log.c — assert failure path, warnings to stderr, checked small allocations. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void log_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lightllm: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("lightllm: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void *log_xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    LL_ASSERT(p != NULL);
    return p;
}

void *log_xcalloc(size_t count, size_t bytes)
{
    void *p = calloc(count ? count : 1, bytes ? bytes : 1);
    LL_ASSERT(p != NULL);
    return p;
}
