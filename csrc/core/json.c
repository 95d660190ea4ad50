/* json.c — recursive-descent JSON parser into an arena-owned tree (see json.h). */
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define JSON_MAX_DEPTH 64

typedef struct json_block {
    struct json_block *next;
    size_t used, cap;
    char data[];
} json_block;

struct json_doc {
    json_block *blocks;
    json_value root;
};

typedef struct json_parser {
    const char *s;
    size_t len, pos;
    json_doc *doc;
    int depth;
} json_parser;

static void *json_alloc(json_doc *doc, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    json_block *b = doc->blocks;
    if (!b || b->used + bytes > b->cap) {
        size_t cap = bytes > 65536 ? bytes : 65536;
        b = log_xmalloc(sizeof(json_block) + cap);
        b->used = 0;
        b->cap = cap;
        b->next = doc->blocks;
        doc->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    return p;
}

static status_t json_error(json_parser *p, const char *what)
{
    return status_set(STATUS_FORMAT, "invalid JSON at byte %zu: %s", p->pos, what);
}

static void json_skip_ws(json_parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int json_hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t json_put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string at p->pos (which is '"'); the decoded text never exceeds the raw length. */
static status_t json_parse_string(json_parser *p, const char **out, size_t *out_len)
{
    size_t start = ++p->pos, end = start;
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) return json_error(p, "unterminated string");
    char *buf = json_alloc(p->doc, end - start + 1);
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) return json_error(p, "control character in string");
        if (c != '\\') { buf[n++] = (char)c; p->pos++; continue; }
        char e = p->s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (p->pos + 4 > end || !json_hex4(p->s + p->pos, &cp)) return json_error(p, "bad \\u escape");
            p->pos += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p->pos + 6 <= end && p->s[p->pos] == '\\' &&
                p->s[p->pos + 1] == 'u' && json_hex4(p->s + p->pos + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p->pos += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD;
            }
            n += json_put_utf8(buf + n, cp);
            break;
        }
        default: return json_error(p, "bad escape");
        }
    }
    p->pos = end + 1;
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return STATUS_OK;
}

static status_t json_parse_value(json_parser *p, json_value *v);

/* Items are collected in a growable heap array, then copied into the arena. */
static status_t json_parse_items(json_parser *p, json_value *v, int is_object)
{
    char close = is_object ? '}' : ']';
    size_t cap = 8, n = 0;
    json_value *tmp = log_xmalloc(cap * sizeof *tmp);
    status_t st = STATUS_OK;
    p->pos++;
    json_skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            if (n == cap) { cap *= 2; json_value *t = realloc(tmp, cap * sizeof *tmp); LL_ASSERT(t); tmp = t; }
            json_value *item = &tmp[n++];
            memset(item, 0, sizeof *item);
            json_skip_ws(p);
            if (is_object) {
                size_t klen;
                if (p->pos >= p->len || p->s[p->pos] != '"') { st = json_error(p, "expected key"); break; }
                if ((st = json_parse_string(p, &item->key, &klen)) != STATUS_OK) break;
                json_skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':') { st = json_error(p, "expected ':'"); break; }
                p->pos++;
            }
            const char *key = item->key;
            if ((st = json_parse_value(p, item)) != STATUS_OK) break;
            item->key = key;
            json_skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
            if (p->pos < p->len && p->s[p->pos] == close) { p->pos++; break; }
            st = json_error(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
            break;
        }
    }
    if (st == STATUS_OK) {
        v->type = is_object ? JSON_OBJECT : JSON_ARRAY;
        v->count = (int32_t)n;
        v->items = json_alloc(p->doc, n * sizeof *tmp);
        memcpy(v->items, tmp, n * sizeof *tmp);
    }
    free(tmp);
    return st;
}

static status_t json_parse_number(json_parser *p, json_value *v)
{
    size_t start = p->pos;
    int integral = 1;
    if (p->s[p->pos] == '-') p->pos++;
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c >= '0' && c <= '9') { p->pos++; continue; }
        if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') { integral = 0; p->pos++; continue; }
        break;
    }
    char buf[64];
    size_t n = p->pos - start;
    if (n == 0 || n >= sizeof buf) return json_error(p, "bad number");
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    char *endp;
    v->type = JSON_NUMBER;
    v->num = strtod(buf, &endp);
    if (*endp != '\0') return json_error(p, "bad number");
    v->i64 = integral ? strtoll(buf, NULL, 10) : (int64_t)v->num;
    return STATUS_OK;
}

static status_t json_parse_value(json_parser *p, json_value *v)
{
    json_skip_ws(p);
    if (p->pos >= p->len) return json_error(p, "unexpected end");
    memset(v, 0, sizeof *v);
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        if (++p->depth > JSON_MAX_DEPTH) return json_error(p, "nesting too deep");
        status_t st = json_parse_items(p, v, c == '{');
        p->depth--;
        return st;
    }
    if (c == '"') {
        v->type = JSON_STRING;
        return json_parse_string(p, &v->str, &v->str_len);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return json_parse_number(p, v);
    static const struct { const char *word; json_type type; int b; } words[] = {
        {"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t wl = strlen(words[i].word);
        if (p->len - p->pos >= wl && memcmp(p->s + p->pos, words[i].word, wl) == 0) {
            v->type = words[i].type;
            v->boolean = words[i].b;
            p->pos += wl;
            return STATUS_OK;
        }
    }
    return json_error(p, "unexpected character");
}

status_t json_parse(const char *text, size_t len, json_doc **out_doc, const json_value **out_root)
{
    json_doc *doc = log_xcalloc(1, sizeof *doc);
    json_parser p = {.s = text, .len = len, .pos = 0, .doc = doc, .depth = 0};
    status_t st = json_parse_value(&p, &doc->root);
    if (st == STATUS_OK) {
        json_skip_ws(&p);
        if (p.pos != len) st = json_error(&p, "trailing characters");
    }
    if (st != STATUS_OK) {
        json_doc_free(doc);
        return st;
    }
    *out_doc = doc;
    *out_root = &doc->root;
    return STATUS_OK;
}

void json_doc_free(json_doc *doc)
{
    if (!doc) return;
    json_block *b = doc->blocks;
    while (b) {
        json_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

const json_value *json_get(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (int32_t i = 0; i < obj->count; i++)
        if (strcmp(obj->items[i].key, key) == 0) return &obj->items[i];
    return NULL;
}
