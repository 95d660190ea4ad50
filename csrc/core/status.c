/* status.c — thread-local last-error message; see status.h. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char status_buf[1024];

status_t status_set(status_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(status_buf, sizeof status_buf, fmt, ap);
    va_end(ap);
    return code;
}

const char *status_message(void) { return status_buf; }

const char *status_name(status_t code)
{
    switch (code) {
    case STATUS_OK: return "OK";
    case STATUS_INVALID_ARG: return "INVALID_ARG";
    case STATUS_NOT_FOUND: return "NOT_FOUND";
    case STATUS_IO: return "IO";
    case STATUS_FORMAT: return "FORMAT";
    case STATUS_UNSUPPORTED: return "UNSUPPORTED";
    case STATUS_NO_MEMORY: return "NO_MEMORY";
    case STATUS_CAPACITY: return "CAPACITY";
    case STATUS_DEVICE: return "DEVICE";
    }
    return "UNKNOWN";
}
