/* Native versions of the two per-message steps that the profile points at.
 *
 * insane/protocol/speedups.py holds the reference Python versions of the same functions and picks this
 * module when it was built; tests/test_speedups.py checks that both give the same results on
 * random and hostile input.  Nothing here keeps state or touches a socket.
 *
 *   scan_plain(data, pos, table) -> (runs, pos)
 *       Walks the frames of datagram ``data`` from offset ``pos`` for as long as they are plain
 *       MSG frames (no reply, headers or queue groups) whose subject bytes are a key of
 *       ``table``; returns the runs of consecutive frames with the same subject as
 *       [(table[subject], [payload, ...]), ...] and the offset of the first frame it did not
 *       take (the caller decodes that one the general way, errors included).
 *
 *   run_callback(cb, msg) -> None | (coroutine, yielded)
 *       Calls the async callback and runs the coroutine until it returns (None) or suspends
 *       (the coroutine and what it yielded, for a task to carry on).  Exceptions propagate.
 *       PyIter_Send spares the StopIteration that coro.send() raises on every return.
 *
 *   MsgBase
 *       The fields of a received message (subject, data, reply, headers, sid, _session) in a
 *       C struct; insane.message.Msg adds the methods.  Creating one costs no Python code.
 *
 *   run_plain(cb, msg_type, subject, payloads, start, sid, session, limit)
 *       -> (index, outcome, value)
 *       The delivery loop of a callback subscription: for payloads[start:], builds each
 *       message and runs the callback as run_callback does, until the end (outcome 0), a
 *       payload of ``limit`` bytes or more (1: the caller reports it and goes on at index+1),
 *       a callback that raised (2, the exception) or one that suspended (3, (coro, yielded)).
 *
 *   append_plain(queues, subject, reply, payload) -> int
 *       Appends one MSG frame with no headers or queue groups to the datagram each OutQueue
 *       is building (``q.buf``, sealed first through ``q.room(n)`` when the frame would not
 *       fit ``q.limit``); returns the frame's size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#define FRAME_MSG 5
#define FRAME_HEAD 4 /* type, flags, body length (u16) */
#define MSG_HEAD 9   /* subject len u16, reply len u16, headers len u32, queue count u8 */

static inline Py_ssize_t be16(const unsigned char *p) { return ((Py_ssize_t)p[0] << 8) | p[1]; }

static PyObject *
scan_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "scan_plain(data: bytes, pos: int, table: dict)");
        return NULL;
    }
    PyObject *table = args[2];
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t end = PyBytes_GET_SIZE(args[0]);
    if (pos < 0)
        pos = 0;
    PyObject *runs = PyList_New(0);
    if (runs == NULL)
        return NULL;
    /* Consecutive frames usually share a subject: reuse the last lookup and run. */
    const unsigned char *last_subject = NULL;
    Py_ssize_t last_len = 0;
    PyObject *last_entry = NULL; /* borrowed from table, which the caller keeps alive */
    PyObject *payloads = NULL;   /* borrowed from the current run */

    while (pos + FRAME_HEAD + MSG_HEAD <= end) {
        const unsigned char *f = p + pos;
        if (f[0] != FRAME_MSG)
            break;
        Py_ssize_t blen = be16(f + 2);
        Py_ssize_t fend = pos + FRAME_HEAD + blen;
        if (fend > end || blen < MSG_HEAD)
            break;
        Py_ssize_t slen = be16(f + 4);
        if (slen == 0 || f[6] || f[7] || f[8] || f[9] || f[10] || f[11] || f[12])
            break; /* reply, headers or queue groups: not plain */
        Py_ssize_t s0 = pos + FRAME_HEAD + MSG_HEAD;
        Py_ssize_t s1 = s0 + slen;
        if (s1 > fend)
            break;
        if (last_entry == NULL || slen != last_len || memcmp(p + s0, last_subject, slen) != 0) {
            PyObject *key = PyBytes_FromStringAndSize((const char *)p + s0, slen);
            if (key == NULL)
                goto error;
            PyObject *entry = PyDict_GetItemWithError(table, key);
            Py_DECREF(key);
            if (entry == NULL) {
                if (PyErr_Occurred())
                    goto error;
                break;
            }
            payloads = PyList_New(0);
            if (payloads == NULL)
                goto error;
            PyObject *run = PyTuple_New(2);
            if (run == NULL) {
                Py_DECREF(payloads);
                goto error;
            }
            Py_INCREF(entry);
            PyTuple_SET_ITEM(run, 0, entry);
            PyTuple_SET_ITEM(run, 1, payloads); /* the run owns it; we keep a borrowed one */
            int rc = PyList_Append(runs, run);
            Py_DECREF(run);
            if (rc < 0)
                goto error;
            last_entry = entry;
            last_subject = p + s0;
            last_len = slen;
        }
        PyObject *payload = PyBytes_FromStringAndSize((const char *)p + s1, fend - s1);
        if (payload == NULL)
            goto error;
        int rc = PyList_Append(payloads, payload);
        Py_DECREF(payload);
        if (rc < 0)
            goto error;
        pos = fend;
    }
    return Py_BuildValue("(Nn)", runs, pos);

