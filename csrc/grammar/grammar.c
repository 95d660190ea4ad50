/* grammar.c — the grammar IR: nonterminals, rules, EBNF desugaring helpers, UTF-8 character
 * classes and the GBNF-like printer.  See grammar.h. */
#include "grammar/grammar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static void *grammar_xrealloc(void *p, size_t bytes)
{
    void *q = realloc(p, bytes ? bytes : 1);
    LL_ASSERT(q);
    return q;
}

/* ---- name table: open addressing over nonterminal indices ---- */

typedef struct grammar_names_hash {
    int32_t *slots;  /* -1 empty */
    int32_t cap;
} grammar_names_hash;

static uint64_t grammar_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static grammar_names_hash *grammar_hash_of(grammar *g) { return (grammar_names_hash *)g->name_index; }

static void grammar_hash_insert(grammar_names_hash *h, char **names, int32_t idx)
{
    uint64_t i = grammar_hash_str(names[idx]) & (uint64_t)(h->cap - 1);
    while (h->slots[i] >= 0) i = (i + 1) & (uint64_t)(h->cap - 1);
    h->slots[i] = idx;
}

int32_t grammar_find_nonterminal(const grammar *g, const char *name)
{
    grammar_names_hash *h = grammar_hash_of((grammar *)g);
    if (!h) return -1;
    uint64_t i = grammar_hash_str(name) & (uint64_t)(h->cap - 1);
    while (h->slots[i] >= 0) {
        if (strcmp(g->names[h->slots[i]], name) == 0) return h->slots[i];
        i = (i + 1) & (uint64_t)(h->cap - 1);
    }
    return -1;
}

void grammar_init(grammar *g)
{
    memset(g, 0, sizeof *g);
    g->start = -1;
}

void grammar_free(grammar *g)
{
    for (int32_t i = 0; i < g->num_nts; i++) free(g->names[i]);
    grammar_names_hash *h = grammar_hash_of(g);
    if (h) { free(h->slots); free(h); }
    free(g->names);
    free(g->rules);
    free(g->syms);
    free(g->counted);
    grammar_init(g);
}

static int64_t grammar_counter_min_bound = GRAMMAR_COUNTER_THRESHOLD;

void grammar_set_counter_threshold(int64_t threshold)
{
    grammar_counter_min_bound = threshold > 0 ? threshold : GRAMMAR_COUNTER_THRESHOLD;
}

int64_t grammar_counter_threshold(void) { return grammar_counter_min_bound; }

int32_t grammar_add_counted(grammar *g, int32_t nt, int64_t min, int64_t max)
{
    if (g->num_counted == g->cap_counted) {
        g->cap_counted = g->cap_counted ? g->cap_counted * 2 : 8;
        g->counted = grammar_xrealloc(g->counted, (size_t)g->cap_counted * sizeof *g->counted);
    }
    g->counted[g->num_counted] = (grammar_counted){nt, min, max};
    return g->num_counted++;
}

int32_t grammar_find_counted(const grammar *g, int32_t nt)
{
    for (int32_t i = 0; i < g->num_counted; i++)
        if (g->counted[i].nt == nt) return i;
    return -1;
}

static void grammar_add_name(grammar *g, char *name)
{
    if (g->num_nts == g->cap_nts) {
        int32_t cap = g->cap_nts ? g->cap_nts * 2 : 64;
        g->names = grammar_xrealloc(g->names, (size_t)cap * sizeof *g->names);
        g->cap_nts = cap;
        grammar_names_hash *h = grammar_hash_of(g);
        if (!h) h = g->name_index = grammar_xrealloc(NULL, sizeof *h);
        else free(h->slots);
        h->cap = cap * 4;
        h->slots = grammar_xrealloc(NULL, (size_t)h->cap * sizeof *h->slots);
        memset(h->slots, 0xff, (size_t)h->cap * sizeof *h->slots);
        for (int32_t i = 0; i < g->num_nts; i++) grammar_hash_insert(h, g->names, i);
    }
    g->names[g->num_nts] = name;
    grammar_hash_insert(grammar_hash_of(g), g->names, g->num_nts);
    g->num_nts++;
}

