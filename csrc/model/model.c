/* model.c — weight table for the Llama family from safetensors or seeded dummy weights,
 * shape/dtype checks with errors that name the tensor and file, and runtime allocation.
 */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "model/rope.h"

typedef struct model_loader {
    model *m;
    int dummy;
    uint64_t seed;
} model_loader;

static uint64_t model_splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t model_hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static status_t model_own(model *m, size_t bytes, void **out)
{
    STATUS_TRY(m->be->ops->alloc(m->be, bytes, out));
    m->owned = realloc(m->owned, (size_t)(m->num_owned + 1) * sizeof *m->owned);
    LL_ASSERT(m->owned);
    m->owned[m->num_owned++] = *out;
    return STATUS_OK;
}

/* kind: 0 = matrix (uniform, std 0.02; bf16), 1 = norm weight (1 + small noise), 2 = bias (both fp32, as
 * every backend keeps 1-D weights).  Fills dst[n] (bf16 or fp32 by kind) from the seed and the
 * tensor's name, so a tensor's values do not depend on what it is fused with. */
static void model_dummy_fill(const model_loader *L, const char *name, int64_t n, int kind, void *dst)
{
    uint64_t state = L->seed ^ model_hash_name(name);
    const float scale = kind == 0 ? 0.02f * sqrtf(3.0f) : (kind == 1 ? 0.05f : 0.02f);
    for (int64_t i = 0; i < n; i++) {
        float u = (float)((model_splitmix(&state) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        float v = kind == 1 ? 1.0f + scale * u : scale * u;
        if (kind == 0) ((uint16_t *)dst)[i] = dtype_f32_to_bf16(v);
        else ((float *)dst)[i] = v;
    }
}

/* Checks a checkpoint tensor's dtype and shape ([d0] or [d0, d1]); errors name the tensor and file. */
static status_t model_check_tensor(model_loader *L, const char *name, const tensor_t *host, int ndim, int64_t d0, int64_t d1)
{
    const char *file = safetensors_file_of(L->m->st, name);
    if (host->dtype != DTYPE_F32 && host->dtype != DTYPE_F16 && host->dtype != DTYPE_BF16)
        return status_set(STATUS_UNSUPPORTED, "tensor %s in %s has dtype %s; supported: F32, F16, BF16", name, file, dtype_name(host->dtype));
    const int64_t shape[2] = {d0, d1};
    int ok = host->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = host->shape[i] == shape[i];
    if (ok) return STATUS_OK;
    char got[96] = "", want[64];
    for (int i = 0; i < host->ndim; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)host->shape[i]);
    if (ndim == 1) snprintf(want, sizeof want, "%lld", (long long)d0);
    else snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
    return status_set(STATUS_FORMAT, "tensor %s in %s has shape [%s]; config.json implies [%s]", name, file, got, want);
}

#define MODEL_MAX_PARTS 3

/* Loads tensors names[0..num_parts) of shapes [rows[i]] (ndim 1) or [rows[i], cols] (ndim 2) as one
 * weight concatenated along dim 0 (q|k|v) or with interleaved rows (gate|up: backend_ops.upload_weight).
 * kind as model_dummy_fill; biases (kind 2) become an owned fp32 copy. */
static status_t model_get_parts(model_loader *L, const char *const *names, const int64_t *rows, int num_parts, int ndim,
                                int64_t cols, int kind, int interleave, tensor_t *out)
{
    model *m = L->m;
    const int64_t width = ndim == 2 ? cols : 1;
    int64_t total_rows = 0;
    for (int i = 0; i < num_parts; i++) total_rows += rows[i];
    const int64_t n = total_rows * width;
    tensor_t parts[MODEL_MAX_PARTS];
    LL_ASSERT(num_parts >= 1 && num_parts <= MODEL_MAX_PARTS);
    if (!L->dummy) {
        for (int i = 0; i < num_parts; i++) {
            STATUS_TRY(safetensors_get(m->st, names[i], &parts[i]));
            STATUS_TRY(model_check_tensor(L, names[i], &parts[i], ndim, rows[i], cols));
        }
        if (kind != 2) return m->be->ops->upload_weight(m->be, parts, num_parts, interleave, out);
    }
    LL_ASSERT(!interleave || kind == 0);
    /* dummy weights, or a bias: assemble on the host, copy to an owned buffer */
    const dtype_t dt = kind == 0 ? DTYPE_BF16 : DTYPE_F32;
    const size_t es = (size_t)dtype_size(dt);
    char *buf = malloc((size_t)n * es + 1);
    if (!buf) return status_set(STATUS_NO_MEMORY, "cannot allocate %zu bytes of host memory for %s", (size_t)n * es, names[0]);
    int64_t at = 0;
    char *tmp = interleave ? malloc((size_t)rows[0] * width * es + 1) : NULL;
    if (interleave && !tmp) {
        free(buf);
        return status_set(STATUS_NO_MEMORY, "cannot allocate %zu bytes of host memory for %s",
                          (size_t)rows[0] * width * es, names[0]);
    }
    for (int i = 0; i < num_parts; i++) {
        const int64_t cnt = rows[i] * width;
        if (L->dummy) model_dummy_fill(L, names[i], cnt, kind, interleave ? tmp : buf + (size_t)at * es);
        else
            for (int64_t j = 0; j < cnt; j++) ((float *)buf)[at + j] = dtype_load_f32(parts[i].data, parts[i].dtype, j);
        if (interleave) /* dummy matrices only: part i's row r is row r * num_parts + i */
            for (int64_t r = 0; r < rows[i]; r++)
                memcpy(buf + (size_t)((r * num_parts + i) * width) * es, tmp + (size_t)(r * width) * es, (size_t)width * es);
        at += cnt;
    }
    free(tmp);
    void *dev;
    status_t s = model_own(m, (size_t)n * es, &dev);
    if (s == STATUS_OK) {
        m->be->ops->copy_to_device(m->be, dev, buf, (size_t)n * es);
        *out = (tensor_t){.data = dev, .dtype = dt, .ndim = ndim, .shape = {total_rows, ndim == 2 ? cols : 0}};
    }
    free(buf);
    return s;
}

/* One tensor of shape [d0] (ndim 1) or [d0, d1]. */
static status_t model_get(model_loader *L, const char *name, int ndim, int64_t d0, int64_t d1, int kind, tensor_t *out)
{
    return model_get_parts(L, &name, &d0, 1, ndim, d1, kind, 0, out);
}

static status_t model_load_weights(model_loader *L)
{
    model *m = L->m;
    const model_config *c = &m->cfg;
    const int64_t H = c->hidden_size, D = c->head_dim, Q = (int64_t)c->num_heads * D, KV = (int64_t)c->num_kv_heads * D;
    const int64_t I = c->intermediate_size, V = c->vocab_size;
    STATUS_TRY(model_get(L, "model.embed_tokens.weight", 2, V, H, 0, &m->embed));
    STATUS_TRY(model_get(L, "model.norm.weight", 1, H, 0, 1, &m->final_norm));
    int tied = c->tie_word_embeddings;
    if (!L->dummy && tied == 0 && !safetensors_has(m->st, "lm_head.weight"))
        return status_set(STATUS_NOT_FOUND, "tensor lm_head.weight is missing from the checkpoint (tie_word_embeddings is false)");
    if (tied) m->lm_head = m->embed;
    else STATUS_TRY(model_get(L, "lm_head.weight", 2, V, H, 0, &m->lm_head));
    m->layers = log_xcalloc((size_t)c->num_layers, sizeof *m->layers);
    for (int32_t i = 0; i < c->num_layers; i++) {
        model_layer *ly = &m->layers[i];
        char names[MODEL_MAX_PARTS][256];
        const char *np[MODEL_MAX_PARTS] = {names[0], names[1], names[2]};
#define MODEL_NAME(j, suffix) snprintf(names[j], sizeof names[j], "model.layers.%d.%s", i, suffix)
        MODEL_NAME(0, "input_layernorm.weight");
        STATUS_TRY(model_get(L, names[0], 1, H, 0, 1, &ly->input_norm));
        MODEL_NAME(0, "post_attention_layernorm.weight");
        STATUS_TRY(model_get(L, names[0], 1, H, 0, 1, &ly->post_norm));
        const int64_t qkv_rows[3] = {Q, KV, KV}, gu_rows[2] = {I, I};
        MODEL_NAME(0, "self_attn.q_proj.weight");
        MODEL_NAME(1, "self_attn.k_proj.weight");
        MODEL_NAME(2, "self_attn.v_proj.weight");
        STATUS_TRY(model_get_parts(L, np, qkv_rows, 3, 2, H, 0, 0, &ly->qkv));
        MODEL_NAME(0, "self_attn.o_proj.weight");
        STATUS_TRY(model_get(L, names[0], 2, H, Q, 0, &ly->o));
        MODEL_NAME(0, "mlp.gate_proj.weight");
        MODEL_NAME(1, "mlp.up_proj.weight");
        STATUS_TRY(model_get_parts(L, np, gu_rows, 2, 2, H, 0, 1, &ly->gate_up));
        MODEL_NAME(0, "mlp.down_proj.weight");
        STATUS_TRY(model_get(L, names[0], 2, H, I, 0, &ly->down));
        if (c->qkv_bias) {
            MODEL_NAME(0, "self_attn.q_proj.bias");
            MODEL_NAME(1, "self_attn.k_proj.bias");
            MODEL_NAME(2, "self_attn.v_proj.bias");
            STATUS_TRY(model_get_parts(L, np, qkv_rows, 3, 1, 0, 2, 0, &ly->qkv_bias));
        }
        if (c->qk_norm) {
            MODEL_NAME(0, "self_attn.q_norm.weight");
            STATUS_TRY(model_get(L, names[0], 1, D, 0, 1, &ly->q_norm));
            MODEL_NAME(0, "self_attn.k_norm.weight");
            STATUS_TRY(model_get(L, names[0], 1, D, 0, 1, &ly->k_norm));
        }
#undef MODEL_NAME
    }
    return STATUS_OK;
}

/* The matrices' bytes on the device from the config alone (in the activation dtype, as the
 * device backends store them; norms and biases are negligible beside them). */
static int64_t model_config_matrix_bytes(const model_config *c, int64_t es)
{
    const int64_t H = c->hidden_size, q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t layer = H * (q + 2 * kv) + q * H + 3 * H * (int64_t)c->intermediate_size;
    return ((int64_t)c->num_layers * layer + (int64_t)c->vocab_size * H * (c->tie_word_embeddings ? 1 : 2)) * es;
}

status_t model_load(const model_config *cfg, const char *dir, int dummy, uint64_t seed, backend *be, model **out)
{
    STATUS_TRY(model_config_validate(cfg));
    if (be->ops->weights_in_device_memory) { /* fail before reading or filling anything */
        size_t free_b = 0, total_b = 0;
        STATUS_TRY(be->ops->memory_info(be, &free_b, &total_b));
        const int64_t need = model_config_matrix_bytes(cfg, dtype_size(be->act_dtype));
        if (need > (int64_t)free_b)
            return status_set(STATUS_NO_MEMORY, "the model's weights need %lld bytes of device memory (%s backend), "
                              "%zu of %zu bytes are free", (long long)need, be->ops->name, free_b, total_b);
    }
    model *m = log_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    status_t s = STATUS_OK;
    if (!dummy) s = safetensors_open(dir, &m->st);
    if (s == STATUS_OK) {
        model_loader L = {.m = m, .dummy = dummy, .seed = seed};
        s = model_load_weights(&L);
    }
    if (s != STATUS_OK) {
        model_free(m);
        return s;
    }
    *out = m;
    return STATUS_OK;
}

int64_t model_kv_bytes_per_token(const model *m)
{
    return (int64_t)m->cfg.num_layers * 2 * m->cfg.num_kv_heads * m->cfg.head_dim * dtype_size(m->be->act_dtype);
}

int64_t model_weight_bytes(const model *m)
{
    int64_t total = tensor_numel(&m->embed) * dtype_size(m->embed.dtype);
    if (m->lm_head.data != m->embed.data) total += tensor_numel(&m->lm_head) * dtype_size(m->lm_head.dtype);
    for (int32_t i = 0; i < m->cfg.num_layers; i++) {
        const tensor_t *ts[] = {&m->layers[i].qkv, &m->layers[i].o, &m->layers[i].gate_up, &m->layers[i].down};
        for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) total += tensor_numel(ts[j]) * dtype_size(ts[j]->dtype);
    }
    return total;
}

