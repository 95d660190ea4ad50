/* shm.h — POSIX shared-memory segments: create, attach, detach, unlink, stale reclaim.
 *
 * CONTRACT (implementation: core/shm.c)
 * Purpose: the substrate of the multi-process server (DESIGN.md §2, §8).  The API server,
 * the router and the backends share fixed C structs (engine/shm_req.h, engine/io_buffer.h)
 * through segments made here.
 *
 * Names: "/lightllm-<server_id>-<what>" (shm_make_name).  server_id is unique per server run
 * (the launcher passes e.g. "<pid>x<random hex>"); server_id and what use [A-Za-z0-9_.] only
 * (no '-', so "lightllm-<server_id>-" is an unambiguous prefix of one run's segments), at most
 * SHM_PART_MAX_CHARS each.
 *
 * Header: every segment starts with shm_header (64 bytes): magic (SHM_MAGIC, common to all
 * lightllm segments), kind (which struct follows: SHM_KIND_*), layout_version (of that kind),
 * header_bytes, total_bytes, creator_pid, created_unix_ms and an atomic `ready` flag.
 * shm_create_segment writes the header with ready = 0; the creator initialises the body and then calls
 * shm_mark_ready (release store).  shm_attach_segment checks, in order: the size covers a header, magic,
 * kind, layout version, total_bytes == the segment's size, ready == 1 (acquire) — and fails with
 * STATUS_FORMAT and a message naming the segment and the mismatch (a server and a client from
 * different builds get "layout version 3, this build expects 4").
 *
 * Errors: a missing segment is STATUS_NOT_FOUND, other system failures STATUS_IO; both carry
 * strerror text and the segment name.  Bad names are STATUS_INVALID_ARG.
 *
 * Ownership: shm_segment is a process-local handle (name + mapping).  shm_detach_segment unmaps (never
 * unlinks); the creator (or the launcher at shutdown) calls shm_unlink_segment.  A mapping inherited
 * through fork() is valid in the child; the child may also attach its own.
 *
 * Stale reclaim (DESIGN.md §8): shm_reclaim_stale scans /dev/shm for names starting with a
 * prefix (which must itself start with "lightllm-"), reads each header, and unlinks segments
 * whose creator pid no longer exists (kill(pid, 0) fails with ESRCH).  Files without a valid
 * lightllm header (foreign, or a creator that died between O_CREAT and writing the header) are
 * left alone.  Limits: a zombie creator (exited, not yet waited for) still exists; a recycled
 * pid keeps a stale segment alive until that pid exits; pid namespaces that share /dev/shm
 * would see foreign pids.  The names carry the unique server_id, so the only cost of a missed
 * reclaim is memory, never a clash.
 *
 * Cross-process atomics: C11 atomics on lock-free 32/64-bit types are address-free and so
 * valid across processes sharing the mapping; shm.c static_asserts lock-freedom.
 */
#ifndef LIGHTLLM_CORE_SHM_H
#define LIGHTLLM_CORE_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SHM_MAGIC 0x31304d48534d4c4cull /* the bytes "LLMSHM01" on a little-endian host */
#define SHM_PART_MAX_CHARS 64
#define SHM_NAME_MAX_CHARS (1 + 9 + SHM_PART_MAX_CHARS + 1 + SHM_PART_MAX_CHARS + 1) /* + NUL */
#define SHM_NAME_PREFIX "lightllm-"

/* Kinds of segment (what follows the header). */
enum {
    SHM_KIND_TEST = 1,       /* raw segments made by tests */
    SHM_KIND_REQ_POOL = 2,   /* engine/shm_req.h */
    SHM_KIND_IO_BUFFER = 3,  /* engine/io_buffer.h */
};

typedef struct shm_header {
    uint64_t magic;             /* SHM_MAGIC */
    uint32_t kind;              /* SHM_KIND_* */
    uint32_t layout_version;    /* of the kind's layout */
    uint64_t header_bytes;      /* sizeof(shm_header) */
    uint64_t total_bytes;       /* whole segment, header included */
    int64_t creator_pid;
    int64_t created_unix_ms;
    _Atomic uint32_t ready;     /* 0 while the creator initialises the body, then 1 */
    uint32_t reserved[3];
} shm_header;

typedef struct shm_segment {
    char name[SHM_NAME_MAX_CHARS];  /* "/lightllm-..." */
    void *base;                     /* the mapping [total_bytes]; starts with shm_header; NULL when detached */
    size_t total_bytes;
} shm_segment;

/* Writes "/lightllm-<server_id>-<what>" into out[cap]. */
status_t shm_make_name(char *out, size_t cap, const char *server_id, const char *what);

/* Creates `name` (O_CREAT|O_EXCL, mode 0600; an existing name is STATUS_IO "exists"), sizes it to
 * total_bytes (>= sizeof(shm_header)), maps it read-write, zero-filled, and writes the header with
 * ready = 0.  On failure nothing is left behind (the name is unlinked). */
status_t shm_create_segment(shm_segment *seg, const char *name, size_t total_bytes, uint32_t kind,
                    uint32_t layout_version);
/* Publishes a created segment: ready = 1 (release); the body must be initialised before. */
void shm_mark_ready(shm_segment *seg);
/* Opens and maps an existing segment read-write after the header checks above. */
status_t shm_attach_segment(shm_segment *seg, const char *name, uint32_t kind, uint32_t layout_version);
/* Unmaps (the name stays).  Safe on a zeroed or already detached handle. */
void shm_detach_segment(shm_segment *seg);
/* Removes the name (mappings stay valid until detached).  A missing name is STATUS_NOT_FOUND. */
status_t shm_unlink_segment(const char *name);
static inline shm_header *shm_get_header(const shm_segment *seg) { return (shm_header *)seg->base; }

/* Unlinks stale segments under /dev/shm whose name starts with prefix (NULL = "lightllm-"; any
 * other prefix must start with "lightllm-"); *out_num_reclaimed = how many were unlinked. */
status_t shm_reclaim_stale(const char *prefix, int32_t *out_num_reclaimed);
/* Counts names under /dev/shm starting with prefix (same rule); for diagnostics and tests. */
status_t shm_count_segments(const char *prefix, int32_t *out_count);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t shm_now_unix_ms(void);

#endif
