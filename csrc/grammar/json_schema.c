/* json_schema.c — JSON Schema → grammar IR; decisions and coverage in json_schema.h.
 *
 * js_gen() compiles a CONJUNCTION of schema nodes (a list, so allOf and $ref-with-siblings
 * are just more parts): it expands allOf/$ref, distributes the first pending anyOf/oneOf over
 * its options, and otherwise merges the keywords of all parts and emits one alternative per
 * allowed type.  Shared pieces (any value, string, number, separators) are built once. */
#include "grammar/json_schema.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/log.h"
#include "grammar/regex.h"
#include "grammar/vec.h"

#define JS_MAX_PARTS 64
#define JS_MAX_DEPTH 48
#define JS_MAX_REPEAT 100000
#define JS_MAX_COUNT_STATES 4096   /* (declared properties + 1) x (member counts) of one counted object */

enum {
    JS_T_NULL = 1, JS_T_BOOL = 2, JS_T_OBJECT = 4, JS_T_ARRAY = 8, JS_T_STRING = 16, JS_T_NUMBER = 32,
    JS_T_INTEGER = 64, JS_T_ALL = 127,
};
enum { JS_SKIP_ANYOF = 1, JS_SKIP_ONEOF = 2 };

typedef struct js_part {
    const json_value *node;
    unsigned skip;
} js_part;

typedef struct js_ref {
    const json_value *target;
    int32_t nt;
} js_ref;

typedef struct js_ctx {
    grammar *g;
    const json_value *root;
    int whitespace;
    int depth;
    char path[1024];
    size_t path_len;
    js_ref *refs;
    int32_t num_refs, cap_refs;
    grammar_sym value, string, string_char, escape, hex, chars, string_tail, number, integer, comma, colon, digit, digits, frac_any;
    grammar_sym counted_char;                          /* one character as minLength/maxLength count it */
    int have_value, have_string, have_counted_char, have_number, have_integer, have_seps, have_frac;
    grammar_sym key_nonascii_tail, key_escaped_tail;   /* shared tails of excluded-key nodes */
    grammar_sym key_ctrl_u;                            /* u00XX of a control character without a short escape */
    int have_key_tails;
} js_ctx;

/* ---- paths and errors ---- */

static size_t js_path_push(js_ctx *c, const char *seg)
{
    size_t old = c->path_len;
    int n = snprintf(c->path + old, sizeof c->path - old, "/%s", seg);
    if (n > 0) c->path_len = old + (size_t)n < sizeof c->path ? old + (size_t)n : sizeof c->path - 1;
    return old;
}

static size_t js_path_push_index(js_ctx *c, const char *seg, int i)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s/%d", seg, i);
    return js_path_push(c, buf);
}

static void js_path_pop(js_ctx *c, size_t old)
{
    c->path_len = old;
    c->path[old] = '\0';
}

static status_t js_unsupported(js_ctx *c, const char *kw, const char *detail)
{
    return status_set(STATUS_INVALID_ARG, "unsupported JSON Schema keyword '%s'%s%s at #%s", kw,
                      detail[0] ? ": " : "", detail, c->path);
}

static status_t js_invalid(js_ctx *c, const char *what)
{
    return status_set(STATUS_INVALID_ARG, "invalid JSON Schema: %s at #%s", what, c->path);
}

/* ---- literal helpers ---- */

static grammar_sym js_lit(js_ctx *c, const char *s) { return grammar_add_literal(c->g, "lit", s, strlen(s)); }

static grammar_sym js_seq(js_ctx *c, const char *prefix, const grammar_sym *syms, int32_t n)
{
    if (n == 1) return syms[0];
    int32_t nt = grammar_add_nonterminal(c->g, prefix);
    grammar_add_rule(c->g, nt, syms, n);
    return grammar_nt(nt);
}

static grammar_sym js_range(uint8_t lo, uint8_t hi) { return grammar_term(lo, hi); }

static void js_separators(js_ctx *c)
{
    if (c->have_seps) return;
    c->have_seps = 1;
    if (!c->whitespace) {
        c->comma = grammar_term(',', ',');
        c->colon = grammar_term(':', ':');
        return;
    }
    grammar_sym sp = grammar_add_optional(c->g, "ws", grammar_term(' ', ' '));
    grammar_sym a[2] = {grammar_term(',', ','), sp}, b[2] = {grammar_term(':', ':'), sp};
    c->comma = js_seq(c, "comma", a, 2);
    c->colon = js_seq(c, "colon", b, 2);
}

/* One character of a JSON string (raw code point or escape). */
static grammar_sym js_string_char(js_ctx *c)
{
    if (c->have_string) return c->string_char;
    grammar *g = c->g;
    grammar_range raw[] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, GRAMMAR_MAX_CODEPOINT}};
    int32_t ch = grammar_add_nonterminal(g, "char");
    grammar_sym r = grammar_add_class(g, "char_raw", raw, 3, 0);
    grammar_add_rule(g, ch, &r, 1);
    int32_t esc = grammar_add_nonterminal(g, "escape");
    const char *simple = "\"\\/bfnrt";
    for (const char *p = simple; *p; p++) {
        grammar_sym s = grammar_term(*p, *p);
        grammar_add_rule(g, esc, &s, 1);
    }
    int32_t hex = grammar_add_nonterminal(g, "hex");
    grammar_sym h[3] = {js_range('0', '9'), js_range('A', 'F'), js_range('a', 'f')};
    for (int i = 0; i < 3; i++) grammar_add_rule(g, hex, &h[i], 1);
    grammar_sym u[5] = {grammar_term('u', 'u'), grammar_nt(hex), grammar_nt(hex), grammar_nt(hex), grammar_nt(hex)};
    grammar_add_rule(g, esc, u, 5);
    grammar_sym e[2] = {grammar_term('\\', '\\'), grammar_nt(esc)};
    grammar_add_rule(g, ch, e, 2);
    c->string_char = grammar_nt(ch);
    c->escape = grammar_nt(esc);
    c->hex = grammar_nt(hex);
    grammar_sym chars = c->chars = grammar_add_star(g, "chars", c->string_char);
    grammar_sym q[3] = {grammar_term('"', '"'), chars, grammar_term('"', '"')};
    c->string = js_seq(c, "string", q, 3);
    /* the rest of a string, as one nonterminal: key alternatives that end with it share one
     * automaton copy (regularize.c shares instances with the same continuation) */
    c->string_tail = js_seq(c, "string_tail", q + 1, 2);
    c->have_string = 1;
    return c->string_char;
}

/* One character of a JSON string as minLength/maxLength count it (jsonschema: len() of the
 * decoded str, i.e. code points after json.loads).  Raw code points, short escapes and \u
 * escapes of non-surrogates count one; a high-surrogate escape followed by a low-surrogate
 * escape (\uD83D\uDE00) is ONE character, as json.loads joins them.  A lone low-surrogate
 * escape is accepted and counts one (as json.loads keeps it).  A lone high-surrogate escape
 * (one not followed by a low-surrogate escape) is rejected here: counting it exactly would need
 * a lookahead (it is one character unless a low escape follows), which a repetition of one
 * character symbol cannot express unambiguously; accepting both readings would let "\uD83D\uDE00"
 * pass minLength 2.  Free strings (no length bound) still accept any \u escape. */
static grammar_sym js_counted_char(js_ctx *c)
{
    if (c->have_counted_char) return c->counted_char;
    js_string_char(c);
    grammar *g = c->g;
    grammar_range raw[] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, GRAMMAR_MAX_CODEPOINT}};
    int32_t ch = grammar_add_nonterminal(g, "lchar");
    grammar_sym r = grammar_add_class(g, "char_raw", raw, 3, 0);
    grammar_add_rule(g, ch, &r, 1);
    const char *simple = "\"\\/bfnrt";
    for (const char *p = simple; *p; p++) {
        grammar_sym s[2] = {grammar_term('\\', '\\'), grammar_term(*p, *p)};
        grammar_add_rule(g, ch, s, 2);
    }
    grammar_sym hex = c->hex;
    const grammar_range not_d[] = {{'0', '9'}, {'A', 'C'}, {'E', 'F'}, {'a', 'c'}, {'e', 'f'}};
    const grammar_range d[] = {{'D', 'D'}, {'d', 'd'}};
    const grammar_range bmp_or_low[] = {{'0', '7'}, {'C', 'F'}, {'c', 'f'}};  /* after D: not a high surrogate */
    const grammar_range high[] = {{'8', '9'}, {'A', 'B'}, {'a', 'b'}};
    const grammar_range low[] = {{'C', 'F'}, {'c', 'f'}};
    grammar_sym bs = grammar_term('\\', '\\'), u = grammar_term('u', 'u');
    grammar_sym sym_d = grammar_add_class(g, "hex_d", d, 2, 0);
    /* \u of a non-surrogate or a lone low surrogate */
    grammar_sym u1[6] = {bs, u, grammar_add_class(g, "hex_not_d", not_d, 5, 0), hex, hex, hex};
    grammar_add_rule(g, ch, u1, 6);
    grammar_sym u2[6] = {bs, u, sym_d, grammar_add_class(g, "hex_bmp_low", bmp_or_low, 3, 0), hex, hex};
    grammar_add_rule(g, ch, u2, 6);
    /* a surrogate pair: \uD[89AB].. \uD[C-F].. */
    grammar_sym pair[12] = {bs, u, sym_d, grammar_add_class(g, "hex_high", high, 3, 0), hex, hex,
                            bs, u, sym_d, grammar_add_class(g, "hex_low", low, 2, 0), hex, hex};
    grammar_add_rule(g, ch, pair, 12);
    c->counted_char = grammar_nt(ch);
    c->have_counted_char = 1;
    return c->counted_char;
}

static grammar_sym js_string(js_ctx *c)
{
    js_string_char(c);
    return c->string;
}

static void js_digits(js_ctx *c)
{
    if (c->have_frac) return;
    c->have_frac = 1;
    c->digit = js_range('0', '9');
    c->digits = grammar_add_plus(c->g, "digits", c->digit);
    grammar_sym f[2] = {grammar_term('.', '.'), c->digits};
    c->frac_any = grammar_add_optional(c->g, "frac", js_seq(c, "frac", f, 2));
}

static grammar_sym js_integer(js_ctx *c)
{
    if (c->have_integer) return c->integer;
    js_digits(c);
    grammar *g = c->g;
    int32_t nat = grammar_add_nonterminal(g, "nat");
    grammar_sym zero = grammar_term('0', '0');
    grammar_add_rule(g, nat, &zero, 1);
    grammar_sym nz[2] = {js_range('1', '9'), grammar_add_star(g, "digits", c->digit)};
    grammar_add_rule(g, nat, nz, 2);
    int32_t in = grammar_add_nonterminal(g, "integer");
    grammar_sym neg[2] = {grammar_term('-', '-'), grammar_nt(nat)};
    grammar_sym pos = grammar_nt(nat);
    grammar_add_rule(g, in, &pos, 1);
    grammar_add_rule(g, in, neg, 2);
    c->integer = grammar_nt(in);
    c->have_integer = 1;
    return c->integer;
}

static grammar_sym js_number(js_ctx *c)
{
    if (c->have_number) return c->number;
    grammar *g = c->g;
    grammar_sym in = js_integer(c);
    int32_t ex = grammar_add_nonterminal(g, "exp");
    grammar_sym sign = grammar_add_optional(g, "sign", grammar_add_choice(g, "sign", (grammar_sym[]){grammar_term('+', '+'), grammar_term('-', '-')}, 2));
    grammar_sym e[3] = {grammar_add_choice(g, "e", (grammar_sym[]){grammar_term('e', 'e'), grammar_term('E', 'E')}, 2), sign, c->digits};
    grammar_add_rule(g, ex, e, 3);
    grammar_sym body[3] = {in, c->frac_any, grammar_add_optional(g, "exp", grammar_nt(ex))};
    c->number = js_seq(c, "number", body, 3);
    c->have_number = 1;
    return c->number;
}

/* Any JSON value. */
static grammar_sym js_value(js_ctx *c)
{
    if (c->have_value) return c->value;
    grammar *g = c->g;
    js_separators(c);
    int32_t v = grammar_add_nonterminal(g, "value");
    c->value = grammar_nt(v);
    c->have_value = 1;
    grammar_sym str = js_string(c);
    /* object */
    int32_t obj = grammar_add_nonterminal(g, "object");
    grammar_sym mem[3] = {str, c->colon, c->value};
    grammar_sym member = js_seq(c, "member", mem, 3);
    grammar_sym members = grammar_add_repeat(g, "members", member, 1, -1, c->comma, 1);
    grammar_sym o1[2] = {grammar_term('{', '{'), grammar_term('}', '}')};
    grammar_sym o2[3] = {grammar_term('{', '{'), members, grammar_term('}', '}')};
    grammar_add_rule(g, obj, o1, 2);
    grammar_add_rule(g, obj, o2, 3);
    int32_t arr = grammar_add_nonterminal(g, "array");
    grammar_sym elems = grammar_add_repeat(g, "elements", c->value, 1, -1, c->comma, 1);
    grammar_sym a1[2] = {grammar_term('[', '['), grammar_term(']', ']')};
    grammar_sym a2[3] = {grammar_term('[', '['), elems, grammar_term(']', ']')};
    grammar_add_rule(g, arr, a1, 2);
    grammar_add_rule(g, arr, a2, 3);
    grammar_sym alts[7] = {grammar_nt(obj), grammar_nt(arr), str, js_number(c), js_lit(c, "true"), js_lit(c, "false"),
                           js_lit(c, "null")};
    for (int i = 0; i < 7; i++) grammar_add_rule(g, v, &alts[i], 1);
    return c->value;
}

