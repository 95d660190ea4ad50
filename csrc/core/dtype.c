/* dtype.c — dtype names for error messages. */
#include "core/dtype.h"

const char *dtype_name(dtype_t t)
{
    switch (t) {
    case DTYPE_F32: return "F32";
    case DTYPE_F16: return "F16";
    case DTYPE_BF16: return "BF16";
    case DTYPE_I32: return "I32";
    case DTYPE_I64: return "I64";
    }
    return "?";
}
