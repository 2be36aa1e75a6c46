/* insane.engine._engine: the native data plane's extension module (see engine.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/opensslv.h>

#include "parts.h"

int engine_add_info(PyObject *module)
{
    return PyModule_AddStringConstant(module, "OPENSSL_VERSION", OPENSSL_VERSION_TEXT);
}

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "insane.engine._engine",
    .m_doc = "The native data plane (insane/engine/src).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__engine(void)
{
    PyObject *m = PyModule_Create(&engine_module);
    if (m == NULL)
        return NULL;
#define ENGINE_ADD(part)                 \
    if (engine_add_##part(m) < 0) {      \
        Py_DECREF(m);                    \
        return NULL;                     \
    }
    ENGINE_PARTS(ENGINE_ADD)
#undef ENGINE_ADD
    return m;
}
