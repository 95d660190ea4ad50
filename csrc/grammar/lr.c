/* lr.c — LR(0) item sets + DeRemer–Pennello LALR(1) lookaheads over byte classes, and the
 * LR(1) (Pager-merged) state graph used when LALR(1) has a conflict; see lr.h.
 *
 * Internal symbols of a rule body ("xsym"): >= 0 a nonterminal, -1 EOF, <= -2 a terminal
 * SET of classes (id k encoded as -(k + 2), the class list interned in `sets`).  Rules that
 * differ only in a final terminal (regularize's  A ::= B [a-c] | B [x-z]) are merged into one
 * rule over the union set, so they share one LR state.  LR symbols of transitions: classes
 * 0..C-1, EOF = C, nonterminal A = C + 1 + A.  Items are body_off[rule] + rule + dot. */
#include "grammar/lr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/vec.h"

typedef struct lr_trans {
    int32_t from, sym, to;
} lr_trans;

typedef struct lr_ctx {
    const grammar *g;
    lr_automaton *a;
    int32_t C, nn, nr;              /* classes, nonterminals (incl. augmented), rules (incl.) */
    int32_t *body_off;              /* [nr + 1] into body */
    int32_t *body;                  /* xsyms */
    int32_t *rstart, *rlist;        /* rules by lhs (CSR) */
    int32_t *item_rule;             /* [num_items] */
    int32_t num_items;
    uint8_t *nullable;              /* [nn] */
    vec_map range_set;              /* terminal range -> set id + 1 */
    vec_intern sets;                /* class lists of terminal sets */
    vec_intern kernels;
    VEC(lr_trans) trans;            /* sorted by from (construction order) */
    int64_t *trans_start;           /* [num_states + 1] */
    vec_i32 red_state, red_rule;    /* complete items per state */
    int32_t *nt_mark;
    int32_t stamp;
    int32_t W;                      /* 64-bit words of a terminal set */
    int32_t *ns;                    /* [num_items + 1] the body after the dot is nullable */
    vec_i32 state_core;             /* [num_states] kernel id (in `kernels`) of each state */
    int32_t num_states;
    const char *kind;               /* "LALR(1)" or "LR(1)": the automaton, for messages */
    int32_t conflict_lhs[2];        /* lhs of the rules of the last conflict reported */
    vec_i32 sort_tmp;               /* lr_sort_records' scratch */
} lr_ctx;

static int32_t lr_rule_lhs_nt(const lr_ctx *c, int32_t r)
{
    return r < c->nr - 1 ? c->a->rule_lhs[r] : -1;
}

static int32_t lr_next_sym(const lr_ctx *c, int32_t item)
{
    int32_t r = c->item_rule[item];
    int32_t dot = item - (c->body_off[r] + r);
    return dot < c->body_off[r + 1] - c->body_off[r] ? c->body[c->body_off[r] + dot] : INT32_MIN;
}

static const int32_t *lr_set_classes(const lr_ctx *c, int32_t set, int32_t *n)
{
    return vec_intern_get(&c->sets, set, n);
}

static int32_t lr_range_set(lr_ctx *c, uint32_t range)
{
    int32_t *slot = vec_map_at(&c->range_set, range);
    if (!*slot) {
        uint8_t seen[256] = {0};
        int32_t cl[256], n = 0;
        for (int b = (int)(range & 0xff); b <= (int)(range >> 8); b++) {
            if (seen[c->a->class_of[b]]) continue;
            seen[c->a->class_of[b]] = 1;
            cl[n++] = c->a->class_of[b];
        }
        int added;
        *slot = vec_intern_add(&c->sets, cl, n, &added) + 1;
    }
    return *slot - 1;
}

static void lr_goto_put(lr_automaton *a, int32_t state, int32_t nt, int32_t to)
{
    uint64_t key = (uint64_t)(uint32_t)state << 32 | (uint32_t)nt;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint64_t i = (h ^ (h >> 31)) & (uint64_t)(a->goto_cap - 1);
    while (a->goto_keys[i] != UINT64_MAX && a->goto_keys[i] != key) i = (i + 1) & (uint64_t)(a->goto_cap - 1);
    if (a->goto_keys[i] == UINT64_MAX) a->num_gotos++;
    a->goto_keys[i] = key;
    a->goto_vals[i] = to;
}

/* closure of a kernel into items (kernel first, then predicted dot-0 items) */
static void lr_closure(lr_ctx *c, const int32_t *kernel, int32_t n, vec_i32 *items)
{
    items->n = 0;
    c->stamp++;
    for (int32_t i = 0; i < n; i++) VEC_PUSH(*items, kernel[i]);
    for (int64_t i = 0; i < items->n; i++) {
        int32_t s = lr_next_sym(c, items->p[i]);
        if (s < 0) continue;   /* terminal, EOF or end of rule (INT32_MIN) */
        if (c->nt_mark[s] == c->stamp) continue;
        c->nt_mark[s] = c->stamp;
        for (int32_t k = c->rstart[s]; k < c->rstart[s + 1]; k++) {
            int32_t r = c->rlist[k];
            VEC_PUSH(*items, c->body_off[r] + r);
        }
    }
}

typedef struct lr_pair {
    int32_t sym, item;
} lr_pair;

/* Sorts n records of `stride` (2 or 3) non-negative int32 fields (lr_pair, lr1_pair, lr_lb:
 * plain structs of int32, no padding) by (field 0, field 1); the order of records equal on
 * both is unspecified (callers OR or dedupe over them).  Insertion sort when short, else LSD
 * radix by bytes through tmp: qsort's comparison callbacks and its element-by-element copies
 * of 12-byte records were an eighth of the compile. */
static void lr_sort_records(int32_t *rec, int64_t n, int stride, vec_i32 *tmp)
{
    if (n <= 24) {
        int32_t x[3];
        for (int64_t i = 1; i < n; i++) {
            memcpy(x, rec + i * stride, (size_t)stride * sizeof *x);
            int64_t j = i;
            while (j > 0) {
                const int32_t *y = rec + (j - 1) * stride;
                if (y[0] < x[0] || (y[0] == x[0] && y[1] <= x[1])) break;
                memcpy(rec + j * stride, y, (size_t)stride * sizeof *x);
                j--;
            }
            memcpy(rec + j * stride, x, (size_t)stride * sizeof *x);
        }
        return;
    }
    VEC_RESERVE(*tmp, n * stride);
    int32_t *src = rec, *dst = tmp->p;
    for (int f = 1; f >= 0; f--) {
        uint32_t mx = 0, bits = 0;
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)src[i * stride + f];
            bits |= v;
            if (v > mx) mx = v;
        }
        if (mx < 256) {
            if (!mx) continue;   /* all zero: already in order on this field */
        } else if ((int64_t)mx <= 4 * n) {
            /* one counting pass over the whole range */
            int64_t *cnt = calloc((size_t)mx + 2, sizeof *cnt);
            LL_ASSERT(cnt);
            for (int64_t i = 0; i < n; i++) cnt[(uint32_t)src[i * stride + f] + 1]++;
            for (uint32_t k = 0; k <= mx; k++) cnt[k + 1] += cnt[k];
            for (int64_t i = 0; i < n; i++) {
                int64_t at = cnt[(uint32_t)src[i * stride + f]]++;
                memcpy(dst + at * stride, src + i * stride, (size_t)stride * sizeof *dst);
            }
            free(cnt);
            int32_t *t = src; src = dst; dst = t;
            continue;
        }
        for (int sh = 0; sh < 32 && (bits >> sh); sh += 8) {
            int64_t cnt[257] = {0};
            for (int64_t i = 0; i < n; i++) cnt[((uint32_t)src[i * stride + f] >> sh & 0xffu) + 1]++;
            for (int k = 0; k < 256; k++) cnt[k + 1] += cnt[k];
            for (int64_t i = 0; i < n; i++) {
                int64_t at = cnt[(uint32_t)src[i * stride + f] >> sh & 0xffu]++;
                memcpy(dst + at * stride, src + i * stride, (size_t)stride * sizeof *dst);
            }
            int32_t *t = src; src = dst; dst = t;
        }
    }
    if (src != rec) memcpy(rec, src, (size_t)(n * stride) * sizeof *rec);
}

