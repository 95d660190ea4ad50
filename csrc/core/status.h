/* status.h — the one error vocabulary of the core.
 *
 * Three tiers (DESIGN.md §5): our own bugs are asserts (core/log.h); failures of the
 * system or of CUDA, and bad user input or capacity, are returned as a status_t.  The
 * function that fails first records a human-readable message with status_set(); callers
 * pass the code up unchanged.  csrc/py turns the code into a Python exception carrying the
 * message (INVALID_ARG -> ValueError, NOT_FOUND -> FileNotFoundError, NO_MEMORY ->
 * MemoryError, the rest -> RuntimeError).  The message buffer is thread-local, so engine
 * threads do not clobber each other.  The core never exits.
 */
#ifndef LIGHTLLM_CORE_STATUS_H
#define LIGHTLLM_CORE_STATUS_H

typedef enum status_t {
    STATUS_OK = 0,
    STATUS_INVALID_ARG,   /* user input out of range / malformed: names the field */
    STATUS_NOT_FOUND,     /* missing file or tensor */
    STATUS_IO,            /* open/read/mmap failed */
    STATUS_FORMAT,        /* file present but malformed (truncated, bad header, wrong shape) */
    STATUS_UNSUPPORTED,   /* valid but not supported yet (architecture, dtype, option) */
    STATUS_NO_MEMORY,     /* host or device allocation failed */
    STATUS_CAPACITY,      /* a pool is full (requests, KV slots) */
    STATUS_DEVICE,        /* CUDA / cuBLAS / NCCL failure */
} status_t;

/* Record `code` with a printf-style message and return `code` (so: return status_set(...)). */
status_t status_set(status_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded on this thread ("" if none). */
const char *status_message(void);
/* The name of a code, e.g. "INVALID_ARG". */
const char *status_name(status_t code);

#define STATUS_TRY(expr)                        \
    do {                                        \
        status_t status_try_ = (expr);          \
        if (status_try_ != STATUS_OK) return status_try_; \
    } while (0)

#endif