int32_t grammar_add_nonterminal(grammar *g, const char *name)
{
    size_t len = strlen(name);
    char *buf = grammar_xrealloc(NULL, len + 24);
    memcpy(buf, name, len + 1);
    for (int64_t k = 1; grammar_find_nonterminal(g, buf) >= 0; k++)
        snprintf(buf + len, 24, "_%lld", (long long)(k == 1 ? g->num_nts : g->num_nts + k));
    grammar_add_name(g, buf);
    return g->num_nts - 1;
}

void grammar_add_rule(grammar *g, int32_t lhs, const grammar_sym *syms, int32_t num_syms)
{
    LL_ASSERT(lhs >= 0 && lhs < g->num_nts);
    if (g->num_rules == g->cap_rules) {
        g->cap_rules = g->cap_rules ? g->cap_rules * 2 : 128;
        g->rules = grammar_xrealloc(g->rules, (size_t)g->cap_rules * sizeof *g->rules);
    }
    if (g->num_syms + num_syms > g->cap_syms) {
        while (g->num_syms + num_syms > g->cap_syms) g->cap_syms = g->cap_syms ? g->cap_syms * 2 : 512;
        g->syms = grammar_xrealloc(g->syms, (size_t)g->cap_syms * sizeof *g->syms);
    }
    grammar_rule *r = &g->rules[g->num_rules++];
    r->lhs = lhs;
    r->num_syms = num_syms;
    r->first_sym = (int32_t)g->num_syms;
    r->count_kind = GRAMMAR_COUNT_NONE;
    r->counter = -1;
    if (num_syms) memcpy(g->syms + g->num_syms, syms, (size_t)num_syms * sizeof *syms);
    g->num_syms += num_syms;
}

/* ---- sequences ---- */

void grammar_seq_push(grammar_seq *s, grammar_sym sym)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->syms = grammar_xrealloc(s->syms, (size_t)s->cap * sizeof *s->syms);
    }
    s->syms[s->n++] = sym;
}

void grammar_seq_push_literal(grammar_seq *s, const char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) grammar_seq_push(s, grammar_term(bytes[i], bytes[i]));
}

void grammar_seq_clear(grammar_seq *s) { s->n = 0; }

void grammar_seq_free(grammar_seq *s)
{
    free(s->syms);
    memset(s, 0, sizeof *s);
}

/* ---- EBNF helpers ---- */

grammar_sym grammar_add_literal(grammar *g, const char *prefix, const char *bytes, size_t len)
{
    if (len == 1) return grammar_term(bytes[0], bytes[0]);
    grammar_seq s = {0};
    grammar_seq_push_literal(&s, bytes, len);
    int32_t nt = grammar_add_nonterminal(g, prefix);
    grammar_add_rule(g, nt, s.syms, s.n);
    grammar_seq_free(&s);
    return grammar_nt(nt);
}

grammar_sym grammar_add_optional(grammar *g, const char *prefix, grammar_sym x)
{
    int32_t nt = grammar_add_nonterminal(g, prefix);
    grammar_add_rule(g, nt, NULL, 0);
    grammar_add_rule(g, nt, &x, 1);
    return grammar_nt(nt);
}

grammar_sym grammar_add_star(grammar *g, const char *prefix, grammar_sym x)
{
    int32_t nt = grammar_add_nonterminal(g, prefix);
    grammar_sym body[2] = {grammar_nt(nt), x};
    grammar_add_rule(g, nt, NULL, 0);
    grammar_add_rule(g, nt, body, 2);
    return grammar_nt(nt);
}

grammar_sym grammar_add_plus(grammar *g, const char *prefix, grammar_sym x)
{
    int32_t nt = grammar_add_nonterminal(g, prefix);
    grammar_sym body[2] = {grammar_nt(nt), x};
    grammar_add_rule(g, nt, &x, 1);
    grammar_add_rule(g, nt, body, 2);
    return grammar_nt(nt);
}

static grammar_sym grammar_add_repeat_expanded(grammar *g, const char *prefix, grammar_sym x, int64_t min, int64_t max,
                                               grammar_sym sep, int has_sep);

