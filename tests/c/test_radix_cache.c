/* test_radix_cache.c — unit tests for engine/radix_cache: matching (empty, exact, partial with
 * edge split), insert (prefix of a path, extending, diverging, the returned duplicate count),
 * locks (node and ancestors), LRU order, cascading eviction, partial trim of a leaf edge,
 * the O(1) counters after every operation, and a randomized stress test against a
 * token-level reference trie, with slots drawn from a real kv_cache so that each slot is
 * owned exactly once (the kv_cache asserts on a double release). */
#include <stdlib.h>
#include <string.h>

#include "engine/kv_cache.h"
#include "engine/radix_cache.h"
#include "test_util.h"

#define RC_LEN(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static void radix_test_counters(radix_cache *rc, int32_t total, int32_t evictable)
{
    CHECK_EQ_INT(radix_cache_total_tokens(rc), total);
    CHECK_EQ_INT(radix_cache_evictable_tokens(rc), evictable);
}

static int radix_test_same(const int32_t *a, const int32_t *b, int32_t n)
{
    return n == 0 || memcmp(a, b, (size_t)n * sizeof(int32_t)) == 0;
}

/* Frees the cache and checks the slots it reports are exactly `expect` (as a set). */
static void radix_test_free(radix_cache *rc, const int32_t *expect, int32_t n)
{
    int32_t total = radix_cache_total_tokens(rc);
    CHECK_EQ_INT(total, n);
    int32_t *out = calloc((size_t)total + 1, sizeof *out);
    CHECK_EQ_INT(radix_cache_free(rc, out), total);
    for (int32_t i = 0; i < n; i++) {
        int found = 0;
        for (int32_t j = 0; j < total; j++) found += out[j] == expect[i];
        CHECK_EQ_INT(found, 1);
    }
    free(out);
}

TEST_CASE(radix_cache_empty_match)
{
    radix_cache *rc = radix_cache_create();
    int32_t toks[3] = {1, 2, 3}, out[3] = {-7, -7, -7};
    radix_node *root = NULL, *node = NULL;
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 3, out, &root), 0);
    CHECK(root != NULL);
    CHECK_EQ_INT(out[0], -7);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 0, NULL, &node), 0);
    CHECK(node == root);
    radix_test_counters(rc, 0, 0);
    radix_cache_lock(rc, root); /* locking the root is allowed and changes nothing */
    radix_test_counters(rc, 0, 0);
    radix_cache_unlock(rc, root);
    CHECK_EQ_INT(radix_cache_evict(rc, 10, out), 0);
    CHECK_EQ_INT(radix_cache_insert(rc, toks, out, 0), 0);
    radix_test_counters(rc, 0, 0);
    CHECK_EQ_INT(radix_cache_free(rc, NULL), 0);
    CHECK_EQ_INT(radix_cache_free(NULL, NULL), 0);
}

TEST_CASE(radix_cache_exact_match)
{
    radix_cache *rc = radix_cache_create();
    int32_t toks[4] = {5, 6, 7, 8}, slots[4] = {10, 11, 12, 13}, out[8];
    CHECK_EQ_INT(radix_cache_insert(rc, toks, slots, 4), 0);
    radix_test_counters(rc, 4, 4);
    radix_node *node = NULL;
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 4, out, &node), 4);
    CHECK(radix_test_same(out, slots, 4));
    /* A longer query matches only what is stored; a different first token matches nothing. */
    int32_t longer[6] = {5, 6, 7, 8, 9, 9};
    radix_node *node2 = NULL;
    CHECK_EQ_INT(radix_cache_match_prefix(rc, longer, 6, out, &node2), 4);
    CHECK(node2 == node);
    int32_t other[2] = {6, 7};
    CHECK_EQ_INT(radix_cache_match_prefix(rc, other, 2, out, NULL), 0);
    /* out_slots may be NULL. */
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 4, NULL, NULL), 4);
    radix_test_counters(rc, 4, 4);
    radix_test_free(rc, slots, 4);
}

