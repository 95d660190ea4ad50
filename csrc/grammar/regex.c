/* regex.c — regex subset → grammar IR; see regex.h.  Recursive descent over the pattern:
 * alternation → concatenation → quantified atoms, each turned into a symbol at once. */
#include "grammar/regex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grammar/vec.h"

typedef struct regex_class {
    grammar_range *r;
    int32_t n, cap;
} regex_class;

typedef struct regex_parser {
    const char *s;
    size_t len, pos;
    grammar *g;
    grammar_regex_mode mode;
    int depth;
    grammar_sym any_star;   /* the search-mode `.*` (one nonterminal, so every alternative's
                               trailing copy is the same automaton after regularize) */
    int have_any_star;
    int capture;            /* regex_atom keeps a character's code points in cap (normalised) and
                               adds nothing to g */
    regex_class cap;
} regex_parser;

#define REGEX_MAX_DEPTH 100
#define REGEX_MAX_REPEAT 10000

static void regex_class_add(regex_class *c, uint32_t lo, uint32_t hi)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->r = realloc(c->r, (size_t)c->cap * sizeof *c->r);
        LL_ASSERT(c->r);
    }
    c->r[c->n++] = (grammar_range){lo, hi};
}

static status_t regex_error(const regex_parser *p, const char *what)
{
    return status_set(STATUS_INVALID_ARG, "regex: %s at offset %zu of pattern '%.200s'", what, p->pos,
                      p->s);
}

static const grammar_range regex_digit[] = {{'0', '9'}};
static const grammar_range regex_word[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
static const grammar_range regex_space[] = {{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680},
                                            {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F},
                                            {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};

static void regex_class_add_set(regex_class *c, const grammar_range *r, int32_t n, int negate)
{
    if (!negate) {
        for (int32_t i = 0; i < n; i++) regex_class_add(c, r[i].lo, r[i].hi);
        return;
    }
    grammar_range tmp[16];
    int32_t k = grammar_ranges_normalize(r, n, 1, tmp);
    for (int32_t i = 0; i < k; i++) regex_class_add(c, tmp[i].lo, tmp[i].hi);
}

static int regex_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static status_t regex_utf8(regex_parser *p, uint32_t *cp)
{
    const uint8_t *s = (const uint8_t *)p->s + p->pos;
    size_t left = p->len - p->pos;
    uint32_t c = s[0];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || (size_t)n > left) return regex_error(p, "invalid UTF-8");
    if (n > 1) c &= (1u << (7 - n)) - 1;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return regex_error(p, "invalid UTF-8");
        c = (c << 6) | (s[i] & 0x3F);
    }
    p->pos += (size_t)n;
    *cp = c;
    return STATUS_OK;
}

/* Parses an escape after '\' (pos at the char after the backslash).  Either sets *cp (a single
 * code point) and returns with *is_set = 0, or adds a class to c and sets *is_set = 1. */
static status_t regex_escape(regex_parser *p, uint32_t *cp, regex_class *c, int *is_set, int in_class)
{
    *is_set = 0;
    if (p->pos >= p->len) return regex_error(p, "pattern ends with '\\'");
    char e = p->s[p->pos++];
    int digits = 0;
    switch (e) {
    case 'd': case 'D': regex_class_add_set(c, regex_digit, 1, e == 'D'); *is_set = 1; return STATUS_OK;
    case 'w': case 'W': regex_class_add_set(c, regex_word, 4, e == 'W'); *is_set = 1; return STATUS_OK;
    case 's': case 'S': regex_class_add_set(c, regex_space, 10, e == 'S'); *is_set = 1; return STATUS_OK;
    case 'n': *cp = '\n'; return STATUS_OK;
    case 'r': *cp = '\r'; return STATUS_OK;
    case 't': *cp = '\t'; return STATUS_OK;
    case 'f': *cp = '\f'; return STATUS_OK;
    case 'v': *cp = '\v'; return STATUS_OK;
    case '0': *cp = 0; return STATUS_OK;
    case 'b':
        if (in_class) { *cp = '\b'; return STATUS_OK; }
        p->pos -= 2;
        return regex_error(p, "unsupported regex feature: word boundary \\b");
    case 'B': p->pos -= 2; return regex_error(p, "unsupported regex feature: \\B");
    case 'p': case 'P': p->pos -= 2; return regex_error(p, "unsupported regex feature: Unicode property \\p{..}");
    case 'k': p->pos -= 2; return regex_error(p, "unsupported regex feature: backreference \\k<..>");
    case 'c': p->pos -= 2; return regex_error(p, "unsupported regex feature: control escape \\c");
    case 'x': digits = 2; break;
    case 'u':
        if (p->pos < p->len && p->s[p->pos] == '{') {
            p->pos++;
            uint32_t v = 0;
            int n = 0;
            while (p->pos < p->len && regex_hex(p->s[p->pos]) >= 0 && n < 8) {
                v = v * 16 + (uint32_t)regex_hex(p->s[p->pos++]);
                n++;
            }
            if (n == 0 || p->pos >= p->len || p->s[p->pos] != '}' || v > GRAMMAR_MAX_CODEPOINT)
                return regex_error(p, "bad \\u{...} escape");
            p->pos++;
            *cp = v;
            return STATUS_OK;
        }
        digits = 4;
        break;
    default:
        if (e >= '1' && e <= '9') {
            if (in_class) { p->pos -= 2; return regex_error(p, "unsupported regex escape in class"); }
            p->pos -= 2;
            return regex_error(p, "unsupported regex feature: backreference");
        }
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) {
            p->pos -= 2;
            return regex_error(p, "unknown regex escape");
        }
        p->pos--;
        return regex_utf8(p, cp);  /* escaped punctuation or non-ASCII: itself */
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = p->pos < p->len ? regex_hex(p->s[p->pos]) : -1;
        if (h < 0) return regex_error(p, "bad hex escape");
        v = v * 16 + (uint32_t)h;
        p->pos++;
    }
    /* \uD83D\uDE00: a surrogate pair spelled as two escapes */
    if (digits == 4 && v >= 0xD800 && v <= 0xDBFF && p->pos + 6 <= p->len && p->s[p->pos] == '\\' &&
        p->s[p->pos + 1] == 'u') {
        uint32_t lo = 0;
        int ok = 1;
        for (int i = 0; i < 4; i++) {
            int h = regex_hex(p->s[p->pos + 2 + (size_t)i]);
            if (h < 0) ok = 0;
            else lo = lo * 16 + (uint32_t)h;
        }
        if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            p->pos += 6;
        }
    }
    *cp = v;
    return STATUS_OK;
}