/* ---- digraph (DeRemer & Pennello): F(x) = F'(x) ∪ ⋃ F(y) for x R y ---- */

typedef struct lr_digraph {
    const int64_t *start;   /* [n + 1] CSR of R */
    const int32_t *edges;
    uint64_t *F;            /* [n * W] in/out */
    int32_t W;
    int32_t *N;             /* [n] */
    vec_i32 stack;
} lr_digraph;

static void lr_traverse(lr_digraph *d, int32_t x)
{
    /* iterative: frames of (x, next edge) */
    typedef struct { int32_t x; int64_t e; int32_t depth; } fr;
    VEC(fr) calls = {0};
    VEC_PUSH(d->stack, x);
    int32_t depth = (int32_t)d->stack.n;
    d->N[x] = depth;
    VEC_PUSH(calls, ((fr){x, d->start[x], depth}));
    while (calls.n) {
        fr *f = &calls.p[calls.n - 1];
        int32_t v = f->x;
        if (f->e < d->start[v + 1]) {
            int32_t y = d->edges[f->e++];
            if (d->N[y] == 0) {
                VEC_PUSH(d->stack, y);
                int32_t dy = (int32_t)d->stack.n;
                d->N[y] = dy;
                VEC_PUSH(calls, ((fr){y, d->start[y], dy}));
                continue;
            }
            if (d->N[y] < d->N[v]) d->N[v] = d->N[y];
            for (int32_t w = 0; w < d->W; w++) d->F[(int64_t)v * d->W + w] |= d->F[(int64_t)y * d->W + w];
            continue;
        }
        if (d->N[v] == f->depth) {
            for (;;) {
                int32_t top = d->stack.p[--d->stack.n];
                d->N[top] = INT32_MAX;
                if (top == v) break;
                memcpy(d->F + (int64_t)top * d->W, d->F + (int64_t)v * d->W, (size_t)d->W * sizeof *d->F);
            }
        }
        calls.n--;
        if (calls.n) {
            int32_t u = calls.p[calls.n - 1].x;
            if (d->N[v] < d->N[u]) d->N[u] = d->N[v];
            for (int32_t w = 0; w < d->W; w++) d->F[(int64_t)u * d->W + w] |= d->F[(int64_t)v * d->W + w];
        }
    }
    VEC_FREE(calls);
}

static void lr_digraph_run(const int64_t *start, const int32_t *edges, int32_t n, uint64_t *F, int32_t W)
{
    lr_digraph d = {start, edges, F, W, calloc((size_t)n + 1, sizeof(int32_t)), {0}};
    LL_ASSERT(d.N);
    for (int32_t x = 0; x < n; x++)
        if (d.N[x] == 0) lr_traverse(&d, x);
    free(d.N);
    VEC_FREE(d.stack);
}

/* CSR from (src, dst) pairs */
static void lr_csr(const vec_i32 *src, const vec_i32 *dst, int32_t n, int64_t **start, int32_t **edges)
{
    *start = calloc((size_t)n + 2, sizeof **start);
    *edges = malloc(((size_t)src->n + 1) * sizeof **edges);
    LL_ASSERT(*start && *edges);
    for (int64_t i = 0; i < src->n; i++) (*start)[src->p[i] + 1]++;
    for (int32_t i = 0; i < n; i++) (*start)[i + 1] += (*start)[i];
    int64_t *fill = malloc(((size_t)n + 1) * sizeof *fill);
    LL_ASSERT(fill);
    memcpy(fill, *start, (size_t)(n + 1) * sizeof *fill);
    for (int64_t i = 0; i < src->n; i++) (*edges)[fill[src->p[i]]++] = dst->p[i];
    free(fill);
}

/* ---- readable conflict messages ---- */

static void lr_put_class(const lr_automaton *a, int32_t t, char *buf, size_t cap)
{
    if (t == a->num_classes) { snprintf(buf, cap, "end of input"); return; }
    int b = 0;
    while (b < 256 && a->class_of[b] != t) b++;
    if (b >= 0x20 && b < 0x7f && b != '\'') snprintf(buf, cap, "'%c'", b);
    else snprintf(buf, cap, "0x%02X", b);
}

static void lr_put_rule(const lr_ctx *c, int32_t r, grammar_buf *out)
{
    const grammar *g = c->g;
    const char *lhs = r == c->nr - 1 ? "$start" : g->names[c->a->rule_lhs[r]];
    grammar_buf_put(out, lhs, strlen(lhs));
    grammar_buf_put(out, " ::=", 4);
    for (int32_t i = c->body_off[r]; i < c->body_off[r + 1]; i++) {
        int32_t s = c->body[i];
        char tmp[32];
        if (s >= 0) {
            const char *n = s < g->num_nts ? g->names[s] : "$start";
            grammar_buf_put(out, " ", 1);
            grammar_buf_put(out, n, strlen(n));
            continue;
        }
        if (s == -1) { grammar_buf_put(out, " $", 2); continue; }
        int32_t m;
        const int32_t *cl = lr_set_classes(c, -s - 2, &m);
        uint8_t in[256] = {0};
        int count = 0, first = -1;
        for (int b = 0; b < 256; b++)
            for (int32_t j = 0; j < m; j++)
                if (c->a->class_of[b] == cl[j]) { in[b] = 1; count++; if (first < 0) first = b; }
        if (count == 1 && first >= 0x20 && first < 0x7f) {
            snprintf(tmp, sizeof tmp, " '%c'", first);
            grammar_buf_put(out, tmp, strlen(tmp));
            continue;
        }
        grammar_buf_put(out, " [", 2);
        for (int b = 0; b < 256;) {
            if (!in[b]) { b++; continue; }
            int e = b;
            while (e + 1 < 256 && in[e + 1]) e++;
            if (b >= 0x21 && b < 0x7f && b != ']' && b != '\\') snprintf(tmp, sizeof tmp, "%c", b);
            else snprintf(tmp, sizeof tmp, "\\x%02X", b);
            grammar_buf_put(out, tmp, strlen(tmp));
            if (e > b) {
                if (e >= 0x21 && e < 0x7f && e != ']' && e != '\\') snprintf(tmp, sizeof tmp, "-%c", e);
                else snprintf(tmp, sizeof tmp, "-\\x%02X", e);
                grammar_buf_put(out, tmp, strlen(tmp));
            }
            b = e + 1;
        }
        grammar_buf_put(out, "]", 1);
    }
}