/* ---- canonical JSON text of a value (json.dumps(separators=(",", ":"), ensure_ascii=False)) ---- */

static void js_text_string(grammar_buf *t, const char *s, size_t len)
{
    grammar_buf_put(t, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char buf[8];
        switch (ch) {
        case '"': grammar_buf_put(t, "\\\"", 2); break;
        case '\\': grammar_buf_put(t, "\\\\", 2); break;
        case '\n': grammar_buf_put(t, "\\n", 2); break;
        case '\r': grammar_buf_put(t, "\\r", 2); break;
        case '\t': grammar_buf_put(t, "\\t", 2); break;
        case '\b': grammar_buf_put(t, "\\b", 2); break;
        case '\f': grammar_buf_put(t, "\\f", 2); break;
        default:
            if (ch < 0x20) {
                snprintf(buf, sizeof buf, "\\u%04x", ch);
                grammar_buf_put(t, buf, 6);
            } else {
                grammar_buf_put(t, (const char *)&s[i], 1);
            }
        }
    }
    grammar_buf_put(t, "\"", 1);
}

static void js_text_number(grammar_buf *t, const json_value *v)
{
    char buf[64];
    if ((double)v->i64 == v->num && fabs(v->num) < 1e16) {
        snprintf(buf, sizeof buf, "%lld", (long long)v->i64);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, v->num);
            if (strtod(buf, NULL) == v->num) break;
        }
        if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
    }
    grammar_buf_put(t, buf, strlen(buf));
}

static void js_text_value(grammar_buf *t, const json_value *v)
{
    switch (v->type) {
    case JSON_NULL: grammar_buf_put(t, "null", 4); break;
    case JSON_BOOL: v->boolean ? grammar_buf_put(t, "true", 4) : grammar_buf_put(t, "false", 5); break;
    case JSON_NUMBER: js_text_number(t, v); break;
    case JSON_STRING: js_text_string(t, v->str, v->str_len); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        grammar_buf_put(t, v->type == JSON_ARRAY ? "[" : "{", 1);
        for (int32_t i = 0; i < v->count; i++) {
            if (i) grammar_buf_put(t, ",", 1);
            if (v->type == JSON_OBJECT) {
                js_text_string(t, v->items[i].key, strlen(v->items[i].key));
                grammar_buf_put(t, ":", 1);
            }
            js_text_value(t, &v->items[i]);
        }
        grammar_buf_put(t, v->type == JSON_ARRAY ? "]" : "}", 1);
        break;
    }
}

static grammar_sym js_literal_value(js_ctx *c, const json_value *v)
{
    grammar_buf t = {0};
    js_text_value(&t, v);
    grammar_sym s = grammar_add_literal(c->g, "const", t.p, t.n);
    free(t.p);
    return s;
}

/* ---- schema helpers ---- */

static int js_is_schema(const json_value *v) { return v && (v->type == JSON_OBJECT || v->type == JSON_BOOL); }

/* The first part defining `key` (and how many do). */
static const json_value *js_kw(const js_part *parts, int n, const char *key, int *count)
{
    const json_value *first = NULL;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const json_value *v = json_get(parts[i].node, key);
        if (v) { if (!first) first = v; k++; }
    }
    if (count) *count = k;
    return first;
}

static status_t js_check_keywords(js_ctx *c, const json_value *node)
{
    static const char *const unsupported[] = {
        "propertyNames", "contains", "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems",
        "$dynamicRef", "$recursiveRef", NULL,
    };
    for (int i = 0; unsupported[i]; i++)
        if (json_get(node, unsupported[i])) return js_unsupported(c, unsupported[i], "");
    if (json_get(node, "if") && (json_get(node, "then") || json_get(node, "else"))) return js_unsupported(c, "if", "");
    const json_value *u = json_get(node, "uniqueItems");
    if (u && !(u->type == JSON_BOOL && !u->boolean)) return js_unsupported(c, "uniqueItems", "");
    return STATUS_OK;
}

static status_t js_resolve_ref(js_ctx *c, const char *ref, const json_value **out)
{
    if (ref[0] != '#') return js_unsupported(c, "$ref", "only local references (#...) are supported");
    const json_value *v = c->root;
    const char *p = ref + 1;
    while (*p) {
        if (*p != '/') return js_unsupported(c, "$ref", "only JSON-pointer references are supported");
        p++;
        char seg[256];
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof seg) {
            if (p[0] == '~' && p[1] == '0') { seg[n++] = '~'; p += 2; }
            else if (p[0] == '~' && p[1] == '1') { seg[n++] = '/'; p += 2; }
            else if (p[0] == '%' && p[1] && p[2]) {
                char hx[3] = {p[1], p[2], 0};
                seg[n++] = (char)strtol(hx, NULL, 16);
                p += 3;
            } else seg[n++] = *p++;
        }
        seg[n] = '\0';
        if (v && v->type == JSON_ARRAY) {
            char *end;
            long idx = strtol(seg, &end, 10);
            v = (*end == '\0' && idx >= 0 && idx < v->count) ? &v->items[idx] : NULL;
        } else {
            v = json_get(v, seg);
        }
        if (!v) {
            char msg[400];
            snprintf(msg, sizeof msg, "unresolved $ref '%.300s'", ref);
            return js_invalid(c, msg);
        }
    }
    *out = v;
    return STATUS_OK;
}

static status_t js_gen(js_ctx *c, const js_part *parts, int n, grammar_sym *out);

static status_t js_gen_one(js_ctx *c, const json_value *node, grammar_sym *out)
{
    js_part p = {node, 0};
    return js_gen(c, &p, 1, out);
}

static const char *const js_validating[] = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "additionalItems", "enum",
        "const", "anyOf", "oneOf", "allOf", "pattern", "minLength", "maxLength", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "minProperties", "maxProperties", "format",
        "$ref", "patternProperties", "not", "dependencies", "dependentRequired", "dependentSchemas", "multipleOf", NULL,
};

/* Whether node has no validating keyword but `except` (annotations do not count). */
static int js_only_keyword(const json_value *node, const char *except)
{
    for (int i = 0; js_validating[i]; i++)
        if (strcmp(js_validating[i], except) != 0 && json_get(node, js_validating[i])) return 0;
    return 1;
}

/* A lone $ref: nothing next to it changes validity. */
static int js_is_ref_only(const json_value *node) { return js_only_keyword(node, "$ref"); }

static status_t js_ref_symbol(js_ctx *c, const json_value *target, grammar_sym *out)
{
    for (int32_t i = 0; i < c->num_refs; i++)
        if (c->refs[i].target == target) { *out = grammar_nt(c->refs[i].nt); return STATUS_OK; }
    if (c->num_refs == c->cap_refs) {
        c->cap_refs = c->cap_refs ? c->cap_refs * 2 : 16;
        c->refs = realloc(c->refs, (size_t)c->cap_refs * sizeof *c->refs);
        LL_ASSERT(c->refs);
    }
    int32_t nt = grammar_add_nonterminal(c->g, "ref");
    c->refs[c->num_refs++] = (js_ref){target, nt};
    grammar_sym body;
    STATUS_TRY(js_gen_one(c, target, &body));
    grammar_add_rule(c->g, nt, &body, 1);
    *out = grammar_nt(nt);
    return STATUS_OK;
}

/* Expands allOf and $ref of `node` into parts.  Returns 1 in *is_false for a false schema. */
static status_t js_expand(js_ctx *c, const json_value *node, js_part *parts, int *n, int *is_false, int depth)
{
    if (depth > JS_MAX_DEPTH) return js_unsupported(c, "$ref", "reference cycle through allOf or sibling keywords");
    if (node->type == JSON_BOOL) {
        if (!node->boolean) *is_false = 1;
        return STATUS_OK;
    }
    if (node->type != JSON_OBJECT) return js_invalid(c, "a schema must be an object or a boolean");
    STATUS_TRY(js_check_keywords(c, node));
    if (*n >= JS_MAX_PARTS) return js_unsupported(c, "allOf", "too many combined subschemas");
    parts[(*n)++] = (js_part){node, 0};
    const json_value *all = json_get(node, "allOf");
    if (all) {
        if (all->type != JSON_ARRAY) return js_invalid(c, "allOf must be an array");
        for (int32_t i = 0; i < all->count; i++) {
            size_t old = js_path_push_index(c, "allOf", i);
            status_t st = js_expand(c, &all->items[i], parts, n, is_false, depth + 1);
            js_path_pop(c, old);
            STATUS_TRY(st);
        }
    }
    const json_value *ref = json_get(node, "$ref");
    if (ref) {
        if (ref->type != JSON_STRING) return js_invalid(c, "$ref must be a string");
        const json_value *target;
        STATUS_TRY(js_resolve_ref(c, ref->str, &target));
        STATUS_TRY(js_expand(c, target, parts, n, is_false, depth + 1));
    }
    const json_value *neg = json_get(node, "not");
    if (neg) {
        /* not: of a boolean, of {} (nothing passes), of {type} (js_gen drops those types), of
         * {not: X} (X, another conjunct) */
        size_t old = js_path_push(c, "not");
        status_t st = STATUS_OK;
        if (neg->type == JSON_BOOL) {
            if (neg->boolean) *is_false = 1;
        } else if (neg->type != JSON_OBJECT) {
            st = js_invalid(c, "a schema must be an object or a boolean");
        } else if ((st = js_check_keywords(c, neg)) != STATUS_OK) {
            /* an unsupported keyword under not: named at its path */
        } else if (js_only_keyword(neg, "")) {
            *is_false = 1;
        } else if (js_only_keyword(neg, "not")) {
            const json_value *inner = json_get(neg, "not");
            size_t old2 = js_path_push(c, "not");
            if (inner->type == JSON_BOOL) *is_false |= !inner->boolean;
            else st = js_expand(c, inner, parts, n, is_false, depth + 1);
            js_path_pop(c, old2);
        } else if (!js_only_keyword(neg, "type")) {
            st = js_unsupported(c, "not", "only not of {type}, {not ...}, {} or a boolean");
        }
        js_path_pop(c, old);
        STATUS_TRY(st);
    }
    return STATUS_OK;
}

/* Whether node (with its allOf / $ref parts) has no validating keyword: any value passes.
 * Errors count as constrained (the caller's own expansion reports them). */
static int js_is_unconstrained(js_ctx *c, const json_value *node)
{
    js_part parts[JS_MAX_PARTS];
    int n = 0, is_false = 0;
    size_t old = c->path_len;
    status_t st = js_expand(c, node, parts, &n, &is_false, 0);
    js_path_pop(c, old);
    if (st != STATUS_OK || is_false) return 0;
    for (int i = 0; i < n; i++)
        if (!js_only_keyword(parts[i].node, "")) return 0;
    return 1;
}

/* ---- numbers ---- */

/* Integers with `n` digits between the digit strings lo and hi (same length). */
static grammar_sym js_same_len(js_ctx *c, const char *lo, const char *hi, int n)
{
    grammar *g = c->g;
    js_digits(c);
    if (n == 0) return grammar_add_literal(c->g, "eps", "", 0);  /* unreachable with n >= 1 */
    if (memcmp(lo, hi, (size_t)n) == 0) return grammar_add_literal(g, "num", lo, (size_t)n);
    if (lo[0] == hi[0]) {
        grammar_sym s[2] = {grammar_term(lo[0], lo[0]), js_same_len(c, lo + 1, hi + 1, n - 1)};
        return js_seq(c, "num", s, 2);
    }
    int32_t nt = grammar_add_nonterminal(g, "num");
    int lo_rest_zero = 1, hi_rest_nine = 1;
    for (int i = 1; i < n; i++) {
        if (lo[i] != '0') lo_rest_zero = 0;
        if (hi[i] != '9') hi_rest_nine = 0;
    }
    char mid_lo = lo_rest_zero ? lo[0] : (char)(lo[0] + 1), mid_hi = hi_rest_nine ? hi[0] : (char)(hi[0] - 1);
    char nines[24], zeros[24];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    if (!lo_rest_zero) {
        grammar_sym s[2] = {grammar_term(lo[0], lo[0]), js_same_len(c, lo + 1, nines, n - 1)};
        grammar_add_rule(g, nt, s, 2);
    }
    if (mid_lo <= mid_hi) {
        grammar_seq seq = {0};
        grammar_seq_push(&seq, grammar_term(mid_lo, mid_hi));
        for (int i = 1; i < n; i++) grammar_seq_push(&seq, c->digit);
        grammar_add_rule(g, nt, seq.syms, seq.n);
        grammar_seq_free(&seq);
    }
    if (!hi_rest_nine) {
        grammar_sym s[2] = {grammar_term(hi[0], hi[0]), js_same_len(c, zeros, hi + 1, n - 1)};
        grammar_add_rule(g, nt, s, 2);
    }
    return grammar_nt(nt);
}

