/* token_mask.c — vocabulary trie, per-(below, top) token classification cache, masks; see
 * token_mask.h. */
#include "grammar/token_mask.h"

#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <stdio.h>

#include "core/log.h"
#include "grammar/vec.h"

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
    /* region cache, shared by every grammar over this vocabulary (see token_mask_region) */
    pthread_mutex_t region_lock;
    struct token_region *regions;
    int32_t num_regions, cap_regions;
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
} token_mask_entry;

typedef struct token_region {
    uint64_t hash;
    int32_t *sig;         /* [sig_len] the local automaton over bytes, canonically numbered */
    int32_t sig_len;
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
} token_region;

typedef struct token_sort_item {
    const uint8_t *bytes;
    int32_t len, id;
} token_sort_item;

static int token_cmp(const void *a, const void *b)
{
    const token_sort_item *x = a, *y = b;
    int c = memcmp(x->bytes, y->bytes, (size_t)(x->len < y->len ? x->len : y->len));
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : 1;
}

status_t token_vocab_create(const detok_vocab *dv, const int32_t *eos_ids, int32_t num_eos, token_vocab **out)
{
    *out = NULL;
    int32_t n = detok_vocab_size(dv);
    for (int32_t i = 0; i < num_eos; i++)
        if (eos_ids[i] < 0 || eos_ids[i] >= n)
            return status_set(STATUS_INVALID_ARG, "eos id %d is outside the vocabulary [0, %d)", (int)eos_ids[i], (int)n);
    token_vocab *tv = calloc(1, sizeof *tv);
    LL_ASSERT(tv);
    tv->dv = dv;
    tv->size = n;
    tv->words = (n + 31) / 32;
    tv->usable = calloc((size_t)n, 1);
    tv->is_eos = calloc((size_t)n, 1);
    tv->eos = malloc(((size_t)num_eos + 1) * sizeof *tv->eos);
    tv->sorted = malloc((size_t)n * sizeof *tv->sorted);
    LL_ASSERT(tv->usable && tv->is_eos && tv->eos && tv->sorted);
    tv->num_eos = num_eos;
    for (int32_t i = 0; i < num_eos; i++) { tv->eos[i] = eos_ids[i]; tv->is_eos[eos_ids[i]] = 1; }
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t len;
        detok_token_bytes(dv, i, &len);
        if (len > 0 && !detok_is_special(dv, i) && !tv->is_eos[i]) {
            tv->usable[i] = 1;
            tv->sorted[tv->num_sorted++] = i;
            total += len;
        }
    }
    token_sort_item *items = malloc(((size_t)tv->num_sorted + 1) * sizeof *items);
    LL_ASSERT(items);
    for (int32_t k = 0; k < tv->num_sorted; k++) {
        items[k].id = tv->sorted[k];
        items[k].bytes = detok_token_bytes(dv, items[k].id, &items[k].len);
    }
    qsort(items, (size_t)tv->num_sorted, sizeof *items, token_cmp);
    for (int32_t k = 0; k < tv->num_sorted; k++) tv->sorted[k] = items[k].id;
    free(items);
    /* nodes: at most total bytes */
    tv->node = calloc((size_t)total + 2, sizeof *tv->node);
    tv->rank = malloc((size_t)n * sizeof *tv->rank);
    tv->tok_bytes = malloc((size_t)n * sizeof *tv->tok_bytes);
    tv->tok_len = malloc((size_t)n * sizeof *tv->tok_len);
    LL_ASSERT(tv->node && tv->rank && tv->tok_bytes && tv->tok_len);
    for (int32_t i = 0; i < n; i++) tv->tok_bytes[i] = detok_token_bytes(dv, i, &tv->tok_len[i]);
    for (int32_t i = 0; i < n; i++) tv->rank[i] = -1;
    for (int32_t k = 0; k < tv->num_sorted; k++) tv->rank[tv->sorted[k]] = k;
    vec_i32 path = {0};   /* path.p[d] = node at depth d + 1 on the current branch */
    vec_i32 open = {0};   /* nodes whose subtree is still open */
    const uint8_t *prev = NULL;
    int32_t prev_len = 0, nn = 0;
    for (int32_t k = 0; k < tv->num_sorted; k++) {
        int32_t len;
        const uint8_t *b = detok_token_bytes(dv, tv->sorted[k], &len);
        int32_t l = 0;
        while (l < len && l < prev_len && b[l] == prev[l]) l++;
        for (int32_t d = l; d < len; d++) {
            while (open.n && tv->node[open.p[open.n - 1]].depth >= d + 1) tv->node[open.p[--open.n]].end = nn;
            tv->node[nn].byte = b[d];
            tv->node[nn].depth = d + 1;
            tv->node[nn].tok_start = k;   /* tokens before k sort before this prefix */
            VEC_RESERVE(path, d + 1);
            if (path.n < d + 1) path.n = d + 1;
            path.p[d] = nn;
            VEC_PUSH(open, nn);
            nn++;
        }
        int32_t node = path.p[len - 1];
        LL_ASSERT(len < 65536 && tv->node[node].tok_count < UINT16_MAX);
        tv->node[node].tok_count++;
        if (len > tv->max_depth) tv->max_depth = len;
        prev = b;
        prev_len = len;
    }
    while (open.n) tv->node[open.p[--open.n]].end = nn;
    tv->num_nodes = nn;
    tv->node[nn].tok_start = tv->num_sorted;
    tv->root = malloc(258 * sizeof *tv->root);
    tv->root_byte = malloc(257);
    LL_ASSERT(tv->root && tv->root_byte);
    for (int32_t i = 0; i < nn; i = tv->node[i].end) {
        tv->root_byte[tv->num_root] = tv->node[i].byte;
        tv->root[tv->num_root++] = i;
    }
    tv->root[tv->num_root] = nn;   /* never reached by a walk's index */
    pthread_mutex_init(&tv->region_lock, NULL);
    VEC_FREE(path);
    VEC_FREE(open);
    *out = tv;
    return STATUS_OK;
}

void token_vocab_free(token_vocab *tv)
{
    if (!tv) return;
    for (int32_t i = 0; i < tv->num_regions; i++) {
        free(tv->regions[i].sig);
        free(tv->regions[i].e.accepted);
        free(tv->regions[i].e.unc);
        free(tv->regions[i].e.unc_lcp);
        free(tv->regions[i].ref);
        free(tv->regions[i].by_st);
        free(tv->regions[i].st_off);
        for (int32_t r = 0; r < tv->regions[i].s_max; r++) free(tv->regions[i].bound[r]);
        free(tv->regions[i].bound);
        free(tv->regions[i].cw);
        free(tv->regions[i].cw_lcp);
        free(tv->regions[i].unc_pu);
        free(tv->regions[i].ex_ord);
        free(tv->regions[i].ex_lcp);
        free(tv->regions[i].unc_rank);
        free(tv->regions[i].racc);
    }
    free(tv->regions);
    pthread_mutex_destroy(&tv->region_lock);
    free(tv->usable); free(tv->is_eos); free(tv->eos); free(tv->sorted); free(tv->rank);
    free(tv->node); free(tv->tok_bytes); free(tv->tok_len); free(tv->root); free(tv->root_byte);
    free(tv);
}

static inline const uint8_t *token_bytes(const token_vocab *tv, int32_t tok, int32_t *len)
{
    *len = tv->tok_len[tok];
    return tv->tok_bytes[tok];
}

int32_t token_vocab_size(const token_vocab *tv) { return tv->size; }
int32_t token_vocab_mask_words(const token_vocab *tv) { return tv->words; }
int token_vocab_is_eos(const token_vocab *tv, int32_t token) { return token >= 0 && token < tv->size && tv->is_eos[token]; }
int32_t token_vocab_num_nodes(const token_vocab *tv) { return tv->num_nodes; }

/* ---- the classification cache ---- */

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
                          /* (steps from a counted state with a known count are not memoised) */
    uint64_t walk_id;
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
    int64_t num_near_bound;  /* masks token_mask_fill_near_bound computed */
    VEC(token_skip) skips;   /* scratch of one classification */
    int32_t *g_tops, *g_marks;   /* [max_depth + 2] token_walk_groups' own (a trie walk may call it midway) */
    VEC(token_group_memo) gmemo;  /* one classification walk's token_walk_groups results, by (view, parent) */
    VEC(uint8_t) gout;           /* their outcomes, gmemo[i].off on */
    int32_t walk_fixed;          /* nodes of the partial stack a classification walk starts from */
    uint64_t *row_keys;          /* [row_cap] (below + 1) << 32 | x: token_region_row's cache */
    int32_t *row_vals;           /* [row_cap] offset in row_pool */
    int64_t row_cap, row_num;
    vec_i32 row_pool;
    int32_t *region_local;       /* [TOKEN_REGION_MAX * classes] token_mask_region's scratch */
    int32_t *cls_bytes;          /* [classes + 1] bytes of each class (token_mask_chain) */
    uint32_t *rs_mark;           /* [num_states] token_mask_region's search: stamp, */
    int32_t *rs_idx;             /* [num_states] place in its `states` */
    uint32_t rs_stamp;
    int32_t *brun;               /* [num_brun + 1] starts of the runs of bytes with one class, then 256 */
    int32_t num_brun;
    uint8_t *view_member;        /* [num_states] 1: an inner state of a region view computed here */
    uint8_t *may_loop;           /* [num_states] token_state_may_loop: 0 not known yet, 1 no, 2 maybe */
    uint8_t *root_rej;           /* [classes] the walk's first byte of this class is rejected (its row) */
    int64_t num_skips;
    vec_i32 acc;             /* scratch: tokens accepted outside skipped subtrees */
    uint32_t *mark;          /* [words] token_mask_assemble's scratch bits, clear between calls */
    vec_i32 marked;          /* the tokens it set there */
    vec_i32 outside;         /* token_mask_assemble's scratch: tokens read from a region's racc */
    int64_t *view_n;         /* [view_n_cap] token_mask_assemble's tokens skipped per view, zero between calls */
    int64_t view_n_cap;
};

#define TOKEN_MEMO 8192
#define TOKEN_XMEMO 1024

/* One memoised step of a classification walk from a stack [below, x] (key: walk id << 40 |
 * x << 8 | class): the same-depth successor, -1 rejected, -2 other; cnt: the successor's count. */
typedef struct token_step_memo {
    uint64_t key;
    int32_t val, cnt;
} token_step_memo;

/* One memoised outcome of a token leaving a region during a classification walk
 * (token_mask_exits_memo): from the node (state, parent) — parent one of the walk's fixed start
 * nodes — the bytes of token tok from p on give out (1 accepted, 0 rejected, 2 pops below). */
typedef struct token_exit_memo {
    uint64_t walk;        /* 0: empty */
    int32_t parent, state, tok, p;
    uint8_t out;
} token_exit_memo;
#define TOKEN_ROW_POOL (1 << 20)   /* int32 results held by token_region_row's cache */

token_mask_table *token_mask_table_create(const dpda *d, const token_vocab *tv)
{
    token_mask_table *t = calloc(1, sizeof *t);
    LL_ASSERT(t);
    t->d = d;
    t->tv = tv;
    t->cap = 64;
    t->keys = malloc((size_t)t->cap * sizeof *t->keys);
    t->vals = malloc((size_t)t->cap * sizeof *t->vals);
    t->tops = malloc(((size_t)tv->max_depth + 2) * sizeof *t->tops);
    t->marks = malloc(((size_t)tv->max_depth + 2) * sizeof *t->marks);
    LL_ASSERT(t->keys && t->vals && t->tops && t->marks);
    memset(t->keys, 0xff, (size_t)t->cap * sizeof *t->keys);
    dpda_matcher_init(&t->scratch, d);
    dpda_matcher_init(&t->probe, d);
    t->region_ys = malloc(((size_t)tv->max_depth + 2) * sizeof *t->region_ys);
    t->g_tops = malloc(((size_t)tv->max_depth + 2) * sizeof *t->g_tops);
    t->g_marks = malloc(((size_t)tv->max_depth + 2) * sizeof *t->g_marks);
    LL_ASSERT(t->g_tops && t->g_marks);
    t->region_st = malloc(((size_t)tv->max_depth + 2) * sizeof *t->region_st);
    t->rv_cap = 64;
    t->rv_keys = malloc((size_t)t->rv_cap * sizeof *t->rv_keys);
    t->rv_vals = malloc((size_t)t->rv_cap * sizeof *t->rv_vals);
    LL_ASSERT(t->region_ys && t->region_st && t->rv_keys && t->rv_vals);
    memset(t->rv_keys, 0xff, (size_t)t->rv_cap * sizeof *t->rv_keys);
    t->row_cap = 64;
    t->row_keys = malloc((size_t)t->row_cap * sizeof *t->row_keys);
    t->row_vals = malloc((size_t)t->row_cap * sizeof *t->row_vals);
    LL_ASSERT(t->row_keys && t->row_vals);
    memset(t->row_keys, 0xff, (size_t)t->row_cap * sizeof *t->row_keys);
    t->cl_cap = 64;
    t->cl_keys = malloc((size_t)t->cl_cap * sizeof *t->cl_keys);
    t->cl_vals = malloc((size_t)t->cl_cap * sizeof *t->cl_vals);
    LL_ASSERT(t->cl_keys && t->cl_vals);
    memset(t->cl_keys, 0xff, (size_t)t->cl_cap * sizeof *t->cl_keys);
    return t;
}

