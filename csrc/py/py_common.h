/* py_common.h — shared helpers of the CPython binding (the only folder that sees Python.h).
 *
 * Every binding file registers its types/functions through a py_<file>_register(module)
 * call made from module.c.  py_raise_status() turns a core status_t into the matching
 * Python exception with the core's message.
 */
#ifndef LIGHTLLM_PY_COMMON_H
#define LIGHTLLM_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/status.h"

/* Sets the Python error for `code` (status_message() as text) and returns NULL. */
PyObject *py_raise_status(status_t code);

int py_bench_register(PyObject *m);    /* py_bench.c: kernel micro-benchmarks (GEMM) */
int py_text_register(PyObject *m);     /* py_text.c: Detokenizer type, find_stop */
int py_engine_register(PyObject *m);   /* py_engine.c: Engine type, sampling validation */
int py_server_register(PyObject *m);   /* py_server.c: shared-memory server parts (router, backend, client) */
int py_grammar_register(PyObject *m);  /* py_grammar.c: grammar front ends + reference recognizer */
int py_grammar_matcher_register(PyObject *m);  /* py_grammar_matcher.c: compiler cache, DPDA matcher, masks */

#endif
