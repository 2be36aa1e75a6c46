/* py_common: what the binding files (py_*.c) share: the argument parser of METH_FASTCALL |
 * METH_KEYWORDS methods (with the exact TypeError messages each caller had), bytes-like
 * access, float parsing, lazy imports from the Python reference, "cannot delete" setters and
 * type registration. Binding-side (Python.h); the fuzzer build, which links no py_* file,
 * never sees it. */
#ifndef INSANE_ENGINE_PY_COMMON_H
#define INSANE_ENGINE_PY_COMMON_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The wording of a parser's TypeErrors. */
enum py_args_style {
    /* "f() takes at most N arguments (M given)", "f() missing required argument 'x'" */
    PY_ARGS_AT_MOST,
    /* a def method's, self counted: "C.f() takes N positional arguments but M were given",
     * "C.f() missing 1 required positional argument: 'x'" (the first one missing) */
    PY_ARGS_METHOD,
};

/* A method's parameters: `fname` as the messages name it ("open", "SendStream.sent"),
 * `names[0..nmax)`, the first `nmin` required. */
typedef struct {
    const char *fname;
    const char *const *names;
    Py_ssize_t nmin, nmax;
    enum py_args_style style;
} py_argspec;

int py_parse_args_slow(const py_argspec *spec, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames, PyObject **out);

/* The arguments by position or name into out[0..nmax) (borrowed; NULL: not given), or -1
 * with a TypeError. */
static inline int py_parse_args(const py_argspec *spec, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames, PyObject **out)
{
    if (kwnames == NULL && nargs >= spec->nmin && nargs <= spec->nmax) {
        for (Py_ssize_t i = 0; i < spec->nmax; i++)
            out[i] = i < nargs ? args[i] : NULL;
        return 0;
    }
    return py_parse_args_slow(spec, args, nargs, kwnames, out);
}

/* A float (an int taken as one, anything with __float__). */
static inline int py_double(PyObject *o, double *out)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* A bytes-like object's bytes: a bytes object's directly, anything else's through a buffer
 * (give it back with py_data_release). */
typedef struct {
    const uint8_t *p;
    size_t len;
    Py_buffer view;
    int has_view;
} py_data;

static inline int py_data_get(PyObject *obj, py_data *d)
{
    d->has_view = 0;
    if (PyBytes_Check(obj)) {
        d->p = (const uint8_t *)PyBytes_AS_STRING(obj);
        d->len = (size_t)PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, &d->view, PyBUF_SIMPLE) < 0)
        return -1;
    d->has_view = 1;
    d->p = d->view.buf;
    d->len = (size_t)d->view.len;
    return 0;
}

static inline void py_data_release(py_data *d)
{
    if (d->has_view)
        PyBuffer_Release(&d->view);
    d->has_view = 0;
}

/* The attributes names[0..] (NULL-terminated, at most PY_IMPORT_MAX) of `module` into
 * slots[] (new references, kept for good), all or none; nothing to do when slots[0] is set. */
#define PY_IMPORT_MAX 8
int py_import_attrs(const char *module, const char *const *names, PyObject **slots);

/* -1 with AttributeError(message) when a setter is asked to delete (value NULL), else 0. */
int py_no_delete(PyObject *value, const char *message);

/* PyType_Ready, then the type as module.name. */
int py_add_type(PyObject *module, const char *name, PyTypeObject *type);

#endif