/* Adds to nt the canonical decimals of [a, b] (b_inf: no upper bound). */
static void js_uint_range(js_ctx *c, int32_t nt, uint64_t a, uint64_t b, int b_inf)
{
    if (!b_inf && a > b) return;
    char as[24], bs[24];
    int la = snprintf(as, sizeof as, "%llu", (unsigned long long)a);
    int lb = b_inf ? la : snprintf(bs, sizeof bs, "%llu", (unsigned long long)b);
    for (int len = la; len <= lb; len++) {
        char lo[24], hi[24];
        if (len == la) memcpy(lo, as, (size_t)la);
        else { lo[0] = '1'; memset(lo + 1, '0', (size_t)len - 1); }
        if (len == lb && !b_inf) memcpy(hi, bs, (size_t)lb);
        else memset(hi, '9', (size_t)len);
        grammar_sym s = js_same_len(c, lo, hi, len);
        grammar_add_rule(c->g, nt, &s, 1);
    }
    if (b_inf) {
        /* more than la digits: [1-9][0-9]{la}[0-9]* */
        grammar_seq seq = {0};
        grammar_seq_push(&seq, js_range('1', '9'));
        for (int i = 0; i < la; i++) grammar_seq_push(&seq, c->digit);
        grammar_seq_push(&seq, grammar_add_star(c->g, "digits", c->digit));
        grammar_add_rule(c->g, nt, seq.syms, seq.n);
        grammar_seq_free(&seq);
    }
}

typedef struct js_bound {
    int has;
    double v;
    int excl;
} js_bound;

#define JS_DEC_FRAC 24   /* fraction digits of a bound at most */

/* A non-negative decimal magnitude i.f: f its fraction digits without trailing zeros. */
typedef struct js_dec {
    uint64_t i;
    char f[JS_DEC_FRAC + 1];
    int nf;
} js_dec;

/* |v| (< 1e19) as a decimal: exact when integral, else the shortest digits that read back as v
 * (what the schema's author wrote, and what a validator parsing the output compares against). */
static status_t js_dec_of(js_ctx *c, double v, const char *keyword, js_dec *out)
{
    memset(out, 0, sizeof *out);
    v = fabs(v);
    if (floor(v) == v) { out->i = (uint64_t)v; return STATUS_OK; }
    char buf[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    char digits[24];
    int nd = 0;
    const char *s = buf;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    int point = (int)strtol(s + 1, NULL, 10) + 1;   /* digits before the decimal point */
    while (nd > 0 && digits[nd - 1] == '0') nd--;
    for (int k = 0; k < point && k < nd; k++) out->i = out->i * 10 + (uint64_t)(digits[k] - '0');
    for (int k = nd; k < point; k++) out->i *= 10;
    int lead = point < 0 ? -point : 0, from = point > 0 ? point : 0;
    if (lead + nd - from > JS_DEC_FRAC) return js_unsupported(c, keyword, "bound with more than 24 fraction digits");
    memset(out->f, '0', (size_t)lead);
    for (int k = from; k < nd; k++) out->f[lead + k - from] = digits[k];
    out->nf = nd > from ? lead + nd - from : 0;
    return STATUS_OK;
}

static grammar_sym js_digits_any(js_ctx *c, int need)   /* [0-9]* or [0-9]+ */
{
    return need ? c->digits : grammar_add_star(c->g, "digits", c->digit);
}

/* Fraction digit strings s, read from position i of the bounds' digits, whose value 0.s lies at or
 * above lo (lincl) / at or below hi (hincl); a NULL bound: no constraint on that side. need: s is
 * not empty. Returns 0 when there is none. Finite: each call moves along a bound's digits, and
 * the states past their ends are closed forms. */
static int js_frac_cmp(js_ctx *c, const js_dec *lo, int lincl, const js_dec *hi, int hincl, int i, int need,
                       grammar_sym *out)
{
    grammar *g = c->g;
    if (lo && i >= lo->nf && lincl) lo = NULL;             /* the rest is >= 0: always */
    if (!lo && !hi) { *out = js_digits_any(c, need); return 1; }
    if (hi && i >= hi->nf) {                               /* the rest must be <= 0 (or < 0: never) */
        if (!hincl || lo) return 0;                        /* lo still open: it asks for > 0 */
        grammar_sym z = grammar_term('0', '0');
        *out = need ? grammar_add_plus(g, "zeros", z) : grammar_add_star(g, "zeros", z);
        return 1;
    }
    if (!hi && i >= lo->nf) {                              /* exclusive, the rest must be > 0 */
        grammar_sym f[3] = {grammar_add_star(g, "zeros", grammar_term('0', '0')), js_range('1', '9'),
                            js_digits_any(c, 0)};
        *out = js_seq(c, "frac_nz", f, 3);
        return 1;
    }
    int32_t nt = grammar_add_nonterminal(g, "frac_cmp");
    int any = 0;
    if (!need && !lo) { grammar_add_rule(g, nt, NULL, 0); any = 1; }   /* the rest is 0, below hi's rest */
    char a = lo ? (i < lo->nf ? lo->f[i] : '0') : '0', b = hi ? hi->f[i] : '9';
    if (a <= b) {
        grammar_sym sub, s[2];
        if (lo && hi && a == b) {
            if (js_frac_cmp(c, lo, lincl, hi, hincl, i + 1, 0, &sub)) {
                s[0] = grammar_term(a, a), s[1] = sub;
                grammar_add_rule(g, nt, s, 2), any = 1;
            }
        } else {
            if (lo && js_frac_cmp(c, lo, lincl, NULL, 0, i + 1, 0, &sub)) {
                s[0] = grammar_term(a, a), s[1] = sub;
                grammar_add_rule(g, nt, s, 2), any = 1;
            }
            if (hi && js_frac_cmp(c, NULL, 0, hi, hincl, i + 1, 0, &sub)) {
                s[0] = grammar_term(b, b), s[1] = sub;
                grammar_add_rule(g, nt, s, 2), any = 1;
            }
            char flo = lo ? (char)(a + 1) : a, fhi = hi ? (char)(b - 1) : b;
            if (flo <= fhi) {
                s[0] = js_range(flo, fhi), s[1] = js_digits_any(c, 0);
                grammar_add_rule(g, nt, s, 2), any = 1;
            }
        }
    }
    *out = grammar_nt(nt);
    return any;
}

/* Adds `sign n frac` to nt, frac ("" or '.' digits; integer: "") within the fraction bounds (NULL:
 * none). */
static void js_with_frac(js_ctx *c, int32_t nt, char sign, uint64_t n, const js_dec *lo, int lincl, const js_dec *hi,
                         int hincl, int integer)
{
    grammar *g = c->g;
    int eps = (!lo || (lo->nf == 0 && lincl)) && (!hi || hi->nf > 0 || hincl);
    grammar_sym digits, frac = 0;
    if (!integer && js_frac_cmp(c, lo, lincl, hi, hincl, 0, 1, &digits)) {
        grammar_sym f[2] = {grammar_term('.', '.'), digits};
        frac = js_seq(c, "frac", f, 2);
        if (eps) frac = grammar_add_optional(g, "frac", frac);
    } else if (!eps) return;
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)n);
    grammar_sym s[3];
    int k = 0;
    if (sign) s[k++] = grammar_term(sign, sign);
    s[k++] = grammar_add_literal(g, "num", buf, strlen(buf));
    if (frac) s[k++] = frac;
    grammar_add_rule(g, nt, s, k);
}

/* Magnitudes m = |x| of one sign: lo (lincl) <= m <= hi (hincl), hi NULL: no upper bound; adds
 * alternatives `sign digits frac` to nt (integer: no fraction; its bounds are integral). The
 * integer part n splits into n = lo.i (fraction above lo's), whole numbers between (any fraction)
 * and n = hi.i (fraction below hi's). */
static void js_side(js_ctx *c, int32_t nt, char sign, const js_dec *lo, int lincl, const js_dec *hi, int hincl,
                    int integer)
{
    js_digits(c);
    if (hi && (hi->i < lo->i || (hi->i == lo->i && integer && !(lincl && hincl)))) return;
    if (hi && hi->i == lo->i) {
        js_with_frac(c, nt, sign, lo->i, lo, lincl, hi, hincl, integer);
        return;
    }
    uint64_t mid_lo = lo->i, mid_hi = hi ? hi->i : 0;
    int mid_ok = 1;
    if (lo->nf > 0 || !lincl) {
        if (!integer) js_with_frac(c, nt, sign, lo->i, lo, lincl, NULL, 0, 0);
        mid_lo++;
    }
    if (hi && (!integer || !hincl)) {
        if (!integer) js_with_frac(c, nt, sign, hi->i, NULL, 0, hi, hincl, 0);
        if (mid_hi == 0) mid_ok = 0;
        else mid_hi--;
    }
    if (!mid_ok || (hi && mid_lo > mid_hi)) return;
    int32_t r = grammar_add_nonterminal(c->g, "range");
    js_uint_range(c, r, mid_lo, mid_hi, !hi);
    grammar_sym s[3];
    int k = 0;
    if (sign) s[k++] = grammar_term(sign, sign);
    s[k++] = grammar_nt(r);
    if (!integer) s[k++] = c->frac_any;
    grammar_add_rule(c->g, nt, s, k);
}

#define JS_MAX_MULTIPLE 1000   /* a multipleOf divisor's remainders, one state each */
#define JS_MAX_MULTIPLES 256   /* multiples between two bounds, written out */

/* multipleOf of every part as one integer divisor (their least common multiple; 0: none). A
 * non-integer divisor is refused: exact decimal multiples (0.07 of 0.01) are not what validators
 * that divide in binary floating point accept (jsonschema: 0.07 / 0.01 = 7.000000000000001). */
static status_t js_get_multiple(js_ctx *c, const js_part *parts, int n, int64_t *out)
{
    *out = 0;
    for (int i = 0; i < n; i++) {
        const json_value *v = json_get(parts[i].node, "multipleOf");
        if (!v) continue;
        if (v->type != JSON_NUMBER || !(v->num > 0)) return js_invalid(c, "multipleOf must be a number above 0");
        if (floor(v->num) != v->num) return js_unsupported(c, "multipleOf", "a non-integer divisor");
        if (v->num > JS_MAX_MULTIPLE) return js_unsupported(c, "multipleOf", "a divisor above 1000");
        int64_t k = (int64_t)v->num, a = *out ? *out : 1, b = k;
        while (b) { int64_t t = a % b; a = b; b = t; }   /* a = gcd */
        *out = (*out ? *out : 1) / a * k;
        if (*out > JS_MAX_MULTIPLE) return js_unsupported(c, "multipleOf", "divisors whose common multiple is above 1000");
    }
    return STATUS_OK;
}

/* Canonical integers divisible by k > 1: 0 (zero), positive ones (pos), negative ones (neg); the
 * digits after the first run through the remainders mod k. */
static grammar_sym js_int_multiple(js_ctx *c, int64_t k, int zero, int pos, int neg)
{
    grammar *g = c->g;
    int32_t *m = malloc((size_t)k * sizeof *m);
    LL_ASSERT(m);
    for (int64_t r = 0; r < k; r++) m[r] = grammar_add_nonterminal(g, "mult");
    /* from remainder r (and the first digit, from "none"): the digits leading to each remainder t */
    int32_t first = grammar_add_nonterminal(g, "mult_pos");
    for (int64_t r = -1; r < k; r++) {
        for (int d0 = r < 0 ? 1 : 0; d0 <= 9; d0++) {
            const int64_t t = ((r < 0 ? 0 : r) * 10 + d0) % k;
            int seen = 0;   /* the target once, at its first digit, with all the digits that reach it */
            for (int d = r < 0 ? 1 : 0; d < d0 && !seen; d++) seen = ((r < 0 ? 0 : r) * 10 + d) % k == t;
            if (seen) continue;
            grammar_range rg[10];
            int nr = 0;
            for (int d = d0; d <= 9; d++)
                if (((r < 0 ? 0 : r) * 10 + d) % k == t) rg[nr++] = (grammar_range){(uint32_t)('0' + d), (uint32_t)('0' + d)};
            grammar_sym rule[2] = {grammar_add_class(g, "digit", rg, nr, 0), grammar_nt(m[t])};
            grammar_add_rule(g, r < 0 ? first : m[r], rule, 2);
        }
        if (r == 0) grammar_add_rule(g, m[0], NULL, 0);
    }
    free(m);
    int32_t nt = grammar_add_nonterminal(g, "multiple");
    grammar_sym p = grammar_nt(first);
    if (zero) { grammar_sym z = grammar_term('0', '0'); grammar_add_rule(g, nt, &z, 1); }
    if (pos) grammar_add_rule(g, nt, &p, 1);
    if (neg) { grammar_sym ng[2] = {grammar_term('-', '-'), p}; grammar_add_rule(g, nt, ng, 2); }
    return grammar_nt(nt);
}

