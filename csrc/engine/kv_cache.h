/* kv_cache.h — token-level KV slot allocator (page size 1) and the req_to_token table.
 *
 * CONTRACT (implementation: engine/kv_cache.c)
 * Slots are ids in [0, num_slots) into the per-layer KV pools, which the backend owns; this
 * struct only hands out ids.  A free stack gives O(1) alloc/release.  Rows of req_to_token
 * ([max_reqs, max_seq_len] int32, row-major) are handed out per running sequence; entry
 * [row, pos] is the slot holding that sequence's KV for position pos.
 * kv_cache_alloc asserts kv_cache_can_alloc (the scheduler checks first); releasing a slot
 * twice or an out-of-range slot is an assert (our bug).  kv_cache_alloc_row returns -1 when
 * all rows are taken.
 */
#ifndef LIGHTLLM_ENGINE_KV_CACHE_H
#define LIGHTLLM_ENGINE_KV_CACHE_H

#include <stdint.h>

#include "core/status.h"

typedef struct kv_cache {
    int32_t num_slots;
    int32_t num_free;
    int32_t *free_stack;      /* [num_slots] */
    uint8_t *slot_in_use;     /* [num_slots] double-free detection */
    int32_t max_reqs;
    int32_t max_seq_len;
    int32_t *req_to_token;    /* [max_reqs, max_seq_len] */
    int32_t num_free_rows;
    int32_t *free_rows;       /* [max_reqs] */
} kv_cache;

status_t kv_cache_init(kv_cache *kv, int32_t num_slots, int32_t max_reqs, int32_t max_seq_len);
void kv_cache_free(kv_cache *kv);
static inline int kv_cache_can_alloc(const kv_cache *kv, int32_t n) { return n <= kv->num_free; }
void kv_cache_alloc(kv_cache *kv, int32_t n, int32_t *out_slots);
void kv_cache_release(kv_cache *kv, const int32_t *slots, int32_t n);
int32_t kv_cache_alloc_row(kv_cache *kv);
void kv_cache_release_row(kv_cache *kv, int32_t row);
static inline int32_t *kv_cache_row(kv_cache *kv, int32_t row)
{
    return kv->req_to_token + (int64_t)row * kv->max_seq_len;
}

#endif
