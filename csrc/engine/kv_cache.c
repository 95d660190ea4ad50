/* kv_cache.c — token-level KV slot allocator and req_to_token rows; contract in kv_cache.h.
 *
 * Design: two free stacks (slot ids, row ids), so alloc and release are O(1) per id.  The
 * stacks are filled so that a fresh cache hands out ids in ascending order (0, 1, 2, ...),
 * which keeps tests and traces readable.
 * Invariants: num_free slots sit in free_stack[0, num_free); slot_in_use[s] == 0 exactly for
 * those; num_slots - num_free slots are held by callers (requests or the radix cache).
 * Rows: free_rows[0, num_free_rows) are free; a row's req_to_token contents are whatever the
 * last holder wrote (callers write before they read).  Double release of a slot or a row,
 * and out-of-range ids, are our bugs: LL_ASSERT.
 */
#include "engine/kv_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

status_t kv_cache_init(kv_cache *kv, int32_t num_slots, int32_t max_reqs, int32_t max_seq_len)
{
    memset(kv, 0, sizeof *kv);
    if (num_slots <= 0)
        return status_set(STATUS_INVALID_ARG, "kv_cache: num_slots must be > 0 (got %d)", (int)num_slots);
    if (max_reqs <= 0)
        return status_set(STATUS_INVALID_ARG, "kv_cache: max_reqs must be > 0 (got %d)", (int)max_reqs);
    if (max_seq_len <= 0)
        return status_set(STATUS_INVALID_ARG, "kv_cache: max_seq_len must be > 0 (got %d)",
                          (int)max_seq_len);
    size_t table_entries = (size_t)max_reqs * (size_t)max_seq_len;
    if (table_entries > SIZE_MAX / sizeof(int32_t))
        return status_set(STATUS_INVALID_ARG, "kv_cache: max_reqs * max_seq_len too large (%d * %d)",
                          (int)max_reqs, (int)max_seq_len);

    kv->free_stack = malloc((size_t)num_slots * sizeof(int32_t));
    kv->slot_in_use = calloc((size_t)num_slots, 1);
    kv->req_to_token = calloc(table_entries, sizeof(int32_t));
    kv->free_rows = malloc((size_t)max_reqs * sizeof(int32_t));
    if (!kv->free_stack || !kv->slot_in_use || !kv->req_to_token || !kv->free_rows) {
        kv_cache_free(kv);
        return status_set(STATUS_NO_MEMORY,
                          "kv_cache: cannot allocate bookkeeping for %d slots and a %d x %d req_to_token table",
                          (int)num_slots, (int)max_reqs, (int)max_seq_len);
    }
    kv->num_slots = num_slots;
    kv->max_reqs = max_reqs;
    kv->max_seq_len = max_seq_len;
    /* Top of stack is the last entry: fill descending so slot 0 / row 0 come out first. */
    for (int32_t i = 0; i < num_slots; i++) kv->free_stack[i] = num_slots - 1 - i;
    kv->num_free = num_slots;
    for (int32_t i = 0; i < max_reqs; i++) kv->free_rows[i] = max_reqs - 1 - i;
    kv->num_free_rows = max_reqs;
    return STATUS_OK;
}

void kv_cache_free(kv_cache *kv)
{
    if (!kv) return;
    free(kv->free_stack);
    free(kv->slot_in_use);
    free(kv->req_to_token);
    free(kv->free_rows);
    memset(kv, 0, sizeof *kv);
}

void kv_cache_alloc(kv_cache *kv, int32_t n, int32_t *out_slots)
{
    LL_ASSERT(n >= 0);
    LL_ASSERT(kv_cache_can_alloc(kv, n));
    for (int32_t i = 0; i < n; i++) {
        int32_t slot = kv->free_stack[--kv->num_free];
        LL_ASSERT(!kv->slot_in_use[slot]);
        kv->slot_in_use[slot] = 1;
        out_slots[i] = slot;
    }
}

void kv_cache_release(kv_cache *kv, const int32_t *slots, int32_t n)
{
    LL_ASSERT(n >= 0);
    for (int32_t i = 0; i < n; i++) {
        int32_t slot = slots[i];
        LL_ASSERT(slot >= 0 && slot < kv->num_slots);
        LL_ASSERT(kv->slot_in_use[slot]); /* double release */
        kv->slot_in_use[slot] = 0;
        LL_ASSERT(kv->num_free < kv->num_slots);
        kv->free_stack[kv->num_free++] = slot;
    }
}

int32_t kv_cache_alloc_row(kv_cache *kv)
{
    if (kv->num_free_rows == 0) return -1;
    return kv->free_rows[--kv->num_free_rows];
}

void kv_cache_release_row(kv_cache *kv, int32_t row)
{
    LL_ASSERT(row >= 0 && row < kv->max_reqs);
    LL_ASSERT(kv->num_free_rows < kv->max_reqs);
    /* Double release check: the free list is at most max_reqs long (hundreds) and rows are
     * released once per request, so a scan is cheap next to the work a request does. */
    for (int32_t i = 0; i < kv->num_free_rows; i++) LL_ASSERT(kv->free_rows[i] != row);
    kv->free_rows[kv->num_free_rows++] = row;
}
