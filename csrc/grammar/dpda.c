/* dpda.c — edges of the Pre³-style DPDA and the matcher; see dpda.h. */
#include "grammar/dpda.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/regularize.h"
#include "grammar/vec.h"

#define DPDA_MAX_CHAIN 100000
#define DPDA_MAX_ROUNDS 8           /* regularize + LR tries of one grammar */
#define DPDA_LARGE_BUDGET_SCALE 4   /* the regularize budgets of the retry */
#define DPDA_MAX_RETRY_RULES 150000 /* regularized rules built by the retries before giving up */
/* An edge's header in the interned edge table: [kind, num_pop, nt, post] and, with counters, the
 * reduced rule (its count kind; -1 none); then the pushed states (and, with counters, their counts). */
#define DPDA_HDR(d) ((d)->num_counters ? 5 : 4)

/* The count of the node a reduction by a rule of kind `kind` pushes, from the count `old` of
 * the node of the rule's first symbol: 1 with *out set, 0 rejected (the bound is exceeded), -1
 * an unknown count decides (partial stacks only). */
static inline int dpda_count_step(int32_t kind, int32_t min, int32_t max, int32_t old, int32_t *out)
{
    switch (kind) {
    case GRAMMAR_COUNT_START: *out = 1; return 1;
    case GRAMMAR_COUNT_KEEP: *out = old; return 1;
    case GRAMMAR_COUNT_INC: *out = old + 1; return !dpda_count_is_known(old) || old < max;
    case GRAMMAR_COUNT_EXIT: *out = 0; return dpda_count_is_known(old) ? old >= min : min <= 1 ? 1 : -1;
    default: *out = 0; return 1;
    }
}

/* Simulates class c from state s (phase post: c already shifted) on a virtual stack (vs states,
 * vc their counts: constants, see dpda.h; kept only when the grammar has counters); the edge is
 * appended to `e` as its header (DPDA_HDR) then push... (then counts... with counters). */
static status_t dpda_simulate(const dpda *d, const lr_automaton *a, int32_t s, int32_t c, int post, vec_i32 *vs,
                              vec_i32 *vc, vec_i32 *e)
{
    const int counted = d->num_counters != 0; /* without counters: no counts, 4-int headers */
    vs->n = 0;
    vc->n = 0;
    e->n = 0;
    VEC_PUSH(*vs, s);
    if (counted) VEC_PUSH(*vc, 0);
    int32_t aug = a->num_rules - 1;
    for (int32_t steps = 0;; steps++) {
        if (steps > DPDA_MAX_CHAIN)
            return status_set(STATUS_INVALID_ARG, "grammar has a cycle of reductions that consume no input");
        int32_t top = vs->p[vs->n - 1], r;
        if (!post) {
            int32_t v = a->action[(int64_t)top * a->num_terms + c];
            if (v == 0) { VEC_PUSH(*e, DPDA_REJECT); return STATUS_OK; }
            if (v > 0) {
                VEC_PUSH(*vs, v - 1);
                if (counted) VEC_PUSH(*vc, 0);
                post = 1;
                continue;
            }
            r = -v - 1;
        } else {
            r = a->default_rule[top];
            if (r < 0 || r == aug) {
                const int32_t hdr[5] = {DPDA_END, 0, 0, 0, -1};
                VEC_RESERVE(*e, DPDA_HDR(d) + (counted + 1) * vs->n);
                for (int i = 0; i < DPDA_HDR(d); i++) e->p[e->n++] = hdr[i];
                for (int64_t i = 1; i < vs->n; i++) e->p[e->n++] = vs->p[i];
                if (counted)
                    for (int64_t i = 1; i < vs->n; i++) e->p[e->n++] = vc->p[i];
                return STATUS_OK;
            }
        }
        int32_t n = a->rule_len[r], A = a->rule_lhs[r];
        if (n < vs->n) {
            int32_t cnt = 0;
            if (counted && d->rule_kind[r] && !dpda_count_step(d->rule_kind[r], d->rule_min[r], d->rule_max[r], vc->p[vs->n - n], &cnt)) {
                e->n = 0;   /* a constant count breaks its bound: this class is not allowed here */
                VEC_PUSH(*e, DPDA_REJECT);
                return STATUS_OK;
            }
            vs->n -= n;
            int32_t q = lr_goto(a, vs->p[vs->n - 1], A);
            LL_ASSERT(q >= 0);
            VEC_PUSH(*vs, q);
            if (counted) {
                vc->n -= n;
                VEC_PUSH(*vc, cnt);
            }
            continue;
        }
        /* the rule only when its count kind matters: otherwise edges that differ only in the
         * rule reduced would be interned apart (2.4x the edges, ~8% of a compile) */
        int32_t rk = counted && d->rule_kind[r] ? r : -1;
        const int32_t hdr[5] = {DPDA_EXPOSE, n - (int32_t)(vs->n - 1), A, post, rk};
        VEC_RESERVE(*e, DPDA_HDR(d));
        for (int i = 0; i < DPDA_HDR(d); i++) e->p[e->n++] = hdr[i];
        return STATUS_OK;
    }
}