static status_t lr_conflict(lr_ctx *c, int32_t q, int32_t t, int32_t r1, int32_t other)
{
    /* example input: BFS over transitions from the start state */
    lr_automaton *a = c->a;
    int32_t n = a->num_states;
    int32_t *par = malloc((size_t)n * sizeof *par), *psym = malloc((size_t)n * sizeof *psym);
    int32_t *queue = malloc((size_t)n * sizeof *queue);
    LL_ASSERT(par && psym && queue);
    for (int32_t i = 0; i < n; i++) par[i] = -2;
    int32_t qh = 0, qt = 0;
    queue[qt++] = a->start_state;
    par[a->start_state] = -1;
    while (qh < qt) {
        int32_t s = queue[qh++];
        for (int64_t k = c->trans_start[s]; k < c->trans_start[s + 1]; k++) {
            int32_t to = c->trans.p[k].to;
            if (par[to] != -2) continue;
            par[to] = s;
            psym[to] = c->trans.p[k].sym;
            queue[qt++] = to;
        }
    }
    vec_i32 path = {0};
    for (int32_t s = q; s >= 0 && par[s] >= 0; s = par[s]) VEC_PUSH(path, psym[s]);
    grammar_buf ex = {0};
    grammar_buf_put(&ex, "", 0);
    for (int64_t i = path.n - 1; i >= 0; i--) {
        int32_t sym = path.p[i];
        char tmp[300];
        if (sym < c->C) {
            int b = 0;
            while (b < 256 && a->class_of[b] != sym) b++;
            if (b >= 0x20 && b < 0x7f) snprintf(tmp, sizeof tmp, "%c", b);
            else snprintf(tmp, sizeof tmp, "\\x%02X", b);
        } else {
            int32_t nt = sym - c->C - 1;
            snprintf(tmp, sizeof tmp, "<%.250s>", nt < c->g->num_nts ? c->g->names[nt] : "$start");
        }
        grammar_buf_put(&ex, tmp, strlen(tmp));
    }
    char byte[32];
    lr_put_class(a, t, byte, sizeof byte);
    grammar_buf rules = {0};
    grammar_buf_put(&rules, "reduce ", 7);
    lr_put_rule(c, r1, &rules);
    c->conflict_lhs[0] = lr_rule_lhs_nt(c, r1);
    c->conflict_lhs[1] = other >= 0 ? lr_rule_lhs_nt(c, other) : -1;
    if (other >= 0) {
        grammar_buf_put(&rules, " vs reduce ", 11);
        lr_put_rule(c, other, &rules);
    } else {
        /* the shifting item: one whose next symbol covers class t */
        int32_t kn;
        const int32_t *kernel = vec_intern_get(&c->kernels, c->state_core.p[q], &kn);
        vec_i32 items = {0};
        lr_closure(c, kernel, kn, &items);
        for (int64_t i = 0; i < items.n; i++) {
            int32_t s = lr_next_sym(c, items.p[i]);
            int hit = 0;
            if (s == -1) hit = t == c->C;
            else if (s <= -2 && s != INT32_MIN) { /* INT32_MIN: a complete item shifts nothing */
                int32_t m;
                const int32_t *cl = lr_set_classes(c, -s - 2, &m);
                for (int32_t j = 0; j < m; j++) hit |= cl[j] == t;
            }
            if (hit) {
                c->conflict_lhs[1] = lr_rule_lhs_nt(c, c->item_rule[items.p[i]]);
                grammar_buf_put(&rules, " vs shift in ", 13);
                lr_put_rule(c, c->item_rule[items.p[i]], &rules);
                break;
            }
        }
        VEC_FREE(items);
    }
    status_t st = status_set(STATUS_INVALID_ARG, "grammar is not %s: %s conflict on %s after input '%.300s': %.600s",
                             c->kind, other >= 0 ? "reduce/reduce" : "shift/reduce", byte, ex.p, rules.p);
    free(ex.p);
    free(rules.p);
    VEC_FREE(path);
    free(par);
    free(psym);
    free(queue);
    return st;
}

/* ---- construction ---- */

/* Walks rule r's body from state cur (position i) for nonterminal transition x = (p, lhs):
 * records includes edges (state, A) -> x where the rest of the body is nullable, and the
 * lookback (final state, r) -> x.  A terminal range whose classes lead to different states
 * splits the walk. */
typedef struct lr_walk_out {
    const lr_automaton *xi;   /* (state, nt) -> x */
    const int32_t *ns;        /* [item] suffix from the dot is nullable */
    vec_i32 *rs, *rd, *lbs, *lbr, *lbx;
} lr_walk_out;

static void lr_walk(lr_ctx *c, const lr_walk_out *o, int32_t x, int32_t r, int32_t i, int32_t cur)
{
    lr_automaton *a = c->a;
    int32_t len = a->rule_len[r], base = c->body_off[r] + r;
    for (; i < len; i++) {
        int32_t s = c->body[c->body_off[r] + i];
        if (s >= 0) {
            if (o->ns[base + i + 1]) {
                VEC_PUSH(*o->rs, lr_goto(o->xi, cur, s));
                VEC_PUSH(*o->rd, x);
            }
            cur = lr_goto(a, cur, s);
        } else if (s == -1) {
            cur = a->action[(int64_t)cur * a->num_terms + c->C] - 1;
        } else {
            int32_t m;
            const int32_t *cl = lr_set_classes(c, -s - 2, &m);
            int32_t first = a->action[(int64_t)cur * a->num_terms + cl[0]] - 1;
            for (int32_t j = 1; j < m; j++) {
                int32_t v = a->action[(int64_t)cur * a->num_terms + cl[j]] - 1;
                if (v == first) continue;
                int dup = 0;
                for (int32_t h = 1; h < j && !dup; h++) dup = a->action[(int64_t)cur * a->num_terms + cl[h]] - 1 == v;
                if (!dup) lr_walk(c, o, x, r, i + 1, v);
            }
            cur = first;
        }
        LL_ASSERT(cur >= 0);
    }
    VEC_PUSH(*o->lbs, cur);
    VEC_PUSH(*o->lbr, r);
    VEC_PUSH(*o->lbx, x);
}

typedef struct lr_lb {
    int32_t state, rule, x;
} lr_lb;