static status_t js_numeric(js_ctx *c, const js_part *parts, int n, int integer, grammar_sym *out)
{
    js_bound lo = {0}, hi = {0};
    const char *lo_name = "minimum", *hi_name = "maximum";
    for (int i = 0; i < n; i++) {
        const json_value *node = parts[i].node;
        const json_value *mn = json_get(node, "minimum"), *mx = json_get(node, "maximum");
        const json_value *emn = json_get(node, "exclusiveMinimum"), *emx = json_get(node, "exclusiveMaximum");
        const char *names[4] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
        const json_value *vals[4] = {mn, mx, emn, emx};
        for (int k = 0; k < 4; k++) {
            const json_value *v = vals[k];
            if (!v) continue;
            if (v->type == JSON_BOOL && k >= 2) continue;
            if (v->type != JSON_NUMBER) return js_invalid(c, "numeric bound must be a number");
            int excl = k >= 2 || (k == 0 && emn && emn->type == JSON_BOOL && emn->boolean) ||
                       (k == 1 && emx && emx->type == JSON_BOOL && emx->boolean);
            if (!isfinite(v->num)) return js_invalid(c, "numeric bound is not finite");
            js_bound *b = (k % 2 == 0) ? &lo : &hi;
            int lower = k % 2 == 0;
            int tighter = !b->has || (lower ? (v->num > b->v || (v->num == b->v && excl)) : (v->num < b->v || (v->num == b->v && excl)));
            if (tighter) {
                *b = (js_bound){1, v->num, excl};
                if (lower) lo_name = names[k];
                else hi_name = names[k];
            }
        }
    }
    int64_t mult;
    STATUS_TRY(js_get_multiple(c, parts, n, &mult));
    if (mult) integer = 1;   /* multiples of an integer: written as integers */
    if (!lo.has && !hi.has) {
        *out = mult > 1 ? js_int_multiple(c, mult, 1, 1, 1) : integer ? js_integer(c) : js_number(c);
        return STATUS_OK;
    }
    if (integer) {
        /* integral inclusive bounds */
        if (lo.has) { double v = lo.excl ? floor(lo.v) + 1 : ceil(lo.v); lo = (js_bound){1, v, 0}; }
        if (hi.has) { double v = hi.excl ? ceil(hi.v) - 1 : floor(hi.v); hi = (js_bound){1, v, 0}; }
    }
    if (mult > 1) {
        /* beside bounds: the multiples between them written out, or a lower bound above -k and at
         * most k (0 and up, or 1 and up), or an upper one as far on the other side */
        const double k = (double)mult;
        if (lo.has && hi.has && fabs(lo.v) < 1e15 && fabs(hi.v) < 1e15 &&
            floor(hi.v / k) - ceil(lo.v / k) < JS_MAX_MULTIPLES) {
            int32_t nt = grammar_add_nonterminal(c->g, "multiples");
            for (double q = ceil(lo.v / k); q <= floor(hi.v / k); q++) {
                char buf[32];
                snprintf(buf, sizeof buf, "%lld", (long long)(q * k));
                grammar_sym l = grammar_add_literal(c->g, "num", buf, strlen(buf));
                grammar_add_rule(c->g, nt, &l, 1);
            }
            *out = grammar_nt(nt);
            return STATUS_OK;
        }
        if (lo.has && !hi.has && lo.v > -k && lo.v <= k) { *out = js_int_multiple(c, mult, lo.v <= 0, 1, 0); return STATUS_OK; }
        if (hi.has && !lo.has && hi.v < k && hi.v >= -k) { *out = js_int_multiple(c, mult, hi.v >= 0, 0, 1); return STATUS_OK; }
        return js_unsupported(c, "multipleOf", "beside minimum/maximum other than a lower bound in (-k, k], an upper one "
                                               "in [-k, k) or both with at most 256 multiples between");
    }
    const double lim = 1e19;
    if (lo.has && lo.v <= -lim) lo.has = 0;   /* beyond any practical magnitude: no bound */
    if (hi.has && hi.v >= lim) hi.has = 0;
    if ((lo.has && lo.v >= lim) || (hi.has && hi.v <= -lim))
        return js_unsupported(c, lo.has && lo.v >= lim ? lo_name : hi_name, "bound too large");
    js_dec lod = {0}, hid = {0}, zero = {0};
    if (lo.has) STATUS_TRY(js_dec_of(c, lo.v, lo_name, &lod));
    if (hi.has) STATUS_TRY(js_dec_of(c, hi.v, hi_name, &hid));
    int32_t nt = grammar_add_nonterminal(c->g, integer ? "int_range" : "num_range");
    /* x >= 0: magnitudes from max(lo, 0) to hi */
    if (!hi.has || hi.v >= 0) {
        int from_lo = lo.has && lo.v >= 0;
        js_side(c, nt, 0, from_lo ? &lod : &zero, from_lo ? !lo.excl : 1, hi.has ? &hid : NULL, !hi.excl, integer);
    }
    /* x < 0: magnitudes from max(-hi, 0) (0 itself excluded) to -lo */
    if (!lo.has || lo.v < 0) {
        int from_hi = hi.has && hi.v < 0;
        js_side(c, nt, '-', from_hi ? &hid : &zero, from_hi ? !hi.excl : 0, lo.has ? &lod : NULL, !lo.excl, integer);
    }
    *out = grammar_nt(nt);
    return STATUS_OK;
}

/* ---- strings ---- */

/* RFC 3986 pieces: pchar (unreserved, pct-encoded, sub-delims, ':' '@'), an authority
 * ([userinfo '@'] reg-name [':' port]; IP literals in brackets are not generated), path segments,
 * query and fragment; a relative reference's first segment has no ':' (path-noscheme). */
#define JS_RE_PCT "%[0-9A-Fa-f]{2}"
#define JS_RE_PCHAR "(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|" JS_RE_PCT ")"
#define JS_RE_AUTHORITY "(?:(?:[A-Za-z0-9._~!$&'()*+,;=:-]|" JS_RE_PCT ")*@)?(?:[A-Za-z0-9._~!$&'()*+,;=-]|" JS_RE_PCT \
    ")*(?::[0-9]*)?"
#define JS_RE_SEGMENTS "(?:/" JS_RE_PCHAR "*)*"
#define JS_RE_HIER "//" JS_RE_AUTHORITY JS_RE_SEGMENTS "|/(?:" JS_RE_PCHAR "+" JS_RE_SEGMENTS ")?"
#define JS_RE_QUERY_FRAGMENT "(?:\\?(?:" JS_RE_PCHAR "|[/?])*)?(?:#(?:" JS_RE_PCHAR "|[/?])*)?"
#define JS_RE_URI "[A-Za-z][A-Za-z0-9+.-]*:(?:" JS_RE_HIER "|" JS_RE_PCHAR "+" JS_RE_SEGMENTS ")?"

