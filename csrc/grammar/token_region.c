/* token_region.c — regions: states whose bytes move the stack [.., below, x] to [.., below, x']
 * (token_mask.h: "Regions", "Skips"; structs in token_mask_internal.h).
 * Inside a string, a number or any other looping regular piece, the parser stays at one depth
 * and the byte-level behaviour from x is a small automaton ("region") that is identical in
 * every grammar and at every place where the same piece occurs.  Its canonical byte table is
 * the key of a cache in the vocabulary: the trie walk that classifies tokens from x (accepted:
 * stay in the region; rejected; uncertain: leave it) runs once per distinct region, with one
 * table lookup per trie node, and every grammar on this vocabulary reuses it.
 * Invariants: the cache is the vocabulary's, under its region_lock; a table keeps its own
 * views and rows (token_region_row: every class from one state, per (below, x)).  The probes
 * run on t->probe and the table's region scratch only, so a classification walk may ask for
 * a region midway. */
#include "grammar/token_mask_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/vec.h"

#define TOKEN_REGION_DEPTH 7   /* bytes searched from the top (a 6-byte u-escape loops back) */
#define TOKEN_REF_MIN 1024     /* regions accepting fewer tokens keep no per-node states */
#define TOKEN_ROW_POOL (1 << 20)   /* int32 results held by token_region_row's cache */

static void token_region_view_of(const token_vocab *tv, int32_t i, token_region_view *out);

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
const int32_t *token_region_row(token_mask_table *t, int32_t x)
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
    t->row_gen++;
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

/* Whether some byte can take [below, x] back to x for some `below`, from x's edges alone (kept
 * per state): an END edge that pops nothing and pushes nothing, or pops x and pushes x, or an
 * EXPOSE edge that pops at most x (its chain may come back); every other edge rejects, pushes
 * above x or pops below it.  Most states (a declared key's prefixes, punctuation) cannot, and
 * are answered without a row. */
int token_state_may_loop(token_mask_table *t, int32_t x)
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
        if (c && pre[c] == pre[c - 1]) continue;   /* the same edge as the class before: read once */
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
int token_mask_region(token_mask_table *t, int32_t below, int32_t top, token_region_view *out,
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
    /* a region this grammar met before is found by its table over classes (the same piece
     * elsewhere in the schema: its states are new, the table is not) */
    uint64_t hc = 1469598103934665603ull ^ (uint64_t)n;
    for (int32_t k = 0; k < n * C; k++) hc = (hc ^ (uint32_t)local[k]) * 1099511628211ull;
    hc = hc == UINT64_MAX ? 0 : hc;
    if (!t->rc_keys) {
        t->rc_cap = 64;
        t->rc_keys = malloc((size_t)t->rc_cap * sizeof *t->rc_keys);
        t->rc_vals = malloc((size_t)t->rc_cap * sizeof *t->rc_vals);
        LL_ASSERT(t->rc_keys && t->rc_vals);
        memset(t->rc_keys, 0xff, (size_t)t->rc_cap * sizeof *t->rc_keys);
    }
    for (uint64_t j = token_mask_slot(hc, t->rc_cap); t->rc_keys[j] != UINT64_MAX; j = (j + 1) & (uint64_t)(t->rc_cap - 1)) {
        const int32_t *rec = t->rc_rec.p + 3 * (int64_t)t->rc_vals[j];
        if (t->rc_keys[j] != hc || rec[1] != n || memcmp(t->rc_pool.p + rec[2], local, (size_t)n * C * sizeof *local))
            continue;
        token_vocab *tv = (token_vocab *)t->tv;
        pthread_mutex_lock(&tv->region_lock);
        token_region_view_of(tv, rec[0], out);
        pthread_mutex_unlock(&tv->region_lock);
        return 1;
    }
    /* the byte table as its maximal runs, taken a run of one class at a time and hashed as
     * token_sig_hash does on the way: a region already cached is found from the runs alone,
     * the table is written out only to make a new one */
    if (!t->brun) {   /* runs of bytes with one class: [brun[k], brun[k + 1]) */
        t->brun = malloc(257 * sizeof *t->brun);
        LL_ASSERT(t->brun);
        for (int b = 0; b < 256; b++)
            if (!b || d->class_of[b] != d->class_of[b - 1]) t->brun[t->num_brun++] = b;
        t->brun[t->num_brun] = 256;
    }
    int32_t sig_len = n * 256;
    uint64_t h = 1469598103934665603ull ^ (uint64_t)sig_len;
    int32_t cur = 0, len = 0;
    vec_i32 *enc = &t->sig_enc;
    enc->n = 0;
    for (int32_t i = 0; i < n; i++)
        for (int32_t k = 0; k < t->num_brun; k++) {
            int32_t lo = t->brun[k], hi = t->brun[k + 1], v = local[i * C + d->class_of[lo]];
            if (len && v != cur) {
                h = (h ^ (uint32_t)cur) * 1099511628211ull;
                h = (h ^ (uint32_t)len) * 1099511628211ull;
                VEC_PUSH(*enc, cur);
                VEC_PUSH(*enc, len);
                len = 0;
            }
            cur = v;
            len += hi - lo;
        }
    h = (h ^ (uint32_t)cur) * 1099511628211ull;
    h = (h ^ (uint32_t)len) * 1099511628211ull;
    VEC_PUSH(*enc, cur);
    VEC_PUSH(*enc, len);
    h ^= h >> 29;
    if (!token_region_find(t, enc->p, (int32_t)enc->n, sig_len, h, out)) {
        int32_t *sig = malloc((size_t)sig_len * sizeof *sig);
        LL_ASSERT(sig);
        for (int64_t k = 0, b = 0; k < enc->n; k += 2)
            for (int32_t j = 0; j < enc->p[k + 1]; j++) sig[b++] = enc->p[k];
        token_region_get(t, sig, sig_len, h, out);
    }
    int32_t rec[3] = {out->region, n, (int32_t)t->rc_pool.n};
    VEC_RESERVE(t->rc_pool, t->rc_pool.n + (int64_t)n * C);
    memcpy(t->rc_pool.p + t->rc_pool.n, local, (size_t)n * C * sizeof *local);
    t->rc_pool.n += (int64_t)n * C;
    for (int k = 0; k < 3; k++) VEC_PUSH(t->rc_rec, rec[k]);
    token_hash_put(&t->rc_keys, &t->rc_vals, &t->rc_cap, t->rc_num, hc, (int32_t)t->rc_num);
    t->rc_num++;
    return 1;
}