static void regex_json_escape(uint32_t c, char *buf)
{
    switch (c) {
    case '"': strcpy(buf, "\\\""); return;
    case '\\': strcpy(buf, "\\\\"); return;
    case '\n': strcpy(buf, "\\n"); return;
    case '\r': strcpy(buf, "\\r"); return;
    case '\t': strcpy(buf, "\\t"); return;
    case '\b': strcpy(buf, "\\b"); return;
    case '\f': strcpy(buf, "\\f"); return;
    default: snprintf(buf, 8, "\\u%04x", c); return;
    }
}

grammar_sym grammar_add_class_in_mode(grammar *g, const grammar_range *ranges, int32_t n, int negate,
                                      grammar_regex_mode mode)
{
    if (mode == GRAMMAR_REGEX_WHOLE) return grammar_add_class(g, "cls", ranges, n, negate);
    grammar_range *norm = malloc((size_t)(n + 2) * sizeof *norm);
    grammar_range *raw = malloc((size_t)(n + 8) * 2 * sizeof *raw);
    LL_ASSERT(norm && raw);
    int32_t k = grammar_ranges_normalize(ranges, n, negate, norm);
    int32_t nraw = 0;
    int32_t nt = grammar_add_nonterminal(g, "jcls");
    for (int32_t i = 0; i < k; i++) {
        /* split around the specials 0x00-0x1F, '"' (0x22), '\\' (0x5C) */
        static const grammar_range allowed[] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, GRAMMAR_MAX_CODEPOINT}};
        for (int a = 0; a < 3; a++) {
            uint32_t lo = norm[i].lo > allowed[a].lo ? norm[i].lo : allowed[a].lo;
            uint32_t hi = norm[i].hi < allowed[a].hi ? norm[i].hi : allowed[a].hi;
            if (lo <= hi) raw[nraw++] = (grammar_range){lo, hi};
        }
        for (uint32_t c = norm[i].lo; c <= norm[i].hi && c <= 0x5C; c++) {
            if (c < 0x20 || c == '"' || c == '\\') {
                char buf[8];
                regex_json_escape(c, buf);
                grammar_sym s = grammar_add_literal(g, "esc", buf, strlen(buf));
                grammar_add_rule(g, nt, &s, 1);
            }
        }
    }
    if (nraw) {
        grammar_sym s = grammar_add_class(g, "cls", raw, nraw, 0);
        grammar_add_rule(g, nt, &s, 1);
    }
    free(norm);
    free(raw);
    return grammar_nt(nt);
}

static grammar_sym regex_any(regex_parser *p, int dot)
{
    /* '.': any code point but line terminators (ECMAScript); the implicit search prefix: any */
    static const grammar_range nl[] = {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};
    static const grammar_range all[] = {{0, GRAMMAR_MAX_CODEPOINT}};
    return dot ? grammar_add_class_in_mode(p->g, nl, 3, 1, p->mode) : grammar_add_class_in_mode(p->g, all, 1, 0, p->mode);
}

static status_t regex_alternation(regex_parser *p, grammar_sym *out, int top);

static grammar_sym regex_any_star(regex_parser *p)
{
    if (!p->have_any_star) {
        p->any_star = grammar_add_star(p->g, "any", regex_any(p, 0));
        p->have_any_star = 1;
    }
    return p->any_star;
}

/* capture mode: the atom's code points, normalised, into p->cap */
static void regex_capture(regex_parser *p, const grammar_range *r, int32_t n, int negate)
{
    if (p->cap.cap < n + 2) {
        p->cap.cap = n + 2;
        p->cap.r = realloc(p->cap.r, (size_t)p->cap.cap * sizeof *p->cap.r);
        LL_ASSERT(p->cap.r);
    }
    p->cap.n = grammar_ranges_normalize(r, n, negate, p->cap.r);
}

/* At '(': reads it and the group's (?: or (?<name> prefix, one level deeper. */
static status_t regex_group_open(regex_parser *p)
{
    p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '?') {
        if (p->pos + 1 < p->len && p->s[p->pos + 1] == ':') {
            p->pos += 2;
        } else if (p->pos + 2 < p->len && p->s[p->pos + 1] == '<' && p->s[p->pos + 2] != '=' &&
                   p->s[p->pos + 2] != '!') {
            while (p->pos < p->len && p->s[p->pos] != '>') p->pos++;
            if (p->pos >= p->len) return regex_error(p, "unterminated group name");
            p->pos++;
        } else {
            p->pos--;
            return regex_error(p, "unsupported regex feature: lookaround or inline flags '(?'");
        }
    }
    if (++p->depth > REGEX_MAX_DEPTH) return regex_error(p, "regex nested too deeply");
    return STATUS_OK;
}