static void lr_prepare(lr_ctx *c)
{
    const grammar *g = c->g;
    lr_automaton *a = c->a;
    /* classes, then bodies with terminal sets; merge rules that differ only in a final terminal */
    a->num_classes = c->C = grammar_byte_classes(g, a->class_of);
    a->num_terms = c->C + 1;
    c->nn = g->num_nts + 1;
    vec_intern groups = {0};   /* [lhs, n, body[0..n-1) ...] -> merged rule */
    vec_i32 key = {0}, mlhs = {0}, moff = {0}, mbody = {0};
    VEC(uint64_t) mlast = {0};   /* per merged rule: class bitset of a mergeable final terminal (4 words) */
    vec_i32 mmerge = {0};        /* 1 when the final symbol is a mergeable terminal */
    vec_i32 msrc = {0};          /* per merged rule: the first grammar rule of its group */
    int added;
    for (int32_t r = 0; r < g->num_rules; r++) {
        const grammar_sym *s = grammar_rule_syms(g, &g->rules[r]);
        int32_t n = g->rules[r].num_syms;
        key.n = 0;
        VEC_PUSH(key, g->rules[r].lhs);
        VEC_PUSH(key, n);
        for (int32_t i = 0; i < n; i++)
            VEC_PUSH(key, grammar_is_nt(s[i]) ? grammar_nt_index(s[i]) : -lr_range_set(c, s[i] & 0xffffu) - 2);
        int last_term = n > 0 && !grammar_is_nt(s[n - 1]);
        int32_t id = vec_intern_add(&groups, key.p, (int32_t)(last_term ? key.n - 1 : key.n), &added);
        if (!last_term && !added) {
            /* an exact duplicate of a rule without a final terminal: keep one copy */
            continue;
        }
        if (added) {
            VEC_PUSH(mlhs, g->rules[r].lhs);
            VEC_PUSH(msrc, r);
            VEC_PUSH(moff, (int32_t)mbody.n);
            for (int32_t i = 0; i < n; i++) VEC_PUSH(mbody, key.p[2 + i]);
            VEC_PUSH(mmerge, last_term);
            for (int w = 0; w < 4; w++) VEC_PUSH(mlast, 0);
        }
        if (last_term) {
            int32_t m;
            const int32_t *cl = lr_set_classes(c, -key.p[key.n - 1] - 2, &m);
            for (int32_t j = 0; j < m; j++) mlast.p[(int64_t)id * 4 + cl[j] / 64] |= 1ull << (cl[j] % 64);
        }
    }
    int32_t nm = (int32_t)mlhs.n;
    c->nr = nm + 1;
    c->body_off = malloc(((size_t)c->nr + 1) * sizeof *c->body_off);
    c->body = malloc(((size_t)mbody.n + 2) * sizeof *c->body);
    LL_ASSERT(c->body_off && c->body);
    int32_t at = 0;
    for (int32_t r = 0; r < nm; r++) {
        c->body_off[r] = at;
        int32_t end = r + 1 < nm ? moff.p[r + 1] : (int32_t)mbody.n;
        for (int32_t i = moff.p[r]; i < end; i++) c->body[at++] = mbody.p[i];
        if (mmerge.p[r]) {
            int32_t cl[256], m = 0;
            for (int w = 0; w < 4; w++)
                for (uint64_t x = mlast.p[(int64_t)r * 4 + w]; x; x &= x - 1) cl[m++] = w * 64 + __builtin_ctzll(x);
            c->body[at - 1] = -vec_intern_add(&c->sets, cl, m, &added) - 2;
        }
    }
    c->body_off[nm] = at;
    c->body[at++] = g->start;
    c->body[at++] = -1;
    c->body_off[c->nr] = at;
    a->num_rules = c->nr;
    a->num_nts = c->nn;
    a->rule_len = malloc((size_t)c->nr * sizeof *a->rule_len);
    a->rule_lhs = malloc((size_t)c->nr * sizeof *a->rule_lhs);
    a->rule_src = malloc((size_t)c->nr * sizeof *a->rule_src);
    LL_ASSERT(a->rule_len && a->rule_lhs && a->rule_src);
    for (int32_t r = 0; r < c->nr; r++) {
        a->rule_len[r] = c->body_off[r + 1] - c->body_off[r];
        a->rule_lhs[r] = r < nm ? mlhs.p[r] : g->num_nts;
        a->rule_src[r] = r < nm ? msrc.p[r] : -1;
    }
    VEC_FREE(msrc);
    vec_intern_free(&groups);
    VEC_FREE(key); VEC_FREE(mlhs); VEC_FREE(moff); VEC_FREE(mbody); VEC_FREE(mlast); VEC_FREE(mmerge);
    c->rstart = calloc((size_t)c->nn + 1, sizeof *c->rstart);
    c->rlist = malloc((size_t)c->nr * sizeof *c->rlist);
    LL_ASSERT(c->rstart && c->rlist);
    for (int32_t r = 0; r < c->nr; r++) c->rstart[a->rule_lhs[r] + 1]++;
    for (int32_t i = 0; i < c->nn; i++) c->rstart[i + 1] += c->rstart[i];
    {
        int32_t *fill = malloc(((size_t)c->nn + 1) * sizeof *fill);
        LL_ASSERT(fill);
        memcpy(fill, c->rstart, (size_t)c->nn * sizeof *fill);
        for (int32_t r = 0; r < c->nr; r++) c->rlist[fill[a->rule_lhs[r]]++] = r;
        free(fill);
    }
    c->num_items = at + c->nr;
    c->item_rule = malloc((size_t)c->num_items * sizeof *c->item_rule);
    LL_ASSERT(c->item_rule);
    for (int32_t r = 0; r < c->nr; r++)
        for (int32_t d = 0; d <= a->rule_len[r]; d++) c->item_rule[c->body_off[r] + r + d] = r;
    /* nullable nonterminals (iterate to a fixpoint; grammars here are shallow in ε) */
    c->nullable = calloc((size_t)c->nn + 1, 1);
    LL_ASSERT(c->nullable);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t r = 0; r < c->nr; r++) {
            if (c->nullable[a->rule_lhs[r]]) continue;
            int ok = 1;
            for (int32_t i = c->body_off[r]; i < c->body_off[r + 1] && ok; i++) ok = c->body[i] >= 0 && c->nullable[c->body[i]];
            if (ok) { c->nullable[a->rule_lhs[r]] = 1; changed = 1; }
        }
    }
    /* ns[item]: the body after the dot is nullable */
    int32_t *ns = c->ns = malloc(((size_t)at + c->nr + 1) * sizeof *ns);   /* indexed by item: body_off[r] + r + dot */
    LL_ASSERT(ns);
    for (int32_t r = 0; r < c->nr; r++) {
        int32_t base = c->body_off[r] + r, len = a->rule_len[r];
        ns[base + len] = 1;
        for (int32_t d = len - 1; d >= 0; d--) {
            int32_t s = c->body[c->body_off[r] + d];
            ns[base + d] = ns[base + d + 1] && s >= 0 && c->nullable[s];
        }
    }
    c->W = (a->num_terms + 63) / 64;
    c->nt_mark = calloc((size_t)c->nn + 1, sizeof *c->nt_mark);
    LL_ASSERT(c->nt_mark);
}

/* LR(0) item sets: one state per kernel (the LALR(1) automaton's states). */
static status_t lr_graph_lr0(lr_ctx *c)
{
    int added;
    int32_t k0 = c->body_off[c->nr - 1] + c->nr - 1;
    vec_intern_add(&c->kernels, &k0, 1, &added);
    vec_i32 items = {0}, kern = {0};
    VEC(lr_pair) pairs = {0};
    VEC(int64_t) tstart = {0};
    for (int32_t s = 0; s < vec_intern_num(&c->kernels); s++) {
        if (s >= LR_MAX_STATES) {
            VEC_FREE(pairs); VEC_FREE(kern); VEC_FREE(tstart); VEC_FREE(items);
            return status_set(STATUS_INVALID_ARG, "grammar too large: more than %d LR states", LR_MAX_STATES);
        }
        VEC_PUSH(tstart, c->trans.n);
        VEC_PUSH(c->state_core, s);
        int32_t kn;
        const int32_t *kernel = vec_intern_get(&c->kernels, s, &kn);
        vec_i32 kcopy = {0};
        VEC_RESERVE(kcopy, kn);
        memcpy(kcopy.p, kernel, (size_t)kn * sizeof *kernel);
        lr_closure(c, kcopy.p, kn, &items);
        VEC_FREE(kcopy);
        pairs.n = 0;
        for (int64_t i = 0; i < items.n; i++) {
            int32_t it = items.p[i], sym = lr_next_sym(c, it);
            if (sym == INT32_MIN) {
                VEC_PUSH(c->red_state, s);
                VEC_PUSH(c->red_rule, c->item_rule[it]);
            } else if (sym >= 0) {
                VEC_PUSH(pairs, ((lr_pair){c->C + 1 + sym, it + 1}));
            } else if (sym == -1) {
                VEC_PUSH(pairs, ((lr_pair){c->C, it + 1}));
            } else {
                int32_t m;
                const int32_t *cl = lr_set_classes(c, -sym - 2, &m);
                for (int32_t j = 0; j < m; j++) VEC_PUSH(pairs, ((lr_pair){cl[j], it + 1}));
            }
        }
        if (pairs.n) lr_sort_records(&pairs.p[0].sym, pairs.n, 2, &c->sort_tmp);
        for (int64_t i = 0; i < pairs.n;) {
            int64_t j = i;
            kern.n = 0;
            while (j < pairs.n && pairs.p[j].sym == pairs.p[i].sym) {
                if (j == i || pairs.p[j].item != pairs.p[j - 1].item) VEC_PUSH(kern, pairs.p[j].item);
                j++;
            }
            int32_t to = vec_intern_add(&c->kernels, kern.p, (int32_t)kern.n, &added);
            VEC_PUSH(c->trans, ((lr_trans){s, pairs.p[i].sym, to}));
            i = j;
        }
    }
    VEC_PUSH(tstart, c->trans.n);
    c->trans_start = tstart.p;
    VEC_FREE(pairs);
    VEC_FREE(kern);
    VEC_FREE(items);
    c->num_states = vec_intern_num(&c->kernels);
    return STATUS_OK;
}

