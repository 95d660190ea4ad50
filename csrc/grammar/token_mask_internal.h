/* token_mask_internal.h — private to the token_* files of csrc/grammar: the structs that the
 * vocabulary trie, the classification cache, the regions and the bounded chains share, the
 * functions one of them calls in another, and the small helpers their hot loops inline.  The
 * contract (and the design overview) is token_mask.h.
 *
 * Files: token_vocab.c (the trie), token_mask.c (the classification cache: walk, settle,
 * assemble; counters near their bound; masks), token_region.c (regions: states whose bytes
 * move the stack [.., below, x] to [.., below, x']), token_chain.c (bounded chains: positions
 * of a length-bounded piece).
 * Invariants: the region cache is held by the token_vocab and shared by every grammar on it,
 * under region_lock; its array may move (a table copies a region into a token_region_view),
 * the arrays it points to do not.  A token_mask_table is not thread-safe. */
#ifndef LIGHTLLM_GRAMMAR_TOKEN_MASK_INTERNAL_H
#define LIGHTLLM_GRAMMAR_TOKEN_MASK_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "core/log.h"
#include "grammar/dpda.h"
#include "grammar/token_mask.h"
#include "grammar/vec.h"

#define TOKEN_REGION_MAX 48    /* states searched from the top (at most 64: successor bit sets) */
#define TOKEN_GROUP_MAX 4096   /* regions leaving by more tokens walk them one by one (no ex_ord) */
#define TOKEN_KID_AHEAD 8      /* siblings a trie walk fetches ahead of the one it steps */
#define TOKEN_ROW_KIDS 8       /* a walk steps the children of a node with this many from its state's row */
#define TOKEN_CHAIN_K 24       /* a bounded position counts characters up to this many; tokens
                                * starting more are walked on the real stack */

/* ---- the vocabulary (token_vocab.c) ---- */

/* One trie node, every field a walk reads in one 16-byte record (the walks visit siblings
 * far apart in preorder: one cache line a node instead of one per field). */
typedef struct token_trie_node {
    int32_t end;          /* index after the subtree */
    int32_t tok_start;    /* into sorted: the first token at or under the node (preorder), so
                           * subtree i's tokens are [node[i].tok_start, node[node[i].end].tok_start) */
    uint16_t depth;       /* 1.. */
    uint16_t tok_count;   /* tokens whose bytes end here */
    uint8_t byte;
} token_trie_node;

struct token_vocab {
    const detok_vocab *dv;
    int32_t size, words;
    uint8_t *usable;         /* [size] 1 = a grammar may allow it (not special, not empty) */
    uint8_t *is_eos;         /* [size] */
    int32_t *eos;            /* [num_eos] */
    int32_t num_eos;
    /* trie in preorder; the root is implicit (depth 0) */
    int32_t num_nodes, max_depth;
    struct token_trie_node *node;   /* [num_nodes + 1] (the last: tok_start = num_sorted only) */
    const uint8_t **tok_bytes;      /* [size] each token's bytes (the detokenizer's table) */
    int32_t *tok_len;               /* [size] */
    int32_t *sorted;         /* [num_sorted] usable tokens in byte order */
    int32_t num_sorted;
    int32_t *rank;           /* [size] position in sorted, -1 unusable */
    int32_t *root;           /* [num_root] the root's children (depth-1 nodes) in order, so a walk that
                              * rejects most first bytes reads one small array, not a node per byte */
    uint8_t *root_byte;      /* [num_root] their bytes */
    int32_t num_root;
    int32_t *kid_off;        /* [num_nodes + 2] node p's children are kid[kid_off[p + 1], kid_off[p + 2]) (p = -1: the root) */
    int32_t *kid;            /* [num_nodes + TOKEN_KID_AHEAD] children in order, parent by parent: a walk stepping the
                              * siblings (far apart in preorder, a cache miss each) fetches the next ones early */
    uint8_t *kid_byte;       /* [num_nodes + TOKEN_KID_AHEAD] their bytes (a run of siblings is read here) */
    /* region cache, shared by every grammar over this vocabulary (see token_mask_region) */
    pthread_mutex_t region_lock;
    struct token_region *regions;
    int32_t num_regions, cap_regions;
    uint64_t *rh_keys;       /* [rh_cap] the regions by token_sig_hash (UINT64_MAX empty; a hash of
                              * UINT64_MAX is kept as 0) */
    int32_t *rh_vals;        /* [rh_cap] index in regions */
    int64_t rh_cap;
};

