/* py_engine.c — lightllm._C.Engine: the C engine behind LLM.generate(), and
 * validate_sampling_params() used by SamplingParams.
 *
 * Python inputs (config dict, engine args dict, prompt lists, sampling dicts) are copied into
 * C structs first; model loading, step() and score() run with the GIL released and touch no
 * PyObject until it is reacquired.  Bad input raises ValueError naming the field.
 */
#include "py/py_common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "engine/engine.h"
#include "py/py_engine.h"
#include "py/py_text.h"

typedef struct py_engine {
    PyObject_HEAD
    engine *e;
    backend *be;
    PyObject *vocab;        /* strong reference: e->vocab points into it */
    double load_seconds;    /* model_load: checkpoint (or dummy weights) to the backend (CUDA: up to the
                             * last two staging copies still in flight) */
} py_engine;

/* ---- dict readers: missing key -> default; wrong type -> ValueError naming the key ---- */

static int py_get_double(PyObject *d, const char *key, double *out, int required)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) {
        if (required) { PyErr_Format(PyExc_ValueError, "%s is required", key); return -1; }
        return 0;
    }
    if (PyBool_Check(v) || !(PyFloat_Check(v) || PyLong_Check(v))) {
        PyErr_Format(PyExc_ValueError, "%s must be a number, got %s", key, Py_TYPE(v)->tp_name);
        return -1;
    }
    *out = PyFloat_AsDouble(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int py_get_i64(PyObject *d, const char *key, int64_t *out, int required)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) {
        if (required) { PyErr_Format(PyExc_ValueError, "%s is required", key); return -1; }
        return 0;
    }
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_ValueError, "%s must be an integer, got %s", key, Py_TYPE(v)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) { PyErr_Format(PyExc_ValueError, "%s is out of range", key); return -1; }
    *out = x;
    return PyErr_Occurred() ? -1 : 0;
}

static int py_get_i32(PyObject *d, const char *key, int32_t *out, int required)
{
    int64_t v = *out;
    if (py_get_i64(d, key, &v, required) < 0) return -1;
    if (v < INT32_MIN || v > INT32_MAX) { PyErr_Format(PyExc_ValueError, "%s is out of range: %lld", key, (long long)v); return -1; }
    *out = (int32_t)v;
    return 0;
}

static int py_get_float(PyObject *d, const char *key, float *out)
{
    double v = *out;
    if (py_get_double(d, key, &v, 0) < 0) return -1;
    *out = (float)v;
    return 0;
}

/* Copies a list of ints into a new int32 array (PyMem). */
int py_int_list(PyObject *obj, const char *what, int32_t **out, int32_t *n)
{
    PyObject *seq = PySequence_Fast(obj, "");
    if (!seq) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a list of integers", what);
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    int32_t *arr = PyMem_Malloc((size_t)(len + 1) * sizeof(int32_t));
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
        long long v = PyLong_Check(it) && !PyBool_Check(it) ? PyLong_AsLongLong(it) : (PyErr_Clear(), -1LL - (1LL << 40));
        if (v < INT32_MIN || v > INT32_MAX || PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be an integer token id", what, i);
            PyMem_Free(arr);
            Py_DECREF(seq);
            return -1;
        }
        arr[i] = (int32_t)v;
    }
    Py_DECREF(seq);
    *out = arr;
    *n = (int32_t)len;
    return 0;
}

int py_sampling_from_dict(PyObject *d, sampling_params_t *sp)
{
    sampling_params_default(sp);
    if (!PyDict_Check(d)) { PyErr_SetString(PyExc_TypeError, "sampling parameters must be a dict"); return -1; }
    int64_t seed = 0;
    if (py_get_float(d, "temperature", &sp->temperature) < 0 || py_get_float(d, "top_p", &sp->top_p) < 0 ||
        py_get_i32(d, "top_k", &sp->top_k, 0) < 0 || py_get_float(d, "min_p", &sp->min_p) < 0 ||
        py_get_float(d, "repetition_penalty", &sp->repetition_penalty) < 0 ||
        py_get_float(d, "presence_penalty", &sp->presence_penalty) < 0 ||
        py_get_float(d, "frequency_penalty", &sp->frequency_penalty) < 0 ||
        py_get_i32(d, "max_tokens", &sp->max_tokens, 0) < 0 || py_get_i32(d, "min_tokens", &sp->min_tokens, 0) < 0 ||
        py_get_i32(d, "n", &sp->n, 0) < 0 || py_get_i32(d, "logprobs", &sp->logprobs, 0) < 0)
        return -1;
    PyObject *v = PyDict_GetItemString(d, "seed");
    if (v && v != Py_None) {
        if (py_get_i64(d, "seed", &seed, 1) < 0) return -1;
        sp->has_seed = 1;
        sp->seed = (uint64_t)seed;
    }
    v = PyDict_GetItemString(d, "ignore_eos");
    sp->ignore_eos = v ? PyObject_IsTrue(v) : 0;
    return 0;
}

