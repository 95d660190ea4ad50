/* regex.h — regular-expression front end → grammar IR (guided_regex, JSON Schema "pattern").
 *
 * Supported (ECMAScript-like): literals, '.', classes [a-z] [^...] with \d \w \s \D \W \S and
 * escapes, groups ( ) (?: ) (?<name> ), '|', ? * + {m} {m,} {m,n} (lazy forms accepted, same
 * language), escapes \n \r \t \f \v \0 \xHH \uHHHH \u{H..} and escaped punctuation.  Anchors
 * '^' / '$' only at the start / end of a top-level alternative.  Lookaround, backreferences,
 * \b \B, \p{..} and inline flags are rejected with an error naming the feature.
 *
 * Modes:
 *   GRAMMAR_REGEX_WHOLE        the whole output matches (anchors implicit; ^/$ are no-ops).
 *   GRAMMAR_REGEX_JSON_STRING  the language is the JSON-encoded CONTENT of a string (between
 *                              the quotes) whose decoded value the pattern matches with
 *                              JSON Schema's search semantics (an unanchored side gets .*);
 *                              '"', '\\' and control characters appear in their canonical
 *                              escaped form (\" \\ \n \r \t \b \f, else \u00xx lowercase).
 */
#ifndef LIGHTLLM_GRAMMAR_REGEX_H
#define LIGHTLLM_GRAMMAR_REGEX_H

#include <stddef.h>

#include "grammar/grammar.h"

typedef enum grammar_regex_mode {
    GRAMMAR_REGEX_WHOLE = 0,
    GRAMMAR_REGEX_JSON_STRING = 1,
} grammar_regex_mode;

/* Adds the pattern's language to g as a symbol (*out).  Errors are STATUS_INVALID_ARG naming
 * the feature and the character offset. */
status_t grammar_add_regex(grammar *g, const char *pattern, size_t len, grammar_regex_mode mode, grammar_sym *out);
/* The JSON_STRING-mode language of the pattern intersected with the strings of lo..hi code points
 * (hi < 0: no upper bound) — JSON Schema's pattern (or format) beside minLength/maxLength.  Exact
 * for patterns whose every top-level alternative is ^...$ around single code points (classes,
 * escapes, literals, each with a quantifier) of which at most one repeats a variable number of
 * times, optionally inside one group spanning the alternative (^(A|B)$ is ^A$|^B$): the variable
 * piece's count absorbs the bounds.  Other patterns: STATUS_UNSUPPORTED saying so. */
status_t grammar_add_regex_bounded(grammar *g, const char *pattern, size_t len, int64_t lo, int64_t hi, grammar_sym *out);
/* Keys beside patterns (patternProperties): the canonical JSON-string content
 * (GRAMMAR_REGEX_JSON_STRING's escapes) of a key that is none of the names (code points,
 * names[i][0..name_lens[i])), followed by tail(ctx, m) where bit k of m says pattern k matches the
 * key (JSON Schema search semantics; a tail of 0: no such keys) — one automaton, so the kinds of
 * keys are told apart where they end; tail is asked once per m that occurs.  name_matches (may be
 * NULL): [num_names], the patterns matching each name.  Exact: a Thompson NFA of the patterns
 * (the whole supported syntax, top-level alternatives anchored or not at either end) and the
 * names, determinised over code point intervals; automata over RX_MAX_NFA / RX_MAX_DFA states:
 * STATUS_UNSUPPORTED saying so. */
#define GRAMMAR_REGEX_MAX_PATTERNS 8
typedef grammar_sym (*grammar_regex_tail)(void *ctx, uint32_t matched);
status_t grammar_add_regex_keys(grammar *g, const char *const *patterns, int num_patterns, const uint32_t *const *names,
                                const int *name_lens, int num_names, grammar_regex_tail tail, void *ctx,
                                grammar_sym *out, uint32_t *name_matches);
/* The pattern as a whole grammar (start symbol "root"); the caller frees *out, also on error. */
status_t grammar_from_regex(const char *pattern, size_t len, grammar *out);
/* A symbol matching one code point of the class, in the mode's encoding (JSON-escaped in
 * GRAMMAR_REGEX_JSON_STRING mode). */
grammar_sym grammar_add_class_in_mode(grammar *g, const grammar_range *ranges, int32_t n, int negate,
                                      grammar_regex_mode mode);

#endif
