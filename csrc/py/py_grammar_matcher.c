/* py_grammar_matcher.c — Python types over csrc/grammar's compiler and matcher:
 *
 *   GrammarCompiler(vocab: DetokVocab | None = None, eos_ids=(), capacity=256)
 *       .compile(kind, source, whitespace=False) -> CompiledGrammar   (cached by content;
 *        ValueError names an unsupported keyword or an LR(1) conflict)
 *       .vocab_size, .mask_words, .num_cached
 *   CompiledGrammar: .matcher(max_rollback_bytes=65536) -> GrammarMatcher; .num_states, .lr_kind, .compile_tries,
 *       .num_edges, .compile_us, .cache_hit, .mask_cache_entries, .mask_cache_bytes, .mask_cache_skips,
 *       .mask_cache_chains, .mask_cache_chain_groups, .num_counters, .mask_near_bound
 *   GrammarMatcher(compiled, max_rollback_bytes=65536):
 *       .advance_bytes(b) -> bool (all or nothing), .advance_token(id) -> bool,
 *       .is_accepting() -> bool, .rollback_bytes(n), .rollback_tokens(n), .reset(), .num_bytes,
 *       .arena_bytes (parse-stack arena + history: bounded by the rollback window, see dpda.h),
 *       .forced_bytes(max=64) -> bytes (jump-forward: what every continuation starts with)
 *       .fill_mask(buf) -> allowed count (buf: writable buffer of mask_words uint32, e.g. a
 *        numpy uint32 array; bit i % 32 of word i / 32 = token i allowed), .mask() -> bytes,
 *        .mask_brute() -> bytes (reference, slow), .bench(token_ids) -> (ns per mask, accepted, cache miss per mask)
 * Objects hold strong references down the chain (matcher → compiled → compiler → vocab), so
 * C pointers never outlive their owners.  The GIL is released around compile and masks.
 */
#include "py/py_common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/grammar_cache.h"
#include "py/py_text.h"

typedef struct {
    PyObject_HEAD
    PyObject *vocab_obj;
    token_vocab *tv;
    grammar_cache *cache;
} py_gc_compiler;

typedef struct {
    PyObject_HEAD
    py_gc_compiler *compiler;
    grammar_compiled *gc;
    int hit;
} py_gc_compiled;

typedef struct {
    PyObject_HEAD
    py_gc_compiled *compiled;
    dpda_matcher m;
    int32_t *tok_lens;   /* bytes of each advanced token, for rollback_tokens */
    int32_t num_toks, cap_toks;
} py_gc_matcher;

static PyTypeObject py_gc_compiler_type, py_gc_compiled_type, py_gc_matcher_type;

/* ---- GrammarCompiler ---- */

static int py_gc_compiler_init(py_gc_compiler *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"vocab", "eos_ids", "capacity", NULL};
    PyObject *vocab = Py_None, *eos = NULL;
    int capacity = 256;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOi:GrammarCompiler", names, &vocab, &eos, &capacity)) return -1;
    if (self->cache) {
        PyErr_SetString(PyExc_TypeError, "GrammarCompiler is immutable: __init__ was already called");
        return -1;
    }
    int32_t *ids = NULL;
    Py_ssize_t n = 0;
    if (eos && eos != Py_None) {
        PyObject *fast = PySequence_Fast(eos, "eos_ids must be a sequence of ints");
        if (!fast) return -1;
        n = PySequence_Fast_GET_SIZE(fast);
        ids = PyMem_Malloc(sizeof *ids * (size_t)(n + 1));
        for (Py_ssize_t i = 0; ids && i < n; i++) {
            long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
            if (v == -1 && PyErr_Occurred()) { Py_DECREF(fast); PyMem_Free(ids); return -1; }
            ids[i] = (int32_t)v;
        }
        Py_DECREF(fast);
        if (!ids) { PyErr_NoMemory(); return -1; }
    }
    if (vocab != Py_None) {
        detok_vocab *dv = py_text_vocab_get(vocab);
        if (!dv) { PyMem_Free(ids); return -1; }
        status_t st;
        Py_BEGIN_ALLOW_THREADS
        st = token_vocab_create(dv, ids, (int32_t)n, &self->tv);
        Py_END_ALLOW_THREADS
        if (st != STATUS_OK) { PyMem_Free(ids); py_raise_status(st); return -1; }
        Py_INCREF(vocab);
        self->vocab_obj = vocab;
    }
    PyMem_Free(ids);
    self->cache = grammar_cache_create(self->tv, capacity);
    return 0;
}