TEST_CASE(radix_cache_partial_match_splits_edge)
{
    radix_cache *rc = radix_cache_create();
    int32_t toks[6] = {1, 2, 3, 4, 5, 6}, slots[6] = {20, 21, 22, 23, 24, 25}, out[6];
    radix_cache_insert(rc, toks, slots, 6);
    int32_t q[4] = {1, 2, 3, 9};
    radix_node *mid = NULL, *leaf = NULL;
    CHECK_EQ_INT(radix_cache_match_prefix(rc, q, 4, out, &mid), 3);
    CHECK(radix_test_same(out, slots, 3));
    radix_test_counters(rc, 6, 6); /* a split moves no tokens */
    /* The returned node ends exactly at 3: locking it protects [1,2,3] and not [4,5,6]. */
    radix_cache_lock(rc, mid);
    radix_test_counters(rc, 6, 3);
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 3);
    CHECK(radix_test_same(out, slots + 3, 3));
    radix_test_counters(rc, 3, 0);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 6, out, &leaf), 3);
    CHECK(leaf == mid);
    CHECK(radix_test_same(out, slots, 3));
    /* Matching a prefix ending inside the locked node's edge splits above a locked node: the
     * new upper node inherits the lock count, so nothing becomes evictable. */
    radix_node *up = NULL;
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 1, out, &up), 1);
    CHECK(up != mid);
    CHECK_EQ_INT(out[0], 20);
    radix_test_counters(rc, 3, 0);
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 0);
    radix_cache_unlock(rc, mid);
    radix_test_counters(rc, 3, 3);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 6, out, NULL), 3);
    CHECK(radix_test_same(out, slots, 3));
    radix_test_free(rc, slots, 3);
}

TEST_CASE(radix_cache_insert_prefix_of_existing)
{
    radix_cache *rc = radix_cache_create();
    int32_t toks[6] = {1, 2, 3, 4, 5, 6}, slots[6] = {0, 1, 2, 3, 4, 5}, dup[3] = {90, 91, 92}, out[6];
    CHECK_EQ_INT(radix_cache_insert(rc, toks, slots, 6), 0);
    CHECK_EQ_INT(radix_cache_insert(rc, toks, dup, 3), 3); /* ends inside an edge */
    radix_test_counters(rc, 6, 6);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 3, out, NULL), 3);
    CHECK(radix_test_same(out, slots, 3)); /* the tree keeps its own slots */
    CHECK_EQ_INT(radix_cache_insert(rc, toks, dup, 3), 3); /* now ends at a node (split) */
    CHECK_EQ_INT(radix_cache_insert(rc, toks, slots, 6), 6); /* whole path again */
    radix_test_counters(rc, 6, 6);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 6, out, NULL), 6);
    CHECK(radix_test_same(out, slots, 6));
    radix_test_free(rc, slots, 6);
}

TEST_CASE(radix_cache_insert_extending)
{
    radix_cache *rc = radix_cache_create();
    int32_t toks[6] = {1, 2, 3, 4, 5, 6}, a[3] = {7, 8, 9}, b[6] = {-1, -1, -1, 10, 11, 12}, out[6];
    CHECK_EQ_INT(radix_cache_insert(rc, toks, a, 3), 0);
    CHECK_EQ_INT(radix_cache_insert(rc, toks, b, 6), 3);
    radix_test_counters(rc, 6, 6);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, toks, 6, out, NULL), 6);
    int32_t want[6] = {7, 8, 9, 10, 11, 12};
    CHECK(radix_test_same(out, want, 6));
    /* Extending below a locked leaf works and keeps the lock on the old leaf only. */
    radix_node *n6 = NULL;
    radix_cache_match_prefix(rc, toks, 6, NULL, &n6);
    radix_cache_lock(rc, n6);
    radix_test_counters(rc, 6, 0);
    int32_t t8[8] = {1, 2, 3, 4, 5, 6, 7, 8}, s8[8] = {0, 0, 0, 0, 0, 0, 13, 14};
    CHECK_EQ_INT(radix_cache_insert(rc, t8, s8, 8), 6);
    radix_test_counters(rc, 8, 2);
    CHECK_EQ_INT(radix_cache_evict(rc, 8, out), 2);
    CHECK_EQ_INT(out[0], 13);
    CHECK_EQ_INT(out[1], 14);
    radix_cache_unlock(rc, n6);
    radix_test_counters(rc, 6, 6);
    radix_test_free(rc, want, 6);
}