void token_mask_table_free(token_mask_table *t)
{
    if (!t) return;
    for (int64_t i = 0; i < t->entries.n; i++) {
        if (t->entries.p[i].owns_accepted) free(t->entries.p[i].accepted);
        free(t->entries.p[i].unc);
        free(t->entries.p[i].unc_lcp);
        free(t->entries.p[i].extra);
        free(t->entries.p[i].removed);
    }
    VEC_FREE(t->entries);
    free(t->keys); free(t->vals); free(t->tops); free(t->marks); free(t->memo); free(t->xmemo); free(t->view_n);
    dpda_matcher_free(&t->scratch);
    dpda_matcher_free(&t->probe);
    free(t->region_ys); free(t->region_st); free(t->rv_keys); free(t->rv_vals);
    for (int64_t i = 0; i < t->views.n; i++) free(t->views.p[i].members);
    VEC_FREE(t->views);
    VEC_FREE(t->skips);
    free(t->g_tops); free(t->g_marks); free(t->row_keys); free(t->row_vals);
    VEC_FREE(t->row_pool);
    free(t->region_local);
    free(t->root_rej);
    free(t->may_loop);
    free(t->view_member);
    free(t->brun);
    free(t->rs_mark);
    free(t->rs_idx);
    free(t->cls_bytes);
    VEC_FREE(t->gmemo);
    VEC_FREE(t->gout);
    VEC_FREE(t->acc);
    free(t->mark);
    VEC_FREE(t->marked);
    VEC_FREE(t->outside);
    VEC_FREE(t->labels);
    free(t->cl_keys); free(t->cl_vals); free(t->cs_mark); free(t->cs_idx);
    VEC_FREE(t->chain_q);
    VEC_FREE(t->chain_l);
    free(t);
}

int64_t token_mask_table_num_entries(const token_mask_table *t) { return t->entries.n; }
int64_t token_mask_table_bytes(const token_mask_table *t) { return t->bytes; }
int64_t token_mask_table_num_skips(const token_mask_table *t) { return t->num_skips; }
int64_t token_mask_table_num_chains(const token_mask_table *t) { return t->num_chains; }
int64_t token_mask_table_num_near_bound(const token_mask_table *t) { return t->num_near_bound; }

static uint64_t token_mask_slot(uint64_t key, int64_t cap)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (h ^ (h >> 29)) & (uint64_t)(cap - 1);
}

/* open addressing over (keys, vals, cap) holding num entries; grows at half full */
static void token_hash_put(uint64_t **keys_p, int32_t **vals_p, int64_t *cap_p, int64_t num, uint64_t key, int32_t val)
{
    if ((num + 1) * 2 > *cap_p) {
        int64_t cap = *cap_p * 2;
        uint64_t *keys = malloc((size_t)cap * sizeof *keys);
        int32_t *vals = malloc((size_t)cap * sizeof *vals);
        LL_ASSERT(keys && vals);
        memset(keys, 0xff, (size_t)cap * sizeof *keys);
        for (int64_t i = 0; i < *cap_p; i++) {
            if ((*keys_p)[i] == UINT64_MAX) continue;
            uint64_t j = token_mask_slot((*keys_p)[i], cap);
            while (keys[j] != UINT64_MAX) j = (j + 1) & (uint64_t)(cap - 1);
            keys[j] = (*keys_p)[i];
            vals[j] = (*vals_p)[i];
        }
        free(*keys_p);
        free(*vals_p);
        *keys_p = keys;
        *vals_p = vals;
        *cap_p = cap;
    }
    uint64_t j = token_mask_slot(key, *cap_p);
    while ((*keys_p)[j] != UINT64_MAX) j = (j + 1) & (uint64_t)(*cap_p - 1);
    (*keys_p)[j] = key;
    (*vals_p)[j] = val;
}

/* the value, or -3 when absent */
static int32_t token_hash_find(const uint64_t *keys, const int32_t *vals, int64_t cap, uint64_t key)
{
    uint64_t j = token_mask_slot(key, cap);
    while (keys[j] != UINT64_MAX) {
        if (keys[j] == key) return vals[j];
        j = (j + 1) & (uint64_t)(cap - 1);
    }
    return -3;
}

/* the value's slot, or NULL when absent */
static int32_t *token_hash_slot(const uint64_t *keys, int32_t *vals, int64_t cap, uint64_t key)
{
    uint64_t j = token_mask_slot(key, cap);
    while (keys[j] != UINT64_MAX) {
        if (keys[j] == key) return &vals[j];
        j = (j + 1) & (uint64_t)(cap - 1);
    }
    return NULL;
}

static void token_mask_put(token_mask_table *t, uint64_t key, int32_t val)
{
    token_hash_put(&t->keys, &t->vals, &t->cap, t->entries.n, key, val);
}

static int32_t token_mask_find(const token_mask_table *t, uint64_t key)
{
    int32_t v = token_hash_find(t->keys, t->vals, t->cap, key);
    return v == -3 ? -1 : v;
}

static int32_t token_lcp(const token_vocab *tv, int32_t a, int32_t b)
{
    int32_t la, lb;
    const uint8_t *x = token_bytes(tv, a, &la);
    const uint8_t *y = token_bytes(tv, b, &lb);
    int32_t l = 0;
    while (l < la && l < lb && x[l] == y[l]) l++;
    return l;
}

/* ---- regions: states whose bytes move the stack [.., below, x] to [.., below, x'] ----
 * Inside a string, a number or any other looping regular piece, the parser stays at one depth
 * and the byte-level behaviour from x is a small automaton ("region") that is identical in
 * every grammar and at every place where the same piece occurs.  Its canonical byte table is
 * the key of a cache in the vocabulary: the trie walk that classifies tokens from x (accepted:
 * stay in the region; rejected; uncertain: leave it) runs once per distinct region, with one
 * table lookup per trie node, and every grammar on this vocabulary reuses it. */

#define TOKEN_REGION_MAX 48    /* states searched from the top (at most 64: successor bit sets) */
#define TOKEN_REGION_DEPTH 7   /* bytes searched from the top (a 6-byte u-escape loops back) */
#define TOKEN_REF_MIN 1024     /* regions accepting fewer tokens keep no per-node states */
#define TOKEN_SHARE_MAX 1024   /* a classification differing from a region's accepted set in at
                                * most this many tokens shares that set (token_mask_assemble) */
#define TOKEN_GROUP_MAX 4096   /* regions leaving by more tokens walk them one by one (no ex_ord) */
#define TOKEN_SPARSE_MAX 256   /* a classification accepting at most this many tokens (outside a shared
                                * set) keeps them as a list, not a bitmap of the vocabulary */
#define TOKEN_CHAIN_K 24       /* a bounded position counts characters up to this many; tokens
                                * starting more are walked on the real stack */

/* Room in a scratch matcher for the partial stacks the walks build (node 0 = below, node 1 on). */
static void token_mask_reserve_nodes(dpda_matcher *s)
{
    if (s->cap_nodes >= 2) return;
    s->cap_nodes = 1024;
    s->nodes = realloc(s->nodes, (size_t)s->cap_nodes * sizeof *s->nodes);
    LL_ASSERT(s->nodes);
}

/* x' (same depth), -1 (rejected) or -2 (leaves the region) for class c from [below, x]
 * (t->probe: node 0 = below, set by the caller) */
static int32_t token_region_step_once(token_mask_table *t, int32_t x, int32_t c)
{
    dpda_matcher *s = &t->probe;
    s->nodes[1] = (dpda_node){x, 0, DPDA_COUNT_UNKNOWN};
    s->num_nodes = 2;
    int32_t r = dpda_step(t->d, s, 1, c);
    if (r == -1) return -1;
    if (r < 0 || s->nodes[r].parent != 0) return -2;
    return s->nodes[r].state;
}

/* token_region_step_once for every class from [below, x]: [num_terms - 1], kept per table
 * (valid until the next call: the pool may move).  An END edge is read off (it stays at the
 * depth when it pops nothing and pushes nothing, or pops x and pushes one state), and one that
 * continues after the class was shifted does the same for every class that takes it, so a
 * row costs a step per distinct such edge. */
static const int32_t *token_region_row(token_mask_table *t, int32_t x)
{
    const dpda *d = t->d;
    int32_t C = d->num_terms - 1, below = t->probe.nodes[0].state;
    uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)x;
    int32_t v = token_hash_find(t->row_keys, t->row_vals, t->row_cap, key);
    if (v >= 0) return t->row_pool.p + v;
    if (t->row_pool.n + C > TOKEN_ROW_POOL) {   /* start over rather than grow without bound */
        memset(t->row_keys, 0xff, (size_t)t->row_cap * sizeof *t->row_keys);
        t->row_num = 0;
        t->row_pool.n = 0;
    }
    int32_t off = (int32_t)t->row_pool.n, ce[16], cr[16], nce = 0;
    VEC_RESERVE(t->row_pool, off + C);
    int32_t *row = t->row_pool.p + off;
    const int32_t *pre = d->pre + (int64_t)x * d->num_terms;
    int32_t last = -1;   /* the previous class's edge when its result holds for every class */
    for (int32_t c = 0; c < C; c++) {
        if (pre[c] == last) { row[c] = row[c - 1]; continue; }
        const dpda_edge *E = &d->edges[pre[c]];
        last = pre[c];
        if (E->kind == DPDA_REJECT) { row[c] = -1; continue; }
        if (E->kind == DPDA_END) {   /* read off the edge: it stays at x's depth only as below */
            row[c] = E->num_pop == 0 && E->num_push == 0 ? x
                   : E->num_pop == 1 && E->num_push == 1 ? d->push_pool[E->push_off] : -2;
            continue;
        }
        if (!E->post) { row[c] = token_region_step_once(t, x, c); last = -1; continue; }
        int32_t k = 0;
        while (k < nce && ce[k] != pre[c]) k++;
        if (k < nce) { row[c] = cr[k]; continue; }
        row[c] = token_region_step_once(t, x, c);
        if (nce < 16) { ce[nce] = pre[c]; cr[nce++] = row[c]; }
    }
    t->row_pool.n = off + C;
    token_hash_put(&t->row_keys, &t->row_vals, &t->row_cap, t->row_num++, key, off);
    return row;
}

static int32_t token_region_step(token_mask_table *t, int32_t x, int32_t c)
{
    return token_region_row(t, x)[c];
}

static void token_mask_set_unc(const token_vocab *tv, token_mask_entry *e, vec_i32 *unc);
static int token_region_get(token_mask_table *t, int32_t *sig, int32_t sig_len, uint64_t h, token_region_view *out);
static uint64_t token_sig_hash(const int32_t *sig, int32_t n);

/* Whether some byte can take [below, x] back to x for some `below`, from x's edges alone (kept
 * per state): an END edge that pops nothing and pushes nothing, or pops x and pushes x, or an
 * EXPOSE edge that pops at most x (its chain may come back); every other edge rejects, pushes
 * above x or pops below it.  Most states (a declared key's prefixes, punctuation) cannot, and
 * are answered without a row. */
static int token_state_may_loop(token_mask_table *t, int32_t x)
{
    const dpda *d = t->d;
    if (!t->may_loop) {
        t->may_loop = calloc((size_t)d->num_states, 1);
        LL_ASSERT(t->may_loop);
    }
    if (t->may_loop[x]) return t->may_loop[x] == 2;
    const int32_t *pre = d->pre + (int64_t)x * d->num_terms;
    uint8_t f = 1;
    for (int32_t c = 0; c < d->num_terms - 1 && f == 1; c++) {
        const dpda_edge *E = &d->edges[pre[c]];
        if (E->kind == DPDA_EXPOSE && E->num_pop <= 1) f = 2;
        else if (E->kind == DPDA_END && E->num_pop == 0 && E->num_push == 0) f = 2;
        else if (E->kind == DPDA_END && E->num_pop == 1 && E->num_push == 1 && d->push_pool[E->push_off] == x) f = 2;
    }
    t->may_loop[x] = f;
    return f == 2;
}

/* The region of the stack [below, top] (top loops at its depth), classified from `top` with
 * the vocabulary's cache; 0 when top does not loop.  Touches only t->probe and
 * t->region_ys, so a classification walk may call it midway. */
