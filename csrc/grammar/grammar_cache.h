/* grammar_cache.h — compiled grammars cached by content, for one vocabulary.
 *
 * A request's grammar spec (kind, source text, whitespace flag) is hashed (FNV-1a over the
 * exact bytes; the full key is compared on a hit) and looked up; a miss runs the front end,
 * dpda_compile, and creates the token-mask table of the cache's vocabulary.  Entries are
 * reference counted: grammar_cache_get returns a held entry, grammar_cache_release drops it;
 * beyond `capacity` entries the least recently used unreferenced ones are freed.  Failed
 * compilations are not cached.  A mutex guards the cache; each entry has its own mutex
 * around its (lazily filled, not thread-safe) token-mask table: use grammar_compiled_fill_mask.
 *
 * Kinds: "json_schema" (whitespace 0/1), "regex", "ebnf", "choice" (a JSON list of strings).
 */
#ifndef LIGHTLLM_GRAMMAR_GRAMMAR_CACHE_H
#define LIGHTLLM_GRAMMAR_GRAMMAR_CACHE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "grammar/dpda.h"
#include "grammar/grammar.h"
#include "grammar/token_mask.h"

/* Runs the front end of `kind`; *out is initialised here and freed by the caller (also on error). */
status_t grammar_compile_spec(const char *kind, const char *src, size_t len, int whitespace, grammar *out);

typedef struct grammar_compiled {
    dpda *d;
    token_mask_table *masks;   /* NULL when the cache has no vocabulary */
    pthread_mutex_t lock;      /* guards masks */
    int64_t compile_ns;        /* front end + DPDA compile time of the miss that built it */
    /* private */
    char *key;
    size_t key_len;
    uint64_t hash;
    int32_t refs;
    uint64_t last_use;
} grammar_compiled;

typedef struct grammar_cache grammar_cache;

/* tv may be NULL (no masks); it must outlive the cache. */
grammar_cache *grammar_cache_create(const token_vocab *tv, int32_t capacity);
void grammar_cache_free(grammar_cache *c);   /* all entries must be released */
/* *hit is set to 1 when the entry came from the cache (may be NULL). */
status_t grammar_cache_get(grammar_cache *c, const char *kind, const char *src, size_t len, int whitespace,
                           grammar_compiled **out, int *hit);
void grammar_cache_release(grammar_cache *c, grammar_compiled *gc);
int32_t grammar_cache_num_entries(const grammar_cache *c);

/* token_mask_fill under the entry's lock. */
int32_t grammar_compiled_fill_mask(grammar_compiled *gc, dpda_matcher *m, uint32_t *mask);

#endif