TEST_CASE(radix_cache_insert_diverging)
{
    radix_cache *rc = radix_cache_create();
    int32_t t1[4] = {1, 2, 3, 4}, s1[4] = {0, 1, 2, 3};
    int32_t t2[4] = {1, 2, 7, 8}, s2[4] = {50, 51, 4, 5};
    int32_t t3[3] = {9, 2, 3}, s3[3] = {6, 7, 8};
    int32_t t4[5] = {1, 2, 3, 5, 5}, s4[5] = {60, 61, 62, 9, 10};
    int32_t out[5];
    CHECK_EQ_INT(radix_cache_insert(rc, t1, s1, 4), 0);
    CHECK_EQ_INT(radix_cache_insert(rc, t2, s2, 4), 2);
    radix_test_counters(rc, 6, 6);
    CHECK_EQ_INT(radix_cache_insert(rc, t3, s3, 3), 0); /* diverges at the root */
    CHECK_EQ_INT(radix_cache_insert(rc, t4, s4, 5), 3); /* diverges inside the [3,4] edge */
    radix_test_counters(rc, 11, 11);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t1, 4, out, NULL), 4);
    CHECK(radix_test_same(out, s1, 4));
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t2, 4, out, NULL), 4);
    int32_t w2[4] = {0, 1, 4, 5};
    CHECK(radix_test_same(out, w2, 4));
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t3, 3, out, NULL), 3);
    CHECK(radix_test_same(out, s3, 3));
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t4, 5, out, NULL), 5);
    int32_t w4[5] = {0, 1, 2, 9, 10};
    CHECK(radix_test_same(out, w4, 5));
    int32_t q[3] = {1, 2, 6};
    CHECK_EQ_INT(radix_cache_match_prefix(rc, q, 3, out, NULL), 2);
    int32_t all[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    radix_test_free(rc, all, 11);
}

TEST_CASE(radix_cache_insert_duplicate_count)
{
    radix_cache *rc = radix_cache_create();
    int32_t t[8] = {3, 1, 4, 1, 5, 9, 2, 6}, s[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK_EQ_INT(radix_cache_insert(rc, t, s, 5), 0);
    for (int32_t n = 0; n <= 5; n++) CHECK_EQ_INT(radix_cache_insert(rc, t, s, n), n);
    CHECK_EQ_INT(radix_cache_insert(rc, t, s, 8), 5);
    for (int32_t n = 0; n <= 8; n++) CHECK_EQ_INT(radix_cache_insert(rc, t, s, n), n);
    int32_t u[8] = {3, 1, 4, 1, 0, 0, 0, 0}, us[8] = {-1, -1, -1, -1, 8, 9, 10, 11};
    CHECK_EQ_INT(radix_cache_insert(rc, u, us, 8), 4);
    CHECK_EQ_INT(radix_cache_insert(rc, u, us, 8), 8);
    radix_test_counters(rc, 12, 12);
    int32_t all[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    radix_test_free(rc, all, 12);
}

TEST_CASE(radix_cache_lock_prevents_eviction)
{
    radix_cache *rc = radix_cache_create();
    int32_t a[4] = {1, 2, 3, 4}, sa[4] = {0, 1, 2, 3};
    int32_t b[4] = {1, 2, 5, 6}, sb[4] = {-1, -1, 4, 5};
    int32_t out[8];
    radix_cache_insert(rc, a, sa, 4);
    radix_cache_insert(rc, b, sb, 4);
    radix_node *na = NULL;
    CHECK_EQ_INT(radix_cache_match_prefix(rc, a, 4, NULL, &na), 4);
    radix_cache_lock(rc, na);
    radix_test_counters(rc, 6, 2); /* [1,2] and [3,4] locked, [5,6] free */
    /* a's path is older than nothing: b was touched last, yet only b can go. */
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 2);
    CHECK_EQ_INT(out[0], 4);
    CHECK_EQ_INT(out[1], 5);
    radix_test_counters(rc, 4, 0);
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 0);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, a, 4, out, NULL), 4);
    CHECK(radix_test_same(out, sa, 4));
    /* Two locks need two unlocks. */
    radix_cache_lock(rc, na);
    radix_cache_unlock(rc, na);
    radix_test_counters(rc, 4, 0);
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 0);
    radix_cache_unlock(rc, na);
    radix_test_counters(rc, 4, 4);
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 4);
    radix_test_counters(rc, 0, 0);
    radix_test_free(rc, NULL, 0);
}

