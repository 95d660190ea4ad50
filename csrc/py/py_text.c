/* py_text.c — the text layer of lightllm._C: DetokVocab, detokenize_stream, find_stop.
 *
 * DetokVocab(token_bytes: list[bytes], special_ids: iterable[int]) owns a C detok_vocab
 * (engine/detokenizer.h) built from the table lightllm.tokenizer produces; the engine takes
 * the pointer through py_text_vocab_get() (py/py_text.h).  detokenize_stream() runs the C
 * incremental detokenizer over a whole id list and returns the text emitted after each token
 * (the final flush joins the last piece) so tests can check the incremental behaviour;
 * find_stop() exposes detok_find_stop.  Python inputs are copied / pinned before the GIL is
 * released; no PyObject is touched while it is released.
 */
#include "py/py_text.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    detok_vocab *vocab;
} py_text_vocab_object;

static PyTypeObject py_text_vocab_type;

static int py_text_vocab_init(py_text_vocab_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"token_bytes", "special_ids", NULL};
    PyObject *token_bytes, *special_ids = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:DetokVocab", kwlist, &token_bytes, &special_ids))
        return -1;
    if (self->vocab) { /* immutable: an engine may hold the C pointer */
        PyErr_SetString(PyExc_TypeError, "DetokVocab is immutable: __init__ was already called");
        return -1;
    }
    /* a tuple copy pins every bytes object while the GIL is released */
    PyObject *tokens = PySequence_Tuple(token_bytes);
    if (!tokens) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(tokens);
    if (n <= 0 || n > INT32_MAX) {
        Py_DECREF(tokens);
        PyErr_Format(PyExc_ValueError, "DetokVocab: token_bytes must hold 1..2^31-1 entries, got %zd", n);
        return -1;
    }
    const uint8_t **ptrs = PyMem_Malloc(sizeof(*ptrs) * (size_t)n);
    int32_t *lens = PyMem_Malloc(sizeof(*lens) * (size_t)n);
    uint8_t *is_special = PyMem_Calloc((size_t)n, 1);
    PyObject *iter = NULL, *item = NULL;
    int rc = -1;
    if (!ptrs || !lens || !is_special) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyTuple_GET_ITEM(tokens, i);
        if (!PyBytes_Check(b)) {
            PyErr_Format(PyExc_TypeError, "DetokVocab: token_bytes[%zd] must be bytes, not %.100s", i,
                         Py_TYPE(b)->tp_name);
            goto done;
        }
        if (PyBytes_GET_SIZE(b) > INT32_MAX / 4) {
            PyErr_Format(PyExc_ValueError, "DetokVocab: token_bytes[%zd] is too long", i);
            goto done;
        }
        ptrs[i] = (const uint8_t *)PyBytes_AS_STRING(b);
        lens[i] = (int32_t)PyBytes_GET_SIZE(b);
    }
    if (special_ids != Py_None) {
        if (!(iter = PyObject_GetIter(special_ids))) goto done;
        while ((item = PyIter_Next(iter))) {
            long id = PyLong_AsLong(item);
            Py_CLEAR(item);
            if (id == -1 && PyErr_Occurred()) goto done;
            if (id < 0 || id >= n) {
                PyErr_Format(PyExc_ValueError, "DetokVocab: special id %ld is outside the vocabulary [0, %zd)", id, n);
                goto done;
            }
            is_special[id] = 1;
        }
        if (PyErr_Occurred()) goto done;
    }
    status_t st;
    Py_BEGIN_ALLOW_THREADS
    st = detok_vocab_create(ptrs, lens, is_special, (int32_t)n, &self->vocab);
    Py_END_ALLOW_THREADS
    if (st != STATUS_OK) {
        py_raise_status(st);
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(iter);
    Py_DECREF(tokens);
    PyMem_Free(ptrs);
    PyMem_Free(lens);
    PyMem_Free(is_special);
    return rc;
}

