/* test_fixture.h — the qwen3 checkpoint fixture (tests/fixtures/qwen3: Hugging Face's greedy
 * tokens for its prompts) and an engine over it on the CPU backend, for the engine and backend
 * loop tests.  Run from the repository root. */
#ifndef LIGHTLLM_TEST_FIXTURE_H
#define LIGHTLLM_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/json.h"
#include "engine/engine.h"
#include "test_util.h"

typedef struct fixture {
    json_doc *doc;
    const json_value *prompts, *greedy;
} fixture;

static inline int fixture_load(const char *dir, fixture *f)
{
    char path[512];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    size_t got = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    const json_value *root;
    status_t s = json_parse(buf, got, &f->doc, &root);
    free(buf);
    if (s != STATUS_OK) return 0;
    f->prompts = json_get(root, "prompts");
    f->greedy = json_get(root, "greedy");
    return f->prompts && f->greedy;
}

static inline void qwen3_fixture_config(model_config *c)
{
    memset(c, 0, sizeof *c);
    c->arch = MODEL_ARCH_QWEN3;
    model_config_arch_defaults(c);
    c->vocab_size = 384;
    c->hidden_size = 64;
    c->intermediate_size = 160;
    c->num_layers = 2;
    c->num_heads = 4;
    c->num_kv_heads = 2;
    c->head_dim = 32;
    c->max_position_embeddings = 256;
    c->rms_norm_eps = 1e-6f;
    c->rope.type = ROPE_DEFAULT;
    c->rope.theta = 1e6;
}

/* The qwen3 fixture's prompts and an engine over its checkpoint on the CPU backend (8 sequences,
 * 64 tokens a step, eos 2); 0 when the fixture cannot be read. */
static inline int fixture_engine(const engine_args *args, fixture *f, backend **be, engine **e)
{
    const char *dir = "tests/fixtures/qwen3";
    if (!fixture_load(dir, f)) {
        fprintf(stderr, "cannot read %s/reference.json (run from the repository root)\n", dir);
        test_failures++;
        return 0;
    }
    model_config c;
    qwen3_fixture_config(&c);
    model *m;
    CHECK_EQ_INT(backend_cpu_create(2, be), STATUS_OK);
    CHECK_EQ_INT(model_load(&c, dir, 0, 0, *be, &m), STATUS_OK);
    engine_args a = *args;
    a.max_num_seqs = 8;
    a.max_batch_tokens = 64;
    a.kv_memory_bytes = 1 << 24;
    a.enable_prefix_caching = 1;
    const int32_t eos = 2;
    CHECK_EQ_INT(engine_create(m, &a, NULL, &eos, 1, e), STATUS_OK);
    return 1;
}


/* The prompt of fixture request r (prompts repeat) as ids; returns its length. */
static inline int32_t fixture_prompt(const fixture *f, int32_t r, int32_t ids[64])
{
    const json_value *pr = &f->prompts->items[r % f->prompts->count];
    for (int32_t i = 0; i < pr->count && i < 64; i++) ids[i] = (int32_t)pr->items[i].i64;
    return pr->count;
}

#endif
