/* io_buffer.c — the router -> backend command ring and the backend status block; see
 * io_buffer.h for the contract.
 *
 * Design: the classic SPSC ring (power-of-two capacity, monotonic counters, acquire/release on
 * the counters only) and a sequence lock for the status block (all fields are atomics written
 * relaxed between two version bumps, so a torn read is detected, never undefined).
 * Invariants: 0 <= write - read <= capacity; cmds[i & (capacity-1)].seq == i + 1 for every
 * published, unconsumed i.
 */
#include "engine/io_buffer.h"

#include <assert.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>

#include "core/log.h"

static_assert(sizeof(io_buffer_cmd) == 64 && offsetof(io_buffer_cmd, slots) == 16, "command layout");
static_assert(sizeof(io_buffer_header) == 384, "io buffer header layout");
static_assert(offsetof(io_buffer_header, write) == 64 && offsetof(io_buffer_header, read) == 128 &&
              offsetof(io_buffer_header, status_version) == 192 && offsetof(io_buffer_header, healthy) == 248,
              "io buffer header layout");

#define IO_BUFFER_MAX_CAPACITY (1u << 20)
#define IO_BUFFER_STATUS_MAX_TRIES 100000

static uint64_t io_buffer_layout(uint32_t capacity, uint64_t *cmds_offset)
{
    *cmds_offset = sizeof(shm_header) + sizeof(io_buffer_header); /* 448, a multiple of 64 */
    return *cmds_offset + (uint64_t)capacity * sizeof(io_buffer_cmd);
}

static status_t io_buffer_check_capacity(uint32_t capacity)
{
    if (capacity < 2 || capacity > IO_BUFFER_MAX_CAPACITY || (capacity & (capacity - 1)) != 0)
        return status_set(STATUS_INVALID_ARG, "io buffer capacity must be a power of two in [2, 2^20], got %u",
                          capacity);
    return STATUS_OK;
}

static void io_buffer_bind(io_buffer *io)
{
    uint8_t *base = io->seg.base;
    io->header = (io_buffer_header *)(base + sizeof(shm_header));
    io->cmds = (io_buffer_cmd *)(base + io->header->cmds_offset);
    io->capacity = io->header->capacity;
}

status_t io_buffer_create(io_buffer *io, const char *name, uint32_t capacity)
{
    memset(io, 0, sizeof(*io));
    STATUS_TRY(io_buffer_check_capacity(capacity));
    uint64_t cmds_offset;
    uint64_t total = io_buffer_layout(capacity, &cmds_offset);
    STATUS_TRY(shm_create_segment(&io->seg, name, (size_t)total, SHM_KIND_IO_BUFFER, IO_BUFFER_LAYOUT_VERSION));
    io_buffer_header *h = (io_buffer_header *)((uint8_t *)io->seg.base + sizeof(shm_header));
    h->capacity = capacity;
    h->cmd_bytes = sizeof(io_buffer_cmd);
    h->cmds_offset = cmds_offset;
    io_buffer_bind(io);
    shm_mark_ready(&io->seg);
    return STATUS_OK;
}

status_t io_buffer_attach(io_buffer *io, const char *name)
{
    memset(io, 0, sizeof(*io));
    STATUS_TRY(shm_attach_segment(&io->seg, name, SHM_KIND_IO_BUFFER, IO_BUFFER_LAYOUT_VERSION));
    io_buffer_header *h = (io_buffer_header *)((uint8_t *)io->seg.base + sizeof(shm_header));
    uint64_t cmds_offset = 0;
    status_t st = STATUS_OK;
    if (io->seg.total_bytes < sizeof(shm_header) + sizeof(io_buffer_header))
        st = status_set(STATUS_FORMAT, "io buffer %s: segment too small for its header", name);
    else if (io_buffer_check_capacity(h->capacity) != STATUS_OK || h->cmd_bytes != sizeof(io_buffer_cmd) ||
             io_buffer_layout(h->capacity, &cmds_offset) != io->seg.total_bytes || cmds_offset != h->cmds_offset)
        st = status_set(STATUS_FORMAT, "io buffer %s: corrupt header (capacity %u, command size %u)", name,
                        h->capacity, h->cmd_bytes);
    if (st != STATUS_OK) {
        shm_detach_segment(&io->seg);
        return st;
    }
    io_buffer_bind(io);
    return STATUS_OK;
}

void io_buffer_detach(io_buffer *io)
{
    shm_detach_segment(&io->seg);
    io->header = NULL;
    io->cmds = NULL;
    io->capacity = 0;
}

status_t io_buffer_destroy(io_buffer *io)
{
    char name[SHM_NAME_MAX_CHARS];
    memcpy(name, io->seg.name, sizeof name);
    io_buffer_detach(io);
    io->seg.name[0] = '\0'; /* a second destroy is a no-op */
    if (name[0] == '\0') return STATUS_OK;
    return shm_unlink_segment(name);
}