static int token_mask_region(token_mask_table *t, int32_t below, int32_t top, token_region_view *out,
                             int32_t *members, int32_t *num_members)
{
    const dpda *d = t->d;
    int32_t C = d->num_terms - 1;
    if (!token_state_may_loop(t, top)) return 0;
    dpda_matcher *s = &t->probe;
    token_mask_reserve_nodes(s);
    s->nodes[0] = (dpda_node){below, -2, DPDA_COUNT_UNKNOWN};
    int loops = 0;
    const int32_t *row = token_region_row(t, top);
    for (int32_t c = 0; c < C && !loops; c++) loops = row[c] == top;
    if (!loops) return 0;
    /* forward search from top (bounded), then keep the states that reach back to top: the
     * strongly connected piece top loops in; edges out of it count as leaving the region */
    int32_t states[TOKEN_REGION_MAX], dist[TOKEN_REGION_MAX], n = 1;
    if (!t->region_local) {
        t->region_local = malloc((size_t)TOKEN_REGION_MAX * (size_t)C * sizeof *t->region_local);
        LL_ASSERT(t->region_local);
    }
    int32_t *local = t->region_local;
    uint64_t succ[TOKEN_REGION_MAX] = {0};   /* local successors of each state, as bits */
    if (!t->rs_mark) {   /* each state's number in `states` (stamped per search) */
        t->rs_mark = calloc((size_t)d->num_states, sizeof *t->rs_mark);
        t->rs_idx = malloc((size_t)d->num_states * sizeof *t->rs_idx);
        LL_ASSERT(t->rs_mark && t->rs_idx);
    }
    uint32_t stamp = ++t->rs_stamp;
    states[0] = top;
    dist[0] = 0;
    t->rs_mark[top] = stamp;
    t->rs_idx[top] = 0;
    for (int32_t i = 0; i < n; i++) {
        row = dist[i] < TOKEN_REGION_DEPTH ? token_region_row(t, states[i]) : NULL;
        int32_t last = -3, last_k = -2;
        for (int32_t c = 0; c < C; c++) {
            int32_t r = row ? row[c] : -2;
            if (r >= 0 && r == last) r = last_k;
            else if (r >= 0) {
                last = r;
                int32_t k = t->rs_mark[r] == stamp ? t->rs_idx[r] : n;
                if (k == n && n < TOKEN_REGION_MAX) {
                    states[n] = r;
                    dist[n] = dist[i] + 1;
                    t->rs_mark[r] = stamp;
                    t->rs_idx[r] = n++;
                }
                r = last_k = k < n ? k : -2;
                if (r >= 0) succ[i] |= 1ull << r;
            }
            local[i * C + c] = r;
        }
    }
    uint8_t back[TOKEN_REGION_MAX] = {0};
    uint64_t back_bits = 1;
    back[0] = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t i = 0; i < n; i++)
            if (!back[i] && (succ[i] & back_bits)) { back[i] = 1; back_bits |= 1ull << i; changed = 1; }
    }
    int32_t ren[TOKEN_REGION_MAX], m = 0;
    for (int32_t i = 0; i < n; i++) ren[i] = back[i] ? m++ : -1;
    for (int32_t i = 0; i < n; i++) {
        if (!back[i]) continue;
        for (int32_t c = 0; c < C; c++) {
            int32_t r = local[i * C + c];
            local[ren[i] * C + c] = r == -1 ? -1 : r >= 0 && back[r] ? ren[r] : -2;
        }
    }
    if (members) {   /* members[k]: the real state numbered k */
        for (int32_t i = 0; i < n; i++)
            if (back[i]) members[ren[i]] = states[i];
        *num_members = m;
    }
    n = m;
    /* the byte table, filled a run of one class at a time, hashed as token_sig_hash does
     * (over its runs of equal entries) on the way */
    if (!t->brun) {   /* runs of bytes with one class: [brun[k], brun[k + 1]) */
        t->brun = malloc(257 * sizeof *t->brun);
        LL_ASSERT(t->brun);
        for (int b = 0; b < 256; b++)
            if (!b || d->class_of[b] != d->class_of[b - 1]) t->brun[t->num_brun++] = b;
        t->brun[t->num_brun] = 256;
    }
    int32_t sig_len = n * 256;
    int32_t *sig = malloc((size_t)sig_len * sizeof *sig);
    LL_ASSERT(sig);
    uint64_t h = 1469598103934665603ull ^ (uint64_t)sig_len;
    int32_t cur = 0, len = 0;
    for (int32_t i = 0; i < n; i++)
        for (int32_t k = 0; k < t->num_brun; k++) {
            int32_t lo = t->brun[k], hi = t->brun[k + 1], v = local[i * C + d->class_of[lo]];
            for (int32_t b = lo; b < hi; b++) sig[i * 256 + b] = v;
            if (len && v != cur) {
                h = (h ^ (uint32_t)cur) * 1099511628211ull;
                h = (h ^ (uint32_t)len) * 1099511628211ull;
                len = 0;
            }
            cur = v;
            len += hi - lo;
        }
    h = (h ^ (uint32_t)cur) * 1099511628211ull;
    h = (h ^ (uint32_t)len) * 1099511628211ull;
    return token_region_get(t, sig, sig_len, h ^ (h >> 29), out);
}

typedef struct token_exit_item {
    const uint8_t *bytes;   /* from the exit */
    int32_t len, u, idx;
} token_exit_item;

static int token_exit_cmp(const void *a, const void *b)
{
    const token_exit_item *x = a, *y = b;
    if (x->u != y->u) return x->u < y->u ? -1 : 1;
    int c = memcmp(x->bytes, y->bytes, (size_t)(x->len < y->len ? x->len : y->len));
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : 1;
}

/* The uncertain tokens of region entry e (exits pu: [2 * num_unc] bytes inside, local state)
 * ordered by (exit state, bytes from the exit): *ord[num_unc] indices into e->unc, *lcp[num_unc]
 * bytes from the exit shared with the previous one, -1 where the exit state changes. */
static void token_region_exit_order(const token_vocab *tv, const token_mask_entry *e, const int32_t *pu,
                                    int32_t **ord, int32_t **lcp)
{
    int32_t n = e->num_unc;
    token_exit_item *it = malloc(((size_t)n + 1) * sizeof *it);
    *ord = malloc(((size_t)n + 1) * sizeof **ord);
    *lcp = malloc(((size_t)n + 1) * sizeof **lcp);
    LL_ASSERT(it && *ord && *lcp);
    for (int32_t k = 0; k < n; k++) {
        int32_t len;
        const uint8_t *b = token_bytes(tv, e->unc[k], &len);
        it[k] = (token_exit_item){b + pu[2 * k], len - pu[2 * k], pu[2 * k + 1], k};
    }
    qsort(it, (size_t)n, sizeof *it, token_exit_cmp);
    for (int32_t k = 0; k < n; k++) {
        (*ord)[k] = it[k].idx;
        int32_t l = -1;
        if (k && it[k].u == it[k - 1].u)
            for (l = 0; l < it[k].len && l < it[k - 1].len && it[k].bytes[l] == it[k - 1].bytes[l];) l++;
        (*lcp)[k] = l;
    }
    free(it);
}

/* a byte table's hash over its runs of equal entries (a state's row is a few runs) */
static uint64_t token_sig_hash(const int32_t *sig, int32_t n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)n;
    for (int32_t i = 0; i < n;) {
        int32_t j = i + 1;
        while (j < n && sig[j] == sig[i]) j++;
        h = (h ^ (uint32_t)sig[i]) * 1099511628211ull;
        h = (h ^ (uint32_t)(j - i)) * 1099511628211ull;
        i = j;
    }
    return h ^ (h >> 29);
}

/* The region with byte table sig[sig_len] (n states x 256: local state, -1 rejected, -2 leaves;
 * state 0 the start; h = token_sig_hash(sig)), from the vocabulary's cache or classified now;
 * takes sig. */
static int token_region_get(token_mask_table *t, int32_t *sig, int32_t sig_len, uint64_t h, token_region_view *out)
{
    token_vocab *tv = (token_vocab *)t->tv;
    pthread_mutex_lock(&tv->region_lock);
    for (int32_t i = 0; i < tv->num_regions; i++) {
        token_region *r = &tv->regions[i];
        if (r->hash == h && r->sig_len == sig_len && memcmp(r->sig, sig, (size_t)sig_len * sizeof *sig) == 0) {
            *out = (token_region_view){r->e.accepted, r->e.unc, r->e.unc_lcp, r->e.num_unc, r->e.num_accepted, r->ref,
                                       i, r->s_max, r->cw, r->cw_lcp, r->num_cw, r->unc_pu, r->use_exits,
                                       r->ex_ord, r->ex_lcp, r->unc_rank, r->ex_cost, r->ex_single, NULL, r->racc};
            pthread_mutex_unlock(&tv->region_lock);
            free(sig);
            return 1;
        }
    }
    pthread_mutex_unlock(&tv->region_lock);
    /* classify: one table lookup per trie node; the local state after every accepted node is
     * kept (ref) so that other walks can settle a subtree they reach in the same state, and
     * every accepted token's started count (steps leaving state 0) is recorded */
    token_mask_entry e = {0};
    e.accepted = calloc((size_t)tv->words, sizeof *e.accepted);
    uint8_t *ref = malloc((size_t)tv->num_nodes + 1);
    int32_t *tok_st = malloc((size_t)tv->size * sizeof *tok_st);   /* accepted, trie order */
    int32_t *cnt = malloc((size_t)tv->size * sizeof *cnt);          /* their started counts */
    LL_ASSERT(e.accepted && ref && tok_st && cnt);
    memset(ref, 0xff, (size_t)tv->num_nodes + 1);
    vec_i32 unc = {0}, cw = {0}, unc_pu = {0};
    int32_t *ys = t->region_ys, *st = t->region_st, s_max = 0;
    ys[0] = 0;
    st[0] = 0;
    for (int32_t i = 0; i < tv->num_nodes;) {
        int32_t dep = tv->node[i].depth;
        int32_t r = sig[ys[dep - 1] * 256 + tv->node[i].byte];
        if (r == -1) { i = tv->node[i].end; continue; }
        if (r == -2) {
            for (int32_t j = i; j < tv->node[i].end; j++)
                for (int32_t k = 0; k < tv->node[j].tok_count; k++) {
                    VEC_PUSH(unc, tv->sorted[tv->node[j].tok_start + k]);
                    VEC_PUSH(unc_pu, dep - 1);
                    VEC_PUSH(unc_pu, ys[dep - 1]);
                    if (st[dep - 1] <= TOKEN_CHAIN_K) VEC_PUSH(cw, tv->sorted[tv->node[j].tok_start + k]);
                }
            i = tv->node[i].end;
            continue;
        }
        ys[dep] = r;
        st[dep] = st[dep - 1] + (ys[dep - 1] == 0);
        if (st[dep] > s_max) s_max = st[dep];
        if (st[dep] > TOKEN_CHAIN_K && st[dep - 1] <= TOKEN_CHAIN_K)   /* every token below: walked */
            for (int32_t q = tv->node[i].tok_start; q < tv->node[tv->node[i].end].tok_start; q++) VEC_PUSH(cw, tv->sorted[q]);
        ref[i] = (uint8_t)r;
        for (int32_t k = 0; k < tv->node[i].tok_count; k++) {
            int32_t tok = tv->sorted[tv->node[i].tok_start + k];
            e.accepted[tok >> 5] |= 1u << (tok & 31);
            cnt[e.num_accepted] = st[dep];
            tok_st[e.num_accepted++] = tok;
        }
        i++;
    }
    /* counting sort of the accepted tokens by started count */
    int32_t *st_off = calloc((size_t)s_max + 2, sizeof *st_off);
    int32_t *by_st = malloc(((size_t)e.num_accepted + 1) * sizeof *by_st);
    uint32_t **bound = calloc((size_t)s_max + 1, sizeof *bound);
    LL_ASSERT(st_off && by_st && bound);
    for (int32_t k = 0; k < e.num_accepted; k++) st_off[cnt[k] + 1]++;
    for (int32_t c = 0; c <= s_max; c++) st_off[c + 1] += st_off[c];
    for (int32_t k = 0; k < e.num_accepted; k++) by_st[st_off[cnt[k]]++] = tok_st[k];
    for (int32_t c = s_max + 1; c > 0; c--) st_off[c] = st_off[c - 1];
    st_off[0] = 0;
    free(cnt);
    free(tok_st);
    e.owns_accepted = 1;
    token_mask_set_unc(tv, &e, &unc);
    token_mask_entry ce = {0};
    token_mask_set_unc(tv, &ce, &cw);
    /* bytes stepped: from the exits grouped by what follows them (token_walk_groups), or the
     * list in trie order (shared prefixes once) */
    int32_t *ex_ord = NULL, *ex_lcp = NULL;
    if (e.num_unc <= TOKEN_GROUP_MAX) token_region_exit_order(tv, &e, unc_pu.p, &ex_ord, &ex_lcp);
    int64_t cost_exit = 0, cost_walk = 0, cost_single = 0;
    for (int32_t k = 0; k < e.num_unc; k++) {
        int32_t len, q = ex_ord ? ex_ord[k] : k;
        token_bytes(tv, e.unc[q], &len);
        cost_single += len - unc_pu.p[2 * q] + 2;
        cost_exit += !ex_ord || ex_lcp[k] < 0 ? len - unc_pu.p[2 * q] + 2 : len - unc_pu.p[2 * q] - ex_lcp[k];
        token_bytes(tv, e.unc[k], &len);
        cost_walk += len - e.unc_lcp[k];
    }
    int use_exits = cost_exit * 2 < cost_walk;
    int32_t *unc_rank = malloc(((size_t)e.num_unc + 1) * sizeof *unc_rank);
    LL_ASSERT(unc_rank);
    for (int32_t k = 0; k < e.num_unc; k++) unc_rank[k] = tv->rank[e.unc[k]];
    if (e.num_accepted < TOKEN_REF_MIN) { free(ref); ref = NULL; }
    uint64_t *racc = calloc(((size_t)tv->num_sorted + 63) / 64 + 1, sizeof *racc);
    LL_ASSERT(racc);
    for (int32_t q = 0; q < tv->num_sorted; q++) {
        int32_t tok = tv->sorted[q];
        if (e.accepted[tok >> 5] & (1u << (tok & 31))) racc[q >> 6] |= 1ull << (q & 63);
    }
    pthread_mutex_lock(&tv->region_lock);
    if (tv->num_regions == tv->cap_regions) {
        tv->cap_regions = tv->cap_regions ? tv->cap_regions * 2 : 64;
        tv->regions = realloc(tv->regions, (size_t)tv->cap_regions * sizeof *tv->regions);
        LL_ASSERT(tv->regions);
    }
    tv->regions[tv->num_regions++] = (token_region){h, sig, sig_len, e, ref, s_max, by_st, st_off, bound,
                                                    ce.unc, ce.unc_lcp, ce.num_unc, unc_pu.p, use_exits,
                                                    ex_ord, ex_lcp, unc_rank, cost_exit, cost_single, racc};
    int32_t idx = tv->num_regions - 1;
    pthread_mutex_unlock(&tv->region_lock);
    *out = (token_region_view){e.accepted, e.unc, e.unc_lcp, e.num_unc, e.num_accepted, ref, idx, s_max,
                               ce.unc, ce.unc_lcp, ce.num_unc, unc_pu.p, use_exits, ex_ord, ex_lcp, unc_rank,
                               cost_exit, cost_single, NULL, racc};
    return 1;
}

