/* token_mask.c — the per-(below, top) token classification cache and its trie walk (subtrees
 * settled from regions, the accepted set assembled), counters near their bound, masks; see
 * token_mask.h.  The trie is token_vocab.c's, regions token_region.c's, bounded chains
 * token_chain.c's; the structs they share are in token_mask_internal.h.
 * Invariants: a table is one thread's; its scratch (t->mark, t->view_n) is clear between
 * calls; an entry's accepted set is its own or a region's (owns_accepted). */
#include "grammar/token_mask_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/vec.h"

#define TOKEN_SHARE_MAX 1024   /* a classification differing from a region's accepted set in at
                                * most this many tokens shares that set (token_mask_assemble) */
#define TOKEN_SPARSE_MAX 256   /* a classification accepting at most this many tokens (outside a shared
                                * set) keeps them as a list, not a bitmap of the vocabulary */

/* ---- the classification cache ---- */

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

/* The two memos, one pair per thread that classifies, shared by every table it works on: a
 * walk's entries are told apart by its id, so no table zeroes 160 KB before its first walk
 * (a fresh grammar's first masks).  Freed when the thread exits. */
typedef struct token_walk_memo {
    token_step_memo memo[TOKEN_MEMO];
    token_exit_memo xmemo[TOKEN_XMEMO];
    uint64_t walk;        /* ids given; a step key keeps 24 bits of it */
} token_walk_memo;

static pthread_key_t token_memo_key;
static pthread_once_t token_memo_once = PTHREAD_ONCE_INIT;

static void token_memo_key_make(void)
{
    LL_ASSERT(pthread_key_create(&token_memo_key, free) == 0);
}

/* A new walk id for t's classification walk, with this thread's memos: t->memo, t->xmemo,
 * t->walk_id (the memos are cleared when the ids outgrow the step key's 24 bits). */
static uint64_t token_walk_begin(token_mask_table *t)
{
    pthread_once(&token_memo_once, token_memo_key_make);
    token_walk_memo *w = pthread_getspecific(token_memo_key);
    if (!w) {
        w = calloc(1, sizeof *w);
        LL_ASSERT(w && pthread_setspecific(token_memo_key, w) == 0);
    }
    if (++w->walk >= 1ull << 24) {
        memset(w, 0, sizeof *w);
        w->walk = 1;
    }
    t->memo = w->memo;
    t->xmemo = w->xmemo;
    return t->walk_id = w->walk;
}

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
    t->kcur = malloc(((size_t)tv->max_depth + 2) * 3 * sizeof *t->kcur);
    LL_ASSERT(t->g_tops && t->g_marks && t->kcur);
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
        free(t->entries.p[i].ex);
    }
    VEC_FREE(t->entries);
    free(t->keys); free(t->vals); free(t->tops); free(t->marks); free(t->view_n);
    dpda_matcher_free(&t->scratch);
    dpda_matcher_free(&t->probe);
    free(t->region_ys); free(t->region_st); free(t->rv_keys); free(t->rv_vals);
    for (int64_t i = 0; i < t->views.n; i++) {
        free(t->views.p[i].members);
        free(t->views.p[i].chain_z);
    }
    VEC_FREE(t->views);
    VEC_FREE(t->skips);
    free(t->g_tops); free(t->g_marks); free(t->kcur); free(t->row_keys); free(t->row_vals);
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
    VEC_FREE(t->sig_enc);
    free(t->rc_keys); free(t->rc_vals);
    VEC_FREE(t->rc_pool);
    VEC_FREE(t->rc_rec);
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
int64_t token_mask_table_num_chain_groups(const token_mask_table *t) { return t->num_chain_groups; }
int64_t token_mask_table_num_near_bound(const token_mask_table *t) { return t->num_near_bound; }

/* open addressing over (keys, vals, cap) holding num entries; grows at half full */
void token_hash_put(uint64_t **keys_p, int32_t **vals_p, int64_t *cap_p, int64_t num, uint64_t key, int32_t val)
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