TEST_CASE(radix_cache_lock_protects_ancestors_only)
{
    radix_cache *rc = radix_cache_create();
    int32_t a[4] = {1, 2, 3, 4}, sa[4] = {0, 1, 2, 3};
    int32_t b[4] = {1, 2, 5, 6}, sb[4] = {-1, -1, 4, 5};
    int32_t out[8];
    radix_cache_insert(rc, a, sa, 4);
    radix_cache_insert(rc, b, sb, 4);
    radix_node *mid = NULL;
    CHECK_EQ_INT(radix_cache_match_prefix(rc, a, 2, NULL, &mid), 2);
    radix_cache_lock(rc, mid);
    radix_test_counters(rc, 6, 4);
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 4);
    radix_test_counters(rc, 2, 0);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, a, 4, out, NULL), 2);
    CHECK(radix_test_same(out, sa, 2));
    radix_cache_unlock(rc, mid);
    radix_test_counters(rc, 2, 2);
    radix_test_free(rc, sa, 2);
}

TEST_CASE(radix_cache_unlock_allows_eviction)
{
    radix_cache *rc = radix_cache_create();
    int32_t t[3] = {4, 5, 6}, s[3] = {1, 2, 3}, out[3];
    radix_cache_insert(rc, t, s, 3);
    radix_node *n = NULL;
    radix_cache_match_prefix(rc, t, 3, NULL, &n);
    radix_cache_lock(rc, n);
    CHECK_EQ_INT(radix_cache_evict(rc, 3, out), 0);
    radix_cache_unlock(rc, n);
    CHECK_EQ_INT(radix_cache_evict(rc, 3, out), 3);
    CHECK(radix_test_same(out, s, 3));
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t, 3, NULL, NULL), 0);
    radix_test_free(rc, NULL, 0);
}

TEST_CASE(radix_cache_lru_order)
{
    radix_cache *rc = radix_cache_create();
    int32_t a[2] = {1, 1}, b[2] = {2, 2}, c[2] = {3, 3}, d[3] = {4, 4, 4};
    int32_t sa[2] = {10, 11}, sb[2] = {20, 21}, sc[2] = {30, 31}, sd[3] = {40, 41, 42};
    int32_t out[4];
    radix_cache_insert(rc, a, sa, 2);
    radix_cache_insert(rc, b, sb, 2);
    radix_cache_insert(rc, c, sc, 2);
    radix_cache_insert(rc, d, sd, 3);
    radix_cache_match_prefix(rc, a, 2, NULL, NULL); /* a becomes the newest */
    radix_cache_insert(rc, c, sc, 1);               /* an insert through c touches it too */
    /* Order now (oldest first): b, d, a, c. */
    CHECK_EQ_INT(radix_cache_evict(rc, 2, out), 2);
    CHECK(radix_test_same(out, sb, 2));
    radix_test_counters(rc, 7, 7);
    CHECK_EQ_INT(radix_cache_evict(rc, 4, out), 4); /* all of d, then one token of a */
    CHECK(radix_test_same(out, sd, 3));
    CHECK_EQ_INT(out[3], 11);
    radix_test_counters(rc, 3, 3);
    CHECK_EQ_INT(radix_cache_evict(rc, 1, out), 1); /* the trimmed a is still older than c */
    CHECK_EQ_INT(out[0], 10);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, c, 2, out, NULL), 2);
    radix_test_free(rc, sc, 2);
}

TEST_CASE(radix_cache_cascading_eviction)
{
    radix_cache *rc = radix_cache_create();
    int32_t t[6] = {1, 2, 3, 4, 5, 6}, s[6] = {0, 1, 2, 3, 4, 5}, out[16];
    radix_cache_insert(rc, t, s, 2);
    radix_cache_insert(rc, t, s, 4);
    radix_cache_insert(rc, t, s, 6); /* chain of three nodes: [1,2] → [3,4] → [5,6] */
    int32_t side[3] = {1, 2, 9}, sside[3] = {-1, -1, 6};
    radix_cache_insert(rc, side, sside, 3);  /* [1,2] also has child [9], the newest */
    radix_test_counters(rc, 7, 7);
    /* Freeing 6: the chain's leaf [5,6], its parent [3,4] (now a leaf, older than [9]),
     * then [9]; [1,2] is not a leaf until [9] goes, so 1 token of [1,2] is trimmed last. */
    CHECK_EQ_INT(radix_cache_evict(rc, 6, out), 6);
    int32_t want[6] = {4, 5, 2, 3, 6, 1};
    CHECK(radix_test_same(out, want, 6));
    radix_test_counters(rc, 1, 1);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t, 6, out, NULL), 1);
    CHECK_EQ_INT(out[0], 0);
    /* A long chain collapses in one call. */
    int32_t chain[64], cs[64];
    for (int32_t i = 0; i < 64; i++) chain[i] = 100 + i, cs[i] = 100 + i;
    for (int32_t n = 1; n <= 64; n++) CHECK_EQ_INT(radix_cache_insert(rc, chain, cs, n), n - 1);
    radix_test_counters(rc, 65, 65);
    CHECK_EQ_INT(radix_cache_evict(rc, 1000, NULL), 65);
    radix_test_counters(rc, 0, 0);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, chain, 64, NULL, NULL), 0);
    radix_test_free(rc, NULL, 0);
}

