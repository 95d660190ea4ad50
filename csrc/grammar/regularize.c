/* regularize.c — determinise the regular parts of a grammar; see regularize.h.
 *
 * Passes: productive rules (worklist) → reachable nonterminals → strongly connected
 * components (iterative Tarjan, sinks first) → which nonterminals stay opaque and the inline
 * size of the rest → per opaque nonterminal: NFA, subset construction, left-linear rules. */
#include "grammar/regularize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/vec.h"

#define RZ_EPS 0xFFFFFFFFu

typedef struct rz_edge {
    uint32_t label;   /* RZ_EPS, a terminal (grammar_sym) or an OUTPUT nonterminal symbol */
    int32_t to, next;
    int32_t cls;      /* a terminal's byte classes: offset into range_pool (count, classes...); else -1 */
} rz_edge;

typedef struct rz_pair {
    uint32_t label;
    int32_t to;
} rz_pair;

typedef struct rz_trans {
    int32_t from;
    uint32_t label;   /* an output nonterminal symbol, or RZ_EPS: the byte set `bytes` */
    int32_t to;
    uint64_t bytes[4];
    int32_t inc;      /* counted repetition: the bytes start an iteration (GRAMMAR_COUNT_INC) */
} rz_trans;

typedef VEC(rz_pair) rz_pair_vec;
typedef VEC(rz_trans) rz_trans_vec;

/* rz_opaque's working arrays, kept from one opaque nonterminal to the next (cleared, not
 * freed: most compiles build dozens of small automata) */
typedef struct rz_scratch {
    vec_intern dfa, kern;
    rz_trans_vec trans;
    rz_pair_vec pairs;
    vec_i32 set, prev, bval, bnext, tl, lb, hd, ccls, cnext, chead, ctail, kto;
} rz_scratch;

typedef struct rz {
    const grammar *g;
    grammar *out;
    int32_t *rstart, *rlist;   /* [num_nts + 1], [num productive rules]: rules by lhs */
    uint8_t *opaque, *linear;  /* [num_nts] */
    int64_t *size;             /* [num_nts] inline expansion size */
    int32_t *out_nt;           /* [num_nts] output index of opaque nonterminals, else -1 */
    uint8_t class_of[256];
    int32_t num_classes;
    uint64_t class_bytes[256][4];
    vec_map range_cls;         /* terminal range -> offset+1 into range_pool of its class list */
    vec_i32 range_pool;        /* count, classes... */
    vec_i32 head;              /* NFA: first edge of each state */
    VEC(rz_edge) edges;
    vec_i32 mark;              /* closure stamps per NFA state */
    int32_t stamp;
    uint64_t *memo_keys;       /* (nt, to) -> entry state of a built instance */
    int32_t *memo_vals;
    int64_t memo_cap, memo_n;
    vec_i32 memo_used;         /* slots filled since the last reset (cleared one by one) */
    int32_t cur;               /* the opaque nonterminal being built */
    uint8_t *delim;            /* [num_nts] see rz_delimited */
    uint8_t *fixed;            /* [num_nts] derives exactly one string (a literal, a key) */
    int64_t work;              /* NFA states built, failed attempts included */
    vec_i32 todo;              /* opaque nonterminals still to emit */
    const uint8_t *inl;        /* [num_nts] or NULL: opaque nonterminals also expanded where used */
    uint8_t *inl_on;           /* [num_nts] being expanded on the current rz_build path */
    vec_i32 owner;             /* [out->num_nts] the input nonterminal of each output one */
    int64_t max_nfa, max_dfa, max_work;   /* budgets (GRAMMAR_REGULARIZE_MAX_* x budget_scale) */
    int32_t num_splits;        /* nonterminals made opaque to fit the budgets */
    vec_i32 sort_tmp;          /* rz_sort_i32's scratch */
    vec_i32 kmark;             /* [NFA states] stamps: kernel members seen (subset construction) */
    rz_scratch sc;
    int32_t kstamp;
    int32_t *cnt_of;           /* [num_nts] index into g->counted, -1 not counted */
    int32_t loop_state;        /* NFA loop state of the counted nonterminal being built, -1 */
} rz;

static int32_t rz_add_out_nt(rz *z, const char *name, int32_t owner)
{
    int32_t nt = grammar_add_nonterminal(z->out, name);
    LL_ASSERT(nt == (int32_t)z->owner.n);
    VEC_PUSH(z->owner, owner);
    return nt;
}

static int32_t rz_state(rz *z)
{
    VEC_PUSH(z->head, -1);
    VEC_PUSH(z->mark, 0);
    return (int32_t)z->head.n - 1;
}

/* offset into range_pool of the byte classes of a terminal range (count, then the classes) */
static int32_t rz_range_classes(rz *z, uint32_t range)
{
    int32_t *slot = vec_map_at(&z->range_cls, range);
    if (!*slot) {
        *slot = (int32_t)z->range_pool.n + 1;
        int64_t at = z->range_pool.n;
        VEC_PUSH(z->range_pool, 0);
        uint8_t seen[256] = {0};
        for (int b = (int)(range & 0xff); b <= (int)(range >> 8); b++) {
            if (seen[z->class_of[b]]) continue;
            seen[z->class_of[b]] = 1;
            VEC_PUSH(z->range_pool, z->class_of[b]);
            z->range_pool.p[at]++;
        }
    }
    return *slot - 1;
}

static void rz_add_edge(rz *z, int32_t from, uint32_t label, int32_t to)
{
    int32_t cls = label != RZ_EPS && !grammar_is_nt(label) ? rz_range_classes(z, label) : -1;
    rz_edge e = {label, to, z->head.p[from], cls};
    VEC_PUSH(z->edges, e);
    z->head.p[from] = (int32_t)z->edges.n - 1;
}

/* ---- NFA construction ----
 * rz_build(M, from, to) adds M's language between two states.  Instances are memoised by
 * (M, to): a nonterminal used in tail position with the same continuation (the optional
 * members of an object: A_i ::= "," m_i A_i+1 | A_i+1) is built once, so the NFA stays
 * linear where naive inlining would be exponential.  Left-linear self-recursion loops on an
 * exit state; right-linear self-recursion is a memo hit back to the entry. */

static int32_t rz_memo_get(rz *z, int32_t nt, int32_t to)
{
    if (!z->memo_cap) return -1;
    uint64_t key = (uint64_t)(uint32_t)nt << 32 | (uint32_t)to;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull >> 20) & (uint64_t)(z->memo_cap - 1);
    while (z->memo_keys[i] != UINT64_MAX) {
        if (z->memo_keys[i] == key) return z->memo_vals[i];
        i = (i + 1) & (uint64_t)(z->memo_cap - 1);
    }
    return -1;
}