/* The accepted tokens of region view v whose started count is at most r (r < v->s_max: a
 * bitmap built once per (region, r) and kept in the vocabulary's cache); *num: how many. */
static const uint32_t *token_region_bounded(token_mask_table *t, const token_region_view *v, int32_t r, int32_t *num)
{
    token_vocab *tv = (token_vocab *)t->tv;
    if (r >= v->s_max) { *num = v->num_accepted; return v->accepted; }
    pthread_mutex_lock(&tv->region_lock);
    token_region *g = &tv->regions[v->region];
    int32_t le = g->st_off[r + 1];
    *num = le;
    if (!g->bound[r]) {
        uint32_t *m = malloc((size_t)tv->words * sizeof *m);
        LL_ASSERT(m);
        if (le * 2 <= g->e.num_accepted) {
            memset(m, 0, (size_t)tv->words * sizeof *m);
            for (int32_t k = 0; k < le; k++) m[g->by_st[k] >> 5] |= 1u << (g->by_st[k] & 31);
        } else {
            memcpy(m, g->e.accepted, (size_t)tv->words * sizeof *m);
            for (int32_t k = le; k < g->e.num_accepted; k++) m[g->by_st[k] >> 5] &= ~(1u << (g->by_st[k] & 31));
        }
        g->bound[r] = m;
    }
    const uint32_t *m = g->bound[r];
    pthread_mutex_unlock(&tv->region_lock);
    return m;
}

/* The region view that [below, top] lies in, for skipping subtrees (index into t->views;
 * *idx: top's number in it, 0 when top is the looping state the region starts from), -1 when
 * top loops in no region with per-node states seen so far; cached per table.  Computing a
 * region from a looping state also records its other states (inside an escape, between the
 * bytes of a UTF-8 character), so a walk that reaches a node in one of them can skip too. */
static int32_t token_mask_region_view(token_mask_table *t, int32_t below, int32_t top, int32_t *idx)
{
    uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)top;
    int32_t v = token_hash_find(t->rv_keys, t->rv_vals, t->rv_cap, key);
    if (v == -3) {
        if (!t->view_member) {
            t->view_member = calloc((size_t)t->d->num_states, 1);
            LL_ASSERT(t->view_member);
        }
        token_region_view rv;
        int32_t members[TOKEN_REGION_MAX], nm = 0;
        v = -1;
        if (token_mask_region(t, below, top, &rv, members, &nm) && rv.ref) {
            rv.members = malloc(TOKEN_REGION_MAX * sizeof *rv.members);
            LL_ASSERT(rv.members);
            memcpy(rv.members, members, (size_t)nm * sizeof *members);
            VEC_PUSH(t->views, rv);
            v = (int32_t)(t->views.n - 1) << 6;
            for (int32_t k = 1; k < nm; k++) {   /* never overrides another region's entry */
                uint64_t mk = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)members[k];
                t->view_member[members[k]] = 1;
                int32_t *slot = token_hash_slot(t->rv_keys, t->rv_vals, t->rv_cap, mk);
                if (slot && *slot < 0) *slot = v | k;
                else if (!slot) token_hash_put(&t->rv_keys, &t->rv_vals, &t->rv_cap, t->rv_num++, mk, v | k);
            }
        }
        token_hash_put(&t->rv_keys, &t->rv_vals, &t->rv_cap, t->rv_num++, key, v);
    }
    if (v < 0) return -1;
    *idx = v & 63;
    return v >> 6;
}

/* Whether token_mask_region_view may find x in a region (for some below): x may loop, or a
 * region computed so far holds it as an inner state; when not, a walk asks no hash table. */
static int token_state_in_view(token_mask_table *t, int32_t x)
{
    return token_state_may_loop(t, x) || (t->view_member && t->view_member[x]);
}

/* ---- bounded chains: positions of a length-bounded piece (a string with maxLength) ----
 * Every position of `"` char{lo,hi} `"` is its own state (k characters read), so none loops
 * and each would walk the whole trie.  Seen from position k with r = hi - k characters left,
 * the piece is the unbounded loop U ("char*", a region) cut after r characters: a token that
 * stays inside U is accepted iff the characters it starts are at most r, and every other token
 * either fails in U (rejected here too) or leaves U (walked on the real stack, which knows lo
 * and what follows).  U is not given: it is guessed from x's first character (x paired with
 * x's successor y1 = the target of most bytes, so the same step from both converging on one
 * state is an exit) and then checked state by state against the real automaton (below).
 * Labels (u, r) of every checked state are kept, so a chain is analysed once, not per
 * position. */

#define TOKEN_CHAIN_U 48        /* states of U */
#define TOKEN_CHAIN_TRIES 8     /* U refinements (a step U rejects that the chain allows) */

/* Checks that the states reachable from x inside U are U cut after a fixed count: labels
 * every one (u, s: characters started since x), s <= cap.  For each labelled (y, u, s) and
 * class c: U rejects -> y rejects; U moves to u' -> y moves locally to a state labelled
 * (u', s') with s' = s + (u == 0) while s' <= r_x, and y rejects once s' > r_x, where r_x is
 * the largest s labelled.  A step U rejects that y allows is made an exit of U (return 0:
 * retry); any other mismatch returns -1.  1: checked, *r_x set, *capped when some state past
 * cap was not explored or the piece loops after its bounded part (r_x is then a lower bound). */
static int token_chain_check(token_mask_table *t, int32_t x, int32_t *U, int32_t cap, int32_t *r_x, int *capped,
                             int32_t *loop)
{
    const dpda *d = t->d;
    int32_t C = d->num_terms - 1;
    t->chain_q.n = 0;
    t->chain_l.n = 0;
    uint32_t stamp = ++t->chain_stamp;
    token_chain_label x0 = {0, 0, 0};
    VEC_PUSH(t->chain_q, x);
    VEC_PUSH(t->chain_l, x0);
    t->cs_mark[x] = stamp;
    t->cs_idx[x] = 0;
    int32_t max_s = 0, min_rej = INT32_MAX;
    int multi = 0;
    *capped = 0;
    *loop = -1;
    for (int64_t q = 0; q < t->chain_q.n; q++) {
        int32_t y = t->chain_q.p[q], u = t->chain_l.p[q].u, sy = t->chain_l.p[q].r;
        for (int32_t c = 0; c < C; c++) {
            int32_t ue = U[u * C + c];
            if (ue == -2) continue;
            int32_t o = token_region_step(t, y, c);
            if (ue == -1) {
                if (o != -1) { U[u * C + c] = -2; return 0; }
                continue;
            }
            int32_t s2 = sy + (u == 0);
            if (s2 > cap) { if (o != -1) *capped = 1; continue; }
            if (o == -1) { if (s2 < min_rej) min_rej = s2; continue; }
            if (o == -2) { U[u * C + c] = -2; return 0; }
            if (t->cs_mark[o] == stamp) {
                const token_chain_label *l = &t->chain_l.p[t->cs_idx[o]];
                if (l->u != ue) return -1;
                if (l->r != s2 && !multi) { multi = 1; *loop = o; }   /* a loop after the bounded part */
                continue;
            }
            t->cs_mark[o] = stamp;
            t->cs_idx[o] = (int32_t)t->chain_q.n;
            token_chain_label l = {0, ue, s2};
            VEC_PUSH(t->chain_q, o);
            VEC_PUSH(t->chain_l, l);
            if (s2 > max_s) max_s = s2;
        }
    }
    if (multi) {
        /* a state reached with two counts: sound only when nothing is cut anywhere (the piece
         * ends in a loop); its first label has the smallest count and its states below were
         * checked at least cap - s deep, so r >= cap - s */
        if (min_rej != INT32_MAX) return -1;
        *capped = 1;
        *r_x = cap;
        return 1;
    }
    if (min_rej <= max_s) return -1;
    *r_x = max_s;
    return 1;
}

/* U's byte table in the region cache's form: states numbered in breadth-first order from 0
 * over classes, those that cannot return to 0 dropped (steps into them leave). */
static int32_t *token_chain_sig(const dpda *d, const int32_t *U, int32_t nu, int32_t *sig_len)
{
    int32_t C = d->num_terms - 1;
    uint8_t back[TOKEN_CHAIN_U] = {0};
    back[0] = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t i = 0; i < nu; i++)
            for (int32_t c = 0; c < C && !back[i]; c++)
                if (U[i * C + c] >= 0 && back[U[i * C + c]]) { back[i] = 1; changed = 1; }
    }
    int32_t ren[TOKEN_CHAIN_U], order[TOKEN_CHAIN_U], n = 1;
    for (int32_t i = 0; i < nu; i++) ren[i] = -1;
    ren[0] = 0;
    order[0] = 0;
    for (int32_t k = 0; k < n; k++)
        for (int32_t c = 0; c < C; c++) {
            int32_t v = U[order[k] * C + c];
            if (v >= 0 && back[v] && ren[v] < 0) { ren[v] = n; order[n++] = v; }
        }
    int32_t *sig = malloc((size_t)n * 256 * sizeof *sig);
    LL_ASSERT(sig);
    for (int32_t k = 0; k < n; k++)
        for (int b = 0; b < 256; b++) {
            int32_t v = U[order[k] * C + d->class_of[b]];
            sig[k * 256 + b] = v == -1 ? -1 : v >= 0 && back[v] ? ren[v] : -2;
        }
    *sig_len = n * 256;
    return sig;
}

/* A piece that loops after its bounded part (minLength without maxLength) is taken only when
 * that loop is U itself (its region has U's byte table): otherwise U is some other structure
 * (a declared key's prefix beside "any string") that only happens to pass the check. */
static int token_chain_same_loop(token_mask_table *t, int32_t below, int32_t loop, const int32_t *U, int32_t nu)
{
    token_region_view lv;
    int32_t n, sig_len;
    if (!token_mask_region(t, below, loop, &lv, NULL, &n)) return 0;
    int32_t *sig = token_chain_sig(t->d, U, nu, &sig_len);
    token_vocab *tv = (token_vocab *)t->tv;
    pthread_mutex_lock(&tv->region_lock);
    const token_region *g = &tv->regions[lv.region];
    int same = g->sig_len == sig_len && memcmp(g->sig, sig, (size_t)sig_len * sizeof *sig) == 0;
    pthread_mutex_unlock(&tv->region_lock);
    free(sig);
    return same;
}