static const char *js_format_regex(const char *f)
{
    static const char *const table[][2] = {
        {"uri", "^" JS_RE_URI JS_RE_QUERY_FRAGMENT "$"},
        {"uri-reference", "^(?:" JS_RE_URI "|" JS_RE_HIER "|(?:[A-Za-z0-9._~!$&'()*+,;=@-]|" JS_RE_PCT ")+" JS_RE_SEGMENTS
                          ")?" JS_RE_QUERY_FRAGMENT "$"},
        {"byte", "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"},   /* base64 (OpenAPI) */
        {"date", "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"},
        {"time", "^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"},
        {"date-time", "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"},
        {"email", "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"},
        {"uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
        {"ipv4", "^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])){3}$"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(f, table[i][0]) == 0) return table[i][1];
    return NULL;
}

static status_t js_get_count(js_ctx *c, const js_part *parts, int n, const char *key, int lower, int64_t *out)
{
    /* combined bound over all parts: the max of lower bounds / min of upper bounds; -1 if none */
    *out = -1;
    for (int i = 0; i < n; i++) {
        const json_value *v = json_get(parts[i].node, key);
        if (!v) continue;
        if (v->type != JSON_NUMBER || v->num < 0 || floor(v->num) != v->num) {
            char msg[128];
            snprintf(msg, sizeof msg, "'%s' must be a non-negative integer", key);
            return js_invalid(c, msg);
        }
        int64_t x = v->num > 1e15 ? (int64_t)1e15 : (int64_t)v->num;
        if (*out < 0 || (lower ? x > *out : x < *out)) *out = x;
    }
    return STATUS_OK;
}

static status_t js_string_schema(js_ctx *c, const js_part *parts, int n, grammar_sym *out)
{
    int npat, nfmt;
    const json_value *pat = js_kw(parts, n, "pattern", &npat);
    const json_value *fmt = js_kw(parts, n, "format", &nfmt);
    int64_t minl, maxl;
    STATUS_TRY(js_get_count(c, parts, n, "minLength", 1, &minl));
    STATUS_TRY(js_get_count(c, parts, n, "maxLength", 0, &maxl));
    if (minl <= 0 && maxl < 0) minl = -1;
    if (pat && pat->type != JSON_STRING) return js_invalid(c, "pattern must be a string");
    if (fmt && fmt->type != JSON_STRING) return js_invalid(c, "format must be a string");
    const char *fre = NULL;
    if (fmt) {
        fre = js_format_regex(fmt->str);
        if (!fre) {
            char msg[300];
            snprintf(msg, sizeof msg, "format '%.200s'", fmt->str);
            return js_unsupported(c, "format", msg);
        }
    }
    if (npat > 1) return js_unsupported(c, "pattern", "several patterns combined");
    if (pat && fre) return js_unsupported(c, "pattern", "combined with format");
    const int bounded = minl >= 0 || maxl >= 0;
    const int64_t lo = minl < 0 ? 0 : minl;
    if (bounded && (lo > JS_MAX_REPEAT || maxl > JS_MAX_REPEAT))
        return js_unsupported(c, "maxLength", "length bound too large");
    grammar_sym content;
    if (pat || fre) {
        /* a pattern (or format) beside length bounds: their intersection (grammar_add_regex_bounded) */
        const char *re = pat ? pat->str : fre, *kw = pat ? "pattern" : "format";
        size_t old = js_path_push(c, kw);
        status_t st = bounded ? grammar_add_regex_bounded(c->g, re, strlen(re), lo, maxl, &content)
                              : grammar_add_regex(c->g, re, strlen(re), GRAMMAR_REGEX_JSON_STRING, &content);
        if (st != STATUS_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", status_message());
            st = js_unsupported(c, kw, msg);
        }
        js_path_pop(c, old);
        STATUS_TRY(st);
    } else if (bounded) {
        content = grammar_add_repeat(c->g, "chars", js_counted_char(c), lo, maxl, 0, 0);
    } else {
        *out = js_string(c);
        return STATUS_OK;
    }
    grammar_sym s[3] = {grammar_term('"', '"'), content, grammar_term('"', '"')};
    *out = js_seq(c, "string", s, 3);
    return STATUS_OK;
}

/* ---- objects ---- */

typedef struct js_prop {
    const char *name;
    js_part schemas[8];
    int num_schemas;
    int required;
} js_prop;

static grammar_sym js_key(js_ctx *c, const char *name)
{
    grammar_buf t = {0};
    js_text_string(&t, name, strlen(name));
    grammar_buf_put(&t, "", 0);
    grammar_sym k = grammar_add_literal(c->g, "key", t.p, t.n);
    free(t.p);
    grammar_sym s[2] = {k, c->colon};
    return js_seq(c, "key", s, 2);
}

/* The letter of c's short JSON escape (\" \\ \b \f \n \r \t: how json.dumps writes them), 0 when c
 * needs none, -1 when it needs a \u escape (another control character). */
static int js_short_escape(uint32_t c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return c < 0x20 ? -1 : 0;
    }
}

/* Decodes UTF-8 into code points, into *out (allocated here, the caller frees it); returns -1
 * when a name has a character that JSON writes as a \u escape (then keys are not excluded, see
 * js_extra_key). */
static int js_decode_name(const char *s, uint32_t **out)
{
    const size_t cap = strlen(s);
    *out = malloc((cap + 1) * sizeof **out);
    LL_ASSERT(*out);
    int n = 0;
    for (const uint8_t *p = (const uint8_t *)s; *p && (size_t)n < cap;) {
        uint32_t c = *p;
        int k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        if (k > 1) c &= (1u << (7 - k)) - 1;
        for (int i = 1; i < k; i++) {
            if ((p[i] & 0xC0) != 0x80) return -1;
            c = (c << 6) | (p[i] & 0x3F);
        }
        if (js_short_escape(c) < 0) return -1;
        (*out)[n++] = c;
        p += k;
    }
    return n;
}

/* The rest of a key (content + closing quote) given that its first d characters equal those
 * of every name in names[0..n): any continuation that does not spell one of the names. */
static grammar_sym js_excl_node(js_ctx *c, uint32_t **names, const int *lens, int n, int d)
{
    grammar *g = c->g;
    int32_t nt = grammar_add_nonterminal(g, "key_rest");
    int is_end = 0;
    grammar_range *r = malloc(((size_t)n + 4) * sizeof *r);
    uint32_t **sub = malloc((size_t)n * sizeof *sub);
    int *sublen = malloc((size_t)n * sizeof *sublen);
    LL_ASSERT(r && sub && sublen);
    char escaped[8];            /* short-escape letters some name continues with here */
    int num_escaped = 0, nr = 0;
    r[nr++] = (grammar_range){0, 0x1F};
    r[nr++] = (grammar_range){'"', '"'};
    r[nr++] = (grammar_range){'\\', '\\'};
    for (int i = 0; i < n; i++) {
        if (lens[i] == d) { is_end = 1; continue; }
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = lens[j] > d && names[j][d] == names[i][d];
        if (seen) continue;
        uint32_t cp = names[i][d];
        const int esc_letter = js_short_escape(cp);
        if (esc_letter > 0) escaped[num_escaped++] = (char)esc_letter; /* branch on its escape, below */
        else r[nr++] = (grammar_range){cp, cp};
        if (cp == '/') escaped[num_escaped++] = '/'; /* "\/" spells it too: branched below */
        int m = 0;
        for (int j = i; j < n; j++)
            if (lens[j] > d && names[j][d] == cp) { sub[m] = names[j]; sublen[m] = lens[j]; m++; }
        grammar_seq seq = {0};
        char b[4];
        int k;
        if (esc_letter > 0) { b[0] = '\\'; b[1] = (char)esc_letter; k = 2; }
        else if (cp < 0x80) { b[0] = (char)cp; k = 1; }
        else if (cp < 0x800) { b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
        else if (cp < 0x10000) { b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[2] = (char)(0x80 | (cp & 0x3F)); k = 3; }
        else { b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F)); k = 4; }
        grammar_seq_push_literal(&seq, b, (size_t)k);
        uint32_t **sub2 = malloc((size_t)m * sizeof *sub2);
        int *sublen2 = malloc((size_t)m * sizeof *sublen2);
        LL_ASSERT(sub2 && sublen2);
        memcpy(sub2, sub, (size_t)m * sizeof *sub2);
        memcpy(sublen2, sublen, (size_t)m * sizeof *sublen2);
        const grammar_sym next = js_excl_node(c, sub2, sublen2, m, d + 1);
        grammar_seq_push(&seq, next);
        free(sub2);
        free(sublen2);
        grammar_add_rule(g, nt, seq.syms, seq.n);
        grammar_seq_free(&seq);
        if (cp == '/') {
            grammar_sym s2[3] = {grammar_term('\\', '\\'), grammar_term('/', '/'), next};
            grammar_add_rule(g, nt, s2, 3);
        }
    }
    if (!is_end) {
        grammar_sym q = grammar_term('"', '"');
        grammar_add_rule(g, nt, &q, 1);
    }
    /* the tails after a character no name continues with: one shared nonterminal each for
     * escapes and (when every name continues with ASCII here) non-ASCII characters, so the
     * automaton has one copy of them instead of one per trie node.  Up to the first character
     * that differs from every name, a key is held to one spelling per character (raw, or the
     * short escape json.dumps uses, \/ branching like '/'; \u only for control characters
     * without a short escape): otherwise "\u0061" would spell a declared "a" as an extra key. */
    if (!c->have_key_tails) {
        c->have_key_tails = 1;
        grammar_range na[1] = {{0x80, GRAMMAR_MAX_CODEPOINT}};
        grammar_sym t[2] = {grammar_add_class(g, "key_char", na, 1, 0), c->string_tail};
        c->key_nonascii_tail = js_seq(c, "key_tail", t, 2);
        grammar_range lo[] = {{'0', '7'}, {'B', 'B'}, {'E', 'F'}, {'b', 'b'}, {'e', 'f'}};
        grammar_sym c0[2] = {grammar_term('0', '0'), grammar_add_class(g, "ctrl_hex", lo, 5, 0)};
        grammar_sym c1[2] = {grammar_term('1', '1'), c->hex};
        int32_t ctrl = grammar_add_nonterminal(g, "ctrl_hex2");
        grammar_add_rule(g, ctrl, c0, 2);
        grammar_add_rule(g, ctrl, c1, 2);
        grammar_sym u[4] = {grammar_term('u', 'u'), grammar_term('0', '0'), grammar_term('0', '0'), grammar_nt(ctrl)};
        c->key_ctrl_u = js_seq(c, "key_ctrl_u", u, 4);
        int32_t esc = grammar_add_nonterminal(g, "key_escape");
        grammar_range letters[] = {{'"', '"'}, {'/', '/'}, {'\\', '\\'}, {'b', 'b'}, {'f', 'f'}, {'n', 'n'}, {'r', 'r'}, {'t', 't'}};
        grammar_sym l = grammar_add_class(g, "key_escape", letters, 8, 0);
        grammar_add_rule(g, esc, &l, 1);
        grammar_add_rule(g, esc, &c->key_ctrl_u, 1);
        grammar_sym e[3] = {grammar_term('\\', '\\'), grammar_nt(esc), c->string_tail};
        c->key_escaped_tail = js_seq(c, "key_tail", e, 3);
    }
    int ascii = 1;
    for (int i = 0; i < nr; i++) ascii &= r[i].hi < 0x80;
    if (ascii) {
        r[nr++] = (grammar_range){0x80, GRAMMAR_MAX_CODEPOINT};
        grammar_add_rule(g, nt, &c->key_nonascii_tail, 1);
    }
    grammar_sym other = grammar_add_class(g, "key_char", r, nr, 1);
    grammar_sym o[2] = {other, c->string_tail};
    grammar_add_rule(g, nt, o, 2);
    if (num_escaped == 0) {
        grammar_add_rule(g, nt, &c->key_escaped_tail, 1);
    } else { /* any escape but the names' next ones (those branched above): other short letters, \u00XX of controls */
        grammar_range letters[8];
        int nl = 0;
        for (const char *e = "\"\\/bfnrt"; *e; e++)
            if (!memchr(escaped, *e, (size_t)num_escaped)) letters[nl++] = (grammar_range){(uint8_t)*e, (uint8_t)*e};
        if (nl > 0) {
            grammar_sym t[3] = {grammar_term('\\', '\\'), grammar_add_class(g, "key_escape", letters, nl, 0), c->string_tail};
            grammar_add_rule(g, nt, t, 3);
        }
        grammar_sym u[3] = {grammar_term('\\', '\\'), c->key_ctrl_u, c->string_tail};
        grammar_add_rule(g, nt, u, 3);
    }
    free(r);
    free(sub);
    free(sublen);
    return grammar_nt(nt);
}

/* The key of an additional property: any string but the declared names as json.dumps writes them
 * (short escapes included; when a declared name has a character written as \uXXXX, any string). */
static grammar_sym js_extra_key(js_ctx *c, const char *const *names, int n)
{
    js_string_char(c);
    if (n == 0) return c->string;
    uint32_t **cps = calloc((size_t)n, sizeof *cps);
    int *lens = calloc((size_t)n, sizeof *lens);
    LL_ASSERT(cps && lens);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        lens[i] = js_decode_name(names[i], &cps[i]);
        if (lens[i] < 0) ok = 0;
    }
    grammar_sym key = c->string;
    if (ok) {
        grammar_sym s[2] = {grammar_term('"', '"'), js_excl_node(c, cps, lens, n, 0)};
        key = js_seq(c, "key", s, 2);
    }
    for (int i = 0; i < n; i++) free(cps[i]);
    free(cps);
    free(lens);
    return key;
}

/* A dependency between two members of one object (dependencies, dependentRequired,
 * dependentSchemas): when `trigger` is present, `target` must be present too (forbid 0) or must
 * not be (forbid 1).  Indices into the object's js_prop array. */
typedef struct js_dep {
    int trigger, target, forbid;
} js_dep;
typedef VEC(js_dep) js_dep_vec;

#define JS_DEP_BITS 16   /* properties dependencies may name at once */

/* The members of an object with declared properties, in declaration order, as a chain of states
 * (i, k, S): properties i.. (then the extra members, when extra) are still to come, k members
 * were written (k > 0 puts a comma before the next one; k runs to top: hi when maxProperties
 * binds — more is never reached —, else lo or at least 1, "top or more"), and S holds the
 * presence bits of the properties that dependencies still name after i.  States are made as they
 * are reached from (0, 0, 0); one that cannot reach an end is left without rules (regularize drops
 * it), so a prefix is accepted only when some completion meets the bounds and the dependencies. */
typedef struct js_chain {
    js_ctx *c;
    const js_prop *props;
    const grammar_sym *members;   /* [n], 0 for a property that can never appear */
    int n, extra;
    grammar_sym extra_member, extra_tail;   /* extra_tail: (comma extra_member)+, made once */
    int64_t lo, hi, top;
    const js_dep *deps;
    int ndeps;
    int *slot;                  /* [n] bit of property i, -1 when no dependency names it */
    uint32_t *keep;             /* [n] bits still named after property i */
    vec_intern seen;            /* (i, k, S) -> state id */
    vec_i32 nts;                /* state id -> nonterminal */
} js_chain;

static int js_chain_present(const js_chain *ch, int p, uint32_t S) { return (int)(S >> ch->slot[p] & 1); }

/* Whether property i may be written (taken) or left out (skipped) in state S. */
static int js_chain_may(const js_chain *ch, int i, uint32_t S, int take)
{
    if (take ? ch->members[i] == 0 : ch->props[i].required) return 0;
    for (int k = 0; k < ch->ndeps; k++) {
        const js_dep *d = &ch->deps[k];
        if (take && d->trigger == i && d->target == i && d->forbid) return 0;
        if (take && d->trigger == i && d->target < i && js_chain_present(ch, d->target, S) == d->forbid) return 0;
        if (d->target == i && d->trigger < i && js_chain_present(ch, d->trigger, S) && d->forbid == take) return 0;
    }
    return 1;
}

static grammar_sym js_chain_state(js_chain *ch, int i, int64_t k, uint32_t S)
{
    grammar *g = ch->c->g;
    int32_t key[3] = {i, (int32_t)k, (int32_t)S}, added;
    int32_t id = vec_intern_add(&ch->seen, key, 3, &added);
    if (!added) return grammar_nt(ch->nts.p[id]);
    const int32_t nt = grammar_add_nonterminal(g, ch->hi >= 0 || ch->lo > 0 ? "props_n" : "props");
    VEC_PUSH(ch->nts, nt);
    if (id >= JS_MAX_COUNT_STATES) return grammar_nt(nt);   /* too many: js_members refuses */
    const int64_t next = ch->hi >= 0 ? k + 1 : (k + 1 < ch->top ? k + 1 : ch->top);   /* after one more */
    const int can_add = ch->hi < 0 || k + 1 <= ch->hi;
    const grammar_sym comma = ch->c->comma;
    if (i == ch->n) {
        if (k >= ch->lo) grammar_add_rule(g, nt, NULL, 0);
        if (!ch->extra || !can_add) return grammar_nt(nt);
        if (ch->hi < 0 && next == ch->top && k > 0) {   /* "top or more": the rest is a loop */
            if (!ch->extra_tail) {
                grammar_sym cm[2] = {comma, ch->extra_member};
                ch->extra_tail = grammar_add_plus(g, "extra", js_seq(ch->c, "extra", cm, 2));
            }
            grammar_add_rule(g, nt, &ch->extra_tail, 1);
            return grammar_nt(nt);
        }
        grammar_sym r[3] = {comma, ch->extra_member, js_chain_state(ch, i, next, S)};
        grammar_add_rule(g, nt, k > 0 ? r : r + 1, k > 0 ? 3 : 2);
        return grammar_nt(nt);
    }
    const uint32_t mine = ch->slot[i] >= 0 ? 1u << ch->slot[i] : 0;
    if (can_add && js_chain_may(ch, i, S, 1)) {
        grammar_sym r[3] = {comma, ch->members[i], js_chain_state(ch, i + 1, next, (S | mine) & ch->keep[i])};
        grammar_add_rule(g, nt, k > 0 ? r : r + 1, k > 0 ? 3 : 2);
    }
    if (js_chain_may(ch, i, S, 0)) {
        grammar_sym skip = js_chain_state(ch, i + 1, k, S & ch->keep[i]);
        grammar_add_rule(g, nt, &skip, 1);
    }
    return grammar_nt(nt);
}

/* The member chain from (0, 0, 0); count bounds lo / hi (hi < 0: none) as js_object_schema has
 * them (lo > the required count, hi below the most members), deps over props. */
