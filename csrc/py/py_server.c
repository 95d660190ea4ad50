/* py_server.c — the multi-process server's C parts as seen from Python:
 *   shm_server_create / shm_server_destroy / shm_reclaim_stale / shm_count_segments: the two
 *     segments of a server (request pool "reqs", IO buffer "io") named by a server id;
 *   router_main(...) and backend_main(engine, server_id, overlap=True): the Router and ModelBackend loops, run
 *     with the GIL released in their own processes until SIGTERM/SIGINT;
 *   ShmClient(server_id): the API server's side of the request pool (submit, poll, abort,
 *     release, backend status).
 */
#include "py/py_common.h"

#include <sched.h>
#include <signal.h>
#include <string.h>

#include "core/shm.h"
#include "engine/backend_loop.h"
#include "engine/io_buffer.h"
#include "engine/router.h"
#include "engine/shm_req.h"
#include "py/py_engine.h"

static volatile sig_atomic_t py_server_stop; /* one loop per process: set by SIGTERM / SIGINT */

static void py_server_on_signal(int sig)
{
    (void)sig;
    py_server_stop = 1;
}

static void py_server_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = py_server_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    py_server_stop = 0;
}

static int py_server_names(const char *server_id, char *reqs, char *io)
{
    status_t s = shm_make_name(reqs, 128, server_id, "reqs");
    if (s == STATUS_OK) s = shm_make_name(io, 128, server_id, "io");
    if (s != STATUS_OK) { py_raise_status(s); return -1; }
    return 0;
}

static status_t py_server_attach(const char *server_id, shm_req_pool *pool, io_buffer *io)
{
    char reqs[128], ion[128];
    STATUS_TRY(shm_make_name(reqs, sizeof reqs, server_id, "reqs"));
    STATUS_TRY(shm_make_name(ion, sizeof ion, server_id, "io"));
    STATUS_TRY(shm_req_pool_attach(pool, reqs));
    status_t s = io_buffer_attach(io, ion);
    if (s != STATUS_OK) shm_req_pool_detach(pool);
    return s;
}

static PyObject *py_shm_server_create(PyObject *self, PyObject *args)
{
    const char *id;
    shm_req_pool_config cfg;
    unsigned int io_capacity;
    if (!PyArg_ParseTuple(args, "siiIIII", &id, &cfg.num_slots, &cfg.max_prompt_tokens, &cfg.num_ring_records,
                          &cfg.num_ring_text_bytes, &cfg.max_grammar_bytes, &io_capacity))
        return NULL;
    char reqs[128], ion[128];
    if (py_server_names(id, reqs, ion) < 0) return NULL;
    shm_req_pool pool;
    io_buffer io;
    status_t s = shm_req_pool_create(&pool, reqs, &cfg);
    if (s != STATUS_OK) return py_raise_status(s);
    s = io_buffer_create(&io, ion, io_capacity);
    if (s != STATUS_OK) {
        shm_req_pool_destroy(&pool);
        return py_raise_status(s);
    }
    shm_req_pool_detach(&pool); /* the names stay until shm_server_destroy */
    io_buffer_detach(&io);
    Py_RETURN_NONE;
}

static PyObject *py_shm_server_destroy(PyObject *self, PyObject *arg)
{
    const char *id = PyUnicode_AsUTF8(arg);
    if (!id) return NULL;
    char reqs[128], ion[128];
    if (py_server_names(id, reqs, ion) < 0) return NULL;
    const status_t a = shm_unlink_segment(reqs), b = shm_unlink_segment(ion);
    return PyBool_FromLong(a == STATUS_OK && b == STATUS_OK);
}

static PyObject *py_shm_reclaim_stale(PyObject *self, PyObject *unused)
{
    int32_t n = 0;
    status_t s = shm_reclaim_stale(NULL, &n);
    if (s != STATUS_OK) return py_raise_status(s);
    return PyLong_FromLong(n);
}

static PyObject *py_shm_count_segments(PyObject *self, PyObject *arg)
{
    const char *prefix = PyUnicode_AsUTF8(arg);
    if (!prefix) return NULL;
    int32_t n = 0;
    status_t s = shm_count_segments(prefix, &n);
    if (s != STATUS_OK) return py_raise_status(s);
    return PyLong_FromLong(n);
}

