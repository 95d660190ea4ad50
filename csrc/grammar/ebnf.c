/* ebnf.c — GBNF parser → grammar IR; see ebnf.h.
 *
 * Two passes over the text: the first collects the defined rule names (so that fresh
 * nonterminals made for groups and repetitions never take a user's name), the second builds
 * the grammar with those names pre-created; a reference to an undefined name is an error. */
#include "grammar/ebnf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef struct ebnf_parser {
    const char *s;
    size_t len, pos;
    grammar *g;
    int collect;          /* pass 1: only record definitions */
    int depth;
} ebnf_parser;

#define EBNF_MAX_DEPTH 200
#define EBNF_MAX_REPEAT 100000

static void ebnf_linecol(const ebnf_parser *p, size_t pos, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos && i < p->len; i++) {
        if (p->s[i] == '\n') { (*line)++; *col = 1; } else { (*col)++; }
    }
}

static status_t ebnf_error(const ebnf_parser *p, const char *what)
{
    int line, col;
    ebnf_linecol(p, p->pos, &line, &col);
    return status_set(STATUS_INVALID_ARG, "grammar: %s at line %d column %d", what, line, col);
}

static int ebnf_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Skips spaces, tabs, comments and (when newline_ok) newlines. */
static void ebnf_skip(ebnf_parser *p, int newline_ok)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\r') { p->pos++; continue; }
        if (c == '#') { while (p->pos < p->len && p->s[p->pos] != '\n') p->pos++; continue; }
        if (c == '\n' && newline_ok) { p->pos++; continue; }
        break;
    }
}

/* At a newline at rule level: continue the rule when the next non-blank line starts with '|'. */
static int ebnf_continues(ebnf_parser *p)
{
    size_t save = p->pos;
    ebnf_skip(p, 1);
    if (p->pos < p->len && p->s[p->pos] == '|') return 1;
    p->pos = save;
    return 0;
}

static int ebnf_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one UTF-8 code point from the source text. */
static status_t ebnf_utf8(ebnf_parser *p, uint32_t *cp)
{
    const uint8_t *s = (const uint8_t *)p->s + p->pos;
    size_t left = p->len - p->pos;
    uint32_t c = s[0];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || (size_t)n > left) return ebnf_error(p, "invalid UTF-8");
    if (n > 1) c &= (1u << (7 - n)) - 1;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return ebnf_error(p, "invalid UTF-8");
        c = (c << 6) | (s[i] & 0x3F);
    }
    p->pos += (size_t)n;
    *cp = c;
    return STATUS_OK;
}

/* One character of a literal or class (escape or UTF-8). */
static status_t ebnf_char(ebnf_parser *p, uint32_t *cp)
{
    if (p->pos >= p->len) return ebnf_error(p, "unexpected end of grammar");
    if (p->s[p->pos] != '\\') return ebnf_utf8(p, cp);
    p->pos++;
    if (p->pos >= p->len) return ebnf_error(p, "unexpected end of grammar after '\\'");
    char c = p->s[p->pos++];
    int digits = 0;
    switch (c) {
    case 'n': *cp = '\n'; return STATUS_OK;
    case 'r': *cp = '\r'; return STATUS_OK;
    case 't': *cp = '\t'; return STATUS_OK;
    case '0': *cp = 0; return STATUS_OK;
    case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': case '/': case '.':
        *cp = (uint8_t)c; return STATUS_OK;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default: p->pos--; return ebnf_error(p, "unknown escape");
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = p->pos < p->len ? ebnf_hex(p->s[p->pos]) : -1;
        if (h < 0) return ebnf_error(p, "bad hex escape");
        v = v * 16 + (uint32_t)h;
        p->pos++;
    }
    if (v > GRAMMAR_MAX_CODEPOINT) return ebnf_error(p, "code point out of range");
    *cp = v;
    return STATUS_OK;
}