/* A classification: accepted tokens as a bitmask, uncertain ones in trie order. */
typedef struct token_mask_entry {
    uint32_t *accepted;   /* [words]; NULL: none but `extra` (a small set, TOKEN_SPARSE_MAX) */
    int32_t *unc;         /* [num_unc] uncertain tokens in trie order */
    int32_t *unc_lcp;     /* [num_unc] common prefix length with the previous uncertain token */
    int32_t num_unc;
    int32_t num_accepted;
    int32_t *extra;       /* [num_extra] accepted besides `accepted` (a region's refinement) */
    int32_t num_extra;
    int32_t *removed;     /* [num_removed] in `accepted` but not allowed (a shared set's exceptions) */
    int32_t num_removed;
    int owns_accepted;    /* 0: `accepted` belongs to the vocabulary's region cache */
    int32_t *ex;          /* [4 * num_unc] or NULL: a region entry's uncertain tokens in the order of their
                           * exits (token_walk_groups'), each (token, bytes before it leaves the region, the
                           * real state it leaves from, bytes from the exit shared with the previous one or
                           * -1 where that state changes), so a mask walks them sharing their tails */
} token_mask_entry;

typedef struct token_region {
    uint64_t hash;
    int32_t *sig;         /* [sig_len] the local automaton over bytes, canonically numbered */
    int32_t sig_len;
    int32_t *enc;         /* [enc_len] sig as its maximal runs, (value, length) pairs: a lookup compares
                           * these (a string's state is a few runs of its 256 bytes) */
    int32_t enc_len;
    token_mask_entry e;
    uint8_t *ref;         /* [num_nodes] local state after each node's bytes from the start (0),
                           * 0xff rejected or left on the way; NULL for a small region */
    /* counting (bounded chains, see token_mask_chain): a token's "started" count is the number
     * of its steps that leave state 0 inside the region (the characters it begins) */
    int32_t s_max;        /* largest started count of any trie node walked inside the region */
    int32_t *by_st;       /* [e.num_accepted] accepted tokens by started count, ascending */
    int32_t *st_off;      /* [s_max + 2] by_st[st_off[s] .. st_off[s + 1]) started s */
    uint32_t **bound;     /* [s_max] lazily: accepted tokens with started <= r, [words] each */
    int32_t *cw, *cw_lcp; /* [num_cw] tokens a bounded position walks on the real stack: those that
                           * leave the region (e.unc) and those whose walk starts more than
                           * TOKEN_CHAIN_K characters, trie order; lcp with the previous one */
    int32_t num_cw;
    int32_t *unc_pu;      /* [2 * e.num_unc] each uncertain token's bytes before it leaves and the
                           * local state it leaves from */
    int use_exits;        /* walking from the exits is cheaper than walking the list in trie order */
    int32_t *ex_ord;      /* [e.num_unc] uncertain list indices by (exit state, bytes from the exit) */
    int32_t *ex_lcp;      /* [e.num_unc] bytes from the exit shared with the previous in ex_ord order,
                           * -1 where the exit state changes */
    int32_t *unc_rank;    /* [e.num_unc] each uncertain token's place in the trie order (ascending) */
    int64_t ex_cost;      /* bytes token_walk_groups steps at most */
    int64_t ex_single;    /* bytes token_walk_exits steps for the whole list */
    uint64_t *racc;       /* [(num_sorted + 63) / 64] e.accepted by place in the trie order (bit q:
                           * sorted[q] accepted), so a range of the trie order reads as words */
    uint8_t *ex_tail;     /* [ex_off[e.num_unc]] each uncertain token's bytes from its exit on, in ex_ord
                           * order, so token_walk_groups reads them in sequence (not a token's bytes each) */
    int32_t *ex_off;      /* [e.num_unc + 1] where each starts in ex_tail */
    uint8_t *unc_bytes;   /* the bytes of e.unc's tokens one after the other, the k-th from unc_off[k] to */
    int32_t *unc_off;     /* unc_off[k + 1] ([e.num_unc + 1]), so token_walk reads them in sequence;
                           * NULL for a list of more than TOKEN_GROUP_MAX */
    uint8_t *cw_bytes;    /* the same for cw */
    int32_t *cw_off;
    /* cw as a bounded position walks it when its chain knows the real state of every (local
     * state, characters started) (token_chain_walk): the exits of at most TOKEN_CHAIN_K started
     * characters by (local state left from, started count, bytes from the exit), each
     * (token, local state, started count, bytes from the exit shared with the previous one or
     * -1 where state or count changes), their bytes from the exit in that order in cx_tail
     * (the k-th from cx_off[k] to cx_off[k + 1]); the rest of cw (tokens starting more than
     * TOKEN_CHAIN_K characters) in trie order as lw */
    int32_t *cx;          /* [4 * num_cx] */
    int32_t num_cx;
    uint8_t *cx_tail;
    int32_t *cx_off;      /* [num_cx + 1] */
    int32_t *lw, *lw_lcp; /* [num_lw] */
    int32_t num_lw;
    uint8_t *lw_bytes;
    int32_t *lw_off;      /* [num_lw + 1] */
} token_region;