static PyObject *py_router_main(PyObject *self, PyObject *args)
{
    const char *id;
    router_args ra;
    if (!PyArg_ParseTuple(args, "sdiii", &id, &ra.interval_ms, &ra.max_num_seqs, &ra.max_model_len,
                          &ra.estimate_max_new_tokens))
        return NULL;
    shm_req_pool pool;
    io_buffer io;
    router r;
    status_t s;
    py_server_install_signals();
    Py_BEGIN_ALLOW_THREADS
    s = py_server_attach(id, &pool, &io);
    if (s == STATUS_OK) {
        s = router_init(&r, &pool, &io, &ra);
        if (s == STATUS_OK) {
            s = router_run(&r, (volatile const int *)&py_server_stop);
            router_free(&r);
        }
        shm_req_pool_detach(&pool);
        io_buffer_detach(&io);
    }
    Py_END_ALLOW_THREADS
    if (s != STATUS_OK) return py_raise_status(s);
    Py_RETURN_NONE;
}

static PyObject *py_backend_main(PyObject *self, PyObject *args)
{
    PyObject *engine_obj;
    const char *id;
    int overlap = 1;
    if (!PyArg_ParseTuple(args, "Os|p", &engine_obj, &id, &overlap)) return NULL;
    engine *e = py_engine_get(engine_obj);
    if (!e) return NULL;
    shm_req_pool pool;
    io_buffer io;
    backend_loop bl;
    status_t s;
    py_server_install_signals();
    Py_BEGIN_ALLOW_THREADS
    s = py_server_attach(id, &pool, &io);
    if (s == STATUS_OK) {
        s = backend_loop_init(&bl, e, &pool, &io, overlap);
        if (s == STATUS_OK) {
            s = backend_loop_run(&bl, (volatile const int *)&py_server_stop);
            backend_loop_free(&bl);
        }
        shm_req_pool_detach(&pool);
        io_buffer_detach(&io);
    }
    Py_END_ALLOW_THREADS
    if (s != STATUS_OK) return py_raise_status(s);
    Py_RETURN_NONE;
}

/* ---- ShmClient ---- */

typedef struct py_shm_client {
    PyObject_HEAD
    int attached;
    shm_req_pool pool;
    io_buffer io;
    shm_req_token_record *recs;     /* [num_ring_records] poll scratch */
    char *text;                     /* [num_ring_text_bytes] */
} py_shm_client;

static int py_shm_client_init(py_shm_client *self, PyObject *args, PyObject *kwargs)
{
    const char *id;
    if (!PyArg_ParseTuple(args, "s", &id)) return -1;
    if (self->attached) { PyErr_SetString(PyExc_RuntimeError, "ShmClient is already attached"); return -1; }
    status_t s = py_server_attach(id, &self->pool, &self->io);
    if (s != STATUS_OK) { py_raise_status(s); return -1; }
    self->attached = 1;
    self->recs = PyMem_Malloc((size_t)self->pool.num_ring_records * sizeof *self->recs);
    self->text = PyMem_Malloc(self->pool.num_ring_text_bytes);
    return 0;
}

static void py_shm_client_dealloc(py_shm_client *self)
{
    if (self->attached) {
        shm_req_pool_detach(&self->pool);
        io_buffer_detach(&self->io);
    }
    PyMem_Free(self->recs);
    PyMem_Free(self->text);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int py_shm_client_slot(py_shm_client *self, PyObject *arg, int32_t *slot)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (!self->attached || v < 0 || v >= self->pool.num_slots) {
        PyErr_Format(PyExc_ValueError, "slot %ld is not a slot of this pool", v);
        return -1;
    }
    *slot = (int32_t)v;
    return 0;
}

/* The grammar spec of a params dict (SamplingParams.engine_dict: grammar_kind, grammar,
 * grammar_whitespace); *kind = SHM_REQ_GRAMMAR_NONE when grammar_kind is absent or None.  The text
 * points into the dict's str (valid while the dict lives). */