/* Lookaheads (DeRemer & Pennello over the state graph c->trans, which may split LR(0) cores)
 * and the action table.  *conflict = 1 when the error is a conflict. */
static status_t lr_tables(lr_ctx *c, int *conflict)
{
    lr_automaton *a = c->a;
    status_t st = STATUS_OK;
    int32_t *ns = c->ns;
    *conflict = 0;
    int32_t n = a->num_states = c->num_states;
    a->start_state = 0;
    a->action = calloc((size_t)n * (size_t)a->num_terms, sizeof *a->action);
    a->default_rule = malloc((size_t)n * sizeof *a->default_rule);
    LL_ASSERT(a->action && a->default_rule);
    int64_t num_nt_trans = 0;
    for (int64_t k = 0; k < c->trans.n; k++) num_nt_trans += c->trans.p[k].sym > c->C;
    a->goto_cap = 16;
    while (a->goto_cap < num_nt_trans * 2 + 2) a->goto_cap *= 2;
    a->goto_keys = malloc((size_t)a->goto_cap * sizeof *a->goto_keys);
    a->goto_vals = malloc((size_t)a->goto_cap * sizeof *a->goto_vals);
    LL_ASSERT(a->goto_keys && a->goto_vals);
    memset(a->goto_keys, 0xff, (size_t)a->goto_cap * sizeof *a->goto_keys);
    /* nonterminal transitions are numbered x = 0..; goto_vals holds the target, xid the number */
    int32_t *x_from = malloc(((size_t)num_nt_trans + 1) * sizeof *x_from);
    int32_t *x_nt = malloc(((size_t)num_nt_trans + 1) * sizeof *x_nt);
    int32_t *x_to = malloc(((size_t)num_nt_trans + 1) * sizeof *x_to);
    LL_ASSERT(x_from && x_nt && x_to);
    int32_t nx = 0;
    a->accept_state = -1;
    for (int64_t k = 0; k < c->trans.n; k++) {
        lr_trans t = c->trans.p[k];
        if (t.sym <= c->C) {
            a->action[(int64_t)t.from * a->num_terms + t.sym] = t.to + 1;
            if (t.sym == c->C && t.from != 0) {
                /* EOF shift after $start ::= start . EOF */
                int32_t kn;
                const int32_t *kernel = vec_intern_get(&c->kernels, c->state_core.p[t.to], &kn);
                if (kn == 1 && c->item_rule[kernel[0]] == c->nr - 1) a->accept_state = t.to;
            }
            if (t.sym == c->C && t.from == 0) {
                int32_t kn;
                const int32_t *kernel = vec_intern_get(&c->kernels, c->state_core.p[t.to], &kn);
                if (kn == 1 && c->item_rule[kernel[0]] == c->nr - 1) a->accept_state = t.to;
            }
        } else {
            lr_goto_put(a, t.from, t.sym - c->C - 1, t.to);
            x_from[nx] = t.from;
            x_nt[nx] = t.sym - c->C - 1;
            x_to[nx] = t.to;
            nx++;
        }
    }
    /* x index lookup: a second hash over the same keys */
    lr_automaton xi = {0};
    xi.goto_cap = a->goto_cap;
    xi.goto_keys = malloc((size_t)xi.goto_cap * sizeof *xi.goto_keys);
    xi.goto_vals = malloc((size_t)xi.goto_cap * sizeof *xi.goto_vals);
    LL_ASSERT(xi.goto_keys && xi.goto_vals);
    memset(xi.goto_keys, 0xff, (size_t)xi.goto_cap * sizeof *xi.goto_keys);
    for (int32_t x = 0; x < nx; x++) lr_goto_put(&xi, x_from[x], x_nt[x], x);
    /* DR and reads */
    int32_t W = c->W;
    uint64_t *F = calloc(((size_t)nx + 1) * (size_t)W, sizeof *F);
    LL_ASSERT(F);
    vec_i32 rs = {0}, rd = {0};
    for (int32_t x = 0; x < nx; x++) {
        int32_t q = x_to[x];
        for (int64_t k = c->trans_start[q]; k < c->trans_start[q + 1]; k++) {
            int32_t sym = c->trans.p[k].sym;
            if (sym <= c->C) F[(int64_t)x * W + sym / 64] |= 1ull << (sym % 64);
            else if (c->nullable[sym - c->C - 1]) {
                VEC_PUSH(rs, x);
                VEC_PUSH(rd, lr_goto(&xi, q, sym - c->C - 1));
            }
        }
    }
    int64_t *es;
    int32_t *ee;
    lr_csr(&rs, &rd, nx, &es, &ee);
    lr_digraph_run(es, ee, nx, F, W);
    free(es);
    free(ee);
    /* includes and lookback */
    rs.n = rd.n = 0;
    vec_i32 lbs = {0}, lbr = {0}, lbx = {0};
    lr_walk_out wo = {&xi, ns, &rs, &rd, &lbs, &lbr, &lbx};
    for (int32_t x = 0; x < nx; x++) {
        int32_t B = x_nt[x];
        for (int32_t k = c->rstart[B]; k < c->rstart[B + 1]; k++) lr_walk(c, &wo, x, c->rlist[k], 0, x_from[x]);
    }
    lr_csr(&rs, &rd, nx, &es, &ee);
    lr_digraph_run(es, ee, nx, F, W);
    free(es);
    free(ee);
    /* lookaheads → reductions */
    VEC(lr_lb) lb = {0};
    for (int64_t i = 0; i < lbs.n; i++) VEC_PUSH(lb, ((lr_lb){lbs.p[i], lbr.p[i], lbx.p[i]}));
    if (lb.n) lr_sort_records(&lb.p[0].state, lb.n, 3, &c->sort_tmp);
    uint64_t *la = malloc((size_t)W * sizeof *la);
    LL_ASSERT(la);
    for (int64_t i = 0; i < lb.n && st == STATUS_OK;) {
        int64_t j = i;
        memset(la, 0, (size_t)W * sizeof *la);
        while (j < lb.n && lb.p[j].state == lb.p[i].state && lb.p[j].rule == lb.p[i].rule) {
            for (int32_t w = 0; w < W; w++) la[w] |= F[(int64_t)lb.p[j].x * W + w];
            j++;
        }
        int32_t q = lb.p[i].state, r = lb.p[i].rule;
        for (int32_t t = 0; t < a->num_terms && st == STATUS_OK; t++) {
            if (!(la[t / 64] >> (t % 64) & 1)) continue;
            int32_t *cell = &a->action[(int64_t)q * a->num_terms + t];
            if (*cell == 0) *cell = -r - 1;
            else if (*cell > 0) { st = lr_conflict(c, q, t, r, -1); *conflict = 1; }
            else if (*cell != -r - 1) { st = lr_conflict(c, q, t, -*cell - 1, r); *conflict = 1; }
        }
        i = j;
    }
    free(la);
    /* default reductions: no shift on any terminal and exactly one complete item */
    for (int32_t s = 0; s < n; s++) a->default_rule[s] = -2;   /* -2: none seen yet */
    for (int32_t s = 0; s < n; s++) {
        for (int64_t k = c->trans_start[s]; k < c->trans_start[s + 1]; k++)
            if (c->trans.p[k].sym <= c->C) { a->default_rule[s] = -1; break; }
    }
    for (int64_t i = 0; i < c->red_state.n; i++) {
        int32_t s = c->red_state.p[i], r = c->red_rule.p[i];
        if (a->default_rule[s] == -2) a->default_rule[s] = r;
        else if (a->default_rule[s] >= 0 && a->default_rule[s] != r) a->default_rule[s] = -1;
    }
    for (int32_t s = 0; s < n; s++) if (a->default_rule[s] == -2) a->default_rule[s] = -1;
    if (st == STATUS_OK && a->accept_state < 0) st = status_set(STATUS_INVALID_ARG, "grammar accepts no input");
    VEC_FREE(lb);
    VEC_FREE(lbs); VEC_FREE(lbr); VEC_FREE(lbx);
    VEC_FREE(rs); VEC_FREE(rd);
    free(F);
    free(xi.goto_keys);
    free(xi.goto_vals);
    free(x_from); free(x_nt); free(x_to);
    return st;
}