static status_t regex_atom(regex_parser *p, grammar_sym *out)
{
    char c = p->s[p->pos];
    if (c == '(') {
        STATUS_TRY(regex_group_open(p));
        STATUS_TRY(regex_alternation(p, out, 0));
        p->depth--;
        if (p->pos >= p->len || p->s[p->pos] != ')') return regex_error(p, "expected ')'");
        p->pos++;
        return STATUS_OK;
    }
    if (c == '.') {
        p->pos++;
        if (p->capture) {
            static const grammar_range nl[] = {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};
            regex_capture(p, nl, 3, 1);
            *out = 0;
        } else {
            *out = regex_any(p, 1);
        }
        return STATUS_OK;
    }
    regex_class cls = {0};
    status_t st = STATUS_OK;
    int negate = 0;
    if (c == '[') {
        p->pos++;
        if (p->pos < p->len && p->s[p->pos] == '^') { negate = 1; p->pos++; }
        while (st == STATUS_OK) {
            if (p->pos >= p->len) { st = regex_error(p, "unterminated character class"); break; }
            if (p->s[p->pos] == ']') { p->pos++; break; }  /* "[]" matches nothing, "[^]" anything */
            uint32_t lo, hi;
            int is_set = 0;
            if (p->s[p->pos] == '\\') {
                p->pos++;
                if ((st = regex_escape(p, &lo, &cls, &is_set, 1)) != STATUS_OK) break;
            } else if ((st = regex_utf8(p, &lo)) != STATUS_OK) {
                break;
            }
            if (is_set) continue;
            hi = lo;
            if (p->pos + 1 < p->len && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
                p->pos++;
                if (p->s[p->pos] == '\\') {
                    p->pos++;
                    if ((st = regex_escape(p, &hi, &cls, &is_set, 1)) != STATUS_OK) break;
                    if (is_set) { regex_class_add(&cls, lo, lo); regex_class_add(&cls, '-', '-'); continue; }
                } else if ((st = regex_utf8(p, &hi)) != STATUS_OK) {
                    break;
                }
                if (hi < lo) { st = regex_error(p, "character range out of order"); break; }
            }
            regex_class_add(&cls, lo, hi);
        }
    } else if (c == '\\') {
        p->pos++;
        uint32_t cp;
        int is_set;
        st = regex_escape(p, &cp, &cls, &is_set, 0);
        if (st == STATUS_OK && !is_set) regex_class_add(&cls, cp, cp);
    } else if (c == '*' || c == '+' || c == '?') {
        st = regex_error(p, "quantifier without an operand");
    } else if (c == '^' || c == '$') {
        st = regex_error(p, "unsupported regex feature: anchor inside the pattern");
    } else {
        uint32_t cp;
        st = regex_utf8(p, &cp);
        if (st == STATUS_OK) regex_class_add(&cls, cp, cp);
    }
    if (st == STATUS_OK && p->capture) regex_capture(p, cls.r, cls.n, negate), *out = 0;
    else if (st == STATUS_OK) *out = grammar_add_class_in_mode(p->g, cls.r, cls.n, negate, p->mode);
    free(cls.r);
    return st;
}

/* Reads {m}, {m,}, {m,n} at pos; returns 0 (pos unchanged) when it is not a quantifier. */
static int regex_braces(regex_parser *p, int64_t *min, int64_t *max)
{
    size_t i = p->pos + 1;
    int64_t a = 0, b = -1;
    int nd = 0;
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9' && nd < 9) { a = a * 10 + (p->s[i++] - '0'); nd++; }
    if (nd == 0 || i >= p->len) return 0;
    if (p->s[i] == '}') { b = a; }
    else if (p->s[i] == ',') {
        i++;
        nd = 0;
        if (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') {
            b = 0;
            while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9' && nd < 9) { b = b * 10 + (p->s[i++] - '0'); nd++; }
        }
        if (i >= p->len || p->s[i] != '}') return 0;
    } else {
        return 0;
    }
    p->pos = i + 1;
    *min = a;
    *max = b;
    return 1;
}

/* Reads a quantifier (? * + {m} {m,} {m,n}, lazy forms too) at pos: *found 0 when there is none
 * (pos unchanged), else its bounds (max -1: unbounded). */
static status_t regex_quantifier(regex_parser *p, int *found, int64_t *min, int64_t *max)
{
    *found = 0;
    if (p->pos >= p->len) return STATUS_OK;
    const char q = p->s[p->pos];
    *min = 0, *max = -1;
    if (q == '?') { p->pos++; *max = 1; }
    else if (q == '*') { p->pos++; }
    else if (q == '+') { p->pos++; *min = 1; }
    else if (q == '{' && regex_braces(p, min, max)) {
        if (*max >= 0 && *max < *min) return regex_error(p, "repetition {m,n} with n < m");
        if (*min > REGEX_MAX_REPEAT || *max > REGEX_MAX_REPEAT) return regex_error(p, "repetition count too large");
    } else {
        return STATUS_OK;
    }
    if (p->pos < p->len && p->s[p->pos] == '?') p->pos++;  /* lazy: same language */
    *found = 1;
    return STATUS_OK;
}

static status_t regex_concat(regex_parser *p, grammar_seq *seq)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == '|' || c == ')') break;
        if (c == '$' && p->depth == 0) break;   /* end anchor; checked by the caller */
        grammar_sym atom;
        STATUS_TRY(regex_atom(p, &atom));
        for (;;) {
            int found;
            int64_t min, max;
            STATUS_TRY(regex_quantifier(p, &found, &min, &max));
            if (!found) break;
            if (min == 0 && max == 1) atom = grammar_add_optional(p->g, "opt", atom);
            else if (min == 0 && max < 0) atom = grammar_add_star(p->g, "star", atom);
            else if (min == 1 && max < 0) atom = grammar_add_plus(p->g, "plus", atom);
            else atom = grammar_add_repeat(p->g, "rep", atom, min, max, 0, 0);
        }
        grammar_seq_push(seq, atom);
    }
    return STATUS_OK;
}