static inline const uint8_t *token_bytes(const token_vocab *tv, int32_t tok, int32_t *len)
{
    *len = tv->tok_len[tok];
    return tv->tok_bytes[tok];
}

/* ---- the classification cache (token_mask.c) ---- */

/* A region as one grammar's table sees it (copied from the vocabulary's cache, whose array may
 * move; the arrays it points to do not). */
typedef struct token_region_view {
    const uint32_t *accepted;
    const int32_t *unc, *unc_lcp;
    int32_t num_unc, num_accepted;
    const uint8_t *ref;
    int32_t region;       /* index in the vocabulary's cache */
    int32_t s_max;        /* token_region.s_max */
    const int32_t *cw, *cw_lcp;   /* token_region.cw */
    int32_t num_cw;
    const int32_t *unc_pu;        /* token_region.unc_pu */
    int use_exits;
    const int32_t *ex_ord, *ex_lcp;   /* token_region.ex_ord / ex_lcp */
    const int32_t *unc_rank;          /* token_region.unc_rank */
    int64_t ex_cost, ex_single;       /* token_region.ex_cost / ex_single */
    int32_t *members;     /* [TOKEN_REGION_MAX] real state of each local state (views of
                           * token_mask_region_view, owned by the table), else NULL */
    const uint64_t *racc; /* token_region.racc */
    const uint8_t *ex_tail;   /* token_region.ex_tail / ex_off */
    const int32_t *ex_off;
    const uint8_t *unc_bytes, *cw_bytes;   /* token_region.unc_bytes / unc_off, cw_bytes / cw_off */
    const int32_t *unc_off, *cw_off;
    const int32_t *cx, *cx_off, *lw, *lw_lcp, *lw_off;   /* token_region.cx ... */
    const int32_t *sig;   /* token_region.sig */
    const uint8_t *cx_tail, *lw_bytes;
    int32_t num_cx, num_lw;
    /* a bounded chain's view (token_mask_chain): the real state at (local state u, s characters
     * started since the state analysed) is chain_z[u * chain_zs + s] (-1 none), NULL when some
     * (u, s) has two; a state labelled r started chain_r0 - r characters after it */
    int32_t *chain_z;     /* owned by the table */
    int32_t chain_zs, chain_r0;
} token_region_view;

typedef struct token_chain_label {
    int32_t view;   /* index into t->views, -1: not a chain */
    int32_t u;      /* state of U */
    int32_t r;      /* characters left: exact, or a lower bound + INT32_MAX / 2 (token_mask_chain) */
} token_chain_label;

/* token_walk_groups of view `view` from a node over arena node `parent` (one fixed for the whole
 * classification walk): outcomes at gout[off, off + num_unc). */
typedef struct token_group_memo {
    int32_t view, parent;
    int64_t off;
} token_group_memo;

/* A subtree settled by a region's walk: tokens sorted[lo, hi) as in view's accepted set. */
typedef struct token_skip {
    int32_t lo, hi, view;
} token_skip;