static void ebnf_push_cp(grammar_seq *seq, uint32_t cp)
{
    char b[4];
    int n;
    if (cp < 0x80) { b[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    grammar_seq_push_literal(seq, b, (size_t)n);
}

static status_t ebnf_alternates(ebnf_parser *p, int32_t nt, int nested);

static status_t ebnf_int(ebnf_parser *p, int64_t *v)
{
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return ebnf_error(p, "expected a number");
    *v = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        *v = *v * 10 + (p->s[p->pos++] - '0');
        if (*v > EBNF_MAX_REPEAT) return ebnf_error(p, "repetition count too large");
    }
    return STATUS_OK;
}

/* Parses one atom (with its postfix operators) and appends its symbols to seq. */
static status_t ebnf_element(ebnf_parser *p, grammar_seq *seq)
{
    grammar *g = p->g;
    size_t atom_start = seq->n;
    char c = p->s[p->pos];
    if (c == '"') {
        p->pos++;
        while (p->pos < p->len && p->s[p->pos] != '"') {
            uint32_t cp;
            STATUS_TRY(ebnf_char(p, &cp));
            ebnf_push_cp(seq, cp);
        }
        if (p->pos >= p->len) return ebnf_error(p, "unterminated string literal");
        p->pos++;
    } else if (c == '[') {
        p->pos++;
        int negate = 0;
        if (p->pos < p->len && p->s[p->pos] == '^') { negate = 1; p->pos++; }
        grammar_range *r = NULL;
        int32_t n = 0, cap = 0;
        status_t st = STATUS_OK;
        while (st == STATUS_OK && p->pos < p->len && p->s[p->pos] != ']') {
            uint32_t lo, hi;
            if ((st = ebnf_char(p, &lo)) != STATUS_OK) break;
            hi = lo;
            if (p->pos + 1 < p->len && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
                p->pos++;
                if ((st = ebnf_char(p, &hi)) != STATUS_OK) break;
                if (hi < lo) { st = ebnf_error(p, "character range out of order"); break; }
            }
            if (n == cap) { cap = cap ? cap * 2 : 8; r = realloc(r, (size_t)cap * sizeof *r); }
            r[n++] = (grammar_range){lo, hi};
        }
        if (st == STATUS_OK && p->pos >= p->len) st = ebnf_error(p, "unterminated character class");
        if (st == STATUS_OK) {
            p->pos++;
            if (!p->collect) grammar_seq_push(seq, grammar_add_class(g, "class", r, n, negate));
        }
        free(r);
        if (st != STATUS_OK) return st;
    } else if (c == '.') {
        p->pos++;
        grammar_range all = {0, GRAMMAR_MAX_CODEPOINT};
        if (!p->collect) grammar_seq_push(seq, grammar_add_class(g, "any", &all, 1, 0));
    } else if (c == '(') {
        p->pos++;
        if (++p->depth > EBNF_MAX_DEPTH) return ebnf_error(p, "grammar nested too deeply");
        int32_t nt = p->collect ? -1 : grammar_add_nonterminal(g, "group");
        ebnf_skip(p, 1);
        STATUS_TRY(ebnf_alternates(p, nt, 1));
        p->depth--;
        if (p->pos >= p->len || p->s[p->pos] != ')') return ebnf_error(p, "expected ')'");
        p->pos++;
        if (!p->collect) grammar_seq_push(seq, grammar_nt(nt));
    } else if (ebnf_is_name_char(c)) {
        size_t start = p->pos;
        while (p->pos < p->len && ebnf_is_name_char(p->s[p->pos])) p->pos++;
        if (!p->collect) {
            char name[256];
            size_t n = p->pos - start;
            if (n >= sizeof name) return ebnf_error(p, "rule name too long");
            memcpy(name, p->s + start, n);
            name[n] = '\0';
            int32_t nt = grammar_find_nonterminal(g, name);
            if (nt < 0) {
                p->pos = start;
                char msg[300];
                snprintf(msg, sizeof msg, "undefined rule '%s'", name);
                return ebnf_error(p, msg);
            }
            grammar_seq_push(seq, grammar_nt(nt));
        }
    } else {
        return ebnf_error(p, "expected a literal, class, group or rule name");
    }
    /* postfix operators */
    for (;;) {
        ebnf_skip(p, p->depth > 0);
        if (p->pos >= p->len) break;
        char op = p->s[p->pos];
        if (op != '?' && op != '*' && op != '+' && op != '{') break;
        p->pos++;
        int64_t min = 0, max = -1;
        if (op == '?') max = 1;
        else if (op == '+') min = 1;
        else if (op == '{') {
            ebnf_skip(p, 1);
            STATUS_TRY(ebnf_int(p, &min));
            ebnf_skip(p, 1);
            max = min;
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                ebnf_skip(p, 1);
                max = -1;
                if (p->pos < p->len && p->s[p->pos] != '}') STATUS_TRY(ebnf_int(p, &max));
                ebnf_skip(p, 1);
            }
            if (p->pos >= p->len || p->s[p->pos] != '}') return ebnf_error(p, "expected '}'");
            p->pos++;
            if (max >= 0 && max < min) return ebnf_error(p, "repetition {m,n} with n < m");
        }
        if (p->collect) continue;
        grammar_sym atom;
        if (seq->n - atom_start == 1) {
            atom = seq->syms[atom_start];
        } else {
            int32_t nt = grammar_add_nonterminal(g, "lit");
            grammar_add_rule(g, nt, seq->syms + atom_start, seq->n - (int32_t)atom_start);
            atom = grammar_nt(nt);
        }
        seq->n = (int32_t)atom_start;
        if (op == '?') atom = grammar_add_optional(g, "opt", atom);
        else if (op == '*') atom = grammar_add_star(g, "star", atom);
        else if (op == '+') atom = grammar_add_plus(g, "plus", atom);
        else atom = grammar_add_repeat(g, "rep", atom, min, max, 0, 0);
        grammar_seq_push(seq, atom);
    }
    return STATUS_OK;
}

