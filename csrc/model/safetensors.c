/* safetensors.c — mmap + header parse/validate for one or many safetensors files.
 *
 * Layout of a file: u64 little-endian header size N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data region; offsets are relative to the data region.
 */
#include "model/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "core/log.h"

typedef struct safetensors_entry {
    char *name;
    int file;                   /* index into files */
    int dtype_ok;               /* 0: dtype we do not read */
    char dtype_str[16];
    tensor_t view;
} safetensors_entry;

typedef struct safetensors_file {
    char *path;
    void *map;
    size_t size;
} safetensors_file;

struct safetensors {
    char *dir;
    int num_files;
    safetensors_file *files;
    int num_entries, cap_entries;
    safetensors_entry *entries;
};

static int safetensors_dtype(const char *s, dtype_t *out)
{
    static const struct { const char *name; dtype_t t; } map[] = {
        {"F32", DTYPE_F32}, {"F16", DTYPE_F16}, {"BF16", DTYPE_BF16}, {"I32", DTYPE_I32}, {"I64", DTYPE_I64},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(s, map[i].name) == 0) { *out = map[i].t; return 1; }
    return 0;
}

static char *safetensors_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = log_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static status_t safetensors_read_file(const char *path, char **out, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return status_set(errno == ENOENT ? STATUS_NOT_FOUND : STATUS_IO, "cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = log_xmalloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(buf); return status_set(STATUS_IO, "short read on %s", path); }
    buf[n] = '\0';
    *out = buf;
    *out_len = (size_t)n;
    return STATUS_OK;
}

static status_t safetensors_map_file(safetensors *st, const char *name)
{
    char *path = safetensors_join(st->dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        status_t code = errno == ENOENT ? STATUS_NOT_FOUND : STATUS_IO;
        status_set(code, "cannot open safetensors file %s: %s", path, strerror(errno));
        free(path);
        return code;
    }
    struct stat sb;
    fstat(fd, &sb);
    size_t size = (size_t)sb.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED) {
        status_set(size ? STATUS_IO : STATUS_FORMAT, "cannot map %s: %s", path, size ? strerror(errno) : "empty file");
        free(path);
        return size ? STATUS_IO : STATUS_FORMAT;
    }
    int fi = st->num_files++;
    st->files = realloc(st->files, (size_t)st->num_files * sizeof *st->files);
    LL_ASSERT(st->files);
    st->files[fi] = (safetensors_file){.path = path, .map = map, .size = size};

    uint64_t hlen = 0;
    if (size < 8) return status_set(STATUS_FORMAT, "%s is truncated: %zu bytes, no header", path, size);
    memcpy(&hlen, map, 8); /* little-endian host assumed (x86-64, aarch64) */
    if (hlen > size - 8) return status_set(STATUS_FORMAT, "%s is truncated: header of %llu bytes, file of %zu", path, (unsigned long long)hlen, size);
    json_doc *doc;
    const json_value *root;
    status_t s = json_parse((const char *)map + 8, (size_t)hlen, &doc, &root);
    if (s != STATUS_OK) return status_set(STATUS_FORMAT, "%s: bad header: %s", path, status_message());
    if (root->type != JSON_OBJECT) { json_doc_free(doc); return status_set(STATUS_FORMAT, "%s: header is not an object", path); }
    const char *data = (const char *)map + 8 + hlen;
    size_t data_size = size - 8 - hlen;
    for (int32_t i = 0; i < root->count; i++) {
        const json_value *t = &root->items[i];
        if (strcmp(t->key, "__metadata__") == 0) continue;
        const json_value *dt = json_get(t, "dtype"), *shape = json_get(t, "shape"), *off = json_get(t, "data_offsets");
        if (!dt || dt->type != JSON_STRING || !shape || shape->type != JSON_ARRAY || !off ||
            off->type != JSON_ARRAY || off->count != 2 || shape->count > TENSOR_MAX_DIMS) {
            s = status_set(STATUS_FORMAT, "%s: malformed header entry for tensor %s", path, t->key);
            break;
        }
        if (st->num_entries == st->cap_entries) {
            st->cap_entries = st->cap_entries ? 2 * st->cap_entries : 256;
            st->entries = realloc(st->entries, (size_t)st->cap_entries * sizeof *st->entries);
            LL_ASSERT(st->entries);
        }
        safetensors_entry *e = &st->entries[st->num_entries++];
        memset(e, 0, sizeof *e);
        e->name = strdup(t->key);
        LL_ASSERT(e->name);
        e->file = fi;
        snprintf(e->dtype_str, sizeof e->dtype_str, "%s", dt->str);
        e->dtype_ok = safetensors_dtype(dt->str, &e->view.dtype);
        e->view.ndim = shape->count;
        int64_t numel = 1;
        for (int d = 0; d < shape->count; d++) {
            e->view.shape[d] = shape->items[d].i64;
            numel *= shape->items[d].i64;
        }
        int64_t b = off->items[0].i64, en = off->items[1].i64;
        if (b < 0 || en < b || (uint64_t)en > data_size) {
            s = status_set(STATUS_FORMAT, "%s is truncated or corrupt: tensor %s needs bytes [%lld, %lld) of a %zu-byte data section",
                           path, t->key, (long long)b, (long long)en, data_size);
            break;
        }
        if (e->dtype_ok && en - b != numel * dtype_size(e->view.dtype)) {
            s = status_set(STATUS_FORMAT, "%s: tensor %s has %lld bytes, its shape and dtype %s need %lld",
                           path, t->key, (long long)(en - b), dt->str, (long long)(numel * dtype_size(e->view.dtype)));
            break;
        }
        e->view.data = (void *)(data + b);
    }
    json_doc_free(doc);
    return s;
}

