/* py_grammar.c — Python binding of the grammar front ends (csrc/grammar): compile a JSON
 * Schema / GBNF / regex / choice list to the grammar IR and print it, or run the reference
 * recognizer.  Errors from the front ends become ValueError with their message. */
#include "py/py_common.h"

#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "grammar/grammar_cache.h"

static status_t py_grammar_compile(const char *kind, const char *src, Py_ssize_t len, int whitespace, grammar *g)
{
    return grammar_compile_spec(kind, src, (size_t)len, whitespace, g);
}

static PyObject *py_grammar_print(const char *kind, const char *src, Py_ssize_t len, int whitespace)
{
    grammar g;
    status_t st;
    char *text = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = py_grammar_compile(kind, src, len, whitespace, &g);
    if (st == STATUS_OK) text = grammar_print(&g);
    grammar_free(&g);
    Py_END_ALLOW_THREADS
    if (st != STATUS_OK) return py_raise_status(st);
    PyObject *r = PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");
    free(text);
    return r;
}

static PyObject *py_grammar_from_json_schema(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"schema_json", "whitespace", NULL};
    const char *src;
    Py_ssize_t len;
    int ws = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s#|p", names, &src, &len, &ws)) return NULL;
    return py_grammar_print("json_schema", src, len, ws);
}

static PyObject *py_grammar_from_ebnf(PyObject *self, PyObject *arg)
{
    Py_ssize_t len;
    const char *src = PyUnicode_AsUTF8AndSize(arg, &len);
    return src ? py_grammar_print("ebnf", src, len, 0) : NULL;
}

static PyObject *py_grammar_from_regex(PyObject *self, PyObject *arg)
{
    Py_ssize_t len;
    const char *src = PyUnicode_AsUTF8AndSize(arg, &len);
    return src ? py_grammar_print("regex", src, len, 0) : NULL;
}

static PyObject *py_grammar_accepts(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"kind", "source", "text", "whitespace", "prefix", NULL};
    const char *kind, *src;
    Py_ssize_t len;
    Py_buffer text;
    int ws = 0, prefix = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss#y*|pp", names, &kind, &src, &len, &text, &ws, &prefix)) return NULL;
    grammar g;
    status_t st;
    int ok = 0;
    Py_BEGIN_ALLOW_THREADS
    st = py_grammar_compile(kind, src, len, ws, &g);
    if (st == STATUS_OK)
        ok = prefix ? grammar_accepts_prefix(&g, text.buf, (size_t)text.len) : grammar_accepts(&g, text.buf, (size_t)text.len);
    grammar_free(&g);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&text);
    if (st != STATUS_OK) return py_raise_status(st);
    return PyBool_FromLong(ok);
}

/* grammar_accepts_many(kind, source, texts, whitespace=False) -> list[bool]: one compile. */
static PyObject *py_grammar_accepts_many(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"kind", "source", "texts", "whitespace", NULL};
    const char *kind, *src;
    Py_ssize_t len;
    PyObject *seq;
    int ws = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss#O|p", names, &kind, &src, &len, &seq, &ws)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "texts must be a sequence of bytes");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(PySequence_Fast_GET_ITEM(fast, i))) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_TypeError, "texts must be bytes");
            return NULL;
        }
    }
    grammar g;
    status_t st;
    Py_BEGIN_ALLOW_THREADS
    st = py_grammar_compile(kind, src, len, ws, &g);
    Py_END_ALLOW_THREADS
    if (st != STATUS_OK) {
        grammar_free(&g);
        Py_DECREF(fast);
        return py_raise_status(st);
    }
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *b = PySequence_Fast_GET_ITEM(fast, i);
        const uint8_t *buf = (const uint8_t *)PyBytes_AS_STRING(b);
        size_t blen = (size_t)PyBytes_GET_SIZE(b);
        int ok;
        Py_BEGIN_ALLOW_THREADS
        ok = grammar_accepts(&g, buf, blen);
        Py_END_ALLOW_THREADS
        PyList_SET_ITEM(out, i, PyBool_FromLong(ok));
    }
    grammar_free(&g);
    Py_DECREF(fast);
    return out;
}

/* grammar_set_counter_threshold(n) -> int: the previous threshold (n <= 0: the default). */
static PyObject *py_grammar_set_counter_threshold(PyObject *self, PyObject *arg)
{
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    long long prev = (long long)grammar_counter_threshold();
    grammar_set_counter_threshold((int64_t)n);
    return PyLong_FromLongLong(prev);
}

static PyMethodDef py_grammar_functions[] = {
    {"grammar_from_json_schema", (PyCFunction)(void (*)(void))py_grammar_from_json_schema, METH_VARARGS | METH_KEYWORDS,
     "grammar_from_json_schema(schema_json, whitespace=False) -> str: the compiled grammar, printed"},
    {"grammar_from_ebnf", py_grammar_from_ebnf, METH_O, "grammar_from_ebnf(text) -> str: the compiled grammar, printed"},
    {"grammar_from_regex", py_grammar_from_regex, METH_O, "grammar_from_regex(pattern) -> str: the compiled grammar, printed"},
    {"grammar_accepts", (PyCFunction)(void (*)(void))py_grammar_accepts, METH_VARARGS | METH_KEYWORDS,
     "grammar_accepts(kind, source, text: bytes, whitespace=False, prefix=False) -> bool; kind: json_schema, ebnf, "
     "regex, choice (a JSON list of strings)"},
    {"grammar_accepts_many", (PyCFunction)(void (*)(void))py_grammar_accepts_many, METH_VARARGS | METH_KEYWORDS,
     "grammar_accepts_many(kind, source, texts: list[bytes], whitespace=False) -> list[bool]"},
    {"grammar_set_counter_threshold", py_grammar_set_counter_threshold, METH_O,
     "grammar_set_counter_threshold(n) -> int (the previous one): bounded repetitions whose larger bound is at "
     "least n use a counter instead of expanded states (n <= 0: the default); for tests and benchmarks"},
    {NULL, NULL, 0, NULL},
};

int py_grammar_register(PyObject *m) { return PyModule_AddFunctions(m, py_grammar_functions); }
