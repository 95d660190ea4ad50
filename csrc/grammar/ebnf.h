/* ebnf.h — GBNF front end (llama.cpp's grammar syntax) → grammar IR.
 *
 *   name ::= alternatives        rule (names: [A-Za-z0-9_-]+); `root` is the start
 *   "lit\n\x41\u00e9"            literal with escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH
 *   [a-z_] [^"\\]                character classes over code points (UTF-8 encoded)
 *   .                            any code point
 *   ( ... )  a | b               groups, alternation
 *   x? x* x+ x{m} x{m,} x{m,n}   repetition
 *   # comment                    to end of line
 * A rule ends at a newline outside parentheses unless the line ends with `|` or the next line
 * starts with `|`.  Errors are STATUS_INVALID_ARG naming line:column.
 */
#ifndef LIGHTLLM_GRAMMAR_EBNF_H
#define LIGHTLLM_GRAMMAR_EBNF_H

#include <stddef.h>

#include "grammar/grammar.h"

/* Parses `text` into *out (initialised here; the caller frees it with grammar_free, also on error). */
status_t grammar_from_ebnf(const char *text, size_t len, grammar *out);

#endif
