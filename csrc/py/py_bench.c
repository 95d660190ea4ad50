/* py_bench.c — kernel entry points for tests and micro-benchmarks: the CPU GEMM.
 *
 *   _C.gemm(x, w, y, w_dtype, bias=None, num_threads=0) -> None
 *   _C.bench_gemm(x, w, y, w_dtype, iters=10, num_threads=0, bias=None) -> float
 *
 * x: float32 [m, k]; w: [n, k] raw weights, w_dtype "f32" (4-byte items), "f16" or "bf16"
 * (2-byte items, e.g. a numpy uint16 view); y: writable float32 [m, n]; bias: float32 [n].
 * All C-contiguous buffers.  gemm writes y = x·w^T (+bias) through cpu_gemm_linear;
 * bench_gemm does the same `iters` times (after one warm-up) and returns the best seconds per
 * call.  num_threads 0 = the threadpool default (affinity / LIGHTLLM_NUM_THREADS).  The pool
 * is created per call and the GIL is released around the C work.
 */
#include "py/py_common.h"

#include <time.h>

#include "backend/cpu/cpu_gemm.h"
#include "core/threadpool.h"

typedef struct py_bench_gemm_bufs {
    Py_buffer x, w, y, bias;
    int has_x, has_w, has_y, has_bias;
    tensor_t wt;
    int64_t m, n, k;
} py_bench_gemm_bufs;

static void py_bench_release(py_bench_gemm_bufs *b)
{
    if (b->has_x) PyBuffer_Release(&b->x);
    if (b->has_w) PyBuffer_Release(&b->w);
    if (b->has_y) PyBuffer_Release(&b->y);
    if (b->has_bias) PyBuffer_Release(&b->bias);
}

static int py_bench_is_f32(const Py_buffer *v)
{
    return v->itemsize == 4 && v->format && (strcmp(v->format, "f") == 0 || strcmp(v->format, "<f") == 0 ||
                                             strcmp(v->format, "=f") == 0);
}

/* Fills b from the Python arguments; on error sets a Python exception and returns -1. */
static int py_bench_get_bufs(py_bench_gemm_bufs *b, PyObject *xo, PyObject *wo, PyObject *yo,
                             const char *w_dtype, PyObject *biaso)
{
    memset(b, 0, sizeof(*b));
    dtype_t dt;
    int w_itemsize;
    if (strcmp(w_dtype, "f32") == 0) { dt = DTYPE_F32; w_itemsize = 4; }
    else if (strcmp(w_dtype, "f16") == 0) { dt = DTYPE_F16; w_itemsize = 2; }
    else if (strcmp(w_dtype, "bf16") == 0) { dt = DTYPE_BF16; w_itemsize = 2; }
    else {
        PyErr_Format(PyExc_ValueError, "w_dtype must be 'f32', 'f16' or 'bf16', got '%s'", w_dtype);
        return -1;
    }
    const int ro = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
    if (PyObject_GetBuffer(xo, &b->x, ro) < 0) return -1;
    b->has_x = 1;
    if (PyObject_GetBuffer(wo, &b->w, ro) < 0) return -1;
    b->has_w = 1;
    if (PyObject_GetBuffer(yo, &b->y, ro | PyBUF_WRITABLE) < 0) return -1;
    b->has_y = 1;
    if (b->x.ndim != 2 || !py_bench_is_f32(&b->x)) {
        PyErr_SetString(PyExc_ValueError, "x must be a C-contiguous float32 [m, k] array");
        return -1;
    }
    if (b->w.ndim != 2 || b->w.itemsize != w_itemsize) {
        PyErr_Format(PyExc_ValueError, "w must be a C-contiguous [n, k] array of %d-byte items for %s",
                     w_itemsize, w_dtype);
        return -1;
    }
    if (b->y.ndim != 2 || !py_bench_is_f32(&b->y)) {
        PyErr_SetString(PyExc_ValueError, "y must be a writable C-contiguous float32 [m, n] array");
        return -1;
    }
    b->m = b->x.shape[0];
    b->k = b->x.shape[1];
    b->n = b->w.shape[0];
    if (b->w.shape[1] != b->k || b->y.shape[0] != b->m || b->y.shape[1] != b->n) {
        PyErr_Format(PyExc_ValueError, "shape mismatch: x [%zd, %zd], w [%zd, %zd], y [%zd, %zd]",
                     b->x.shape[0], b->x.shape[1], b->w.shape[0], b->w.shape[1], b->y.shape[0],
                     b->y.shape[1]);
        return -1;
    }
    if (biaso && biaso != Py_None) {
        if (PyObject_GetBuffer(biaso, &b->bias, ro) < 0) return -1;
        b->has_bias = 1;
        if (b->bias.ndim != 1 || !py_bench_is_f32(&b->bias) || b->bias.shape[0] != b->n) {
            PyErr_SetString(PyExc_ValueError, "bias must be a C-contiguous float32 [n] array");
            return -1;
        }
    }
    b->wt = (tensor_t){.data = b->w.buf, .dtype = dt, .ndim = 2, .shape = {b->n, b->k}};
    return 0;
}