static status_t js_members(js_ctx *c, const js_prop *props, const grammar_sym *members, int num_props, int extra,
                           grammar_sym extra_member, int64_t lo, int64_t hi, const js_dep *deps, int ndeps,
                           grammar_sym *out)
{
    js_chain ch = {.c = c, .props = props, .members = members, .n = num_props, .extra = extra,
                   .extra_member = extra_member, .lo = lo, .hi = hi, .top = hi >= 0 ? hi : lo, .deps = deps,
                   .ndeps = ndeps};
    if (ch.top < 1) ch.top = 1;
    ch.slot = malloc((size_t)num_props * sizeof *ch.slot);
    ch.keep = calloc((size_t)num_props, sizeof *ch.keep);
    LL_ASSERT(ch.slot && ch.keep);
    int nbits = 0;
    status_t st = STATUS_OK;
    for (int i = 0; i < num_props; i++) ch.slot[i] = -1;
    /* the earlier property of each dependency has a bit, kept until the later one is decided */
    for (int k = 0; k < ndeps && st == STATUS_OK; k++) {
        const int a = deps[k].trigger, b = deps[k].target, first = a < b ? a : b, last = a < b ? b : a;
        if (first == last) continue;
        if (ch.slot[first] < 0) {
            if (nbits == JS_DEP_BITS) { st = js_unsupported(c, "dependencies", "more than 16 properties named"); break; }
            ch.slot[first] = nbits++;
        }
        for (int i = first; i < last; i++) ch.keep[i] |= 1u << ch.slot[first];
    }
    if (st == STATUS_OK) {
        *out = js_chain_state(&ch, 0, 0, 0);
        if (vec_intern_num(&ch.seen) > JS_MAX_COUNT_STATES) {
            char msg[160];
            snprintf(msg, sizeof msg, "%d member states over %d declared properties (limit %d)",
                     vec_intern_num(&ch.seen), num_props, JS_MAX_COUNT_STATES);
            st = js_unsupported(c, ndeps ? "dependencies" : hi >= 0 ? "maxProperties" : "minProperties", msg);
        }
    }
    vec_intern_free(&ch.seen);
    VEC_FREE(ch.nts);
    free(ch.slot);
    free(ch.keep);
    return st;
}

/* patternProperties (JSON Schema search semantics): a member whose key matches a pattern also
 * takes its schema.  `universal`: one pattern, matching every key ("", ".*", "^.*", ".*$"), so
 * additionalProperties never applies. */
typedef struct js_pattern_props {
    const char *patterns[GRAMMAR_REGEX_MAX_PATTERNS];
    const json_value *schemas[GRAMMAR_REGEX_MAX_PATTERNS];
    int num;                   /* 0: no patternProperties */
    int universal;
    int open;                  /* beside extra members that additionalProperties allows */
} js_pattern_props;

static status_t js_get_pattern_props(js_ctx *c, const js_part *parts, int n, js_pattern_props *pp)
{
    memset(pp, 0, sizeof *pp);
    int npp;
    const json_value *v = js_kw(parts, n, "patternProperties", &npp);
    if (!v) return STATUS_OK;
    if (npp > 1) return js_unsupported(c, "patternProperties", "in several allOf parts");
    if (v->type != JSON_OBJECT) return js_invalid(c, "patternProperties must be an object");
    if (v->count == 0) return STATUS_OK;
    if (v->count > GRAMMAR_REGEX_MAX_PATTERNS) return js_unsupported(c, "patternProperties", "more than 8 patterns");
    for (int32_t k = 0; k < v->count; k++) pp->patterns[k] = v->items[k].key, pp->schemas[k] = &v->items[k];
    pp->num = v->count;
    static const char *const all[] = {"", ".*", "^.*", ".*$"};
    for (size_t i = 0; i < sizeof all / sizeof all[0] && pp->num == 1; i++)
        pp->universal |= strcmp(pp->patterns[0], all[i]) == 0;
    return STATUS_OK;
}

/* The key of a member matched by the pattern: a JSON string whose decoded text matches it
 * (additionalProperties: false, no declared name matching it — checked here with the reference
 * recognizer over the pattern alone, so the keys stay disjoint from the declared ones). */
static status_t js_pattern_key(js_ctx *c, const js_pattern_props *pp, const js_prop *props, int num_props,
                               grammar_sym *out)
{
    size_t old = js_path_push(c, "patternProperties");
    grammar_sym s;
    status_t st = grammar_add_regex(c->g, pp->patterns[0], strlen(pp->patterns[0]), GRAMMAR_REGEX_JSON_STRING, &s);
    if (st != STATUS_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", status_message());
        st = js_unsupported(c, "patternProperties", msg);
    } else if (num_props > 0) {   /* the declared names against the pattern alone */
        grammar t;
        grammar_init(&t);
        grammar_sym ts;
        (void)grammar_add_regex(&t, pp->patterns[0], strlen(pp->patterns[0]), GRAMMAR_REGEX_JSON_STRING, &ts);
        t.start = grammar_add_nonterminal(&t, "root");
        grammar_add_rule(&t, t.start, &ts, 1);
        for (int i = 0; i < num_props && st == STATUS_OK; i++) {
            grammar_buf b = {0};
            js_text_string(&b, props[i].name, strlen(props[i].name));
            if (grammar_accepts(&t, (const uint8_t *)b.p + 1, b.n - 2))   /* the text between the quotes */
                st = js_unsupported(c, "patternProperties", "a declared property matches the pattern");
            free(b.p);
        }
        grammar_free(&t);
    }
    js_path_pop(c, old);
    STATUS_TRY(st);
    grammar_sym k[3] = {grammar_term('"', '"'), s, grammar_term('"', '"')};
    *out = js_seq(c, "pattern_key", k, 3);
    return STATUS_OK;
}

/* A member's value after its key, by the patterns the key matches (m: bit k for pattern k; none:
 * additionalProperties' value, when extra members are allowed). */
typedef struct js_tail_ctx {
    js_ctx *c;
    const js_pattern_props *pp;
    grammar_sym other;   /* 0: a key no pattern matches is not allowed */
    status_t st;
} js_tail_ctx;

static grammar_sym js_pattern_tail(void *ctx, uint32_t m)
{
    js_tail_ctx *t = ctx;
    js_ctx *c = t->c;
    grammar_sym v = t->other;
    if (t->st != STATUS_OK || (m == 0 && !v)) return 0;
    if (m) {
        js_part parts[GRAMMAR_REGEX_MAX_PATTERNS];
        int n = 0, first = -1;
        for (int k = 0; k < t->pp->num; k++)
            if (m >> k & 1) parts[n++] = (js_part){t->pp->schemas[k], 0}, first = first < 0 ? k : first;
        size_t old = js_path_push(c, "patternProperties");
        js_path_push(c, t->pp->patterns[first]);
        t->st = js_gen(c, parts, n, &v);
        js_path_pop(c, old);
        if (t->st != STATUS_OK) return 0;
    }
    grammar_sym s[3] = {grammar_term('"', '"'), c->colon, v};
    return js_seq(c, "member_value", s, 3);
}

/* patternProperties other than one universal pattern: an extra member's key is none of the
 * declared names, written in canonical spelling, and its value takes the schemas of the patterns
 * its key matches — or additionalProperties' when none does and extra members are allowed (else
 * such keys are not written); declared names the patterns match take their schemas too.  One
 * subset automaton over the keys (regex.h grammar_add_regex_keys) decides where a key ends.  One
 * pattern beside additionalProperties: false that the automaton does not take keeps the general
 * pattern (js_pattern_key), when no declared name matches it. */
static status_t js_pattern_members(js_ctx *c, const js_pattern_props *pp, const json_value *ap, js_prop *props,
                                   int num_props, grammar_sym *out)
{
    grammar *g = c->g;
    uint32_t **cps = calloc((size_t)num_props + 1, sizeof *cps), *match = calloc((size_t)num_props + 1, sizeof *match);
    int *lens = calloc((size_t)num_props + 1, sizeof *lens);
    LL_ASSERT(cps && lens && match);
    js_tail_ctx t = {c, pp, 0, STATUS_OK};
    status_t st = STATUS_OK;
    if (pp->open && ap && ap->type == JSON_OBJECT) {
        size_t old = js_path_push(c, "additionalProperties");
        st = js_gen_one(c, ap, &t.other);
        js_path_pop(c, old);
    } else if (pp->open) {
        t.other = js_value(c);
    }
    size_t old = js_path_push(c, "patternProperties");
    for (int i = 0; i < num_props && st == STATUS_OK; i++) {
        lens[i] = js_decode_name(props[i].name, &cps[i]);
        if (lens[i] < 0) st = js_unsupported(c, "patternProperties", "beside a declared name with a control character");
    }
    grammar_sym key = 0;
    char general[512] = "";   /* why the general pattern's path did not serve */
    if (st == STATUS_OK && !pp->open && pp->num == 1) {   /* the general pattern, as the only extra keys */
        js_path_pop(c, old);
        grammar_sym pv;
        st = js_pattern_key(c, pp, props, num_props, &key);
        old = js_path_push(c, "patternProperties");
        size_t old2 = js_path_push(c, pp->patterns[0]);
        if (st == STATUS_OK) {
            st = js_gen_one(c, pp->schemas[0], &pv);
            grammar_sym m[3] = {key, c->colon, pv};
            if (st == STATUS_OK) *out = js_seq(c, "member", m, 3);
            js_path_pop(c, old);
            goto done;
        }
        snprintf(general, sizeof general, "%s", status_message());
        js_path_pop(c, old2);
        st = STATUS_OK;
    }
    if (st == STATUS_OK) {
        st = grammar_add_regex_keys(g, pp->patterns, pp->num, (const uint32_t *const *)cps, lens, num_props,
                                    js_pattern_tail, &t, &key, match);
        if (st == STATUS_OK && t.st != STATUS_OK) {
            st = t.st;
        } else if (st == STATUS_OK) {
            grammar_sym m[2] = {grammar_term('"', '"'), key};
            *out = js_seq(c, "member", m, 2);
        } else if (general[0]) {
            st = status_set(STATUS_INVALID_ARG, "%s", general);
        } else {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", status_message());
            st = js_unsupported(c, "patternProperties", msg);
        }
    }
    js_path_pop(c, old);
    for (int i = 0; i < num_props && st == STATUS_OK; i++)
        for (int k = 0; k < pp->num && st == STATUS_OK; k++) {
            if (!(match[i] >> k & 1)) continue;
            if (props[i].num_schemas == 8) st = js_unsupported(c, "allOf", "property declared too often");
            else props[i].schemas[props[i].num_schemas++] = (js_part){pp->schemas[k], 0};
        }
done:
    for (int i = 0; i < num_props; i++) free(cps[i]);
    free(cps);
    free(lens);
    free(match);
    return st;
}

/* The index of property `name` in the object's list, appended (optional, no schema) when new. */
static int js_prop_at(js_prop **props, int *num, int *cap, const char *name)
{
    for (int j = 0; j < *num; j++)
        if (strcmp((*props)[j].name, name) == 0) return j;
    if (*num == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *props = realloc(*props, (size_t)*cap * sizeof **props);
        LL_ASSERT(*props);
    }
    memset(&(*props)[*num], 0, sizeof **props);
    (*props)[*num].name = name;
    return (*num)++;
}

/* dependencies (names, or a schema), dependentRequired (names), dependentSchemas (a schema) of
 * every part, as presence pairs; a name no part declares is appended to props (dep_only).  The
 * schemas taken: {required: [...]} (each present), {not: {required: [name]}} (absent), booleans
 * and schemas without validating keywords. */
static status_t js_get_deps(js_ctx *c, const js_part *parts, int n, js_prop **props, int *num, int *cap,
                            js_dep_vec *deps)
{
    static const char *const kws[3] = {"dependencies", "dependentRequired", "dependentSchemas"};
    for (int i = 0; i < n; i++) {
        for (int w = 0; w < 3; w++) {
            const json_value *v = json_get(parts[i].node, kws[w]);
            if (!v) continue;
            size_t old = js_path_push(c, kws[w]);
            status_t st = v->type == JSON_OBJECT ? STATUS_OK : js_invalid(c, "must be an object");
            for (int32_t k = 0; k < v->count && st == STATUS_OK; k++) {
                const json_value *m = &v->items[k], *names = NULL;
                size_t old2 = js_path_push(c, m->key);
                int forbid = 0;
                if (m->type == JSON_ARRAY && w < 2) names = m;
                else if (m->type == JSON_STRING && w == 0) names = m;   /* draft 3: one name */
                else if (m->type == JSON_BOOL && w != 1) { if (!m->boolean) names = m, forbid = 1; }
                else if (m->type == JSON_OBJECT && w != 1) {
                    const json_value *req = json_get(m, "required"), *neg = json_get(m, "not");
                    const json_value *nreq = neg && neg->type == JSON_OBJECT ? json_get(neg, "required") : NULL;
                    if (req && js_only_keyword(m, "required")) names = req;
                    else if (nreq && js_only_keyword(m, "not") && js_only_keyword(neg, "required") &&
                             nreq->type == JSON_ARRAY && nreq->count == 1) names = nreq, forbid = 1;
                    else if (!js_only_keyword(m, ""))
                        st = js_unsupported(c, kws[w], "a dependent schema other than {\"required\": [...]} or "
                                                       "{\"not\": {\"required\": [one name]}}");
                } else st = js_invalid(c, "a dependency must be a list of names or a schema");
                int trig = st == STATUS_OK && names ? js_prop_at(props, num, cap, m->key) : -1;
                if (names && names->type == JSON_BOOL) {   /* false: the trigger may not appear */
                    VEC_PUSH(*deps, ((js_dep){trig, trig, 1}));
                    names = NULL;
                }
                int32_t cnt = names && names->type == JSON_STRING ? 1 : names ? names->count : 0;
                for (int32_t j = 0; j < cnt && st == STATUS_OK; j++) {
                    const json_value *nm = names->type == JSON_STRING ? names : &names->items[j];
                    if (nm->type != JSON_STRING) { st = js_invalid(c, "dependency names must be strings"); break; }
                    int tgt = js_prop_at(props, num, cap, nm->str);
                    VEC_PUSH(*deps, ((js_dep){trig, tgt, forbid}));
                }
                js_path_pop(c, old2);
            }
            js_path_pop(c, old);
            STATUS_TRY(st);
        }
    }
    return STATUS_OK;
}

