/* token_chain.c — bounded chains: positions of a length-bounded piece (a string with
 * maxLength); see token_mask.h ("Bounded chains"), the regions they use in token_region.c.
 * Every position of `"` char{lo,hi} `"` is its own state (k characters read), so none loops
 * and each would walk the whole trie.  Seen from position k with r = hi - k characters left,
 * the piece is the unbounded loop U ("char*", a region) cut after r characters: a token that
 * stays inside U is accepted iff the characters it starts are at most r, and every other token
 * either fails in U (rejected here too) or leaves U (walked on the real stack, which knows lo
 * and what follows).  U is not given: it is guessed from x's first character (x paired with
 * x's successor y1 = the target of most bytes, so the same step from both converging on one
 * state is an exit) and then checked state by state against the real automaton (below).
 * Labels (u, r) of every checked state are kept, so a chain is analysed once, not per
 * position.
 * Invariants: a label's r is exact, or a lower bound marked by + INT32_MAX / 2; view -1: not a
 * chain.  The analysis runs on t->probe, as the regions do. */
#include "grammar/token_mask_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/vec.h"

#define TOKEN_CHAIN_U 48        /* states of U */
#define TOKEN_CHAIN_TRIES 8     /* U refinements (a step U rejects that the chain allows) */

/* Checks that the states reachable from x inside U are U cut after a fixed count: labels
 * every one (u, s: characters started since x), s <= cap.  For each labelled (y, u, s) and
 * class c: U rejects -> y rejects; U moves to u' -> y moves locally to a state labelled
 * (u', s') with s' = s + (u == 0) while s' <= r_x, and y rejects once s' > r_x, where r_x is
 * the largest s labelled.  A step U rejects that y allows is made an exit of U (*widened set;
 * no label depends on it, so the check goes on); a step U takes that y leaves the depth by is
 * made an exit too (return 0: retry, as states were labelled through it); any other mismatch
 * returns -1.  1: checked, *r_x set, *capped when some state past cap was not explored or the
 * piece loops after its bounded part (r_x is then a lower bound). */