/* alternates: sequence ('|' sequence)*; each sequence becomes one rule of nt. */
static status_t ebnf_alternates(ebnf_parser *p, int32_t nt, int nested)
{
    grammar_seq seq = {0};
    status_t st = STATUS_OK;
    for (;;) {
        grammar_seq_clear(&seq);
        for (;;) {
            ebnf_skip(p, nested);
            if (p->pos >= p->len) break;
            char c = p->s[p->pos];
            if (c == '|' || c == ')' || c == '\n') break;
            if ((st = ebnf_element(p, &seq)) != STATUS_OK) goto out;
        }
        if (!p->collect) grammar_add_rule(p->g, nt, seq.syms, seq.n);
        if (p->pos < p->len && p->s[p->pos] == '\n' && !nested && !ebnf_continues(p)) break;
        if (p->pos < p->len && p->s[p->pos] == '|') {
            p->pos++;
            ebnf_skip(p, 1);
            continue;
        }
        break;
    }
out:
    grammar_seq_free(&seq);
    return st;
}

static status_t ebnf_parse(ebnf_parser *p)
{
    for (;;) {
        ebnf_skip(p, 1);
        if (p->pos >= p->len) break;
        size_t start = p->pos;
        while (p->pos < p->len && ebnf_is_name_char(p->s[p->pos])) p->pos++;
        if (p->pos == start) return ebnf_error(p, "expected a rule name");
        char name[256];
        size_t n = p->pos - start;
        if (n >= sizeof name) return ebnf_error(p, "rule name too long");
        memcpy(name, p->s + start, n);
        name[n] = '\0';
        ebnf_skip(p, 0);
        if (p->pos + 3 > p->len || memcmp(p->s + p->pos, "::=", 3) != 0) return ebnf_error(p, "expected '::='");
        p->pos += 3;
        ebnf_skip(p, 1);
        int32_t nt = grammar_find_nonterminal(p->g, name);
        if (p->collect) {
            if (nt < 0) grammar_add_nonterminal(p->g, name);
        } else {
            LL_ASSERT(nt >= 0);
        }
        STATUS_TRY(ebnf_alternates(p, nt, 0));
        if (p->pos < p->len && p->s[p->pos] == ')') return ebnf_error(p, "unbalanced ')'");
    }
    return STATUS_OK;
}

status_t grammar_from_ebnf(const char *text, size_t len, grammar *out)
{
    grammar_init(out);
    ebnf_parser p = {text, len, 0, out, 1, 0};
    STATUS_TRY(ebnf_parse(&p));   /* pass 1: names, in definition order */
    if (grammar_find_nonterminal(out, "root") < 0)
        return status_set(STATUS_INVALID_ARG, "grammar: no 'root' rule defined");
    p = (ebnf_parser){text, len, 0, out, 0, 0};
    STATUS_TRY(ebnf_parse(&p));
    out->start = grammar_find_nonterminal(out, "root");
    return STATUS_OK;
}
