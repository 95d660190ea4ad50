/* grammar.h — the grammar IR every structured-generation front end produces.
 *
 * A context-free grammar over BYTES (UTF-8): nonterminals have names; a rule is
 * `lhs ::= sym sym ...` (possibly empty); a symbol is either a nonterminal or a terminal that
 * is one byte range [lo, hi] (a byte class).  Alternatives are several rules with the same
 * lhs.  EBNF operators (?, *, +, {m,n}, groups) are desugared by the front ends into plain
 * rules over fresh nonterminals with the helpers below (repetition is left-recursive, which
 * suits the later LR(1) stage); a bounded repetition with a large bound stays an unbounded
 * loop plus its bounds (grammar_counted), enforced by a counter in the DPDA matcher.  Non-ASCII character classes are code-point ranges that
 * grammar_add_class() expands into UTF-8 byte-sequence alternatives.
 *
 * Front ends: ebnf.h (GBNF), regex.h (guided_regex, JSON Schema "pattern"), json_schema.h
 * (JSON Schema, choice lists).  recognizer.c is the slow reference (Earley) used by tests.
 * Compilation for generation: regularize.h (determinise regular parts) → lr.h (LALR(1), LR(1) fallback, over
 * byte classes) → dpda.h (Pre³-style DPDA + matcher) → token_mask.h (vocabulary trie, masks);
 * grammar_cache.h caches compiled grammars by content.
 *
 * Memory: the grammar owns its names, rules and symbol arrays; grammar_free releases all.
 * Allocation failure is fatal (LL_ASSERT), as in core/json.c.
 */
#ifndef LIGHTLLM_GRAMMAR_GRAMMAR_H
#define LIGHTLLM_GRAMMAR_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* A symbol: terminal = lo | hi << 8 (bit 31 clear); nonterminal = GRAMMAR_NT_BIT | index. */
typedef uint32_t grammar_sym;
#define GRAMMAR_NT_BIT 0x80000000u
#define grammar_is_nt(s) (((s) & GRAMMAR_NT_BIT) != 0)
#define grammar_nt(i) (GRAMMAR_NT_BIT | (uint32_t)(i))
#define grammar_nt_index(s) ((int32_t)((s) & ~GRAMMAR_NT_BIT))
#define grammar_term(lo, hi) ((grammar_sym)((uint32_t)(uint8_t)(lo) | ((uint32_t)(uint8_t)(hi) << 8)))
#define grammar_term_lo(s) ((uint8_t)((s) & 0xff))
#define grammar_term_hi(s) ((uint8_t)(((s) >> 8) & 0xff))

typedef struct grammar_rule {
    int32_t lhs;          /* nonterminal index */
    int32_t num_syms;
    int32_t first_sym;    /* offset into grammar.syms */
    int32_t count_kind;   /* GRAMMAR_COUNT_* (regularized grammars only; 0 elsewhere) */
    int32_t counter;      /* its counted repetition: index into grammar.counted, -1 none */
} grammar_rule;

/* Counted repetitions (bounded repetition with a large bound, see grammar_add_repeat): R ::= x |
 * R sep x (or R ::= x | R x) is the UNBOUNDED loop; its bounds live here and are enforced by a
 * counter that the DPDA matcher keeps on R's stack nodes (dpda.h), not by expanding the
 * automaton.  min >= 1 (the caller wraps R in an optional for min 0); max < 0: unbounded.
 * After grammar_regularize, R's left-linear rules carry a count_kind (the counter's value
 * lives in the node of each R@d state: iterations started so far):
 *   START  R@d' ::= sym        (the first symbol of the first iteration)   count = 1
 *   KEEP   R@d' ::= R@d sym    (inside an iteration)                        count = old
 *   INC    R@d' ::= R@h sym    (h a loop head: the symbol starts an iteration) count = old + 1 <= max
 *   EXIT   R    ::= R@f        (the repetition ends)                        old >= min */
typedef struct grammar_counted {
    int32_t nt;
    int64_t min, max;
} grammar_counted;

enum { GRAMMAR_COUNT_NONE = 0, GRAMMAR_COUNT_START, GRAMMAR_COUNT_KEEP, GRAMMAR_COUNT_INC, GRAMMAR_COUNT_EXIT };

/* Bounded repetitions whose larger bound is at least this use a counter (grammar_add_repeat);
 * smaller ones are expanded (one automaton state per count, which the mask caches handle well).
 * 255, measured over MaskBench (benchmarks/RESULTS.md "Counter threshold"): an expanded string
 * bound costs ~52 DPDA states per character (js_counted_char; maxLength 254: 13,215 states, 16 ms
 * to compile; 255, counted: 70 states, 0.2 ms), and at 1,000 the bounds from 255 to 999 (mostly
 * maxLength 255/256/512) made 8 schemas "too large" and 7 fail with an LR conflict; all 15
 * compile at 255.  Lower bounds are worse for masks: a counter is near its bound
 * (token_mask_fill_near_bound, uncached) while max - count < the longest token (128 bytes in
 * Qwen3 and DeepSeek-V3), so a counter with max <= 128 is near it at every count; from 255 on
 * at least the first half of the counts takes the cached path. */
#define GRAMMAR_COUNTER_THRESHOLD 255
/* Process-wide: tests lower it so that small bounds exercise the counter path.  <= 0 restores
 * the default. */
void grammar_set_counter_threshold(int64_t threshold);
int64_t grammar_counter_threshold(void);