error:
    Py_DECREF(runs);
    return NULL;
}

static PyObject *
run_callback(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "run_callback(cb, msg)");
        return NULL;
    }
    PyObject *coro = PyObject_CallOneArg(args[0], args[1]);
    if (coro == NULL)
        return NULL;
    PyObject *result = NULL;
    PySendResult r = PyIter_Send(coro, Py_None, &result);
    if (r == PYGEN_RETURN) {
        Py_DECREF(coro);
        Py_XDECREF(result);
        Py_RETURN_NONE;
    }
    if (r == PYGEN_ERROR) {
        Py_DECREF(coro);
        return NULL;
    }
    return Py_BuildValue("(NN)", coro, result);
}

/* ------------------------------------------------------------------------ MsgBase */

typedef struct {
    PyObject_HEAD
    PyObject *subject;
    PyObject *data;
    PyObject *reply;
    PyObject *headers;
    PyObject *sid;
    PyObject *session;
} MsgBase;

static PyObject *empty_str; /* "" */
static PyObject *zero;      /* 0 */

static int
msg_traverse(MsgBase *self, visitproc visit, void *arg)
{
    Py_VISIT(self->subject);
    Py_VISIT(self->data);
    Py_VISIT(self->reply);
    Py_VISIT(self->headers);
    Py_VISIT(self->sid);
    Py_VISIT(self->session);
    return 0;
}

static int
msg_clear(MsgBase *self)
{
    Py_CLEAR(self->subject);
    Py_CLEAR(self->data);
    Py_CLEAR(self->reply);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->sid);
    Py_CLEAR(self->session);
    return 0;
}

static void
msg_dealloc(MsgBase *self)
{
    PyObject_GC_UnTrack(self);
    msg_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline void
msg_set(MsgBase *m, PyObject *subject, PyObject *data, PyObject *reply, PyObject *headers,
        PyObject *sid, PyObject *session)
{
    Py_INCREF(subject);
    Py_XSETREF(m->subject, subject);
    Py_INCREF(data);
    Py_XSETREF(m->data, data);
    Py_INCREF(reply);
    Py_XSETREF(m->reply, reply);
    Py_INCREF(headers);
    Py_XSETREF(m->headers, headers);
    Py_INCREF(sid);
    Py_XSETREF(m->sid, sid);
    Py_INCREF(session);
    Py_XSETREF(m->session, session);
}

static int
msg_init(MsgBase *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"subject", "data", "reply", "headers", "sid", "session", NULL};
    PyObject *subject, *data, *reply = empty_str, *headers = Py_None, *sid = zero;
    PyObject *session = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OOOO", kwlist, &subject, &data, &reply,
                                     &headers, &sid, &session))
        return -1;
    msg_set(self, subject, data, reply, headers, sid, session);
    return 0;
}

static PyMemberDef msg_members[] = {
    {"subject", T_OBJECT, offsetof(MsgBase, subject), 0, "the subject it was published to"},
    {"data", T_OBJECT, offsetof(MsgBase, data), 0, "the payload (bytes)"},
    {"reply", T_OBJECT, offsetof(MsgBase, reply), 0, "the reply subject, or ''"},
    {"headers", T_OBJECT, offsetof(MsgBase, headers), 0, "the headers, or None"},
    {"sid", T_OBJECT, offsetof(MsgBase, sid), 0, "the subscription's id"},
    {"_session", T_OBJECT, offsetof(MsgBase, session), 0, "the session it came through"},
    {NULL},
};