/* ---- LR(1) fallback: item sets with lookaheads, merged Pager-style ----
 *
 * States are (core, kernel lookaheads).  A successor joins an existing state of the same core
 * when the two are weakly compatible (Pager 1977: for kernel items i != j, L1[i] ∩ L2[j] and
 * L2[i] ∩ L1[j] are empty unless L1[i] ∩ L1[j] or L2[i] ∩ L2[j] already meet), which merges
 * without creating a reduce/reduce conflict canonical LR(1) does not have (checked on
 * MaskBench: the 138 schemas whose grammar still conflicts here conflict in canonical LR(1)
 * too).  A state whose lookaheads grow is processed again (its successors'
 * lookaheads grow, or a successor no longer compatible moves to another state).  The result
 * is only the state GRAPH (cores + transitions, unreachable states dropped): lr_tables then
 * computes its exact lookaheads with the same DeRemer–Pennello pass as for LALR(1). */

#define LR1_MAX_WORK 20000000   /* closure items visited in all */

typedef struct lr1_state {
    int32_t core;        /* kernel id in lr_ctx.kernels */
    int32_t next;        /* next state with the same core, -1 */
    int64_t la;          /* offset in lr1_ctx.la of [kernel size * W] lookahead words */
    int64_t trans;       /* offset in tsym / tto of its transitions, -1 until processed */
    int32_t num_trans;
    int32_t queued;
} lr1_state;

typedef struct lr1_ctx {
    VEC(lr1_state) states;
    VEC(uint64_t) la;
    vec_i32 tsym, tto;       /* transitions of each processed state, by symbol */
    vec_i32 core_head;       /* [num cores] first state of the core, -1 */
    vec_i32 queue;
    int64_t queue_head;
    uint64_t *first_nt;      /* [nn * W] FIRST of each nonterminal */
    uint64_t *first_item;    /* [num_items * W] FIRST of the body from the dot */
    uint64_t *nl;            /* [nn * W] closure scratch: lookahead of predicted nonterminals */
    uint8_t *inq;            /* [nn] closure scratch */
    int64_t work;
} lr1_ctx;

typedef struct lr1_pair {
    int32_t sym, item, src;  /* src < kernel size: kernel item; else the predicted nonterminal + kernel size */
} lr1_pair;

typedef VEC(lr1_pair) lr1_pairs;
typedef VEC(uint64_t) lr1_words;

static void lr1_add_first_sym(const lr_ctx *c, const lr1_ctx *l, uint64_t *dst, int32_t s)
{
    if (s >= 0) {
        for (int32_t w = 0; w < c->W; w++) dst[w] |= l->first_nt[(int64_t)s * c->W + w];
    } else if (s == -1) {
        dst[c->C / 64] |= 1ull << (c->C % 64);
    } else {
        int32_t m;
        const int32_t *cl = lr_set_classes(c, -s - 2, &m);
        for (int32_t j = 0; j < m; j++) dst[cl[j] / 64] |= 1ull << (cl[j] % 64);
    }
}

/* FIRST of nonterminals (digraph: A reads B when A ::= α B ... with α nullable), then of
 * every body suffix. */
static void lr1_first(const lr_ctx *c, lr1_ctx *l)
{
    int32_t W = c->W;
    l->first_nt = calloc((size_t)c->nn * (size_t)W + 1, sizeof *l->first_nt);
    l->first_item = calloc(((size_t)c->num_items + 1) * (size_t)W, sizeof *l->first_item);
    LL_ASSERT(l->first_nt && l->first_item);
    vec_i32 src = {0}, dst = {0};
    for (int32_t r = 0; r < c->nr; r++) {
        int32_t A = c->a->rule_lhs[r];
        for (int32_t i = c->body_off[r]; i < c->body_off[r + 1]; i++) {
            int32_t s = c->body[i];
            if (s >= 0) {
                VEC_PUSH(src, A);
                VEC_PUSH(dst, s);
                if (!c->nullable[s]) break;
            } else {
                lr1_add_first_sym(c, l, l->first_nt + (int64_t)A * W, s);
                break;
            }
        }
    }
    int64_t *es;
    int32_t *ee;
    lr_csr(&src, &dst, c->nn, &es, &ee);
    lr_digraph_run(es, ee, c->nn, l->first_nt, W);
    free(es);
    free(ee);
    VEC_FREE(src);
    VEC_FREE(dst);
    for (int32_t r = 0; r < c->nr; r++) {
        int32_t base = c->body_off[r] + r, len = c->a->rule_len[r];
        for (int32_t d = len - 1; d >= 0; d--) {
            int32_t s = c->body[c->body_off[r] + d];
            uint64_t *f = l->first_item + (int64_t)(base + d) * W;
            lr1_add_first_sym(c, l, f, s);
            if (s >= 0 && c->nullable[s])
                for (int32_t w = 0; w < W; w++) f[w] |= f[W + w];
        }
    }
}

static int lr1_union(uint64_t *dst, const uint64_t *src, int64_t n)
{
    int changed = 0;
    for (int64_t w = 0; w < n; w++) {
        uint64_t v = dst[w] | src[w];
        changed |= v != dst[w];
        dst[w] = v;
    }
    return changed;
}

static int lr1_meets(const uint64_t *a, const uint64_t *b, int32_t W)
{
    for (int32_t w = 0; w < W; w++)
        if (a[w] & b[w]) return 1;
    return 0;
}