static PyObject *py_validate_sampling_params(PyObject *self, PyObject *d)
{
    sampling_params_t sp;
    if (py_sampling_from_dict(d, &sp) < 0) return NULL;
    status_t s = sampling_params_validate(&sp);
    if (s != STATUS_OK) return py_raise_status(s);
    Py_RETURN_NONE;
}

/* ---- Engine ---- */

static int py_config_from_dict(PyObject *d, model_config *c)
{
    memset(c, 0, sizeof *c);
    if (!PyDict_Check(d)) { PyErr_SetString(PyExc_TypeError, "config must be a dict"); return -1; }
    PyObject *arch = PyDict_GetItemString(d, "architecture");
    if (!arch || !PyUnicode_Check(arch)) { PyErr_SetString(PyExc_ValueError, "config: architecture is required"); return -1; }
    status_t s = model_config_arch_from_name(PyUnicode_AsUTF8(arch), &c->arch);
    if (s != STATUS_OK) { py_raise_status(s); return -1; }
    model_config_arch_defaults(c);
    double eps = 1e-6, d_theta = 10000.0;
    c->rope.truncate = 1;
    if (py_get_i32(d, "vocab_size", &c->vocab_size, 1) < 0 || py_get_i32(d, "hidden_size", &c->hidden_size, 1) < 0 ||
        py_get_i32(d, "intermediate_size", &c->intermediate_size, 1) < 0 || py_get_i32(d, "num_layers", &c->num_layers, 1) < 0 ||
        py_get_i32(d, "num_heads", &c->num_heads, 1) < 0 || py_get_i32(d, "num_kv_heads", &c->num_kv_heads, 1) < 0 ||
        py_get_i32(d, "head_dim", &c->head_dim, 1) < 0 ||
        py_get_i32(d, "max_position_embeddings", &c->max_position_embeddings, 1) < 0 ||
        py_get_i32(d, "sliding_window", &c->sliding_window, 0) < 0 || py_get_double(d, "rms_norm_eps", &eps, 0) < 0 ||
        py_get_i32(d, "tie_word_embeddings", &c->tie_word_embeddings, 0) < 0 ||
        py_get_i32(d, "qkv_bias", &c->qkv_bias, 0) < 0 || py_get_i32(d, "qk_norm", &c->qk_norm, 0) < 0 ||
        py_get_double(d, "rope_theta", &d_theta, 0) < 0 || py_get_double(d, "rope_factor", &c->rope.factor, 0) < 0 ||
        py_get_double(d, "rope_low_freq_factor", &c->rope.low_freq_factor, 0) < 0 ||
        py_get_double(d, "rope_high_freq_factor", &c->rope.high_freq_factor, 0) < 0 ||
        py_get_i32(d, "rope_original_max_position", &c->rope.original_max_position, 0) < 0 ||
        py_get_double(d, "rope_beta_fast", &c->rope.beta_fast, 0) < 0 ||
        py_get_double(d, "rope_beta_slow", &c->rope.beta_slow, 0) < 0 ||
        py_get_double(d, "rope_attention_factor", &c->rope.attention_factor, 0) < 0 ||
        py_get_double(d, "rope_mscale", &c->rope.mscale, 0) < 0 ||
        py_get_double(d, "rope_mscale_all_dim", &c->rope.mscale_all_dim, 0) < 0 ||
        py_get_i32(d, "rope_truncate", &c->rope.truncate, 0) < 0)
        return -1;
    c->rms_norm_eps = (float)eps;
    c->rope.theta = d_theta;
    PyObject *rt = PyDict_GetItemString(d, "rope_type");
    const char *rope = rt && PyUnicode_Check(rt) ? PyUnicode_AsUTF8(rt) : "default";
    static const struct { const char *name; rope_type t; } ropes[] = {
        {"default", ROPE_DEFAULT}, {"linear", ROPE_LINEAR}, {"llama3", ROPE_LLAMA3}, {"yarn", ROPE_YARN},
    };
    for (size_t i = 0; i < sizeof ropes / sizeof ropes[0]; i++)
        if (strcmp(rope, ropes[i].name) == 0) { c->rope.type = ropes[i].t; return 0; }
    PyErr_Format(PyExc_ValueError, "config.json: rope scaling type %s is not supported; supported: default, linear, llama3, yarn", rope);
    return -1;
}