struct token_mask_table {
    const dpda *d;
    const token_vocab *tv;
    uint64_t *keys;       /* [cap] (below + 1) << 32 | top; UINT64_MAX empty */
    int32_t *vals;        /* [cap] entry index */
    int64_t cap;
    VEC(token_mask_entry) entries;
    int64_t bytes;
    dpda_matcher scratch; /* arena for classification walks */
    int32_t *tops;        /* [max_depth + 1] */
    int32_t *marks;       /* [max_depth + 1] arena length after tops[d] */
    struct token_step_memo *memo;   /* [TOKEN_MEMO] direct-mapped, see token_step_memo */
    struct token_exit_memo *xmemo;  /* [TOKEN_XMEMO] direct-mapped, see token_exit_memo */
                          /* (both the calling thread's, set by token_walk_begin) */
                          /* (steps from a counted state with a known count are not memoised) */
    uint64_t walk_id;     /* the current walk's id in those memos */
    /* regions: probes run on their own arena and depth stacks (a classification walk may ask
     * for a region midway) */
    dpda_matcher probe;   /* nodes [below, x] */
    int32_t *region_ys;   /* [max_depth + 1] */
    int32_t *region_st;   /* [max_depth + 1] started counts along the region walk */
    VEC(token_region_view) views;
    uint64_t *rv_keys;    /* [rv_cap] (below + 1) << 32 | top; UINT64_MAX empty */
    int32_t *rv_vals;     /* [rv_cap] view index, -1 not a region */
    int64_t rv_cap, rv_num;
    /* bounded chains (token_mask_chain) */
    VEC(token_chain_label) labels;
    uint64_t *cl_keys;    /* [cl_cap] (below + 1) << 32 | state; UINT64_MAX empty */
    int32_t *cl_vals;     /* [cl_cap] label index */
    int64_t cl_cap;
    uint32_t *cs_mark;    /* [num_states] stamp: labelled in the current check */
    int32_t *cs_idx;      /* [num_states] its index in chain_q / chain_l */
    uint32_t chain_stamp;
    vec_i32 chain_q;      /* states labelled by the current check, in order */
    VEC(token_chain_label) chain_l;   /* their (u, s) (s in .r) */
    int64_t num_chains;
    int64_t num_chain_groups;   /* of those, cw walked from the exits (token_chain_walk) */
    int64_t num_near_bound;  /* masks token_mask_fill_near_bound computed */
    VEC(token_skip) skips;   /* scratch of one classification */
    int32_t *kcur;               /* [3 * (max_depth + 2)] the classification walk's place among siblings
                                  * (tv->kid), then the number of those siblings, then where they end */
    int32_t *g_tops, *g_marks;   /* [max_depth + 2] token_walk_groups' own (a trie walk may call it midway) */
    VEC(token_group_memo) gmemo;  /* one classification walk's token_walk_groups results, by (view, parent) */
    VEC(uint8_t) gout;           /* their outcomes, gmemo[i].off on */
    int32_t walk_fixed;          /* nodes of the partial stack a classification walk starts from */
    uint64_t *row_keys;          /* [row_cap] (below + 1) << 32 | x: token_region_row's cache */
    int32_t *row_vals;           /* [row_cap] offset in row_pool */
    int64_t row_cap, row_num;
    vec_i32 row_pool;
    uint64_t row_gen;            /* rows made so far (a new one may move row_pool) */
    int32_t *region_local;       /* [TOKEN_REGION_MAX * classes] token_mask_region's scratch */
    int32_t *cls_bytes;          /* [classes + 1] bytes of each class (token_mask_chain) */
    uint32_t *rs_mark;           /* [num_states] token_mask_region's search: stamp, */
    int32_t *rs_idx;             /* [num_states] place in its `states` */
    uint32_t rs_stamp;
    int32_t *brun;               /* [num_brun + 1] starts of the runs of bytes with one class, then 256 */
    int32_t num_brun;
    uint8_t *view_member;        /* [num_states] bit 1: an inner state of a region view computed here;
                                  * bit 2: it starts no region of its own (token_mask_region_view_own) */
    uint8_t *may_loop;           /* [num_states] token_state_may_loop: 0 not known yet, 1 no, 2 maybe */
    uint8_t *root_rej;           /* [classes] the walk's first byte of this class is rejected (its row) */
    int64_t num_skips;
    vec_i32 acc;             /* scratch: tokens accepted outside skipped subtrees */
    uint32_t *mark;          /* [words] token_mask_assemble's scratch bits, clear between calls */
    vec_i32 marked;          /* the tokens it set there */
    vec_i32 outside;         /* token_mask_assemble's scratch: tokens read from a region's racc */
    int64_t *view_n;         /* [view_n_cap] token_mask_assemble's tokens skipped per view, zero between calls */
    int64_t view_n_cap;
    vec_i32 sig_enc;         /* token_mask_region's scratch: the runs of the byte table it looks up */
    uint64_t *rc_keys;       /* [rc_cap] this grammar's regions by the hash of their table over classes */
    int32_t *rc_vals;        /* [rc_cap] index in rc_pool's records: (region, states, offset of the table) */
    int64_t rc_cap, rc_num;
    vec_i32 rc_pool;         /* records of 3, then the tables [states * classes] */
    vec_i32 rc_rec;
};