/* Count kinds of the LR rules and the counters of the states, from the regularized grammar
 * (see dpda.h). */
static void dpda_counters(dpda *d, const grammar *rg)
{
    const lr_automaton *a = &d->lr;
    d->rule_kind = calloc((size_t)a->num_rules + 1, sizeof *d->rule_kind);
    d->rule_min = calloc((size_t)a->num_rules + 1, sizeof *d->rule_min);
    d->rule_max = calloc((size_t)a->num_rules + 1, sizeof *d->rule_max);
    d->state_counter = malloc(((size_t)a->num_states + 1) * sizeof *d->state_counter);
    d->state_head = calloc((size_t)a->num_states + 1, 1);
    d->num_counters = rg->num_counted;
    d->counter_min = malloc(((size_t)rg->num_counted + 1) * sizeof *d->counter_min);
    d->counter_max = malloc(((size_t)rg->num_counted + 1) * sizeof *d->counter_max);
    LL_ASSERT(d->rule_kind && d->rule_min && d->rule_max && d->state_counter && d->state_head && d->counter_min &&
              d->counter_max);
    for (int32_t k = 0; k < rg->num_counted; k++) {
        d->counter_min[k] = (int32_t)(rg->counted[k].min > INT32_MAX ? INT32_MAX : rg->counted[k].min);
        d->counter_max[k] = rg->counted[k].max < 0 || rg->counted[k].max > INT32_MAX ? INT32_MAX : (int32_t)rg->counted[k].max;
    }
    for (int32_t s = 0; s < a->num_states; s++) d->state_counter[s] = -1;
    if (!rg->num_counted) return;
    int32_t *nt_counter = malloc(((size_t)rg->num_nts + 1) * sizeof *nt_counter);
    uint8_t *nt_head = calloc((size_t)rg->num_nts + 1, 1);
    LL_ASSERT(nt_counter && nt_head);
    for (int32_t i = 0; i < rg->num_nts; i++) nt_counter[i] = -1;
    for (int32_t r = 0; r < a->num_rules; r++) {
        int32_t src = a->rule_src[r];
        if (src < 0 || !rg->rules[src].count_kind) continue;
        const grammar_rule *gr = &rg->rules[src];
        int32_t k = gr->counter;
        d->rule_kind[r] = gr->count_kind;
        d->rule_min[r] = d->counter_min[k];
        d->rule_max[r] = d->counter_max[k];
        if (gr->count_kind != GRAMMAR_COUNT_START) {
            int32_t x = grammar_nt_index(grammar_rule_syms(rg, gr)[0]);
            nt_counter[x] = k;
            if (gr->count_kind == GRAMMAR_COUNT_INC) nt_head[x] = 1;
        }
    }
    for (int64_t i = 0; i < a->goto_cap; i++) {
        if (a->goto_keys[i] == UINT64_MAX) continue;
        int32_t nt = (int32_t)(uint32_t)a->goto_keys[i], to = a->goto_vals[i];
        if (nt < rg->num_nts && nt_counter[nt] >= 0) { d->state_counter[to] = nt_counter[nt]; d->state_head[to] = nt_head[nt]; }
    }
    free(nt_counter);
    free(nt_head);
}

