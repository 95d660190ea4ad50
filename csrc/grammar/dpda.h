/* dpda.h — the Pre³-style deterministic pushdown automaton built from the LR automaton,
 * and its runtime matcher.
 *
 * Compile (dpda_compile): grammar → grammar_regularize → lr_build (LALR(1), LR(1) fallback)
 * → edges; when regularize + LR fail (a conflict, a budget), they run again with the
 * conflicting nonterminals expanded into their users and then with larger budgets (dpda.c,
 * dpda_build_lr).  For every LR
 * state s and byte class c the whole reaction to c — the chain of reductions decided by the
 * lookahead, the shift, and the default reductions that follow the shift — is simulated once
 * on a virtual stack that knows only s and what the chain itself pushes, and stored as ONE
 * edge:
 *   END      pop num_pop states, push push[0..num_push): done;
 *   EXPOSE   pop num_pop states; the chain now depends on the state p exposed below (the edge
 *            is conditioned on that stack suffix): push goto(p, nt) and continue with that
 *            state's edge (its `pre` edge for c, or its `post` edge once c was shifted) —
 *            the back-edge that breaks reduction cycles (a chain of right-nested closings
 *            is followed one exposed state at a time, never re-simulated);
 *   REJECT   c is not allowed.
 * Edges are interned (many (state, class) pairs share one).  One byte = one deterministic
 * walk over edges; no runtime exploration, no backtracking.
 *
 * Runtime (dpda_matcher): the parse stack is a persistent linked stack in an arena
 * (node = state + parent), so advancing never destroys the previous stack: a rejected byte
 * leaves the matcher unchanged, and rollback(N bytes) restores the top and the arena length
 * recorded before each byte (for MTP verification / jump-forward).  The arena and the history
 * are bounded: dpda_matcher_maybe_compact (called between tokens) keeps only the nodes of the
 * stacks the last max_rollback_bytes bytes can return to, renumbered in order, and drops older
 * history, so a long generation holds O(stack depth + window) memory, not O(output).
 *
 * Threading: a compiled dpda is immutable and shareable; a matcher belongs to one thread.
 */
#ifndef LIGHTLLM_GRAMMAR_DPDA_H
#define LIGHTLLM_GRAMMAR_DPDA_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/log.h"
#include "grammar/grammar.h"
#include "grammar/lr.h"

enum { DPDA_REJECT = 0, DPDA_END = 1, DPDA_EXPOSE = 2 };

typedef struct dpda_edge {
    int32_t kind;       /* DPDA_REJECT / DPDA_END / DPDA_EXPOSE */
    int32_t num_pop;    /* states popped from the real stack */
    int32_t nt;         /* EXPOSE: goto on nt from the exposed state */
    int32_t post;       /* EXPOSE: 1 = c already shifted (continue with post[]), 0 = pre[] */
    int32_t push_off;   /* END: states pushed = push_pool[push_off .. push_off + num_push), with
                         * counts push_count[same range] */
    int32_t num_push;
    int32_t count_kind; /* EXPOSE: GRAMMAR_COUNT_* of the reduced rule, applied to the count of the
                         * deepest popped node to give the goto node's count (dpda_count_step) */
    int32_t count_min, count_max;   /* its counter's bounds (max INT32_MAX: none) */
} dpda_edge;

/* Counters (bounded repetitions, grammar.h grammar_counted): every stack node carries a count,
 * the iterations started of the counted repetition whose R@d state it holds (0 elsewhere).
 * Counts are set by the rules' count kinds as reductions happen, so they live in the
 * persistent stack: rollback restores them with the nodes.  Only an EXPOSE edge reads a count
 * at run time (the reduced rule's first symbol is then the deepest popped node); chains inside
 * one edge start from shifted (count 0) or START nodes, so END edges push constant counts and
 * a constant check that fails makes the edge REJECT at compile time.
 * Partial stacks (token_mask.c) give the nodes they do not know DPDA_COUNT_UNKNOWN: a check of
 * an INC on an unknown count passes (the mask caller makes sure the real count is far enough
 * from max: token_mask_fill), a nontrivial EXIT check on one answers -2 (depends on the stack). */
#define DPDA_COUNT_UNKNOWN (-(1 << 30))
#define dpda_count_is_known(c) ((c) >= 0)

typedef struct dpda {
    lr_automaton lr;
    int32_t num_states, num_terms;   /* num_terms = byte classes + EOF */
    uint8_t class_of[256];
    int32_t eof;                     /* the EOF class */
    int32_t *pre;                    /* [num_states * num_terms] edge id; 0 = reject */
    int32_t *post;                   /* [num_states] edge id; 1 = nothing to do */
    dpda_edge *edges;                /* [num_edges]; 0 = REJECT, 1 = END with no change */
    int32_t num_edges;
    int32_t *push_pool;
    int32_t *push_count;             /* [same as push_pool] counts of the pushed nodes */
    /* counted states (accessing symbol R@d of a counted repetition): -1 none, else the index
     * into counter_min/counter_max; state_head[s] = 1 when R@d is a loop head (its symbols start
     * iterations: INC) */
    int32_t *state_counter;          /* [num_states] */
    uint8_t *state_head;             /* [num_states] */
    int32_t *counter_min, *counter_max;   /* [num_counters] */
    int32_t num_counters;
    int32_t *rule_kind, *rule_min, *rule_max;   /* [lr.num_rules] count kind of each LR rule */
    int32_t num_rules, num_nts;      /* of the regularized grammar (for stats) */
    int32_t num_tries;               /* regularize + LR runs it took (1 unless retried) */
} dpda;