static int py_engine_init(py_engine *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"config", "model_dir", "args", "vocab", "eos_ids", "dummy", "seed", "num_threads", "device", NULL};
    PyObject *cfg_d, *args_d, *vocab_o, *eos_o;
    const char *dir = NULL, *device = "cpu";
    int dummy = 0, num_threads = 0;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OzOOO|pKis", kwlist, &cfg_d, &dir, &args_d, &vocab_o, &eos_o, &dummy,
                                     &seed, &num_threads, &device))
        return -1;
    int use_cuda = strcmp(device, "cuda") == 0 || strncmp(device, "cuda:", 5) == 0;
    int cuda_index = strncmp(device, "cuda:", 5) == 0 ? atoi(device + 5) : 0;
    if (!use_cuda && strcmp(device, "cpu") != 0) {
        PyErr_Format(PyExc_ValueError, "device must be 'cpu', 'cuda' or 'cuda:N', got %s", device);
        return -1;
    }
#ifndef LIGHTLLM_WITH_CUDA
    if (use_cuda) {
        PyErr_SetString(PyExc_ValueError, "device 'cuda': this build of lightllm has no CUDA backend (nvcc was not found at build time)");
        return -1;
    }
#endif
    model_config cfg;
    if (py_config_from_dict(cfg_d, &cfg) < 0) return -1;
    engine_args ea = {.max_num_seqs = 256, .max_batch_tokens = 4096, .enable_prefix_caching = 1, .mem_fraction = 0.9};
    int32_t caching = 1;
    if (!PyDict_Check(args_d)) { PyErr_SetString(PyExc_TypeError, "args must be a dict"); return -1; }
    if (py_get_i32(args_d, "max_num_seqs", &ea.max_num_seqs, 0) < 0 || py_get_i32(args_d, "max_batch_tokens", &ea.max_batch_tokens, 0) < 0 ||
        py_get_i32(args_d, "chunked_prefill_size", &ea.chunked_prefill_size, 0) < 0 ||
        py_get_i32(args_d, "max_model_len", &ea.max_model_len, 0) < 0 || py_get_i32(args_d, "num_kv_slots", &ea.num_kv_slots, 0) < 0 ||
        py_get_i64(args_d, "kv_memory_bytes", &ea.kv_memory_bytes, 0) < 0 ||
        py_get_double(args_d, "mem_fraction", &ea.mem_fraction, 0) < 0 || py_get_i32(args_d, "enable_prefix_caching", &caching, 0) < 0 ||
        py_get_i32(args_d, "estimate_max_new_tokens", &ea.estimate_max_new_tokens, 0) < 0)
        return -1;
    ea.enable_prefix_caching = caching;
    ea.seed = seed;
    detok_vocab *vocab = NULL;
    if (vocab_o != Py_None && !(vocab = py_text_vocab_get(vocab_o))) return -1;
    if (vocab && detok_vocab_size(vocab) > cfg.vocab_size) {
        PyErr_Format(PyExc_ValueError, "the tokenizer has %d tokens but the model's vocab_size is %d", detok_vocab_size(vocab), cfg.vocab_size);
        return -1;
    }
    int32_t *eos = NULL, num_eos = 0;
    if (py_int_list(eos_o, "eos_ids", &eos, &num_eos) < 0) return -1;

    status_t s;
    model *m = NULL;
    engine *e = NULL;
    backend *be = NULL;
    struct timespec t0, t1;
    Py_BEGIN_ALLOW_THREADS
#ifdef LIGHTLLM_WITH_CUDA
    s = use_cuda ? backend_cuda_create(cuda_index, &be) : backend_cpu_create(num_threads, &be);