/* regularize → lr_build, retried when that fails:
 *  - budgets x DPDA_LARGE_BUDGET_SCALE when regularize ran out of budget, or when the conflict
 *    may come from its budget splits (a piece split off as a separate nonterminal next to
 *    alternatives that start alike is itself a conflict): fewer pieces are split off;
 *  - otherwise, on an LR conflict, the opaque nonterminals whose rules conflict are marked for
 *    expansion into the automata that use them (two bodies that start alike then share one
 *    DFA, which determinises the common prefix).
 * Grammars that compile at the first try (most) pay nothing.  At most DPDA_MAX_ROUNDS tries, and
 * no new retry once the retries built DPDA_MAX_RETRY_RULES regularized rules, or once the next retry
 * (a retry grows the grammar it expands, so taken to be at least as large as the retry before
 * it; the first retry is always made) would take them past it: a try of a 100k-rule grammar costs seconds, and the last one allowed
 * before was never the one that compiled; a grammar that still fails reports its FIRST error
 * (the grammar as the front end wrote it). */
static status_t dpda_build_lr(const grammar *g, dpda *d)
{
    uint8_t *inl = NULL;
    char *first_error = NULL;
    status_t st = STATUS_OK, first_st = STATUS_OK;
    int32_t scale = 1;
    int64_t total_rules = 0, last_rules = 0;
    for (int round = 0; round < DPDA_MAX_ROUNDS && total_rules + last_rules <= DPDA_MAX_RETRY_RULES; round++) {
        grammar rg;
        int32_t *owner = NULL, conflict_lhs[2] = {-1, -1};
        grammar_regularize_opts opts = {inl, scale, 0};
        d->num_tries = round + 1;
        st = grammar_regularize(g, &opts, &rg, &owner);
        if (st == STATUS_OK) {
            st = lr_build(&rg, &d->lr, conflict_lhs);
            d->num_rules = rg.num_rules;
            d->num_nts = rg.num_nts;
            if (st == STATUS_OK) dpda_counters(d, &rg);
        }
        if (round > 0) total_rules += last_rules = rg.num_rules;
        int too_large = st != STATUS_OK && !strncmp(status_message(), "grammar too large", 17);
        int conflict = st != STATUS_OK && conflict_lhs[0] >= 0, marked = 0;
        if (conflict && !(scale == 1 && opts.num_splits > 0)) {
            if (!inl) {
                inl = calloc((size_t)g->num_nts + 1, 1);
                LL_ASSERT(inl);
            }
            for (int i = 0; i < 2; i++) {
                int32_t x = conflict_lhs[i] >= 0 ? owner[conflict_lhs[i]] : -1;
                if (x >= 0 && x != g->start && !inl[x] && grammar_find_counted(g, x) < 0) { inl[x] = 1; marked++; }
            }
        }
        grammar_free(&rg);
        free(owner);
        if (st != STATUS_OK && round == 0) {
            first_st = st;
            first_error = strdup(status_message());
            LL_ASSERT(first_error);
        }
        if (st == STATUS_OK) break;
        if (!marked) {
            if (scale > 1 || (!conflict && !too_large)) break;
            scale = DPDA_LARGE_BUDGET_SCALE;
        }
    }
    if (st != STATUS_OK && first_error) st = status_set(first_st, "%s", first_error);
    free(first_error);
    free(inl);
    return st;
}

