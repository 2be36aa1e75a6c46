/* The datagram walk for Python: decode_header, read_position, read_seq and frame_spans with
 * wire.py's signatures, results and WireError reasons (see walk.h). */
#include "py_common.h"

#include "parts.h"
#include "walk.h"

static PyObject *wire_error; /* insane.protocol.wire.WireError, looked up at first use */

static PyObject *raise_walk(enum walk_result r, const struct walk_dgram *h)
{
    static const char *const names[] = {"WireError", NULL};
    if (py_import_attrs("insane.protocol.wire", names, &wire_error) < 0)
        return NULL;
    PyObject *detail = r == WALK_BAD_VERSION && h != NULL
                           ? PyUnicode_FromFormat("version %d", h->version)
                           : PyUnicode_FromString(walk_detail(r));
    if (detail == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(wire_error, "sO", walk_reason(r), detail);
    Py_DECREF(detail);
    if (exc != NULL) {
        PyErr_SetObject(wire_error, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int get_offset(PyObject *obj, size_t *out)
{
    Py_ssize_t v = PyLong_AsSsize_t(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "offset must not be negative");
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static PyObject *decode_header(PyObject *Py_UNUSED(m), PyObject *arg)
{
    py_data b;
    if (py_data_get(arg, &b) < 0)
        return NULL;
    struct walk_dgram h = {0};
    enum walk_result r = walk_header(b.p, b.len, &h);
    py_data_release(&b);
    if (r != WALK_OK)
        return raise_walk(r, &h);
    return Py_BuildValue("(iiIK)", h.version, h.flags, h.domain, (unsigned long long)h.sender);
}

typedef enum walk_result (*frame_reader)(const uint8_t *, size_t, size_t, struct walk_dgram *);

/* The (data, offset) calls: `read` on the frame at offset into *h; -1 with the exception set. */
static int read_at(PyObject *const *args, Py_ssize_t nargs, const char *usage, frame_reader read,
                   struct walk_dgram *h)
{
    size_t off;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (get_offset(args[1], &off) < 0)
        return -1;
    py_data b;
    if (py_data_get(args[0], &b) < 0)
        return -1;
    enum walk_result r = read(b.p, b.len, off, h);
    py_data_release(&b);
    if (r != WALK_OK) {
        raise_walk(r, h);
        return -1;
    }
    return 0;
}

static PyObject *read_position(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    struct walk_dgram h = {0};
    if (read_at(args, nargs, "read_position(data, offset)", walk_position, &h) < 0)
        return NULL;
    return Py_BuildValue("(iK)", h.position_flags, (unsigned long long)h.position);
}

static PyObject *read_seq(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    struct walk_dgram h = {0};
    if (read_at(args, nargs, "read_seq(data, offset)", walk_seq, &h) < 0)
        return NULL;
    return Py_BuildValue("(iIK)", h.kind, h.epoch, (unsigned long long)h.seq);
}

static PyObject *frame_spans(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    size_t pos = WALK_HEADER;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "frame_spans(data, start=16)");
        return NULL;
    }
    if (nargs == 2 && get_offset(args[1], &pos) < 0)
        return NULL;
    py_data b;
    if (py_data_get(args[0], &b) < 0)
        return NULL;
    const uint8_t *d = b.p;
    size_t n = b.len;
    PyObject *spans = PyList_New(0);
    enum walk_result r = WALK_OK;
    while (spans != NULL && pos < n) {
        struct walk_frame f;
        if ((r = walk_frame(d, n, &pos, &f)) != WALK_OK)
            break;
        PyObject *t = Py_BuildValue("(iinn)", f.type, f.flags, (Py_ssize_t)f.start, (Py_ssize_t)f.end);
        if (t == NULL || PyList_Append(spans, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(spans);
            break;
        }
        Py_DECREF(t);
    }
    py_data_release(&b);
    if (spans == NULL)
        return NULL;
    if (r == WALK_OK && PyList_GET_SIZE(spans) == 0)
        r = WALK_EMPTY;
    if (r != WALK_OK) {
        Py_DECREF(spans);
        return raise_walk(r, NULL);
    }
    return spans;
}

static PyMethodDef walk_methods[] = {
    {"decode_header", (PyCFunction)decode_header, METH_O,
     "(version, flags, domain, sender) of a datagram; WireError as wire.decode_header"},
    {"read_position", (PyCFunction)(void (*)(void))read_position, METH_FASTCALL,
     "(flags, position) of the POSITION frame at offset"},
    {"read_seq", (PyCFunction)(void (*)(void))read_seq, METH_FASTCALL,
     "(kind, epoch, seq) of the SEQ frame at offset"},
    {"frame_spans", (PyCFunction)(void (*)(void))frame_spans, METH_FASTCALL,
     "[(type, flags, body start, body end)] of the frames from start"},
    {NULL, NULL, 0, NULL},
};

int engine_add_walk(PyObject *module)
{
    return PyModule_AddFunctions(module, walk_methods);
}