/* U[nu x C] = the loop's own region (its states as token_mask_region numbers them); 0 when
 * `loop` does not loop. */
static int token_chain_u_from_loop(token_mask_table *t, int32_t below, int32_t loop, int32_t *U, int32_t *nu)
{
    const dpda *d = t->d;
    int32_t C = d->num_terms - 1;
    token_region_view lv;
    int32_t members[TOKEN_REGION_MAX], nm = 0;
    if (!token_mask_region(t, below, loop, &lv, members, &nm) || nm > TOKEN_CHAIN_U) return 0;
    for (int32_t k = 0; k < nm; k++)
        for (int32_t c = 0; c < C; c++) {
            int32_t o = token_region_step(t, members[k], c), v = o == -1 ? -1 : -2;
            for (int32_t j = 0; o >= 0 && j < nm; j++)
                if (members[j] == o) v = j;
            U[k * C + c] = v;
        }
    *nu = nm;
    return 1;
}

/* characters a bounded position counts (more are walked: token_region.cw) */
static int32_t token_chain_k(const token_region_view *v)
{
    return v->s_max < TOKEN_CHAIN_K ? v->s_max : TOKEN_CHAIN_K;
}

static void token_chain_put(token_mask_table *t, int32_t below, int32_t y, token_chain_label l)
{
    uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)y;
    int32_t v = token_hash_find(t->cl_keys, t->cl_vals, t->cl_cap, key);
    if (v >= 0) { t->labels.p[v] = l; return; }
    VEC_PUSH(t->labels, l);
    token_hash_put(&t->cl_keys, &t->cl_vals, &t->cl_cap, t->labels.n - 1, key, (int32_t)t->labels.n - 1);
}

/* The chain label of [below, x] (analysed now if needed); NULL when x is not a position of a
 * bounded chain usable from its start state (u == 0, r known well enough). */
static const token_chain_label *token_mask_chain(token_mask_table *t, int32_t below, int32_t x)
{
    const dpda *d = t->d;
    int32_t C = d->num_terms - 1;
    uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)x;
    int32_t li = token_hash_find(t->cl_keys, t->cl_vals, t->cl_cap, key);
    if (li >= 0) {
        const token_chain_label *l = &t->labels.p[li];
        if (l->view < 0 || l->u != 0) return NULL;
        if (l->r < INT32_MAX / 2) return l;   /* exact */
        if (l->r - INT32_MAX / 2 >= token_chain_k(&t->views.p[l->view])) return l;
        /* a lower bound too small to use: analyse again from x */
    }
    dpda_matcher *s = &t->probe;
    token_mask_reserve_nodes(s);
    s->nodes[0] = (dpda_node){below, -2, DPDA_COUNT_UNKNOWN};
    if (!t->cs_mark) {
        t->cs_mark = calloc((size_t)d->num_states, sizeof *t->cs_mark);
        t->cs_idx = malloc((size_t)d->num_states * sizeof *t->cs_idx);
        LL_ASSERT(t->cs_mark && t->cs_idx);
    }
    token_chain_label fail = {-1, 0, 0};
    if (!t->cls_bytes) {   /* bytes of each class */
        t->cls_bytes = calloc((size_t)C + 1, sizeof *t->cls_bytes);
        LL_ASSERT(t->cls_bytes);
        for (int b = 0; b < 256; b++) t->cls_bytes[d->class_of[b]]++;
    }
    const int32_t *nbytes = t->cls_bytes;
    const int32_t *tgt = token_region_row(t, x);
    int32_t moving = 0;   /* bytes that step to another state at x's depth: y1 needs 4 (below) */
    for (int32_t c = 0; c < C; c++)
        if (tgt[c] >= 0 && tgt[c] != x) moving += nbytes[c];
    if (moving < 4) return NULL;   /* no label kept: this test is cheaper than a lookup */
    /* y1: the local target of most bytes (the state after one ordinary character) */
    int32_t y1 = -1, best = 0;
    VEC(token_chain_label) cnt = {0};   /* (u: target state, r: bytes leading to it) */
    for (int32_t c = 0; c < C; c++) {
        if (tgt[c] < 0 || tgt[c] == x) continue;
        int64_t k = 0;
        while (k < cnt.n && cnt.p[k].u != tgt[c]) k++;
        if (k == cnt.n) { token_chain_label l = {0, tgt[c], 0}; VEC_PUSH(cnt, l); }
        cnt.p[k].r += nbytes[c];
    }
    for (int64_t k = 0; k < cnt.n; k++)
        if (cnt.p[k].r > best) { best = cnt.p[k].r; y1 = cnt.p[k].u; }
    VEC_FREE(cnt);
    /* a bounded position's next position does not loop; a y1 that does is the loop after a
     * string's last bounded position or after a declared key's first byte ("any string"
     * beside declared keys): the trie walk settles it from the loop's region */
    int loops = 0;
    for (int32_t c = 0; c < C && y1 >= 0 && !loops; c++) loops = token_region_step(t, y1, c) == y1;
    if (y1 < 0 || best < 4 || loops) { token_chain_put(t, below, x, fail); return NULL; }
    /* guess U: x's first character, paired with y1's */
    int32_t us[TOKEN_CHAIN_U], pr[TOKEN_CHAIN_U], nu = 1, y2 = -3;
    int32_t *U = malloc((size_t)TOKEN_CHAIN_U * (size_t)C * sizeof *U);
    LL_ASSERT(U);
    us[0] = x;
    pr[0] = y1;
    int ok = 1;
    for (int32_t i = 0; i < nu && ok; i++) {
        for (int32_t c = 0; c < C && ok; c++) {
            int32_t oa = token_region_step(t, us[i], c);
            int32_t ob = pr[i] >= 0 ? token_region_step(t, pr[i], c) : -3;
            int32_t ue;
            if (oa == -1) ue = ob == -1 || ob == -3 ? -1 : -2;
            else if (oa == -2 || oa == x || ob == -2) ue = -2;
            else if (oa == y1) {
                ue = 0;
                if (ob >= 0) { if (y2 == -3) y2 = ob; else if (ob != y2) ue = -2; }
            } else if (ob == oa) ue = -2;   /* both steps converge: leaves the piece */
            else {
                int32_t k = 1;
                while (k < nu && us[k] != oa) k++;
                if (k == nu) {
                    if (nu == TOKEN_CHAIN_U) { ok = 0; break; }
                    us[nu] = oa;
                    pr[nu] = ob >= 0 ? ob : -1;
                    nu++;
                }
                ue = k;
            }
            U[i * C + c] = ue;
        }
    }
    const token_chain_label *res = NULL;
    if (ok) {
        /* check cheaply first (flips show up near x), then against the region's s_max */
        int32_t r_x = 0, rc = 0, capped = 0, tries = 0, loop = -1;
        while (tries++ < TOKEN_CHAIN_TRIES && (rc = token_chain_check(t, x, U, 8, &r_x, &capped, &loop)) == 0) {}
        token_region_view rv;
        int32_t vi = -1;
        if (rc == 1 && loop >= 0 && !token_chain_same_loop(t, below, loop, U, nu)) {
            /* the bounded part merges into the loop (a character started before minLength may
             * end in the loop's own states): take U from the loop and check again */
            rc = token_chain_u_from_loop(t, below, loop, U, &nu) ? 0 : -1;
            for (tries = 0; rc == 0 && tries++ < TOKEN_CHAIN_TRIES;) rc = token_chain_check(t, x, U, 8, &r_x, &capped, &loop);
            if (rc == 1 && loop >= 0 && !token_chain_same_loop(t, below, loop, U, nu)) rc = -1;
        }
        while (rc == 1) {
            int32_t sig_len;
            int32_t *sig = token_chain_sig(d, U, nu, &sig_len);
            token_region_get(t, sig, sig_len, token_sig_hash(sig, sig_len), &rv);
            int32_t cap = 2 * token_chain_k(&rv) + 1;   /* labels usable for k + 1 positions */
            rc = token_chain_check(t, x, U, cap, &r_x, &capped, &loop);
            if (rc == 1 && loop >= 0 && !token_chain_same_loop(t, below, loop, U, nu)) rc = -1;
            if (rc == 1) {
                VEC_PUSH(t->views, rv);
                vi = (int32_t)t->views.n - 1;
                break;
            }
            if (rc == 0) rc = tries++ < TOKEN_CHAIN_TRIES ? 1 : -1;   /* U changed: again */
        }
        if (vi >= 0) {
            /* label every checked state: r exact, or a lower bound (marked by + INT32_MAX / 2) */
            for (int64_t q = 0; q < t->chain_q.n; q++) {
                token_chain_label l = {vi, t->chain_l.p[q].u, r_x - t->chain_l.p[q].r};
                if (capped) l.r += INT32_MAX / 2;
                token_chain_put(t, below, t->chain_q.p[q], l);
            }
            li = token_hash_find(t->cl_keys, t->cl_vals, t->cl_cap, key);
            const token_chain_label *l = &t->labels.p[li];
            if (!capped || l->r - INT32_MAX / 2 >= token_chain_k(&rv)) res = l;
        }
    }
    free(U);
    if (!res) token_chain_put(t, below, x, fail);
    return res;
}

/* Walks a token list (trie order; lcp[k] = common prefix with token k - 1) from node `top`
 * of m's arena: shared prefixes are stepped once and a failed prefix settles every token that
 * extends it.  Every token starts with the same d0 bytes, already stepped (top is the node
 * after them; lcp[0] is taken as d0).  Accepted tokens go to `mask` (bits) or `acc` (ids);
 * tokens whose walk pops below a partial stack (-2) go to `unc`.  Returns the number accepted.
 * m's arena is restored; tops/marks are written from d0 on. */
static int32_t token_walk(const dpda *d, const token_vocab *tv, dpda_matcher *m, int32_t top, int32_t d0,
                          const int32_t *toks, const int32_t *lcp, int32_t n, int32_t *tops, int32_t *marks,
                          uint32_t *mask, vec_i32 *acc, vec_i32 *unc)
{
    int32_t base = m->num_nodes, count = 0;
    tops[d0] = top;
    marks[d0] = base;
    int32_t valid = d0, fail_at = INT32_MAX, fail_kind = -1;
    for (int32_t k = 0; k < n; k++) {
        int32_t tok = toks[k], len;
        const uint8_t *b = token_bytes(tv, tok, &len);
        int32_t l = k ? lcp[k] : d0;
        if (l > fail_at) {   /* extends a prefix that failed */
            if (fail_kind == -2 && unc) VEC_PUSH(*unc, tok);
            continue;
        }
        int32_t j = l < valid ? l : valid;
        fail_at = INT32_MAX;
        for (; j < len; j++) {
            m->num_nodes = marks[j];
            int32_t r = dpda_step(d, m, tops[j], d->class_of[b[j]]);
            if (r < 0) { fail_kind = r; break; }
            tops[j + 1] = r;
            marks[j + 1] = m->num_nodes;
        }
        valid = j;
        if (j < len) {
            fail_at = j;
            if (fail_kind == -2 && unc) VEC_PUSH(*unc, tok);
            continue;
        }
        if (mask) mask[tok >> 5] |= 1u << (tok & 31);
        if (acc) VEC_PUSH(*acc, tok);
        count++;
    }
    m->num_nodes = base;
    return count;
}

static void token_mask_set_unc(const token_vocab *tv, token_mask_entry *e, vec_i32 *unc)
{
    e->num_unc = (int32_t)unc->n;
    e->unc = unc->p ? unc->p : malloc(sizeof(int32_t));
    e->unc_lcp = malloc(((size_t)unc->n + 1) * sizeof *e->unc_lcp);
    LL_ASSERT(e->unc && e->unc_lcp);
    for (int64_t k = 0; k < unc->n; k++) e->unc_lcp[k] = k ? token_lcp(tv, unc->p[k - 1], unc->p[k]) : 0;
}

/* token_mask_set_unc for a list unc that is a subsequence of list[n] (trie order, lcp[k]: common
 * prefix with list[k - 1]): in sorted order the common prefix of two entries is the least of
 * the adjacent ones between them, so no token's bytes are read. */
static void token_mask_set_unc_sub(token_mask_entry *e, vec_i32 *unc, const int32_t *list, const int32_t *lcp, int32_t n)
{
    e->num_unc = (int32_t)unc->n;
    e->unc = unc->p ? unc->p : malloc(sizeof(int32_t));
    e->unc_lcp = malloc(((size_t)unc->n + 1) * sizeof *e->unc_lcp);
    LL_ASSERT(e->unc && e->unc_lcp);
    int32_t j = -1;
    for (int64_t k = 0; k < unc->n; k++) {
        int32_t m = INT32_MAX;
        do {
            j++;
            LL_ASSERT(j < n);
            if (lcp[j] < m) m = lcp[j];
        } while (list[j] != unc->p[k]);
        e->unc_lcp[k] = k ? m : 0;
    }
}