static void py_text_vocab_dealloc(py_text_vocab_object *self)
{
    detok_vocab_free(self->vocab);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

detok_vocab *py_text_vocab_get(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &py_text_vocab_type)) {
        PyErr_Format(PyExc_TypeError, "expected a lightllm._C.DetokVocab, not %.100s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    detok_vocab *v = ((py_text_vocab_object *)obj)->vocab;
    if (!v) PyErr_SetString(PyExc_ValueError, "DetokVocab was not initialised");
    return v;
}

static PyObject *py_text_vocab_size(PyObject *self, void *closure)
{
    detok_vocab *v = py_text_vocab_get(self);
    return v ? PyLong_FromLong(detok_vocab_size(v)) : NULL;
}

static PyObject *py_text_vocab_max_token_bytes(PyObject *self, void *closure)
{
    detok_vocab *v = py_text_vocab_get(self);
    return v ? PyLong_FromLong(detok_max_token_bytes(v)) : NULL;
}

static int py_text_check_token(detok_vocab *v, long token)
{
    if (token >= 0 && token < detok_vocab_size(v)) return 0;
    PyErr_Format(PyExc_ValueError, "token id %ld is outside the vocabulary [0, %d)", token, detok_vocab_size(v));
    return -1;
}

static PyObject *py_text_vocab_token_bytes(PyObject *self, PyObject *arg)
{
    detok_vocab *v = py_text_vocab_get(self);
    if (!v) return NULL;
    long token = PyLong_AsLong(arg);
    if (token == -1 && PyErr_Occurred()) return NULL;
    if (py_text_check_token(v, token) < 0) return NULL;
    int32_t len;
    const uint8_t *bytes = detok_token_bytes(v, (int32_t)token, &len);
    return PyBytes_FromStringAndSize((const char *)bytes, len);
}

static PyGetSetDef py_text_vocab_getset[] = {
    {"vocab_size", py_text_vocab_size, NULL, "number of token ids", NULL},
    {"max_token_bytes", py_text_vocab_max_token_bytes, NULL,
     "one append writes at most max_token_bytes + 8 bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef py_text_vocab_methods[] = {
    {"token_bytes", py_text_vocab_token_bytes, METH_O, "token_bytes(id) -> bytes: the raw bytes of a token"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject py_text_vocab_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lightllm._C.DetokVocab",
    .tp_basicsize = sizeof(py_text_vocab_object),
    .tp_dealloc = (destructor)py_text_vocab_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "DetokVocab(token_bytes: list[bytes], special_ids: iterable[int]): the C token -> bytes table",
    .tp_methods = py_text_vocab_methods,
    .tp_getset = py_text_vocab_getset,
    .tp_init = (initproc)py_text_vocab_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *py_text_detokenize_stream(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"vocab", "ids", "skip_special", NULL};
    PyObject *vocab_obj, *ids_obj;
    int skip_special = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|p:detokenize_stream", kwlist, &vocab_obj, &ids_obj,
                                     &skip_special))
        return NULL;
    detok_vocab *v = py_text_vocab_get(vocab_obj);
    if (!v) return NULL;
    PyObject *ids = PySequence_Fast(ids_obj, "detokenize_stream: ids must be a sequence of ints");
    if (!ids) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(ids);
    size_t piece_room = (size_t)detok_max_token_bytes(v) + 8;
    int32_t *tokens = PyMem_Malloc(sizeof(int32_t) * (size_t)(n + 1));
    size_t *ends = PyMem_Malloc(sizeof(size_t) * (size_t)(n + 1));
    char *text = PyMem_Malloc(piece_room * (size_t)(n + 1));
    PyObject *result = NULL;
    if (!tokens || !ends || !text) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long token = PyLong_AsLong(PySequence_Fast_GET_ITEM(ids, i));
        if ((token == -1 && PyErr_Occurred()) || py_text_check_token(v, token) < 0) goto done;
        tokens[i] = (int32_t)token;
    }
    Py_BEGIN_ALLOW_THREADS
    detok_state state = {{0}, 0};
    size_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        at += detok_append(v, &state, tokens[i], skip_special, text + at);
        ends[i] = at;
    }
    if (n > 0) ends[n - 1] = at + detok_flush(&state, text + at);
    Py_END_ALLOW_THREADS
    if (!(result = PyList_New(n))) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t begin = i ? ends[i - 1] : 0;
        PyObject *piece = PyUnicode_DecodeUTF8(text + begin, (Py_ssize_t)(ends[i] - begin), "strict");
        if (!piece) { /* the C detokenizer emitted a partial or invalid character: a bug */
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, piece);
    }
