/* recognizer.c — the reference recognizer of the grammar IR: Earley parsing over bytes with
 * the Aycock–Horspool treatment of nullable nonterminals.  Simple and correct, not fast; used
 * by tests to check the front ends and, later, the LR(1)/DPDA stage against it.
 *
 * Items are (rule, dot, origin); set i holds the items after i input bytes.  Rules whose body
 * uses an unproductive nonterminal are never predicted, so a non-empty set means the prefix
 * can be completed (accepts_prefix). */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/grammar.h"

typedef struct earley_item {
    int32_t rule, dot, origin;
} earley_item;

typedef struct earley {
    const grammar *g;
    int32_t *rule_start;      /* [num_nts + 1] rules of nt: by_lhs[rule_start[nt] .. rule_start[nt+1]) */
    int32_t *by_lhs;
    uint8_t *nullable, *productive, *rule_ok;
    earley_item *items;       /* all sets back to back */
    size_t num_items, cap_items;
    size_t *set_start;        /* [len + 2] */
    int64_t *hash_keys;       /* per-set dedup table tagged by set index */
    int32_t *hash_gen;
    size_t hash_cap;
    int32_t *predicted;       /* [num_nts] set index where nt was last predicted */
} earley;

static void *earley_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    LL_ASSERT(p);
    return p;
}

static void earley_analyse(earley *e)
{
    const grammar *g = e->g;
    int32_t n = g->num_nts;
    e->rule_start = earley_alloc((size_t)(n + 1) * sizeof(int32_t));
    e->by_lhs = earley_alloc((size_t)g->num_rules * sizeof(int32_t));
    for (int32_t i = 0; i < g->num_rules; i++) e->rule_start[g->rules[i].lhs + 1]++;
    for (int32_t i = 0; i < n; i++) e->rule_start[i + 1] += e->rule_start[i];
    int32_t *pos = earley_alloc((size_t)(n + 1) * sizeof(int32_t));
    memcpy(pos, e->rule_start, (size_t)(n + 1) * sizeof(int32_t));
    for (int32_t i = 0; i < g->num_rules; i++) e->by_lhs[pos[g->rules[i].lhs]++] = i;
    free(pos);
    e->nullable = earley_alloc((size_t)n);
    e->productive = earley_alloc((size_t)n);
    e->rule_ok = earley_alloc((size_t)g->num_rules);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t i = 0; i < g->num_rules; i++) {
            const grammar_rule *r = &g->rules[i];
            const grammar_sym *s = grammar_rule_syms(g, r);
            int nul = 1, prod = 1;
            for (int32_t k = 0; k < r->num_syms; k++) {
                if (!grammar_is_nt(s[k])) { nul = 0; continue; }
                if (!e->nullable[grammar_nt_index(s[k])]) nul = 0;
                if (!e->productive[grammar_nt_index(s[k])]) prod = 0;
            }
            if (nul && !e->nullable[r->lhs]) { e->nullable[r->lhs] = 1; changed = 1; }
            if (prod && !e->productive[r->lhs]) { e->productive[r->lhs] = 1; changed = 1; }
            if (prod) e->rule_ok[i] = 1;
        }
    }
}

static void earley_add(earley *e, int32_t set, int32_t rule, int32_t dot, int32_t origin)
{
    int64_t key = ((int64_t)rule * 1000003 + dot) * 1000033 + origin;
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    size_t mask = e->hash_cap - 1;
    for (size_t i = (size_t)(h >> 20) & mask;; i = (i + 1) & mask) {
        if (e->hash_gen[i] != set) {
            e->hash_gen[i] = set;
            e->hash_keys[i] = key;
            break;
        }
        if (e->hash_keys[i] == key) {
            /* the key is a hash of three ints; confirm on the item list of this set */
            int dup = 0;
            for (size_t k = e->set_start[set]; k < e->num_items; k++) {
                const earley_item *it = &e->items[k];
                if (it->rule == rule && it->dot == dot && it->origin == origin) { dup = 1; break; }
            }
            if (dup) return;
        }
    }
    if (e->num_items == e->cap_items) {
        e->cap_items = e->cap_items ? e->cap_items * 2 : 1024;
        e->items = realloc(e->items, e->cap_items * sizeof *e->items);
        LL_ASSERT(e->items);
    }
    e->items[e->num_items++] = (earley_item){rule, dot, origin};
    if ((e->num_items - e->set_start[set]) * 2 > e->hash_cap) {
        /* grow and re-insert this set's items */
        free(e->hash_keys);
        free(e->hash_gen);
        e->hash_cap *= 2;
        e->hash_keys = earley_alloc(e->hash_cap * sizeof(int64_t));
        e->hash_gen = earley_alloc(e->hash_cap * sizeof(int32_t));
        memset(e->hash_gen, 0xff, e->hash_cap * sizeof(int32_t));
        mask = e->hash_cap - 1;
        for (size_t k = e->set_start[set]; k < e->num_items; k++) {
            const earley_item *it = &e->items[k];
            int64_t kk = ((int64_t)it->rule * 1000003 + it->dot) * 1000033 + it->origin;
            uint64_t hh = (uint64_t)kk * 0x9E3779B97F4A7C15ull;
            size_t i = (size_t)(hh >> 20) & mask;
            while (e->hash_gen[i] == set) i = (i + 1) & mask;
            e->hash_gen[i] = set;
            e->hash_keys[i] = kk;
        }
    }
}