typedef struct token_exit_item {
    const uint8_t *bytes;   /* from the exit */
    int32_t len, u, st, idx;
} token_exit_item;

static int token_exit_cmp(const void *a, const void *b)
{
    const token_exit_item *x = a, *y = b;
    if (x->u != y->u) return x->u < y->u ? -1 : 1;
    if (x->st != y->st) return x->st < y->st ? -1 : 1;
    int c = memcmp(x->bytes, y->bytes, (size_t)(x->len < y->len ? x->len : y->len));
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : 1;
}

/* Tokens toks[n] that leave a region (pu: [2 * n] bytes inside, local state; st: [n] characters
 * started inside, or NULL) ordered by (exit state, started count, bytes from the exit): *ord[n]
 * indices into toks, *lcp[n] bytes from the exit shared with the previous one, -1 where the
 * exit state or the count changes; their bytes from the exit in that order in *tail, the k-th
 * from (*off)[k] to (*off)[k + 1]. */
static void token_region_exit_order(const token_vocab *tv, const int32_t *toks, int32_t n, const int32_t *pu,
                                    const int32_t *st, int32_t **ord, int32_t **lcp, uint8_t **tail, int32_t **off)
{
    token_exit_item *it = malloc(((size_t)n + 1) * sizeof *it);
    *ord = malloc(((size_t)n + 1) * sizeof **ord);
    *lcp = malloc(((size_t)n + 1) * sizeof **lcp);
    LL_ASSERT(it && *ord && *lcp);
    for (int32_t k = 0; k < n; k++) {
        int32_t len;
        const uint8_t *b = token_bytes(tv, toks[k], &len);
        it[k] = (token_exit_item){b + pu[2 * k], len - pu[2 * k], pu[2 * k + 1], st ? st[k] : 0, k};
    }
    qsort(it, (size_t)n, sizeof *it, token_exit_cmp);
    *off = malloc(((size_t)n + 1) * sizeof **off);
    LL_ASSERT(*off);
    (*off)[0] = 0;
    for (int32_t k = 0; k < n; k++) (*off)[k + 1] = (*off)[k] + it[k].len;
    *tail = malloc((size_t)(*off)[n] + 1);
    LL_ASSERT(*tail);
    for (int32_t k = 0; k < n; k++) memcpy(*tail + (*off)[k], it[k].bytes, (size_t)it[k].len);
    for (int32_t k = 0; k < n; k++) {
        (*ord)[k] = it[k].idx;
        int32_t l = -1;
        if (k && it[k].u == it[k - 1].u && it[k].st == it[k - 1].st)
            for (l = 0; l < it[k].len && l < it[k - 1].len && it[k].bytes[l] == it[k - 1].bytes[l];) l++;
        (*lcp)[k] = l;
    }
    free(it);
}

