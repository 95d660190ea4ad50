/* module.c — lightllm._C module init: build facts and the register calls of each binding. */
#include "py/py_common.h"

PyObject *py_raise_status(status_t code)
{
    PyObject *type = PyExc_RuntimeError;
    switch (code) {
    case STATUS_INVALID_ARG: type = PyExc_ValueError; break;
    case STATUS_NOT_FOUND: type = PyExc_FileNotFoundError; break;
    case STATUS_NO_MEMORY: type = PyExc_MemoryError; break;
    default: break;
    }
    PyErr_SetString(type, status_message());
    return NULL;
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "lightllm._C", "lightllm C core", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void)
{
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
#ifdef LIGHTLLM_WITH_CUDA
    const int with_cuda = 1;
#else
    const int with_cuda = 0;
#endif
    if (PyModule_AddIntConstant(m, "WITH_CUDA", with_cuda) < 0 ||
        py_bench_register(m) < 0 || py_text_register(m) < 0 || py_engine_register(m) < 0 ||
        py_server_register(m) < 0 || py_grammar_register(m) < 0 || py_grammar_matcher_register(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