#else
    (void)cuda_index;
    s = backend_cpu_create(num_threads, &be);
#endif
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (s == STATUS_OK) s = model_load(&cfg, dir, dummy || !dir, seed, be, &m);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (s == STATUS_OK) {
        s = engine_create(m, &ea, vocab, eos, num_eos, &e);
        if (s != STATUS_OK) model_free(m);
    }
    if (s != STATUS_OK && be) { be->ops->destroy(be); be = NULL; }
    Py_END_ALLOW_THREADS
    PyMem_Free(eos);
    if (s != STATUS_OK) { py_raise_status(s); return -1; }
    self->e = e;
    self->be = be;
    self->load_seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    self->vocab = vocab_o;
    Py_INCREF(vocab_o);
    return 0;
}

static void py_engine_dealloc(py_engine *self)
{
    if (self->e) engine_free(self->e);
    if (self->be) self->be->ops->destroy(self->be);
    Py_XDECREF(self->vocab);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int py_engine_ready(py_engine *self)
{
    if (!self->e) { PyErr_SetString(PyExc_RuntimeError, "Engine is not initialised"); return 0; }
    return 1;
}

static PyObject *py_engine_add_request(py_engine *self, PyObject *args)
{
    long long req_id;
    PyObject *prompt_o, *params;
    if (!PyArg_ParseTuple(args, "LOO!", &req_id, &prompt_o, &PyDict_Type, &params) || !py_engine_ready(self)) return NULL;
    engine_request_params p;
    memset(&p, 0, sizeof p);
    p.skip_special_tokens = 1;
    if (py_sampling_from_dict(params, &p.sp) < 0) return NULL;
    PyObject *v;
    if ((v = PyDict_GetItemString(params, "include_stop_str_in_output"))) p.include_stop_str_in_output = PyObject_IsTrue(v);
    if ((v = PyDict_GetItemString(params, "skip_special_tokens"))) p.skip_special_tokens = PyObject_IsTrue(v);
    int32_t *prompt = NULL, n = 0, *stop_ids = NULL, num_stop_ids = 0;
    const char **stops = NULL;
    PyObject *stops_seq = NULL, *result = NULL;
    if (py_int_list(prompt_o, "prompt_token_ids", &prompt, &n) < 0) goto done;
    v = PyDict_GetItemString(params, "stop_token_ids");
    if (v && v != Py_None && py_int_list(v, "stop_token_ids", &stop_ids, &num_stop_ids) < 0) goto done;
    v = PyDict_GetItemString(params, "stop");
    if (v && v != Py_None) {
        if (PyUnicode_Check(v) || !(stops_seq = PySequence_Fast(v, ""))) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "stop must be a list of strings");
            goto done;
        }
        p.num_stops = (int32_t)PySequence_Fast_GET_SIZE(stops_seq);
        stops = PyMem_Malloc(((size_t)p.num_stops + 1) * sizeof(char *));
        for (int32_t i = 0; i < p.num_stops; i++) {
            PyObject *it = PySequence_Fast_GET_ITEM(stops_seq, i);
            if (!PyUnicode_Check(it) || !(stops[i] = PyUnicode_AsUTF8(it))) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "stop[%d] must be a string", i);
                goto done;
            }
        }
        p.stops = stops;
    }
    p.stop_token_ids = stop_ids;
    p.num_stop_token_ids = num_stop_ids;
    v = PyDict_GetItemString(params, "grammar_kind");
    if (v && v != Py_None) { /* structured output: kind + source text (SamplingParams.engine_dict) */
        PyObject *g = PyDict_GetItemString(params, "grammar");
        Py_ssize_t glen = 0;
        if (!PyUnicode_Check(v) || !(p.grammar_kind = PyUnicode_AsUTF8(v)) || !g || !PyUnicode_Check(g) ||
            !(p.grammar = PyUnicode_AsUTF8AndSize(g, &glen))) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "grammar_kind and grammar must be strings");
            goto done;
        }
        p.grammar_len = (size_t)glen;
        if ((v = PyDict_GetItemString(params, "grammar_whitespace"))) p.grammar_whitespace = PyObject_IsTrue(v);
    }
    status_t s = engine_add_request(self->e, req_id, prompt, n, &p);
    if (s != STATUS_OK) py_raise_status(s);
    else result = Py_NewRef(Py_None);