/* Closes set `set` under prediction and completion. */
static void earley_close(earley *e, int32_t set)
{
    const grammar *g = e->g;
    for (size_t k = e->set_start[set]; k < e->num_items; k++) {
        earley_item it = e->items[k];
        const grammar_rule *r = &g->rules[it.rule];
        if (it.dot == r->num_syms) {
            /* complete: advance items of set origin waiting on r->lhs */
            grammar_sym want = grammar_nt(r->lhs);
            size_t end = it.origin == set ? e->num_items : e->set_start[it.origin + 1];
            for (size_t j = e->set_start[it.origin]; j < end; j++) {
                earley_item p = e->items[j];
                const grammar_rule *pr = &g->rules[p.rule];
                if (p.dot < pr->num_syms && grammar_rule_syms(g, pr)[p.dot] == want)
                    earley_add(e, set, p.rule, p.dot + 1, p.origin);
            }
            continue;
        }
        grammar_sym s = grammar_rule_syms(g, r)[it.dot];
        if (!grammar_is_nt(s)) continue;
        int32_t nt = grammar_nt_index(s);
        if (e->predicted[nt] != set) {
            e->predicted[nt] = set;
            for (int32_t j = e->rule_start[nt]; j < e->rule_start[nt + 1]; j++)
                if (e->rule_ok[e->by_lhs[j]]) earley_add(e, set, e->by_lhs[j], 0, set);
        }
        if (e->nullable[nt]) earley_add(e, set, it.rule, it.dot + 1, it.origin);
    }
}

static int earley_run(const grammar *g, const uint8_t *bytes, size_t len, int prefix)
{
    if (g->start < 0 || len > 0x7ffffff0) return 0;
    earley e = {0};
    e.g = g;
    earley_analyse(&e);
    int result = 0;
    if (!e.productive[g->start]) goto done;
    e.set_start = earley_alloc((len + 2) * sizeof(size_t));
    e.hash_cap = 1024;
    e.hash_keys = earley_alloc(e.hash_cap * sizeof(int64_t));
    e.hash_gen = earley_alloc(e.hash_cap * sizeof(int32_t));
    memset(e.hash_gen, 0xff, e.hash_cap * sizeof(int32_t));
    e.predicted = earley_alloc((size_t)(g->num_nts ? g->num_nts : 1) * sizeof(int32_t));
    memset(e.predicted, 0xff, (size_t)(g->num_nts ? g->num_nts : 1) * sizeof(int32_t));
    e.set_start[0] = 0;
    for (int32_t j = e.rule_start[g->start]; j < e.rule_start[g->start + 1]; j++)
        if (e.rule_ok[e.by_lhs[j]]) earley_add(&e, 0, e.by_lhs[j], 0, 0);
    e.predicted[g->start] = 0;
    earley_close(&e, 0);
    for (size_t i = 0; i < len; i++) {
        size_t begin = e.set_start[i], end = e.num_items;
        e.set_start[i + 1] = end;
        if (begin == end) goto done;
        for (size_t k = begin; k < end; k++) {
            earley_item it = e.items[k];
            const grammar_rule *r = &g->rules[it.rule];
            if (it.dot == r->num_syms) continue;
            grammar_sym s = grammar_rule_syms(g, r)[it.dot];
            if (grammar_is_nt(s)) continue;
            if (bytes[i] >= grammar_term_lo(s) && bytes[i] <= grammar_term_hi(s))
                earley_add(&e, (int32_t)i + 1, it.rule, it.dot + 1, it.origin);
        }
        earley_close(&e, (int32_t)i + 1);
    }
    if (prefix) {
        result = e.num_items > e.set_start[len];
    } else {
        for (size_t k = e.set_start[len]; k < e.num_items; k++) {
            const earley_item *it = &e.items[k];
            const grammar_rule *r = &g->rules[it->rule];
            if (it->origin == 0 && r->lhs == g->start && it->dot == r->num_syms) { result = 1; break; }
        }
    }
done:
    free(e.rule_start); free(e.by_lhs); free(e.nullable); free(e.productive); free(e.rule_ok);
    free(e.items); free(e.set_start); free(e.hash_keys); free(e.hash_gen); free(e.predicted);
    return result;
}

/* Counted repetitions (grammar_counted) are expanded first: the oracle knows their bounds
 * from the grammar, independently of the DPDA's counter. */
static int earley_run_expanded(const grammar *g, const uint8_t *bytes, size_t len, int prefix)
{
    if (!g->num_counted) return earley_run(g, bytes, len, prefix);
    grammar x;
    grammar_expand_counted(g, &x);
    int r = earley_run(&x, bytes, len, prefix);
    grammar_free(&x);
    return r;
}

int grammar_accepts(const grammar *g, const uint8_t *bytes, size_t len) { return earley_run_expanded(g, bytes, len, 0); }

int grammar_accepts_prefix(const grammar *g, const uint8_t *bytes, size_t len)
{
    return earley_run_expanded(g, bytes, len, 1);
}