/* The bytes of tokens list[n] one after the other: *bytes, the k-th from (*off)[k] to (*off)[k + 1]. */
static void token_list_bytes(const token_vocab *tv, const int32_t *list, int32_t n, uint8_t **bytes, int32_t **off)
{
    *off = malloc(((size_t)n + 1) * sizeof **off);
    LL_ASSERT(*off);
    (*off)[0] = 0;
    for (int32_t k = 0; k < n; k++) (*off)[k + 1] = (*off)[k] + tv->tok_len[list[k]];
    *bytes = malloc((size_t)(*off)[n] + 1);
    LL_ASSERT(*bytes);
    for (int32_t k = 0; k < n; k++) memcpy(*bytes + (*off)[k], tv->tok_bytes[list[k]], (size_t)tv->tok_len[list[k]]);
}

/* a byte table's hash over its runs of equal entries (a state's row is a few runs) */
uint64_t token_sig_hash(const int32_t *sig, int32_t n)
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

/* sig[n]'s maximal runs as (value, length) pairs into enc */
static void token_sig_runs(const int32_t *sig, int32_t n, vec_i32 *enc)
{
    enc->n = 0;
    for (int32_t i = 0; i < n;) {
        int32_t j = i + 1;
        while (j < n && sig[j] == sig[i]) j++;
        VEC_PUSH(*enc, sig[i]);
        VEC_PUSH(*enc, j - i);
        i = j;
    }
}

/* region i of the vocabulary's cache as a view (under region_lock) */
static void token_region_view_of(const token_vocab *tv, int32_t i, token_region_view *out)
{
    const token_region *r = &tv->regions[i];
    *out = (token_region_view){r->e.accepted, r->e.unc, r->e.unc_lcp, r->e.num_unc, r->e.num_accepted, r->ref,
                               i, r->s_max, r->cw, r->cw_lcp, r->num_cw, r->unc_pu, r->use_exits,
                               r->ex_ord, r->ex_lcp, r->unc_rank, r->ex_cost, r->ex_single, NULL, r->racc,
                               r->ex_tail, r->ex_off, r->unc_bytes, r->cw_bytes, r->unc_off, r->cw_off,
                               r->cx, r->cx_off, r->lw, r->lw_lcp, r->lw_off, r->sig, r->cx_tail, r->lw_bytes, r->num_cx,
                               r->num_lw, NULL, 0, 0};
}

/* The cached region whose byte table has the runs enc[enc_len] (sig_len entries, hash h =
 * token_sig_hash of the table) into *out; 0 when there is none. */
int token_region_find(token_mask_table *t, const int32_t *enc, int32_t enc_len, int32_t sig_len, uint64_t h,
                      token_region_view *out)
{
    token_vocab *tv = (token_vocab *)t->tv;
    uint64_t key = h == UINT64_MAX ? 0 : h;
    pthread_mutex_lock(&tv->region_lock);
    for (uint64_t j = token_mask_slot(key, tv->rh_cap); tv->rh_keys[j] != UINT64_MAX; j = (j + 1) & (uint64_t)(tv->rh_cap - 1)) {
        if (tv->rh_keys[j] != key) continue;
        int32_t i = tv->rh_vals[j];
        const token_region *r = &tv->regions[i];
        if (r->sig_len != sig_len || r->enc_len != enc_len || memcmp(r->enc, enc, (size_t)enc_len * sizeof *enc)) continue;
        token_region_view_of(tv, i, out);
        pthread_mutex_unlock(&tv->region_lock);
        return 1;
    }
    pthread_mutex_unlock(&tv->region_lock);
    return 0;
}

/* The region with byte table sig[sig_len] (n states x 256: local state, -1 rejected, -2 leaves;
 * state 0 the start; h = token_sig_hash(sig)), from the vocabulary's cache or classified now;
 * takes sig. */
