/* token_vocab.c — the vocabulary's byte strings as a trie (token_mask.h: token_vocab), built
 * once per vocabulary; it also holds the region cache (token_region.c), freed here.
 * Invariants: nodes in preorder, the root implicit; subtree i's tokens are
 * sorted[node[i].tok_start, node[node[i].end].tok_start) (node[num_nodes].tok_start =
 * num_sorted); only usable tokens (not special, not EOS, not empty) are in the trie. */
#include "grammar/token_mask_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/vec.h"

typedef struct token_sort_item {
    const uint8_t *bytes;
    int32_t len, id;
} token_sort_item;

static int token_cmp(const void *a, const void *b)
{
    const token_sort_item *x = a, *y = b;
    int c = memcmp(x->bytes, y->bytes, (size_t)(x->len < y->len ? x->len : y->len));
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : 1;
}

status_t token_vocab_create(const detok_vocab *dv, const int32_t *eos_ids, int32_t num_eos, token_vocab **out)
{
    *out = NULL;
    int32_t n = detok_vocab_size(dv);
    for (int32_t i = 0; i < num_eos; i++)
        if (eos_ids[i] < 0 || eos_ids[i] >= n)
            return status_set(STATUS_INVALID_ARG, "eos id %d is outside the vocabulary [0, %d)", (int)eos_ids[i], (int)n);
    token_vocab *tv = calloc(1, sizeof *tv);
    LL_ASSERT(tv);
    tv->dv = dv;
    tv->size = n;
    tv->words = (n + 31) / 32;
    tv->usable = calloc((size_t)n, 1);
    tv->is_eos = calloc((size_t)n, 1);
    tv->eos = malloc(((size_t)num_eos + 1) * sizeof *tv->eos);
    tv->sorted = malloc((size_t)n * sizeof *tv->sorted);
    LL_ASSERT(tv->usable && tv->is_eos && tv->eos && tv->sorted);
    tv->num_eos = num_eos;
    for (int32_t i = 0; i < num_eos; i++) { tv->eos[i] = eos_ids[i]; tv->is_eos[eos_ids[i]] = 1; }
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t len;
        detok_token_bytes(dv, i, &len);
        if (len > 0 && !detok_is_special(dv, i) && !tv->is_eos[i]) {
            tv->usable[i] = 1;
            tv->sorted[tv->num_sorted++] = i;
            total += len;
        }
    }
    token_sort_item *items = malloc(((size_t)tv->num_sorted + 1) * sizeof *items);
    LL_ASSERT(items);
    for (int32_t k = 0; k < tv->num_sorted; k++) {
        items[k].id = tv->sorted[k];
        items[k].bytes = detok_token_bytes(dv, items[k].id, &items[k].len);
    }
    qsort(items, (size_t)tv->num_sorted, sizeof *items, token_cmp);
    for (int32_t k = 0; k < tv->num_sorted; k++) tv->sorted[k] = items[k].id;
    free(items);
    /* nodes: at most total bytes */
    tv->node = calloc((size_t)total + 2, sizeof *tv->node);
    tv->rank = malloc((size_t)n * sizeof *tv->rank);
    tv->tok_bytes = malloc((size_t)n * sizeof *tv->tok_bytes);
    tv->tok_len = malloc((size_t)n * sizeof *tv->tok_len);
    LL_ASSERT(tv->node && tv->rank && tv->tok_bytes && tv->tok_len);
    for (int32_t i = 0; i < n; i++) tv->tok_bytes[i] = detok_token_bytes(dv, i, &tv->tok_len[i]);
    for (int32_t i = 0; i < n; i++) tv->rank[i] = -1;
    for (int32_t k = 0; k < tv->num_sorted; k++) tv->rank[tv->sorted[k]] = k;
    vec_i32 path = {0};   /* path.p[d] = node at depth d + 1 on the current branch */
    vec_i32 open = {0};   /* nodes whose subtree is still open */
    const uint8_t *prev = NULL;
    int32_t prev_len = 0, nn = 0;
    for (int32_t k = 0; k < tv->num_sorted; k++) {
        int32_t len;
        const uint8_t *b = detok_token_bytes(dv, tv->sorted[k], &len);
        int32_t l = 0;
        while (l < len && l < prev_len && b[l] == prev[l]) l++;
        for (int32_t d = l; d < len; d++) {
            while (open.n && tv->node[open.p[open.n - 1]].depth >= d + 1) tv->node[open.p[--open.n]].end = nn;
            tv->node[nn].byte = b[d];
            tv->node[nn].depth = d + 1;
            tv->node[nn].tok_start = k;   /* tokens before k sort before this prefix */
            VEC_RESERVE(path, d + 1);
            if (path.n < d + 1) path.n = d + 1;
            path.p[d] = nn;
            VEC_PUSH(open, nn);
            nn++;
        }
        int32_t node = path.p[len - 1];
        LL_ASSERT(len < 65536 && tv->node[node].tok_count < UINT16_MAX);
        tv->node[node].tok_count++;
        if (len > tv->max_depth) tv->max_depth = len;
        prev = b;
        prev_len = len;
    }
    while (open.n) tv->node[open.p[--open.n]].end = nn;
    tv->num_nodes = nn;
    tv->node[nn].tok_start = tv->num_sorted;
    tv->root = malloc(258 * sizeof *tv->root);
    tv->root_byte = malloc(257);
    LL_ASSERT(tv->root && tv->root_byte);
    for (int32_t i = 0; i < nn; i = tv->node[i].end) {
        tv->root_byte[tv->num_root] = tv->node[i].byte;
        tv->root[tv->num_root++] = i;
    }
    tv->root[tv->num_root] = nn;   /* never reached by a walk's index */
    /* each node's children in order (kid_off[p + 1]: node p's first, p = -1 the root), padded
     * with TOKEN_KID_AHEAD entries of nn for the walks' look-ahead */
    tv->kid_off = malloc(((size_t)nn + 2) * sizeof *tv->kid_off);
    tv->kid = malloc(((size_t)nn + TOKEN_KID_AHEAD) * sizeof *tv->kid);
    tv->kid_byte = malloc((size_t)nn + TOKEN_KID_AHEAD);
    LL_ASSERT(tv->kid_off && tv->kid && tv->kid_byte);
    int32_t nk = 0;
    for (int32_t p = -1; p < nn; p++) {
        tv->kid_off[p + 1] = nk;
        for (int32_t c = p + 1, e = p < 0 ? nn : tv->node[p].end; c < e; c = tv->node[c].end) {
            tv->kid_byte[nk] = tv->node[c].byte;
            tv->kid[nk++] = c;
        }
    }
    tv->kid_off[nn + 1] = nk;
    for (int32_t k = 0; k < TOKEN_KID_AHEAD; k++) { tv->kid[nk + k] = nn; tv->kid_byte[nk + k] = 0; }
    pthread_mutex_init(&tv->region_lock, NULL);
    tv->rh_cap = 64;
    tv->rh_keys = malloc((size_t)tv->rh_cap * sizeof *tv->rh_keys);
    tv->rh_vals = malloc((size_t)tv->rh_cap * sizeof *tv->rh_vals);
    LL_ASSERT(tv->rh_keys && tv->rh_vals);
    memset(tv->rh_keys, 0xff, (size_t)tv->rh_cap * sizeof *tv->rh_keys);
    VEC_FREE(path);
    VEC_FREE(open);
    *out = tv;
    return STATUS_OK;
}