done:
    Py_DECREF(ids);
    PyMem_Free(tokens);
    PyMem_Free(ends);
    PyMem_Free(text);
    return result;
}

static PyObject *py_text_find_stop(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"text", "new_start", "stops", NULL};
    Py_buffer text;
    Py_ssize_t new_start;
    PyObject *stops_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*nO:find_stop", kwlist, &text, &new_start, &stops_obj))
        return NULL;
    PyObject *result = NULL, *stops = NULL;
    const char **ptrs = NULL;
    size_t *lens = NULL;
    if (new_start < 0) {
        PyErr_Format(PyExc_ValueError, "find_stop: new_start must be >= 0, got %zd", new_start);
        goto done;
    }
    if (!(stops = PySequence_Tuple(stops_obj))) goto done;
    Py_ssize_t num_stops = PyTuple_GET_SIZE(stops);
    if (num_stops > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "find_stop: too many stop strings");
        goto done;
    }
    ptrs = PyMem_Malloc(sizeof(*ptrs) * (size_t)(num_stops + 1));
    lens = PyMem_Malloc(sizeof(*lens) * (size_t)(num_stops + 1));
    if (!ptrs || !lens) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < num_stops; i++) {
        PyObject *s = PyTuple_GET_ITEM(stops, i);
        if (!PyBytes_Check(s)) {
            PyErr_Format(PyExc_TypeError, "find_stop: stops[%zd] must be bytes, not %.100s", i, Py_TYPE(s)->tp_name);
            goto done;
        }
        ptrs[i] = PyBytes_AS_STRING(s);
        lens[i] = (size_t)PyBytes_GET_SIZE(s);
    }
    size_t pos = 0;
    int found = detok_find_stop(text.buf, (size_t)text.len, (size_t)new_start, ptrs, lens, (int)num_stops, &pos);
    if (found < 0) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("(in)", found, (Py_ssize_t)pos);
    }
done:
    PyBuffer_Release(&text);
    Py_XDECREF(stops);
    PyMem_Free(ptrs);
    PyMem_Free(lens);
    return result;
}

static PyMethodDef py_text_functions[] = {
    {"detokenize_stream", (PyCFunction)(void (*)(void))py_text_detokenize_stream, METH_VARARGS | METH_KEYWORDS,
     "detokenize_stream(vocab, ids, skip_special=True) -> list[str]: the text emitted after each token "
     "(the end-of-sequence flush joins the last piece)"},
    {"find_stop", (PyCFunction)(void (*)(void))py_text_find_stop, METH_VARARGS | METH_KEYWORDS,
     "find_stop(text: bytes, new_start: int, stops: list[bytes]) -> (index, pos) | None: the earliest stop "
     "string (ties: the longest) that ends at or after byte new_start"},
    {NULL, NULL, 0, NULL},
};

int py_text_register(PyObject *m)
{
    if (PyType_Ready(&py_text_vocab_type) < 0) return -1;
    Py_INCREF(&py_text_vocab_type);
    if (PyModule_AddObject(m, "DetokVocab", (PyObject *)&py_text_vocab_type) < 0) {
        Py_DECREF(&py_text_vocab_type);
        return -1;
    }
    return PyModule_AddFunctions(m, py_text_functions);
}