static status_t regex_alternation(regex_parser *p, grammar_sym *out, int top)
{
    int32_t nt = grammar_add_nonterminal(p->g, top ? "regex" : "group");
    grammar_seq seq = {0};
    status_t st = STATUS_OK;
    for (;;) {
        grammar_seq_clear(&seq);
        int anchored_start = 0, anchored_end = 0;
        if (top && p->pos < p->len && p->s[p->pos] == '^') { p->pos++; anchored_start = 1; }
        if (top && p->mode == GRAMMAR_REGEX_JSON_STRING && !anchored_start) grammar_seq_push(&seq, regex_any_star(p));
        if ((st = regex_concat(p, &seq)) != STATUS_OK) break;
        if (p->pos < p->len && p->s[p->pos] == '$') {
            p->pos++;
            anchored_end = 1;
            if (p->pos < p->len && p->s[p->pos] != '|' && p->s[p->pos] != ')') {
                st = regex_error(p, "unsupported regex feature: anchor '$' inside the pattern");
                break;
            }
        }
        if (top && p->mode == GRAMMAR_REGEX_JSON_STRING && !anchored_end) grammar_seq_push(&seq, regex_any_star(p));
        grammar_add_rule(p->g, nt, seq.syms, seq.n);
        if (p->pos < p->len && p->s[p->pos] == '|') { p->pos++; continue; }
        break;
    }
    grammar_seq_free(&seq);
    *out = grammar_nt(nt);
    return st;
}

status_t grammar_add_regex(grammar *g, const char *pattern, size_t len, grammar_regex_mode mode, grammar_sym *out)
{
    regex_parser p = {.s = pattern, .len = len, .g = g, .mode = mode};
    STATUS_TRY(regex_alternation(&p, out, 1));
    if (p.pos < p.len) return regex_error(&p, "unbalanced ')'");
    return STATUS_OK;
}

/* ---- a pattern intersected with a length bound ---------------------------------------- */

typedef struct regex_piece {
    grammar_sym sym;     /* one code point */
    int64_t min, max;    /* its count; max -1: unbounded */
} regex_piece;

static status_t regex_bounded_fail(const regex_parser *p)
{
    return status_set(STATUS_UNSUPPORTED, "beside minLength/maxLength only a pattern whose alternatives are each "
                      "^...$ around single characters (classes, escapes, literals), at most one of them repeated a "
                      "variable number of times; pattern '%.200s'", p->s);
}

/* Parses one alternative (up to '|', ')', '$' or the end) into pieces. */
static status_t regex_pieces(regex_parser *p, regex_piece **pieces, int32_t *n, int32_t *cap)
{
    *n = 0;
    while (p->pos < p->len) {
        const char c = p->s[p->pos];
        if (c == '|' || c == ')' || c == '$') break;
        if (c == '(') return regex_bounded_fail(p);
        regex_piece x = {.min = 1, .max = 1};
        STATUS_TRY(regex_atom(p, &x.sym));
        int found;
        int64_t min, max;
        STATUS_TRY(regex_quantifier(p, &found, &min, &max));
        if (found) {
            if (p->pos < p->len && strchr("?*+{", p->s[p->pos])) return regex_bounded_fail(p);
            x.min = min;
            x.max = max;
        }
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 8;
            *pieces = realloc(*pieces, (size_t)*cap * sizeof **pieces);
            LL_ASSERT(*pieces);
        }
        (*pieces)[(*n)++] = x;
    }
    return STATUS_OK;
}

/* Adds the alternative's strings of lo..hi code points (hi -1: unbounded) as a rule of nt, if any. */
static status_t regex_bounded_rule(regex_parser *p, int32_t nt, const regex_piece *pc, int32_t n, int64_t lo, int64_t hi,
                                   int *added)
{
    int64_t fixed = 0;
    int32_t var = -1;
    for (int32_t i = 0; i < n; i++) {
        if (pc[i].min == pc[i].max) fixed += pc[i].min;
        else if (var >= 0) return regex_bounded_fail(p);
        else var = i;
    }
    int64_t c_lo = 0, c_hi = 0;   /* the variable piece's count */
    if (var < 0) {
        if (fixed < lo || (hi >= 0 && fixed > hi)) return STATUS_OK;
    } else {
        c_lo = pc[var].min > lo - fixed ? pc[var].min : lo - fixed;
        c_hi = pc[var].max;
        if (hi >= 0 && (c_hi < 0 || c_hi > hi - fixed)) c_hi = hi - fixed;
        if (c_hi >= 0 && c_lo > c_hi) return STATUS_OK;
    }
    grammar_seq seq = {0};
    for (int32_t i = 0; i < n; i++) {
        const int64_t mn = i == var ? c_lo : pc[i].min, mx = i == var ? c_hi : pc[i].max;
        if (mx == 0) continue;
        grammar_seq_push(&seq, mn == 1 && mx == 1 ? pc[i].sym
                               : mn == 0 && mx < 0 ? grammar_add_star(p->g, "star", pc[i].sym)
                               : mn == 1 && mx < 0 ? grammar_add_plus(p->g, "plus", pc[i].sym)
                               : grammar_add_repeat(p->g, "rep", pc[i].sym, mn, mx, 0, 0));
    }
    grammar_add_rule(p->g, nt, seq.syms, seq.n);
    grammar_seq_free(&seq);
    *added = 1;
    return STATUS_OK;
}

