/* regularize.h — rewrites a grammar into an equivalent one that LR(1) over bytes can take.
 *
 * Front ends emit grammars that are natural but often not LR(1) at the byte level: `a* a`,
 * optional object members that start with the same ',', a declared key beside "any string"
 * key, JSON string bodies built from left-recursive repetition.  Every such construct is
 * regular, so this pass determinises it:
 *  - Nonterminals in a recursive cycle (strongly connected component of the "uses" graph,
 *    except plain left/right-linear self-recursion) and the start symbol stay nonterminals
 *    ("opaque").  Every other nonterminal is inlined into the opaque ones that use it; when an
 *    automaton exceeds its budget, its outermost inlined objects/arrays (or else its largest
 *    inlined child) are made opaque and the build is retried.  Inlined instances with the same continuation are shared (tail sharing), so
 *    chains of optional members stay linear.
 *  - The body of each opaque nonterminal N becomes an NFA (Thompson-style, over byte classes
 *    and opaque nonterminals), then a DFA by subset construction.
 *  - The DFA is emitted as LEFT-linear rules without an empty start:
 *      N@d' ::= x | N@d x       for each transition d -x-> d' (the first form from the start),
 *      N    ::= N@f             for each accepting f (and N ::= "" if the start accepts).
 *    Left-linear keeps the LR stack flat: each byte is shifted and reduced at once, so the
 *    parser never holds a chain proportional to a string's length.
 * The language is unchanged (tests compare with the Earley recognizer on the input grammar).
 * Unproductive rules and unreachable nonterminals are dropped.
 *
 * Errors: STATUS_INVALID_ARG when the language is empty or a DFA exceeds the size limit
 * (naming the nonterminal).  *out is initialised here; the caller frees it, also on error.
 */
#ifndef LIGHTLLM_GRAMMAR_REGULARIZE_H
#define LIGHTLLM_GRAMMAR_REGULARIZE_H

#include "grammar/grammar.h"

#define GRAMMAR_REGULARIZE_MAX_NFA_STATES 20000 /* per opaque nonterminal, before splitting */
#define GRAMMAR_REGULARIZE_MAX_DFA_STATES 10000 /* per opaque nonterminal, before splitting */
#define GRAMMAR_REGULARIZE_MAX_DEPTH 3000       /* nesting of inlined nonterminals */
#define GRAMMAR_REGULARIZE_MAX_WORK 1000000     /* NFA states built in all (retries included) */

/* Options (NULL = none):
 *  inline_nts ([in->num_nts] or NULL): nonterminals that, when they are opaque, are ALSO
 *    expanded (one level: their own uses inside the copy stay references) into every automaton
 *    that uses them — dpda_compile's answer to an LR conflict between two bodies that start
 *    alike;
 *  budget_scale (0 or 1: as defined above): multiplies the NFA / DFA / work budgets, so fewer
 *    pieces are split off (dpda_compile's retry of a grammar that failed at scale 1);
 *  num_splits (output): how many nonterminals were made opaque to fit the budgets.
 * owner (or NULL): receives a malloc'ed [out->num_nts] array, the input nonterminal each output
 * nonterminal comes from (N and its states N@d: N); the caller frees it, also on error. */
typedef struct grammar_regularize_opts {
    const uint8_t *inline_nts;
    int32_t budget_scale;
    int32_t num_splits;
} grammar_regularize_opts;

status_t grammar_regularize(const grammar *in, grammar_regularize_opts *opts, grammar *out, int32_t **owner);

#endif