done:
    PyMem_Free(prompt);
    PyMem_Free(stop_ids);
    PyMem_Free(stops);
    Py_XDECREF(stops_seq);
    return result;
}

static PyObject *py_engine_update(engine *e, seq *q)
{
    PyObject *token = Py_None, *logprob = Py_None, *top = Py_None, *finish = Py_None, *stop = Py_None, *full = Py_None;
    PyObject *owned[6] = {0};
    if (q->has_new_token) {
        owned[0] = token = PyLong_FromLong(q->last.token);
        if (q->req->sp.logprobs >= 0) {
            owned[1] = logprob = Py_BuildValue("(di)", (double)q->last.logprob, q->last.rank);
            owned[2] = top = PyList_New(q->last.num_top);
            for (int32_t i = 0; i < q->last.num_top; i++)
                PyList_SET_ITEM(top, i, Py_BuildValue("(id)", q->last.top_ids[i], (double)q->last.top_logprobs[i]));
        }
    }
    /* the delta stops short of a tail a stop string may still cut: streamed text is final */
    const size_t stable = engine_seq_stable_len(q);
    const size_t from = q->text_reported < stable ? q->text_reported : stable;
    PyObject *delta = PyUnicode_DecodeUTF8(q->text + from, (Py_ssize_t)(stable - from), "replace");
    if (stable > q->text_reported) q->text_reported = stable;
    if (q->status == SEQ_FINISHED) {
        owned[3] = finish = PyUnicode_FromString(engine_finish_name(q->finish));
        if (q->stop_string >= 0) owned[4] = stop = PyUnicode_FromString(q->req->stops.strs[q->stop_string]);
        else if (q->stop_token >= 0) owned[4] = stop = PyLong_FromLong(q->stop_token);
        owned[5] = full = PyUnicode_DecodeUTF8(q->text, (Py_ssize_t)q->text_len, "replace");
    }
    PyObject *r = Py_BuildValue("(LiOOOOOOOi(ddd))", (long long)q->req_id, q->sample_index, token, logprob, top, delta, finish,
                                stop, full, q->num_cached_tokens < 0 ? 0 : q->num_cached_tokens, q->arrival_time,
                                q->first_token_time, q->finish_time);
    Py_XDECREF(delta);
    for (int i = 0; i < 6; i++) Py_XDECREF(owned[i]);
    return r;
}

static PyObject *py_engine_step(py_engine *self, PyObject *unused)
{
    if (!py_engine_ready(self)) return NULL;
    status_t s;
    Py_BEGIN_ALLOW_THREADS
    s = engine_step_ahead(self->e);
    Py_END_ALLOW_THREADS
    if (s != STATUS_OK) return py_raise_status(s);
    PyObject *list = PyList_New(self->e->num_updates);
    for (int32_t i = 0; i < self->e->num_updates; i++) {
        PyObject *u = py_engine_update(self->e, self->e->updates[i]);
        if (!u) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, i, u);
    }
    return list;
}

static PyObject *py_engine_abort(py_engine *self, PyObject *arg)
{
    if (!py_engine_ready(self)) return NULL;
    long long id = PyLong_AsLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    return PyBool_FromLong(engine_abort(self->e, id) == STATUS_OK);
}

static PyObject *py_engine_has_unfinished(py_engine *self, PyObject *unused)
{
    if (!py_engine_ready(self)) return NULL;
    return PyBool_FromLong(engine_has_work(self->e));
}

static PyObject *py_engine_score(py_engine *self, PyObject *arg)
{
    if (!py_engine_ready(self)) return NULL;
    int32_t *ids, n;
    if (py_int_list(arg, "token_ids", &ids, &n) < 0) return NULL;
    const int32_t vocab = self->e->m->cfg.vocab_size;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * vocab * (Py_ssize_t)sizeof(float));
    if (!out) { PyMem_Free(ids); return NULL; }
    float *logits = (float *)PyBytes_AS_STRING(out);
    status_t s;
    Py_BEGIN_ALLOW_THREADS
    s = engine_score(self->e, ids, n, logits);
    Py_END_ALLOW_THREADS
    PyMem_Free(ids);
    if (s != STATUS_OK) { Py_DECREF(out); return py_raise_status(s); }
    return out;
}

