/* The publish call in C: `Publisher(node, fallback)` is what `Session.publish` does on its
 * common path, with no Python frame and no coroutine per message.
 *
 *   publisher(subject, payload=b"", reply=None, headers=None) -> awaitable
 *
 * The common path is Session.publish's test (no backpressure, no reply, no headers) and then
 * Outbound.publish_fast's body: a subject in the node's `_tx_fast` table (or a request's reply
 * subject whose family, subjects.reply_family, is in `_tx_reply`), a bytes payload that
 * fits one frame, appended to each destination's datagram through speedups.append_plain, the
 * node's byte count and the subject's message count brought up, a flush asked for once per
 * turn (`_want_flush`) and made at once past FLUSH_BYTES (`_flush`). It returns `READY`, an
 * awaitable that is done (awaiting it gives None; it is a Coroutine to asyncio, so
 * create_task and gather take it too). Anything else is `fallback(...)`'s: the Python
 * coroutine, the reference. tests/test_engine_publish.py holds the two to the same results.
 *
 * The node's attributes are read from its instance dictionary; a subject's fast path is an
 * `_engine.FastSend` (node_base.FastSend's fields in a C struct, the native node's
 * fast_send_class). Both are the node's own objects, so the two paths interleave freely. */
#include "py_common.h"

#include <structmember.h>

#include "parts.h"

/* ------------------------------------------------------------------ READY */

/* A finished awaitable: `await READY` is None at once. */
typedef struct {
    PyObject_HEAD
} ready_object;

static PyObject *ready_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *ready_next(PyObject *Py_UNUSED(self))
{
    return NULL; /* (no exception set: StopIteration, the value None) */
}

static PyObject *ready_send(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(value))
{
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

static PyObject *ready_throw(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw(typ[,val[,tb]])");
        return NULL;
    }
    PyObject *typ = args[0];
    if (PyExceptionInstance_Check(typ))
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    else if (PyExceptionClass_Check(typ))
        PyErr_SetObject(typ, nargs > 1 ? args[1] : NULL);
    else
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
    return NULL;
}

static PyObject *ready_close(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_NONE;
}