TEST_CASE(radix_cache_evict_partial_leaf_edge)
{
    radix_cache *rc = radix_cache_create();
    int32_t t[5] = {1, 2, 3, 4, 5}, s[5] = {10, 11, 12, 13, 14}, out[5];
    radix_cache_insert(rc, t, s, 5);
    CHECK_EQ_INT(radix_cache_evict(rc, 2, out), 2);
    CHECK_EQ_INT(out[0], 13); /* taken from the end of the edge */
    CHECK_EQ_INT(out[1], 14);
    radix_test_counters(rc, 3, 3);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t, 5, out, NULL), 3);
    CHECK(radix_test_same(out, s, 3));
    int32_t s2[5] = {-1, -1, -1, 23, 24};
    CHECK_EQ_INT(radix_cache_insert(rc, t, s2, 5), 3);
    radix_test_counters(rc, 5, 5);
    CHECK_EQ_INT(radix_cache_match_prefix(rc, t, 5, out, NULL), 5);
    int32_t want[5] = {10, 11, 12, 23, 24};
    CHECK(radix_test_same(out, want, 5));
    CHECK_EQ_INT(radix_cache_evict(rc, 0, out), 0);
    CHECK_EQ_INT(radix_cache_evict(rc, -3, out), 0);
    radix_test_counters(rc, 5, 5);
    radix_test_free(rc, want, 5);
}

TEST_CASE(radix_cache_counters_track_every_operation)
{
    radix_cache *rc = radix_cache_create();
    int32_t a[6] = {1, 2, 3, 4, 5, 6}, sa[6] = {0, 1, 2, 3, 4, 5};
    int32_t b[5] = {1, 2, 3, 7, 7}, sb[5] = {-1, -1, -1, 6, 7};
    int32_t out[16];
    radix_cache_insert(rc, a, sa, 6);
    radix_test_counters(rc, 6, 6);
    radix_cache_insert(rc, b, sb, 5);
    radix_test_counters(rc, 8, 8);
    radix_node *na = NULL, *nb = NULL, *n2 = NULL;
    radix_cache_match_prefix(rc, a, 6, NULL, &na);
    radix_cache_match_prefix(rc, b, 5, NULL, &nb);
    radix_cache_lock(rc, na);
    radix_test_counters(rc, 8, 2);
    radix_cache_lock(rc, nb);
    radix_test_counters(rc, 8, 0);
    radix_cache_unlock(rc, na);
    radix_test_counters(rc, 8, 3);
    radix_cache_match_prefix(rc, a, 2, NULL, &n2); /* split inside a locked edge */
    radix_test_counters(rc, 8, 3);
    radix_cache_lock(rc, n2);
    radix_test_counters(rc, 8, 3);
    CHECK_EQ_INT(radix_cache_evict(rc, 2, out), 2);
    radix_test_counters(rc, 6, 1);
    radix_cache_unlock(rc, nb);
    radix_test_counters(rc, 6, 4); /* [3] and [7,7] and [4] */
    radix_cache_unlock(rc, n2);
    radix_test_counters(rc, 6, 6);
    CHECK_EQ_INT(radix_cache_evict(rc, 100, out), 6);
    radix_test_counters(rc, 0, 0);
    radix_test_free(rc, NULL, 0);
}

/* ---- randomized stress against a token-level reference trie --------------------------- */

#define RS_ALPHA 6
#define RS_MAX_LEN 24
#define RS_NUM_SLOTS 384
#define RS_CORPUS 48
#define RS_MAX_LOCKS 12