static int token_chain_check(token_mask_table *t, int32_t x, int32_t *U, int32_t cap, int32_t *r_x, int *capped,
                             int32_t *loop, int *widened)
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
        const int32_t *row = token_region_row(t, y);   /* no other row is asked for below */
        for (int32_t c = 0; c < C; c++) {
            int32_t ue = U[u * C + c];
            if (ue == -2) continue;
            int32_t o = row[c];
            if (ue == -1) {
                if (o != -1) { U[u * C + c] = -2; *widened = 1; }
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
 * over classes, those that cannot return to 0 dropped (steps into them leave); ren (or NULL):
 * [nu] each U state's number there, -1 dropped. */
static int32_t *token_chain_sig(const dpda *d, const int32_t *U, int32_t nu, int32_t *sig_len, int32_t *ren_out)
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
    if (ren_out) memcpy(ren_out, ren, (size_t)nu * sizeof *ren);
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
    int32_t *sig = token_chain_sig(t->d, U, nu, &sig_len, NULL);
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
    for (int32_t k = 0; k < nm; k++) {
        const int32_t *row = token_region_row(t, members[k]);
        for (int32_t c = 0; c < C; c++) {
            int32_t o = row[c], v = o == -1 ? -1 : -2;
            for (int32_t j = 0; o >= 0 && j < nm; j++)
                if (members[j] == o) v = j;
            U[k * C + c] = v;
        }
    }
    *nu = nm;
    return 1;
}

/* The real state of every (local state of the region, characters started) that the last
 * check labelled, into v->chain_z (left NULL when two states share one: then a token's exit
 * state is not known from its counts); r0: the label of the state checked from. */
static void token_chain_states(token_mask_table *t, token_region_view *v, const int32_t *ren, int32_t nr,
                               int32_t cap, int32_t r0)
{
    int32_t zs = cap + 1;
    int32_t *z = malloc((size_t)nr * (size_t)zs * sizeof *z);
    LL_ASSERT(z);
    memset(z, 0xff, (size_t)nr * (size_t)zs * sizeof *z);
    for (int64_t q = 0; q < t->chain_q.n; q++) {
        int32_t u = ren[t->chain_l.p[q].u], sq = t->chain_l.p[q].r, y = t->chain_q.p[q];
        if (u < 0 || sq > cap) continue;
        if (t->d->state_counter[y] >= 0) { free(z); return; }   /* its count would matter */
        int32_t *slot = &z[u * zs + sq];
        if (*slot >= 0 && *slot != y) { free(z); return; }
        *slot = y;
    }
    v->chain_z = z;
    v->chain_zs = zs;
    v->chain_r0 = r0;
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
const token_chain_label *token_mask_chain(token_mask_table *t, int32_t below, int32_t x)
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
    const int32_t *row1 = y1 >= 0 ? token_region_row(t, y1) : NULL;
    for (int32_t c = 0; c < C && row1 && !loops; c++) loops = row1[c] == y1;
    if (y1 < 0 || best < 4 || loops) { token_chain_put(t, below, x, fail); return NULL; }
    /* guess U: x's first character, paired with y1's */
    int32_t us[TOKEN_CHAIN_U], pr[TOKEN_CHAIN_U], nu = 1, y2 = -3;
    int32_t *U = malloc((size_t)TOKEN_CHAIN_U * (size_t)C * sizeof *U);
    LL_ASSERT(U);
    us[0] = x;
    pr[0] = y1;
    int ok = 1;
    int32_t ra[256];   /* us[i]'s row (copied: asking for pr[i]'s may move the pool) */
    for (int32_t i = 0; i < nu && ok; i++) {
        memcpy(ra, token_region_row(t, us[i]), (size_t)C * sizeof *ra);
        const int32_t *rb = pr[i] >= 0 ? token_region_row(t, pr[i]) : NULL;
        for (int32_t c = 0; c < C && ok; c++) {
            int32_t oa = ra[c];
            int32_t ob = rb ? rb[c] : -3;
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
        int widened = 0;
        while (tries++ < TOKEN_CHAIN_TRIES && (rc = token_chain_check(t, x, U, 8, &r_x, &capped, &loop, &widened)) == 0) {}
        token_region_view rv;
        int32_t vi = -1;
        if (rc == 1 && loop >= 0 && !token_chain_same_loop(t, below, loop, U, nu)) {
            /* the bounded part merges into the loop (a character started before minLength may
             * end in the loop's own states): take U from the loop and check again */
            rc = token_chain_u_from_loop(t, below, loop, U, &nu) ? 0 : -1;
            for (tries = 0; rc == 0 && tries++ < TOKEN_CHAIN_TRIES;)
                rc = token_chain_check(t, x, U, 8, &r_x, &capped, &loop, &widened);
            if (rc == 1 && loop >= 0 && !token_chain_same_loop(t, below, loop, U, nu)) rc = -1;
        }
        int32_t ren[TOKEN_CHAIN_U], nr = 0, cap = 0;
        while (rc == 1) {
            int32_t sig_len;
            int32_t *sig = token_chain_sig(d, U, nu, &sig_len, ren);
            nr = sig_len / 256;
            token_region_get(t, sig, sig_len, token_sig_hash(sig, sig_len), &rv);
            cap = 2 * token_chain_k(&rv) + 1;   /* labels usable for k + 1 positions */
            widened = 0;
            rc = token_chain_check(t, x, U, cap, &r_x, &capped, &loop, &widened);
            if (rc == 1 && widened) {   /* U's table gained exits: its region is another one */
                sig = token_chain_sig(d, U, nu, &sig_len, ren);
                nr = sig_len / 256;
                token_region_get(t, sig, sig_len, token_sig_hash(sig, sig_len), &rv);
                if (2 * token_chain_k(&rv) + 1 != cap) rc = 0;   /* another horizon: check again */
            }
            if (rc == 1 && loop >= 0 && !token_chain_same_loop(t, below, loop, U, nu)) rc = -1;
            if (rc == 1) {
                if (loop < 0)   /* a state reached with two counts has one label: no states by count */
                    token_chain_states(t, &rv, ren, nr, cap, r_x + (capped ? INT32_MAX / 2 : 0));
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