static int py_shm_grammar_from_dict(PyObject *params, uint32_t *kind, const char **text, Py_ssize_t *len, int *ws)
{
    *kind = SHM_REQ_GRAMMAR_NONE;
    *text = NULL;
    *len = 0;
    *ws = 0;
    PyObject *v = PyDict_GetItemString(params, "grammar_kind");
    if (!v || v == Py_None) return 0;
    const char *name = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
    if (!name) { PyErr_Clear(); PyErr_SetString(PyExc_ValueError, "grammar_kind must be a string"); return -1; }
    status_t s = shm_req_grammar_kind_from_name(name, kind);
    if (s != STATUS_OK) { py_raise_status(s); return -1; }
    v = PyDict_GetItemString(params, "grammar");
    if (!v || !PyUnicode_Check(v) || !(*text = PyUnicode_AsUTF8AndSize(v, len))) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "grammar must be a string (the %s spec)", name);
        return -1;
    }
    v = PyDict_GetItemString(params, "grammar_whitespace");
    *ws = v ? PyObject_IsTrue(v) : 0;
    return *ws < 0 ? -1 : 0;
}

/* submit(request_id, group_id, sample_index, prompt_ids, params) -> slot, or -1 when the pool is full */
static PyObject *py_shm_client_submit(py_shm_client *self, PyObject *args)
{
    long long request_id, group_id;
    int sample_index;
    PyObject *prompt_o, *params;
    if (!PyArg_ParseTuple(args, "LLiOO!", &request_id, &group_id, &sample_index, &prompt_o, &PyDict_Type, &params)) return NULL;
    sampling_params_t sp;
    if (py_sampling_from_dict(params, &sp) < 0) return NULL;
    uint32_t grammar_kind;
    const char *grammar;
    Py_ssize_t grammar_len;
    int grammar_ws;
    if (py_shm_grammar_from_dict(params, &grammar_kind, &grammar, &grammar_len, &grammar_ws) < 0) return NULL;
    uint32_t flags = SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS;
    PyObject *v;
    if ((v = PyDict_GetItemString(params, "include_stop_str_in_output")) && PyObject_IsTrue(v)) flags |= SHM_REQ_FLAG_INCLUDE_STOP_STR_IN_OUTPUT;
    if ((v = PyDict_GetItemString(params, "skip_special_tokens")) && !PyObject_IsTrue(v)) flags &= ~SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS;
    int32_t *prompt = NULL, n = 0, *stop_ids = NULL, num_stop_ids = 0;
    const char *stops[SHM_REQ_MAX_STOP_STRINGS];
    int32_t stop_bytes[SHM_REQ_MAX_STOP_STRINGS];
    int32_t num_stops = 0;
    PyObject *result = NULL;
    int32_t slot = -1;
    if (py_int_list(prompt_o, "prompt_token_ids", &prompt, &n) < 0) goto done;
    v = PyDict_GetItemString(params, "stop_token_ids");
    if (v && v != Py_None && py_int_list(v, "stop_token_ids", &stop_ids, &num_stop_ids) < 0) goto done;
    v = PyDict_GetItemString(params, "stop");
    if (v && v != Py_None) {
        if (!PyList_Check(v)) { PyErr_SetString(PyExc_ValueError, "stop must be a list of strings"); goto done; }
        if (PyList_GET_SIZE(v) > SHM_REQ_MAX_STOP_STRINGS) {
            PyErr_Format(PyExc_ValueError, "stop: at most %d stop strings, got %zd", SHM_REQ_MAX_STOP_STRINGS, PyList_GET_SIZE(v));
            goto done;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            Py_ssize_t len;
            const char *str = PyUnicode_Check(PyList_GET_ITEM(v, i)) ? PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(v, i), &len) : NULL;
            if (!str) { PyErr_Clear(); PyErr_Format(PyExc_ValueError, "stop[%zd] must be a string", i); goto done; }
            stops[num_stops] = str;
            stop_bytes[num_stops++] = (int32_t)len;
        }
    }
    slot = shm_req_claim(&self->pool);
    if (slot < 0) { result = PyLong_FromLong(-1); goto done; }
    status_t s = shm_req_set_request(&self->pool, slot, request_id, group_id, sample_index, &sp, flags);
    if (s == STATUS_OK) s = shm_req_set_prompt(&self->pool, slot, prompt, n);
    if (s == STATUS_OK) s = shm_req_set_stop(&self->pool, slot, stops, stop_bytes, num_stops, stop_ids, num_stop_ids);
    if (s == STATUS_OK && grammar_kind != SHM_REQ_GRAMMAR_NONE)
        s = shm_req_set_grammar(&self->pool, slot, grammar_kind, grammar, (size_t)grammar_len, grammar_ws);
    if (s != STATUS_OK) {
        shm_req_release(&self->pool, slot);
        py_raise_status(s);
        goto done;
    }
    shm_req_submit(&self->pool, slot);
    result = PyLong_FromLong(slot);