static void rz_memo_put(rz *z, int32_t nt, int32_t to, int32_t entry)
{
    if ((z->memo_n + 1) * 2 > z->memo_cap) {
        int64_t old = z->memo_cap;
        uint64_t *ok = z->memo_keys;
        int32_t *ov = z->memo_vals;
        z->memo_cap = old ? old * 2 : 1024;
        z->memo_keys = malloc((size_t)z->memo_cap * sizeof *z->memo_keys);
        z->memo_vals = malloc((size_t)z->memo_cap * sizeof *z->memo_vals);
        LL_ASSERT(z->memo_keys && z->memo_vals);
        memset(z->memo_keys, 0xff, (size_t)z->memo_cap * sizeof *z->memo_keys);
        z->memo_n = 0;
        z->memo_used.n = 0;
        for (int64_t i = 0; i < old; i++)
            if (ok[i] != UINT64_MAX) rz_memo_put(z, (int32_t)(ok[i] >> 32), (int32_t)(uint32_t)ok[i], ov[i]);
        free(ok);
        free(ov);
    }
    uint64_t key = (uint64_t)(uint32_t)nt << 32 | (uint32_t)to;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull >> 20) & (uint64_t)(z->memo_cap - 1);
    while (z->memo_keys[i] != UINT64_MAX) i = (i + 1) & (uint64_t)(z->memo_cap - 1);
    z->memo_keys[i] = key;
    z->memo_vals[i] = entry;
    z->memo_n++;
    VEC_PUSH(z->memo_used, (int32_t)i);
}

static int rz_build(rz *z, int32_t nt, int32_t from, int32_t to, int depth);

static int rz_sym(rz *z, grammar_sym s, int32_t from, int32_t to, int depth)
{
    if (!grammar_is_nt(s)) { rz_add_edge(z, from, s & 0xffffu, to); return 1; }
    return rz_build(z, grammar_nt_index(s), from, to, depth + 1);
}

static int rz_seq(rz *z, const grammar_sym *s, int32_t n, int32_t from, int32_t to, int depth)
{
    if (n == 0) { rz_add_edge(z, from, RZ_EPS, to); return 1; }
    int32_t cur = from;
    for (int32_t i = 0; i + 1 < n; i++) {
        int32_t t = rz_state(z);
        if (!rz_sym(z, s[i], cur, t, depth)) return 0;
        cur = t;
    }
    return rz_sym(z, s[n - 1], cur, to, depth);
}

/* Returns 0 when the NFA exceeds its budget (the caller makes a child opaque and retries). */
static int rz_build(rz *z, int32_t nt, int32_t from, int32_t to, int depth)
{
    int expand = nt != z->cur && z->opaque[nt] && z->inl && z->inl[nt] && !z->inl_on[nt] && z->cnt_of[nt] < 0;
    if (nt != z->cur && z->opaque[nt] && !expand) { rz_add_edge(z, from, grammar_nt(z->out_nt[nt]), to); return 1; }
    if (nt == z->cur && depth > 0 && !z->linear[nt]) { rz_add_edge(z, from, grammar_nt(z->out_nt[nt]), to); return 1; }
    if (z->head.n > z->max_nfa || depth > GRAMMAR_REGULARIZE_MAX_DEPTH) return 0;
    int32_t e = rz_memo_get(z, nt, to);
    if (e >= 0) { rz_add_edge(z, from, RZ_EPS, e); return 1; }
    e = rz_state(z);
    rz_add_edge(z, from, RZ_EPS, e);
    rz_memo_put(z, nt, to, e);
    const grammar *g = z->g;
    grammar_sym self = grammar_nt(nt);
    int32_t x = to;
    if (z->linear[nt]) {
        for (int32_t k = z->rstart[nt]; k < z->rstart[nt + 1] && x == to; k++) {
            const grammar_rule *r = &g->rules[z->rlist[k]];
            if (r->num_syms > 1 && grammar_rule_syms(g, r)[0] == self) x = rz_state(z);
        }
        if (nt == z->cur && depth == 0 && z->cnt_of[nt] >= 0) z->loop_state = x;
    }
    if (expand) z->inl_on[nt] = 1;   /* its own uses inside the copy stay references */
    for (int32_t k = z->rstart[nt]; k < z->rstart[nt + 1]; k++) {
        const grammar_rule *r = &g->rules[z->rlist[k]];
        const grammar_sym *s = grammar_rule_syms(g, r);
        int32_t n = r->num_syms;
        if (z->linear[nt] && n >= 1 && s[0] == self) {
            if (n > 1 && !rz_seq(z, s + 1, n - 1, x, x, depth)) return 0;
        } else if (!rz_seq(z, s, n, e, x, depth)) {
            return 0;
        }
    }
    if (expand) z->inl_on[nt] = 0;
    if (x != to) rz_add_edge(z, x, RZ_EPS, to);
    return 1;
}


static int rz_cmp_pair(const void *a, const void *b)
{
    const rz_pair *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    return x->to < y->to ? -1 : x->to > y->to;
}

/* sorts n non-negative int32 in place: insertion sort when short, else LSD radix by bytes
 * (as many passes as the largest value needs) through tmp (qsort's callback per comparison
 * was a tenth of the compile) */