/* Compiles g (any front end's output).  Errors: STATUS_INVALID_ARG naming an LR(1)
 * conflict or the size limit.  *out is NULL on error.  A grammar with counted repetitions that
 * fails (a repetition a counter cannot follow: ambiguous iteration boundaries, an LR conflict
 * at the loop's exit) is compiled again with them expanded (grammar_expand_counted). */
status_t dpda_compile(const grammar *g, dpda **out);
void dpda_free(dpda *d);

typedef struct dpda_node {
    int32_t state, parent;
    int32_t count;      /* counter value (see Counters above); DPDA_COUNT_UNKNOWN on partial stacks */
} dpda_node;

#define DPDA_MATCHER_ROLLBACK_BYTES 65536   /* default rollback window */

typedef struct dpda_matcher {
    const dpda *d;
    dpda_node *nodes;          /* [num_nodes] arena of the persistent stack */
    int32_t num_nodes, cap_nodes;
    int32_t top;               /* node index of the stack top */
    int32_t *hist;             /* [2 * (num_bytes - hist_base)]: (top, num_nodes) before each
                                * accepted byte from byte hist_base on */
    int32_t num_bytes, cap_hist;
    int32_t hist_base;         /* bytes whose history was dropped (cannot be rolled back) */
    int32_t max_rollback_bytes;   /* window kept by compaction (>= 0) */
    int32_t compact_at;        /* num_nodes that triggers the next compaction */
} dpda_matcher;

/* Pushes a node on the matcher's arena (grown by doubling); returns its index.  Inline: the
 * matcher's steps and the token-mask walks push on every step. */
static inline int32_t dpda_push(dpda_matcher *m, int32_t state, int32_t parent, int32_t count)
{
    if (m->num_nodes == m->cap_nodes) {
        m->cap_nodes = m->cap_nodes ? m->cap_nodes * 2 : 1024;
        m->nodes = realloc(m->nodes, (size_t)m->cap_nodes * sizeof *m->nodes);
        LL_ASSERT(m->nodes);
    }
    m->nodes[m->num_nodes] = (dpda_node){state, parent, count};
    return m->num_nodes++;
}

void dpda_matcher_init(dpda_matcher *m, const dpda *d);
void dpda_matcher_free(dpda_matcher *m);
void dpda_matcher_reset(dpda_matcher *m);
/* 1: byte accepted (the matcher moved); 0: rejected (the matcher is unchanged). */
int dpda_matcher_advance(dpda_matcher *m, uint8_t byte);
/* Advances over all bytes or none: returns 1, or 0 with the matcher unchanged. */
int dpda_matcher_advance_bytes(dpda_matcher *m, const uint8_t *bytes, size_t len);
/* The input so far is a complete sentence. */
int dpda_matcher_is_accepting(dpda_matcher *m);
/* Undo the last num_bytes accepted bytes (clamped to what can be rolled back). */
void dpda_matcher_rollback(dpda_matcher *m, int32_t num_bytes);
/* Bytes that can be rolled back now (num_bytes - hist_base). */
int32_t dpda_matcher_num_rollback_bytes(const dpda_matcher *m);
/* Compacts when the arena has grown past its threshold; call between tokens (never inside an
 * all-or-nothing advance).  Returns 1 when it compacted. */
int dpda_matcher_maybe_compact(dpda_matcher *m);
/* Compacts now: keeps the stacks of the current top and of the last max_rollback_bytes bytes. */
void dpda_matcher_compact(dpda_matcher *m);
/* Bytes held by the arena and the history (their capacities). */
int64_t dpda_matcher_bytes(const dpda_matcher *m);
/* Jump-forward hook: writes to out (up to max) the bytes every continuation must start with
 * (each the only byte allowed, stopping at an accepting state); returns how many.  The matcher
 * is unchanged: advance_bytes(out, n) applies them. */
int32_t dpda_matcher_forced_bytes(dpda_matcher *m, uint8_t *out, int32_t max);

/* Low level (token_mask.c): one byte class from stack top `top` in matcher m's arena;
 * returns the new top, -1 (rejected) or -2 (the chain pops below the bottom of a partial
 * stack whose bottom node has parent -2: the answer depends on states not given).  Nodes it
 * pushes stay in the arena; the caller truncates m->num_nodes to drop them. */
int32_t dpda_step(const dpda *d, dpda_matcher *m, int32_t top, int32_t cls);

#endif