status_t grammar_add_regex_bounded(grammar *g, const char *pattern, size_t len, int64_t lo, int64_t hi, grammar_sym *out)
{
    regex_parser p = {.s = pattern, .len = len, .g = g, .mode = GRAMMAR_REGEX_JSON_STRING};
    const int32_t nt = grammar_add_nonterminal(g, "bounded");
    regex_piece *pieces = NULL;
    int32_t n = 0, cap = 0;
    int added = 0;
    status_t st = STATUS_OK;
    for (;;) {
        if (p.pos >= p.len || p.s[p.pos] != '^') { st = regex_bounded_fail(&p); break; }
        p.pos++;
        /* ^(A|B)$ is ^A$|^B$: a group around the whole alternative is opened here */
        int group = 0;
        if (p.pos < p.len && p.s[p.pos] == '(') {
            group = 1;
            p.pos++;
            if (p.pos + 1 < p.len && p.s[p.pos] == '?' && p.s[p.pos + 1] == ':') {
                p.pos += 2;
            } else if (p.pos + 1 < p.len && p.s[p.pos] == '?' && p.s[p.pos + 1] == '<') {
                while (p.pos < p.len && p.s[p.pos] != '>') p.pos++;
                if (p.pos >= p.len) { st = regex_error(&p, "unterminated group name"); break; }
                p.pos++;
            } else if (p.pos < p.len && p.s[p.pos] == '?') {
                st = regex_bounded_fail(&p);
                break;
            }
        }
        for (;;) {
            if ((st = regex_pieces(&p, &pieces, &n, &cap)) != STATUS_OK) break;
            if (group && p.pos < p.len && p.s[p.pos] == '|') {   /* the next alternative inside the group */
                if ((st = regex_bounded_rule(&p, nt, pieces, n, lo, hi, &added)) != STATUS_OK) break;
                p.pos++;
                continue;
            }
            break;
        }
        if (st != STATUS_OK) break;
        if (group) {
            if (p.pos >= p.len || p.s[p.pos] != ')') { st = regex_bounded_fail(&p); break; }
            p.pos++;
        }
        if (p.pos >= p.len || p.s[p.pos] != '$') { st = regex_bounded_fail(&p); break; }
        p.pos++;
        if ((st = regex_bounded_rule(&p, nt, pieces, n, lo, hi, &added)) != STATUS_OK) break;
        if (p.pos >= p.len) break;
        if (p.s[p.pos] != '|') { st = regex_bounded_fail(&p); break; }
        p.pos++;
    }
    free(pieces);
    STATUS_TRY(st);
    *out = added ? grammar_nt(nt) : grammar_add_empty(g, "bounded_none");
    return STATUS_OK;
}

/* ---- key languages of a pattern: the keys it matches or not, but for given names ---------- */

#define RX_MAX_NFA 4096   /* NFA states of a key language */
#define RX_MAX_DFA 1024   /* and of its subset automaton */

typedef struct rx_edge {
    int32_t from, to;
    uint32_t lo, hi;   /* code points; lo > hi: epsilon */
} rx_edge;

typedef struct rx_nfa {
    VEC(rx_edge) e;
    vec_i32 flag;      /* per state: bit k pattern k accepts, bit 31 a name ends */
    int32_t n;
} rx_nfa;

static int32_t rx_state(rx_nfa *a)
{
    VEC_PUSH(a->flag, 0);
    return a->n++;
}

static void rx_edge_add(rx_nfa *a, int32_t from, int32_t to, uint32_t lo, uint32_t hi)
{
    VEC_PUSH(a->e, ((rx_edge){from, to, lo, hi}));
}

static void rx_ranges_add(rx_nfa *a, int32_t from, int32_t to, const grammar_range *r, int32_t n)
{
    for (int32_t i = 0; i < n; i++) rx_edge_add(a, from, to, r[i].lo, r[i].hi);
}

static int rx_cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return a < b ? -1 : a > b;
}

typedef struct rx_frag {
    int32_t in, out;   /* entered at in, left from out */
} rx_frag;

static status_t rx_too_large(const regex_parser *p)
{
    return status_set(STATUS_UNSUPPORTED, "pattern '%.200s' too large for a key language", p->s);
}

static status_t rx_alt(regex_parser *p, rx_nfa *a, rx_frag *f, int top);

/* One piece: an atom or a group, then its quantifiers — copies of the fragment (its states and
 * edges are the ones made while it was parsed: [s0, a->n) and [e0, a->e.n)), Thompson style. */
static status_t rx_piece(regex_parser *p, rx_nfa *a, rx_frag *f)
{
    const int32_t s0 = a->n;
    const int64_t e0 = a->e.n;
    if (p->s[p->pos] == '(') {
        STATUS_TRY(regex_group_open(p));
        STATUS_TRY(rx_alt(p, a, f, 0));
        p->depth--;
        if (p->pos >= p->len || p->s[p->pos] != ')') return regex_error(p, "expected ')'");
        p->pos++;
    } else {
        grammar_sym unused;
        STATUS_TRY(regex_atom(p, &unused));
        f->in = rx_state(a);
        f->out = rx_state(a);
        rx_ranges_add(a, f->in, f->out, p->cap.r, p->cap.n);
    }
    for (;;) {
        int found;
        int64_t min, max;
        STATUS_TRY(regex_quantifier(p, &found, &min, &max));
        if (!found) return STATUS_OK;
        const int32_t size = a->n - s0, copies = (int32_t)(max < 0 ? (min > 1 ? min : 1) : max);
        const int64_t edges = a->e.n - e0;
        if ((int64_t)a->n + (int64_t)size * copies + 2 > RX_MAX_NFA) return rx_too_large(p);
        rx_frag g = *f;
        f->in = rx_state(a);
        f->out = rx_state(a);
        int32_t cur = f->in;
        for (int32_t j = 1; j <= copies; j++) {
            rx_frag c = g;
            if (j > 1) {   /* a copy of the fragment's states and edges */
                const int32_t off = a->n - s0;
                for (int32_t k = 0; k < size; k++) rx_state(a);
                for (int64_t k = 0; k < edges; k++) {
                    const rx_edge e = a->e.p[e0 + k];
                    rx_edge_add(a, e.from + off, e.to + off, e.lo, e.hi);
                }
                c.in += off;
                c.out += off;
            }
            rx_edge_add(a, cur, c.in, 1, 0);
            if (j > min) rx_edge_add(a, cur, f->out, 1, 0);   /* an optional copy: skipped */
            if (j == copies && max < 0) rx_edge_add(a, c.out, c.in, 1, 0);   /* the last one repeats */
            cur = c.out;
        }
        rx_edge_add(a, cur, f->out, 1, 0);
    }
}