static int lr1_weakly_compatible(const uint64_t *l1, const uint64_t *l2, int32_t k, int32_t W)
{
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = i + 1; j < k; j++) {
            const uint64_t *a1 = l1 + (int64_t)i * W, *b1 = l1 + (int64_t)j * W;
            const uint64_t *a2 = l2 + (int64_t)i * W, *b2 = l2 + (int64_t)j * W;
            if (!lr1_meets(a1, b2, W) && !lr1_meets(a2, b1, W)) continue;
            if (lr1_meets(a1, b1, W) || lr1_meets(a2, b2, W)) continue;
            return 0;
        }
    return 1;
}

static void lr1_enqueue(lr1_ctx *l, int32_t s)
{
    if (l->states.p[s].queued) return;
    l->states.p[s].queued = 1;
    VEC_PUSH(l->queue, s);
}

static int32_t lr1_new_state(lr1_ctx *l, int32_t core, const uint64_t *la, int64_t num_words)
{
    int32_t s = (int32_t)l->states.n;
    while (l->core_head.n <= core) VEC_PUSH(l->core_head, -1);
    VEC_PUSH(l->states, ((lr1_state){core, l->core_head.p[core], l->la.n, -1, 0, 0}));
    l->core_head.p[core] = s;
    VEC_RESERVE(l->la, l->la.n + num_words);
    memcpy(l->la.p + l->la.n, la, (size_t)num_words * sizeof *la);
    l->la.n += num_words;
    lr1_enqueue(l, s);
    return s;
}

/* The state a successor (core, lookaheads la of its kn kernel items) goes to: `cur` when it is
 * still compatible, else a compatible state of the core, else a new one. */
static int32_t lr1_target(lr_ctx *c, lr1_ctx *l, int32_t core, const uint64_t *la, int32_t kn, int32_t cur)
{
    int64_t nw = (int64_t)kn * c->W;
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t u = pass ? (core < l->core_head.n ? l->core_head.p[core] : -1) : cur; u >= 0;
             u = pass ? l->states.p[u].next : -1) {
            uint64_t *ul = l->la.p + l->states.p[u].la;
            int sub = 1;
            for (int64_t w = 0; w < nw && sub; w++) sub = (la[w] & ~ul[w]) == 0;
            if (sub) return u;
            if (lr1_weakly_compatible(ul, la, kn, c->W)) {
                lr1_union(ul, la, nw);
                lr1_enqueue(l, u);
                return u;
            }
        }
    }
    return lr1_new_state(l, core, la, nw);
}

/* One closure step of item `it` (lookahead la, W words): the nonterminal after its dot (none: no
 * step) gets FIRST of the rest of the item and, when that rest is nullable, la; its first
 * contribution this closure clears its set and lists it in pred, and it is queued in wl when its
 * set grew. */
static void lr1_predict(lr_ctx *c, lr1_ctx *l, int32_t it, const uint64_t *la, vec_i32 *pred, vec_i32 *wl)
{
    const int32_t W = c->W, B = lr_next_sym(c, it);
    if (B < 0) return;
    uint64_t *nb = l->nl + (int64_t)B * W;
    if (c->nt_mark[B] != c->stamp) {
        c->nt_mark[B] = c->stamp;
        memset(nb, 0, (size_t)W * sizeof *nb);
        VEC_PUSH(*pred, B);
    }
    int grew = lr1_union(nb, l->first_item + (int64_t)(it + 1) * W, W);
    if (c->ns[it + 1]) grew |= lr1_union(nb, la, W);
    if (grew && !l->inq[B]) { l->inq[B] = 1; VEC_PUSH(*wl, B); }
}

static status_t lr1_process(lr_ctx *c, lr1_ctx *l, int32_t s, vec_i32 *kern, lr1_words *kla,
                            vec_i32 *pred, lr1_pairs *pairs, lr1_words *nla)
{
    int32_t W = c->W;
    l->states.p[s].queued = 0;
    int32_t kn;
    const int32_t *kp = vec_intern_get(&c->kernels, l->states.p[s].core, &kn);
    kern->n = 0;
    VEC_RESERVE(*kern, kn);
    memcpy(kern->p, kp, (size_t)kn * sizeof *kp);
    kla->n = 0;
    VEC_RESERVE(*kla, (int64_t)kn * W);
    memcpy(kla->p, l->la.p + l->states.p[s].la, (size_t)kn * (size_t)W * sizeof *kla->p);
    /* closure: the lookahead of each predicted nonterminal, to a fixpoint */
    c->stamp++;
    pred->n = 0;
    vec_i32 wl = {0};
    for (int32_t i = 0; i < kn; i++) lr1_predict(c, l, kern->p[i], kla->p + (int64_t)i * W, pred, &wl);
    while (wl.n) {
        int32_t B = wl.p[--wl.n];
        l->inq[B] = 0;
        for (int32_t k = c->rstart[B]; k < c->rstart[B + 1]; k++) {
            l->work++;
            lr1_predict(c, l, c->body_off[c->rlist[k]] + c->rlist[k], l->nl + (int64_t)B * W, pred, &wl);
        }
    }
    VEC_FREE(wl);
    /* successors: (symbol, advanced item, lookahead source) */
    pairs->n = 0;
    for (int32_t i = 0; i < kn + (int32_t)pred->n; i++) {
        int32_t B = i < kn ? -1 : pred->p[i - kn];
        int32_t k0 = i < kn ? 0 : c->rstart[B], k1 = i < kn ? 1 : c->rstart[B + 1];
        for (int32_t k = k0; k < k1; k++) {
            int32_t it = i < kn ? kern->p[i] : c->body_off[c->rlist[k]] + c->rlist[k];
            int32_t sym = lr_next_sym(c, it), src = i < kn ? i : kn + B;
            l->work++;
            if (sym == INT32_MIN) continue;
            if (sym >= 0) VEC_PUSH(*pairs, ((lr1_pair){c->C + 1 + sym, it + 1, src}));
            else if (sym == -1) VEC_PUSH(*pairs, ((lr1_pair){c->C, it + 1, src}));
            else {
                int32_t m;
                const int32_t *cl = lr_set_classes(c, -sym - 2, &m);
                for (int32_t j = 0; j < m; j++) VEC_PUSH(*pairs, ((lr1_pair){cl[j], it + 1, src}));
            }
        }
    }
    if (pairs->n) lr_sort_records(&pairs->p[0].sym, pairs->n, 3, &c->sort_tmp);
    int64_t trans = l->states.p[s].trans;
    int first_visit = trans < 0;
    if (first_visit) l->states.p[s].trans = trans = l->tsym.n;
    int32_t g = 0;
    vec_i32 items = {0};
    for (int64_t i = 0; i < pairs->n; g++) {
        int64_t j = i;
        items.n = 0;
        nla->n = 0;
        while (j < pairs->n && pairs->p[j].sym == pairs->p[i].sym) {
            if (j == i || pairs->p[j].item != pairs->p[j - 1].item) {
                VEC_PUSH(items, pairs->p[j].item);
                for (int32_t w = 0; w < W; w++) VEC_PUSH(*nla, 0);
            }
            int32_t src = pairs->p[j].src;
            const uint64_t *from = src < kn ? kla->p + (int64_t)src * W : l->nl + (int64_t)(src - kn) * W;
            lr1_union(nla->p + (items.n - 1) * W, from, W);
            j++;
        }
        int added;
        int32_t core = vec_intern_add(&c->kernels, items.p, (int32_t)items.n, &added);
        int32_t cur = first_visit ? -1 : l->tto.p[trans + g];
        int32_t t = lr1_target(c, l, core, nla->p, (int32_t)items.n, cur);
        if (first_visit) {
            VEC_PUSH(l->tsym, pairs->p[i].sym);
            VEC_PUSH(l->tto, t);
        } else {
            LL_ASSERT(l->tsym.p[trans + g] == pairs->p[i].sym);
            l->tto.p[trans + g] = t;
        }
        i = j;
    }
    VEC_FREE(items);
    if (first_visit) l->states.p[s].num_trans = g;
    if (l->states.n > LR_MAX_STATES || l->work > LR1_MAX_WORK)
        return status_set(STATUS_INVALID_ARG, "grammar too large: its LR(1) automaton exceeds %d states or %d closure items",
                          LR_MAX_STATES, LR1_MAX_WORK);
    return STATUS_OK;
}