/* first index k in the view's uncertain list with rank(unc[k]) >= lo */
static int32_t token_view_lower(const token_region_view *v, int32_t lo)
{
    int32_t a = 0, b = v->num_unc;
    while (a < b) {
        int32_t mid = (a + b) / 2;
        if (v->unc_rank[mid] < lo) a = mid + 1; else b = mid;
    }
    return a;
}

/* Region view v's uncertain tokens [a, b) walked from where they leave the region: the token
 * with exit (p, u) is, after its first p bytes, at local state u, i.e. at a node (members[u],
 * parent) of m's arena (steps inside the region keep the depth), so only its bytes from p on
 * are stepped.  Accepted go to acc, those popping below a partial stack to unc.  m's arena is
 * restored. */
static int32_t token_walk_exits(const dpda *d, const token_vocab *tv, dpda_matcher *m, int32_t parent,
                                const int32_t *members, const token_region_view *v, int32_t a, int32_t b,
                                vec_i32 *acc, vec_i32 *unc)
{
    int32_t base = m->num_nodes, count = 0;
    for (int32_t k = a; k < b; k++) {
        int32_t tok = v->unc[k], len, p = v->unc_pu[2 * k], u = v->unc_pu[2 * k + 1];
        const uint8_t *bytes = token_bytes(tv, tok, &len);
        m->num_nodes = base;
        if (m->num_nodes == m->cap_nodes) {
            m->cap_nodes *= 2;
            m->nodes = realloc(m->nodes, (size_t)m->cap_nodes * sizeof *m->nodes);
            LL_ASSERT(m->nodes);
        }
        int32_t top = m->num_nodes;
        m->nodes[m->num_nodes++] = (dpda_node){members[u], parent, DPDA_COUNT_UNKNOWN};
        for (int32_t j = p; j < len && top >= 0; j++) top = dpda_step(d, m, top, d->class_of[bytes[j]]);
        if (top >= 0) { VEC_PUSH(*acc, tok); count++; }
        else if (top == -2 && unc) VEC_PUSH(*unc, tok);
    }
    m->num_nodes = base;
    return count;
}

/* Every uncertain token of region view v walked from where it leaves the region, as
 * token_walk_exits does, but in ex_ord order: tokens with the same exit state and the same bytes
 * from the exit on share their steps, and a prefix that fails settles all that extend it (most
 * exits of a string are its closing quote followed by a few bytes).  out[k] (k: index in
 * v->unc) = 1 accepted, 0 rejected, 2 pops below a partial stack.  m's arena is restored;
 * tops/marks are overwritten. */
static void token_walk_groups(const dpda *d, const token_vocab *tv, dpda_matcher *m, int32_t parent,
                              const int32_t *members, const token_region_view *v, int32_t *tops, int32_t *marks,
                              uint8_t *out)
{
    int32_t base = m->num_nodes, valid = 0, fail_at = INT32_MAX;
    uint8_t fail_out = 0;
    for (int32_t k = 0; k < v->num_unc; k++) {
        int32_t q = v->ex_ord[k], len, p = v->unc_pu[2 * q], l = v->ex_lcp[k];
        const uint8_t *b = token_bytes(tv, v->unc[q], &len) + p;
        len -= p;
        if (l < 0) {   /* another exit state: start over from it */
            m->num_nodes = base;
            if (m->num_nodes == m->cap_nodes) {
                m->cap_nodes *= 2;
                m->nodes = realloc(m->nodes, (size_t)m->cap_nodes * sizeof *m->nodes);
                LL_ASSERT(m->nodes);
            }
            tops[0] = m->num_nodes;
            m->nodes[m->num_nodes++] = (dpda_node){members[v->unc_pu[2 * q + 1]], parent, DPDA_COUNT_UNKNOWN};
            marks[0] = m->num_nodes;
            valid = 0;
            fail_at = INT32_MAX;
            l = 0;
        }
        if (l > fail_at) { out[q] = fail_out; continue; }   /* extends a prefix that failed */
        int32_t j = l < valid ? l : valid, r = 0;
        fail_at = INT32_MAX;
        for (; j < len; j++) {
            m->num_nodes = marks[j];
            r = dpda_step(d, m, tops[j], d->class_of[b[j]]);
            if (r < 0) break;
            tops[j + 1] = r;
            marks[j + 1] = m->num_nodes;
        }
        valid = j;
        if (j < len) {
            fail_at = j;
            fail_out = r == -2 ? 2 : 0;
            out[q] = fail_out;
        } else {
            out[q] = 1;
        }
    }
    m->num_nodes = base;
}

static int token_mask_group_done(const token_mask_table *t, int32_t vi, int32_t parent)
{
    for (int64_t k = 0; k < t->gmemo.n; k++)
        if (t->gmemo.p[k].view == vi && t->gmemo.p[k].parent == parent) return 1;
    return 0;
}

/* Region view vi's uncertain tokens walked by token_walk_groups over arena node `parent` of s,
 * one of the nodes the classification walk started from (so the result holds for all of the
 * walk), computed once per walk: outcomes indexed as v->unc. */
static const uint8_t *token_mask_group_outcomes(token_mask_table *t, dpda_matcher *s, int32_t vi, int32_t parent,
                                               const int32_t *members)
{
    for (int64_t k = 0; k < t->gmemo.n; k++)
        if (t->gmemo.p[k].view == vi && t->gmemo.p[k].parent == parent) return t->gout.p + t->gmemo.p[k].off;
    const token_region_view *v = &t->views.p[vi];
    int64_t off = t->gout.n;
    VEC_RESERVE(t->gout, off + v->num_unc);
    t->gout.n = off + v->num_unc;
    token_walk_groups(t->d, t->tv, s, parent, members, v, t->g_tops, t->g_marks, t->gout.p + off);
    token_group_memo gm = {vi, parent, off};
    VEC_PUSH(t->gmemo, gm);
    return t->gout.p + off;
}

/* token_walk_exits of region view v's uncertain tokens [a, b) over `parent`, one of the
 * classification walk's fixed start nodes, with each outcome memoised for the walk by (parent,
 * exit state, bytes from the exit on): the tokens that leave a string region are mostly its
 * closing quote followed by a few common bytes (`":`, `",`, `"}`), so the skips of one walk
 * (keys beside declared keys: a few hundred) share a few dozen distinct walks. */
static void token_mask_exits_memo(token_mask_table *t, dpda_matcher *s, int32_t parent, const int32_t *members,
                                  const token_region_view *v, int32_t a, int32_t b, vec_i32 *unc)
{
    const token_vocab *tv = t->tv;
    const dpda *d = t->d;
    int32_t base = s->num_nodes;
    if (!t->xmemo) {   /* on first use: a table whose walks settle no region leaves pays nothing */
        t->xmemo = calloc(TOKEN_XMEMO, sizeof *t->xmemo);
        LL_ASSERT(t->xmemo);
    }
    for (int32_t k = a; k < b; k++) {
        int32_t tok = v->unc[k], len, p = v->unc_pu[2 * k], x = members[v->unc_pu[2 * k + 1]];
        const uint8_t *bytes = token_bytes(tv, tok, &len);
        uint64_t h = 1469598103934665603ull ^ ((uint64_t)(uint32_t)parent << 32 | (uint32_t)x);
        for (int32_t j = p; j < len; j++) h = (h ^ bytes[j]) * 1099511628211ull;
        token_exit_memo *me = &t->xmemo[(h ^ h >> 29) & (TOKEN_XMEMO - 1)];
        int32_t rl;
        const uint8_t *rb = me->walk == t->walk_id ? token_bytes(tv, me->tok, &rl) : NULL;
        uint8_t out;
        if (rb && me->parent == parent && me->state == x && rl - me->p == len - p &&
            !memcmp(rb + me->p, bytes + p, (size_t)(len - p))) {
            out = me->out;
        } else {
            s->num_nodes = base;
            if (s->num_nodes == s->cap_nodes) {
                s->cap_nodes *= 2;
                s->nodes = realloc(s->nodes, (size_t)s->cap_nodes * sizeof *s->nodes);
                LL_ASSERT(s->nodes);
            }
            int32_t top = s->num_nodes;
            s->nodes[s->num_nodes++] = (dpda_node){x, parent, DPDA_COUNT_UNKNOWN};
            for (int32_t j = p; j < len && top >= 0; j++) top = dpda_step(d, s, top, d->class_of[bytes[j]]);
            out = top >= 0 ? 1 : top == -2 ? 2 : 0;
            *me = (token_exit_memo){t->walk_id, parent, x, tok, p, out};
        }
        if (out == 1) VEC_PUSH(t->acc, tok);
        else if (out == 2 && unc) VEC_PUSH(*unc, tok);
    }
    s->num_nodes = base;
}

static void token_mask_settle(token_mask_table *t, dpda_matcher *s, int32_t vi, int32_t lo, int32_t hi,
                              int32_t parent, int32_t r, int32_t dep, vec_i32 *unc);

/* The walk reached trie node i (depth dep) at arena node r; when r's state loops on the state
 * below it and the region's own walk is in that same state at node i, every token under i
 * behaves as in the region's walk: the accepted ones are the region's (recorded as a skip),
 * those that leave the region are walked here on the real partial stack.  Returns 1 when the
 * subtree was settled. */
static int token_mask_try_skip(token_mask_table *t, dpda_matcher *s, int32_t i, int32_t dep, int32_t r, vec_i32 *unc)
{
    const token_vocab *tv = t->tv;
    int32_t lo = tv->node[i + 1].tok_start, hi = tv->node[tv->node[i].end].tok_start;
    if (hi - lo < 4) return 0;   /* small subtrees are walked */
    int32_t parent = s->nodes[r].parent;
    if (parent < 0) return 0;
    /* a region ignores counts: it settles a counted state when no token can reach the bound
     * from there (the partial stack's unknown count: token_mask_fill keeps it far enough; a
     * repetition started inside the walk: count + longest token <= max); the tokens that leave
     * are walked from nodes of unknown count, so an EXIT with a minimum leaves them uncertain */
    int32_t ctr = t->d->state_counter[s->nodes[r].state];
    if (ctr >= 0 && dpda_count_is_known(s->nodes[r].count) &&
        (int64_t)s->nodes[r].count + tv->max_depth > t->d->counter_max[ctr])
        return 0;
    int32_t idx = 0;
    if (!token_state_in_view(t, s->nodes[r].state)) return 0;
    int32_t vi = token_mask_region_view(t, s->nodes[parent].state, s->nodes[r].state, &idx);
    if (vi < 0) return 0;
    const token_region_view *v = &t->views.p[vi];
    if (v->ref[i] != idx) return 0;   /* the region's walk is in the same state at node i */
    token_mask_settle(t, s, vi, lo, hi, parent, r, dep, unc);
    return 1;
}

/* Tokens sorted[lo, hi) settled as in region view vi's walk (a skip): recorded for
 * token_mask_assemble, those that leave the region walked over arena node `parent` (r, dep:
 * the walk's node and depth, for regions walked in trie order: then [lo, hi) is under one
 * node). */
static void token_mask_settle(token_mask_table *t, dpda_matcher *s, int32_t vi, int32_t lo, int32_t hi,
                              int32_t parent, int32_t r, int32_t dep, vec_i32 *unc)
{
    const token_vocab *tv = t->tv;
    const token_region_view *v = &t->views.p[vi];
    token_skip sk = {lo, hi, vi};
    VEC_PUSH(t->skips, sk);
    t->num_skips++;
    int32_t a = token_view_lower(v, lo), b = token_view_lower(v, hi);
    if (b > a && v->use_exits && v->ex_ord && parent < t->walk_fixed &&
        ((int64_t)(b - a) * v->ex_single >= v->ex_cost * v->num_unc || token_mask_group_done(t, vi, parent))) {
        /* the walk's own start nodes: every skip over them shares one grouped walk */
        const uint8_t *o = token_mask_group_outcomes(t, s, vi, parent, v->members);
        for (int32_t k = a; k < b; k++) {
            if (o[k] == 1) VEC_PUSH(t->acc, v->unc[k]);
            else if (o[k] == 2 && unc) VEC_PUSH(*unc, v->unc[k]);
        }
    } else if (b > a && v->use_exits && parent < t->walk_fixed)
        token_mask_exits_memo(t, s, parent, v->members, v, a, b, unc);
    else if (b > a && v->use_exits)
        token_walk_exits(t->d, tv, s, parent, v->members, v, a, b, &t->acc, unc);
    else if (b > a)
        token_walk(t->d, tv, s, r, dep, v->unc + a, v->unc_lcp + a, b - a, t->tops, t->marks, NULL, &t->acc, unc);
}

