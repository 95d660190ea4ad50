/* radix_cache.c — the prefix cache: radix tree over token ids → KV slot ids; contract in
 * radix_cache.h.
 *
 * Design
 * - Each non-root node owns the edge from its parent: `len` tokens and their slots (two
 *   arrays, allocated with capacity `len` when the edge is created; a split or a trim only
 *   shortens them).  Children sit in an array sorted by their edge's first token (binary
 *   search; fan-out is small, inserts are memmoves).
 * - Splitting an edge keeps the EXISTING node object as the lower part and puts a new node
 *   above it, so a node pointer a caller holds (from match_prefix, locked) always keeps
 *   denoting the same prefix end.  The new upper node copies the lower node's ref count and
 *   access time (every lock through the lower node also runs through the upper one).
 * - Every leaf is on an intrusive doubly linked list.  evict builds a min-heap (key: access
 *   time, then node id for determinism) of the unreferenced leaves, pops the oldest, frees it
 *   whole or trims its edge from the end, and pushes its parent if that became an
 *   unreferenced leaf.  Each pop removes a node and pushes at most one, so the heap never
 *   outgrows its initial size; its buffer is kept in the cache between calls (no allocation
 *   on the step path once it has grown).  Cost: O(leaves + k log leaves) for k nodes freed.
 * - Counters: total_tokens = Σ len over nodes; evictable_tokens = Σ len over nodes with
 *   ref == 0.  Both are updated at every change, so the queries are O(1).
 * Invariants
 * - ref(node) >= ref(child) for every child; hence a node with ref == 0 has only unreferenced
 *   descendants, and every unreferenced token can be evicted (leaves first).
 * - access(node) >= access(child): an operation stamps every node on its path with one clock
 *   value, so a parent is never older than its children.
 * - Non-root nodes have len >= 1; the root has len 0, is never freed, never on the leaf list.
 * - Node pointers stay valid until the node is evicted; only nodes with ref == 0 can be
 *   evicted (freed, or their edge trimmed), so callers lock what they keep across an evict.
 */
#include "engine/radix_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct radix_node {
    radix_node *parent;
    int32_t *tokens;            /* [len] edge tokens (from parent to this node) */
    int32_t *slots;             /* [len] slot of each edge token */
    int32_t len;
    int32_t num_children;
    int32_t cap_children;
    int32_t ref;                /* lock count of this node (includes locks below it) */
    radix_node **children;      /* [cap_children], first num_children sorted by tokens[0] */
    uint64_t last_access;       /* cache clock at the last match/insert through this node */
    uint64_t id;                /* creation order, LRU tie-break */
    radix_node *leaf_prev;      /* leaf list links (valid when is_leaf_listed) */
    radix_node *leaf_next;
    int is_leaf_listed;
};

struct radix_cache {
    radix_node *root;
    uint64_t clock;
    uint64_t next_id;
    int32_t total_tokens;
    int32_t evictable_tokens;
    radix_node *leaf_head;      /* list of all non-root leaves */
    int32_t num_leaves;
    radix_node **heap;          /* [heap_cap] evict's scratch min-heap */
    int32_t heap_cap;
};

/* ---- nodes ------------------------------------------------------------------------- */

static radix_node *radix_cache_new_node(radix_cache *rc, radix_node *parent, const int32_t *tokens,
                                        const int32_t *slots, int32_t len)
{
    radix_node *node = log_xcalloc(1, sizeof *node);
    node->parent = parent;
    node->len = len;
    if (len > 0) {
        node->tokens = log_xmalloc((size_t)len * sizeof(int32_t));
        node->slots = log_xmalloc((size_t)len * sizeof(int32_t));
        memcpy(node->tokens, tokens, (size_t)len * sizeof(int32_t));
        memcpy(node->slots, slots, (size_t)len * sizeof(int32_t));
    }
    node->id = rc->next_id++;
    return node;
}

static void radix_cache_free_node(radix_node *node)
{
    free(node->tokens);
    free(node->slots);
    free(node->children);
    free(node);
}

static void radix_cache_leaf_add(radix_cache *rc, radix_node *node)
{
    LL_ASSERT(!node->is_leaf_listed && node != rc->root);
    node->leaf_prev = NULL;
    node->leaf_next = rc->leaf_head;
    if (rc->leaf_head) rc->leaf_head->leaf_prev = node;
    rc->leaf_head = node;
    node->is_leaf_listed = 1;
    rc->num_leaves++;
}

static void radix_cache_leaf_remove(radix_cache *rc, radix_node *node)
{
    LL_ASSERT(node->is_leaf_listed);
    if (node->leaf_prev) node->leaf_prev->leaf_next = node->leaf_next;
    else rc->leaf_head = node->leaf_next;
    if (node->leaf_next) node->leaf_next->leaf_prev = node->leaf_prev;
    node->leaf_prev = node->leaf_next = NULL;
    node->is_leaf_listed = 0;
    rc->num_leaves--;
}