static PyMethodDef ready_methods[] = {
    {"send", (PyCFunction)ready_send, METH_O, "Finish: raises StopIteration (the value None)."},
    {"throw", (PyCFunction)(void (*)(void))ready_throw, METH_FASTCALL, "Raise the exception."},
    {"close", (PyCFunction)ready_close, METH_NOARGS, "Nothing to close."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods ready_async = {.am_await = ready_await};

static PyTypeObject ready_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.Ready",
    .tp_basicsize = sizeof(ready_object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An awaitable that is already done (what a publish on the native path returns).",
    .tp_as_async = &ready_async,
    .tp_iter = ready_await,
    .tp_iternext = ready_next,
    .tp_methods = ready_methods,
};

static ready_object ready_singleton = {PyObject_HEAD_INIT(&ready_type)};

/* ------------------------------------------------------------------ FastSend */

/* node_base.FastSend's fields as a C struct: what the Publisher reads and counts per message
 * without an attribute lookup. The Python node's code reads and resets them as attributes. */
typedef struct {
    PyObject_HEAD
    PyObject *ch;
    PyObject *queues;        /* a tuple of OutQueue */
    PyObject *subject_bytes; /* bytes (empty: a request's reply family) */
    PyObject *counts;
    Py_ssize_t max_inline;
    Py_ssize_t msgs;
    Py_ssize_t nbytes;
} fastsend_object;

static int fastsend_traverse(fastsend_object *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ch);
    Py_VISIT(self->queues);
    Py_VISIT(self->subject_bytes);
    Py_VISIT(self->counts);
    return 0;
}

static int fastsend_clear(fastsend_object *self)
{
    Py_CLEAR(self->ch);
    Py_CLEAR(self->queues);
    Py_CLEAR(self->subject_bytes);
    Py_CLEAR(self->counts);
    return 0;
}

static void fastsend_dealloc(fastsend_object *self)
{
    PyObject_GC_UnTrack(self);
    fastsend_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *fastsend_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *ch, *queues, *sb, *counts = NULL;
    Py_ssize_t max_inline, msgs = 0, nbytes = 0;
    static char *kwlist[] = {"ch", "queues", "subject_bytes", "max_inline", "counts", "msgs",
                             "nbytes", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!n|Onn:FastSend", kwlist, &ch,
                                     &PyTuple_Type, &queues, &PyBytes_Type, &sb, &max_inline,
                                     &counts, &msgs, &nbytes))
        return NULL;
    fastsend_object *self = (fastsend_object *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->ch = Py_NewRef(ch);
    self->queues = Py_NewRef(queues);
    self->subject_bytes = Py_NewRef(sb);
    self->counts = counts ? Py_NewRef(counts) : PyTuple_New(0);
    self->max_inline = max_inline;
    self->msgs = msgs;
    self->nbytes = nbytes;
    if (self->counts == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyMemberDef fastsend_members[] = {
    {"ch", T_OBJECT_EX, offsetof(fastsend_object, ch), READONLY, "The channel."},
    {"queues", T_OBJECT_EX, offsetof(fastsend_object, queues), READONLY,
     "The destinations' OutQueues."},
    {"subject_bytes", T_OBJECT_EX, offsetof(fastsend_object, subject_bytes), READONLY,
     "The subject, encoded (empty for a reply family)."},
    {"counts", T_OBJECT_EX, offsetof(fastsend_object, counts), READONLY,
     "(counters, how many of the queues use their transport)"},
    {"max_inline", T_PYSSIZET, offsetof(fastsend_object, max_inline), READONLY,
     "The largest payload that fits in one frame."},
    {"msgs", T_PYSSIZET, offsetof(fastsend_object, msgs), 0,
     "Messages published since the counters were brought up to date."},
    {"nbytes", T_PYSSIZET, offsetof(fastsend_object, nbytes), 0,
     "Their payload bytes."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject fastsend_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.FastSend",
    .tp_basicsize = sizeof(fastsend_object),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "FastSend(ch, queues, subject_bytes, max_inline, counts=(), msgs=0, nbytes=0): "
              "node_base.FastSend in C.",
    .tp_new = fastsend_new,
    .tp_traverse = (traverseproc)fastsend_traverse,
    .tp_clear = (inquiry)fastsend_clear,
    .tp_dealloc = (destructor)fastsend_dealloc,
    .tp_members = fastsend_members,
};

/* ------------------------------------------------------------------ Publisher */

/* FLUSH_BYTES of outbound.py, read at the first Publisher. */
static Py_ssize_t flush_bytes = -1;

static PyObject *append_plain; /* insane.protocol.speedups.append_plain */
static PyObject *empty_bytes;

enum {
    S_BACKPRESSURE, S_TX_FAST, S_OUT_BYTES, S_UNCOUNTED, S_FLUSH_ASKED, S_FLUSH_DUE,
    S_WANT_FLUSH, S_FLUSH, S_TX_REPLY, S_COUNT
};
static const char *const str_text[S_COUNT] = {
    "backpressure", "_tx_fast", "_out_bytes", "_uncounted", "_flush_asked", "flush_due",
    "_want_flush", "_flush", "_tx_reply",
};
static PyObject *str[S_COUNT];

typedef struct {
    PyObject_HEAD
    PyObject *node;
    PyObject *node_dict; /* the node's instance dictionary */
    PyObject *fallback;
    vectorcallfunc vectorcall;
} publisher_object;

static PyObject *publisher_call(PyObject *obj, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames);

static int publisher_traverse(publisher_object *self, visitproc visit, void *arg)
{
    Py_VISIT(self->node);
    Py_VISIT(self->node_dict);
    Py_VISIT(self->fallback);
    return 0;
}

static int publisher_clear(publisher_object *self)
{
    Py_CLEAR(self->node);
    Py_CLEAR(self->node_dict);
    Py_CLEAR(self->fallback);
    return 0;
}

static void publisher_dealloc(publisher_object *self)
{
    PyObject_GC_UnTrack(self);
    publisher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int first_use(void)
{
    if (flush_bytes >= 0)
        return 0;
    if (empty_bytes == NULL && (empty_bytes = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return -1;
    for (int i = 0; i < S_COUNT; i++)
        if (str[i] == NULL && (str[i] = PyUnicode_InternFromString(str_text[i])) == NULL)
            return -1;
    static const char *const speedups[] = {"append_plain", NULL};
    if (py_import_attrs("insane.protocol.speedups", speedups, &append_plain) < 0)
        return -1;
    static const char *const outbound[] = {"FLUSH_BYTES", NULL};
    static PyObject *limit;
    if (py_import_attrs("insane.protocol.outbound", outbound, &limit) < 0)
        return -1;
    Py_ssize_t v = PyLong_AsSsize_t(limit);
    if (v < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "outbound.FLUSH_BYTES must not be negative");
        return -1;
    }
    flush_bytes = v;
    return 0;
}

static PyObject *publisher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *node, *fallback;
    static char *kwlist[] = {"node", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Publisher", kwlist, &node, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "Publisher: fallback must be callable");
        return NULL;
    }
    if (first_use() < 0)
        return NULL;
    PyObject *dict = PyObject_GenericGetDict(node, NULL);
    if (dict == NULL)
        return NULL;
    if (!PyDict_Check(dict)) {
        Py_DECREF(dict);
        PyErr_SetString(PyExc_TypeError, "Publisher: the node's __dict__ must be a dict");
        return NULL;
    }
    publisher_object *self = (publisher_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(dict);
        return NULL;
    }
    self->node = Py_NewRef(node);
    self->node_dict = dict;
    self->fallback = Py_NewRef(fallback);
    self->vectorcall = publisher_call;
    return (PyObject *)self;
}

/* The node's attribute `name` (borrowed), or NULL with an AttributeError. */
static PyObject *node_get(publisher_object *self, int name)
{
    PyObject *v = PyDict_GetItemWithError(self->node_dict, str[name]);
    if (v == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_AttributeError, "the node has no attribute '%U'", str[name]);
    return v;
}

/* `key` in the node's dictionary attribute `table`: 1 found (*out borrowed), 0 not there,
 * -1 error. */
static int table_get(publisher_object *self, int table, PyObject *key, PyObject **out)
{
    PyObject *t = node_get(self, table);
    if (t == NULL)
        return -1;
    if (!PyDict_Check(t)) {
        PyErr_Format(PyExc_TypeError, "the node's %U must be a dict", str[table]);
        return -1;
    }
    *out = PyDict_GetItemWithError(t, key);
    return *out != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
}

/* subjects.reply_family: "_INBOX.<requester>.0" for a request's reply subject
 * "_INBOX.<requester>.<digits>" (a new reference), NULL for any other subject (no error). */
static PyObject *reply_family(PyObject *subject)
{
    static const char prefix[] = "_INBOX.";
    const Py_ssize_t plen = (Py_ssize_t)sizeof prefix - 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(subject);
    int kind = PyUnicode_KIND(subject);
    const void *data = PyUnicode_DATA(subject);
    if (n < plen)
        return NULL;
    for (Py_ssize_t i = 0; i < plen; i++)
        if (PyUnicode_READ(kind, data, i) != (Py_UCS4)prefix[i])
            return NULL;
    Py_ssize_t dot = n - 1;
    while (dot >= plen && PyUnicode_READ(kind, data, dot) != '.')
        dot--;
    if (dot < plen || dot == n - 1) /* (no dot after the prefix, or nothing after it) */
        return NULL;
    for (Py_ssize_t i = plen; i < dot; i++) /* (the requester's part holds no dot) */
        if (PyUnicode_READ(kind, data, i) == '.')
            return NULL;
    for (Py_ssize_t i = dot + 1; i < n; i++)
        if (!Py_UNICODE_ISDIGIT(PyUnicode_READ(kind, data, i)))
            return NULL;
    PyObject *head = PyUnicode_Substring(subject, 0, dot);
    if (head == NULL)
        return NULL;
    PyObject *key = PyUnicode_FromFormat("%U.0", head);
    Py_DECREF(head);
    return key;
}

static int call_node(publisher_object *self, int name)
{
    PyObject *r = PyObject_CallMethodNoArgs(self->node, str[name]);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* publish_fast's body for `fast`; 1 done, 0 not for this path, -1 error. */
static int publish_fast(publisher_object *self, fastsend_object *fast, PyObject *subject,
                        PyObject *payload)
{
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
    if (size > fast->max_inline)
        return 0;
    PyObject *sb = fast->subject_bytes;
    if (PyBytes_GET_SIZE(sb) == 0) {
        if ((sb = PyUnicode_AsUTF8String(subject)) == NULL)
            return -1;
    } else {
        Py_INCREF(sb);
    }
    PyObject *argv[4] = {fast->queues, sb, empty_bytes, payload};
    PyObject *added = PyObject_Vectorcall(append_plain, argv, 4, NULL);
    Py_DECREF(sb);
    if (added == NULL)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(added);
    Py_DECREF(added);
    if (n == -1 && PyErr_Occurred())
        return -1;

    PyObject *out = node_get(self, S_OUT_BYTES);
    if (out == NULL)
        return -1;
    Py_ssize_t out_bytes = PyLong_AsSsize_t(out);
    if (out_bytes == -1 && PyErr_Occurred())
        return -1;
    out_bytes += n;
    PyObject *v = PyLong_FromSsize_t(out_bytes);
    if (v == NULL || PyDict_SetItem(self->node_dict, str[S_OUT_BYTES], v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);

    if (fast->msgs == 0) {
        PyObject *uncounted = node_get(self, S_UNCOUNTED);
        if (uncounted == NULL)
            return -1;
        if (!PyList_Check(uncounted)) {
            PyErr_SetString(PyExc_TypeError, "the node's _uncounted must be a list");
            return -1;
        }
        if (PyList_Append(uncounted, (PyObject *)fast) < 0)
            return -1;
    }
    fast->msgs += 1;
    fast->nbytes += size;

    PyObject *asked = node_get(self, S_FLUSH_ASKED);
    if (asked == NULL)
        return -1;
    int wanted = PyObject_IsTrue(asked);
    if (wanted == 0) {
        PyObject *due = node_get(self, S_FLUSH_DUE);
        if (due == NULL)
            return -1;
        wanted = PyObject_IsTrue(due);
    }
    if (wanted < 0 || (wanted == 0 && call_node(self, S_WANT_FLUSH) < 0))
        return -1;
    if (out_bytes >= flush_bytes && call_node(self, S_FLUSH) < 0)
        return -1;
    return 1;
}

static PyObject *publisher_call(PyObject *obj, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    publisher_object *self = (publisher_object *)obj;
    static const char *const names[] = {"subject", "payload", "reply", "headers"};
    static const py_argspec spec = {"publish", names, 1, 4, PY_ARGS_METHOD};
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *a[4];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0) {
        PyErr_Clear(); /* (the reference raises its own TypeError) */
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    PyObject *subject = a[0], *payload = a[1], *reply = a[2], *headers = a[3];
    int plain = payload != NULL && PyBytes_CheckExact(payload) && PyUnicode_CheckExact(subject) &&
                (headers == NULL || headers == Py_None);
    if (plain && reply != NULL && reply != Py_None) {
        int has_reply = PyObject_IsTrue(reply);
        if (has_reply < 0)
            return NULL;
        plain = !has_reply;
    }
    if (plain) {
        PyObject *pressure = node_get(self, S_BACKPRESSURE);
        if (pressure == NULL)
            return NULL;
        int on = PyObject_IsTrue(pressure);
        if (on < 0)
            return NULL;
        PyObject *fast = NULL;
        if (!on) {
            int found = table_get(self, S_TX_FAST, subject, &fast);
            if (found < 0)
                return NULL;
            PyObject *family = found ? NULL : reply_family(subject);
            if (family == NULL && PyErr_Occurred())
                return NULL;
            if (family != NULL) {
                found = table_get(self, S_TX_REPLY, family, &fast);
                Py_DECREF(family);
                if (found < 0)
                    return NULL;
            }
        }
        if (fast != NULL && Py_IS_TYPE(fast, &fastsend_type)) {
            Py_INCREF(fast); /* (the table may change under the calls below) */
            int done = publish_fast(self, (fastsend_object *)fast, subject, payload);
            Py_DECREF(fast);
            if (done < 0)
                return NULL;
            if (done)
                return Py_NewRef((PyObject *)&ready_singleton);
        }
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyMemberDef publisher_members[] = {
    {"fallback", T_OBJECT_EX, offsetof(publisher_object, fallback), READONLY,
     "What publishes off the native path (Session.publish's coroutine)."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject publisher_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.Publisher",
    .tp_basicsize = sizeof(publisher_object),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Publisher(node, fallback): Session.publish's common path in C (see py_publish.c).",
    .tp_new = publisher_new,
    .tp_traverse = (traverseproc)publisher_traverse,
    .tp_clear = (inquiry)publisher_clear,
    .tp_dealloc = (destructor)publisher_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(publisher_object, vectorcall),
    .tp_members = publisher_members,
};

int engine_add_publish(PyObject *module)
{
    if (py_add_type(module, "Ready", &ready_type) < 0 ||
        py_add_type(module, "FastSend", &fastsend_type) < 0 ||
        py_add_type(module, "Publisher", &publisher_type) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "READY", (PyObject *)&ready_singleton);
}