static int safetensors_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int safetensors_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static status_t safetensors_open_files(safetensors *st)
{
    char *index_path = safetensors_join(st->dir, "model.safetensors.index.json");
    char *text = NULL;
    size_t len = 0;
    status_t s = safetensors_read_file(index_path, &text, &len);
    free(index_path);
    char **names = NULL;
    int num_names = 0;
    if (s == STATUS_OK) {
        json_doc *doc;
        const json_value *root;
        s = json_parse(text, len, &doc, &root);
        free(text);
        if (s != STATUS_OK) return status_set(STATUS_FORMAT, "%s/model.safetensors.index.json: %s", st->dir, status_message());
        const json_value *wm = json_get(root, "weight_map");
        if (!wm || wm->type != JSON_OBJECT) {
            json_doc_free(doc);
            return status_set(STATUS_FORMAT, "%s/model.safetensors.index.json has no weight_map object", st->dir);
        }
        names = log_xmalloc((size_t)(wm->count + 1) * sizeof *names);
        for (int32_t i = 0; i < wm->count; i++) {
            if (wm->items[i].type != JSON_STRING) continue;
            int dup = 0;
            for (int j = 0; j < num_names && !dup; j++) dup = strcmp(names[j], wm->items[i].str) == 0;
            if (!dup) { names[num_names] = strdup(wm->items[i].str); LL_ASSERT(names[num_names]); num_names++; }
        }
        json_doc_free(doc);
    } else if (s == STATUS_NOT_FOUND) {
        DIR *d = opendir(st->dir);
        if (!d) return status_set(STATUS_NOT_FOUND, "model directory %s cannot be read: %s", st->dir, strerror(errno));
        struct dirent *de;
        int cap = 16;
        names = log_xmalloc((size_t)cap * sizeof *names);
        while ((de = readdir(d)) != NULL) {
            if (!safetensors_has_suffix(de->d_name, ".safetensors")) continue;
            if (num_names == cap) { cap *= 2; names = realloc(names, (size_t)cap * sizeof *names); LL_ASSERT(names); }
            names[num_names] = strdup(de->d_name);
            LL_ASSERT(names[num_names]);
            num_names++;
        }
        closedir(d);
        if (num_names == 0) {
            free(names);
            return status_set(STATUS_NOT_FOUND, "no *.safetensors files and no model.safetensors.index.json in %s", st->dir);
        }
    } else {
        return s;
    }
    qsort(names, (size_t)num_names, sizeof *names, safetensors_cmp_str);
    s = STATUS_OK;
    for (int i = 0; i < num_names; i++) {
        if (s == STATUS_OK) s = safetensors_map_file(st, names[i]);
        free(names[i]);
    }
    free(names);
    return s;
}

status_t safetensors_open(const char *dir, safetensors **out)
{
    safetensors *st = log_xcalloc(1, sizeof *st);
    st->dir = strdup(dir);
    LL_ASSERT(st->dir);
    status_t s = safetensors_open_files(st);
    if (s != STATUS_OK) {
        safetensors_close(st);
        return s;
    }
    *out = st;
    return STATUS_OK;
}

void safetensors_close(safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->num_files; i++) {
        munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    for (int i = 0; i < st->num_entries; i++) free(st->entries[i].name);
    free(st->entries);
    free(st->files);
    free(st->dir);
    free(st);
}

static const safetensors_entry *safetensors_find(const safetensors *st, const char *name)
{
    for (int i = 0; i < st->num_entries; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i];
    return NULL;
}

int safetensors_has(const safetensors *st, const char *name) { return safetensors_find(st, name) != NULL; }

const char *safetensors_file_of(const safetensors *st, const char *name)
{
    const safetensors_entry *e = safetensors_find(st, name);
    return e ? st->files[e->file].path : "?";
}

int safetensors_num_tensors(const safetensors *st) { return st->num_entries; }

status_t safetensors_get(const safetensors *st, const char *name, tensor_t *out)
{
    const safetensors_entry *e = safetensors_find(st, name);
    if (!e) return status_set(STATUS_NOT_FOUND, "tensor %s is missing from the checkpoint in %s", name, st->dir);
    if (!e->dtype_ok)
        return status_set(STATUS_UNSUPPORTED, "tensor %s in %s has dtype %s; supported: F32, F16, BF16",
                          name, st->files[e->file].path, e->dtype_str);
    *out = e->view;
    return STATUS_OK;
}