grammar_sym grammar_add_repeat(grammar *g, const char *prefix, grammar_sym x, int64_t min, int64_t max,
                               grammar_sym sep, int has_sep)
{
    int64_t big = max > min ? max : min;
    if (big < grammar_counter_min_bound || (max >= 0 && max < min) || max == 0)
        return grammar_add_repeat_expanded(g, prefix, x, min, max, sep, has_sep);
    /* counted: R ::= x | R sep x, bounds kept aside (grammar_counted) */
    int32_t nt = grammar_add_nonterminal(g, prefix);
    grammar_add_rule(g, nt, &x, 1);
    grammar_sym b[3] = {grammar_nt(nt), sep, x};
    if (has_sep) grammar_add_rule(g, nt, b, 3);
    else { b[1] = x; grammar_add_rule(g, nt, b, 2); }
    grammar_add_counted(g, nt, min > 1 ? min : 1, max);
    return min == 0 ? grammar_add_optional(g, prefix, grammar_nt(nt)) : grammar_nt(nt);
}

void grammar_expand_counted(const grammar *in, grammar *out)
{
    grammar_init(out);
    for (int32_t i = 0; i < in->num_nts; i++) {
        int32_t k = grammar_add_nonterminal(out, in->names[i]);
        LL_ASSERT(k == i);
    }
    uint8_t *counted = calloc((size_t)in->num_nts + 1, 1);
    LL_ASSERT(counted);
    for (int32_t c = 0; c < in->num_counted; c++) counted[in->counted[c].nt] = 1;
    for (int32_t r = 0; r < in->num_rules; r++)
        if (!counted[in->rules[r].lhs])
            grammar_add_rule(out, in->rules[r].lhs, grammar_rule_syms(in, &in->rules[r]), in->rules[r].num_syms);
    for (int32_t c = 0; c < in->num_counted; c++) {
        int32_t nt = in->counted[c].nt;
        grammar_sym x = 0, sep = 0;
        int has_sep = 0;
        for (int32_t r = 0; r < in->num_rules; r++) {
            if (in->rules[r].lhs != nt) continue;
            const grammar_sym *s = grammar_rule_syms(in, &in->rules[r]);
            if (in->rules[r].num_syms == 1) x = s[0];
            else if (in->rules[r].num_syms == 3) { sep = s[1]; has_sep = 1; }
        }
        grammar_sym e = grammar_add_repeat_expanded(out, in->names[nt], x, in->counted[c].min, in->counted[c].max, sep, has_sep);
        grammar_add_rule(out, nt, &e, 1);
    }
    free(counted);
    out->start = in->start;
}

static grammar_sym grammar_add_repeat_expanded(grammar *g, const char *prefix, grammar_sym x, int64_t min, int64_t max,
                                               grammar_sym sep, int has_sep)
{
    /* First element X; later ones are (sep X) when has_sep.  Result R ::= ε (if min == 0) | X T
     * where T matches (sep X){min-1, max-1}: a fixed prefix of min-1 copies followed by either
     * (sep X)* or a right-nested chain of optional copies. */
    if (!has_sep && max < 0 && min <= 1) return min == 0 ? grammar_add_star(g, prefix, x) : grammar_add_plus(g, prefix, x);
    int32_t nt = grammar_add_nonterminal(g, prefix);
    if (max >= 0 && max < min) return grammar_nt(nt);  /* empty language */
    if (max == 0) { grammar_add_rule(g, nt, NULL, 0); return grammar_nt(nt); }
    grammar_sym next = x;
    if (has_sep) {
        int32_t sx = grammar_add_nonterminal(g, prefix);
        grammar_sym b[2] = {sep, x};
        grammar_add_rule(g, sx, b, 2);
        next = grammar_nt(sx);
    }
    grammar_sym tail;
    if (max < 0) {
        tail = grammar_add_star(g, prefix, next);
    } else {
        /* opt_k ::= ε | next opt_{k-1}; opt_0 ::= ε */
        int64_t k = max - (min > 0 ? min : 1);
        int32_t prev = grammar_add_nonterminal(g, prefix);
        grammar_add_rule(g, prev, NULL, 0);
        for (int64_t i = 0; i < k; i++) {
            int32_t o = grammar_add_nonterminal(g, prefix);
            grammar_sym b[2] = {next, grammar_nt(prev)};
            grammar_add_rule(g, o, NULL, 0);
            grammar_add_rule(g, o, b, 2);
            prev = o;
        }
        tail = grammar_nt(prev);
    }
    grammar_seq s = {0};
    grammar_seq_push(&s, x);
    for (int64_t i = 1; i < min; i++) grammar_seq_push(&s, next);
    grammar_seq_push(&s, tail);
    if (min == 0) grammar_add_rule(g, nt, NULL, 0);
    grammar_add_rule(g, nt, s.syms, s.n);
    grammar_seq_free(&s);
    return grammar_nt(nt);
}