/* Calls out the places q in [lo, hi) whose bit is set in b (a bitmap over the trie order),
 * word by word: sorted[q] appended to out. */
static void token_rank_collect(const token_vocab *tv, const uint64_t *b, int32_t lo, int32_t hi, vec_i32 *out)
{
    if (lo >= hi) return;
    int32_t w0 = lo >> 6, w1 = (hi - 1) >> 6;
    for (int32_t w = w0; w <= w1; w++) {
        uint64_t x = b[w];
        if (w == w0) x &= ~0ull << (lo & 63);
        if (w == w1 && (hi & 63)) x &= ~0ull >> (64 - (hi & 63));
        while (x) {
            int32_t q = (w << 6) + __builtin_ctzll(x);
            x &= x - 1;
            VEC_PUSH(*out, tv->sorted[q]);
        }
    }
}

/* The accepted set of a classification into e: skipped subtrees as their regions say, plus
 * t->acc.  When one region's subtrees hold most tokens, the set is that region's accepted set
 * with the tokens outside them that nothing accepts removed and the others added: shared with
 * the two lists (e->removed, e->extra) when they are short, else copied and applied; otherwise
 * the skipped ranges are added token by token. */
static void token_mask_assemble(token_mask_table *t, token_mask_entry *e)
{
    const token_vocab *tv = t->tv;
    int32_t best = -1;
    int64_t best_n = 0;
    /* tokens skipped per view (one pass; t->view_n is all zero between calls) */
    if (t->view_n_cap < t->views.n) {
        free(t->view_n);
        t->view_n_cap = t->views.n * 2 + 16;
        t->view_n = calloc((size_t)t->view_n_cap, sizeof *t->view_n);
        LL_ASSERT(t->view_n);
    }
    for (int64_t k = 0; k < t->skips.n; k++) {
        int32_t v = t->skips.p[k].view;
        int64_t n = t->view_n[v] += t->skips.p[k].hi - t->skips.p[k].lo;
        if (n > best_n) { best_n = n; best = v; }
    }
    for (int64_t k = 0; k < t->skips.n; k++) t->view_n[t->skips.p[k].view] = 0;
    e->owns_accepted = 1;
    if (best >= 0 && best_n * 2 > tv->num_sorted) {
        /* the set is base (the best view's) minus `removed` (its tokens outside the best
         * view's subtrees that nothing else accepts) plus `extra` (accepted, not in base):
         * few of either, so base is shared unless they are many */
        const uint32_t *base = t->views.p[best].accepted;
        if (!t->mark) {
            t->mark = calloc((size_t)tv->words, sizeof *t->mark);   /* all clear between calls */
            LL_ASSERT(t->mark);
        }
        vec_i32 extra = {0}, removed = {0};
        t->marked.n = 0;
        for (int64_t k = 0; k < t->skips.n; k++) {
            const token_skip *sk = &t->skips.p[k];
            if (sk->view == best) continue;
            token_rank_collect(tv, t->views.p[sk->view].racc, sk->lo, sk->hi, &t->marked);
        }
        for (int64_t k = 0; k < t->acc.n; k++) VEC_PUSH(t->marked, t->acc.p[k]);
        for (int64_t k = 0; k < t->marked.n; k++) {
            int32_t tok = t->marked.p[k];
            t->mark[tok >> 5] |= 1u << (tok & 31);
            if (!(base[tok >> 5] & (1u << (tok & 31)))) VEC_PUSH(extra, tok);
        }
        int32_t pos = 0;
        const uint64_t *base_r = t->views.p[best].racc;
        t->outside.n = 0;   /* base's tokens outside the best view's subtrees */
        for (int64_t k = 0; k <= t->skips.n; k++) {
            const token_skip *sk = k < t->skips.n ? &t->skips.p[k] : NULL;
            if (sk && sk->view != best) continue;
            token_rank_collect(tv, base_r, pos, sk ? sk->lo : tv->num_sorted, &t->outside);
            if (sk) pos = sk->hi;
        }
        for (int64_t k = 0; k < t->outside.n; k++) {
            int32_t tok = t->outside.p[k];
            if (!(t->mark[tok >> 5] & (1u << (tok & 31)))) VEC_PUSH(removed, tok);
        }
        for (int64_t k = 0; k < t->marked.n; k++) t->mark[t->marked.p[k] >> 5] = 0;
        e->num_accepted = t->views.p[best].num_accepted - (int32_t)removed.n + (int32_t)extra.n;
        if (removed.n + extra.n <= TOKEN_SHARE_MAX) {
            e->accepted = (uint32_t *)base;
            e->owns_accepted = 0;
            e->extra = extra.p;
            e->num_extra = (int32_t)extra.n;
            e->removed = removed.p;
            e->num_removed = (int32_t)removed.n;
            return;
        }
        e->accepted = malloc((size_t)tv->words * sizeof *e->accepted);
        LL_ASSERT(e->accepted);
        memcpy(e->accepted, base, (size_t)tv->words * sizeof *e->accepted);
        for (int64_t k = 0; k < removed.n; k++) e->accepted[removed.p[k] >> 5] &= ~(1u << (removed.p[k] & 31));
        for (int64_t k = 0; k < extra.n; k++) e->accepted[extra.p[k] >> 5] |= 1u << (extra.p[k] & 31);
        VEC_FREE(extra);
        VEC_FREE(removed);
        return;
    }
    /* explicit tokens lie outside every skipped range: the set is the two lists' union */
    t->outside.n = 0;
    for (int64_t k = 0; k < t->skips.n; k++)
        token_rank_collect(tv, t->views.p[t->skips.p[k].view].racc, t->skips.p[k].lo, t->skips.p[k].hi, &t->outside);
    int32_t n = (int32_t)(t->acc.n + t->outside.n);
    e->num_accepted = n;
    if (n <= TOKEN_SPARSE_MAX) {   /* a few tokens: a list, no bitmap (a mask clears and sets them) */
        e->accepted = NULL;
        e->extra = malloc(((size_t)n + 1) * sizeof *e->extra);
        LL_ASSERT(e->extra);
        if (t->outside.n) memcpy(e->extra, t->outside.p, (size_t)t->outside.n * sizeof *e->extra);
        if (t->acc.n) memcpy(e->extra + t->outside.n, t->acc.p, (size_t)t->acc.n * sizeof *e->extra);
        e->num_extra = n;
        return;
    }
    uint32_t *acc = calloc((size_t)tv->words, sizeof *acc);
    LL_ASSERT(acc);
    for (int64_t j = 0; j < t->outside.n; j++) acc[t->outside.p[j] >> 5] |= 1u << (t->outside.p[j] & 31);
    for (int64_t k = 0; k < t->acc.n; k++) acc[t->acc.p[k] >> 5] |= 1u << (t->acc.p[k] & 31);
    e->accepted = acc;
}

/* dpda_step for an END edge E from node `from` of s (pops, then pushes constant states). */
static inline int32_t token_step_end(const dpda *d, dpda_matcher *s, int32_t from, const dpda_edge *E)
{
    int32_t top = from;
    for (int32_t k = 0; k < E->num_pop; k++)
        if ((top = s->nodes[top].parent) < 0) return -2;
    if (s->num_nodes + E->num_push > s->cap_nodes) {
        while (s->num_nodes + E->num_push > s->cap_nodes) s->cap_nodes *= 2;
        s->nodes = realloc(s->nodes, (size_t)s->cap_nodes * sizeof *s->nodes);
        LL_ASSERT(s->nodes);
    }
    for (int32_t k = 0; k < E->num_push; k++) {
        s->nodes[s->num_nodes] = (dpda_node){d->push_pool[E->push_off + k], top, d->push_count[E->push_off + k]};
        top = s->num_nodes++;
    }
    return top;
}

