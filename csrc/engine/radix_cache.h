/* radix_cache.h — the prefix cache: a radix tree over token ids → KV slot ids.
 *
 * CONTRACT (implementation: engine/radix_cache.c)
 * - Edges hold runs of tokens with their slots; a node's children are keyed by the first
 *   token of their run.  The tree owns the slots of every token it holds.
 * - Reference counts: radix_cache_lock(node) increments the count of node and every ancestor;
 *   unlock decrements.  A node with count > 0 is never evicted.  The root is never evicted.
 * - LRU: each node records the last time (a monotonically increasing counter of the cache)
 *   it was matched or inserted through; eviction takes unreferenced leaves, oldest first,
 *   repeatedly (a parent that becomes an unreferenced leaf is a candidate in turn).
 * - match_prefix splits an edge when the match ends inside it, so the returned node ends
 *   exactly at the matched length (the root when 0 tokens match).
 * - insert returns how many leading tokens were already present: the caller's slots for that
 *   range are duplicates of the tree's (same tokens, same positions), the caller releases
 *   them after switching its req_to_token row to the tree's slots (match_prefix returns them).
 *   Slots for the remainder are taken over by the tree.
 * - evict: frees up to num_tokens tokens (whole edges, or a suffix of an edge: a leaf edge may
 *   be trimmed from its end), writes the freed slot ids to out_slots, returns their count.
 */
#ifndef LIGHTLLM_ENGINE_RADIX_CACHE_H
#define LIGHTLLM_ENGINE_RADIX_CACHE_H

#include <stdint.h>

typedef struct radix_node radix_node;
typedef struct radix_cache radix_cache;

radix_cache *radix_cache_create(void);
/* Frees the tree; every slot it held is written to out_slots (room for total_tokens) when
 * out_slots != NULL; returns the count. */
int32_t radix_cache_free(radix_cache *rc, int32_t *out_slots);

int32_t radix_cache_match_prefix(radix_cache *rc, const int32_t *tokens, int32_t n,
                                 int32_t *out_slots, radix_node **out_node);
int32_t radix_cache_insert(radix_cache *rc, const int32_t *tokens, const int32_t *slots,
                           int32_t n);
void radix_cache_lock(radix_cache *rc, radix_node *node);
void radix_cache_unlock(radix_cache *rc, radix_node *node);
int32_t radix_cache_evict(radix_cache *rc, int32_t num_tokens, int32_t *out_slots);
int32_t radix_cache_evictable_tokens(const radix_cache *rc);
int32_t radix_cache_total_tokens(const radix_cache *rc);

#endif