typedef struct radix_ref {
    int32_t num_entries, cap;
    int32_t *parent, *token, *slot, *ref;
    uint8_t *alive;
    int32_t (*child)[RS_ALPHA];
    int32_t slot_to_entry[RS_NUM_SLOTS];
    int32_t live, live_unref;
} radix_ref;

static int32_t radix_ref_new(radix_ref *m, int32_t parent, int32_t token, int32_t slot)
{
    if (m->num_entries == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->parent = realloc(m->parent, (size_t)m->cap * sizeof(int32_t));
        m->token = realloc(m->token, (size_t)m->cap * sizeof(int32_t));
        m->slot = realloc(m->slot, (size_t)m->cap * sizeof(int32_t));
        m->ref = realloc(m->ref, (size_t)m->cap * sizeof(int32_t));
        m->alive = realloc(m->alive, (size_t)m->cap);
        m->child = realloc(m->child, (size_t)m->cap * sizeof *m->child);
    }
    int32_t e = m->num_entries++;
    m->parent[e] = parent;
    m->token[e] = token;
    m->slot[e] = slot;
    m->ref[e] = 0;
    m->alive[e] = 1;
    for (int t = 0; t < RS_ALPHA; t++) m->child[e][t] = -1;
    if (parent >= 0) m->child[parent][token] = e;
    if (slot >= 0) m->slot_to_entry[slot] = e;
    return e;
}

/* Longest live prefix: its length, the slots, and the entry it ends at. */
static int32_t radix_ref_match(const radix_ref *m, const int32_t *toks, int32_t n, int32_t *slots,
                               int32_t *end)
{
    int32_t e = 0, i = 0;
    for (; i < n; i++) {
        int32_t c = m->child[e][toks[i]];
        if (c < 0 || !m->alive[c]) break;
        if (slots) slots[i] = m->slot[c];
        e = c;
    }
    if (end) *end = e;
    return i;
}

static void radix_ref_lock(radix_ref *m, int32_t e, int32_t delta)
{
    for (; e > 0; e = m->parent[e]) {
        if (m->ref[e] == 0 && delta > 0) m->live_unref--;
        m->ref[e] += delta;
        CHECK(m->ref[e] >= 0);
        if (m->ref[e] == 0 && delta < 0) m->live_unref++;
    }
}

typedef struct radix_stress {
    radix_cache *rc;
    kv_cache kv;
    radix_ref m;
    unsigned long long rng;
    int32_t corpus[RS_CORPUS][RS_MAX_LEN];
    int32_t corpus_len[RS_CORPUS];
    int32_t num_corpus;
    radix_node *lock_node[RS_MAX_LOCKS];
    int32_t lock_entry[RS_MAX_LOCKS];
    int32_t num_locks;
    long evicted_total;
} radix_stress;

static uint32_t radix_stress_rand(radix_stress *st, uint32_t bound)
{
    st->rng = st->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(st->rng >> 33) % bound;
}

static int32_t radix_stress_seq(radix_stress *st, int32_t *toks)
{
    int32_t n = 0;
    if (st->num_corpus > 0 && radix_stress_rand(st, 4) != 0) {
        int32_t c = (int32_t)radix_stress_rand(st, (uint32_t)st->num_corpus);
        n = (int32_t)radix_stress_rand(st, (uint32_t)st->corpus_len[c] + 1);
        memcpy(toks, st->corpus[c], (size_t)n * sizeof(int32_t));
    }
    int32_t tail = (int32_t)radix_stress_rand(st, 10);
    if (n + tail == 0) tail = 1;
    if (n + tail > RS_MAX_LEN) tail = RS_MAX_LEN - n;
    for (int32_t i = 0; i < tail; i++) toks[n + i] = (int32_t)radix_stress_rand(st, RS_ALPHA);
    n += tail;
    if (n > 0) {
        int32_t c = st->num_corpus < RS_CORPUS ? st->num_corpus++ : (int32_t)radix_stress_rand(st, RS_CORPUS);
        memcpy(st->corpus[c], toks, (size_t)n * sizeof(int32_t));
        st->corpus_len[c] = n;
    }
    return n;
}