static void py_gc_compiler_dealloc(py_gc_compiler *self)
{
    grammar_cache_free(self->cache);
    token_vocab_free(self->tv);
    Py_XDECREF(self->vocab_obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *py_gc_compiler_compile(py_gc_compiler *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"kind", "source", "whitespace", NULL};
    const char *kind, *src;
    Py_ssize_t len;
    int ws = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss#|p", names, &kind, &src, &len, &ws)) return NULL;
    if (!self->cache) { PyErr_SetString(PyExc_ValueError, "GrammarCompiler was not initialised"); return NULL; }
    grammar_compiled *gc = NULL;
    int hit = 0;
    status_t st;
    Py_BEGIN_ALLOW_THREADS
    st = grammar_cache_get(self->cache, kind, src, (size_t)len, ws, &gc, &hit);
    Py_END_ALLOW_THREADS
    if (st != STATUS_OK) return py_raise_status(st);
    py_gc_compiled *obj = PyObject_New(py_gc_compiled, &py_gc_compiled_type);
    if (!obj) { grammar_cache_release(self->cache, gc); return NULL; }
    Py_INCREF(self);
    obj->compiler = self;
    obj->gc = gc;
    obj->hit = hit;
    return (PyObject *)obj;
}

static PyObject *py_gc_compiler_vocab_size(py_gc_compiler *self, void *closure)
{
    return PyLong_FromLong(self->tv ? token_vocab_size(self->tv) : 0);
}

static PyObject *py_gc_compiler_mask_words(py_gc_compiler *self, void *closure)
{
    return PyLong_FromLong(self->tv ? token_vocab_mask_words(self->tv) : 0);
}

static PyObject *py_gc_compiler_num_cached(py_gc_compiler *self, void *closure)
{
    return PyLong_FromLong(self->cache ? grammar_cache_num_entries(self->cache) : 0);
}

static PyMethodDef py_gc_compiler_methods[] = {
    {"compile", (PyCFunction)(void (*)(void))py_gc_compiler_compile, METH_VARARGS | METH_KEYWORDS,
     "compile(kind, source, whitespace=False) -> CompiledGrammar; kind: json_schema, regex, ebnf, choice"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef py_gc_compiler_getset[] = {
    {"vocab_size", (getter)py_gc_compiler_vocab_size, NULL, "tokens in the mask", NULL},
    {"mask_words", (getter)py_gc_compiler_mask_words, NULL, "uint32 words of a mask", NULL},
    {"num_cached", (getter)py_gc_compiler_num_cached, NULL, "compiled grammars in the cache", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject py_gc_compiler_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lightllm._C.GrammarCompiler",
    .tp_basicsize = sizeof(py_gc_compiler),
    .tp_dealloc = (destructor)py_gc_compiler_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GrammarCompiler(vocab: DetokVocab | None = None, eos_ids=(), capacity=256)",
    .tp_methods = py_gc_compiler_methods,
    .tp_getset = py_gc_compiler_getset,
    .tp_init = (initproc)py_gc_compiler_init,
    .tp_new = PyType_GenericNew,
};

/* ---- CompiledGrammar ---- */

static void py_gc_compiled_dealloc(py_gc_compiled *self)
{
    grammar_cache_release(self->compiler->cache, self->gc);
    Py_DECREF(self->compiler);
    PyObject_Free(self);
}

static PyObject *py_gc_compiled_matcher(py_gc_compiled *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"max_rollback_bytes", NULL};
    int window = DPDA_MATCHER_ROLLBACK_BYTES;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|i:matcher", names, &window)) return NULL;
    return PyObject_CallFunction((PyObject *)&py_gc_matcher_type, "Oi", (PyObject *)self, window);
}

static PyObject *py_gc_compiled_get(py_gc_compiled *self, void *closure)
{
    const char *what = closure;
    grammar_compiled *gc = self->gc;
    if (!strcmp(what, "num_states")) return PyLong_FromLong(gc->d->num_states);
    if (!strcmp(what, "lr_kind")) return PyUnicode_FromString(gc->d->lr.is_lr1 ? "LR(1)" : "LALR(1)");
    if (!strcmp(what, "compile_tries")) return PyLong_FromLong(gc->d->num_tries);
    if (!strcmp(what, "num_edges")) return PyLong_FromLong(gc->d->num_edges);
    if (!strcmp(what, "num_classes")) return PyLong_FromLong(gc->d->num_terms - 1);
    if (!strcmp(what, "compile_us")) return PyFloat_FromDouble((double)gc->compile_ns / 1e3);
    if (!strcmp(what, "cache_hit")) return PyBool_FromLong(self->hit);
    if (!strcmp(what, "mask_cache_entries")) return PyLong_FromLongLong(gc->masks ? token_mask_table_num_entries(gc->masks) : 0);
    if (!strcmp(what, "mask_cache_skips")) return PyLong_FromLongLong(gc->masks ? token_mask_table_num_skips(gc->masks) : 0);
    if (!strcmp(what, "mask_cache_chains")) return PyLong_FromLongLong(gc->masks ? token_mask_table_num_chains(gc->masks) : 0);
    if (!strcmp(what, "mask_cache_chain_groups"))
        return PyLong_FromLongLong(gc->masks ? token_mask_table_num_chain_groups(gc->masks) : 0);
    if (!strcmp(what, "num_counters")) return PyLong_FromLong(gc->d->num_counters);
    if (!strcmp(what, "mask_near_bound")) return PyLong_FromLongLong(gc->masks ? token_mask_table_num_near_bound(gc->masks) : 0);
    if (!strcmp(what, "mask_cache_bytes")) return PyLong_FromLongLong(gc->masks ? token_mask_table_bytes(gc->masks) : 0);
    Py_RETURN_NONE;
}

static PyMethodDef py_gc_compiled_methods[] = {
    {"matcher", (PyCFunction)(void (*)(void))py_gc_compiled_matcher, METH_VARARGS | METH_KEYWORDS,
     "matcher(max_rollback_bytes=65536) -> GrammarMatcher at the start"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef py_gc_compiled_getset[] = {
    {"num_states", (getter)py_gc_compiled_get, NULL, "LR automaton states", "num_states"},
    {"lr_kind", (getter)py_gc_compiled_get, NULL, "'LALR(1)', or 'LR(1)' when LALR(1) had a conflict and the LR(1) fallback built it", "lr_kind"},
    {"compile_tries", (getter)py_gc_compiled_get, NULL, "regularize + LR runs the compile took (1 unless a conflict or a budget made it retry)", "compile_tries"},
    {"num_edges", (getter)py_gc_compiled_get, NULL, "distinct DPDA edges", "num_edges"},
    {"num_classes", (getter)py_gc_compiled_get, NULL, "byte classes", "num_classes"},
    {"compile_us", (getter)py_gc_compiled_get, NULL, "compile time of the cache miss, microseconds", "compile_us"},
    {"cache_hit", (getter)py_gc_compiled_get, NULL, "True when compile() found it in the cache", "cache_hit"},
    {"mask_cache_entries", (getter)py_gc_compiled_get, NULL, "(below, top) entries of the mask cache", "mask_cache_entries"},
    {"mask_cache_skips", (getter)py_gc_compiled_get, NULL, "trie subtrees settled from a region's walk", "mask_cache_skips"},
    {"mask_cache_chains", (getter)py_gc_compiled_get, NULL, "classifications of bounded-chain positions (no trie walk)", "mask_cache_chains"},
    {"mask_cache_chain_groups", (getter)py_gc_compiled_get, NULL,
     "of those, tokens leaving the chain stepped from where they leave it", "mask_cache_chain_groups"},
    {"num_counters", (getter)py_gc_compiled_get, NULL, "bounded repetitions kept as a counter (grammar.h grammar_counted)", "num_counters"},
    {"mask_near_bound", (getter)py_gc_compiled_get, NULL, "masks computed on the real stack because a counter is near its bound", "mask_near_bound"},
    {"mask_cache_bytes", (getter)py_gc_compiled_get, NULL, "bytes held by the mask cache", "mask_cache_bytes"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject py_gc_compiled_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lightllm._C.CompiledGrammar",
    .tp_basicsize = sizeof(py_gc_compiled),
    .tp_dealloc = (destructor)py_gc_compiled_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "a compiled grammar (from GrammarCompiler.compile)",
    .tp_methods = py_gc_compiled_methods,
    .tp_getset = py_gc_compiled_getset,
};

/* ---- GrammarMatcher ---- */

static int py_gc_matcher_init(py_gc_matcher *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"compiled", "max_rollback_bytes", NULL};
    PyObject *compiled;
    int window = DPDA_MATCHER_ROLLBACK_BYTES;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|i:GrammarMatcher", names, &py_gc_compiled_type, &compiled, &window))
        return -1;
    if (window < 0) {
        PyErr_SetString(PyExc_ValueError, "GrammarMatcher: max_rollback_bytes must be >= 0");
        return -1;
    }
    if (self->compiled) {
        PyErr_SetString(PyExc_TypeError, "GrammarMatcher: __init__ was already called");
        return -1;
    }
    Py_INCREF(compiled);
    self->compiled = (py_gc_compiled *)compiled;
    dpda_matcher_init(&self->m, self->compiled->gc->d);
    self->m.max_rollback_bytes = window;
    return 0;
}

static void py_gc_matcher_dealloc(py_gc_matcher *self)
{
    if (self->compiled) dpda_matcher_free(&self->m);
    PyMem_Free(self->tok_lens);
    Py_XDECREF(self->compiled);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int py_gc_matcher_ready(py_gc_matcher *self, int need_vocab)
{
    if (!self->compiled) { PyErr_SetString(PyExc_ValueError, "GrammarMatcher was not initialised"); return 0; }
    if (need_vocab && !self->compiled->compiler->tv) {
        PyErr_SetString(PyExc_ValueError, "the GrammarCompiler has no vocabulary (pass vocab=DetokVocab)");
        return 0;
    }
    return 1;
}

static int py_gc_matcher_push_tok(py_gc_matcher *self, int32_t len)
{
    /* token lengths older than the rollback window are dropped in halves (bounded memory) */
    if (self->num_toks == self->cap_toks && self->num_toks > self->m.max_rollback_bytes + 64) {
        int32_t drop = self->num_toks / 2;
        memmove(self->tok_lens, self->tok_lens + drop, sizeof *self->tok_lens * (size_t)(self->num_toks - drop));
        self->num_toks -= drop;
    }
    if (self->num_toks == self->cap_toks) {
        int32_t cap = self->cap_toks ? self->cap_toks * 2 : 64;
        int32_t *p = PyMem_Realloc(self->tok_lens, sizeof *p * (size_t)cap);
        if (!p) { PyErr_NoMemory(); return -1; }
        self->tok_lens = p;
        self->cap_toks = cap;
    }
    self->tok_lens[self->num_toks++] = len;
    return 0;
}

static PyObject *py_gc_matcher_advance_bytes(py_gc_matcher *self, PyObject *arg)
{
    if (!py_gc_matcher_ready(self, 0)) return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    int ok = dpda_matcher_advance_bytes(&self->m, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    if (ok) dpda_matcher_maybe_compact(&self->m);
    return PyBool_FromLong(ok);
}

/* advances one token; 1 ok, 0 rejected, -1 Python error */
static int py_gc_matcher_token(py_gc_matcher *self, int32_t tok)
{
    const token_vocab *tv = self->compiled->compiler->tv;
    int32_t before = self->m.num_bytes;
    int ok = token_mask_advance_token(tv, &self->m, tok);
    if (ok && py_gc_matcher_push_tok(self, self->m.num_bytes - before) < 0) return -1;
    return ok;
}

static PyObject *py_gc_matcher_advance_token(py_gc_matcher *self, PyObject *arg)
{
    if (!py_gc_matcher_ready(self, 1)) return NULL;
    long tok = PyLong_AsLong(arg);
    if (tok == -1 && PyErr_Occurred()) return NULL;
    int ok = py_gc_matcher_token(self, (int32_t)tok);
    return ok < 0 ? NULL : PyBool_FromLong(ok);
}

static PyObject *py_gc_matcher_is_accepting(py_gc_matcher *self, PyObject *unused)
{
    if (!py_gc_matcher_ready(self, 0)) return NULL;
    return PyBool_FromLong(dpda_matcher_is_accepting(&self->m));
}

static PyObject *py_gc_matcher_rollback_bytes(py_gc_matcher *self, PyObject *arg)
{
    if (!py_gc_matcher_ready(self, 0)) return NULL;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    dpda_matcher_rollback(&self->m, (int32_t)n);
    self->num_toks = 0;   /* token boundaries no longer known */
    Py_RETURN_NONE;
}

static PyObject *py_gc_matcher_rollback_tokens(py_gc_matcher *self, PyObject *arg)
{
    if (!py_gc_matcher_ready(self, 0)) return NULL;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || n > self->num_toks) {
        PyErr_Format(PyExc_ValueError, "rollback_tokens(%ld): only %d tokens can be rolled back", n, (int)self->num_toks);
        return NULL;
    }
    int32_t bytes = 0;
    for (long i = 0; i < n; i++) bytes += self->tok_lens[self->num_toks - 1 - i];
    if (bytes > dpda_matcher_num_rollback_bytes(&self->m)) {
        PyErr_Format(PyExc_ValueError, "rollback_tokens(%ld): %d bytes, beyond the rollback window (%d bytes can be rolled back)",
                     n, (int)bytes, (int)dpda_matcher_num_rollback_bytes(&self->m));
        return NULL;
    }
    self->num_toks -= (int32_t)n;
    dpda_matcher_rollback(&self->m, bytes);
    Py_RETURN_NONE;
}

static PyObject *py_gc_matcher_forced_bytes(py_gc_matcher *self, PyObject *args)
{
    int max = 64;
    if (!PyArg_ParseTuple(args, "|i:forced_bytes", &max)) return NULL;
    if (!py_gc_matcher_ready(self, 0)) return NULL;
    if (max < 0) max = 0;
    uint8_t *buf = PyMem_Malloc((size_t)max + 1);
    if (!buf) return PyErr_NoMemory();
    int32_t n = dpda_matcher_forced_bytes(&self->m, buf, max);
    PyObject *r = PyBytes_FromStringAndSize((const char *)buf, n);
    PyMem_Free(buf);
    return r;
}

static PyObject *py_gc_matcher_reset(py_gc_matcher *self, PyObject *unused)
{
    if (!py_gc_matcher_ready(self, 0)) return NULL;
    dpda_matcher_reset(&self->m);
    self->num_toks = 0;
    Py_RETURN_NONE;
}

static PyObject *py_gc_matcher_fill_mask(py_gc_matcher *self, PyObject *arg)
{
    if (!py_gc_matcher_ready(self, 1)) return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    int32_t words = token_vocab_mask_words(self->compiled->compiler->tv);
    if (b.len < (Py_ssize_t)words * 4) {
        PyBuffer_Release(&b);
        PyErr_Format(PyExc_ValueError, "fill_mask: the buffer holds %zd bytes, the mask needs %d", b.len, (int)words * 4);
        return NULL;
    }
    int32_t n;
    Py_BEGIN_ALLOW_THREADS
    n = grammar_compiled_fill_mask(self->compiled->gc, &self->m, b.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    return PyLong_FromLong(n);
}

static PyObject *py_gc_matcher_mask_impl(py_gc_matcher *self, int brute)
{
    if (!py_gc_matcher_ready(self, 1)) return NULL;
    const token_vocab *tv = self->compiled->compiler->tv;
    int32_t words = token_vocab_mask_words(tv);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)words * 4);
    if (!out) return NULL;
    uint32_t *mask = (uint32_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    if (brute) token_mask_fill_brute(tv, &self->m, mask);
    else grammar_compiled_fill_mask(self->compiled->gc, &self->m, mask);
    Py_END_ALLOW_THREADS
    return out;
}

static PyObject *py_gc_matcher_mask(py_gc_matcher *self, PyObject *unused) { return py_gc_matcher_mask_impl(self, 0); }
static PyObject *py_gc_matcher_mask_brute(py_gc_matcher *self, PyObject *unused) { return py_gc_matcher_mask_impl(self, 1); }

static int64_t py_gc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* bench(token_ids) -> (ns per mask, tokens accepted, cache miss per mask): before each token,
 * a mask (timed), a check that the token is allowed, then the advance. */
static PyObject *py_gc_matcher_bench(py_gc_matcher *self, PyObject *arg)
{
    if (!py_gc_matcher_ready(self, 1)) return NULL;
    PyObject *fast = PySequence_Fast(arg, "bench: token_ids must be a sequence of ints");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int32_t *ids = PyMem_Malloc(sizeof *ids * (size_t)(n + 1));
    int64_t *ns = PyMem_Malloc(sizeof *ns * (size_t)(n + 1));
    uint8_t *miss = PyMem_Malloc((size_t)n + 1);
    const token_vocab *tv = self->compiled->compiler->tv;
    int32_t words = token_vocab_mask_words(tv);
    uint32_t *mask = PyMem_Malloc(sizeof *mask * (size_t)words);
    if (!ids || !ns || !mask || !miss) {
        Py_DECREF(fast); PyMem_Free(ids); PyMem_Free(ns); PyMem_Free(mask); PyMem_Free(miss);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if ((v == -1 && PyErr_Occurred()) || v < 0 || v >= token_vocab_size(tv)) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "bench: token id %ld outside the vocabulary", v);
            Py_DECREF(fast); PyMem_Free(ids); PyMem_Free(ns); PyMem_Free(mask); PyMem_Free(miss);
            return NULL;
        }
        ids[i] = (int32_t)v;
    }
    Py_DECREF(fast);
    Py_ssize_t done = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; done < n; done++) {
        int64_t entries = token_mask_table_num_entries(self->compiled->gc->masks);
        int64_t t0 = py_gc_now_ns();
        grammar_compiled_fill_mask(self->compiled->gc, &self->m, mask);
        ns[done] = py_gc_now_ns() - t0;
        miss[done] = token_mask_table_num_entries(self->compiled->gc->masks) != entries;
        int32_t tok = ids[done];
        if (!(mask[tok >> 5] >> (tok & 31) & 1)) break;
        if (!token_mask_advance_token(tv, &self->m, tok)) break;
    }
    Py_END_ALLOW_THREADS
    Py_ssize_t timed = done < n ? done + 1 : n;
    PyObject *list = PyList_New(timed), *misses = PyList_New(timed);
    for (Py_ssize_t i = 0; list && misses && i < timed; i++) {
        PyList_SET_ITEM(list, i, PyLong_FromLongLong(ns[i]));
        PyList_SET_ITEM(misses, i, PyBool_FromLong(miss[i]));
    }
    PyMem_Free(ids); PyMem_Free(ns); PyMem_Free(mask); PyMem_Free(miss);
    if (!list || !misses) { Py_XDECREF(list); Py_XDECREF(misses); return NULL; }
    return Py_BuildValue("(NnN)", list, done, misses);
}

static PyObject *py_gc_matcher_num_bytes(py_gc_matcher *self, void *closure)
{
    return PyLong_FromLong(self->compiled ? self->m.num_bytes : 0);
}

static PyObject *py_gc_matcher_arena_bytes(py_gc_matcher *self, void *closure)
{
    return PyLong_FromLongLong(self->compiled ? dpda_matcher_bytes(&self->m) : 0);
}

static PyMethodDef py_gc_matcher_methods[] = {
    {"advance_bytes", (PyCFunction)py_gc_matcher_advance_bytes, METH_O, "advance_bytes(b) -> bool (all or nothing)"},
    {"advance_token", (PyCFunction)py_gc_matcher_advance_token, METH_O, "advance_token(id) -> bool"},
    {"is_accepting", (PyCFunction)py_gc_matcher_is_accepting, METH_NOARGS, "is_accepting() -> bool"},
    {"rollback_bytes", (PyCFunction)py_gc_matcher_rollback_bytes, METH_O, "rollback_bytes(n)"},
    {"rollback_tokens", (PyCFunction)py_gc_matcher_rollback_tokens, METH_O, "rollback_tokens(n)"},
    {"reset", (PyCFunction)py_gc_matcher_reset, METH_NOARGS, "reset() to the start"},
    {"forced_bytes", (PyCFunction)py_gc_matcher_forced_bytes, METH_VARARGS,
     "forced_bytes(max=64) -> bytes every continuation starts with (jump-forward); the matcher is unchanged"},
    {"fill_mask", (PyCFunction)py_gc_matcher_fill_mask, METH_O, "fill_mask(buf) -> allowed count"},
    {"mask", (PyCFunction)py_gc_matcher_mask, METH_NOARGS, "mask() -> bytes (uint32 words)"},
    {"mask_brute", (PyCFunction)py_gc_matcher_mask_brute, METH_NOARGS, "mask_brute() -> bytes: the slow reference"},
    {"bench", (PyCFunction)py_gc_matcher_bench, METH_O, "bench(token_ids) -> (ns per mask, tokens accepted, cache miss per mask)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef py_gc_matcher_getset[] = {
    {"num_bytes", (getter)py_gc_matcher_num_bytes, NULL, "bytes accepted so far", NULL},
    {"arena_bytes", (getter)py_gc_matcher_arena_bytes, NULL, "bytes held by the parse-stack arena and rollback history", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject py_gc_matcher_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lightllm._C.GrammarMatcher",
    .tp_basicsize = sizeof(py_gc_matcher),
    .tp_dealloc = (destructor)py_gc_matcher_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GrammarMatcher(compiled: CompiledGrammar): the DPDA runtime for one request",
    .tp_methods = py_gc_matcher_methods,
    .tp_getset = py_gc_matcher_getset,
    .tp_init = (initproc)py_gc_matcher_init,
    .tp_new = PyType_GenericNew,
};

int py_grammar_matcher_register(PyObject *m)
{
    PyTypeObject *types[] = {&py_gc_compiler_type, &py_gc_compiled_type, &py_gc_matcher_type};
    const char *names[] = {"GrammarCompiler", "CompiledGrammar", "GrammarMatcher"};
    for (int i = 0; i < 3; i++) {
        if (PyType_Ready(types[i]) < 0) return -1;
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            return -1;
        }
    }
    return 0;
}