status_t dpda_compile(const grammar *g, dpda **out)
{
    *out = NULL;
    dpda *d = calloc(1, sizeof *d);
    LL_ASSERT(d);
    status_t st = dpda_build_lr(g, d);
    if (st != STATUS_OK && g->num_counted) {
        /* a repetition a counter cannot follow: the bounds expanded, as without counters */
        grammar x;
        grammar_expand_counted(g, &x);
        memset(d, 0, sizeof *d);
        st = dpda_build_lr(&x, d);
        grammar_free(&x);
    }
    if (st != STATUS_OK) { free(d); return st; }
    const lr_automaton *a = &d->lr;
    d->num_states = a->num_states;
    d->num_terms = a->num_terms;
    d->eof = a->num_classes;
    memcpy(d->class_of, a->class_of, 256);
    d->pre = calloc((size_t)d->num_states * (size_t)d->num_terms, sizeof *d->pre);
    d->post = malloc((size_t)d->num_states * sizeof *d->post);
    LL_ASSERT(d->pre && d->post);
    vec_intern edges = {0};
    vec_i32 vs = {0}, vc = {0}, e = {0};
    int added;
    int32_t rej[1] = {DPDA_REJECT}, nop[5] = {DPDA_END, 0, 0, 0, -1};
    vec_intern_add(&edges, rej, 1, &added);
    vec_intern_add(&edges, nop, DPDA_HDR(d), &added);
    /* a shift's edge depends on the target state only (what follows is default reductions):
     * shift_edge[target] is the edge of the state shift_at[target] (classes of one state that
     * shift to one target, e.g. a string's body, simulate once) */
    int32_t *shift_at = malloc(((size_t)d->num_states + 1) * sizeof *shift_at);
    int32_t *shift_edge = malloc(((size_t)d->num_states + 1) * sizeof *shift_edge);
    LL_ASSERT(shift_at && shift_edge);
    for (int32_t s = 0; s < d->num_states; s++) shift_at[s] = -1;
    for (int32_t s = 0; s < d->num_states && st == STATUS_OK; s++) {
        const int32_t *act = a->action + (int64_t)s * a->num_terms;
        for (int32_t c = 0; c < d->num_terms && st == STATUS_OK; c++) {
            int32_t v = act[c];
            if (v == 0) continue;
            if (v > 0 && shift_at[v - 1] == s) {
                d->pre[(int64_t)s * d->num_terms + c] = shift_edge[v - 1];
                continue;
            }
            st = dpda_simulate(d, a, s, c, 0, &vs, &vc, &e);
            int32_t id = vec_intern_add(&edges, e.p, (int32_t)e.n, &added);
            d->pre[(int64_t)s * d->num_terms + c] = id;
            if (v > 0) { shift_at[v - 1] = s; shift_edge[v - 1] = id; }
        }
        if (st == STATUS_OK) st = dpda_simulate(d, a, s, 0, 1, &vs, &vc, &e);
        d->post[s] = vec_intern_add(&edges, e.p, (int32_t)e.n, &added);
    }
    free(shift_at);
    free(shift_edge);
    VEC_FREE(vs);
    VEC_FREE(vc);
    VEC_FREE(e);
    if (st == STATUS_OK) {
        int32_t ne = vec_intern_num(&edges);
        d->num_edges = ne;
        d->edges = calloc((size_t)ne, sizeof *d->edges);
        d->push_pool = malloc(((size_t)edges.pool.n + 1) * sizeof *d->push_pool);
        d->push_count = malloc(((size_t)edges.pool.n + 1) * sizeof *d->push_count);
        LL_ASSERT(d->edges && d->push_pool && d->push_count);
        int32_t np = 0;
        for (int32_t i = 0; i < ne; i++) {
            int32_t n;
            const int32_t *v = vec_intern_get(&edges, i, &n);
            dpda_edge *E = &d->edges[i];
            E->kind = v[0];
            if (v[0] == DPDA_REJECT) continue;
            E->num_pop = v[1];
            E->nt = v[2];
            E->post = v[3];
            E->push_off = np;
            const int32_t h = DPDA_HDR(d);
            E->num_push = (n - h) / (d->num_counters ? 2 : 1);
            if (d->num_counters && v[0] == DPDA_EXPOSE && v[4] >= 0) {
                E->count_kind = d->rule_kind[v[4]];
                E->count_min = d->rule_min[v[4]];
                E->count_max = d->rule_max[v[4]];
            }
            for (int32_t k = 0; k < E->num_push; k++) {
                d->push_pool[np] = v[h + k];
                d->push_count[np++] = d->num_counters ? v[h + E->num_push + k] : 0;
            }
        }
    }
    vec_intern_free(&edges);
    if (st != STATUS_OK) { dpda_free(d); return st; }
    *out = d;
    return STATUS_OK;
}

void dpda_free(dpda *d)
{
    if (!d) return;
    lr_free(&d->lr);
    free(d->pre);
    free(d->post);
    free(d->edges);
    free(d->push_pool);
    free(d->push_count);
    free(d->rule_kind); free(d->rule_min); free(d->rule_max);
    free(d->state_counter); free(d->state_head); free(d->counter_min); free(d->counter_max);
    free(d);
}