/* Alternatives up to ')' (a group) or the end (top: each anchored or not at either end — an
 * unanchored side reads any characters there, JSON Schema's search semantics). */
static status_t rx_alt(regex_parser *p, rx_nfa *a, rx_frag *f, int top)
{
    static const grammar_range any[] = {{0, GRAMMAR_MAX_CODEPOINT}};
    f->in = rx_state(a);
    f->out = rx_state(a);
    for (;;) {
        int32_t cur = rx_state(a);
        rx_edge_add(a, f->in, cur, 1, 0);
        int anchored = top && p->pos < p->len && p->s[p->pos] == '^';
        if (anchored) p->pos++;
        if (top && !anchored) {   /* any characters first: a state of their own */
            int32_t l = rx_state(a);
            rx_edge_add(a, cur, l, 1, 0);
            rx_ranges_add(a, l, l, any, 1);
            cur = l;
        }
        while (p->pos < p->len && p->s[p->pos] != '|' && p->s[p->pos] != ')' && !(top && p->s[p->pos] == '$')) {
            rx_frag g;
            STATUS_TRY(rx_piece(p, a, &g));
            rx_edge_add(a, cur, g.in, 1, 0);
            cur = g.out;
            if (a->n > RX_MAX_NFA) return rx_too_large(p);
        }
        anchored = top && p->pos < p->len && p->s[p->pos] == '$';
        if (anchored) {
            p->pos++;
            if (p->pos < p->len && p->s[p->pos] != '|') return regex_error(p, "unsupported regex feature: anchor '$' inside the pattern");
        } else if (top) {
            int32_t l = rx_state(a);
            rx_edge_add(a, cur, l, 1, 0);
            rx_ranges_add(a, l, l, any, 1);
            cur = l;
        }
        rx_edge_add(a, cur, f->out, 1, 0);
        if (p->pos < p->len && p->s[p->pos] == '|') { p->pos++; continue; }
        if (top && p->pos < p->len) return regex_error(p, "unbalanced ')'");
        return STATUS_OK;
    }
}

/* Per state, its edges (CSR over a->e): [off[s], off[s + 1]) in idx. */
typedef struct rx_adj {
    int32_t *off, *idx;
} rx_adj;

static rx_adj rx_adj_build(const rx_nfa *a)
{
    rx_adj j = {calloc((size_t)a->n + 1, sizeof *j.off), malloc(((size_t)a->e.n + 1) * sizeof *j.idx)};
    LL_ASSERT(j.off && j.idx);
    for (int64_t k = 0; k < a->e.n; k++) j.off[a->e.p[k].from + 1]++;
    for (int32_t s = 0; s < a->n; s++) j.off[s + 1] += j.off[s];
    int32_t *fill = malloc(((size_t)a->n + 1) * sizeof *fill);
    LL_ASSERT(fill);
    memcpy(fill, j.off, ((size_t)a->n + 1) * sizeof *fill);
    for (int64_t k = 0; k < a->e.n; k++) j.idx[fill[a->e.p[k].from]++] = (int32_t)k;
    free(fill);
    return j;
}

/* set -> its epsilon closure, sorted (mark: all clear before and after) */
static void rx_closure(const rx_nfa *a, const rx_adj *j, vec_i32 *set, uint8_t *mark)
{
    for (int64_t i = 0; i < set->n; i++) mark[set->p[i]] = 1;
    for (int64_t i = 0; i < set->n; i++)
        for (int32_t k = j->off[set->p[i]]; k < j->off[set->p[i] + 1]; k++) {
            const rx_edge *e = &a->e.p[j->idx[k]];
            if (e->lo > e->hi && !mark[e->to]) { mark[e->to] = 1; VEC_PUSH(*set, e->to); }
        }
    for (int64_t i = 0; i < set->n; i++) mark[set->p[i]] = 0;
    if (set->n > 1) qsort(set->p, (size_t)set->n, sizeof *set->p, rx_cmp_i32);
}

/* the states set moves to on code point cp, closed (mark: clear before and after) */
static void rx_move(const rx_nfa *a, const rx_adj *j, const vec_i32 *set, uint32_t cp, vec_i32 *out, uint8_t *mark)
{
    out->n = 0;
    for (int64_t i = 0; i < set->n; i++)
        for (int32_t k = j->off[set->p[i]]; k < j->off[set->p[i] + 1]; k++) {
            const rx_edge *e = &a->e.p[j->idx[k]];
            if (e->lo <= cp && cp <= e->hi && !mark[e->to]) { mark[e->to] = 1; VEC_PUSH(*out, e->to); }
        }
    for (int64_t i = 0; i < out->n; i++) mark[out->p[i]] = 0;
    rx_closure(a, j, out, mark);
}

