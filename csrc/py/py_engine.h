/* py_engine.h — what other binding files use of py_engine.c: the C engine behind an Engine
 * object, and the readers that turn Python request fields into C structs (ValueError naming the
 * field on bad input). */
#ifndef LIGHTLLM_PY_ENGINE_H
#define LIGHTLLM_PY_ENGINE_H

#include "py/py_common.h"

#include "engine/engine.h"

/* The engine owned by `obj` (a lightllm._C.Engine), or NULL with TypeError set. */
engine *py_engine_get(PyObject *obj);
/* A list of ints into a new PyMem array (*out, *n); -1 with ValueError naming `what`. */
int py_int_list(PyObject *obj, const char *what, int32_t **out, int32_t *n);
/* A sampling dict (SamplingParams.engine_dict()) into *sp; -1 with ValueError naming the key. */
int py_sampling_from_dict(PyObject *d, sampling_params_t *sp);

#endif
