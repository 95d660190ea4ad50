/* vec.h — small containers shared by the grammar compiler files (regularize, lr, dpda,
 * token_mask).  VEC(T) is a struct {T *p; int64_t n, cap;}; VEC_PUSH appends (allocation
 * failure is fatal, as everywhere in csrc/grammar); VEC_FREE releases.  vec_intern maps
 * int32 arrays (DFA subsets, LR kernels) to dense ids. */
#ifndef LIGHTLLM_GRAMMAR_VEC_H
#define LIGHTLLM_GRAMMAR_VEC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define VEC(T) struct { T *p; int64_t n, cap; }

#define VEC_RESERVE(v, need)                                                              \
    do {                                                                                  \
        if ((int64_t)(need) > (v).cap) {                                                  \
            int64_t vec_cap_ = (v).cap ? (v).cap : 16;                                    \
            while (vec_cap_ < (int64_t)(need)) vec_cap_ *= 2;                             \
            void *vec_p_ = realloc((v).p, (size_t)vec_cap_ * sizeof *(v).p);              \
            LL_ASSERT(vec_p_);                                                            \
            (v).p = vec_p_;                                                               \
            (v).cap = vec_cap_;                                                           \
        }                                                                                 \
    } while (0)

#define VEC_PUSH(v, x)                                                                    \
    do {                                                                                  \
        VEC_RESERVE(v, (v).n + 1);                                                        \
        (v).p[(v).n++] = (x);                                                             \
    } while (0)

#define VEC_FREE(v)                                                                       \
    do {                                                                                  \
        free((v).p);                                                                      \
        (v).p = NULL;                                                                     \
        (v).n = (v).cap = 0;                                                              \
    } while (0)

typedef VEC(int32_t) vec_i32;
typedef VEC(int64_t) vec_i64;

typedef struct vec_intern {
    int32_t *slots;   /* [cap] id or -1 */
    int64_t cap;
    vec_i32 pool;     /* the arrays back to back */
    vec_i64 off;      /* [num + 1] offsets into pool */
    VEC(uint64_t) hash;   /* [num] hash of each array: probes compare it first, growth reuses it */
} vec_intern;

static inline uint64_t vec_hash_i32(const int32_t *a, int64_t n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) h = (h ^ (uint32_t)a[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static inline int32_t vec_intern_num(const vec_intern *t) { return t->off.n ? (int32_t)(t->off.n - 1) : 0; }
static inline const int32_t *vec_intern_get(const vec_intern *t, int32_t id, int32_t *n)
{
    *n = (int32_t)(t->off.p[id + 1] - t->off.p[id]);
    return t->pool.p + t->off.p[id];
}

/* Returns the id of a[0..n); *added = 1 when it is new. */
static inline int32_t vec_intern_add(vec_intern *t, const int32_t *a, int32_t n, int *added)
{
    if (t->off.n == 0) VEC_PUSH(t->off, 0);
    int32_t num = vec_intern_num(t);
    if ((int64_t)num * 2 + 2 > t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 256;
        while ((int64_t)num * 2 + 2 > cap) cap *= 2;
        free(t->slots);
        t->slots = malloc((size_t)cap * sizeof *t->slots);
        LL_ASSERT(t->slots);
        for (int64_t i = 0; i < cap; i++) t->slots[i] = -1;
        t->cap = cap;
        for (int32_t id = 0; id < num; id++) {
            uint64_t i = t->hash.p[id] & (uint64_t)(cap - 1);
            while (t->slots[i] >= 0) i = (i + 1) & (uint64_t)(cap - 1);
            t->slots[i] = id;
        }
    }
    uint64_t h = vec_hash_i32(a, n);
    uint64_t i = h & (uint64_t)(t->cap - 1);
    while (t->slots[i] >= 0) {
        int32_t id = t->slots[i];
        if (t->hash.p[id] == h) {
            int32_t m;
            const int32_t *b = vec_intern_get(t, id, &m);
            if (m == n) {
                int32_t k = 0;
                while (k < n && a[k] == b[k]) k++;
                if (k == n) { *added = 0; return id; }
            }
        }
        i = (i + 1) & (uint64_t)(t->cap - 1);
    }
    t->slots[i] = num;
    VEC_PUSH(t->hash, h);
    VEC_RESERVE(t->pool, t->pool.n + n);
    if (n) memcpy(t->pool.p + t->pool.n, a, (size_t)n * sizeof *a);
    t->pool.n += n;
    VEC_PUSH(t->off, t->pool.n);
    *added = 1;
    return num;
}

/* Empties t, keeping its memory: only the slots of its arrays are reset (found through the kept
 * hashes), so a table that once held a large set costs nothing more to clear. */
static inline void vec_intern_clear(vec_intern *t)
{
    int32_t num = vec_intern_num(t);
    for (int32_t id = 0; id < num; id++) {
        uint64_t i = t->hash.p[id] & (uint64_t)(t->cap - 1);
        while (t->slots[i] != id) i = (i + 1) & (uint64_t)(t->cap - 1);
        t->slots[i] = -1;
    }
    t->pool.n = 0;
    t->off.n = 0;
    t->hash.n = 0;
}

static inline void vec_intern_free(vec_intern *t)
{
    free(t->slots);
    VEC_FREE(t->pool);
    VEC_FREE(t->off);
    VEC_FREE(t->hash);
    t->slots = NULL;
    t->cap = 0;
}

/* vec_map: uint32 key (not UINT32_MAX) -> int32 value, open addressing, grows at half full;
 * a small replacement for a direct table over a large key space (65,536 terminal ranges) that
 * each compile would otherwise have to zero. */
typedef struct vec_map {
    uint32_t *keys;   /* [cap] key or UINT32_MAX */
    int32_t *vals;    /* [cap] */
    int64_t cap, n;
} vec_map;

/* The value slot of key, inserted as 0 when missing; valid until the next vec_map_at. */
static inline int32_t *vec_map_at(vec_map *m, uint32_t key)
{
    if ((m->n + 1) * 2 > m->cap) {
        int64_t old = m->cap, cap = old ? old * 2 : 64;
        uint32_t *ok = m->keys;
        int32_t *ov = m->vals;
        m->keys = malloc((size_t)cap * sizeof *m->keys);
        m->vals = malloc((size_t)cap * sizeof *m->vals);
        LL_ASSERT(m->keys && m->vals);
        memset(m->keys, 0xff, (size_t)cap * sizeof *m->keys);
        m->cap = cap;
        for (int64_t i = 0; i < old; i++) {
            if (ok[i] == UINT32_MAX) continue;
            uint64_t j = ((uint64_t)ok[i] * 0x9E3779B97F4A7C15ull >> 32) & (uint64_t)(cap - 1);
            while (m->keys[j] != UINT32_MAX) j = (j + 1) & (uint64_t)(cap - 1);
            m->keys[j] = ok[i];
            m->vals[j] = ov[i];
        }
        free(ok);
        free(ov);
    }
    uint64_t j = ((uint64_t)key * 0x9E3779B97F4A7C15ull >> 32) & (uint64_t)(m->cap - 1);
    while (m->keys[j] != UINT32_MAX) {
        if (m->keys[j] == key) return &m->vals[j];
        j = (j + 1) & (uint64_t)(m->cap - 1);
    }
    m->keys[j] = key;
    m->vals[j] = 0;
    m->n++;
    return &m->vals[j];
}

static inline void vec_map_free(vec_map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

#endif