static int rx_cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* A subset automaton over code point intervals. */
typedef struct rx_dfa {
    int32_t num, nint;   /* states (0: the start), intervals */
    uint32_t *cuts;      /* [nint + 1]: interval i is [cuts[i], cuts[i + 1]) */
    vec_i32 next;        /* [num * nint]: where each interval leads */
    vec_i32 flags;       /* [num]: its NFA states' flags, or-ed */
} rx_dfa;

static void rx_dfa_free(rx_dfa *d)
{
    free(d->cuts);
    VEC_FREE(d->next);
    VEC_FREE(d->flags);
}

/* Determinises (a, start): the intervals no edge splits, then subsets of NFA states. */
static status_t rx_determinise(const regex_parser *p, const rx_nfa *a, int32_t start, rx_dfa *d)
{
    memset(d, 0, sizeof *d);
    status_t st = STATUS_OK;
    int32_t ncuts = 0;
    d->cuts = malloc(((size_t)a->e.n * 2 + 2) * sizeof *d->cuts);
    uint8_t *mark = calloc((size_t)a->n + 1, 1);
    LL_ASSERT(d->cuts && mark);
    d->cuts[ncuts++] = 0;
    d->cuts[ncuts++] = GRAMMAR_MAX_CODEPOINT + 1;
    for (int64_t k = 0; k < a->e.n; k++)
        if (a->e.p[k].lo <= a->e.p[k].hi) d->cuts[ncuts++] = a->e.p[k].lo, d->cuts[ncuts++] = a->e.p[k].hi + 1;
    qsort(d->cuts, (size_t)ncuts, sizeof *d->cuts, rx_cmp_u32);
    int32_t m = 0;
    for (int32_t k = 0; k < ncuts; k++)
        if (m == 0 || d->cuts[k] != d->cuts[m - 1]) d->cuts[m++] = d->cuts[k];
    d->nint = m - 1;
    rx_adj adj = rx_adj_build(a);
    vec_intern sets = {0};
    vec_i32 set = {0}, tgt = {0};
    VEC_PUSH(set, start);
    rx_closure(a, &adj, &set, mark);
    int added;
    vec_intern_add(&sets, set.p, (int32_t)set.n, &added);
    for (int32_t q = 0; st == STATUS_OK && q < vec_intern_num(&sets); q++) {
        int32_t nq;
        const int32_t *qs = vec_intern_get(&sets, q, &nq);
        set.n = 0;
        int32_t f = 0;
        for (int32_t k = 0; k < nq; k++) {
            VEC_PUSH(set, qs[k]);
            f |= a->flag.p[qs[k]];
        }
        VEC_PUSH(d->flags, f);
        for (int32_t iv = 0; iv < d->nint; iv++) {
            rx_move(a, &adj, &set, d->cuts[iv], &tgt, mark);
            VEC_PUSH(d->next, vec_intern_add(&sets, tgt.p, (int32_t)tgt.n, &added));
            if (vec_intern_num(&sets) > RX_MAX_DFA) { st = rx_too_large(p); break; }
        }
    }
    d->num = vec_intern_num(&sets);
    vec_intern_free(&sets);
    VEC_FREE(set);
    VEC_FREE(tgt);
    free(adj.off);
    free(adj.idx);
    free(mark);
    return st;
}

/* One symbol per distinct set of code point ranges (JSON-string content of one character). */
typedef struct rx_classes {
    vec_intern seen;
    vec_i32 syms;
    grammar_range *r;   /* [nint] scratch */
} rx_classes;

/* q's transitions by target: to[i] and the class of its intervals sym[i], i < the count returned;
 * the targets keep[to] == 0 are left out. */
static int32_t rx_targets(grammar *g, const rx_dfa *d, int32_t q, const uint8_t *keep, rx_classes *cl, int32_t *to,
                          grammar_sym *sym)
{
    if (!cl->r) {
        cl->r = malloc(((size_t)d->nint + 1) * sizeof *cl->r);
        LL_ASSERT(cl->r);
    }
    const int32_t *nx = d->next.p + (int64_t)q * d->nint;
    int32_t n = 0;
    for (int32_t iv = 0; iv < d->nint; iv++) {
        const int32_t t = nx[iv];
        int first = keep[t];   /* each target once: at its first interval, with all of them */
        for (int32_t j = 0; j < iv && first; j++) first = nx[j] != t;
        if (!first) continue;
        int32_t nr = 0;
        for (int32_t j = iv; j < d->nint; j++) {
            if (nx[j] != t) continue;
            if (nr && cl->r[nr - 1].hi + 1 == d->cuts[j]) cl->r[nr - 1].hi = d->cuts[j + 1] - 1;
            else cl->r[nr++] = (grammar_range){d->cuts[j], d->cuts[j + 1] - 1};
        }
        int added;
        int32_t ci = vec_intern_add(&cl->seen, (const int32_t *)cl->r, nr * 2, &added);
        if (added) VEC_PUSH(cl->syms, grammar_add_class_in_mode(g, cl->r, nr, 0, GRAMMAR_REGEX_JSON_STRING));
        to[n] = t;
        sym[n++] = cl->syms.p[ci];
    }
    return n;
}

static void rx_classes_free(rx_classes *cl)
{
    vec_intern_free(&cl->seen);
    VEC_FREE(cl->syms);
    free(cl->r);
}