static status_t js_object_schema(js_ctx *c, const js_part *parts, int n, grammar_sym *out)
{
    grammar *g = c->g;
    js_separators(c);
    js_prop *props = NULL;
    int num_props = 0, cap_props = 0;
    status_t st = STATUS_OK;
    /* properties in declaration order, then required-only names */
    for (int pass = 0; pass < 2 && st == STATUS_OK; pass++) {
        for (int i = 0; i < n && st == STATUS_OK; i++) {
            const json_value *pv = json_get(parts[i].node, pass == 0 ? "properties" : "required");
            if (!pv) continue;
            if (pv->type != (pass == 0 ? JSON_OBJECT : JSON_ARRAY)) {
                st = js_invalid(c, pass == 0 ? "properties must be an object" : "required must be an array");
                break;
            }
            for (int32_t k = 0; k < pv->count; k++) {
                const json_value *item = &pv->items[k];
                if (pass == 1 && item->type != JSON_STRING) { st = js_invalid(c, "required must list strings"); break; }
                int j = js_prop_at(&props, &num_props, &cap_props, pass == 0 ? item->key : item->str);
                if (pass == 1) { props[j].required = 1; continue; }
                if (props[j].num_schemas == 8) { st = js_unsupported(c, "allOf", "property declared too often"); break; }
                props[j].schemas[props[j].num_schemas++] = (js_part){item, 0};
            }
        }
    }
    /* dependencies: names no part declares become optional properties (after the declared ones) */
    const int num_declared = num_props;
    js_dep_vec deps = {0};
    if (st == STATUS_OK) st = js_get_deps(c, parts, n, &props, &num_props, &cap_props, &deps);
    /* additionalProperties */
    int nap;
    const json_value *ap = js_kw(parts, n, "additionalProperties", &nap);
    if (st == STATUS_OK && nap > 1) {
        for (int i = 0; i < n; i++) {
            const json_value *v = json_get(parts[i].node, "additionalProperties");
            if (v && !(v->type == JSON_BOOL && !v->boolean)) {
                st = js_unsupported(c, "additionalProperties", "in several allOf parts");
                break;
            }
        }
    }
    int extra = !(ap && ap->type == JSON_BOOL && !ap->boolean);
    /* patternProperties: a pattern every key matches puts its schema on every member (declared
     * ones conjoin it; extra ones take it instead of additionalProperties); another pattern
     * beside additionalProperties: false gives the only extra keys, beside extra members the
     * extra keys are those it matches and the others (js_pattern_members) */
    js_pattern_props pp = {0};
    if (st == STATUS_OK) st = js_get_pattern_props(c, parts, n, &pp);
    if (st == STATUS_OK && pp.num) {
        if (pp.universal) {
            for (int i = 0; i < num_props && st == STATUS_OK; i++) {
                if (props[i].num_schemas == 8) st = js_unsupported(c, "allOf", "property declared too often");
                else props[i].schemas[props[i].num_schemas++] = (js_part){pp.schemas[0], 0};
            }
            extra = 1;
        } else {
            pp.open = extra;
            extra = 1;
        }
    }
    /* names only dependencies give take additionalProperties' schema (any value when absent or
     * true; the pattern's when it matches every key), and never appear without extra members */
    for (int i = num_declared; i < num_props && st == STATUS_OK; i++) {
        if (pp.num && !pp.universal)
            st = js_unsupported(c, "dependencies", "a name not declared beside patternProperties");
        else if (extra && !pp.num && ap && ap->type == JSON_OBJECT)
            props[i].schemas[props[i].num_schemas++] = (js_part){ap, 0};
    }
    int64_t minp = -1, maxp = -1;
    if (st == STATUS_OK) st = js_get_count(c, parts, n, "minProperties", 1, &minp);
    if (st == STATUS_OK) st = js_get_count(c, parts, n, "maxProperties", 0, &maxp);
    int num_required = 0;
    for (int i = 0; i < num_props; i++) num_required += props[i].required;
    /* the member count's bounds where they bind: lo > the required count (always there), hi below
     * the most members there can be; with declared properties they are counted along the chain
     * (js_members), without them on the extra members' repetition */
    int64_t count_lo = minp > num_required ? minp : 0;
    int64_t count_hi = maxp >= 0 && (extra || maxp < num_props) ? maxp : -1;
    /* bounds no instance meets (maxProperties below the required count or below minProperties,
     * minProperties above the members additionalProperties false allows): the empty language, as
     * jsonschema has it, so an anyOf option or an optional member may hold it; a root that is
     * empty fails at compile time ("the grammar's language is empty") */
    if (st == STATUS_OK && ((count_hi >= 0 && (count_hi < num_required || count_lo > count_hi)) ||
                            (!extra && count_lo > num_props))) {
        free(props);
        VEC_FREE(deps);
        *out = grammar_add_empty(g, "object_none");
        return STATUS_OK;
    }
    const int counted = num_props > 0 && (count_lo > 0 || count_hi >= 0);
    if (st == STATUS_OK && counted) {
        const int64_t top = count_hi >= 0 ? count_hi : count_lo;
        if (top >= JS_MAX_COUNT_STATES || (int64_t)(num_props + 1) * (top + 1) > JS_MAX_COUNT_STATES) {
            char msg[160];
            snprintf(msg, sizeof msg, "count of %lld over %d declared properties too large (limit %d states)",
                     (long long)top, num_props, JS_MAX_COUNT_STATES);
            st = js_unsupported(c, count_hi >= 0 ? "maxProperties" : "minProperties", msg);
        }
    }
    grammar_sym extra_member = 0;
    if (st == STATUS_OK && pp.num && !pp.universal) {
        st = js_pattern_members(c, &pp, ap, props, num_props, &extra_member);
    } else if (st == STATUS_OK && extra) {
        /* the value: the universal pattern's schema, else additionalProperties' (any value when
         * absent or true) */
        const json_value *vschema = pp.num ? pp.schemas[0] : ap && ap->type == JSON_OBJECT ? ap : NULL;
        grammar_sym vs = 0, key = 0;
        if (vschema) {
            size_t old = js_path_push(c, pp.num ? "patternProperties" : "additionalProperties");
            if (pp.num) js_path_push(c, pp.patterns[0]);
            st = js_gen_one(c, vschema, &vs);
            js_path_pop(c, old);
        } else {
            vs = js_value(c);
        }
        /* the key: any string but the declared names */
        if (st == STATUS_OK) {
            const char **names = malloc(((size_t)num_props + 1) * sizeof *names);
            LL_ASSERT(names);
            for (int i = 0; i < num_props; i++) names[i] = props[i].name;
            key = js_extra_key(c, names, num_props);
            free(names);
        }
        if (st == STATUS_OK) {
            grammar_sym m[3] = {key, c->colon, vs};
            extra_member = js_seq(c, "member", m, 3);
        }
    }
    if (st != STATUS_OK) { free(props); VEC_FREE(deps); return st; }
    /* member symbols (none for a name only dependencies give, without extra members) */
    grammar_sym *members = calloc((size_t)num_props + 1, sizeof *members);
    LL_ASSERT(members);
    for (int i = 0; i < num_props && st == STATUS_OK; i++) {
        if (i >= num_declared && !extra) continue;
        grammar_sym vs;
        size_t old = js_path_push(c, "properties");
        size_t old2 = js_path_push(c, props[i].name);
        if (props[i].num_schemas == 0) {
            vs = js_value(c);
        } else {
            st = js_gen(c, props[i].schemas, props[i].num_schemas, &vs);
        }
        js_path_pop(c, old2);
        js_path_pop(c, old);
        if (st != STATUS_OK) break;
        grammar_sym m[2] = {js_key(c, props[i].name), vs};
        members[i] = js_seq(c, "prop", m, 2);
    }
    grammar_sym body = 0;
    if (st == STATUS_OK && num_props > 0) {
        st = js_members(c, props, members, num_props, extra, extra_member, counted ? count_lo : 0, counted ? count_hi : -1,
                        deps.p, (int)deps.n, &body);
    } else if (st == STATUS_OK) {   /* extra members only, their count bounded by min/maxProperties */
        int32_t nt = grammar_add_nonterminal(g, "props");
        grammar_sym first = extra ? grammar_add_repeat(g, "extra", extra_member, minp < 0 ? 0 : minp, maxp, c->comma, 1) : 0;
        if (extra) grammar_add_rule(g, nt, &first, 1);
        else if (minp <= 0) grammar_add_rule(g, nt, NULL, 0);
        body = grammar_nt(nt);
    }
    if (st == STATUS_OK) {
        grammar_sym o[3] = {grammar_term('{', '{'), body, grammar_term('}', '}')};
        *out = js_seq(c, "object", o, 3);
    }
    VEC_FREE(deps);
    free(members);
    free(props);
    return st;
}

/* ---- arrays ---- */

static status_t js_array_schema(js_ctx *c, const js_part *parts, int n, grammar_sym *out)
{
    grammar *g = c->g;
    js_separators(c);
    int nprefix_kw, nitems;
    const json_value *prefix = js_kw(parts, n, "prefixItems", &nprefix_kw);
    const json_value *items = js_kw(parts, n, "items", &nitems);
    const json_value *tail_schema = NULL;
    const char *tail_name = "items";
    if (nprefix_kw > 1 || nitems > 1) {
        /* several parts constrain items: only identical constraints are supported */
        return js_unsupported(c, nprefix_kw > 1 ? "prefixItems" : "items", "in several allOf parts");
    }
    if (prefix && prefix->type != JSON_ARRAY) return js_invalid(c, "prefixItems must be an array");
    if (items && items->type == JSON_ARRAY) {
        if (prefix) return js_invalid(c, "items array together with prefixItems");
        prefix = items;
        tail_schema = js_kw(parts, n, "additionalItems", NULL);
        tail_name = "additionalItems";
    } else if (items) {
        if (!js_is_schema(items)) return js_invalid(c, "items must be a schema");
        tail_schema = items;
    }
    int64_t min = -1, max = -1;
    STATUS_TRY(js_get_count(c, parts, n, "minItems", 1, &min));
    STATUS_TRY(js_get_count(c, parts, n, "maxItems", 0, &max));
    if (min < 0) min = 0;
    if (min > JS_MAX_REPEAT || max > JS_MAX_REPEAT) return js_unsupported(c, "maxItems", "bound too large");
    int k = prefix ? prefix->count : 0;
    int tail_allowed = !(tail_schema && tail_schema->type == JSON_BOOL && !tail_schema->boolean);
    grammar_sym tail = 0;
    if (tail_allowed) {
        if (tail_schema) {
            size_t old = js_path_push(c, tail_name);
            status_t st = js_gen_one(c, tail_schema, &tail);
            js_path_pop(c, old);
            STATUS_TRY(st);
        } else {
            tail = js_value(c);
        }
    }
    /* L_k: the tail after k prefix items */
    int32_t next = grammar_add_nonterminal(g, "items");
    if (max >= 0 && max < k) k = (int)max;  /* later prefix items can never appear */
    if (tail_allowed && (max < 0 || max > k)) {
        int64_t cmin = min > k ? min - k : 0, cmax = max < 0 ? -1 : max - k;
        grammar_sym t;
        if (k == 0) {
            t = grammar_add_repeat(g, "items", tail, cmin, cmax, c->comma, 1);
        } else {
            grammar_sym ct[2] = {c->comma, tail};
            t = grammar_add_repeat(g, "items", js_seq(c, "item", ct, 2), cmin, cmax, 0, 0);
        }
        grammar_add_rule(g, next, &t, 1);
    } else if (k >= min) {
        grammar_add_rule(g, next, NULL, 0);
    }
    for (int i = k - 1; i >= 0; i--) {
        grammar_sym ps;
        size_t old = js_path_push_index(c, items && items->type == JSON_ARRAY ? "items" : "prefixItems", i);
        status_t st = js_gen_one(c, &prefix->items[i], &ps);
        js_path_pop(c, old);
        STATUS_TRY(st);
        int32_t l = grammar_add_nonterminal(g, "items");
        if (i >= min) grammar_add_rule(g, l, NULL, 0);
        grammar_sym r[3];
        int m = 0;
        if (i > 0) r[m++] = c->comma;
        r[m++] = ps;
        r[m++] = grammar_nt(next);
        grammar_add_rule(g, l, r, m);
        next = l;
    }
    grammar_sym a[3] = {grammar_term('[', '['), grammar_nt(next), grammar_term(']', ']')};
    *out = js_seq(c, "array", a, 3);
    return STATUS_OK;
}