/* Cross-file functions: hidden, so calls between these files are direct, as between the
 * static functions of one file, and _C exports none of them. */
#pragma GCC visibility push(hidden)

/* token_mask.c */
void token_hash_put(uint64_t **keys_p, int32_t **vals_p, int64_t *cap_p, int64_t num, uint64_t key, int32_t val);
void token_mask_set_unc(const token_vocab *tv, token_mask_entry *e, vec_i32 *unc);

/* token_region.c */
const int32_t *token_region_row(token_mask_table *t, int32_t x);
int token_state_may_loop(token_mask_table *t, int32_t x);
int token_mask_region(token_mask_table *t, int32_t below, int32_t top, token_region_view *out,
                      int32_t *members, int32_t *num_members);
uint64_t token_sig_hash(const int32_t *sig, int32_t n);
int token_region_find(token_mask_table *t, const int32_t *enc, int32_t enc_len, int32_t sig_len, uint64_t h,
                      token_region_view *out);
int token_region_get(token_mask_table *t, int32_t *sig, int32_t sig_len, uint64_t h, token_region_view *out);
const uint32_t *token_region_bounded(token_mask_table *t, const token_region_view *v, int32_t r, int32_t *num);
int32_t token_mask_region_view(token_mask_table *t, int32_t below, int32_t top, int32_t *idx);
int32_t token_mask_region_view_own(token_mask_table *t, int32_t below, int32_t top);

/* token_chain.c */
const token_chain_label *token_mask_chain(token_mask_table *t, int32_t below, int32_t x);

#pragma GCC visibility pop

/* ---- inline helpers (hot loops of several files) ---- */

static inline uint64_t token_mask_slot(uint64_t key, int64_t cap)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (h ^ (h >> 29)) & (uint64_t)(cap - 1);
}

/* the value, or -3 when absent */
static inline int32_t token_hash_find(const uint64_t *keys, const int32_t *vals, int64_t cap, uint64_t key)
{
    uint64_t j = token_mask_slot(key, cap);
    while (keys[j] != UINT64_MAX) {
        if (keys[j] == key) return vals[j];
        j = (j + 1) & (uint64_t)(cap - 1);
    }
    return -3;
}

/* the value's slot, or NULL when absent */
static inline int32_t *token_hash_slot(const uint64_t *keys, int32_t *vals, int64_t cap, uint64_t key)
{
    uint64_t j = token_mask_slot(key, cap);
    while (keys[j] != UINT64_MAX) {
        if (keys[j] == key) return &vals[j];
        j = (j + 1) & (uint64_t)(cap - 1);
    }
    return NULL;
}

/* Room in a scratch matcher for the partial stacks the walks build (node 0 = below, node 1 on). */
static inline void token_mask_reserve_nodes(dpda_matcher *s)
{
    if (s->cap_nodes >= 2) return;
    s->cap_nodes = 1024;
    s->nodes = realloc(s->nodes, (size_t)s->cap_nodes * sizeof *s->nodes);
    LL_ASSERT(s->nodes);
}

/* Whether token_mask_region_view may find x in a region (for some below): x may loop, or a
 * region computed so far holds it as an inner state; when not, a walk asks no hash table. */
static inline int token_state_in_view(token_mask_table *t, int32_t x)
{
    return token_state_may_loop(t, x) || (t->view_member && (t->view_member[x] & 1));
}

/* characters a bounded position counts (more are walked: token_region.cw) */
static inline int32_t token_chain_k(const token_region_view *v)
{
    return v->s_max < TOKEN_CHAIN_K ? v->s_max : TOKEN_CHAIN_K;
}

#endif