status_t grammar_add_regex_keys(grammar *g, const char *const *patterns, int num_patterns, const uint32_t *const *names,
                                const int *name_lens, int num_names, grammar_regex_tail tail, void *ctx,
                                grammar_sym *out, uint32_t *name_matches)
{
    LL_ASSERT(num_patterns >= 1 && num_patterns <= GRAMMAR_REGEX_MAX_PATTERNS);
    const int32_t name_end = INT32_MIN;   /* bit 31 */
    regex_parser p = {0};
    rx_nfa a = {0};
    rx_dfa d = {0};
    rx_classes cl = {0};
    grammar_sym tails[1 << GRAMMAR_REGEX_MAX_PATTERNS];
    uint8_t have_tail[1 << GRAMMAR_REGEX_MAX_PATTERNS] = {0};
    status_t st = STATUS_OK;
    const int32_t start = rx_state(&a);
    for (int k = 0; k < num_patterns && st == STATUS_OK; k++) {
        free(p.cap.r);
        p = (regex_parser){.s = patterns[k], .len = strlen(patterns[k]), .g = g, .mode = GRAMMAR_REGEX_JSON_STRING,
                           .capture = 1};
        rx_frag f;
        if ((st = rx_alt(&p, &a, &f, 1)) != STATUS_OK) break;
        rx_edge_add(&a, start, f.in, 1, 0);
        a.flag.p[f.out] |= (int32_t)(1u << k);
    }
    /* which patterns match each name: the NFA run on it (before the names join it) */
    if (st == STATUS_OK && name_matches) {
        uint8_t *mark = calloc((size_t)a.n + 1, 1);
        LL_ASSERT(mark);
        rx_adj adj = rx_adj_build(&a);
        vec_i32 set = {0}, tgt = {0};
        for (int i = 0; i < num_names; i++) {
            set.n = 0;
            VEC_PUSH(set, start);
            rx_closure(&a, &adj, &set, mark);
            for (int k = 0; k < name_lens[i] && set.n; k++) {
                rx_move(&a, &adj, &set, names[i][k], &tgt, mark);
                vec_i32 t = set;
                set = tgt;
                tgt = t;
            }
            name_matches[i] = 0;
            for (int64_t q = 0; q < set.n; q++) name_matches[i] |= (uint32_t)a.flag.p[set.p[q]];
        }
        VEC_FREE(set);
        VEC_FREE(tgt);
        free(adj.off);
        free(adj.idx);
        free(mark);
    }
    for (int i = 0; i < num_names && st == STATUS_OK; i++) {   /* the names, as chains from the start */
        int32_t cur = start;
        for (int k = 0; k < name_lens[i]; k++) {
            int32_t nxt = rx_state(&a);
            rx_edge_add(&a, cur, nxt, names[i][k], names[i][k]);
            cur = nxt;
        }
        a.flag.p[cur] |= name_end;
    }
    if (st == STATUS_OK && a.n > RX_MAX_NFA) st = rx_too_large(&p);
    if (st == STATUS_OK) st = rx_determinise(&p, &a, start, &d);
    /* the language: a state goes on with the tail of the patterns its keys match (none: a name);
     * states that can reach one are kept (a backward pass), one rule per (state, target) */
    if (st == STATUS_OK) {
        uint8_t *live = calloc((size_t)d.num, 1);
        int32_t *nts = malloc((size_t)d.num * sizeof *nts), *to = malloc(((size_t)d.nint + 1) * sizeof *to);
        grammar_sym *acc = calloc((size_t)d.num, sizeof *acc), *sym = malloc(((size_t)d.nint + 1) * sizeof *sym);
        LL_ASSERT(live && nts && to && acc && sym);
        grammar_sym common = 0;   /* one tail for every accepted key: the keys alone are regular */
        int one_tail = 1;
        for (int32_t q = 0; q < d.num; q++) {
            const uint32_t f = (uint32_t)d.flags.p[q];
            if (f & (uint32_t)name_end) continue;
            if (!have_tail[f]) tails[f] = tail(ctx, f), have_tail[f] = 1;
            acc[q] = tails[f];
            live[q] = acc[q] != 0;
            if (acc[q]) one_tail &= !common || acc[q] == common, common = acc[q];
        }
        for (int changed = 1; changed;) {
            changed = 0;
            for (int32_t q = 0; q < d.num; q++)
                for (int32_t iv = 0; iv < d.nint && !live[q]; iv++)
                    if (live[d.next.p[(int64_t)q * d.nint + iv]]) live[q] = changed = 1;
        }
        for (int32_t q = 0; q < d.num; q++) nts[q] = live[q] ? grammar_add_nonterminal(g, "key_dfa") : -1;
        for (int32_t q = 0; q < d.num; q++) {
            if (!live[q]) continue;
            if (acc[q]) grammar_add_rule(g, nts[q], one_tail ? NULL : &acc[q], one_tail ? 0 : 1);
            const int32_t n = rx_targets(g, &d, q, live, &cl, to, sym);
            for (int32_t i = 0; i < n; i++) {
                grammar_sym r[2] = {sym[i], grammar_nt(nts[to[i]])};
                grammar_add_rule(g, nts[q], r, 2);
            }
        }
        *out = live[0] ? grammar_nt(nts[0]) : grammar_add_empty(g, "keys_none");
        if (live[0] && one_tail) {
            int32_t nt = grammar_add_nonterminal(g, "keys");
            grammar_sym k[2] = {*out, common};
            grammar_add_rule(g, nt, k, 2);
            *out = grammar_nt(nt);
        }
        free(live);
        free(nts);
        free(to);
        free(acc);
        free(sym);
    }
    free(p.cap.r);
    VEC_FREE(a.e);
    VEC_FREE(a.flag);
    rx_dfa_free(&d);
    rx_classes_free(&cl);
    return st;
}

status_t grammar_from_regex(const char *pattern, size_t len, grammar *out)
{
    grammar_init(out);
    int32_t root = grammar_add_nonterminal(out, "root");
    grammar_sym s;
    STATUS_TRY(grammar_add_regex(out, pattern, len, GRAMMAR_REGEX_WHOLE, &s));
    grammar_add_rule(out, root, &s, 1);
    out->start = root;
    return STATUS_OK;
}