static void radix_stress_check_counters(radix_stress *st)
{
    CHECK_EQ_INT(radix_cache_total_tokens(st->rc), st->m.live);
    CHECK_EQ_INT(radix_cache_evictable_tokens(st->rc), st->m.live_unref);
    CHECK_EQ_INT(st->kv.num_free + st->m.live, RS_NUM_SLOTS);
}

/* Evicts up to k tokens and checks the freed set: exactly min(k, evictable) tokens, all live
 * and unlocked in the model, and closed under descendants (no live entry below a freed one). */
static void radix_stress_evict(radix_stress *st, int32_t k)
{
    radix_ref *m = &st->m;
    int32_t out[RS_NUM_SLOTS + 1];
    int32_t expect = k < m->live_unref ? k : m->live_unref;
    if (expect < 0) expect = 0;
    int32_t got = radix_cache_evict(st->rc, k, out);
    CHECK_EQ_INT(got, expect);
    int32_t freed[RS_NUM_SLOTS + 1];
    for (int32_t i = 0; i < got; i++) {
        int32_t s = out[i];
        CHECK(s >= 0 && s < RS_NUM_SLOTS);
        if (s < 0 || s >= RS_NUM_SLOTS) return;
        int32_t e = m->slot_to_entry[s];
        CHECK(e > 0);
        if (e <= 0) return;
        CHECK(m->alive[e]);
        CHECK_EQ_INT(m->ref[e], 0); /* never a locked path */
        m->alive[e] = 0;
        m->slot_to_entry[s] = -1;
        m->live--;
        m->live_unref--;
        freed[i] = e;
    }
    /* Closure: no live entry hangs below a freed one. */
    for (int32_t i = 0; i < got; i++)
        for (int t = 0; t < RS_ALPHA; t++) {
            int32_t c = m->child[freed[i]][t];
            if (c >= 0) CHECK(!m->alive[c]);
        }
    kv_cache_release(&st->kv, out, got);
    st->evicted_total += got;
}

static void radix_stress_check_match(radix_stress *st, const int32_t *toks, int32_t n,
                                     radix_node **node, int32_t *end)
{
    int32_t got_slots[RS_MAX_LEN], ref_slots[RS_MAX_LEN];
    int32_t want = radix_ref_match(&st->m, toks, n, ref_slots, end);
    int32_t got = radix_cache_match_prefix(st->rc, toks, n, got_slots, node);
    CHECK_EQ_INT(got, want);
    if (got == want) CHECK(radix_test_same(got_slots, ref_slots, got));
}

/* Makes room for n slots by evicting; returns 0 when the pool cannot hold them. */
static int radix_stress_reserve(radix_stress *st, int32_t n)
{
    if (!kv_cache_can_alloc(&st->kv, n)) radix_stress_evict(st, n - st->kv.num_free);
    return kv_cache_can_alloc(&st->kv, n);
}

/* Inserts toks[0..n) whose slots [0, p) are already the tree's own (p from a locked match)
 * and [p, n) are fresh; releases the caller's duplicates [p, d) as the contract says. */
static void radix_stress_insert(radix_stress *st, const int32_t *toks, int32_t n, int32_t *slots, int32_t p)
{
    radix_ref *m = &st->m;
    int32_t end = 0;
    int32_t want = radix_ref_match(m, toks, n, NULL, &end);
    CHECK(want >= p);
    int32_t d = radix_cache_insert(st->rc, toks, slots, n);
    CHECK_EQ_INT(d, want);
    if (d != want) return;
    for (int32_t i = d; i < n; i++) {
        end = radix_ref_new(m, end, toks[i], slots[i]);
        m->live++;
        m->live_unref++;
    }
    kv_cache_release(&st->kv, slots + p, d - p);
}