int64_t model_runtime_bytes(const model *m, int32_t max_tokens, int32_t max_seq_len, int32_t max_logits)
{
    const model_config *c = &m->cfg;
    const int64_t es = dtype_size(m->be->act_dtype), T = max_tokens, H = c->hidden_size, D = c->head_dim;
    const int64_t act = T * (2 * H + 3 * c->num_heads * D + 2 * c->num_kv_heads * D + 3 * c->intermediate_size) +
                        2 * (int64_t)max_logits * H;
    return act * es + (int64_t)max_logits * c->vocab_size * 4 + (int64_t)max_seq_len * D * 4;
}

status_t model_alloc_runtime(model *m, int32_t max_tokens, int32_t max_seq_len, int32_t num_slots, int32_t max_logits)
{
    const model_config *c = &m->cfg;
    const int es = dtype_size(m->be->act_dtype);
    const int64_t T = max_tokens, H = c->hidden_size, D = c->head_dim;
    m->max_tokens = max_tokens;
    m->max_seq_len = max_seq_len;
    m->num_slots = num_slots;
    m->max_logits = max_logits;
    STATUS_TRY(model_own(m, (size_t)max_seq_len * D * sizeof(float), (void **)&m->rope_table));
    float *table = malloc((size_t)max_seq_len * D * sizeof(float));
    if (!table) return status_set(STATUS_NO_MEMORY, "cannot allocate the rotary table for %d positions", max_seq_len);
    rope_build_table(c, max_seq_len, table);
    m->be->ops->copy_to_device(m->be, m->rope_table, table, (size_t)max_seq_len * D * sizeof(float));
    free(table);
    m->kv_pools = log_xcalloc((size_t)c->num_layers, sizeof *m->kv_pools);
    const size_t pool_bytes = (size_t)(num_slots + 1) * 2 * c->num_kv_heads * D * es; /* + the pad slot */
    m->be->kv_pad_slot = num_slots;
    for (int32_t i = 0; i < c->num_layers; i++) {
        status_t s = model_own(m, pool_bytes, &m->kv_pools[i]);
        if (s != STATUS_OK)
            return status_set(STATUS_NO_MEMORY, "cannot allocate the KV cache: %d layers x %zu bytes (%d token slots)",
                              c->num_layers, pool_bytes, num_slots);
    }
    struct { void **p; int64_t elems; } acts[] = {
        {&m->act_hidden, T * H}, {&m->act_residual, T * H},
        {&m->act_qkv, T * (c->num_heads + 2 * c->num_kv_heads) * D}, {&m->act_q, T * c->num_heads * D},
        {&m->act_attn, T * c->num_heads * D}, {&m->act_gate_up, T * 2 * c->intermediate_size},
        {&m->act_mlp, T * c->intermediate_size}, {&m->act_logits_in, (int64_t)max_logits * H},
        {&m->act_logits_delta, (int64_t)max_logits * H}, {&m->act_logits, (int64_t)max_logits * c->vocab_size},
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        const int esz = acts[i].p == &m->act_logits ? 4 : es;
        STATUS_TRY(model_own(m, (size_t)acts[i].elems * esz, acts[i].p));
    }
    return m->be->ops->prepare(m->be, max_tokens, max_logits, (int64_t)max_logits * max_seq_len, max_seq_len, c->num_heads,
                               c->head_dim);
}

void model_free(model *m)
{
    if (!m) return;
    for (int32_t i = 0; i < m->num_owned; i++) m->be->ops->release(m->be, m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->kv_pools);
    safetensors_close(m->st);
    free(m);
}
