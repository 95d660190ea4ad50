/* json_schema.h — JSON Schema front end (and choice lists) → grammar IR.
 *
 * Output is the JSON text the model must produce.  Decisions (the model is forced into them):
 *  - Compact by default: no whitespace anywhere.  With whitespace = 1, at most one space may
 *    follow ':' and ','  (so json.dumps' default separators are accepted too).
 *  - Object properties appear in the order the schema declares them (allOf parts in order,
 *    then required names not declared in properties); optional ones may be skipped.  Extra
 *    properties (additionalProperties true/absent or a schema) may follow the declared ones;
 *    their keys are any string but the declared names: up to its first character that differs
 *    from every declared name, a key writes each character one way (raw, or json.dumps' short
 *    escape; \/ for '/' too; \u only for control characters that have no short escape), so no
 *    spelling of a declared name (e.g. "\u0061" for "a") passes as an extra key.  Not excluded:
 *    a declared name with a control character json.dumps writes as \u00XX (then any string).
 *  - minProperties/maxProperties count every member, declared or extra.  Without declared
 *    properties they bound the extra members' repetition; with them, the declared-member chain
 *    is expanded by "members written so far" (0..maxProperties, or 0..minProperties meaning "that
 *    many or more"; at most JS_MAX_COUNT_STATES = (declared + 1) x counts, else "unsupported
 *    ... too large"), and no prefix is accepted that cannot meet both bounds.  Bounds no instance
 *    meets (maxProperties below the required count, minProperties above maxProperties or above
 *    the members additionalProperties: false allows) give the empty language, as jsonschema has
 *    it: an anyOf option or optional property holding one never matches; an empty root fails to
 *    compile ("the grammar's language is empty").  Extra members with
 *    equal keys each count (the grammar does not see duplicates; json.loads keeps one).
 *  - Strings: any RFC 8259 escape in free strings; enum/const/pattern/format text uses the
 *    canonical escapes of json.dumps(ensure_ascii=False).  minLength/maxLength count
 *    characters as jsonschema does (code points of the decoded string): an escape counts one,
 *    a surrogate pair written as two \u escapes (\uD83D\uDE00) counts one, a lone low-surrogate
 *    escape counts one; a lone high-surrogate escape is not accepted in a length-bounded string
 *    (it would need a lookahead to count; see js_counted_char).
 *  - Bounds (minLength/maxLength, minItems/maxItems, and regex {m,n} inside patterns): below
 *    grammar_counter_threshold() (255) they are expanded into the automaton (one state per
 *    count); from there on they are counted repetitions (grammar.h grammar_counted): the loop
 *    is compiled once and the DPDA matcher keeps the count on its stack nodes, so an 8192-char
 *    maxLength costs a few states, not ~100k.  A repetition whose iteration boundaries a counter
 *    cannot see is expanded instead (dpda_compile).
 *  - Numbers with minimum/maximum (inclusive or exclusive) are written without an exponent;
 *    a type-number bound is read as the shortest decimal that converts back to it (at most 24
 *    fraction digits; the fraction of a value is compared digit by digit), an integer's is rounded
 *    inward; "-0" is not generated.
 *  - multipleOf: an integer divisor k (several: their least common multiple, at most 1000) makes
 *    the value a canonical integer divisible by k — the digits run through the remainders mod k —;
 *    beside minimum/maximum only when at most 256 multiples lie between (written out) or one
 *    bound is near 0 (a lower one in (-k, k], an upper one in [-k, k)).  A non-integer divisor is
 *    refused: exact decimal multiples (0.07 of 0.01) are not what validators that divide in binary
 *    floating point accept.
 *  - oneOf is treated as anyOf (exclusivity is not enforced); allOf merges its parts
 *    (properties/required unioned, bounds intersected, type sets intersected).  An anyOf/oneOf
 *    with an option that has no validating keyword is that option alone (the union is the
 *    same language; overlapping options would not be LR(1)).
 *  - $ref: local JSON pointers ("#", "#/$defs/x", "#/definitions/x", "#/properties/..."),
 *    recursion allowed (one nonterminal per target).
 *  - pattern or format beside minLength/maxLength: their intersection, for patterns whose
 *    alternatives are ^...$ around single characters with at most one repeated a variable number
 *    of times (regex.h grammar_add_regex_bounded); other patterns refuse the combination.
 *  - formats: date, time, date-time (RFC 3339, offset required), email, uuid, ipv4, uri and
 *    uri-reference (RFC 3986 syntax; IP-literal "[...]" hosts are not generated), byte (base64).
 *  - enum/const values: filtered by "type"; other keywords are assumed to hold for them.
 *  - patternProperties: one pattern matching every key ("", ".*") has its schema conjoined to
 *    every declared property and taken by the extra ones.  Otherwise (up to 8 patterns) an extra
 *    key is written in canonical spelling, is never a declared name, and its value takes the
 *    schemas of the patterns its key matches, or additionalProperties' when none does (no such
 *    keys beside additionalProperties: false); declared names the patterns match take their
 *    schemas too (regex.h grammar_add_regex_keys: one subset automaton of the patterns and the
 *    names decides where a key ends; within RX_MAX_NFA / RX_MAX_DFA states).  One other pattern beside additionalProperties: false gives the extra keys (the
 *    pattern's strings) when no declared name matches it; other combinations are refused.
 *  - not: of {type} (those types dropped; not a number that is not an integer), of {not X} (X),
 *    of {} or true (nothing passes), of false (no constraint); any other not is refused.
 *  - dependencies / dependentRequired / dependentSchemas: a list of names, {"required": [...]}
 *    (present when the trigger is), {"not": {"required": [name]}} (absent), booleans and
 *    schemas without validating keywords; a name no `properties` declares becomes an optional
 *    member after the declared ones (additionalProperties' schema; never written beside
 *    additionalProperties: false).  The declared-member chain then carries the presence of the
 *    earlier member of each dependency until the later one is decided (with the member count
 *    when min/maxProperties bind; at most JS_MAX_COUNT_STATES states), so no prefix is accepted
 *    that cannot meet them.  Other dependent schemas are refused.
 * Keywords that change validity but are not supported (other not, if/then/else, propertyNames,
 * other dependent schemas, uniqueItems: true, contains, other multipleOf,
 * unevaluated*, $dynamicRef, other formats, unsupported combinations)
 * fail with STATUS_INVALID_ARG "unsupported JSON Schema keyword 'k' at #/path".  Any other
 * keyword (annotations, vendor extensions) does not change validity and is ignored.
 */
#ifndef LIGHTLLM_GRAMMAR_JSON_SCHEMA_H
#define LIGHTLLM_GRAMMAR_JSON_SCHEMA_H

#include <stddef.h>

#include "grammar/grammar.h"

typedef struct grammar_json_options {
    int whitespace;   /* 0: compact; 1: at most one space after ':' and ',' */
} grammar_json_options;

/* Compiles the schema text; *out is initialised here and freed by the caller (also on error). */
status_t grammar_from_json_schema(const char *schema, size_t len, const grammar_json_options *opt, grammar *out);
/* A choice list: `choices_json` is a JSON array of strings; the output is exactly one of them
 * (raw text, not JSON-quoted). */
status_t grammar_from_choices(const char *choices_json, size_t len, grammar *out);

#endif