grammar_sym grammar_add_choice(grammar *g, const char *prefix, const grammar_sym *alts, int32_t n)
{
    if (n == 1) return alts[0];
    int32_t nt = grammar_add_nonterminal(g, prefix);
    for (int32_t i = 0; i < n; i++) grammar_add_rule(g, nt, &alts[i], 1);
    return grammar_nt(nt);
}

grammar_sym grammar_add_empty(grammar *g, const char *prefix)
{
    return grammar_nt(grammar_add_nonterminal(g, prefix));
}

/* ---- character classes ---- */

static int grammar_range_cmp(const void *a, const void *b)
{
    const grammar_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

int32_t grammar_ranges_normalize(const grammar_range *in, int32_t n, int negate, grammar_range *out)
{
    grammar_range *tmp = grammar_xrealloc(NULL, (size_t)(n + 2) * sizeof *tmp);
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        grammar_range r = in[i];
        if (r.hi > GRAMMAR_MAX_CODEPOINT) r.hi = GRAMMAR_MAX_CODEPOINT;
        if (r.lo > r.hi) continue;
        tmp[m++] = r;
    }
    qsort(tmp, (size_t)m, sizeof *tmp, grammar_range_cmp);
    int32_t k = 0;
    for (int32_t i = 0; i < m; i++) {
        if (k && tmp[i].lo <= out[k - 1].hi + 1) {
            if (tmp[i].hi > out[k - 1].hi) out[k - 1].hi = tmp[i].hi;
        } else {
            out[k++] = tmp[i];
        }
    }
    if (negate) {
        int32_t c = 0;
        uint32_t next = 0;
        for (int32_t i = 0; i < k; i++) {
            if (out[i].lo > next) tmp[c++] = (grammar_range){next, out[i].lo - 1};
            next = out[i].hi + 1;
        }
        if (next <= GRAMMAR_MAX_CODEPOINT) tmp[c++] = (grammar_range){next, GRAMMAR_MAX_CODEPOINT};
        memcpy(out, tmp, (size_t)c * sizeof *tmp);
        k = c;
    }
    free(tmp);
    /* drop surrogates D800-DFFF (not encodable in UTF-8) — may split one range in two */
    for (int32_t i = 0; i < k; i++) {
        if (out[i].hi < 0xD800 || out[i].lo > 0xDFFF) continue;
        if (out[i].lo < 0xD800 && out[i].hi > 0xDFFF) {
            /* split: needs one extra slot (out holds n + 2) */
            memmove(&out[i + 2], &out[i + 1], (size_t)(k - i - 1) * sizeof *out);
            out[i + 1] = (grammar_range){0xE000, out[i].hi};
            out[i].hi = 0xD7FF;
            k++;
            i++;
        } else if (out[i].lo < 0xD800) {
            out[i].hi = 0xD7FF;
        } else if (out[i].hi > 0xDFFF) {
            out[i].lo = 0xE000;
        } else {
            memmove(&out[i], &out[i + 1], (size_t)(k - i - 1) * sizeof *out);
            k--;
            i--;
        }
    }
    return k;
}

static int grammar_utf8_encode(uint32_t cp, uint8_t *b)
{
    if (cp < 0x80) { b[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | (cp >> 6)); b[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12)); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | (cp >> 18)); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Adds alternatives for [lo, hi] (no surrogates) to nt, as in regex-syntax's Utf8Sequences. */
