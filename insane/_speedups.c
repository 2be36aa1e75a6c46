/* Native versions of the two per-message steps that the profile points at.
 *
 * insane/speedups.py holds the reference Python versions of the same functions and picks this
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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

static PyMethodDef methods[] = {
    {"scan_plain", (PyCFunction)(void (*)(void))scan_plain, METH_FASTCALL,
     "Take the plain, known-subject MSG frames at pos: (runs, pos)."},
    {"run_callback", (PyCFunction)(void (*)(void))run_callback, METH_FASTCALL,
     "Run an async callback until it returns (None) or suspends ((coroutine, yielded))."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "insane._speedups",
    "Native fast paths; see insane/speedups.py for the reference versions.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