static PyTypeObject MsgBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane._speedups.MsgBase",
    .tp_doc = "The fields of a received message; insane.message.Msg adds the methods.",
    .tp_basicsize = sizeof(MsgBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)msg_init,
    .tp_dealloc = (destructor)msg_dealloc,
    .tp_traverse = (traverseproc)msg_traverse,
    .tp_clear = (inquiry)msg_clear,
    .tp_members = msg_members,
};

static PyObject *
new_msg(PyTypeObject *type, PyObject *subject, PyObject *data, PyObject *reply,
        PyObject *headers, PyObject *sid, PyObject *session)
{
    MsgBase *m = (MsgBase *)type->tp_alloc(type, 0);
    if (m == NULL)
        return NULL;
    msg_set(m, subject, data, reply, headers, sid, session);
    return (PyObject *)m;
}

/* ------------------------------------------------------------------------ delivery */

static PyObject *
run_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyType_Check(args[1]) || !PyList_Check(args[3]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], &MsgBaseType)) {
        PyErr_SetString(PyExc_TypeError, "run_plain(cb, msg_type, subject, payloads: list, "
                                         "start, sid, session, limit)");
        return NULL;
    }
    PyObject *cb = args[0], *subject = args[2], *payloads = args[3];
    PyTypeObject *type = (PyTypeObject *)args[1];
    PyObject *sid = args[5], *session = args[6];
    Py_ssize_t i = PyLong_AsSsize_t(args[4]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t limit = PyLong_AsSsize_t(args[7]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0)
        i = 0;
    for (; i < PyList_GET_SIZE(payloads); i++) {
        PyObject *payload = PyList_GET_ITEM(payloads, i);
        if (PyBytes_Check(payload) && PyBytes_GET_SIZE(payload) >= limit)
            return Py_BuildValue("(niO)", i, 1, Py_None);
        PyObject *msg = new_msg(type, subject, payload, empty_str, Py_None, sid, session);
        if (msg == NULL)
            return NULL;
        PyObject *coro = PyObject_CallOneArg(cb, msg);
        Py_DECREF(msg);
        PyObject *result = NULL;
        PySendResult r = PYGEN_ERROR;
        if (coro != NULL) {
            r = PyIter_Send(coro, Py_None, &result);
            if (r == PYGEN_RETURN) {
                Py_DECREF(coro);
                Py_XDECREF(result);
                continue;
            }
            if (r == PYGEN_NEXT)
                return Py_BuildValue("(ni(NN))", i, 3, coro, result);
            Py_DECREF(coro);
        }
        /* The callback raised (or could not be called): hand the exception over. */
        PyObject *etype, *exc, *tb;
        PyErr_Fetch(&etype, &exc, &tb);
        if (etype == NULL)
            return NULL;
        PyErr_NormalizeException(&etype, &exc, &tb);
        if (!PyErr_GivenExceptionMatches(etype, PyExc_Exception)) {
            PyErr_Restore(etype, exc, tb); /* BaseException (cancellation, exit): propagate */
            return NULL;
        }
        if (tb != NULL)
            PyException_SetTraceback(exc, tb);
        Py_DECREF(etype);
        Py_XDECREF(tb);
        return Py_BuildValue("(niN)", i, 2, exc);
    }
    return Py_BuildValue("(niO)", i, 0, Py_None);
}

/* ------------------------------------------------------------------------ publishing */

static PyObject *str_buf, *str_limit, *str_room;

