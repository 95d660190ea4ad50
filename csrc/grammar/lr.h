/* lr.h — LALR(1) automaton over byte classes, with an LR(1) fallback, built from the grammar IR.
 *
 * Terminals are byte CLASSES (grammar_byte_classes: bytes no terminal distinguishes share one)
 * plus end of input (class num_classes).  Construction: LR(0) item sets (kernels interned,
 * closures on the fly) → LALR(1) lookaheads by DeRemer & Pennello (DR, reads, includes,
 * lookback; two digraph passes over bitsets) → action table.  When that table has a conflict,
 * the state graph is rebuilt as LR(1) item sets merged Pager-style (two states with one core
 * merge only when weakly compatible, so merging adds no conflict canonical LR(1) lacks) and
 * the same lookahead pass and table run on it (is_lr1 = 1); budgets as for LALR(1).  A conflict
 * that remains fails with STATUS_INVALID_ARG "grammar is not LR(1)", naming the byte, an example
 * input that reaches the state, and the rules involved.  Run grammar_regularize first:
 * front-end grammars are rarely LR(1) as written.
 *
 * Runtime view (used by dpda.c): action[state * num_terms + t] is 0 (error), v > 0 (shift to
 * state v - 1) or v < 0 (reduce rule -v - 1); lr_goto(state, nt) is the state after a
 * reduction to nt (hash lookup).  default_rule[state] >= 0 marks a state with no shift and a
 * single reduction, which the DPDA performs right after the shift that entered it.
 * The augmented rule (index num_rules - 1) is  $start ::= start EOF;  shifting EOF reaches
 * accept_state.
 */
#ifndef LIGHTLLM_GRAMMAR_LR_H
#define LIGHTLLM_GRAMMAR_LR_H

#include <stdint.h>

#include "grammar/grammar.h"

#define LR_MAX_STATES 200000   /* LALR(1) or LR(1) states; larger grammars fail with STATUS_INVALID_ARG */

typedef struct lr_automaton {
    int32_t num_states;
    int32_t num_classes;     /* byte classes; the EOF terminal is num_classes */
    int32_t num_terms;       /* num_classes + 1 */
    uint8_t class_of[256];
    int32_t *action;         /* [num_states * num_terms] see above */
    int32_t *default_rule;   /* [num_states] rule or -1 */
    int32_t num_rules;       /* grammar rules + the augmented one */
    int32_t *rule_len;       /* [num_rules] */
    int32_t *rule_lhs;       /* [num_rules] nonterminal (the augmented lhs is num_nts) */
    int32_t *rule_src;       /* [num_rules] a grammar rule it was built from (rules that differ only
                              * in a final terminal are merged into one); -1 for the augmented one */
    int32_t num_nts;         /* grammar nonterminals + 1 */
    int32_t start_state, accept_state;
    int32_t is_lr1;          /* 1 when built by the LR(1) fallback (LALR(1) had a conflict) */
    uint64_t *goto_keys;     /* [goto_cap] open addressing: state << 32 | nt, UINT64_MAX empty */
    int32_t *goto_vals;      /* [goto_cap] */
    int64_t goto_cap;
    int64_t num_gotos;
} lr_automaton;

/* conflict_lhs (or NULL): on a conflict, the lhs nonterminals (in g) of the two rules involved
 * (the reduced one, and the other reduced one or the shifting item's), -1 for the augmented
 * rule; both -1 when the error is not a conflict or there is none. */
status_t lr_build(const grammar *g, lr_automaton *out, int32_t conflict_lhs[2]);
void lr_free(lr_automaton *a);

static inline int32_t lr_goto(const lr_automaton *a, int32_t state, int32_t nt)
{
    uint64_t key = (uint64_t)(uint32_t)state << 32 | (uint32_t)nt;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint64_t i = (h ^ (h >> 31)) & (uint64_t)(a->goto_cap - 1);
    for (;;) {
        uint64_t k = a->goto_keys[i];
        if (k == key) return a->goto_vals[i];
        if (k == UINT64_MAX) return -1;
        i = (i + 1) & (uint64_t)(a->goto_cap - 1);
    }
}

#endif