int token_region_get(token_mask_table *t, int32_t *sig, int32_t sig_len, uint64_t h, token_region_view *out)
{
    token_vocab *tv = (token_vocab *)t->tv;
    vec_i32 enc = {0};
    token_sig_runs(sig, sig_len, &enc);
    if (token_region_find(t, enc.p, (int32_t)enc.n, sig_len, h, out)) {
        VEC_FREE(enc);
        free(sig);
        return 1;
    }
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
    vec_i32 unc = {0}, cw = {0}, unc_pu = {0}, lw = {0};
    vec_i32 cx_tok = {0}, cx_pu = {0}, cx_st = {0};   /* exits of at most TOKEN_CHAIN_K started characters */
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
                    if (st[dep - 1] > TOKEN_CHAIN_K) continue;
                    VEC_PUSH(cw, tv->sorted[tv->node[j].tok_start + k]);
                    VEC_PUSH(cx_tok, tv->sorted[tv->node[j].tok_start + k]);
                    VEC_PUSH(cx_pu, dep - 1);
                    VEC_PUSH(cx_pu, ys[dep - 1]);
                    VEC_PUSH(cx_st, st[dep - 1]);
                }
            i = tv->node[i].end;
            continue;
        }
        ys[dep] = r;
        st[dep] = st[dep - 1] + (ys[dep - 1] == 0);
        if (st[dep] > s_max) s_max = st[dep];
        if (st[dep] > TOKEN_CHAIN_K && st[dep - 1] <= TOKEN_CHAIN_K)   /* every token below: walked */
            for (int32_t q = tv->node[i].tok_start; q < tv->node[tv->node[i].end].tok_start; q++) {
                VEC_PUSH(cw, tv->sorted[q]);
                VEC_PUSH(lw, tv->sorted[q]);
            }
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
    int32_t *ex_ord = NULL, *ex_lcp = NULL, *ex_off = NULL;
    uint8_t *ex_tail = NULL;
    if (e.num_unc <= TOKEN_GROUP_MAX)
        token_region_exit_order(tv, e.unc, e.num_unc, unc_pu.p, NULL, &ex_ord, &ex_lcp, &ex_tail, &ex_off);
    /* a bounded position's exits (token_chain_walk): by (exit state, started count, tail) */
    int32_t *cx = NULL, *cx_off = NULL, *cx_ord = NULL, *cx_lcp = NULL;
    uint8_t *cx_tail = NULL;
    if (cx_tok.n <= TOKEN_GROUP_MAX) {
        token_region_exit_order(tv, cx_tok.p, (int32_t)cx_tok.n, cx_pu.p, cx_st.p, &cx_ord, &cx_lcp, &cx_tail, &cx_off);
        cx = malloc(((size_t)cx_tok.n * 4 + 1) * sizeof *cx);
        LL_ASSERT(cx);
        for (int64_t k = 0; k < cx_tok.n; k++) {
            int32_t q = cx_ord[k];
            cx[4 * k] = cx_tok.p[q];
            cx[4 * k + 1] = cx_pu.p[2 * q + 1];
            cx[4 * k + 2] = cx_st.p[q];
            cx[4 * k + 3] = cx_lcp[k];
        }
        free(cx_ord);
        free(cx_lcp);
    }
    int32_t num_cx = cx ? (int32_t)cx_tok.n : 0;
    VEC_FREE(cx_tok);
    VEC_FREE(cx_pu);
    VEC_FREE(cx_st);
    token_mask_entry le = {0};   /* lw in trie order with its common prefixes */
    token_mask_set_unc(tv, &le, &lw);
    uint8_t *lw_bytes = NULL;
    int32_t *lw_off = NULL;
    token_list_bytes(tv, le.unc, le.num_unc, &lw_bytes, &lw_off);
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
    /* lists walked in trie order read their bytes in sequence; a longer list (a region left by
     * almost every token: the trie walk classifies its states) is not copied, as reading every
     * token's bytes once costs milliseconds */
    uint8_t *unc_bytes = NULL, *cw_bytes = NULL;
    int32_t *unc_off = NULL, *cw_off = NULL;
    if (e.num_unc <= TOKEN_GROUP_MAX) token_list_bytes(tv, e.unc, e.num_unc, &unc_bytes, &unc_off);
    if (ce.num_unc <= TOKEN_GROUP_MAX) token_list_bytes(tv, ce.unc, ce.num_unc, &cw_bytes, &cw_off);
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
    tv->regions[tv->num_regions++] = (token_region){h, sig, sig_len, enc.p, (int32_t)enc.n, e, ref, s_max, by_st,
                                                    st_off, bound, ce.unc, ce.unc_lcp, ce.num_unc, unc_pu.p,
                                                    use_exits, ex_ord, ex_lcp, unc_rank, cost_exit, cost_single, racc,
                                                    ex_tail, ex_off, unc_bytes, unc_off, cw_bytes, cw_off, cx, num_cx,
                                                    cx_tail, cx_off, le.unc, le.unc_lcp, le.num_unc, lw_bytes, lw_off};
    int32_t idx = tv->num_regions - 1;
    /* a region made meanwhile by another thread with this table is kept too (the index
     * finds one of them) */
    token_hash_put(&tv->rh_keys, &tv->rh_vals, &tv->rh_cap, idx, h == UINT64_MAX ? 0 : h, idx);
    token_region_view_of(tv, idx, out);
    pthread_mutex_unlock(&tv->region_lock);
    return 1;
}