typedef struct grammar {
    char **names;         /* [num_nts] owned, unique */
    int32_t num_nts, cap_nts;
    grammar_rule *rules;  /* [num_rules] in insertion order */
    int32_t num_rules, cap_rules;
    grammar_sym *syms;    /* [num_syms] rule bodies, back to back */
    int64_t num_syms, cap_syms;
    int32_t start;        /* start nonterminal, -1 until set */
    void *name_index;     /* private: hash of names -> index */
    grammar_counted *counted;   /* [num_counted] counted repetitions (see above) */
    int32_t num_counted, cap_counted;
} grammar;

/* A growable symbol sequence used to build rule bodies. */
typedef struct grammar_seq {
    grammar_sym *syms;
    int32_t n, cap;
} grammar_seq;

/* A code-point range [lo, hi] for character classes. */
typedef struct grammar_range {
    uint32_t lo, hi;
} grammar_range;

#define GRAMMAR_MAX_CODEPOINT 0x10FFFFu

void grammar_init(grammar *g);
void grammar_free(grammar *g);

/* New nonterminal; `name` is made unique by appending _N when taken.  Returns its index. */
int32_t grammar_add_nonterminal(grammar *g, const char *name);
/* Index of the nonterminal called `name`, or -1. */
int32_t grammar_find_nonterminal(const grammar *g, const char *name);
void grammar_add_rule(grammar *g, int32_t lhs, const grammar_sym *syms, int32_t num_syms);
static inline const grammar_sym *grammar_rule_syms(const grammar *g, const grammar_rule *r)
{
    return g->syms + r->first_sym;
}

void grammar_seq_push(grammar_seq *s, grammar_sym sym);
void grammar_seq_push_literal(grammar_seq *s, const char *bytes, size_t len);
void grammar_seq_clear(grammar_seq *s);
void grammar_seq_free(grammar_seq *s);

/* Single-symbol helpers; each returns a symbol (a fresh nonterminal where needed). */
grammar_sym grammar_add_literal(grammar *g, const char *prefix, const char *bytes, size_t len);
grammar_sym grammar_add_optional(grammar *g, const char *prefix, grammar_sym x);   /* x? */
grammar_sym grammar_add_star(grammar *g, const char *prefix, grammar_sym x);       /* x* */
grammar_sym grammar_add_plus(grammar *g, const char *prefix, grammar_sym x);       /* x+ */
/* x{min,max}; max < 0 means unbounded.  sep (or 0 for none) goes between repetitions.  When
 * max(min, max) >= grammar_counter_threshold() the result is a counted repetition (see
 * grammar_counted), else the bounds are expanded into rules. */
grammar_sym grammar_add_repeat(grammar *g, const char *prefix, grammar_sym x, int64_t min, int64_t max,
                               grammar_sym sep, int has_sep);
/* Adds a counted repetition entry (front ends: grammar_add_repeat does it); returns its index. */
int32_t grammar_add_counted(grammar *g, int32_t nt, int64_t min, int64_t max);
/* Index into g->counted of nonterminal nt, or -1. */
int32_t grammar_find_counted(const grammar *g, int32_t nt);
/* out = in with every counted repetition expanded into plain rules (the bounds as automaton
 * states): the reference recognizer and tests use it as the counter-free oracle. */
void grammar_expand_counted(const grammar *in, grammar *out);
/* Alternation of single symbols: X ::= a | b | ... */
grammar_sym grammar_add_choice(grammar *g, const char *prefix, const grammar_sym *alts, int32_t n);
/* A nonterminal with no rules (the empty language). */
grammar_sym grammar_add_empty(grammar *g, const char *prefix);

/* Character classes over code points.  Ranges may overlap / be unsorted; `negate` takes the
 * complement within [0, 0x10FFFF] minus surrogates.  Returns a symbol matching exactly one
 * UTF-8 encoded code point of the class (a plain byte terminal when all of it is ASCII). */
grammar_sym grammar_add_class(grammar *g, const char *prefix, const grammar_range *ranges, int32_t n, int negate);
/* Normalises a range set in place (sort, merge, drop surrogates); returns the new count.
 * With negate the result is the complement; `out` must hold n + 2 ranges. */
int32_t grammar_ranges_normalize(const grammar_range *in, int32_t n, int negate, grammar_range *out);

/* Partitions the 256 byte values into classes that no terminal of g distinguishes: two bytes
 * share a class iff every terminal range contains both or neither.  Writes class_of[256];
 * returns the number of classes (classes are numbered by their smallest byte). */
int32_t grammar_byte_classes(const grammar *g, uint8_t class_of[256]);

/* Prints the grammar in GBNF-like syntax (start rule first) into a malloc'ed string. */
char *grammar_print(const grammar *g);

/* A growing NUL-terminated byte string (the printer's and the JSON Schema front end's text);
 * zero-initialise, append with grammar_buf_put, free(p) when done. */
typedef struct grammar_buf {
    char *p;
    size_t n, cap;
} grammar_buf;
void grammar_buf_put(grammar_buf *b, const char *s, size_t len);

/* Reference recognizer (Earley over bytes; slow, for tests).  accepts: the whole input is a
 * sentence of the start symbol; accepts_prefix: the input can be extended to a sentence. */
int grammar_accepts(const grammar *g, const uint8_t *bytes, size_t len);
int grammar_accepts_prefix(const grammar *g, const uint8_t *bytes, size_t len);

#endif