/* ---- the conjunction compiler ---- */

static int js_type_bits(const char *t)
{
    if (strcmp(t, "null") == 0) return JS_T_NULL;
    if (strcmp(t, "boolean") == 0) return JS_T_BOOL;
    if (strcmp(t, "object") == 0) return JS_T_OBJECT;
    if (strcmp(t, "array") == 0) return JS_T_ARRAY;
    if (strcmp(t, "string") == 0) return JS_T_STRING;
    if (strcmp(t, "number") == 0) return JS_T_NUMBER | JS_T_INTEGER;
    if (strcmp(t, "integer") == 0) return JS_T_INTEGER;
    return 0;
}

static int js_value_type_ok(const json_value *v, int types)
{
    switch (v->type) {
    case JSON_NULL: return (types & JS_T_NULL) != 0;
    case JSON_BOOL: return (types & JS_T_BOOL) != 0;
    case JSON_STRING: return (types & JS_T_STRING) != 0;
    case JSON_ARRAY: return (types & JS_T_ARRAY) != 0;
    case JSON_OBJECT: return (types & JS_T_OBJECT) != 0;
    case JSON_NUMBER: return (types & JS_T_NUMBER) || ((types & JS_T_INTEGER) && floor(v->num) == v->num);
    }
    return 0;
}

static int js_value_equal(const json_value *a, const json_value *b)
{
    if (a->type != b->type) return 0;
    switch (a->type) {
    case JSON_NULL: return 1;
    case JSON_BOOL: return a->boolean == b->boolean;
    case JSON_NUMBER: return a->num == b->num;
    case JSON_STRING: return a->str_len == b->str_len && memcmp(a->str, b->str, a->str_len) == 0;
    case JSON_ARRAY:
    case JSON_OBJECT:
        if (a->count != b->count) return 0;
        for (int32_t i = 0; i < a->count; i++) {
            if (a->type == JSON_OBJECT && strcmp(a->items[i].key, b->items[i].key) != 0) return 0;
            if (!js_value_equal(&a->items[i], &b->items[i])) return 0;
        }
        return 1;
    }
    return 0;
}

static status_t js_gen(js_ctx *c, const js_part *in, int n_in, grammar_sym *out)
{
    grammar *g = c->g;
    if (++c->depth > JS_MAX_DEPTH) { c->depth--; return js_unsupported(c, "$ref", "schema nested too deeply"); }
    status_t st = STATUS_OK;
    js_part parts[JS_MAX_PARTS];
    int n = 0, is_false = 0;
    /* a lone $ref (with only annotations) becomes a shared, possibly recursive nonterminal */
    if (n_in == 1 && in[0].skip == 0 && in[0].node->type == JSON_OBJECT && json_get(in[0].node, "$ref") &&
        js_is_ref_only(in[0].node)) {
        const json_value *ref = json_get(in[0].node, "$ref"), *target;
        if (ref->type != JSON_STRING) { st = js_invalid(c, "$ref must be a string"); goto done; }
        if ((st = js_check_keywords(c, in[0].node)) != STATUS_OK) goto done;
        if ((st = js_resolve_ref(c, ref->str, &target)) != STATUS_OK) goto done;
        st = js_ref_symbol(c, target, out);
        goto done;
    }
    for (int i = 0; i < n_in && st == STATUS_OK; i++) {
        if (in[i].skip) {
            /* already expanded (from a distributed anyOf) */
            if (n >= JS_MAX_PARTS) { st = js_unsupported(c, "allOf", "too many combined subschemas"); break; }
            parts[n++] = in[i];
        } else {
            st = js_expand(c, in[i].node, parts, &n, &is_false, 0);
        }
    }
    if (st != STATUS_OK) goto done;
    if (is_false) { *out = grammar_add_empty(g, "false"); goto done; }
    for (int i = 0; i < n; i++) parts[i].skip |= 0x100;   /* mark expanded */
    /* distribute the first pending anyOf / oneOf */
    for (int i = 0; i < n; i++) {
        const char *kw = NULL;
        unsigned bit = 0;
        if (!(parts[i].skip & JS_SKIP_ANYOF) && json_get(parts[i].node, "anyOf")) { kw = "anyOf"; bit = JS_SKIP_ANYOF; }
        else if (!(parts[i].skip & JS_SKIP_ONEOF) && json_get(parts[i].node, "oneOf")) { kw = "oneOf"; bit = JS_SKIP_ONEOF; }
        if (!kw) continue;
        const json_value *opts = json_get(parts[i].node, kw);
        if (opts->type != JSON_ARRAY || opts->count == 0) { st = js_invalid(c, "anyOf/oneOf must be a non-empty array"); goto done; }
        int32_t nt = grammar_add_nonterminal(g, kw);
        js_part sub[JS_MAX_PARTS + 1];
        memcpy(sub, parts, (size_t)n * sizeof *sub);
        sub[i].skip |= bit;
        /* an option that constrains nothing: the union is that option alone (every other
         * option's language is inside it; overlapping options would not be LR(1)) */
        int32_t k0 = 0, k1 = opts->count;
        for (int32_t k = 0; k < opts->count; k++)
            if (js_is_unconstrained(c, &opts->items[k])) { k0 = k; k1 = k + 1; break; }
        for (int32_t k = k0; k < k1; k++) {
            size_t old = js_path_push_index(c, kw, k);
            grammar_sym alt;
            int m = n;
            if (n == 1 && js_only_keyword(parts[0].node, kw)) {
                st = js_gen_one(c, &opts->items[k], &alt);   /* a plain anyOf: options alone */
            } else {
                sub[m] = (js_part){&opts->items[k], 0};
                st = js_gen(c, sub, m + 1, &alt);
            }
            js_path_pop(c, old);
            if (st != STATUS_OK) goto done;
            grammar_add_rule(g, nt, &alt, 1);
        }
        *out = grammar_nt(nt);
        goto done;
    }
    /* types */
    int types = JS_T_ALL;
    for (int i = 0; i < n; i++) {
        const json_value *t = json_get(parts[i].node, "type");
        if (!t) continue;
        int bits = 0;
        if (t->type == JSON_STRING) {
            bits = js_type_bits(t->str);
            if (!bits) { st = js_invalid(c, "unknown type"); goto done; }
        } else if (t->type == JSON_ARRAY) {
            for (int32_t k = 0; k < t->count; k++) {
                int b = t->items[k].type == JSON_STRING ? js_type_bits(t->items[k].str) : 0;
                if (!b) { st = js_invalid(c, "unknown type"); goto done; }
                bits |= b;
            }
        } else {
            st = js_invalid(c, "type must be a string or an array");
            goto done;
        }
        types &= bits;
    }
    for (int i = 0; i < n; i++) {   /* not {type}: those types dropped (js_expand checked the form) */
        const json_value *neg = json_get(parts[i].node, "not"), *t = neg && neg->type == JSON_OBJECT ? json_get(neg, "type") : NULL;
        if (!t) continue;
        for (int32_t k = 0; k < (t->type == JSON_ARRAY ? t->count : 1); k++) {
            const json_value *tk = t->type == JSON_ARRAY ? &t->items[k] : t;
            const int bits = tk->type == JSON_STRING ? js_type_bits(tk->str) : 0;
            if (!bits) { st = js_invalid(c, "unknown type"); goto done; }
            types &= ~bits;
        }
    }
    if ((types & JS_T_NUMBER) && !(types & JS_T_INTEGER)) {
        st = js_unsupported(c, "not", "numbers that are not integers");
        goto done;
    }
    /* enum / const: literal alternatives filtered by type and by the other enums */
    for (int i = 0; i < n; i++) {
        const json_value *e = json_get(parts[i].node, "enum"), *cv = json_get(parts[i].node, "const");
        if (!e && !cv) continue;
        if (e && e->type != JSON_ARRAY) { st = js_invalid(c, "enum must be an array"); goto done; }
        int32_t nt = grammar_add_nonterminal(g, "enum");
        int32_t count = cv ? 1 : e->count;
        for (int32_t k = 0; k < count; k++) {
            const json_value *v = cv ? cv : &e->items[k];
            if (!js_value_type_ok(v, types)) continue;
            int ok = 1;
            for (int j = 0; j < n && ok; j++) {
                if (j == i) continue;
                const json_value *e2 = json_get(parts[j].node, "enum"), *c2 = json_get(parts[j].node, "const");
                if (c2 && !js_value_equal(c2, v)) ok = 0;
                if (e2 && e2->type == JSON_ARRAY) {
                    int found = 0;
                    for (int32_t q = 0; q < e2->count && !found; q++) found = js_value_equal(&e2->items[q], v);
                    if (!found) ok = 0;
                }
            }
            if (!ok) continue;
            grammar_sym s = js_literal_value(c, v);
            grammar_add_rule(g, nt, &s, 1);
        }
        *out = grammar_nt(nt);
        goto done;
    }
    int32_t nt = grammar_add_nonterminal(g, "schema");
    grammar_sym alt;
    if (types & JS_T_NULL) { alt = js_lit(c, "null"); grammar_add_rule(g, nt, &alt, 1); }
    if (types & JS_T_BOOL) {
        alt = js_lit(c, "true"); grammar_add_rule(g, nt, &alt, 1);
        alt = js_lit(c, "false"); grammar_add_rule(g, nt, &alt, 1);
    }
    if (types & (JS_T_NUMBER | JS_T_INTEGER)) {
        if ((st = js_numeric(c, parts, n, !(types & JS_T_NUMBER), &alt)) != STATUS_OK) goto done;
        grammar_add_rule(g, nt, &alt, 1);
    }
    if (types & JS_T_STRING) {
        if ((st = js_string_schema(c, parts, n, &alt)) != STATUS_OK) goto done;
        grammar_add_rule(g, nt, &alt, 1);
    }
    if (types & JS_T_ARRAY) {
        if ((st = js_array_schema(c, parts, n, &alt)) != STATUS_OK) goto done;
        grammar_add_rule(g, nt, &alt, 1);
    }
    if (types & JS_T_OBJECT) {
        if ((st = js_object_schema(c, parts, n, &alt)) != STATUS_OK) goto done;
        grammar_add_rule(g, nt, &alt, 1);
    }
    *out = grammar_nt(nt);
done:
    c->depth--;
    return st;
}

status_t grammar_from_json_schema(const char *schema, size_t len, const grammar_json_options *opt, grammar *out)
{
    grammar_init(out);
    json_doc *doc;
    const json_value *root;
    status_t st = json_parse(schema, len, &doc, &root);
    if (st != STATUS_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", status_message());
        return status_set(STATUS_INVALID_ARG, "invalid JSON Schema: %s", msg);
    }
    js_ctx c = {0};
    c.g = out;
    c.root = root;
    c.whitespace = opt ? opt->whitespace : 0;
    int32_t start = grammar_add_nonterminal(out, "root");
    grammar_sym s;
    st = js_gen_one(&c, root, &s);
    if (st == STATUS_OK) {
        grammar_add_rule(out, start, &s, 1);
        out->start = start;
    }
    free(c.refs);
    json_doc_free(doc);
    return st;
}

status_t grammar_from_choices(const char *choices_json, size_t len, grammar *out)
{
    grammar_init(out);
    json_doc *doc;
    const json_value *root;
    if (json_parse(choices_json, len, &doc, &root) != STATUS_OK)
        return status_set(STATUS_INVALID_ARG, "choice list must be a JSON array of strings");
    if (root->type != JSON_ARRAY) {
        json_doc_free(doc);
        return status_set(STATUS_INVALID_ARG, "choice list must be a JSON array of strings");
    }
    int32_t start = grammar_add_nonterminal(out, "root");
    status_t st = STATUS_OK;
    if (root->count == 0) st = status_set(STATUS_INVALID_ARG, "choice list is empty");
    for (int32_t i = 0; i < root->count && st == STATUS_OK; i++) {
        const json_value *v = &root->items[i];
        if (v->type != JSON_STRING) { st = status_set(STATUS_INVALID_ARG, "choice %d is not a string", i); break; }
        grammar_seq seq = {0};
        grammar_seq_push_literal(&seq, v->str, v->str_len);
        grammar_add_rule(out, start, seq.syms, seq.n);
        grammar_seq_free(&seq);
    }
    out->start = start;
    json_doc_free(doc);
    return st;
}