uint64_t io_buffer_push_cmd(io_buffer *io, uint32_t kind, const int32_t *slots, int32_t num_slots)
{
    LL_ASSERT(kind >= IO_BUFFER_CMD_ADD && kind <= IO_BUFFER_CMD_STOP);
    LL_ASSERT(num_slots >= 1 && num_slots <= IO_BUFFER_CMD_MAX_SLOTS);
    io_buffer_header *h = io->header;
    uint64_t w = atomic_load_explicit(&h->write, memory_order_relaxed);
    if (w - atomic_load_explicit(&h->read, memory_order_acquire) >= io->capacity) return 0;
    io_buffer_cmd *c = &io->cmds[w & (io->capacity - 1)];
    memset(c, 0, sizeof(*c));
    c->seq = w + 1;
    c->kind = kind;
    c->num_slots = num_slots;
    memcpy(c->slots, slots, (size_t)num_slots * sizeof(int32_t));
    atomic_store_explicit(&h->write, w + 1, memory_order_release);
    return w + 1;
}

int io_buffer_pop_cmd(io_buffer *io, io_buffer_cmd *out)
{
    io_buffer_header *h = io->header;
    uint64_t r = atomic_load_explicit(&h->read, memory_order_relaxed);
    if (atomic_load_explicit(&h->write, memory_order_acquire) == r) return 0;
    *out = io->cmds[r & (io->capacity - 1)];
    LL_ASSERT(out->seq == r + 1);
    atomic_store_explicit(&h->read, r + 1, memory_order_release);
    return 1;
}

uint32_t io_buffer_num_pending(const io_buffer *io)
{
    uint64_t r = atomic_load_explicit(&io->header->read, memory_order_acquire); /* read first: never above write */
    return (uint32_t)(atomic_load_explicit(&io->header->write, memory_order_acquire) - r);
}

int io_buffer_is_full(const io_buffer *io) { return io_buffer_num_pending(io) >= io->capacity; }

void io_buffer_publish_status(io_buffer *io, const io_buffer_status *s)
{
    io_buffer_header *h = io->header;
    uint64_t v = atomic_load_explicit(&h->status_version, memory_order_relaxed);
    atomic_store_explicit(&h->status_version, v + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&h->kv_slots_total, s->kv_slots_total, memory_order_relaxed);
    atomic_store_explicit(&h->kv_slots_free, s->kv_slots_free, memory_order_relaxed);
    atomic_store_explicit(&h->kv_slots_cached, s->kv_slots_cached, memory_order_relaxed);
    atomic_store_explicit(&h->num_running, s->num_running, memory_order_relaxed);
    atomic_store_explicit(&h->num_waiting, s->num_waiting, memory_order_relaxed);
    atomic_store_explicit(&h->step, s->step, memory_order_relaxed);
    atomic_store_explicit(&h->last_step_us, s->last_step_us, memory_order_relaxed);
    atomic_store_explicit(&h->healthy, s->healthy, memory_order_relaxed);
    atomic_store_explicit(&h->forward_us, s->forward_us, memory_order_relaxed);
    atomic_store_explicit(&h->active_us, s->active_us, memory_order_relaxed);
    atomic_store_explicit(&h->num_preemptions, s->num_preemptions, memory_order_relaxed);
    atomic_store_explicit(&h->status_version, v + 2, memory_order_release);
}

int io_buffer_read_status(const io_buffer *io, io_buffer_status *out)
{
    io_buffer_header *h = io->header;
    for (int tries = 0; tries < IO_BUFFER_STATUS_MAX_TRIES; tries++) {
        uint64_t v1 = atomic_load_explicit(&h->status_version, memory_order_acquire);
        if (v1 & 1) {
            if (tries > 64) sched_yield();
            continue;
        }
        memset(out, 0, sizeof(*out));
        out->kv_slots_total = atomic_load_explicit(&h->kv_slots_total, memory_order_relaxed);
        out->kv_slots_free = atomic_load_explicit(&h->kv_slots_free, memory_order_relaxed);
        out->kv_slots_cached = atomic_load_explicit(&h->kv_slots_cached, memory_order_relaxed);
        out->num_running = atomic_load_explicit(&h->num_running, memory_order_relaxed);
        out->num_waiting = atomic_load_explicit(&h->num_waiting, memory_order_relaxed);
        out->step = atomic_load_explicit(&h->step, memory_order_relaxed);
        out->last_step_us = atomic_load_explicit(&h->last_step_us, memory_order_relaxed);
        out->healthy = atomic_load_explicit(&h->healthy, memory_order_relaxed);
        out->forward_us = atomic_load_explicit(&h->forward_us, memory_order_relaxed);
        out->active_us = atomic_load_explicit(&h->active_us, memory_order_relaxed);
        out->num_preemptions = atomic_load_explicit(&h->num_preemptions, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&h->status_version, memory_order_relaxed) == v1) return 1;
    }
    return 0;
}