static status_t lr_graph_lr1(lr_ctx *c)
{
    lr1_ctx l;
    memset(&l, 0, sizeof l);
    int32_t W = c->W;
    lr1_first(c, &l);
    l.nl = calloc((size_t)c->nn * (size_t)W + 1, sizeof *l.nl);
    l.inq = calloc((size_t)c->nn + 1, 1);
    LL_ASSERT(l.nl && l.inq);
    int added;
    int32_t k0 = c->body_off[c->nr - 1] + c->nr - 1;
    int32_t core0 = vec_intern_add(&c->kernels, &k0, 1, &added);
    uint64_t *zero = calloc((size_t)W, sizeof *zero);
    LL_ASSERT(zero);
    lr1_new_state(&l, core0, zero, W);
    free(zero);
    vec_i32 kern = {0}, pred = {0};
    lr1_words kla = {0}, nla = {0};
    lr1_pairs pairs = {0};
    status_t st = STATUS_OK;
    for (int64_t h = 0; h < l.queue.n && st == STATUS_OK; h++)
        st = lr1_process(c, &l, l.queue.p[h], &kern, &kla, &pred, &pairs, &nla);
    VEC_FREE(pred); VEC_FREE(kla); VEC_FREE(nla); VEC_FREE(pairs);
    if (st == STATUS_OK) {
        /* the reachable graph, numbered breadth first from the start state */
        int32_t num = (int32_t)l.states.n;
        int32_t *id = malloc((size_t)num * sizeof *id), *order = malloc((size_t)num * sizeof *order);
        LL_ASSERT(id && order);
        for (int32_t s = 0; s < num; s++) id[s] = -1;
        int32_t n = 0;
        id[0] = 0;
        order[n++] = 0;
        for (int32_t h = 0; h < n; h++) {
            const lr1_state *S = &l.states.p[order[h]];
            for (int64_t t = S->trans; t < S->trans + S->num_trans; t++)
                if (id[l.tto.p[t]] < 0) { id[l.tto.p[t]] = n; order[n++] = l.tto.p[t]; }
        }
        VEC(int64_t) tstart = {0};
        vec_i32 items = {0};
        for (int32_t h = 0; h < n; h++) {
            const lr1_state *S = &l.states.p[order[h]];
            VEC_PUSH(tstart, c->trans.n);
            VEC_PUSH(c->state_core, S->core);
            for (int64_t t = S->trans; t < S->trans + S->num_trans; t++)
                VEC_PUSH(c->trans, ((lr_trans){h, l.tsym.p[t], id[l.tto.p[t]]}));
            int32_t kn;
            const int32_t *kp = vec_intern_get(&c->kernels, S->core, &kn);
            kern.n = 0;
            VEC_RESERVE(kern, kn);
            memcpy(kern.p, kp, (size_t)kn * sizeof *kp);
            lr_closure(c, kern.p, kn, &items);
            for (int64_t i = 0; i < items.n; i++)
                if (lr_next_sym(c, items.p[i]) == INT32_MIN) {
                    VEC_PUSH(c->red_state, h);
                    VEC_PUSH(c->red_rule, c->item_rule[items.p[i]]);
                }
        }
        VEC_PUSH(tstart, c->trans.n);
        c->trans_start = tstart.p;
        c->num_states = n;
        VEC_FREE(items);
        free(id);
        free(order);
    }
    VEC_FREE(kern);
    VEC_FREE(l.states); VEC_FREE(l.la); VEC_FREE(l.tsym); VEC_FREE(l.tto); VEC_FREE(l.core_head); VEC_FREE(l.queue);
    free(l.first_nt); free(l.first_item); free(l.nl); free(l.inq);
    return st;
}

/* Drops the state graph and the tables built on it (the rules and FIRST data stay). */
static void lr_graph_reset(lr_ctx *c)
{
    lr_automaton *a = c->a;
    VEC_FREE(c->trans);
    free(c->trans_start);
    c->trans_start = NULL;
    c->red_state.n = c->red_rule.n = c->state_core.n = 0;
    c->num_states = 0;
    free(a->action); free(a->default_rule); free(a->goto_keys); free(a->goto_vals);
    a->action = a->default_rule = a->goto_vals = NULL;
    a->goto_keys = NULL;
    a->goto_cap = a->num_gotos = 0;
    a->num_states = 0;
}

status_t lr_build(const grammar *g, lr_automaton *out, int32_t conflict_lhs[2])
{
    memset(out, 0, sizeof *out);
    if (conflict_lhs) conflict_lhs[0] = conflict_lhs[1] = -1;
    if (g->start < 0) return status_set(STATUS_INVALID_ARG, "grammar has no start rule");
    lr_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.a = out;
    c.conflict_lhs[0] = c.conflict_lhs[1] = -1;
    lr_prepare(&c);
    c.kind = "LALR(1)";
    int conflict = 0;
    status_t st = lr_graph_lr0(&c);
    if (st == STATUS_OK) st = lr_tables(&c, &conflict);
    if (conflict) {
        /* LR(1) fallback: the LALR(1) conflict may come from merging states with one core */
        char lalr[1024];
        snprintf(lalr, sizeof lalr, "%s", status_message());
        c.kind = "LR(1)";
        out->is_lr1 = 1;
        lr_graph_reset(&c);
        st = lr_graph_lr1(&c);
        if (st == STATUS_OK) st = lr_tables(&c, &conflict);
        else st = status_set(st, "%s; the LR(1) fallback failed: %s", lalr, status_message());
        if (conflict && conflict_lhs) memcpy(conflict_lhs, c.conflict_lhs, sizeof c.conflict_lhs);
    }
    free(c.body_off); free(c.body); free(c.rstart); free(c.rlist); free(c.item_rule); free(c.nullable);
    vec_map_free(&c.range_set);
    free(c.nt_mark); free(c.trans_start); free(c.ns);
    vec_intern_free(&c.sets);
    vec_intern_free(&c.kernels);
    VEC_FREE(c.trans);
    VEC_FREE(c.red_state);
    VEC_FREE(c.red_rule);
    VEC_FREE(c.state_core);
    VEC_FREE(c.sort_tmp);
    if (st != STATUS_OK) lr_free(out);
    return st;
}

void lr_free(lr_automaton *a)
{
    free(a->action);
    free(a->default_rule);
    free(a->rule_len);
    free(a->rule_lhs);
    free(a->rule_src);
    free(a->goto_keys);
    free(a->goto_vals);
    memset(a, 0, sizeof *a);
}