/* Index of the child whose edge starts with `token`, or -(insertion point) - 1. */
static int32_t radix_cache_find_child(const radix_node *node, int32_t token)
{
    int32_t lo = 0, hi = node->num_children;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int32_t t = node->children[mid]->tokens[0];
        if (t == token) return mid;
        if (t < token) lo = mid + 1;
        else hi = mid;
    }
    return -lo - 1;
}

static void radix_cache_add_child(radix_cache *rc, radix_node *parent, radix_node *child)
{
    int32_t idx = radix_cache_find_child(parent, child->tokens[0]);
    LL_ASSERT(idx < 0);
    idx = -idx - 1;
    if (parent->num_children == parent->cap_children) {
        int32_t cap = parent->cap_children ? parent->cap_children * 2 : 2;
        radix_node **grown = log_xmalloc((size_t)cap * sizeof *grown);
        if (parent->num_children)
            memcpy(grown, parent->children, (size_t)parent->num_children * sizeof *grown);
        free(parent->children);
        parent->children = grown;
        parent->cap_children = cap;
    }
    memmove(parent->children + idx + 1, parent->children + idx,
            (size_t)(parent->num_children - idx) * sizeof *parent->children);
    parent->children[idx] = child;
    if (parent->num_children == 0 && parent != rc->root) radix_cache_leaf_remove(rc, parent);
    parent->num_children++;
    child->parent = parent;
}

static void radix_cache_remove_child(radix_cache *rc, radix_node *parent, radix_node *child)
{
    int32_t idx = radix_cache_find_child(parent, child->tokens[0]);
    LL_ASSERT(idx >= 0 && parent->children[idx] == child);
    memmove(parent->children + idx, parent->children + idx + 1,
            (size_t)(parent->num_children - idx - 1) * sizeof *parent->children);
    parent->num_children--;
    if (parent->num_children == 0 && parent != rc->root) radix_cache_leaf_add(rc, parent);
}

/* Split node's edge after `k` tokens (0 < k < len): a new node takes the first k tokens and
 * sits between node and its parent; node keeps the rest.  Returns the new upper node. */
static radix_node *radix_cache_split(radix_cache *rc, radix_node *node, int32_t k)
{
    LL_ASSERT(k > 0 && k < node->len);
    radix_node *parent = node->parent;
    radix_node *upper = radix_cache_new_node(rc, parent, node->tokens, node->slots, k);
    upper->ref = node->ref;
    upper->last_access = node->last_access;
    /* upper has the same first token: it takes node's place in the parent's children. */
    int32_t idx = radix_cache_find_child(parent, node->tokens[0]);
    LL_ASSERT(idx >= 0 && parent->children[idx] == node);
    parent->children[idx] = upper;
    int32_t rest = node->len - k;
    memmove(node->tokens, node->tokens + k, (size_t)rest * sizeof(int32_t));
    memmove(node->slots, node->slots + k, (size_t)rest * sizeof(int32_t));
    node->len = rest;
    upper->children = log_xmalloc(2 * sizeof *upper->children);
    upper->cap_children = 2;
    upper->children[0] = node;
    upper->num_children = 1;
    node->parent = upper;
    return upper;
}

/* ---- public API -------------------------------------------------------------------- */

radix_cache *radix_cache_create(void)
{
    radix_cache *rc = log_xcalloc(1, sizeof *rc);
    rc->root = radix_cache_new_node(rc, NULL, NULL, NULL, 0);
    return rc;
}

int32_t radix_cache_free(radix_cache *rc, int32_t *out_slots)
{
    if (!rc) return 0;
    int32_t count = 0;
    /* Iterative post-order-free walk (chains can be deep): detach children onto a stack. */
    int32_t cap = 64, top = 0;
    radix_node **stack = log_xmalloc((size_t)cap * sizeof *stack);
    stack[top++] = rc->root;
    while (top > 0) {
        radix_node *node = stack[--top];
        if (out_slots && node->len)
            memcpy(out_slots + count, node->slots, (size_t)node->len * sizeof(int32_t));
        count += node->len;
        for (int32_t i = 0; i < node->num_children; i++) {
            if (top == cap) {
                cap *= 2;
                radix_node **grown = log_xmalloc((size_t)cap * sizeof *grown);
                memcpy(grown, stack, (size_t)top * sizeof *grown);
                free(stack);
                stack = grown;
            }
            stack[top++] = node->children[i];
        }
        radix_cache_free_node(node);
    }
    free(stack);
    LL_ASSERT(count == rc->total_tokens);
    free(rc->heap);
    free(rc);
    return count;
}

int32_t radix_cache_match_prefix(radix_cache *rc, const int32_t *tokens, int32_t n,
                                 int32_t *out_slots, radix_node **out_node)
{
    LL_ASSERT(n >= 0);
    uint64_t now = ++rc->clock;
    radix_node *node = rc->root;
    node->last_access = now;
    int32_t matched = 0;
    while (matched < n) {
        int32_t idx = radix_cache_find_child(node, tokens[matched]);
        if (idx < 0) break;
        radix_node *child = node->children[idx];
        int32_t k = 1; /* first token matches by lookup */
        while (k < child->len && matched + k < n && child->tokens[k] == tokens[matched + k]) k++;
        if (k < child->len) child = radix_cache_split(rc, child, k);
        child->last_access = now;
        if (out_slots) memcpy(out_slots + matched, child->slots, (size_t)k * sizeof(int32_t));
        matched += k;
        node = child;
    }
    if (out_node) *out_node = node;
    return matched;
}