static void rz_sort_i32(int32_t *a, int64_t n, vec_i32 *tmp)
{
    if (n <= 32) {
        for (int64_t i = 1; i < n; i++) {
            int32_t x = a[i];
            int64_t j = i;
            while (j > 0 && a[j - 1] > x) { a[j] = a[j - 1]; j--; }
            a[j] = x;
        }
        return;
    }
    VEC_RESERVE(*tmp, n);
    int32_t *src = a, *dst = tmp->p;
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; i++) mx |= (uint32_t)a[i];
    for (int sh = 0; sh < 32 && (mx >> sh); sh += 8) {
        int64_t cnt[257] = {0};
        for (int64_t i = 0; i < n; i++) cnt[((uint32_t)src[i] >> sh & 0xffu) + 1]++;
        for (int k = 0; k < 256; k++) cnt[k + 1] += cnt[k];
        for (int64_t i = 0; i < n; i++) dst[cnt[(uint32_t)src[i] >> sh & 0xffu]++] = src[i];
        int32_t *t = src; src = dst; dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

/* epsilon closure of seeds (modified in place into the sorted closure) */
static void rz_closure(rz *z, vec_i32 *set)
{
    z->stamp++;
    int64_t n0 = set->n;
    set->n = 0;
    vec_i32 stack = {0};
    for (int64_t i = 0; i < n0; i++) {
        int32_t s = set->p[i];
        if (z->mark.p[s] == z->stamp) continue;
        z->mark.p[s] = z->stamp;
        VEC_PUSH(stack, s);
    }
    while (stack.n) {
        int32_t s = stack.p[--stack.n];
        VEC_PUSH(*set, s);
        for (int32_t e = z->head.p[s]; e >= 0; e = z->edges.p[e].next) {
            if (z->edges.p[e].label != RZ_EPS) continue;
            int32_t t = z->edges.p[e].to;
            if (z->mark.p[t] == z->stamp) continue;
            z->mark.p[t] = z->stamp;
            VEC_PUSH(stack, t);
        }
    }
    VEC_FREE(stack);
    rz_sort_i32(set->p, set->n, &z->sort_tmp);
}


/* Makes the inlined child of v with the largest expansion opaque; 0 if there is none. */
static void rz_mark_opaque(rz *z, int32_t w)
{
    z->num_splits++;
    z->opaque[w] = 1;
    z->out_nt[w] = rz_add_out_nt(z, z->g->names[w], w);
    VEC_PUSH(z->todo, w);
}

/* Marks opaque the outermost inlined descendants of v (of at least 32 NFA states) that are
 * "delimited" (after_fixed = 0: every string starts with '{' or '[': nested objects and arrays,
 * whose boundaries stay LR(1) as separate nonterminals) or that follow a fixed string in their
 * rule and are not fixed themselves (after_fixed = 1: a property value after its key: only that
 * one path is alive there, so the cut adds no conflict).  Returns how many it marked. */
static int rz_split_outermost(rz *z, int32_t v, int after_fixed)
{
    const grammar *g = z->g;
    int found = 0;
    uint8_t *seen = calloc((size_t)g->num_nts + 1, 1);
    vec_i32 stack = {0};
    LL_ASSERT(seen);
    VEC_PUSH(stack, v);
    seen[v] = 1;
    while (stack.n) {
        int32_t u = stack.p[--stack.n];
        for (int32_t k = z->rstart[u]; k < z->rstart[u + 1]; k++) {
            const grammar_rule *r = &g->rules[z->rlist[k]];
            const grammar_sym *s = grammar_rule_syms(g, r);
            for (int32_t i = 0; i < r->num_syms; i++) {
                if (!grammar_is_nt(s[i])) continue;
                int32_t w = grammar_nt_index(s[i]);
                if (seen[w] || z->opaque[w]) continue;
                seen[w] = 1;
                int pick;
                if (after_fixed)
                    pick = i > 0 && !z->fixed[w] && z->size[w] >= 32 &&
                           (grammar_is_nt(s[i - 1]) ? z->fixed[grammar_nt_index(s[i - 1])]
                                                    : grammar_term_lo(s[i - 1]) == grammar_term_hi(s[i - 1]));
                else pick = z->delim[w] && z->size[w] >= 32;
                if (pick) { rz_mark_opaque(z, w); found++; }
                else VEC_PUSH(stack, w);
            }
        }
    }
    free(seen);
    VEC_FREE(stack);
    return found;
}

/* v's automaton is over budget: make inlined descendants opaque: the outermost delimited ones,
 * then the outermost ones right after a fixed string (rz_split_outermost); if neither found any,
 * the large direct children, else the largest.  Returns 0 when nothing is left to split. */
static int rz_split(rz *z, int32_t v)
{
    const grammar *g = z->g;
    int found = rz_split_outermost(z, v, 0);
    found += rz_split_outermost(z, v, 1);
    if (found) return 1;
    /* direct children: every large one at once (fewer retries), else the largest */
    int32_t best = -1;
    for (int32_t k = z->rstart[v]; k < z->rstart[v + 1]; k++) {
        const grammar_rule *r = &g->rules[z->rlist[k]];
        const grammar_sym *s = grammar_rule_syms(g, r);
        for (int32_t i = 0; i < r->num_syms; i++) {
            if (!grammar_is_nt(s[i])) continue;
            int32_t w = grammar_nt_index(s[i]);
            if (w == v || z->opaque[w]) continue;
            if (z->size[w] >= z->max_nfa / 8) { rz_mark_opaque(z, w); found++; continue; }
            if (best < 0 || z->size[w] > z->size[best]) best = w;
        }
    }
    if (found) return 1;
    if (best < 0) return 0;
    rz_mark_opaque(z, best);
    return 1;
}

/* delim[nt]: nt is not nullable and all its strings start with '{' or '[' (FIRST sets by
 * fixpoint passes over the nonterminals, sinks first) */
static void rz_delimited(rz *z, const vec_i32 *order)
{
    const grammar *g = z->g;
    int32_t nn = g->num_nts;
    uint64_t *first = calloc((size_t)nn * 4 + 4, sizeof *first);
    uint8_t *nullable = calloc((size_t)nn + 1, 1);
    z->delim = calloc((size_t)nn + 1, 1);
    LL_ASSERT(first && nullable && z->delim);
    for (int pass = 0, changed = 1; changed && pass < 64; pass++) {
        changed = 0;
        for (int64_t oi = 0; oi < order->n; oi++) {
            int32_t v = order->p[oi];
            uint64_t f[4] = {first[v * 4], first[v * 4 + 1], first[v * 4 + 2], first[v * 4 + 3]};
            int nul = nullable[v];
            for (int32_t k = z->rstart[v]; k < z->rstart[v + 1]; k++) {
                const grammar_rule *r = &g->rules[z->rlist[k]];
                const grammar_sym *s = grammar_rule_syms(g, r);
                int32_t i = 0;
                for (; i < r->num_syms; i++) {
                    if (!grammar_is_nt(s[i])) {
                        for (int b = grammar_term_lo(s[i]), hi = grammar_term_hi(s[i]); b <= hi;) {
                            int e = (b | 63) < hi ? (b | 63) : hi;   /* the run [b, e] within one word */
                            uint64_t run = e - b == 63 ? ~0ull : ((1ull << (e - b + 1)) - 1) << (b & 63);
                            f[b >> 6] |= run;
                            b = e + 1;
                        }
                        break;
                    }
                    int32_t w = grammar_nt_index(s[i]);
                    for (int j = 0; j < 4; j++) f[j] |= first[w * 4 + j];
                    if (!nullable[w]) break;
                }
                if (i == r->num_syms) nul = 1;
            }
            for (int j = 0; j < 4; j++) {
                if (f[j] != first[v * 4 + j]) { first[v * 4 + j] = f[j]; changed = 1; }
            }
            if (nul != nullable[v]) { nullable[v] = (uint8_t)nul; changed = 1; }
        }
    }
    uint64_t ok[4] = {0, 0, 0, 0};
    ok['{' >> 6] |= 1ull << ('{' & 63);
    ok['[' >> 6] |= 1ull << ('[' & 63);
    for (int32_t v = 0; v < nn; v++) {
        int d = !nullable[v] && (first[v * 4] | first[v * 4 + 1] | first[v * 4 + 2] | first[v * 4 + 3]) != 0;
        for (int j = 0; j < 4 && d; j++) d = (first[v * 4 + j] & ~ok[j]) == 0;
        z->delim[v] = (uint8_t)d;
    }
    free(first);
    free(nullable);
}

/* ---- DFA minimisation: Valmari & Lehtinen's partition refinement (Hopcroft's bound) ---- */

typedef struct rz_part {
    int32_t z, w;
    int32_t *E, *L, *S, *F, *P, *M, *W;   /* elements, location, set of, first, past, marks, touched */
} rz_part;

static void rz_part_init(rz_part *p, int32_t n)
{
    size_t k = (size_t)n + 1;
    p->z = n > 0;
    p->w = 0;
    p->E = malloc(k * sizeof *p->E); p->L = malloc(k * sizeof *p->L); p->S = malloc(k * sizeof *p->S);
    p->F = malloc(k * sizeof *p->F); p->P = malloc(k * sizeof *p->P); p->M = calloc(k, sizeof *p->M);
    p->W = malloc(k * sizeof *p->W);
    LL_ASSERT(p->E && p->L && p->S && p->F && p->P && p->M && p->W);
    for (int32_t i = 0; i < n; i++) { p->E[i] = p->L[i] = i; p->S[i] = 0; }
    if (p->z) { p->F[0] = 0; p->P[0] = n; }
}

static void rz_part_free(rz_part *p)
{
    free(p->E); free(p->L); free(p->S); free(p->F); free(p->P); free(p->M); free(p->W);
}

static void rz_part_mark(rz_part *p, int32_t e)
{
    int32_t s = p->S[e], i = p->L[e], j = p->F[s] + p->M[s];
    p->E[i] = p->E[j];
    p->L[p->E[i]] = i;
    p->E[j] = e;
    p->L[e] = j;
    if (!p->M[s]++) p->W[p->w++] = s;
}

static void rz_part_split(rz_part *p)
{
    while (p->w) {
        int32_t s = p->W[--p->w], j = p->F[s] + p->M[s];
        if (j == p->P[s]) { p->M[s] = 0; continue; }
        if (p->M[s] <= p->P[s] - j) { p->F[p->z] = p->F[s]; p->P[p->z] = p->F[s] = j; }
        else { p->P[p->z] = p->P[s]; p->F[p->z] = p->P[s] = j; }
        for (int32_t i = p->F[p->z]; i < p->P[p->z]; i++) p->S[p->E[i]] = p->z;
        p->M[s] = p->M[p->z++] = 0;
    }
}

/* Minimises a complete-or-partial DFA (all states reachable and co-reachable): transitions
 * tail[i] -label[i]-> head[i].  Writes block[state]; returns the number of blocks. */
static int32_t rz_minimize(int32_t n, int32_t m, const int32_t *tail, const int32_t *label, const int32_t *head,
                           const uint8_t *acc, int32_t *block)
{
    rz_part B, C;
    rz_part_init(&B, n);
    for (int32_t d = 0; d < n; d++) if (acc[d]) rz_part_mark(&B, d);
    rz_part_split(&B);
    rz_part_init(&C, m);
    if (m) {
        /* transitions ordered by label (counting sort; no shared state, compiles may run in
         * several threads) */
        int32_t max_label = 0;
        for (int32_t i = 0; i < m; i++) if (label[i] > max_label) max_label = label[i];
        int32_t *cnt = calloc((size_t)max_label + 2, sizeof *cnt);
        LL_ASSERT(cnt);
        for (int32_t i = 0; i < m; i++) cnt[label[i] + 1]++;
        for (int32_t k = 0; k <= max_label; k++) cnt[k + 1] += cnt[k];
        for (int32_t i = 0; i < m; i++) C.E[cnt[label[i]]++] = i;
        free(cnt);
        C.z = 0;
        C.M[0] = 0;
        int32_t a = label[C.E[0]];
        C.F[0] = 0;
        for (int32_t i = 0; i < m; i++) {
            int32_t t = C.E[i];
            if (label[t] != a) {
                a = label[t];
                C.P[C.z++] = i;
                C.F[C.z] = i;
                C.M[C.z] = 0;
            }
            C.S[t] = C.z;
            C.L[t] = i;
        }
        C.P[C.z++] = m;
    }
    /* incoming transitions per state */
    int32_t *in_off = calloc((size_t)n + 2, sizeof *in_off), *in = malloc(((size_t)m + 1) * sizeof *in);
    LL_ASSERT(in_off && in);
    for (int32_t i = 0; i < m; i++) in_off[head[i] + 1]++;
    for (int32_t d = 0; d < n; d++) in_off[d + 1] += in_off[d];
    int32_t *fill = malloc(((size_t)n + 1) * sizeof *fill);
    LL_ASSERT(fill);
    memcpy(fill, in_off, (size_t)n * sizeof *fill);
    for (int32_t i = 0; i < m; i++) in[fill[head[i]]++] = i;
    free(fill);
    int32_t b = 1, c = 0;
    while (c < C.z) {
        for (int32_t i = C.F[c]; i < C.P[c]; i++) rz_part_mark(&B, tail[C.E[i]]);
        rz_part_split(&B);
        c++;
        while (b < B.z) {
            for (int32_t i = B.F[b]; i < B.P[b]; i++)
                for (int32_t j = in_off[B.E[i]]; j < in_off[B.E[i] + 1]; j++) rz_part_mark(&C, in[j]);
            rz_part_split(&C);
            b++;
        }
    }
    for (int32_t d = 0; d < n; d++) block[d] = B.S[d];
    int32_t nb = B.z;
    free(in_off);
    free(in);
    rz_part_free(&B);
    rz_part_free(&C);
    return nb;
}

/* the first bit >= from that is `set` (1) or clear (0); 256 when none */
static int rz_next_bit(const uint64_t bytes[4], int from, int set)
{
    for (int w = from >> 6; w < 4; w++) {
        uint64_t x = set ? bytes[w] : ~bytes[w];
        if (w == from >> 6) x &= ~0ull << (from & 63);
        if (x) return w * 64 + __builtin_ctzll(x);
    }
    return 256;
}

/* NFA → DFA → left-linear rules for opaque nonterminal v.  Returns 1 with *st set, or 0 when
 * a budget was exceeded (the caller splits v and retries). */
static int rz_opaque(rz *z, int32_t v, status_t *st_out)
{
    z->head.n = z->edges.n = z->mark.n = 0;
    for (int64_t k = 0; k < z->memo_used.n; k++) z->memo_keys[z->memo_used.p[k]] = UINT64_MAX;
    z->memo_used.n = 0;
    z->memo_n = 0;
    z->cur = v;
    if (z->inl_on) memset(z->inl_on, 0, (size_t)z->g->num_nts);
    int32_t entry = rz_state(z);
    int32_t exit = rz_state(z);
    *st_out = STATUS_OK;
    z->loop_state = -1;
    if (!rz_build(z, v, entry, exit, 0)) return 0;
    rz_scratch *sc = &z->sc;
    vec_intern dfa = sc->dfa;
    rz_trans_vec trans = sc->trans;
    rz_pair_vec pairs = sc->pairs;
    vec_i32 set = sc->set, prev = sc->prev, bval = sc->bval, bnext = sc->bnext;
    vec_intern_clear(&dfa);
    trans.n = pairs.n = set.n = prev.n = bval.n = bnext.n = 0;
    int32_t bhead[256], active[256], num_active;   /* classes with a target: bucket heads; the list */
    for (int32_t c = 0; c < 256; c++) bhead[c] = -1;
    /* per-class transitions for minimisation (tail, label, head: a class, or 256 + an output
     * nonterminal index), listed as the byte transitions of each state are (by target, then
     * class), recorded while they are found */
    vec_i32 tl = sc->tl, lb = sc->lb, hd = sc->hd;
    vec_i32 ccls = sc->ccls, cnext = sc->cnext, chead = sc->chead, ctail = sc->ctail;   /* classes of each new transition */
    tl.n = lb.n = hd.n = ccls.n = cnext.n = chead.n = ctail.n = 0;
    /* kernels (move targets before the closure) already seen -> their DFA state: a kernel met
     * again skips its closure */
    vec_intern kern = sc->kern;
    vec_i32 kto = sc->kto;
    vec_intern_clear(&kern);
    kto.n = 0;
    VEC_RESERVE(z->kmark, z->head.n);
    memset(z->kmark.p, 0, (size_t)z->head.n * sizeof *z->kmark.p);
    z->kstamp = 0;
    status_t st = STATUS_OK;
    int added;
    /* counted repetition: a transition starts an iteration (INC) when every NFA state it leaves
     * from lies in the loop state's closure (an iteration boundary), continues one (KEEP) when
     * none does; a mix is ambiguous for a counter (the caller expands the bounds instead) */
    int counted = z->cnt_of[v] >= 0;
    uint8_t *inx = NULL, cflag[256] = {0};
    if (counted) {
        inx = calloc((size_t)z->head.n + 1, 1);
        LL_ASSERT(inx);
        if (z->loop_state < 0) st = status_set(STATUS_INVALID_ARG, "bounded repetition '%s' has no loop", z->g->names[v]);
        else {
            VEC_PUSH(set, z->loop_state);
            rz_closure(z, &set);
            for (int64_t i = 0; i < set.n; i++) inx[set.p[i]] = 1;
            set.n = 0;
        }
    }
    VEC_PUSH(set, entry);
    rz_closure(z, &set);
    for (int64_t i = 0; i < set.n && inx; i++)
        if (set.p[i] == z->loop_state) st = status_set(STATUS_INVALID_ARG, "bounded repetition '%s' has an empty iteration", z->g->names[v]);
    vec_intern_add(&dfa, set.p, (int32_t)set.n, &added);
    for (int32_t d = 0; d < vec_intern_num(&dfa); d++) {
        if (d >= z->max_dfa) {
            st = status_set(STATUS_INVALID_ARG, "grammar too large: the automaton of rule '%s' exceeds %lld states",
                            z->g->names[v], (long long)z->max_dfa);
            *sc = (rz_scratch){dfa, kern, trans, pairs, set, prev, bval, bnext, tl, lb, hd, ccls, cnext, chead, ctail, kto};
            free(inx);
            return 0;   /* the caller splits v and retries, or reports */
        }
        /* NFA targets per class (linked buckets) and per nonterminal label */
        pairs.n = bval.n = bnext.n = 0;
        num_active = 0;
        int32_t m;
        const int32_t *mem = vec_intern_get(&dfa, d, &m);
        for (int32_t i = 0; i < m; i++) {
            for (int32_t e = z->head.p[mem[i]]; e >= 0; e = z->edges.p[e].next) {
                rz_edge ed = z->edges.p[e];
                if (ed.label == RZ_EPS) continue;
                int bnd = inx && inx[mem[i]];
                if (grammar_is_nt(ed.label)) {
                    if (bnd && st == STATUS_OK)   /* its check would come only after the nonterminal */
                        st = status_set(STATUS_INVALID_ARG, "bounded repetition '%s' starts an iteration with a nonterminal",
                                        z->g->names[v]);
                    VEC_PUSH(pairs, ((rz_pair){ed.label, ed.to}));
                    continue;
                }
                int32_t nc = z->range_pool.p[ed.cls];
                const int32_t *cl = z->range_pool.p + ed.cls + 1;
                for (int32_t k = 0; k < nc; k++) {
                    if (inx) cflag[cl[k]] |= bnd ? 1 : 2;
                    VEC_PUSH(bval, ed.to);
                    VEC_PUSH(bnext, bhead[cl[k]]);
                    if (bhead[cl[k]] < 0) active[num_active++] = cl[k];
                    bhead[cl[k]] = (int32_t)bval.n - 1;
                }
            }
        }
        int64_t first_trans = trans.n;
        int32_t prev_id = -1;
        ccls.n = cnext.n = chead.n = ctail.n = 0;
        rz_sort_i32(active, num_active, &z->sort_tmp);
        for (int32_t ai = 0; ai < num_active; ai++) {
            int32_t c = active[ai];
            set.n = 0;
            z->kstamp++;
            for (int32_t k = bhead[c]; k >= 0; k = bnext.p[k]) {
                int32_t t = bval.p[k];
                if (z->kmark.p[t] == z->kstamp) continue;
                z->kmark.p[t] = z->kstamp;
                VEC_PUSH(set, t);
            }
            bhead[c] = -1;
            rz_sort_i32(set.p, set.n, &z->sort_tmp);
            int32_t to;
            if (prev_id >= 0 && prev.n == set.n && memcmp(prev.p, set.p, (size_t)set.n * sizeof *set.p) == 0) {
                to = prev_id;
            } else {
                prev.n = 0;
                VEC_RESERVE(prev, set.n);
                if (set.n) memcpy(prev.p, set.p, (size_t)set.n * sizeof *set.p);
                prev.n = set.n;
                int32_t kid = vec_intern_add(&kern, set.p, (int32_t)set.n, &added);
                if (added) {
                    rz_closure(z, &set);
                    VEC_PUSH(kto, vec_intern_add(&dfa, set.p, (int32_t)set.n, &added));
                }
                to = prev_id = kto.p[kid];
            }
            int inc = cflag[c] == 1;
            if (cflag[c] == 3 && st == STATUS_OK)
                st = status_set(STATUS_INVALID_ARG, "bounded repetition '%s' is ambiguous for a counter", z->g->names[v]);
            cflag[c] = 0;
            int64_t k = first_trans;
            while (k < trans.n && (trans.p[k].to != to || trans.p[k].inc != inc)) k++;
            if (k == trans.n) {
                VEC_PUSH(trans, ((rz_trans){d, RZ_EPS, to, {0, 0, 0, 0}, inc}));
                VEC_PUSH(chead, -1);
                VEC_PUSH(ctail, -1);
            }
            for (int w = 0; w < 4; w++) trans.p[k].bytes[w] |= z->class_bytes[c][w];
            int64_t q = k - first_trans;
            VEC_PUSH(ccls, c);
            VEC_PUSH(cnext, -1);
            if (ctail.p[q] < 0) chead.p[q] = (int32_t)ccls.n - 1;
            else cnext.p[ctail.p[q]] = (int32_t)ccls.n - 1;
            ctail.p[q] = (int32_t)ccls.n - 1;
        }
        for (int64_t k = first_trans; k < trans.n; k++)
            for (int32_t q = chead.p[k - first_trans]; q >= 0; q = cnext.p[q]) {
                VEC_PUSH(tl, d);
                VEC_PUSH(lb, ccls.p[q] + (trans.p[k].inc ? 256 : 0));   /* INC never merges with KEEP */
                VEC_PUSH(hd, trans.p[k].to);
            }
        if (pairs.n) {
            qsort(pairs.p, (size_t)pairs.n, sizeof *pairs.p, rz_cmp_pair);
            for (int64_t i = 0; i < pairs.n;) {
                int64_t j = i;
                set.n = 0;
                while (j < pairs.n && pairs.p[j].label == pairs.p[i].label) {
                    if (j == i || pairs.p[j].to != pairs.p[j - 1].to) VEC_PUSH(set, pairs.p[j].to);
                    j++;
                }
                int32_t kid = vec_intern_add(&kern, set.p, (int32_t)set.n, &added);
                if (added) {
                    rz_closure(z, &set);
                    VEC_PUSH(kto, vec_intern_add(&dfa, set.p, (int32_t)set.n, &added));
                }
                int32_t to = kto.p[kid];
                VEC_PUSH(trans, ((rz_trans){d, pairs.p[i].label, to, {0, 0, 0, 0}, 0}));
                VEC_PUSH(tl, d);
                VEC_PUSH(lb, 512 + (int32_t)grammar_nt_index(pairs.p[i].label));
                VEC_PUSH(hd, to);
                i = j;
            }
        }
    }
    int32_t nd = vec_intern_num(&dfa);
    uint8_t *acc = calloc((size_t)nd + 1, 1);
    LL_ASSERT(acc);
    for (int32_t d = 0; d < nd; d++) {
        int32_t m;
        const int32_t *mem = vec_intern_get(&dfa, d, &m);
        for (int32_t i = 0; i < m && !acc[d]; i++) acc[d] = mem[i] == exit;
    }
    {
        /* minimise: blocks, then transitions of one member per block */
        int32_t *block = malloc(((size_t)nd + 1) * sizeof *block);
        LL_ASSERT(block);
        int32_t nb = rz_minimize(nd, (int32_t)tl.n, tl.p, lb.p, hd.p, acc, block);
        if (nb < nd) {
            /* the start state's block becomes 0 */
            int32_t b0 = block[0];
            for (int32_t d = 0; d < nd; d++) block[d] = block[d] == b0 ? 0 : block[d] == 0 ? b0 : block[d];
            int32_t *rep = malloc((size_t)nb * sizeof *rep);
            uint8_t *bacc = calloc((size_t)nb + 1, 1);
            LL_ASSERT(rep && bacc);
            for (int32_t k = 0; k < nb; k++) rep[k] = -1;
            for (int32_t d = 0; d < nd; d++) {
                if (rep[block[d]] < 0) rep[block[d]] = d;
                bacc[block[d]] = acc[d];
            }
            int64_t w = 0, group = 0;
            for (int64_t i = 0; i < trans.n; i++) {
                rz_trans t = trans.p[i];
                if (rep[block[t.from]] != t.from) continue;
                t.from = block[t.from];
                t.to = block[t.to];
                if (w == 0 || trans.p[w - 1].from != t.from) group = w;
                int64_t k = group;
                if (t.label == RZ_EPS)
                    while (k < w && !(trans.p[k].label == RZ_EPS && trans.p[k].to == t.to && trans.p[k].inc == t.inc)) k++;
                else
                    k = w;
                if (k < w) {
                    for (int q = 0; q < 4; q++) trans.p[k].bytes[q] |= t.bytes[q];
                } else {
                    trans.p[w++] = t;
                }
            }
            trans.n = w;
            free(acc);
            acc = bacc;
            free(rep);
            nd = nb;
        }
        free(block);
    }
    if (st == STATUS_OK) {
        /* emission */
        grammar *out = z->out;
        int32_t *lnt = malloc((size_t)nd * sizeof *lnt);
        LL_ASSERT(lnt);
        for (int32_t d = 0; d < nd; d++) lnt[d] = -1;
        char name[300];
        for (int64_t i = 0; i < trans.n; i++) {
            int32_t d = trans.p[i].to;
            if (lnt[d] < 0) {
                snprintf(name, sizeof name, "%.250s@%d", z->g->names[v], (int)d);
                lnt[d] = rz_add_out_nt(z, name, v);
            }
        }
        int32_t vo = z->out_nt[v];
        int32_t ci = -1;   /* the counter of a counted repetition's rules (index in out->counted) */
        if (counted) {
            const grammar_counted *gc = &z->g->counted[z->cnt_of[v]];
            ci = grammar_add_counted(out, vo, gc->min, gc->max);
        }
#define RZ_COUNT(kind)                                                   \
    do {                                                                 \
        if (ci >= 0) {                                                   \
            out->rules[out->num_rules - 1].count_kind = (kind);         \
            out->rules[out->num_rules - 1].counter = ci;                 \
        }                                                                \
    } while (0)
        for (int64_t i = 0; i < trans.n; i++) {
            int32_t d = trans.p[i].from, to = trans.p[i].to;
            uint32_t lab = trans.p[i].label;
            int kind = trans.p[i].inc ? GRAMMAR_COUNT_INC : GRAMMAR_COUNT_KEEP;
            grammar_sym body[2];
            if (lab != RZ_EPS) {
                if (d == 0) { body[0] = lab; grammar_add_rule(out, lnt[to], body, 1); RZ_COUNT(GRAMMAR_COUNT_START); }
                if (lnt[d] >= 0) { body[0] = grammar_nt(lnt[d]); body[1] = lab; grammar_add_rule(out, lnt[to], body, 2); RZ_COUNT(kind); }
                continue;
            }
            const uint64_t *bytes = trans.p[i].bytes;
            for (int b = rz_next_bit(bytes, 0, 1); b < 256; b = rz_next_bit(bytes, b, 1)) {
                int e = rz_next_bit(bytes, b, 0) - 1;   /* the run [b, e] */
                grammar_sym t = grammar_term(b, e);
                if (d == 0) { body[0] = t; grammar_add_rule(out, lnt[to], body, 1); RZ_COUNT(GRAMMAR_COUNT_START); }
                if (lnt[d] >= 0) { body[0] = grammar_nt(lnt[d]); body[1] = t; grammar_add_rule(out, lnt[to], body, 2); RZ_COUNT(kind); }
                b = e + 1;
            }
        }
        for (int32_t d = 0; d < nd; d++) {
            if (!acc[d]) continue;
            if (d == 0) grammar_add_rule(out, vo, NULL, 0);
            if (lnt[d] >= 0) {
                grammar_sym s = grammar_nt(lnt[d]);
                grammar_add_rule(out, vo, &s, 1);
                RZ_COUNT(GRAMMAR_COUNT_EXIT);
            }
        }
#undef RZ_COUNT
        free(lnt);
    }
    free(acc);
    free(inx);
    *sc = (rz_scratch){dfa, kern, trans, pairs, set, prev, bval, bnext, tl, lb, hd, ccls, cnext, chead, ctail, kto};
    *st_out = st;
    return 1;
}

/* inline size of nt (self references cost nothing when linear, 1 when opaque) */
static int64_t rz_size(const rz *z, int32_t nt)
{
    const grammar *g = z->g;
    int64_t total = 0;
    for (int32_t k = z->rstart[nt]; k < z->rstart[nt + 1]; k++) {
        const grammar_rule *r = &g->rules[z->rlist[k]];
        const grammar_sym *s = grammar_rule_syms(g, r);
        total += 1;
        for (int32_t i = 0; i < r->num_syms; i++) {
            if (!grammar_is_nt(s[i])) { total += 1; continue; }
            int32_t w = grammar_nt_index(s[i]);
            total += w == nt ? (z->linear[nt] ? 0 : 1) : z->opaque[w] ? 1 : z->size[w];
        }
        if (total > ((int64_t)1 << 40)) total = (int64_t)1 << 40;
    }
    return total;
}

status_t grammar_regularize(const grammar *in, grammar_regularize_opts *opts, grammar *out, int32_t **owner)
{
    grammar_init(out);
    if (owner) *owner = NULL;
    if (in->start < 0) return status_set(STATUS_INVALID_ARG, "grammar has no start rule");
    const grammar *g = in;
    int32_t nn = g->num_nts, nr = g->num_rules;
    rz z;
    memset(&z, 0, sizeof z);
    z.g = g;
    z.out = out;
    z.inl = opts ? opts->inline_nts : NULL;
    int64_t scale = opts && opts->budget_scale > 1 ? opts->budget_scale : 1;
    z.max_nfa = GRAMMAR_REGULARIZE_MAX_NFA_STATES * scale;
    z.max_dfa = GRAMMAR_REGULARIZE_MAX_DFA_STATES * scale;
    z.max_work = GRAMMAR_REGULARIZE_MAX_WORK * scale;
    if (z.inl) {
        z.inl_on = calloc((size_t)nn + 1, 1);
        LL_ASSERT(z.inl_on);
    }
    /* productive rules: count unproductive occurrences per rule, worklist by nonterminal */
    int32_t *cnt = calloc((size_t)nr + 1, sizeof *cnt);
    int32_t *occ_start = calloc((size_t)nn + 1, sizeof *occ_start);
    uint8_t *prod = calloc((size_t)nn + 1, 1);
    LL_ASSERT(cnt && occ_start && prod);
    for (int32_t r = 0; r < nr; r++) {
        const grammar_sym *s = grammar_rule_syms(g, &g->rules[r]);
        for (int32_t i = 0; i < g->rules[r].num_syms; i++)
            if (grammar_is_nt(s[i])) { cnt[r]++; occ_start[grammar_nt_index(s[i]) + 1]++; }
    }
    for (int32_t i = 0; i < nn; i++) occ_start[i + 1] += occ_start[i];
    int32_t *occ = malloc(((size_t)occ_start[nn] + 1) * sizeof *occ);
    int32_t *fill = malloc(((size_t)nn + 1) * sizeof *fill);
    LL_ASSERT(occ && fill);
    memcpy(fill, occ_start, (size_t)nn * sizeof *fill);
    for (int32_t r = 0; r < nr; r++) {
        const grammar_sym *s = grammar_rule_syms(g, &g->rules[r]);
        for (int32_t i = 0; i < g->rules[r].num_syms; i++)
            if (grammar_is_nt(s[i])) occ[fill[grammar_nt_index(s[i])]++] = r;
    }
    vec_i32 work = {0};
    for (int32_t r = 0; r < nr; r++)
        if (cnt[r] == 0 && !prod[g->rules[r].lhs]) { prod[g->rules[r].lhs] = 1; VEC_PUSH(work, g->rules[r].lhs); }
    while (work.n) {
        int32_t a = work.p[--work.n];
        for (int32_t k = occ_start[a]; k < occ_start[a + 1]; k++) {
            int32_t r = occ[k];
            if (--cnt[r] == 0 && !prod[g->rules[r].lhs]) { prod[g->rules[r].lhs] = 1; VEC_PUSH(work, g->rules[r].lhs); }
        }
    }
    free(occ);
    free(occ_start);
    status_t st = STATUS_OK;
    if (!prod[g->start]) {
        st = status_set(STATUS_INVALID_ARG, "the grammar's language is empty (rule '%s' derives no string)", g->names[g->start]);
        free(cnt); free(fill); free(prod); VEC_FREE(work); free(z.inl_on);
        return st;
    }
    /* productive rules by lhs */
    z.rstart = calloc((size_t)nn + 1, sizeof *z.rstart);
    z.rlist = malloc(((size_t)nr + 1) * sizeof *z.rlist);
    LL_ASSERT(z.rstart && z.rlist);
    for (int32_t r = 0; r < nr; r++) if (cnt[r] == 0) z.rstart[g->rules[r].lhs + 1]++;
    for (int32_t i = 0; i < nn; i++) z.rstart[i + 1] += z.rstart[i];
    memcpy(fill, z.rstart, (size_t)nn * sizeof *fill);
    for (int32_t r = 0; r < nr; r++) if (cnt[r] == 0) z.rlist[fill[g->rules[r].lhs]++] = r;
    free(cnt);
    free(fill);
    /* Tarjan over reachable nonterminals (iterative); SCCs come out sinks first */
    int32_t *idx = malloc((size_t)nn * sizeof *idx), *low = malloc((size_t)nn * sizeof *low);
    int32_t *scc = malloc((size_t)nn * sizeof *scc), *scc_size = calloc((size_t)nn + 1, sizeof *scc_size);
    uint8_t *on = calloc((size_t)nn + 1, 1), *selfloop = calloc((size_t)nn + 1, 1);
    LL_ASSERT(idx && low && scc && scc_size && on && selfloop);
    for (int32_t i = 0; i < nn; i++) idx[i] = -1;
    vec_i32 order = {0};   /* nonterminals in SCC completion order */
    vec_i32 tstack = {0};
    typedef struct { int32_t v, k, i; } frame;   /* rule slot k, symbol i */
    VEC(frame) calls = {0};
    int32_t counter = 0, num_scc = 0;
    VEC_PUSH(calls, ((frame){g->start, z.rstart[g->start], 0}));
    idx[g->start] = low[g->start] = counter++;
    VEC_PUSH(tstack, g->start);
    on[g->start] = 1;
    while (calls.n) {
        frame *f = &calls.p[calls.n - 1];
        int32_t v = f->v, w = -1;
        while (f->k < z.rstart[v + 1]) {
            const grammar_rule *r = &g->rules[z.rlist[f->k]];
            if (f->i >= r->num_syms) { f->k++; f->i = 0; continue; }
            grammar_sym s = grammar_rule_syms(g, r)[f->i++];
            if (!grammar_is_nt(s)) continue;
            w = grammar_nt_index(s);
            if (w == v) selfloop[v] = 1;
            if (idx[w] < 0) break;
            if (on[w] && idx[w] < low[v]) low[v] = idx[w];
            w = -1;
        }
        if (w >= 0) {
            idx[w] = low[w] = counter++;
            VEC_PUSH(tstack, w);
            on[w] = 1;
            VEC_PUSH(calls, ((frame){w, z.rstart[w], 0}));
            continue;
        }
        if (low[v] == idx[v]) {
            int32_t x, n = 0;
            do {
                x = tstack.p[--tstack.n];
                on[x] = 0;
                scc[x] = num_scc;
                VEC_PUSH(order, x);
                n++;
            } while (x != v);
            scc_size[num_scc++] = n;
        }
        calls.n--;
        if (calls.n) {
            int32_t u = calls.p[calls.n - 1].v;
            if (low[v] < low[u]) low[u] = low[v];
        }
    }
    VEC_FREE(calls);
    VEC_FREE(tstack);
    z.opaque = calloc((size_t)nn + 1, 1);
    z.linear = calloc((size_t)nn + 1, 1);
    z.size = calloc((size_t)nn + 1, sizeof *z.size);
    z.fixed = calloc((size_t)nn + 1, 1);
    LL_ASSERT(z.fixed);
    z.out_nt = malloc(((size_t)nn + 1) * sizeof *z.out_nt);
    z.cnt_of = malloc(((size_t)nn + 1) * sizeof *z.cnt_of);
    LL_ASSERT(z.opaque && z.linear && z.size && z.out_nt && z.cnt_of);
    for (int32_t i = 0; i < nn; i++) z.cnt_of[i] = -1;
    for (int32_t c = 0; c < g->num_counted; c++) z.cnt_of[g->counted[c].nt] = c;
    for (int64_t oi = 0; oi < order.n; oi++) {
        int32_t v = order.p[oi];
        if (v == g->start || scc_size[scc[v]] > 1) z.opaque[v] = 1;
        if (scc_size[scc[v]] == 1 && selfloop[v]) {
            int lin = 1;
            grammar_sym self = grammar_nt(v);
            for (int32_t k = z.rstart[v]; k < z.rstart[v + 1] && lin; k++) {
                const grammar_rule *r = &g->rules[z.rlist[k]];
                const grammar_sym *s = grammar_rule_syms(g, r);
                int32_t n = r->num_syms, c = 0;
                for (int32_t i = 0; i < n; i++) c += s[i] == self;
                if (c > 1 || (c == 1 && s[0] != self && s[n - 1] != self)) lin = 0;
            }
            z.linear[v] = (uint8_t)lin;
            if (!lin) z.opaque[v] = 1;
        }
        if (z.cnt_of[v] >= 0) { z.opaque[v] = 1; z.linear[v] = 1; }   /* its own automaton, one loop */
        z.size[v] = rz_size(&z, v);
        int fx = !z.opaque[v] && z.rstart[v + 1] - z.rstart[v] == 1;
        if (fx) {
            const grammar_rule *r = &g->rules[z.rlist[z.rstart[v]]];
            const grammar_sym *s = grammar_rule_syms(g, r);
            for (int32_t i = 0; i < r->num_syms && fx; i++)
                fx = grammar_is_nt(s[i]) ? grammar_nt_index(s[i]) != v && z.fixed[grammar_nt_index(s[i])]
                                         : grammar_term_lo(s[i]) == grammar_term_hi(s[i]);
        }
        z.fixed[v] = (uint8_t)fx;
    }
    free(idx); free(low); free(scc); free(scc_size); free(on); free(selfloop); free(prod);
    VEC_FREE(work);
    /* output nonterminals for the reachable opaque ones, start first */
    for (int32_t i = 0; i < nn; i++) z.out_nt[i] = -1;
    z.out_nt[g->start] = rz_add_out_nt(&z, g->names[g->start], g->start);
    for (int64_t oi = 0; oi < order.n; oi++) {
        int32_t v = order.p[oi];
        if (z.opaque[v] && z.out_nt[v] < 0) z.out_nt[v] = rz_add_out_nt(&z, g->names[v], v);
    }
    out->start = z.out_nt[g->start];
    z.num_classes = grammar_byte_classes(g, z.class_of);
    for (int b = 0; b < 256; b++) z.class_bytes[z.class_of[b]][b >> 6] |= 1ull << (b & 63);
    rz_delimited(&z, &order);
    for (int64_t oi = order.n - 1; oi >= 0; oi--)
        if (z.opaque[order.p[oi]]) VEC_PUSH(z.todo, order.p[oi]);
    for (int64_t i = 0; i < z.todo.n && st == STATUS_OK; i++) {
        int32_t v = z.todo.p[i];
        for (;;) {
            int ok = rz_opaque(&z, v, &st);
            z.work += z.head.n;
            if (z.work > z.max_work && st == STATUS_OK) {
                st = status_set(STATUS_INVALID_ARG, "grammar too large: its automata exceed %lld NFA states in all",
                                (long long)z.max_work);
                break;
            }
            if (ok) break;
            if (!rz_split(&z, v)) {
                st = status_set(STATUS_INVALID_ARG,
                                "grammar too large: the automaton of rule '%s' exceeds %lld NFA / %lld DFA states",
                                g->names[v], (long long)z.max_nfa, (long long)z.max_dfa);
                break;
            }
        }
    }
    VEC_FREE(z.todo);
    free(z.delim);
    free(z.fixed);
    free(z.memo_keys);
    free(z.memo_vals);
    VEC_FREE(z.memo_used);
    VEC_FREE(order);
    free(z.rstart); free(z.rlist); free(z.opaque); free(z.linear); free(z.size); free(z.out_nt); free(z.cnt_of);
    vec_map_free(&z.range_cls);
    VEC_FREE(z.range_pool);
    VEC_FREE(z.head);
    VEC_FREE(z.edges);
    VEC_FREE(z.mark);
    VEC_FREE(z.sort_tmp);
    vec_intern_free(&z.sc.dfa); vec_intern_free(&z.sc.kern);
    VEC_FREE(z.sc.trans); VEC_FREE(z.sc.pairs);
    VEC_FREE(z.sc.set); VEC_FREE(z.sc.prev); VEC_FREE(z.sc.bval); VEC_FREE(z.sc.bnext);
    VEC_FREE(z.sc.tl); VEC_FREE(z.sc.lb); VEC_FREE(z.sc.hd);
    VEC_FREE(z.sc.ccls); VEC_FREE(z.sc.cnext); VEC_FREE(z.sc.chead); VEC_FREE(z.sc.ctail); VEC_FREE(z.sc.kto);
    VEC_FREE(z.kmark);
    free(z.inl_on);
    if (opts) opts->num_splits = z.num_splits;
    LL_ASSERT(z.owner.n == out->num_nts);
    if (owner) *owner = z.owner.p;
    else VEC_FREE(z.owner);
    return st;
}
