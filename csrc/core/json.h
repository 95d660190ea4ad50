/* json.h — a small JSON reader (RFC 8259) producing a read-only tree.
 *
 * Used for safetensors headers and model.safetensors.index.json.  One json_doc owns every
 * node and string (one arena); json_doc_free releases all of it.  Strings are decoded
 * (escapes, \uXXXX with surrogate pairs → UTF-8) and NUL-terminated; numbers keep their value
 * as double and, when integral, as int64.  Depth is limited (64) so hostile input cannot
 * overflow the stack; errors return STATUS_FORMAT with the byte offset.
 */
#ifndef LIGHTLLM_CORE_JSON_H
#define LIGHTLLM_CORE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum json_type {
    JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT,
} json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    int32_t count;              /* array / object: number of items */
    const char *key;            /* set on object members */
    const char *str;            /* JSON_STRING */
    size_t str_len;
    double num;
    int64_t i64;                /* JSON_NUMBER when integral */
    int boolean;
    json_value *items;          /* [count] array items / object members */
};

typedef struct json_doc json_doc;

status_t json_parse(const char *text, size_t len, json_doc **out_doc, const json_value **out_root);
void json_doc_free(json_doc *doc);
/* Object member by key, or NULL (also NULL when obj is not an object). */
const json_value *json_get(const json_value *obj, const char *key);

#endif
