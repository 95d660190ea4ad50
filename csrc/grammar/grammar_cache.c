/* grammar_cache.c — content-addressed cache of compiled grammars; see grammar_cache.h. */
#include "grammar/grammar_cache.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "grammar/ebnf.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"

status_t grammar_compile_spec(const char *kind, const char *src, size_t len, int whitespace, grammar *out)
{
    if (strcmp(kind, "json_schema") == 0) {
        grammar_json_options opt = {whitespace};
        return grammar_from_json_schema(src, len, &opt, out);
    }
    if (strcmp(kind, "ebnf") == 0) return grammar_from_ebnf(src, len, out);
    if (strcmp(kind, "regex") == 0) return grammar_from_regex(src, len, out);
    if (strcmp(kind, "choice") == 0) return grammar_from_choices(src, len, out);
    grammar_init(out);
    return status_set(STATUS_INVALID_ARG, "unknown grammar kind '%.40s' (json_schema, ebnf, regex, choice)", kind);
}

struct grammar_cache {
    const token_vocab *tv;
    int32_t capacity;
    grammar_compiled **entries;
    int32_t num, cap;
    uint64_t clock;
    pthread_mutex_t lock;
};

grammar_cache *grammar_cache_create(const token_vocab *tv, int32_t capacity)
{
    grammar_cache *c = calloc(1, sizeof *c);
    LL_ASSERT(c);
    c->tv = tv;
    c->capacity = capacity > 0 ? capacity : 1;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void grammar_compiled_free(grammar_compiled *gc)
{
    token_mask_table_free(gc->masks);
    dpda_free(gc->d);
    pthread_mutex_destroy(&gc->lock);
    free(gc->key);
    free(gc);
}

void grammar_cache_free(grammar_cache *c)
{
    if (!c) return;
    for (int32_t i = 0; i < c->num; i++) {
        LL_ASSERT(c->entries[i]->refs == 0);
        grammar_compiled_free(c->entries[i]);
    }
    free(c->entries);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int32_t grammar_cache_num_entries(const grammar_cache *c) { return c->num; }

static char *grammar_cache_key(const char *kind, const char *src, size_t len, int ws, size_t *key_len, uint64_t *hash)
{
    size_t kl = strlen(kind);
    int64_t thr = grammar_counter_threshold();   /* which bounds the front ends count (grammar.h) */
    *key_len = kl + 2 + sizeof thr + len;
    char *k = malloc(*key_len + 1);
    LL_ASSERT(k);
    memcpy(k, kind, kl);
    k[kl] = 0;
    k[kl + 1] = (char)(ws ? '1' : '0');
    memcpy(k + kl + 2, &thr, sizeof thr);
    if (len) memcpy(k + kl + 2 + sizeof thr, src, len);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < *key_len; i++) h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
    *hash = h;
    return k;
}

static int64_t grammar_cache_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

status_t grammar_cache_get(grammar_cache *c, const char *kind, const char *src, size_t len, int whitespace,
                           grammar_compiled **out, int *hit)
{
    *out = NULL;
    if (hit) *hit = 0;
    size_t key_len;
    uint64_t hash;
    char *key = grammar_cache_key(kind, src, len, whitespace, &key_len, &hash);
    pthread_mutex_lock(&c->lock);
    for (int32_t i = 0; i < c->num; i++) {
        grammar_compiled *e = c->entries[i];
        if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
            e->refs++;
            e->last_use = ++c->clock;
            pthread_mutex_unlock(&c->lock);
            free(key);
            *out = e;
            if (hit) *hit = 1;
            return STATUS_OK;
        }
    }
    pthread_mutex_unlock(&c->lock);
    /* compile outside the lock (two threads may compile the same spec; the second insert wins
     * nothing: both entries stay valid, the later one is found first next time) */
    int64_t t0 = grammar_cache_now_ns();
    grammar g;
    dpda *d = NULL;
    status_t st = grammar_compile_spec(kind, src, len, whitespace, &g);
    if (st == STATUS_OK) st = dpda_compile(&g, &d);
    grammar_free(&g);
    if (st != STATUS_OK) {
        free(key);
        return st;
    }
    grammar_compiled *e = calloc(1, sizeof *e);
    LL_ASSERT(e);
    e->d = d;
    e->masks = c->tv ? token_mask_table_create(d, c->tv) : NULL;
    pthread_mutex_init(&e->lock, NULL);
    e->compile_ns = grammar_cache_now_ns() - t0;
    e->key = key;
    e->key_len = key_len;
    e->hash = hash;
    e->refs = 1;
    pthread_mutex_lock(&c->lock);
    e->last_use = ++c->clock;
    /* evict least recently used unreferenced entries beyond capacity */
    while (c->num >= c->capacity) {
        int32_t victim = -1;
        for (int32_t i = 0; i < c->num; i++)
            if (c->entries[i]->refs == 0 && (victim < 0 || c->entries[i]->last_use < c->entries[victim]->last_use)) victim = i;
        if (victim < 0) break;
        grammar_compiled_free(c->entries[victim]);
        c->entries[victim] = c->entries[--c->num];
    }
    if (c->num == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->entries = realloc(c->entries, (size_t)c->cap * sizeof *c->entries);
        LL_ASSERT(c->entries);
    }
    c->entries[c->num++] = e;
    pthread_mutex_unlock(&c->lock);
    *out = e;
    return STATUS_OK;
}

void grammar_cache_release(grammar_cache *c, grammar_compiled *gc)
{
    if (!gc) return;
    pthread_mutex_lock(&c->lock);
    LL_ASSERT(gc->refs > 0);
    gc->refs--;
    pthread_mutex_unlock(&c->lock);
}

int32_t grammar_compiled_fill_mask(grammar_compiled *gc, dpda_matcher *m, uint32_t *mask)
{
    LL_ASSERT(gc->masks);
    pthread_mutex_lock(&gc->lock);
    int32_t n = token_mask_fill(gc->masks, m, mask);
    pthread_mutex_unlock(&gc->lock);
    return n;
}