int32_t radix_cache_insert(radix_cache *rc, const int32_t *tokens, const int32_t *slots, int32_t n)
{
    LL_ASSERT(n >= 0);
    uint64_t now = ++rc->clock;
    radix_node *node = rc->root;
    node->last_access = now;
    int32_t matched = 0;
    while (matched < n) {
        int32_t idx = radix_cache_find_child(node, tokens[matched]);
        if (idx < 0) break;
        radix_node *child = node->children[idx];
        int32_t k = 1;
        while (k < child->len && matched + k < n && child->tokens[k] == tokens[matched + k]) k++;
        child->last_access = now;
        matched += k;
        if (k < child->len) {
            /* Ends inside the edge: all present if the input ran out, else diverge here. */
            if (matched == n) return matched;
            child = radix_cache_split(rc, child, k);
        }
        node = child;
    }
    if (matched < n) {
        radix_node *leaf = radix_cache_new_node(rc, node, tokens + matched, slots + matched, n - matched);
        leaf->last_access = now;
        radix_cache_add_child(rc, node, leaf);
        radix_cache_leaf_add(rc, leaf);
        rc->total_tokens += leaf->len;
        rc->evictable_tokens += leaf->len;
    }
    return matched;
}

void radix_cache_lock(radix_cache *rc, radix_node *node)
{
    LL_ASSERT(node != NULL);
    for (; node; node = node->parent) {
        if (node->ref++ == 0) rc->evictable_tokens -= node->len;
    }
}

void radix_cache_unlock(radix_cache *rc, radix_node *node)
{
    LL_ASSERT(node != NULL);
    for (; node; node = node->parent) {
        LL_ASSERT(node->ref > 0);
        if (--node->ref == 0) rc->evictable_tokens += node->len;
    }
}

static int radix_cache_older(const radix_node *a, const radix_node *b)
{
    if (a->last_access != b->last_access) return a->last_access < b->last_access;
    return a->id < b->id;
}

static void radix_cache_heap_push(radix_node **heap, int32_t *size, radix_node *node)
{
    int32_t i = (*size)++;
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (!radix_cache_older(node, heap[p])) break;
        heap[i] = heap[p];
        i = p;
    }
    heap[i] = node;
}

static radix_node *radix_cache_heap_pop(radix_node **heap, int32_t *size)
{
    radix_node *top = heap[0];
    radix_node *last = heap[--(*size)];
    int32_t n = *size, i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && radix_cache_older(heap[c + 1], heap[c])) c++;
        if (!radix_cache_older(heap[c], last)) break;
        heap[i] = heap[c];
        i = c;
    }
    if (n > 0) heap[i] = last;
    return top;
}

int32_t radix_cache_evict(radix_cache *rc, int32_t num_tokens, int32_t *out_slots)
{
    if (num_tokens <= 0 || rc->evictable_tokens == 0) return 0;
    if (rc->heap_cap < rc->num_leaves) {
        free(rc->heap);
        rc->heap_cap = rc->num_leaves * 2;
        rc->heap = log_xmalloc((size_t)rc->heap_cap * sizeof *rc->heap);
    }
    int32_t size = 0;
    for (radix_node *leaf = rc->leaf_head; leaf; leaf = leaf->leaf_next)
        if (leaf->ref == 0) radix_cache_heap_push(rc->heap, &size, leaf);

    int32_t freed = 0;
    while (freed < num_tokens && size > 0) {
        radix_node *node = radix_cache_heap_pop(rc->heap, &size);
        LL_ASSERT(node->ref == 0 && node->num_children == 0 && node != rc->root);
        int32_t want = num_tokens - freed;
        if (want < node->len) {
            /* Trim the edge from its end; the node stays a leaf. */
            int32_t keep = node->len - want;
            if (out_slots) memcpy(out_slots + freed, node->slots + keep, (size_t)want * sizeof(int32_t));
            node->len = keep;
            freed += want;
            rc->total_tokens -= want;
            rc->evictable_tokens -= want;
            break;
        }
        if (out_slots) memcpy(out_slots + freed, node->slots, (size_t)node->len * sizeof(int32_t));
        freed += node->len;
        rc->total_tokens -= node->len;
        rc->evictable_tokens -= node->len;
        radix_node *parent = node->parent;
        radix_cache_leaf_remove(rc, node);
        radix_cache_remove_child(rc, parent, node);
        radix_cache_free_node(node);
        if (parent != rc->root && parent->num_children == 0 && parent->ref == 0)
            radix_cache_heap_push(rc->heap, &size, parent);
    }
    return freed;
}

int32_t radix_cache_evictable_tokens(const radix_cache *rc) { return rc->evictable_tokens; }

int32_t radix_cache_total_tokens(const radix_cache *rc) { return rc->total_tokens; }