static void grammar_utf8_range(grammar *g, int32_t nt, uint32_t lo, uint32_t hi)
{
    static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++) {
        if (lo <= bounds[i] && hi > bounds[i]) {
            grammar_utf8_range(g, nt, lo, bounds[i]);
            grammar_utf8_range(g, nt, bounds[i] + 1, hi);
            return;
        }
    }
    for (int i = 1; i < 4; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                grammar_utf8_range(g, nt, lo, lo | m);
                grammar_utf8_range(g, nt, (lo | m) + 1, hi);
                return;
            }
            if ((hi & m) != m) {
                grammar_utf8_range(g, nt, lo, (hi & ~m) - 1);
                grammar_utf8_range(g, nt, hi & ~m, hi);
                return;
            }
        }
    }
    uint8_t a[4], b[4];
    int n = grammar_utf8_encode(lo, a);
    grammar_utf8_encode(hi, b);
    grammar_sym body[4];
    for (int i = 0; i < n; i++) body[i] = grammar_term(a[i], b[i]);
    grammar_add_rule(g, nt, body, n);
}

grammar_sym grammar_add_class(grammar *g, const char *prefix, const grammar_range *ranges, int32_t n, int negate)
{
    grammar_range *norm = grammar_xrealloc(NULL, (size_t)(n + 2) * sizeof *norm);
    int32_t k = grammar_ranges_normalize(ranges, n, negate, norm);
    grammar_sym result;
    if (k == 1 && norm[0].hi < 0x80) {
        result = grammar_term(norm[0].lo, norm[0].hi);
    } else {
        int32_t nt = grammar_add_nonterminal(g, prefix);
        for (int32_t i = 0; i < k; i++) grammar_utf8_range(g, nt, norm[i].lo, norm[i].hi);
        result = grammar_nt(nt);
    }
    free(norm);
    return result;
}

/* ---- byte classes ---- */

/* Renumbers the class ids in cls[256] (each below 512) 0, 1, ... in order of their smallest byte;
 * returns how many there are. */
static int32_t grammar_renumber_classes(int16_t cls[256])
{
    int16_t ren[512];
    for (int c = 0; c < 512; c++) ren[c] = -1;
    int32_t num = 0;
    for (int b = 0; b < 256; b++) {
        if (ren[cls[b]] < 0) ren[cls[b]] = (int16_t)num++;
        cls[b] = ren[cls[b]];
    }
    return num;
}

int32_t grammar_byte_classes(const grammar *g, uint8_t class_of[256])
{
    /* refine the partition by each distinct range (a 64K-bit map dedupes ranges), then
     * renumber classes by their smallest byte */
    uint64_t *seen = calloc(1024, sizeof *seen);
    LL_ASSERT(seen);
    int16_t cls[256] = {0};
    int32_t num = 1;
    for (int64_t i = 0; i < g->num_syms; i++) {
        grammar_sym s = g->syms[i];
        if (grammar_is_nt(s)) continue;
        uint32_t key = s & 0xffffu;
        if (seen[key >> 6] >> (key & 63) & 1) continue;
        seen[key >> 6] |= 1ull << (key & 63);
        int16_t remap[512];
        for (int c = 0; c < 512; c++) remap[c] = -1;
        for (int b = grammar_term_lo(s); b <= grammar_term_hi(s); b++) {
            if (remap[cls[b]] < 0) remap[cls[b]] = (int16_t)num++;
            cls[b] = remap[cls[b]];
        }
        if (num > 256) num = grammar_renumber_classes(cls); /* compact: ids stay below 512 */
    }
    num = grammar_renumber_classes(cls);
    for (int b = 0; b < 256; b++) class_of[b] = (uint8_t)cls[b];
    free(seen);
    return num;
}

/* ---- printer ---- */

