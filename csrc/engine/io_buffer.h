/* io_buffer.h — ShmReqsIOBuffer: router -> backend commands and backend -> router status.
 *
 * CONTRACT (implementation: engine/io_buffer.c)
 * One segment (core/shm.h, kind SHM_KIND_IO_BUFFER) per backend group (rank 0 of a TP group
 * reads it and broadcasts, DESIGN.md §2):
 *   [0, 64)      shm_header
 *   [64, 448)    io_buffer_header: geometry, the write counter (producer cache line), the
 *                read counter (consumer cache line), the status block (backend cache lines)
 *   cmds_offset  io_buffer_cmd [capacity]   (64 bytes each)
 * Layout pinned by static_asserts; IO_BUFFER_LAYOUT_VERSION changes when it changes.
 *
 * Command ring: bounded single-producer (router) single-consumer (backend).  Counters are
 * monotonic 64-bit; the producer publishes a command with a release store of `write`, the
 * consumer frees its cell with a release store of `read`.  Commands carry 1..12 request-pool
 * slot numbers and a sequence number (1, 2, 3, ... in push order; the consumer asserts there is
 * no gap).  When the ring is full io_buffer_push_cmd returns 0 and writes nothing: the router
 * keeps the command and retries at its next step (back-pressure; the backend never waits).
 * Kinds:
 *   ADD    start these slots (the router took a request-pool reference for the backend,
 *          shm_req_add_ref, before pushing; the backend releases it when done with the slot)
 *   ABORT  their clients went away: finish with SHM_REQ_FINISH_ABORT, free their KV
 *   STOP   stop generating these slots (router decision: shutdown, drain); the router/backend
 *          protocol (a later step) fixes the finish reason
 *
 * Status block: the backend publishes a whole io_buffer_status at once under a sequence lock
 * (even version = stable); io_buffer_read_status returns a consistent snapshot, or 0 when it saw
 * a write in progress for too long (a writer that died mid-publish: treat it as unhealthy).  The
 * reader never blocks the writer.
 *
 * Errors: a capacity that is not a power of two in [2, 2^20] is STATUS_INVALID_ARG; attach
 * errors are core/shm.h's.  Command kind / slot count out of range is our bug: LL_ASSERT.
 */
#ifndef LIGHTLLM_ENGINE_IO_BUFFER_H
#define LIGHTLLM_ENGINE_IO_BUFFER_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/shm.h"
#include "core/status.h"

#define IO_BUFFER_LAYOUT_VERSION 3u
#define IO_BUFFER_CMD_MAX_SLOTS 12

enum {
    IO_BUFFER_CMD_ADD = 1,
    IO_BUFFER_CMD_ABORT = 2,
    IO_BUFFER_CMD_STOP = 3,
};

/* One command; 64 bytes. */
typedef struct io_buffer_cmd {
    uint64_t seq;                                /* set by push: 1, 2, 3, ... */
    uint32_t kind;                               /* IO_BUFFER_CMD_* */
    int32_t num_slots;                           /* 1..IO_BUFFER_CMD_MAX_SLOTS */
    int32_t slots[IO_BUFFER_CMD_MAX_SLOTS];      /* request-pool slot numbers */
} io_buffer_cmd;

/* The backend's status, as published (process-local copy). */
typedef struct io_buffer_status {
    int64_t kv_slots_total;
    int64_t kv_slots_free;
    int64_t kv_slots_cached;     /* held only by the prefix cache (evictable) */
    int32_t num_running;
    int32_t num_waiting;
    uint64_t step;               /* forward steps done */
    int64_t last_step_us;        /* CLOCK_MONOTONIC microseconds (shm_req_now_us) of the last step */
    int32_t healthy;             /* 1 = serving; 0 = the backend hit an error */
    int32_t reserved;
    int64_t forward_us;          /* total time inside the model's forward (the GPU busy) */
    int64_t active_us;           /* total wall time the backend had work; 1 - forward/active is the share
                                  * of busy time the GPU waited for the CPU */
    int64_t num_preemptions;     /* sequences paused for KV room (they recompute) */
} io_buffer_status;

/* In the segment after shm_header; 384 bytes. */
typedef struct io_buffer_header {
    uint32_t capacity;           /* commands, power of two */
    uint32_t cmd_bytes;          /* sizeof(io_buffer_cmd) of the creator */
    uint64_t cmds_offset;        /* from the segment base */
    uint8_t reserved0[48];
    /* producer (router) line, offset 64 in this header */
    _Atomic uint64_t write;
    uint8_t reserved1[56];
    /* consumer (backend) line, offset 128 */
    _Atomic uint64_t read;
    uint8_t reserved2[56];
    /* status block (backend writes, router reads), offset 192 */
    _Atomic uint64_t status_version;             /* odd while a publish is in progress */
    _Atomic int64_t kv_slots_total;
    _Atomic int64_t kv_slots_free;
    _Atomic int64_t kv_slots_cached;
    _Atomic int32_t num_running;
    _Atomic int32_t num_waiting;
    _Atomic uint64_t step;
    _Atomic int64_t last_step_us;
    _Atomic int32_t healthy;
    int32_t reserved4;
    _Atomic int64_t forward_us;                  /* total time inside the model's forward */
    _Atomic int64_t active_us;                   /* total wall time the backend had work */
    _Atomic int64_t num_preemptions;
    uint8_t reserved3[104];
} io_buffer_header;

/* Process-local handle. */
typedef struct io_buffer {
    shm_segment seg;
    io_buffer_header *header;
    io_buffer_cmd *cmds;         /* [capacity] in the mapping */
    uint32_t capacity;
} io_buffer;

/* Creates and publishes the segment `name`: an empty ring, status all zero (healthy 0). */
status_t io_buffer_create(io_buffer *io, const char *name, uint32_t capacity);
status_t io_buffer_attach(io_buffer *io, const char *name);
/* Unmaps; safe on a zeroed or detached handle.  Never unlinks. */
void io_buffer_detach(io_buffer *io);
/* Detaches and unlinks the name (the creator, at shutdown). */
status_t io_buffer_destroy(io_buffer *io);

/* Router: appends a command; returns its sequence number (>= 1), or 0 when the ring is full. */
uint64_t io_buffer_push_cmd(io_buffer *io, uint32_t kind, const int32_t *slots, int32_t num_slots);
/* Backend: takes the oldest command into *out; returns 1, or 0 when the ring is empty. */
int io_buffer_pop_cmd(io_buffer *io, io_buffer_cmd *out);
uint32_t io_buffer_num_pending(const io_buffer *io);
int io_buffer_is_full(const io_buffer *io);

/* Backend: publishes a status snapshot (sequence lock; never blocks). */
void io_buffer_publish_status(io_buffer *io, const io_buffer_status *s);
/* Router: a consistent snapshot into *out; 1 on success, 0 if a publish stayed in progress. */
int io_buffer_read_status(const io_buffer *io, io_buffer_status *out);

#endif