done:
    PyMem_Free(prompt);
    PyMem_Free(stop_ids);
    return result;
}

static const char *py_shm_finish_name(uint32_t f)
{
    switch (f) {
    case SHM_REQ_FINISH_STOP: return "stop";
    case SHM_REQ_FINISH_LENGTH: return "length";
    case SHM_REQ_FINISH_ABORT: return "abort";
    case SHM_REQ_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

/* poll(slot) -> (records, text, finish_reason|None, stop_reason, num_cached_tokens, error|None) where
 * records = [(token, logprob, rank, [(id, logprob), ...])]; finish_reason is set once the slot is
 * FINISHED and everything it produced has been returned. */
static PyObject *py_shm_client_poll(py_shm_client *self, PyObject *arg)
{
    int32_t slot;
    if (py_shm_client_slot(self, arg, &slot) < 0) return NULL;
    /* FINISHED is read before draining: all the slot produced is in the rings by then.  A FINAL
     * record means it is about to finish: wait a little for it, draining text meanwhile (the
     * backend finishes once its text is out), so the last token and the finish come together. */
    int finished = shm_req_get_state(&self->pool, slot) == SHM_REQ_STATE_FINISHED;
    PyObject *records = PyList_New(0), *text = NULL;
    PyObject *chunks = PyBytes_FromStringAndSize(NULL, 0);
    const shm_req *q = shm_req_get(&self->pool, slot);
    int32_t got, final_seen = 0;
    uint32_t nb;
    while ((got = shm_req_pop_tokens(&self->pool, slot, self->recs, (int32_t)self->pool.num_ring_records)) > 0) {
        for (int32_t i = 0; i < got; i++) final_seen |= (self->recs[i].flags & SHM_REQ_RECORD_FINAL) != 0;
        for (int32_t i = 0; i < got; i++) {
            const shm_req_token_record *r = &self->recs[i];
            PyObject *top = PyList_New(r->num_top);
            for (int32_t j = 0; j < r->num_top; j++)
                PyList_SET_ITEM(top, j, Py_BuildValue("(id)", r->top_ids[j], (double)r->top_logprobs[j]));
            PyObject *t = Py_BuildValue("(idiN)", r->token_id, (double)r->logprob, r->rank, top);
            PyList_Append(records, t);
            Py_DECREF(t);
        }
    }
    for (int spins = 0;; spins++) {
        while ((nb = shm_req_pop_text(&self->pool, slot, self->text, self->pool.num_ring_text_bytes)) > 0)
            PyBytes_ConcatAndDel(&chunks, PyBytes_FromStringAndSize(self->text, nb));
        if (finished || !final_seen || spins >= 2000) break;
        finished = shm_req_get_state(&self->pool, slot) == SHM_REQ_STATE_FINISHED;
        if (!finished) sched_yield();
    }
    text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(chunks), PyBytes_GET_SIZE(chunks), "replace");
    Py_DECREF(chunks);
    PyObject *finish = Py_None, *stop = Py_None, *error = Py_None;
    if (finished) {
        const char *name = py_shm_finish_name(q->finish_reason);
        finish = name ? PyUnicode_FromString(name) : Py_NewRef(Py_None);
        if (q->stop_reason_kind == SHM_REQ_STOP_TOKEN) stop = PyLong_FromLong(q->stop_reason_value);
        else if (q->stop_reason_kind == SHM_REQ_STOP_STRING && q->stop_reason_value >= 0 &&
                 q->stop_reason_value < (int32_t)q->num_stop_strings)
            stop = PyUnicode_DecodeUTF8(q->stop_strings[q->stop_reason_value], q->stop_string_bytes[q->stop_reason_value], "replace");
        else stop = Py_NewRef(Py_None);
        error = q->finish_reason == SHM_REQ_FINISH_ERROR ? PyUnicode_DecodeUTF8(q->error_message, (Py_ssize_t)strnlen(q->error_message, sizeof q->error_message), "replace")
                                                         : Py_NewRef(Py_None);
    } else {
        Py_INCREF(finish); Py_INCREF(stop); Py_INCREF(error);
    }
    return Py_BuildValue("(NNNNiN)", records, text, finish, stop, q->num_cached_tokens, error);
}

static PyObject *py_shm_client_abort(py_shm_client *self, PyObject *arg)
{
    int32_t slot;
    if (py_shm_client_slot(self, arg, &slot) < 0) return NULL;
    shm_req_set_abort(&self->pool, slot);
    Py_RETURN_NONE;
}

static PyObject *py_shm_client_release(py_shm_client *self, PyObject *arg)
{
    int32_t slot;
    if (py_shm_client_slot(self, arg, &slot) < 0) return NULL;
    return PyBool_FromLong(shm_req_release(&self->pool, slot));
}

static PyObject *py_shm_client_status(py_shm_client *self, PyObject *unused)
{
    io_buffer_status st;
    memset(&st, 0, sizeof st);
    const int ok = self->attached && io_buffer_read_status(&self->io, &st);
    return Py_BuildValue("{s:L,s:L,s:L,s:i,s:i,s:K,s:L,s:O,s:i,s:L,s:L,s:L}", "kv_slots_total", (long long)st.kv_slots_total,
                         "kv_slots_free", (long long)st.kv_slots_free, "kv_slots_cached", (long long)st.kv_slots_cached,
                         "num_running", st.num_running, "num_waiting", st.num_waiting, "step", (unsigned long long)st.step,
                         "last_step_us", (long long)st.last_step_us, "healthy", (ok && st.healthy) ? Py_True : Py_False,
                         "num_in_use", self->attached ? shm_req_pool_num_in_use(&self->pool) : 0,
                         "forward_us", (long long)st.forward_us, "active_us", (long long)st.active_us,
                         "num_preemptions", (long long)st.num_preemptions);
}

static PyMethodDef py_shm_client_methods[] = {
    {"submit", (PyCFunction)py_shm_client_submit, METH_VARARGS,
     "submit(request_id, group_id, sample_index, prompt_ids, params) -> slot (-1: pool full)"},
    {"poll", (PyCFunction)py_shm_client_poll, METH_O,
     "poll(slot) -> (records, text, finish_reason|None, stop_reason, num_cached_tokens, error|None)"},
    {"abort", (PyCFunction)py_shm_client_abort, METH_O, "abort(slot): ask the router/backend to stop it"},
    {"release", (PyCFunction)py_shm_client_release, METH_O, "release(slot): drop the front end's reference"},
    {"status", (PyCFunction)py_shm_client_status, METH_NOARGS, "the backend's published status"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject py_shm_client_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lightllm._C.ShmClient",
    .tp_basicsize = sizeof(py_shm_client),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ShmClient(server_id): the API server's side of a running server's request pool",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)py_shm_client_init,
    .tp_dealloc = (destructor)py_shm_client_dealloc,
    .tp_methods = py_shm_client_methods,
};

static PyMethodDef py_server_functions[] = {
    {"shm_server_create", py_shm_server_create, METH_VARARGS,
     "shm_server_create(server_id, num_slots, max_prompt_tokens, ring_records, ring_text_bytes, max_grammar_bytes, "
     "io_capacity)"},
    {"shm_server_destroy", py_shm_server_destroy, METH_O, "shm_server_destroy(server_id): unlink its segments"},
    {"shm_reclaim_stale", py_shm_reclaim_stale, METH_NOARGS, "unlink segments of crashed servers; returns how many"},
    {"shm_count_segments", py_shm_count_segments, METH_O, "shm_count_segments(prefix) -> int"},
    {"router_main", py_router_main, METH_VARARGS,
     "router_main(server_id, interval_ms, max_num_seqs, max_model_len, estimate_max_new_tokens): runs until SIGTERM"},
    {"backend_main", py_backend_main, METH_VARARGS, "backend_main(engine, server_id, overlap=True): runs until SIGTERM"},
    {NULL, NULL, 0, NULL},
};

int py_server_register(PyObject *m)
{
    if (PyType_Ready(&py_shm_client_type) < 0) return -1;
    Py_INCREF(&py_shm_client_type);
    if (PyModule_AddObject(m, "ShmClient", (PyObject *)&py_shm_client_type) < 0) return -1;
    return PyModule_AddFunctions(m, py_server_functions);
}
