/* py_text.h — what other binding files may use of py_text.c: the C vocabulary behind a
 * lightllm._C.DetokVocab object.
 *
 * py_text_vocab_get() returns the detok_vocab owned by `obj`, or NULL with a TypeError set
 * when obj is not a DetokVocab.  The pointer lives as long as the object: a holder (the
 * engine) keeps a strong reference (Py_INCREF) for as long as it uses the pointer.
 */
#ifndef LIGHTLLM_PY_TEXT_H
#define LIGHTLLM_PY_TEXT_H

#include "py/py_common.h"

#include "engine/detokenizer.h"

detok_vocab *py_text_vocab_get(PyObject *obj);

#endif