/* ---- matcher ---- */

static int32_t dpda_run(const dpda *d, dpda_matcher *m, int32_t top, int32_t cls, int32_t e)
{
    for (;;) {
        const dpda_edge *E = &d->edges[e];
        if (E->kind == DPDA_REJECT) return -1;
        int32_t count = 0;   /* of the deepest popped node */
        for (int32_t k = 0; k < E->num_pop; k++) {
            count = m->nodes[top].count;
            top = m->nodes[top].parent;
            if (top < 0) return -2;   /* popped below a partial (virtual) stack */
        }
        if (E->kind == DPDA_END) {
            for (int32_t k = 0; k < E->num_push; k++)
                top = dpda_push(m, d->push_pool[E->push_off + k], top, d->push_count[E->push_off + k]);
            return top;
        }
        int32_t q = lr_goto(&d->lr, m->nodes[top].state, E->nt);
        if (q < 0) return -1;
        if (E->count_kind) {
            int ok = dpda_count_step(E->count_kind, E->count_min, E->count_max, count, &count);
            if (ok <= 0) return ok == 0 ? -1 : -2;
        } else {
            count = 0;
        }
        top = dpda_push(m, q, top, count);
        e = E->post ? d->post[q] : d->pre[(int64_t)q * d->num_terms + cls];
    }
}

int32_t dpda_step(const dpda *d, dpda_matcher *m, int32_t top, int32_t cls)
{
    return dpda_run(d, m, top, cls, d->pre[(int64_t)m->nodes[top].state * d->num_terms + cls]);
}

#define DPDA_COMPACT_SLACK 4096   /* nodes allowed beyond twice the live ones before compacting */

void dpda_matcher_init(dpda_matcher *m, const dpda *d)
{
    memset(m, 0, sizeof *m);
    m->d = d;
    m->max_rollback_bytes = DPDA_MATCHER_ROLLBACK_BYTES;
    dpda_matcher_reset(m);
}

void dpda_matcher_reset(dpda_matcher *m)
{
    m->num_nodes = 0;
    m->num_bytes = 0;
    m->hist_base = 0;
    m->compact_at = DPDA_COMPACT_SLACK;
    int32_t top = dpda_push(m, m->d->lr.start_state, -1, 0);
    m->top = dpda_run(m->d, m, top, 0, m->d->post[m->d->lr.start_state]);
    LL_ASSERT(m->top >= 0);
}

void dpda_matcher_free(dpda_matcher *m)
{
    free(m->nodes);
    free(m->hist);
    memset(m, 0, sizeof *m);
}

int dpda_matcher_advance(dpda_matcher *m, uint8_t byte)
{
    int32_t mark = m->num_nodes;
    int32_t t = dpda_step(m->d, m, m->top, m->d->class_of[byte]);
    if (t < 0) {   /* -1 reject; -2 cannot happen on a full stack */
        m->num_nodes = mark;
        return 0;
    }
    int32_t h = m->num_bytes - m->hist_base;
    if (h == m->cap_hist) {
        m->cap_hist = m->cap_hist ? m->cap_hist * 2 : 256;
        m->hist = realloc(m->hist, (size_t)m->cap_hist * 2 * sizeof *m->hist);
        LL_ASSERT(m->hist);
    }
    m->hist[2 * h] = m->top;
    m->hist[2 * h + 1] = mark;
    m->num_bytes++;
    m->top = t;
    return 1;
}

int dpda_matcher_advance_bytes(dpda_matcher *m, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!dpda_matcher_advance(m, bytes[i])) {
            dpda_matcher_rollback(m, (int32_t)i);
            return 0;
        }
    }
    return 1;
}

int dpda_matcher_is_accepting(dpda_matcher *m)
{
    int32_t mark = m->num_nodes;
    int32_t t = dpda_step(m->d, m, m->top, m->d->eof);
    m->num_nodes = mark;
    return t >= 0;
}