static int
append_one(PyObject *q, const unsigned char *head, Py_ssize_t size, PyObject *sb, PyObject *rb,
           PyObject *payload)
{
    PyObject *buf = PyObject_GetAttr(q, str_buf);
    if (buf == NULL)
        return -1;
    PyObject *lim = PyObject_GetAttr(q, str_limit);
    if (lim == NULL) {
        Py_DECREF(buf);
        return -1;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(lim);
    Py_DECREF(lim);
    if (limit == -1 && PyErr_Occurred()) {
        Py_DECREF(buf);
        return -1;
    }
    if (!PyByteArray_Check(buf)) {
        Py_DECREF(buf);
        PyErr_SetString(PyExc_TypeError, "OutQueue.buf must be a bytearray");
        return -1;
    }
    if (PyByteArray_GET_SIZE(buf) + size > limit) {
        Py_DECREF(buf);
        PyObject *n = PyLong_FromSsize_t(size);
        if (n == NULL)
            return -1;
        buf = PyObject_CallMethodOneArg(q, str_room, n);
        Py_DECREF(n);
        if (buf == NULL)
            return -1;
        if (!PyByteArray_Check(buf)) {
            Py_DECREF(buf);
            PyErr_SetString(PyExc_TypeError, "OutQueue.room() must return a bytearray");
            return -1;
        }
    }
    Py_ssize_t at = PyByteArray_GET_SIZE(buf);
    if (PyByteArray_Resize(buf, at + size) < 0) {
        Py_DECREF(buf);
        return -1;
    }
    char *out = PyByteArray_AS_STRING(buf) + at;
    memcpy(out, head, FRAME_HEAD + MSG_HEAD);
    out += FRAME_HEAD + MSG_HEAD;
    memcpy(out, PyBytes_AS_STRING(sb), PyBytes_GET_SIZE(sb));
    out += PyBytes_GET_SIZE(sb);
    memcpy(out, PyBytes_AS_STRING(rb), PyBytes_GET_SIZE(rb));
    out += PyBytes_GET_SIZE(rb);
    memcpy(out, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload));
    Py_DECREF(buf);
    return 0;
}

static PyObject *
append_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyTuple_Check(args[0]) || !PyBytes_Check(args[1]) ||
        !PyBytes_Check(args[2]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "append_plain(queues: tuple, subject: bytes, reply: bytes, payload: bytes)");
        return NULL;
    }
    PyObject *sb = args[1], *rb = args[2], *payload = args[3];
    Py_ssize_t slen = PyBytes_GET_SIZE(sb), rlen = PyBytes_GET_SIZE(rb);
    Py_ssize_t body = MSG_HEAD + slen + rlen + PyBytes_GET_SIZE(payload);
    if (slen > 0xFFFF || rlen > 0xFFFF || body > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "frame too large for append_plain");
        return NULL;
    }
    unsigned char head[FRAME_HEAD + MSG_HEAD] = {
        FRAME_MSG, 0, (unsigned char)(body >> 8), (unsigned char)body,
        (unsigned char)(slen >> 8), (unsigned char)slen,
        (unsigned char)(rlen >> 8), (unsigned char)rlen,
        0, 0, 0, 0, 0,
    };
    Py_ssize_t size = FRAME_HEAD + body;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[0]); i++) {
        if (append_one(PyTuple_GET_ITEM(args[0], i), head, size, sb, rb, payload) < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(size);
}

static PyMethodDef methods[] = {
    {"scan_plain", (PyCFunction)(void (*)(void))scan_plain, METH_FASTCALL,
     "Take the plain, known-subject MSG frames at pos: (runs, pos)."},
    {"run_callback", (PyCFunction)(void (*)(void))run_callback, METH_FASTCALL,
     "Run an async callback until it returns (None) or suspends ((coroutine, yielded))."},
    {"run_plain", (PyCFunction)(void (*)(void))run_plain, METH_FASTCALL,
     "Deliver payloads to an async callback: (index, outcome, value)."},
    {"append_plain", (PyCFunction)(void (*)(void))append_plain, METH_FASTCALL,
     "Append a plain MSG frame to each OutQueue's datagram; returns its size."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "insane._speedups",
    "Native fast paths; see insane/protocol/speedups.py for the reference versions.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    empty_str = PyUnicode_FromString("");
    zero = PyLong_FromLong(0);
    str_buf = PyUnicode_InternFromString("buf");
    str_limit = PyUnicode_InternFromString("limit");
    str_room = PyUnicode_InternFromString("room");
    if (!empty_str || !zero || !str_buf || !str_limit || !str_room)
        return NULL;
    if (PyType_Ready(&MsgBaseType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&MsgBaseType);
    if (PyModule_AddObject(m, "MsgBase", (PyObject *)&MsgBaseType) < 0) {
        Py_DECREF(&MsgBaseType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