/* Steps b[j..len) from arena node tops[j] (arena length marks[j]), recording tops / marks after
 * each byte; returns where it stopped (len: every byte stepped), *r the last step's result
 * (< 0: that byte failed). */
static inline int32_t token_step_bytes(const dpda *d, dpda_matcher *m, const uint8_t *b, int32_t j, int32_t len,
                                       int32_t *tops, int32_t *marks, int32_t *r)
{
    *r = 0;
    for (; j < len; j++) {
        m->num_nodes = marks[j];
        *r = dpda_step(d, m, tops[j], d->class_of[b[j]]);
        if (*r < 0) break;
        tops[j + 1] = *r;
        marks[j + 1] = m->num_nodes;
    }
    return j;
}

/* A walk of tails in grouped order (each shares l bytes with the one before; tops / marks hold
 * the nodes after `valid` bytes of the last): the place it is at and the last failure. */
typedef struct token_tails {
    int32_t valid, fail_at;
    uint8_t fail_out;
} token_tails;

#define TOKEN_TAILS_START ((token_tails){0, INT32_MAX, 0})

/* One tail b[len] of such a walk: 1 accepted, 0 rejected, 2 pops below a partial stack; a tail
 * extending a prefix that failed takes that prefix's outcome without a step. */
static inline uint8_t token_tail_step(const dpda *d, dpda_matcher *m, token_tails *w, const uint8_t *b, int32_t len,
                                      int32_t l, int32_t *tops, int32_t *marks)
{
    if (l > w->fail_at) return w->fail_out;
    int32_t r, j = token_step_bytes(d, m, b, l < w->valid ? l : w->valid, len, tops, marks, &r);
    w->valid = j;
    w->fail_at = INT32_MAX;
    if (j == len) return 1;
    w->fail_at = j;
    return w->fail_out = r == -2 ? 2 : 0;
}

/* Walks a token list (trie order; lcp[k] = common prefix with token k - 1) from node `top`
 * of m's arena: shared prefixes are stepped once and a failed prefix settles every token that
 * extends it.  Every token starts with the same d0 bytes, already stepped (top is the node
 * after them; lcp[0] is taken as d0).  bytes/off (or NULL): the tokens' bytes one after the
 * other (token k's from off[k] to off[k + 1]), read in sequence instead of a token's each.  Accepted tokens go to `mask` (bits) or `acc` (ids);
 * tokens whose walk pops below a partial stack (-2) go to `unc`.  Returns the number accepted.
 * m's arena is restored; tops/marks are written from d0 on. */