void dpda_matcher_rollback(dpda_matcher *m, int32_t num_bytes)
{
    int32_t avail = m->num_bytes - m->hist_base;
    if (num_bytes > avail) num_bytes = avail;
    if (num_bytes <= 0) return;
    m->num_bytes -= num_bytes;
    int32_t h = m->num_bytes - m->hist_base;
    m->top = m->hist[2 * h];
    m->num_nodes = m->hist[2 * h + 1];
}

int32_t dpda_matcher_num_rollback_bytes(const dpda_matcher *m) { return m->num_bytes - m->hist_base; }

int64_t dpda_matcher_bytes(const dpda_matcher *m)
{
    return (int64_t)m->cap_nodes * (int64_t)sizeof *m->nodes + (int64_t)m->cap_hist * 2 * (int64_t)sizeof *m->hist;
}

void dpda_matcher_compact(dpda_matcher *m)
{
    int32_t n = m->num_nodes;
    int32_t keep_from = m->num_bytes - m->max_rollback_bytes;
    if (keep_from < m->hist_base) keep_from = m->hist_base;
    /* new index of every kept node (-1 dropped): the ancestors of the current top and of the
     * tops the kept history returns to */
    int32_t *ren = malloc(((size_t)n + 1) * sizeof *ren);
    LL_ASSERT(ren);
    for (int32_t i = 0; i < n; i++) ren[i] = -1;
    for (int32_t k = keep_from - m->hist_base, nh = m->num_bytes - m->hist_base; k <= nh; k++) {
        int32_t x = k < nh ? m->hist[2 * k] : m->top;
        for (; x >= 0 && ren[x] < 0; x = m->nodes[x].parent) ren[x] = 0;
    }
    int32_t kept = 0;
    for (int32_t i = 0; i < n; i++)
        if (ren[i] == 0) {
            ren[i] = kept;
            m->nodes[kept] = (dpda_node){m->nodes[i].state, m->nodes[i].parent < 0 ? m->nodes[i].parent : ren[m->nodes[i].parent],
                                         m->nodes[i].count};
            kept++;
        }
    /* a history mark (arena length before a byte) becomes the number of kept nodes below it */
    int32_t *below = ren;   /* in place: below[i] = kept nodes with old index < i */
    for (int32_t i = 0, c = 0; i <= n; i++) {
        int32_t was_kept = i < n && ren[i] >= 0;
        below[i] = c;
        c += was_kept;
    }
    /* below[] also maps a kept node to its new index (the kept nodes before it) */
    int32_t nh = m->num_bytes - keep_from;
    for (int32_t k = 0; k < nh; k++) {
        int32_t src = k + (keep_from - m->hist_base);
        m->hist[2 * k] = below[m->hist[2 * src]];
        m->hist[2 * k + 1] = below[m->hist[2 * src + 1]];
    }
    m->top = below[m->top];
    m->hist_base = keep_from;
    m->num_nodes = kept;
    m->compact_at = 2 * kept + DPDA_COMPACT_SLACK;
    free(ren);
}

int dpda_matcher_maybe_compact(dpda_matcher *m)
{
    if (m->num_nodes < m->compact_at) return 0;
    dpda_matcher_compact(m);
    return 1;
}

int32_t dpda_matcher_forced_bytes(dpda_matcher *m, uint8_t *out, int32_t max)
{
    int32_t n = 0;
    const dpda *d = m->d;
    while (n < max && !dpda_matcher_is_accepting(m)) {
        /* classes that step; a forced byte is the only byte of the only such class */
        int32_t cls = -1, count = 0, mark = m->num_nodes;
        for (int32_t c = 0; c < d->eof && count < 2; c++) {
            if (!d->pre[(int64_t)m->nodes[m->top].state * d->num_terms + c]) continue;
            int32_t t = dpda_step(d, m, m->top, c);
            m->num_nodes = mark;
            if (t >= 0) { cls = c; count++; }
        }
        if (count != 1) break;
        int b0 = -1, nb = 0;
        for (int b = 0; b < 256; b++)
            if (d->class_of[b] == cls) { b0 = b; nb++; }
        if (nb != 1 || !dpda_matcher_advance(m, (uint8_t)b0)) break;
        out[n++] = (uint8_t)b0;
    }
    dpda_matcher_rollback(m, n);
    return n;
}