static PyObject *py_engine_stats(py_engine *self, PyObject *unused)
{
    if (!py_engine_ready(self)) return NULL;
    const engine *e = self->e;
    const scheduler *s = &e->sched;
    return Py_BuildValue(
        "{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:L,s:L,s:L,s:L,s:L,s:d,s:L,s:L,s:s,s:i,s:i,s:L,s:L,s:d}",
        "num_kv_slots", s->kv.num_slots, "num_free_slots", s->kv.num_free,
        "num_cached_slots", s->rc ? radix_cache_total_tokens(s->rc) : 0,
        "num_evictable_slots", s->rc ? radix_cache_evictable_tokens(s->rc) : 0,
        "num_running", s->num_running, "num_waiting", s->num_waiting, "max_model_len", e->args.max_model_len,
        "num_preemptions", (long long)s->num_preemptions, "num_prompt_tokens", (long long)s->num_prompt_tokens,
        "num_cached_prompt_tokens", (long long)s->num_cached_prompt_tokens, "num_steps", (long long)e->num_steps,
        "num_generated_tokens", (long long)e->num_generated_tokens, "forward_seconds", e->forward_seconds,
        "kv_bytes_per_token", (long long)model_kv_bytes_per_token(e->m), "weight_bytes", (long long)model_weight_bytes(e->m),
        "backend", self->be->ops->name, "vocab_size", e->m->cfg.vocab_size,
        "num_grammars", e->grammars ? grammar_cache_num_entries(e->grammars) : 0,
        "num_grammar_rejects", (long long)e->num_grammar_rejects,
        "num_graph_replays", (long long)self->be->num_graph_replays, "load_seconds", self->load_seconds);
}

static PyMethodDef py_engine_methods[] = {
    {"add_request", (PyCFunction)py_engine_add_request, METH_VARARGS,
     "add_request(req_id, prompt_token_ids, params: dict): queue a request (n sequences)"},
    {"step", (PyCFunction)py_engine_step, METH_NOARGS,
     "step() -> list of (req_id, index, token|None, (logprob, rank)|None, top|None, text_delta, finish_reason|None, "
     "stop_reason, full_text|None, num_cached_tokens, (arrival, first_token, finish) times); device-ahead: launches "
     "the next step before completing the last one"},
    {"abort", (PyCFunction)py_engine_abort, METH_O, "abort(req_id) -> bool: finish a request with reason 'abort'"},
    {"has_unfinished", (PyCFunction)py_engine_has_unfinished, METH_NOARGS, "any request still waiting or running, or a step still on the device"},
    {"score", (PyCFunction)py_engine_score, METH_O, "score(ids) -> bytes: fp32 logits [len(ids), vocab] of a prompt"},
    {"stats", (PyCFunction)py_engine_stats, METH_NOARGS, "engine counters and KV pool state"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject py_engine_type;

engine *py_engine_get(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &py_engine_type) || !((py_engine *)obj)->e) {
        PyErr_SetString(PyExc_TypeError, "expected an initialised lightllm._C.Engine");
        return NULL;
    }
    return ((py_engine *)obj)->e;
}

static PyTypeObject py_engine_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lightllm._C.Engine",
    .tp_basicsize = sizeof(py_engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Engine(config, model_dir, args, vocab, eos_ids, dummy=False, seed=0, num_threads=0, device='cpu')",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)py_engine_init,
    .tp_dealloc = (destructor)py_engine_dealloc,
    .tp_methods = py_engine_methods,
};

static PyObject *py_cuda_device_count(PyObject *self, PyObject *unused)
{
#ifdef LIGHTLLM_WITH_CUDA
    return PyLong_FromLong(backend_cuda_device_count());
#else
    return PyLong_FromLong(0);
#endif
}

static PyMethodDef py_engine_functions[] = {
    {"cuda_device_count", py_cuda_device_count, METH_NOARGS, "number of usable CUDA devices (0 without CUDA)"},
    {"validate_sampling_params", py_validate_sampling_params, METH_O,
     "validate_sampling_params(dict): raises ValueError naming a bad parameter"},
    {NULL, NULL, 0, NULL},
};

int py_engine_register(PyObject *m)
{
    if (PyType_Ready(&py_engine_type) < 0) return -1;
    Py_INCREF(&py_engine_type);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&py_engine_type) < 0) return -1;
    return PyModule_AddFunctions(m, py_engine_functions);
}
