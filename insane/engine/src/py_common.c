/* py_common: the helpers the binding files share (see py_common.h). */
#include "py_common.h"

int py_parse_args_slow(const py_argspec *spec, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames, PyObject **out)
{
    const char *fname = spec->fname;
    Py_ssize_t nmax = spec->nmax;
    if (nargs > nmax) {
        if (spec->style == PY_ARGS_AT_MOST)
            PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)",
                         fname, nmax, nargs);
        else if (spec->nmin == nmax)
            PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s but %zd %s given",
                         fname, nmax + 1, nmax ? "s" : "", nargs + 1, nargs ? "were" : "was");
        else
            PyErr_Format(PyExc_TypeError,
                         "%s() takes from %zd to %zd positional arguments but %zd were given",
                         fname, spec->nmin + 1, nmax + 1, nargs + 1);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nmax; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t i = 0;
        while (i < nmax && PyUnicode_CompareWithASCIIString(key, spec->names[i]) != 0)
            i++;
        if (i == nmax) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         key);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         spec->names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < spec->nmin; i++) {
        if (out[i] != NULL)
            continue;
        if (spec->style == PY_ARGS_AT_MOST)
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         spec->names[i]);
        else
            PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: '%s'",
                         fname, spec->names[i]);
        return -1;
    }
    return 0;
}

int py_import_attrs(const char *module, const char *const *names, PyObject **slots)
{
    if (slots[0] != NULL)
        return 0;
    PyObject *got[PY_IMPORT_MAX];
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL)
        return -1;
    size_t n = 0;
    while (names[n] != NULL && n < PY_IMPORT_MAX &&
           (got[n] = PyObject_GetAttrString(mod, names[n])) != NULL)
        n++;
    Py_DECREF(mod);
    if (names[n] != NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "py_import_attrs: too many names");
        while (n > 0)
            Py_DECREF(got[--n]);
        return -1;
    }
    if (slots[0] != NULL) { /* (the import ran code that got here first) */
        while (n > 0)
            Py_DECREF(got[--n]);
        return 0;
    }
    memcpy(slots, got, n * sizeof *got); /* (only now: attribute lookups may run code) */
    return 0;
}

int py_no_delete(PyObject *value, const char *message)
{
    if (value != NULL)
        return 0;
    PyErr_SetString(PyExc_AttributeError, message);
    return -1;
}

int py_add_type(PyObject *module, const char *name, PyTypeObject *type)
{
    if (PyType_Ready(type) < 0)
        return -1;
    return PyModule_AddObjectRef(module, name, (PyObject *)type);
}