void grammar_buf_put(grammar_buf *b, const char *s, size_t len)
{
    if (b->n + len + 1 > b->cap) {
        while (b->n + len + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 1024;
        b->p = grammar_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void grammar_buf_puts(grammar_buf *b, const char *s) { grammar_buf_put(b, s, strlen(s)); }

static int grammar_is_plain(uint8_t c) { return c >= 0x20 && c < 0x7F && c != '"' && c != '\\'; }

static void grammar_print_byte(grammar_buf *b, uint8_t c, int in_class)
{
    char tmp[8];
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\' && !(in_class && (c == ']' || c == '-' || c == '^')))
        snprintf(tmp, sizeof tmp, "%c", c);
    else if (c == '"' || c == '\\' || c == ']' || c == '-' || c == '^')
        snprintf(tmp, sizeof tmp, "\\%c", c);
    else
        snprintf(tmp, sizeof tmp, "\\x%02X", c);
    grammar_buf_puts(b, tmp);
}

static void grammar_print_rule_body(grammar_buf *b, const grammar *g, const grammar_rule *r)
{
    const grammar_sym *s = grammar_rule_syms(g, r);
    if (r->num_syms == 0) { grammar_buf_puts(b, "\"\""); return; }
    for (int32_t i = 0; i < r->num_syms;) {
        if (i) grammar_buf_puts(b, " ");
        if (grammar_is_nt(s[i])) {
            grammar_buf_puts(b, g->names[grammar_nt_index(s[i])]);
            i++;
        } else if (grammar_term_lo(s[i]) == grammar_term_hi(s[i]) && grammar_is_plain(grammar_term_lo(s[i]))) {
            grammar_buf_puts(b, "\"");
            while (i < r->num_syms && !grammar_is_nt(s[i]) && grammar_term_lo(s[i]) == grammar_term_hi(s[i]) &&
                   grammar_is_plain(grammar_term_lo(s[i])))
                grammar_print_byte(b, grammar_term_lo(s[i++]), 0);
            grammar_buf_puts(b, "\"");
        } else {
            grammar_buf_puts(b, "[");
            grammar_print_byte(b, grammar_term_lo(s[i]), 1);
            if (grammar_term_hi(s[i]) != grammar_term_lo(s[i])) {
                grammar_buf_puts(b, "-");
                grammar_print_byte(b, grammar_term_hi(s[i]), 1);
            }
            grammar_buf_puts(b, "]");
            i++;
        }
    }
}

char *grammar_print(const grammar *g)
{
    grammar_buf b = {0};
    grammar_buf_puts(&b, "");
    int32_t *count = grammar_xrealloc(NULL, (size_t)(g->num_nts + 1) * sizeof *count);
    int32_t *order = grammar_xrealloc(NULL, (size_t)g->num_rules * sizeof *order);
    memset(count, 0, (size_t)(g->num_nts + 1) * sizeof *count);
    for (int32_t i = 0; i < g->num_rules; i++) count[g->rules[i].lhs + 1]++;
    for (int32_t i = 0; i < g->num_nts; i++) count[i + 1] += count[i];
    int32_t *pos = grammar_xrealloc(NULL, (size_t)(g->num_nts + 1) * sizeof *pos);
    memcpy(pos, count, (size_t)(g->num_nts + 1) * sizeof *pos);
    for (int32_t i = 0; i < g->num_rules; i++) order[pos[g->rules[i].lhs]++] = i;
    for (int32_t k = -1; k < g->num_nts; k++) {
        int32_t nt = k < 0 ? g->start : k;
        if (nt < 0 || (k >= 0 && nt == g->start)) continue;
        grammar_buf_puts(&b, g->names[nt]);
        grammar_buf_puts(&b, " ::=");
        if (count[nt] == count[nt + 1]) grammar_buf_puts(&b, " [^\\x00-\\xFF]");  /* empty language */
        for (int32_t j = count[nt]; j < count[nt + 1]; j++) {
            grammar_buf_puts(&b, j == count[nt] ? " " : " | ");
            grammar_print_rule_body(&b, g, &g->rules[order[j]]);
        }
        grammar_buf_puts(&b, "\n");
    }
    for (int32_t c = 0; c < g->num_counted; c++) {
        char line[400];
        snprintf(line, sizeof line, "# %.300s counted {%lld,%lld}\n", g->names[g->counted[c].nt],
                 (long long)g->counted[c].min, (long long)g->counted[c].max);
        grammar_buf_puts(&b, line);
    }
    free(count);
    free(order);
    free(pos);
    return b.p;
}