void token_vocab_free(token_vocab *tv)
{
    if (!tv) return;
    for (int32_t i = 0; i < tv->num_regions; i++) {
        free(tv->regions[i].sig);
        free(tv->regions[i].enc);
        free(tv->regions[i].e.accepted);
        free(tv->regions[i].e.unc);
        free(tv->regions[i].e.unc_lcp);
        free(tv->regions[i].ref);
        free(tv->regions[i].by_st);
        free(tv->regions[i].st_off);
        for (int32_t r = 0; r < tv->regions[i].s_max; r++) free(tv->regions[i].bound[r]);
        free(tv->regions[i].bound);
        free(tv->regions[i].cw);
        free(tv->regions[i].cw_lcp);
        free(tv->regions[i].unc_pu);
        free(tv->regions[i].ex_ord);
        free(tv->regions[i].ex_lcp);
        free(tv->regions[i].unc_rank);
        free(tv->regions[i].racc);
        free(tv->regions[i].ex_tail);
        free(tv->regions[i].ex_off);
        free(tv->regions[i].unc_bytes);
        free(tv->regions[i].unc_off);
        free(tv->regions[i].cw_bytes);
        free(tv->regions[i].cw_off);
        free(tv->regions[i].cx);
        free(tv->regions[i].cx_tail);
        free(tv->regions[i].cx_off);
        free(tv->regions[i].lw);
        free(tv->regions[i].lw_lcp);
        free(tv->regions[i].lw_bytes);
        free(tv->regions[i].lw_off);
    }
    free(tv->regions);
    free(tv->rh_keys);
    free(tv->rh_vals);
    pthread_mutex_destroy(&tv->region_lock);
    free(tv->usable); free(tv->is_eos); free(tv->eos); free(tv->sorted); free(tv->rank);
    free(tv->node); free(tv->tok_bytes); free(tv->tok_len); free(tv->root); free(tv->root_byte);
    free(tv->kid_off); free(tv->kid); free(tv->kid_byte);
    free(tv);
}

int32_t token_vocab_size(const token_vocab *tv) { return tv->size; }
int32_t token_vocab_mask_words(const token_vocab *tv) { return tv->words; }
int token_vocab_is_eos(const token_vocab *tv, int32_t token) { return token >= 0 && token < tv->size && tv->is_eos[token]; }
int32_t token_vocab_num_nodes(const token_vocab *tv) { return tv->num_nodes; }