static void py_bench_run(threadpool *tp, const py_bench_gemm_bufs *b)
{
    cpu_gemm_linear(tp, b->x.buf, b->k, &b->wt, b->has_bias ? b->bias.buf : NULL, b->y.buf, b->n,
                    b->m);
}

static double py_bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static PyObject *py_bench_gemm(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "w", "y", "w_dtype", "bias", "num_threads", NULL};
    PyObject *xo, *wo, *yo, *biaso = Py_None;
    const char *w_dtype;
    int num_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOs|Oi:gemm", kwlist, &xo, &wo, &yo, &w_dtype,
                                     &biaso, &num_threads))
        return NULL;
    py_bench_gemm_bufs b;
    if (py_bench_get_bufs(&b, xo, wo, yo, w_dtype, biaso) < 0) {
        py_bench_release(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    threadpool *tp = threadpool_create(num_threads);
    py_bench_run(tp, &b);
    threadpool_free(tp);
    Py_END_ALLOW_THREADS
    py_bench_release(&b);
    Py_RETURN_NONE;
}

static PyObject *py_bench_bench_gemm(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "w", "y", "w_dtype", "iters", "num_threads", "bias", NULL};
    PyObject *xo, *wo, *yo, *biaso = Py_None;
    const char *w_dtype;
    int iters = 10, num_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOs|iiO:bench_gemm", kwlist, &xo, &wo, &yo,
                                     &w_dtype, &iters, &num_threads, &biaso))
        return NULL;
    if (iters < 1) {
        PyErr_SetString(PyExc_ValueError, "iters must be >= 1");
        return NULL;
    }
    py_bench_gemm_bufs b;
    if (py_bench_get_bufs(&b, xo, wo, yo, w_dtype, biaso) < 0) {
        py_bench_release(&b);
        return NULL;
    }
    double best = 1e30;
    Py_BEGIN_ALLOW_THREADS
    threadpool *tp = threadpool_create(num_threads);
    py_bench_run(tp, &b); /* warm-up */
    for (int i = 0; i < iters; i++) {
        double t0 = py_bench_now_s();
        py_bench_run(tp, &b);
        double dt = py_bench_now_s() - t0;
        if (dt < best) best = dt;
    }
    threadpool_free(tp);
    Py_END_ALLOW_THREADS
    py_bench_release(&b);
    return PyFloat_FromDouble(best);
}

static PyMethodDef py_bench_methods[] = {
    {"gemm", (PyCFunction)(void (*)(void))py_bench_gemm, METH_VARARGS | METH_KEYWORDS,
     "gemm(x, w, y, w_dtype, bias=None, num_threads=0): y = x @ w.T (+ bias) on the CPU backend."},
    {"bench_gemm", (PyCFunction)(void (*)(void))py_bench_bench_gemm, METH_VARARGS | METH_KEYWORDS,
     "bench_gemm(x, w, y, w_dtype, iters=10, num_threads=0, bias=None) -> best seconds per call."},
    {NULL, NULL, 0, NULL},
};

int py_bench_register(PyObject *m)
{
    return PyModule_AddFunctions(m, py_bench_methods);
}