/* The accepted tokens of region view v whose started count is at most r (r < v->s_max: a
 * bitmap built once per (region, r) and kept in the vocabulary's cache); *num: how many. */
const uint32_t *token_region_bounded(token_mask_table *t, const token_region_view *v, int32_t r, int32_t *num)
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

/* The view of the region that starts at top (view index << 6, -1 none), its members' entries
 * made where they have none. */
static int32_t token_region_view_make(token_mask_table *t, int32_t below, int32_t top)
{
    if (!t->view_member) {
        t->view_member = calloc((size_t)t->d->num_states, 1);
        LL_ASSERT(t->view_member);
    }
    token_region_view rv;
    int32_t members[TOKEN_REGION_MAX], nm = 0;
    if (!token_mask_region(t, below, top, &rv, members, &nm) || !rv.ref) return -1;
    rv.members = malloc(TOKEN_REGION_MAX * sizeof *rv.members);
    LL_ASSERT(rv.members);
    memcpy(rv.members, members, (size_t)nm * sizeof *members);
    VEC_PUSH(t->views, rv);
    int32_t v = (int32_t)(t->views.n - 1) << 6;
    for (int32_t k = 1; k < nm; k++) {   /* never overrides another region's entry */
        uint64_t mk = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)members[k];
        t->view_member[members[k]] |= 1;
        int32_t *slot = token_hash_slot(t->rv_keys, t->rv_vals, t->rv_cap, mk);
        if (slot && *slot < 0) *slot = v | k;
        else if (!slot) token_hash_put(&t->rv_keys, &t->rv_vals, &t->rv_cap, t->rv_num++, mk, v | k);
    }
    return v;
}

/* The region view that [below, top] lies in, for skipping subtrees (index into t->views;
 * *idx: top's number in it, 0 when top is the looping state the region starts from), -1 when
 * top loops in no region with per-node states seen so far; cached per table.  Computing a
 * region from a looping state also records its other states (inside an escape, between the
 * bytes of a UTF-8 character), so a walk that reaches a node in one of them can skip too. */
int32_t token_mask_region_view(token_mask_table *t, int32_t below, int32_t top, int32_t *idx)
{
    uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)top;
    int32_t v = token_hash_find(t->rv_keys, t->rv_vals, t->rv_cap, key);
    if (v == -3) {
        v = token_region_view_make(t, below, top);
        token_hash_put(&t->rv_keys, &t->rv_vals, &t->rv_cap, t->rv_num++, key, v);
    }
    if (v < 0) return -1;
    *idx = v & 63;
    return v >> 6;
}

/* The view of the region that starts at top itself (index into t->views, -1 none), which
 * then answers for [below, top] in place of a region top is a member of: a walk that entered
 * the loop at top, not at that region's start, is in top where that region's walk is in its
 * start (two equal states of one loop).  Cached as token_mask_region_view's entry. */
int32_t token_mask_region_view_own(token_mask_table *t, int32_t below, int32_t top)
{
    uint64_t key = (uint64_t)(uint32_t)(below + 1) << 32 | (uint32_t)top;
    int32_t *slot = token_hash_slot(t->rv_keys, t->rv_vals, t->rv_cap, key);
    if (slot && *slot >= 0 && (*slot & 63) == 0) return *slot >> 6;
    if (t->view_member && t->view_member[top] & 2) return -1;   /* tried: none (for some below) */
    int32_t v = token_region_view_make(t, below, top);
    if (v < 0) {
        t->view_member[top] |= 2;
        return -1;
    }
    slot = token_hash_slot(t->rv_keys, t->rv_vals, t->rv_cap, key);   /* the table may have grown */
    if (slot) *slot = v;
    else token_hash_put(&t->rv_keys, &t->rv_vals, &t->rv_cap, t->rv_num++, key, v);
    return v >> 6;
}
