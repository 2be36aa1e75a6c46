/* The parts of the extension module: one line per binding file (py_<part>.c), which
 * defines `int engine_add_<part>(PyObject *module)`; module.c calls each at import. */
#ifndef INSANE_ENGINE_PARTS_H
#define INSANE_ENGINE_PARTS_H
#include <Python.h>

#define ENGINE_PARTS(X) \
    X(info) \
    X(walk) \
    X(aead) \
    X(txstream) \
    X(rxstream) \
    X(publish) \
    X(spin)

#define ENGINE_DECLARE(part) int engine_add_##part(PyObject *module);
ENGINE_PARTS(ENGINE_DECLARE)
#undef ENGINE_DECLARE

#endif