static int32_t token_walk(const dpda *d, const token_vocab *tv, dpda_matcher *m, int32_t top, int32_t d0,
                          const int32_t *toks, const int32_t *lcp, const uint8_t *bytes, const int32_t *off, int32_t n,
                          int32_t *tops, int32_t *marks, uint32_t *mask, vec_i32 *acc, vec_i32 *unc)
{
    int32_t base = m->num_nodes, count = 0;
    tops[d0] = top;
    marks[d0] = base;
    int32_t valid = d0, fail_at = INT32_MAX, fail_kind = -1;
    for (int32_t k = 0; k < n; k++) {
        int32_t tok = toks[k], len;
        int32_t l = k ? lcp[k] : d0;
        if (l > fail_at) {   /* extends a prefix that failed */
            if (fail_kind == -2 && unc) VEC_PUSH(*unc, tok);
            continue;
        }
        const uint8_t *b = bytes ? bytes + off[k] : token_bytes(tv, tok, &len);
        if (bytes) len = off[k + 1] - off[k];
        int32_t j = token_step_bytes(d, m, b, l < valid ? l : valid, len, tops, marks, &fail_kind);
        fail_at = INT32_MAX;
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

void token_mask_set_unc(const token_vocab *tv, token_mask_entry *e, vec_i32 *unc)
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
        int32_t top = dpda_push(m, members[u], parent, DPDA_COUNT_UNKNOWN);
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
static void token_walk_groups(const dpda *d, dpda_matcher *m, int32_t parent,
                              const int32_t *members, const token_region_view *v, int32_t *tops, int32_t *marks,
                              uint8_t *out)
{
    int32_t base = m->num_nodes;
    token_tails w = TOKEN_TAILS_START;
    for (int32_t k = 0; k < v->num_unc; k++) {
        int32_t q = v->ex_ord[k], l = v->ex_lcp[k];
        if (l < 0) {   /* another exit state: start over from it */
            m->num_nodes = base;
            tops[0] = dpda_push(m, members[v->unc_pu[2 * q + 1]], parent, DPDA_COUNT_UNKNOWN);
            marks[0] = m->num_nodes;
            w = TOKEN_TAILS_START;
            l = 0;
        }
        out[q] = token_tail_step(d, m, &w, v->ex_tail + v->ex_off[k], v->ex_off[k + 1] - v->ex_off[k], l, tops, marks);
    }
    m->num_nodes = base;
}

/* A region entry's uncertain tokens (e->ex, n of them) walked on the real stack m, whose top
 * node lies over node `parent`: each from the node (state it leaves from, parent), in exit
 * order, so tokens that leave alike share their steps and a failed prefix settles all that
 * extend it (a string's exits are its closing quote followed by a few hundred tails).  The
 * accepted set their bits in mask; returns how many.  m's arena is restored. */
static int32_t token_walk_ex(const dpda *d, const token_vocab *tv, dpda_matcher *m, int32_t parent, const int32_t *ex,
                             int32_t n, int32_t *tops, int32_t *marks, uint32_t *mask)
{
    int32_t base = m->num_nodes, count = 0;
    token_tails w = TOKEN_TAILS_START;
    for (int32_t k = 0; k < n; k++) {
        int32_t tok = ex[4 * k], p = ex[4 * k + 1], l = ex[4 * k + 3], len;
        if (l > w.fail_at) continue;   /* extends a prefix that failed */
        const uint8_t *b = token_bytes(tv, tok, &len) + p;
        if (l < 0) {   /* another exit state: start over from it */
            m->num_nodes = base;
            tops[0] = dpda_push(m, ex[4 * k + 2], parent, 0);
            marks[0] = m->num_nodes;
            w = TOKEN_TAILS_START;
            l = 0;
        }
        if (token_tail_step(d, m, &w, b, len - p, l, tops, marks) != 1) continue;
        mask[tok >> 5] |= 1u << (tok & 31);
        count++;
    }
    m->num_nodes = base;
    return count;
}

static int token_rank_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* unc[n] into trie order (the order a mask walks an uncertain list in) */
static void token_sort_trie(const token_vocab *tv, int32_t *unc, int64_t n)
{
    if (n < 2) return;
    uint64_t *key = malloc((size_t)n * sizeof *key);
    LL_ASSERT(key);
    for (int64_t k = 0; k < n; k++) key[k] = (uint64_t)(uint32_t)tv->rank[unc[k]] << 32 | (uint32_t)unc[k];
    qsort(key, (size_t)n, sizeof *key, token_rank_cmp);
    for (int64_t k = 0; k < n; k++) unc[k] = (int32_t)(uint32_t)key[k];
    free(key);
}

/* A bounded position's tokens that leave its loop U or start more than TOKEN_CHAIN_K characters
 * (chain view v's cw), settled on the partial stack [below, x] of s (x: node 1) s_x characters
 * after the state v's chain was analysed from, without stepping their characters inside U: a
 * token leaving U from local state u after st started characters is then at the real state
 * v->chain_z[u][s_x + st], so only its bytes from the exit are stepped, grouped by (u, st,
 * bytes from the exit) as token_walk_groups does (a string's ~1,300 quote-containing tokens
 * are its closing quote after a few counts followed by a few tails); one starting more than
 * `bound` characters runs out of the chain (rejected).  Tokens starting more than
 * TOKEN_CHAIN_K characters (lw) are read through U's byte table up to the chain's last known
 * state and stepped from there.  Accepted go to acc, those popping
 * below the partial stack to unc (trie order). */
static void token_chain_walk(token_mask_table *t, dpda_matcher *s, const token_region_view *v, int32_t s_x,
                             int32_t bound, vec_i32 *acc, vec_i32 *unc)
{
    const dpda *d = t->d;
    const token_vocab *tv = t->tv;
    int32_t *tops = t->tops, *marks = t->marks;
    int32_t base = s->num_nodes, group = 0;   /* 1 walked, 0 rejected, -1 no state */
    token_tails w = TOKEN_TAILS_START;
    vec_i32 fb = {0};   /* exits whose state is not known: walked from x */
    for (int32_t k = 0; k < v->num_cx; k++) {
        const int32_t *c = v->cx + 4 * k;
        int32_t tok = c[0], l = c[3];
        if (l < 0) {   /* another exit state or count: start over from its real state */
            int32_t sz = s_x + c[2], z = -1;
            if (sz < v->chain_zs) z = v->chain_z[c[1] * v->chain_zs + sz];
            group = c[2] > bound ? 0 : z >= 0 ? 1 : -1;
            s->num_nodes = base;
            if (group == 1) {
                tops[0] = dpda_push(s, z, 0, DPDA_COUNT_UNKNOWN);
                marks[0] = s->num_nodes;
            }
            w = TOKEN_TAILS_START;
            l = 0;
        }
        if (group == 0) continue;
        if (group < 0) { VEC_PUSH(fb, tok); continue; }
        uint8_t o = token_tail_step(d, s, &w, v->cx_tail + v->cx_off[k], v->cx_off[k + 1] - v->cx_off[k], l, tops, marks);
        if (o == 1) VEC_PUSH(*acc, tok);
        else if (o == 2) VEC_PUSH(*unc, tok);
    }
    s->num_nodes = base;
    if (fb.n) {
        token_sort_trie(tv, fb.p, fb.n);
        int32_t *lcp = calloc((size_t)fb.n, sizeof *lcp);
        LL_ASSERT(lcp);
        token_walk(d, tv, s, 1, 0, fb.p, lcp, NULL, NULL, (int32_t)fb.n, tops, marks, NULL, acc, unc);
        free(lcp);
        VEC_FREE(fb);
    }
    /* tokens starting more than TOKEN_CHAIN_K characters: read through U's own byte table for
     * as long as the chain knows the real state, stepped from there; in trie order, a token
     * whose common prefix with the previous one covers where that one started stepping starts
     * there too and reuses its steps */
    int32_t pz = -1, lp = 0, valid = 0, *lu = t->region_ys, *ls = t->region_st;   /* local state, started count after p bytes */
    lu[0] = ls[0] = 0;
    for (int32_t k = 0; k < v->num_lw; k++) {
        const uint8_t *b = v->lw_bytes + v->lw_off[k];
        int32_t len = v->lw_off[k + 1] - v->lw_off[k], l = k ? v->lw_lcp[k] : 0, p = l < lp ? l : lp, r;
        for (; p < len; p++) {   /* the previous token's local states hold for the common prefix */
            int32_t u = lu[p], u2 = v->sig[u * 256 + b[p]], st2 = ls[p] + (u == 0);
            if (u2 < 0 || s_x + st2 >= v->chain_zs || v->chain_z[u2 * v->chain_zs + s_x + st2] < 0) break;
            lu[p + 1] = u2;
            ls[p + 1] = st2;
        }
        lp = p;
        int32_t u = lu[p], st = ls[p];
        if (p != pz || l < p) {   /* another start: the real state after p bytes (x itself if none) */
            int32_t z = s_x < v->chain_zs ? v->chain_z[u * v->chain_zs + s_x + st] : -1;
            if (z < 0) p = 0;
            s->num_nodes = base;
            tops[p] = z < 0 ? 1 : dpda_push(s, z, 0, DPDA_COUNT_UNKNOWN);
            marks[p] = s->num_nodes;
            valid = pz = p;
        }
        int32_t j = l < valid ? l : valid;
        j = token_step_bytes(d, s, b, j > p ? j : p, len, tops, marks, &r);
        valid = j;
        if (j == len) VEC_PUSH(*acc, v->lw[k]);
        else if (r == -2) VEC_PUSH(*unc, v->lw[k]);
    }
    s->num_nodes = base;
    token_sort_trie(tv, unc->p, unc->n);
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
    token_walk_groups(t->d, s, parent, members, v, t->g_tops, t->g_marks, t->gout.p + off);
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
            int32_t top = dpda_push(s, x, parent, DPDA_COUNT_UNKNOWN);
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
    if (v->ref[i] != idx) {   /* the region's walk is elsewhere at node i */
        /* a member of a region started elsewhere may start its own (an equal state reached
         * another way: the walk entered the loop at it, not at that region's start) */
        if (idx == 0 || (vi = token_mask_region_view_own(t, s->nodes[parent].state, s->nodes[r].state)) < 0) return 0;
        v = &t->views.p[vi];
        idx = 0;
        if (v->ref[i] != 0) return 0;
    }
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
        token_walk(t->d, tv, s, r, dep, v->unc + a, v->unc_lcp + a, v->unc_bytes, v->unc_bytes ? v->unc_off + a : NULL,
                   b - a, t->tops, t->marks, NULL, &t->acc, unc);
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
        int grouped = cl && r.chain_z && r.cx;   /* token_chain_walk */
        if (cl) {
            /* tokens starting at most min(bound, k) characters, from the shared bitmap; those
             * leaving the loop or starting more than k characters walked below */
            t->num_chains++;
            int32_t k = token_chain_k(&r);
            e.accepted = (uint32_t *)token_region_bounded(t, &r, bound < k ? bound : k, &e.num_accepted);
            r.unc = r.cw;
            r.unc_lcp = r.cw_lcp;
            r.num_unc = r.num_cw;
            r.unc_bytes = r.cw_bytes;
            r.unc_off = r.cw_off;
        } else {
            e.accepted = (uint32_t *)r.accepted;
            e.num_accepted = r.num_accepted;
        }
        e.owns_accepted = 0;
        vec_i32 acc = {0}, unc = {0};
        if (!cl && r.use_exits && r.ex_ord) {
            VEC_RESERVE(t->gout, r.num_unc);
            token_walk_groups(d, s, 0, members, &r, t->g_tops, t->g_marks, t->gout.p);
            for (int32_t k = 0; k < r.num_unc; k++) {
                if (t->gout.p[k] == 1) VEC_PUSH(acc, r.unc[k]);
                else if (t->gout.p[k] == 2) VEC_PUSH(unc, r.unc[k]);
            }
            e.num_extra = (int32_t)acc.n;
            int counted = 0;
            for (int32_t k = 0; k < nm && !counted; k++) counted = d->state_counter[members[k]] >= 0;
            if (!counted && unc.n) {
                /* the uncertain ones in exit order for the masks (no state of the region is
                 * counted: the real stack's nodes at the exits have count 0); common tails of a
                 * subsequence: the least of the adjacent ones between them (-1 where the state
                 * changes) */
                e.ex = malloc((size_t)unc.n * 4 * sizeof *e.ex);
                LL_ASSERT(e.ex);
                int32_t n = 0, l = -1;
                for (int32_t k = 0; k < r.num_unc; k++) {
                    int32_t q = r.ex_ord[k];
                    if (r.ex_lcp[k] < l) l = r.ex_lcp[k];
                    if (t->gout.p[q] != 2) continue;
                    e.ex[4 * n] = r.unc[q];
                    e.ex[4 * n + 1] = r.unc_pu[2 * q];
                    e.ex[4 * n + 2] = members[r.unc_pu[2 * q + 1]];
                    e.ex[4 * n + 3] = n ? l : -1;
                    n++;
                    l = INT32_MAX;
                }
                t->bytes += (int64_t)n * 16;
            }
        } else if (!cl && r.use_exits) {
            e.num_extra = token_walk_exits(d, tv, s, 0, members, &r, 0, r.num_unc, &acc, &unc);
        } else if (grouped) {
            t->num_chain_groups++;
            token_chain_walk(t, s, &r, r.chain_r0 - cl->r, bound, &acc, &unc);
            e.num_extra = (int32_t)acc.n;
        } else
            e.num_extra = token_walk(d, tv, s, 1, 0, r.unc, r.unc_lcp, r.unc_bytes, r.unc_off, r.num_unc, t->tops, t->marks,
                                     NULL, &acc, &unc);
        e.extra = acc.p;
        e.num_accepted += e.num_extra;
        if (grouped) token_mask_set_unc(tv, &e, &unc);
        else token_mask_set_unc_sub(&e, &unc, r.unc, r.unc_lcp, r.num_unc);
        t->bytes += (acc.n + unc.n) * 8;
        VEC_PUSH(t->entries, e);
        int32_t id = (int32_t)t->entries.n - 1;
        token_mask_put(t, (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)top, id);
        return id;
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
    uint64_t walk = token_walk_begin(t);
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
    int32_t C = d->num_terms - 1;
    if (!t->root_rej) {
        t->root_rej = malloc((size_t)C + 1);
        LL_ASSERT(t->root_rej);
    }
    if (below >= 0) {
        token_mask_reserve_nodes(&t->probe);
        t->probe.nodes[0] = (dpda_node){below, -2, DPDA_COUNT_UNKNOWN};
        const int32_t *row = token_region_row(t, top);
        for (int32_t c = 0; c < C; c++) t->root_rej[c] = row[c] == -1;
    } else {   /* the first mask (no row without a state below): the first bytes whose edge rejects */
        for (int32_t c = 0; c < C; c++)
            t->root_rej[c] = d->edges[d->pre[(int64_t)top * d->num_terms + c]].kind == DPDA_REJECT;
    }
    const uint8_t *rej = t->root_rej;
    int32_t rk = 0;   /* tv->root[rk]: the next root child */
    /* siblings lie far apart in preorder (a cache miss each, and the next one is known only
     * from this one's record): kcur[dep] is the node's place among its parent's children
     * (tv->kid), so the records (and the run's region states) of the next siblings are
     * fetched while this one is stepped */
    int32_t *kc = t->kcur, *kn = kc + tv->max_depth + 2, *ke = kn + tv->max_depth + 2, pdep = 0;
    kn[1] = ke[1] = tv->num_root;
    /* the children of a node with many (a declared key's prefix: most of them leave the
     * declared names into "any string") are stepped from [below, x] by x's row
     * (token_region_row: one step per distinct edge, not per child), exact as rows are;
     * without counters every count is 0 */
    int32_t row_x = -1;
    uint64_t row_gen = 0;
    const int32_t *xrow = NULL;
    for (int32_t i = 0; i < tv->num_nodes;) {
        if (rej && i == tv->root[rk]) {
            while (rk < tv->num_root && rej[d->class_of[tv->root_byte[rk]]]) rk++;
            if (rk == tv->num_root) break;
            i = tv->root[rk++];
            kc[1] = rk - 1;
            pdep = 1;
        }
        int32_t dep = tv->node[i].depth;
        if (dep > pdep) {   /* a first child (its parent is i - 1) */
            kc[dep] = tv->kid_off[i];
            kn[dep] = tv->kid_off[i + 1] - tv->kid_off[i];
            ke[dep] = tv->kid_off[i + 1];
        } else if (dep < pdep || !rej || dep > 1) kc[dep]++;
        pdep = dep;
        {
            int32_t nx = tv->kid[kc[dep] + TOKEN_KID_AHEAD];
            __builtin_prefetch(&tv->node[nx]);
            if (run_vi >= 0) __builtin_prefetch(&t->views.p[run_vi].ref[nx]);
        }
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
            int32_t v = -3;
            if (d->num_counters == 0 && kn[dep] >= TOKEN_ROW_KIDS) {
                if (x != row_x || t->row_gen != row_gen) {
                    t->probe.nodes[0] = (dpda_node){below, -2, DPDA_COUNT_UNKNOWN};   /* a skip may have moved it */
                    xrow = token_region_row(t, x);
                    row_x = x;
                    row_gen = t->row_gen;
                }
                v = xrow[cls];
            }
            uint64_t key = walk << 40 | (uint64_t)(uint32_t)x << 8 | (uint64_t)cls;
            uint64_t h = ((uint64_t)x * 0x9E3779B97F4A7C15ull ^ (uint64_t)cls * 0xC2B2AE3D27D4EB4Full) >> 51;
            token_step_memo *me = &t->memo[h];
            if (v >= 0) {
                r = dpda_push(s, v, 0, 0);
            } else if (v == -1) {
                r = -1;
            } else if (v == -2) {
                r = dpda_step(d, s, from, cls);
            } else if (me->key == key) {
                int32_t v = me->val;
                if (v >= 0) {
                    r = dpda_push(s, v, 0, me->cnt);
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
                /* the next siblings that x's row takes to y, where the region's walk is in
                 * y's state too, join the run from the children arrays: no node record each
                 * (a declared prefix's children are mostly "any string") */
                if (d->num_counters == 0 && kn[dep] >= TOKEN_ROW_KIDS) {
                    int32_t x = s->nodes[from].state;
                    if (x != row_x || t->row_gen != row_gen) {
                        t->probe.nodes[0] = (dpda_node){below, -2, DPDA_COUNT_UNKNOWN};
                        xrow = token_region_row(t, x);
                        row_x = x;
                        row_gen = t->row_gen;
                    }
                    const uint8_t *ref = t->views.p[run_vi].ref;
                    int32_t k = kc[dep] + 1, ek = ke[dep];
                    while (k < ek && xrow[d->class_of[tv->kid_byte[k]]] == y && ref[tv->kid[k]] == run_idx) {
                        __builtin_prefetch(&ref[tv->kid[k + TOKEN_KID_AHEAD]]);
                        k++;
                    }
                    if (k > kc[dep] + 1) {
                        int32_t nxt = k < ek ? tv->kid[k] : tv->node[tv->kid[k - 1]].end;
                        pend_hi = tv->node[nxt].tok_start;
                        kc[dep] = k - 1;
                        if (dep == 1) rk = k;
                        i = nxt;
                        continue;
                    }
                }
                i = tv->node[i].end;
                continue;
            }
        }
        if (r == -1) {
            if (dep > 1) {   /* the next siblings whose edge rejects: skipped from the children arrays */
                const int32_t *px = d->pre + (int64_t)s->nodes[from].state * d->num_terms;
                int32_t k = kc[dep] + 1, ek = ke[dep];
                while (k < ek && px[d->class_of[tv->kid_byte[k]]] == 0) k++;
                if (k > kc[dep] + 1) {
                    int32_t nxt = k < ek ? tv->kid[k] : tv->node[tv->kid[k - 1]].end;
                    kc[dep] = k - 1;
                    i = nxt;
                    continue;
                }
            }
            i = tv->node[i].end;
            continue;
        }
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
        return num + token_walk(d, tv, m, m->top, 0, r.unc, r.unc_lcp, r.unc_bytes, r.unc_off, r.num_unc, t->tops,
                                t->marks, mask, NULL, NULL);
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
    if (e->ex)
        count += token_walk_ex(d, tv, m, parent, e->ex, e->num_unc, t->tops, t->marks, mask);
    else
        count += token_walk(d, tv, m, m->top, 0, e->unc, e->unc_lcp, NULL, NULL, e->num_unc, t->tops, t->marks, mask, NULL, NULL);
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