/* One trie walk from the partial stack [below, top] (below < 0: top is the bottom). */
static int32_t token_mask_classify(token_mask_table *t, int32_t below, int32_t top)
{
    const token_vocab *tv = t->tv;
    const dpda *d = t->d;
    dpda_matcher *s = &t->scratch;
    token_mask_reserve_nodes(s);
    /* a partial stack: the bottom node's parent is -2 ("unknown") */
    if (below >= 0) {
        s->nodes[0] = (dpda_node){below, -2, DPDA_COUNT_UNKNOWN};
        s->nodes[1] = (dpda_node){top, 0, DPDA_COUNT_UNKNOWN};
        s->num_nodes = 2;
    } else {
        s->nodes[0] = (dpda_node){top, -2, DPDA_COUNT_UNKNOWN};
        s->num_nodes = 1;
    }
    token_mask_entry e = {0};
    e.owns_accepted = 1;
    token_region_view r;
    const token_chain_label *cl = NULL;
    int32_t bound = 0;
    int32_t members[TOKEN_REGION_MAX], nm = 0;
    int is_region = below >= 0 && token_mask_region(t, below, top, &r, members, &nm);
    /* a region left by very many tokens (a number's digits: every token starting with `,` `}`
     * `]` `.` `e` ..., then a key or a value) would walk them all on [below, top] one by one;
     * the trie walk settles the region's own subtrees from its walk and the rest with runs and
     * skips (`,"` then "any string" beside the declared keys) */
    int walk_region = is_region && r.num_unc > TOKEN_GROUP_MAX;
    if (walk_region) is_region = 0;
    if (below >= 0 && !is_region && !walk_region && (cl = token_mask_chain(t, below, top))) {
        r = t->views.p[cl->view];
        bound = cl->r >= INT32_MAX / 2 ? cl->r - INT32_MAX / 2 : cl->r;
    }
    if (is_region || cl) {
        /* the region's accepted set is shared (a bounded chain's: those that fit in `bound`
         * characters); its uncertain tokens are settled here as far as [below, top] allows */
        if (cl) {
            /* tokens starting at most min(bound, k) characters, from the shared bitmap; those
             * leaving the loop or starting more than k characters walked below */
            t->num_chains++;
            int32_t k = token_chain_k(&r);
            e.accepted = (uint32_t *)token_region_bounded(t, &r, bound < k ? bound : k, &e.num_accepted);
            r.unc = r.cw;
            r.unc_lcp = r.cw_lcp;
            r.num_unc = r.num_cw;
        } else {
            e.accepted = (uint32_t *)r.accepted;
            e.num_accepted = r.num_accepted;
        }
        e.owns_accepted = 0;
        vec_i32 acc = {0}, unc = {0};
        if (!cl && r.use_exits && r.ex_ord) {
            VEC_RESERVE(t->gout, r.num_unc);
            token_walk_groups(d, tv, s, 0, members, &r, t->g_tops, t->g_marks, t->gout.p);
            for (int32_t k = 0; k < r.num_unc; k++) {
                if (t->gout.p[k] == 1) VEC_PUSH(acc, r.unc[k]);
                else if (t->gout.p[k] == 2) VEC_PUSH(unc, r.unc[k]);
            }
            e.num_extra = (int32_t)acc.n;
        } else if (!cl && r.use_exits)
            e.num_extra = token_walk_exits(d, tv, s, 0, members, &r, 0, r.num_unc, &acc, &unc);
        else
            e.num_extra = token_walk(d, tv, s, 1, 0, r.unc, r.unc_lcp, r.num_unc, t->tops, t->marks, NULL, &acc, &unc);
        e.extra = acc.p;
        e.num_accepted += e.num_extra;
        token_mask_set_unc_sub(&e, &unc, r.unc, r.unc_lcp, r.num_unc);
        t->bytes += (acc.n + unc.n) * 8;
        VEC_PUSH(t->entries, e);
        int32_t id = (int32_t)t->entries.n - 1;
        token_mask_put(t, (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)top, id);
        return id;
    }
    if (!t->memo) {   /* allocated on the first walk: creating a table stays cheap */
        t->memo = calloc(TOKEN_MEMO, sizeof *t->memo);
        LL_ASSERT(t->memo);
    }
    vec_i32 unc = {0};
    t->skips.n = 0;
    t->acc.n = 0;
    t->gmemo.n = 0;
    t->gout.n = 0;
    t->walk_fixed = s->num_nodes;
    t->tops[0] = s->num_nodes - 1;
    t->marks[0] = s->num_nodes;
    /* steps by an END edge (most steps inside regular pieces) are read off the edge; the others
     * from a stack [below, x] (EXPOSE chains) are memoised for this walk when they end at
     * the same depth: one lookup instead of an edge walk */
    uint64_t walk = ++t->walk_id;
    /* Runs of siblings: a node whose step (memoised) stays at the partial stack's depth in a
     * state y without a counter, where y's region (walked from exits) is in y's own state, is
     * settled whole by that region, its own tokens included (the region accepts them: its walk
     * is in a state there); consecutive such subtrees of one region are one skip, settled when
     * the run ends.  Keys beside declared keys: every byte that leaves the declared names
     * enters "any string", so a declared prefix's children are a few runs, not one skip (and a
     * walk of every small subtree) each. */
    int32_t run_y = -1, run_vi = -1, run_idx = 0, pend_vi = -1, pend_lo = 0, pend_hi = 0;
    /* First bytes: most are rejected (a value's start, punctuation), and a node per byte is a
     * cache miss each in the big node array; the top's row (token_mask_region computed it from
     * this same partial stack) names the rejected classes, so the root's children are read
     * from tv->root and only the others are stepped. */
    const uint8_t *rej = NULL;
    if (below >= 0) {
        int32_t C = d->num_terms - 1;
        if (!t->root_rej) {
            t->root_rej = malloc((size_t)C + 1);
            LL_ASSERT(t->root_rej);
        }
        token_mask_reserve_nodes(&t->probe);
        t->probe.nodes[0] = (dpda_node){below, -2, DPDA_COUNT_UNKNOWN};
        const int32_t *row = token_region_row(t, top);
        for (int32_t c = 0; c < C; c++) t->root_rej[c] = row[c] == -1;
        rej = t->root_rej;
    }
    int32_t rk = 0;   /* tv->root[rk]: the next root child */
    for (int32_t i = 0; i < tv->num_nodes;) {
        if (rej && i == tv->root[rk]) {
            while (rk < tv->num_root && rej[d->class_of[tv->root_byte[rk]]]) rk++;
            if (rk == tv->num_root) break;
            i = tv->root[rk++];
        }
        int32_t dep = tv->node[i].depth;
        s->num_nodes = t->marks[dep - 1];
        int32_t from = t->tops[dep - 1], cls = d->class_of[tv->node[i].byte], r;
        const dpda_edge *E0 = &d->edges[d->pre[(int64_t)s->nodes[from].state * d->num_terms + cls]];
        if (E0->kind == DPDA_REJECT) {
            r = -1;
        } else if (E0->kind == DPDA_END) {   /* read off the edge, as dpda_step would */
            r = token_step_end(d, s, from, E0);
        } else if (below >= 0 && s->nodes[from].parent == 0 &&
            !(d->state_counter[s->nodes[from].state] >= 0 && dpda_count_is_known(s->nodes[from].count))) {
            int32_t x = s->nodes[from].state;
            uint64_t key = walk << 40 | (uint64_t)(uint32_t)x << 8 | (uint64_t)cls;
            uint64_t h = ((uint64_t)x * 0x9E3779B97F4A7C15ull ^ (uint64_t)cls * 0xC2B2AE3D27D4EB4Full) >> 51;
            token_step_memo *me = &t->memo[h];
            if (me->key == key) {
                int32_t v = me->val;
                if (v >= 0) {
                    r = s->num_nodes;
                    if (s->num_nodes == s->cap_nodes) {
                        s->cap_nodes *= 2;
                        s->nodes = realloc(s->nodes, (size_t)s->cap_nodes * sizeof *s->nodes);
                        LL_ASSERT(s->nodes);
                    }
                    s->nodes[s->num_nodes++] = (dpda_node){v, 0, me->cnt};
                } else {
                    r = v == -1 ? -1 : dpda_step(d, s, from, cls);
                }
            } else {
                r = dpda_step(d, s, from, cls);
                me->key = key;
                me->val = r == -1 ? -1 : r >= 0 && s->nodes[r].parent == 0 ? s->nodes[r].state : -2;
                me->cnt = r >= 0 ? s->nodes[r].count : 0;
            }
        } else {
            r = dpda_step(d, s, from, cls);
        }
        if (r >= 0 && s->nodes[r].parent == 0 && below >= 0 && s->nodes[from].parent == 0 &&
            d->state_counter[s->nodes[r].state] < 0) {
            /* a region is looked up (made, at its first use) only for a subtree try_skip would
             * ask it for; smaller ones join a run of a region already known */
            int32_t y = s->nodes[r].state;
            if (y != run_y && !token_state_in_view(t, y)) {   /* no region: no lookup */
                run_y = y;
                run_vi = -1;
            } else if (y != run_y) {
                uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)y;
                int32_t v = token_hash_find(t->rv_keys, t->rv_vals, t->rv_cap, key);
                if (v == -3 && tv->node[tv->node[i].end].tok_start - tv->node[i + 1].tok_start >= 4) {
                    run_y = y;
                    run_vi = token_mask_region_view(t, below, y, &run_idx);
                } else if (v != -3) {
                    run_y = y;
                    run_vi = v < 0 ? -1 : v >> 6;
                    run_idx = v & 63;
                } else {
                    run_y = -1;
                    run_vi = -1;
                }
            }
            if (run_vi >= 0 && t->views.p[run_vi].use_exits && t->views.p[run_vi].ref[i] == run_idx) {
                int32_t lo = tv->node[i].tok_start, hi = tv->node[tv->node[i].end].tok_start;
                if (pend_vi == run_vi && pend_hi == lo) {
                    pend_hi = hi;
                } else {
                    if (pend_vi >= 0) token_mask_settle(t, s, pend_vi, pend_lo, pend_hi, 0, -1, 0, &unc);
                    pend_vi = run_vi;
                    pend_lo = lo;
                    pend_hi = hi;
                }
                i = tv->node[i].end;
                continue;
            }
        }
        if (r == -1) { i = tv->node[i].end; continue; }
        if (pend_vi >= 0) {
            token_mask_settle(t, s, pend_vi, pend_lo, pend_hi, 0, -1, 0, &unc);
            pend_vi = -1;
        }
        if (r == -2) {
            /* every token of the subtree depends on the stack below */
            int32_t lo = tv->node[i].tok_start, hi = tv->node[tv->node[i].end].tok_start;
            VEC_RESERVE(unc, unc.n + hi - lo);
            for (int32_t q = lo; q < hi; q++) unc.p[unc.n++] = tv->sorted[q];
            i = tv->node[i].end;
            continue;
        }
        t->tops[dep] = r;
        t->marks[dep] = s->num_nodes;
        for (int32_t k = 0; k < tv->node[i].tok_count; k++) VEC_PUSH(t->acc, tv->sorted[tv->node[i].tok_start + k]);
        if (tv->node[i].end > i + 1 && token_mask_try_skip(t, s, i, dep, r, &unc)) {
            i = tv->node[i].end;
            continue;
        }
        i++;
    }
    if (pend_vi >= 0) token_mask_settle(t, s, pend_vi, pend_lo, pend_hi, 0, -1, 0, &unc);
    token_mask_assemble(t, &e);
    token_mask_set_unc(tv, &e, &unc);
    t->bytes += (e.owns_accepted && e.accepted ? (int64_t)tv->words * 4 : 0) + (unc.n + e.num_extra + e.num_removed) * 4 + unc.n * 4;
    VEC_PUSH(t->entries, e);
    int32_t id = (int32_t)t->entries.n - 1;
    token_mask_put(t, (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)top, id);
    return id;
}

/* ---- counters near their bound ----
 * A classification treats the top node's count as unknown (INC checks pass), which is exact
 * while no token can reach the bound: count + (longest token in bytes) <= max, as an iteration
 * starts with a byte.  Closer to max, the mask is computed here on the real stack: at a loop
 * head whose region is known, the region's tokens that start at most max - count iterations
 * (its started counts are the INC steps: every step out of a loop head starts an iteration)
 * from the bitmap shared per (region, bound), plus the tokens that leave the region walked on
 * the real stack; elsewhere one trie walk on the real stack. */
static int32_t token_mask_fill_near_bound(token_mask_table *t, dpda_matcher *m, uint32_t *mask, int32_t below,
                                          int32_t top, int32_t rem)
{
    const token_vocab *tv = t->tv;
    const dpda *d = t->d;
    token_region_view r;
    int32_t nm = 0;
    if (below >= 0 && d->state_head[top] && token_mask_region(t, below, top, &r, NULL, &nm)) {
        int32_t num;
        const uint32_t *acc = token_region_bounded(t, &r, rem, &num);
        memcpy(mask, acc, (size_t)tv->words * sizeof *mask);
        return num + token_walk(d, tv, m, m->top, 0, r.unc, r.unc_lcp, r.num_unc, t->tops, t->marks, mask, NULL, NULL);
    }
    memset(mask, 0, (size_t)tv->words * sizeof *mask);
    int32_t base = m->num_nodes, count = 0;
    t->tops[0] = m->top;
    t->marks[0] = base;
    for (int32_t i = 0; i < tv->num_nodes;) {
        int32_t dep = tv->node[i].depth;
        m->num_nodes = t->marks[dep - 1];
        int32_t x = dpda_step(d, m, t->tops[dep - 1], d->class_of[tv->node[i].byte]);
        if (x < 0) { i = tv->node[i].end; continue; }
        t->tops[dep] = x;
        t->marks[dep] = m->num_nodes;
        for (int32_t k = 0; k < tv->node[i].tok_count; k++) {
            int32_t tok = tv->sorted[tv->node[i].tok_start + k];
            mask[tok >> 5] |= 1u << (tok & 31);
            count++;
        }
        i++;
    }
    m->num_nodes = base;
    return count;
}

int32_t token_mask_fill(token_mask_table *t, dpda_matcher *m, uint32_t *mask)
{
    const token_vocab *tv = t->tv;
    const dpda *d = t->d;
    int32_t top_node = m->top;
    int32_t parent = m->nodes[top_node].parent;
    int32_t below = parent >= 0 ? m->nodes[parent].state : -1, top = m->nodes[top_node].state;
    int32_t ctr = d->state_counter[top];
    if (ctr >= 0 && (int64_t)m->nodes[top_node].count + tv->max_depth > d->counter_max[ctr]) {
        t->num_near_bound++;
        int32_t count = token_mask_fill_near_bound(t, m, mask, below, top, d->counter_max[ctr] - m->nodes[top_node].count);
        if (tv->num_eos && dpda_matcher_is_accepting(m))
            for (int32_t i = 0; i < tv->num_eos; i++) { mask[tv->eos[i] >> 5] |= 1u << (tv->eos[i] & 31); count++; }
        return count;
    }
    uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)top;
    int32_t id = token_mask_find(t, key);
    if (id < 0) id = token_mask_classify(t, below, top);
    const token_mask_entry *e = &t->entries.p[id];
    if (e->accepted) memcpy(mask, e->accepted, (size_t)tv->words * sizeof *mask);
    else memset(mask, 0, (size_t)tv->words * sizeof *mask);
    int32_t count = e->num_accepted;
    for (int32_t k = 0; k < e->num_removed; k++) mask[e->removed[k] >> 5] &= ~(1u << (e->removed[k] & 31));
    for (int32_t k = 0; k < e->num_extra; k++) mask[e->extra[k] >> 5] |= 1u << (e->extra[k] & 31);
    /* uncertain tokens on the real stack */
    count += token_walk(d, tv, m, m->top, 0, e->unc, e->unc_lcp, e->num_unc, t->tops, t->marks, mask, NULL, NULL);
    if (tv->num_eos) {
        int acc = dpda_matcher_is_accepting(m);
        for (int32_t i = 0; i < tv->num_eos; i++) {
            int32_t tok = tv->eos[i];
            if (acc) { mask[tok >> 5] |= 1u << (tok & 31); count++; }
        }
    }
    return count;
}

/* token_mask_advance_token without the compaction (the caller rolls the token back) */
static int token_mask_advance_raw(const token_vocab *tv, dpda_matcher *m, int32_t token)
{
    if (token < 0 || token >= tv->size) return 0;
    if (tv->is_eos[token]) return dpda_matcher_is_accepting(m);
    if (!tv->usable[token]) return 0;
    int32_t len;
    const uint8_t *b = token_bytes(tv, token, &len);
    return dpda_matcher_advance_bytes(m, b, (size_t)len);
}

int32_t token_mask_fill_brute(const token_vocab *tv, dpda_matcher *m, uint32_t *mask)
{
    memset(mask, 0, (size_t)tv->words * sizeof *mask);
    int32_t count = 0;
    for (int32_t tok = 0; tok < tv->size; tok++) {
        if (token_mask_advance_raw(tv, m, tok)) {
            mask[tok >> 5] |= 1u << (tok & 31);
            count++;
            if (!tv->is_eos[tok]) {
                int32_t len;
                token_bytes(tv, tok, &len);
                dpda_matcher_rollback(m, len);
            }
        }
    }
    return count;
}

int token_mask_advance_token(const token_vocab *tv, dpda_matcher *m, int32_t token)
{
    if (!token_mask_advance_raw(tv, m, token)) return 0;
    if (!tv->is_eos[token]) dpda_matcher_maybe_compact(m);
    return 1;
}