TEST_CASE(radix_cache_stress_random)
{
    radix_stress *st = calloc(1, sizeof *st);
    CHECK_EQ_INT(kv_cache_init(&st->kv, RS_NUM_SLOTS, 1, 1), STATUS_OK);
    st->rc = radix_cache_create();
    st->rng = 0x9e3779b97f4a7c15ULL;
    for (int32_t s = 0; s < RS_NUM_SLOTS; s++) st->m.slot_to_entry[s] = -1;
    radix_ref_new(&st->m, -1, 0, -1); /* entry 0: the root */
    int32_t toks[RS_MAX_LEN], slots[RS_MAX_LEN];
    long num_ops = 0, num_inserts = 0;
    for (int step = 0; step < 200000; step++) {
        uint32_t op = radix_stress_rand(st, 100);
        int32_t n = radix_stress_seq(st, toks);
        if (op < 30) {
            /* Plain insert: fresh slots for the whole sequence. */
            if (radix_stress_reserve(st, n)) {
                kv_cache_alloc(&st->kv, n, slots);
                radix_stress_insert(st, toks, n, slots, 0);
                num_inserts++;
            }
        } else if (op < 45) {
            /* Request flow: match + lock, maybe other traffic, allocate the rest, insert. */
            radix_node *node = NULL;
            int32_t end = 0;
            radix_stress_check_match(st, toks, n, &node, &end);
            int32_t p = radix_ref_match(&st->m, toks, n, slots, NULL);
            radix_cache_lock(st->rc, node);
            radix_ref_lock(&st->m, end, +1);
            radix_stress_check_counters(st);
            if (radix_stress_rand(st, 2)) {
                int32_t t2[RS_MAX_LEN], s2[RS_MAX_LEN];
                int32_t n2 = radix_stress_seq(st, t2);
                if (radix_stress_reserve(st, n2)) {
                    kv_cache_alloc(&st->kv, n2, s2);
                    radix_stress_insert(st, t2, n2, s2, 0);
                }
            }
            if (radix_stress_reserve(st, n - p)) {
                kv_cache_alloc(&st->kv, n - p, slots + p);
                radix_stress_insert(st, toks, n, slots, p);
                num_inserts++;
            }
            radix_cache_unlock(st->rc, node);
            radix_ref_lock(&st->m, end, -1);
        } else if (op < 55) {
            if (st->num_locks < RS_MAX_LOCKS) {
                radix_node *node = NULL;
                int32_t end = 0;
                radix_stress_check_match(st, toks, n, &node, &end);
                radix_cache_lock(st->rc, node);
                radix_ref_lock(&st->m, end, +1);
                st->lock_node[st->num_locks] = node;
                st->lock_entry[st->num_locks] = end;
                st->num_locks++;
            }
        } else if (op < 66) {
            if (st->num_locks > 0) {
                int32_t i = (int32_t)radix_stress_rand(st, (uint32_t)st->num_locks);
                radix_cache_unlock(st->rc, st->lock_node[i]);
                radix_ref_lock(&st->m, st->lock_entry[i], -1);
                st->num_locks--;
                st->lock_node[i] = st->lock_node[st->num_locks];
                st->lock_entry[i] = st->lock_entry[st->num_locks];
            }
        } else if (op < 78) {
            radix_stress_evict(st, (int32_t)radix_stress_rand(st, 48));
        } else {
            radix_stress_check_match(st, toks, n, NULL, NULL);
        }
        radix_stress_check_counters(st);
        num_ops++;
        if (test_failures > 20) break;
    }
    /* Every corpus sequence still matches the model; then drop the locks and drain. */
    for (int32_t c = 0; c < st->num_corpus; c++)
        radix_stress_check_match(st, st->corpus[c], st->corpus_len[c], NULL, NULL);
    while (st->num_locks > 0) {
        st->num_locks--;
        radix_cache_unlock(st->rc, st->lock_node[st->num_locks]);
        radix_ref_lock(&st->m, st->lock_entry[st->num_locks], -1);
    }
    radix_stress_check_counters(st);
    fprintf(stderr, "radix stress: %ld ops, %ld inserts, %ld tokens evicted, %d model entries\n",
            num_ops, num_inserts, st->evicted_total, (int)st->m.num_entries);
    CHECK(num_inserts > 1000);
    CHECK(st->evicted_total > 1000);
    radix_stress_evict(st, RS_NUM_SLOTS / 2);
    radix_stress_check_counters(st);
    int32_t out[RS_NUM_SLOTS];
    int32_t total = radix_cache_total_tokens(st->rc);
    CHECK_EQ_INT(radix_cache_free(st->rc, out), total);
    kv_cache_release(&st->kv, out, total); /* asserts if any slot was not owned exactly once */
    CHECK_EQ_INT(st->kv.num_free, RS_NUM_SLOTS);
    kv_cache_free(&st->kv);
    free(st->m.parent);
    free(st->m.token);
    free(st->m.slot);
    free(st->m.ref);
    free(st->m.alive);
    free(st->m.child);
    free(st);
}
