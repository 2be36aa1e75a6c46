/* py_txstream: the engine's SendStream and SendStats, CPython types over txstream.c.
 *
 * SendStream is a drop-in for insane.protocol.reliability.SendStream (same constructor,
 * methods, attributes and results); the datagrams it keeps are C copies in the core, and
 * bytes objects are built only to resend one (on_nack) or to count the messages of one
 * evicted unacknowledged (count_messages).  SendStats is a live view of a stream's counters
 * (or a free-standing set of them), equal to the reference's SendStats of the same values.
 * Deviations, all outside what the node does: numbers are int64 (beyond: OverflowError;
 * ACK and NACK numbers and the byte settings saturate, which gives the same results), times
 * are doubles (`now` given as an int is kept as a float), datagrams are bytes-like and come
 * back as bytes, count_messages must return an int in 0..2^32-1 (the reference's array('I')
 * rule), the resend guard of a number that was never sent is not remembered, and an
 * instance has no __dict__ (a subclass does): the interpreter's method cache for types
 * without one saves some 20 ns a call.
 */
#include "py_common.h"
#include <structmember.h>

#include "parts.h"
#include "txstream.h"

/* The settings: kept as given (read back as such), used as int64 or double by the core. */
enum { CONF_max_bytes, CONF_window, CONF_max_age, CONF_tail_delay, CONF_tail_interval,
       CONF_resend_guard, NCONF };

static const struct {
    size_t offset;
    int is_int; /* int64 (saturated), or double */
} conf_fields[NCONF] = {
    [CONF_max_bytes] = {offsetof(txstream, max_bytes), 1},
    [CONF_window] = {offsetof(txstream, window), 1},
    [CONF_max_age] = {offsetof(txstream, max_age), 0},
    [CONF_tail_delay] = {offsetof(txstream, tail_delay), 0},
    [CONF_tail_interval] = {offsetof(txstream, tail_interval), 0},
    [CONF_resend_guard] = {offsetof(txstream, resend_guard), 0},
};

typedef struct {
    PyObject_HEAD
    txstream s;
    PyObject *conf[NCONF];
    PyObject *epoch;
    PyObject *count_messages; /* NULL: one message per datagram */
    PyObject *weakrefs;
} SendStreamObject;

typedef struct {
    PyObject_HEAD
    txstream_stats *p; /* &own, or the owner's */
    PyObject *owner;   /* the SendStream whose counters these are, or NULL */
    txstream_stats own;
} SendStatsObject;

static PyTypeObject SendStream_Type;
static PyTypeObject SendStats_Type;

/* From the reference module, on first use: new_epoch (the same random draws), Gap, and
 * SendStats (for comparisons). */
static PyObject *reference[3];
#define ref_new_epoch reference[0]
#define ref_gap reference[1]
#define ref_stats reference[2]

static int load_reference(void)
{
    static const char *const names[] = {"new_epoch", "Gap", "SendStats", NULL};
    return py_import_attrs("insane.protocol.reliability", names, reference);
}

/* ------------------------------------------------------------------ conversions */

/* An int as int64: exact (OverflowError beyond), or saturated. */
static int as_i64(PyObject *o, int64_t *out, int saturate)
{
    PyObject *i = PyNumber_Index(o);
    if (i == NULL)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(i, &overflow);
    Py_DECREF(i);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow) {
        if (!saturate) {
            PyErr_SetString(PyExc_OverflowError, "int too large for a stream number (int64)");
            return -1;
        }
        v = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    }
    *out = (int64_t)v;
    return 0;
}

static PyObject *fail(int rc)
{
    switch (rc) {
    case TXSTREAM_ENOMEM:
        return PyErr_NoMemory();
    case TXSTREAM_EINDEX:
        PyErr_SetString(PyExc_IndexError, "deque index out of range");
        return NULL;
    case TXSTREAM_EOVERFLOW:
        PyErr_SetString(PyExc_OverflowError, "stream number or size past int64");
        return NULL;
    default: /* a callback's error stands */
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "txstream: callback failed without an error");
        return NULL;
    }
}

/* ------------------------------------------------------------------ SendStats */

#define STATS_FIELDS(X)     \
    X(sent)                 \
    X(retransmitted)        \
    X(nacks)                \
    X(gaps)                 \
    X(evicted_full)         \
    X(evicted_old)          \
    X(discarded_messages)

static const char *const stats_names[] = {
#define NAME(f) #f,
    STATS_FIELDS(NAME)
#undef NAME
        NULL};

#define NSTATS ((int)(sizeof stats_names / sizeof *stats_names) - 1)

enum {
#define INDEX(f) STAT_##f,
    STATS_FIELDS(INDEX)
#undef INDEX
};

static int64_t *stats_slot(txstream_stats *p, int i)
{
    switch (i) {
#define SLOT(f)                                                                            \
    case STAT_##f:                                                                         \
        return &p->f;
        STATS_FIELDS(SLOT)
#undef SLOT
    default:
        return NULL;
    }
}

static PyObject *stats_get(SendStatsObject *self, void *closure)
{
    return PyLong_FromLongLong(*stats_slot(self->p, (int)(intptr_t)closure));
}

static int stats_set(SendStatsObject *self, PyObject *value, void *closure)
{
    if (py_no_delete(value, "cannot delete a counter") < 0)
        return -1;
    int64_t v;
    if (as_i64(value, &v, 0) < 0)
        return -1;
    *stats_slot(self->p, (int)(intptr_t)closure) = v;
    return 0;
}

static PyObject *stats_view(SendStreamObject *owner)
{
    SendStatsObject *v = PyObject_GC_New(SendStatsObject, &SendStats_Type);
    if (v == NULL)
        return NULL;
    memset(&v->own, 0, sizeof v->own);
    v->p = &owner->s.stats;
    v->owner = Py_NewRef((PyObject *)owner);
    PyObject_GC_Track(v);
    return (PyObject *)v;
}

static PyObject *stats_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    long long f[NSTATS] = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|LLLLLLL:SendStats", (char **)stats_names,
                                     &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]))
        return NULL;
    SendStatsObject *v = (SendStatsObject *)type->tp_alloc(type, 0);
    if (v == NULL)
        return NULL;
    v->p = &v->own;
    v->owner = NULL;
    for (int i = 0; i < NSTATS; i++)
        *stats_slot(v->p, i) = (int64_t)f[i];
    return (PyObject *)v;
}

static int stats_traverse(SendStatsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->owner);
    return 0;
}

static int stats_clear(SendStatsObject *self)
{
    if (self->owner != NULL) { /* keep the values, as a free-standing set */
        self->own = *self->p;
        self->p = &self->own;
    }
    Py_CLEAR(self->owner);
    return 0;
}

static void stats_dealloc(SendStatsObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self); /* (a subclass's dealloc drops its type) */
}

static PyObject *stats_repr(SendStatsObject *self)
{
    const txstream_stats *p = self->p;
    return PyUnicode_FromFormat("SendStats(sent=%lld, retransmitted=%lld, nacks=%lld, "
                                "gaps=%lld, evicted_full=%lld, evicted_old=%lld, "
                                "discarded_messages=%lld)",
                                (long long)p->sent, (long long)p->retransmitted,
                                (long long)p->nacks, (long long)p->gaps,
                                (long long)p->evicted_full, (long long)p->evicted_old,
                                (long long)p->discarded_messages);
}

/* The fields of a SendStats (ours or the reference's) as a tuple, or NULL (not one). */
static PyObject *stats_tuple(PyObject *o)
{
    if (PyObject_TypeCheck(o, &SendStats_Type)) {
        txstream_stats *p = ((SendStatsObject *)o)->p;
        return Py_BuildValue("(LLLLLLL)", (long long)p->sent, (long long)p->retransmitted,
                             (long long)p->nacks, (long long)p->gaps,
                             (long long)p->evicted_full, (long long)p->evicted_old,
                             (long long)p->discarded_messages);
    }
    if (load_reference() < 0)
        return NULL;
    if (Py_TYPE(o) != (PyTypeObject *)ref_stats) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *t = PyTuple_New(NSTATS);
    for (int i = 0; t != NULL && i < NSTATS; i++) {
        PyObject *v = PyObject_GetAttrString(o, stats_names[i]);
        if (v == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *stats_richcompare(PyObject *a, PyObject *b, int op)
{
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *ta = stats_tuple(a);
    if (ta == NULL || ta == Py_NotImplemented)
        return ta;
    PyObject *tb = stats_tuple(b);
    if (tb == NULL || tb == Py_NotImplemented) {
        Py_DECREF(ta);
        return tb;
    }
    PyObject *r = PyObject_RichCompare(ta, tb, op);
    Py_DECREF(ta);
    Py_DECREF(tb);
    return r;
}

static PyGetSetDef stats_getset[] = {
#define GS(f) {#f, (getter)stats_get, (setter)stats_set, NULL, (void *)(intptr_t)STAT_##f},
    STATS_FIELDS(GS)
#undef GS
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SendStats_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.SendStats",
    .tp_doc = "A send stream's counters (a live view of the stream's, or free-standing).",
    .tp_basicsize = sizeof(SendStatsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = stats_new,
    .tp_dealloc = (destructor)stats_dealloc,
    .tp_traverse = (traverseproc)stats_traverse,
    .tp_clear = (inquiry)stats_clear,
    .tp_repr = (reprfunc)stats_repr,
    .tp_richcompare = stats_richcompare,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_getset = stats_getset,
};

/* ------------------------------------------------------------------ SendStream: life */

static int count_callback(void *ctx, const uint8_t *datagram, size_t len, uint32_t *messages)
{
    SendStreamObject *self = ctx;
    PyObject *fn = self->count_messages;
    if (fn == NULL) {
        *messages = 1;
        return 0;
    }
    Py_INCREF(fn);
    PyObject *d = PyBytes_FromStringAndSize((const char *)datagram, (Py_ssize_t)len);
    PyObject *r = d ? PyObject_CallOneArg(fn, d) : NULL;
    Py_XDECREF(d);
    Py_DECREF(fn);
    if (r == NULL)
        return -1;
    if (!PyLong_Check(r)) {
        PyErr_Format(PyExc_TypeError, "count_messages returned %.200s, not an int",
                     Py_TYPE(r)->tp_name);
        Py_DECREF(r);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(r);
    Py_DECREF(r);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "count_messages returned more than 2**32-1");
        return -1;
    }
    *messages = (uint32_t)v;
    return 0;
}

static int set_conf(SendStreamObject *self, PyObject *value, void *closure)
{
    int i = (int)(intptr_t)closure;
    if (py_no_delete(value, "cannot delete a stream setting") < 0)
        return -1;
    char *field = (char *)&self->s + conf_fields[i].offset;
    if (conf_fields[i].is_int) {
        int64_t v;
        if (as_i64(value, &v, 1) < 0)
            return -1;
        memcpy(field, &v, sizeof v);
    } else {
        double v;
        if (py_double(value, &v) < 0)
            return -1;
        memcpy(field, &v, sizeof v);
    }
    Py_XSETREF(self->conf[i], Py_NewRef(value));
    return 0;
}

static PyObject *get_conf(SendStreamObject *self, void *closure)
{
    PyObject *v = self->conf[(int)(intptr_t)closure];
    if (v == NULL) { /* (cleared by the collector) */
        PyErr_SetString(PyExc_AttributeError, "stream setting");
        return NULL;
    }
    return Py_NewRef(v);
}

/* The reference's defaults, as the objects it has. */
static int conf_defaults(SendStreamObject *self)
{
    txstream d;
    txstream_init(&d);
    PyObject *v[NCONF] = {
        PyLong_FromLongLong(d.max_bytes),    PyLong_FromLongLong(d.window),
        PyFloat_FromDouble(d.max_age),       PyFloat_FromDouble(d.tail_delay),
        PyFloat_FromDouble(d.tail_interval), PyFloat_FromDouble(d.resend_guard),
    };
    int rc = 0;
    for (int i = 0; i < NCONF; i++) {
        if (rc == 0 && (v[i] == NULL || set_conf(self, v[i], (void *)(intptr_t)i) < 0))
            rc = -1;
        Py_XDECREF(v[i]);
    }
    return rc;
}

static PyObject *stream_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    SendStreamObject *self = (SendStreamObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    txstream_init(&self->s);
    self->s.count = count_callback;
    self->s.count_ctx = self;
    self->epoch = PyLong_FromLong(1);
    if (self->epoch == NULL || conf_defaults(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int stream_init(SendStreamObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_bytes", "max_age",        "tail_delay", "tail_interval",
                             "window",    "epoch",          "count_messages", NULL};
    PyObject *max_bytes = NULL, *max_age = NULL, *tail_delay = NULL, *tail_interval = NULL;
    PyObject *window = NULL, *epoch = Py_None, *count = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOOOO$OO:SendStream", kwlist, &max_bytes,
                                     &max_age, &tail_delay, &tail_interval, &window, &epoch,
                                     &count))
        return -1;
    /* The reference's order: the epoch (maybe drawn), then the settings. */
    int truth = PyObject_IsTrue(epoch);
    if (truth < 0)
        return -1;
    PyObject *e;
    if (truth) {
        e = Py_NewRef(epoch);
    } else {
        if (load_reference() < 0)
            return -1;
        e = PyObject_CallNoArgs(ref_new_epoch);
        if (e == NULL)
            return -1;
    }
    Py_SETREF(self->epoch, e);
    truth = PyObject_IsTrue(count);
    if (truth < 0)
        return -1;
    Py_XSETREF(self->count_messages, truth ? Py_NewRef(count) : NULL);
    /* The settings afresh (the resend guard is no parameter: it keeps its value). */
    PyObject *given[] = {max_bytes, window, max_age, tail_delay, tail_interval};
    const int which[] = {CONF_max_bytes, CONF_window, CONF_max_age, CONF_tail_delay,
                         CONF_tail_interval};
    PyObject *guard = Py_XNewRef(self->conf[CONF_resend_guard]);
    int rc = conf_defaults(self);
    if (rc == 0 && guard != NULL)
        rc = set_conf(self, guard, (void *)(intptr_t)CONF_resend_guard);
    Py_XDECREF(guard);
    for (int i = 0; rc == 0 && i < 5; i++) {
        if (given[i] != NULL)
            rc = set_conf(self, given[i], (void *)(intptr_t)which[i]);
    }
    return rc;
}

static int stream_traverse(SendStreamObject *self, visitproc visit, void *arg)
{
    for (int i = 0; i < NCONF; i++)
        Py_VISIT(self->conf[i]);
    Py_VISIT(self->epoch);
    Py_VISIT(self->count_messages);
    return 0;
}

static int stream_clear(SendStreamObject *self)
{
    for (int i = 0; i < NCONF; i++)
        Py_CLEAR(self->conf[i]);
    Py_CLEAR(self->epoch);
    Py_CLEAR(self->count_messages);
    return 0;
}

static void stream_dealloc(SendStreamObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    stream_clear(self);
    txstream_free(&self->s);
    Py_TYPE(self)->tp_free((PyObject *)self); /* (a subclass's dealloc drops its type) */
}

/* ------------------------------------------------------------------ SendStream: methods */

static PyObject *stream_number(SendStreamObject *self, PyObject *unused)
{
    (void)unused;
    int64_t seq;
    int rc = txstream_number(&self->s, &seq);
    return rc ? fail(rc) : PyLong_FromLongLong(seq);
}

static PyObject *stream_sent(SendStreamObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"seq", "datagram", "now"};
    static const py_argspec spec = {"SendStream.sent", names, 3, 3, PY_ARGS_METHOD};
    PyObject *a[3];
    int64_t seq;
    double now;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || as_i64(a[0], &seq, 0) < 0 ||
        py_double(a[2], &now) < 0)
        return NULL;
    py_data d;
    if (py_data_get(a[1], &d) < 0)
        return NULL;
    const uint8_t *p = d.p;
    uint8_t *copy = NULL;
    if (d.has_view && d.len) { /* (copied before anything can run: the count callback may
                                * touch the buffer) */
        copy = PyMem_Malloc(d.len);
        if (copy == NULL) {
            py_data_release(&d);
            return PyErr_NoMemory();
        }
        memcpy(copy, d.p, d.len);
        p = copy;
    }
    size_t len = d.len;
    py_data_release(&d);
    int rc = txstream_sent(&self->s, seq, p, len, now);
    PyMem_Free(copy);
    if (rc)
        return fail(rc);
    Py_RETURN_NONE;
}

static PyObject *stream_evict_expired(SendStreamObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"now"};
    static const py_argspec spec = {"SendStream.evict_expired", names, 1, 1, PY_ARGS_METHOD};
    PyObject *a[1];
    double now;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || py_double(a[0], &now) < 0)
        return NULL;
    int rc = txstream_evict(&self->s, now);
    if (rc)
        return fail(rc);
    Py_RETURN_NONE;
}

static PyObject *stream_take_discarded(SendStreamObject *self, PyObject *unused)
{
    (void)unused;
    return PyLong_FromLongLong(txstream_take_discarded(&self->s));
}

static PyObject *stream_abandon(SendStreamObject *self, PyObject *unused)
{
    (void)unused;
    int64_t n;
    int rc = txstream_abandon(&self->s, &n);
    return rc ? fail(rc) : PyLong_FromLongLong(n);
}

static PyObject *stream_on_ack(SendStreamObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"next_expected"};
    static const py_argspec spec = {"SendStream.on_ack", names, 1, 1, PY_ARGS_METHOD};
    PyObject *a[1];
    int64_t ne;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || as_i64(a[0], &ne, 1) < 0)
        return NULL;
    return PyBool_FromLong(txstream_on_ack(&self->s, ne));
}

static int emit_bytes(void *ctx, const uint8_t *datagram, size_t len)
{
    PyObject *b = PyBytes_FromStringAndSize((const char *)datagram, (Py_ssize_t)len);
    if (b == NULL)
        return -1;
    int rc = PyList_Append((PyObject *)ctx, b);
    Py_DECREF(b);
    return rc;
}

/* One NACK range (any 2-item iterable, as `for start, end in ranges` takes). */
static int unpack_range(PyObject *item, int64_t *start, int64_t *end)
{
    PyObject *a, *b;
    if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2) {
        a = Py_NewRef(PyTuple_GET_ITEM(item, 0));
        b = Py_NewRef(PyTuple_GET_ITEM(item, 1));
    } else {
        PyObject *it = PyObject_GetIter(item);
        if (it == NULL) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Format(PyExc_TypeError, "cannot unpack non-iterable %.200s object",
                             Py_TYPE(item)->tp_name);
            }
            return -1;
        }
        PyObject *got[3] = {NULL, NULL, NULL};
        Py_ssize_t n = 0;
        while (n < 3 && (got[n] = PyIter_Next(it)) != NULL)
            n++;
        Py_DECREF(it);
        if (PyErr_Occurred() || n != 2) {
            for (Py_ssize_t i = 0; i < n; i++)
                Py_DECREF(got[i]);
            if (!PyErr_Occurred()) {
                if (n < 2)
                    PyErr_Format(PyExc_ValueError,
                                 "not enough values to unpack (expected 2, got %zd)", n);
                else
                    PyErr_SetString(PyExc_ValueError, "too many values to unpack (expected 2)");
            }
            return -1;
        }
        a = got[0];
        b = got[1];
    }
    int rc = as_i64(a, start, 1) < 0 || as_i64(b, end, 1) < 0 ? -1 : 0;
    Py_DECREF(a);
    Py_DECREF(b);
    return rc;
}

static PyObject *stream_on_nack(SendStreamObject *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"ranges", "now"};
    static const py_argspec spec = {"SendStream.on_nack", names, 2, 2, PY_ARGS_METHOD};
    PyObject *a[2];
    double now;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || py_double(a[1], &now) < 0)
        return NULL;
    if (load_reference() < 0)
        return NULL;
    int64_t first;
    int rc = txstream_nack_begin(&self->s, now, &first);
    if (rc)
        return fail(rc);
    PyObject *again = PyList_New(0), *gaps = PyList_New(0), *it = NULL, *item = NULL;
    if (again == NULL || gaps == NULL || (it = PyObject_GetIter(a[0])) == NULL)
        goto error;
    size_t n = 0;
    Py_INCREF(self); /* (the ranges' iterator may run code that drops the last reference) */
    while ((item = PyIter_Next(it)) != NULL) {
        int64_t start, end;
        txstream_gap gap;
        if (unpack_range(item, &start, &end) < 0)
            goto error_self;
        Py_CLEAR(item);
        rc = txstream_nack_range(&self->s, first, start, end, now, &gap, emit_bytes, again, &n);
        if (gap.present) {
            PyObject *g = PyObject_CallFunction(ref_gap, "LLN", (long long)gap.start,
                                                (long long)gap.end,
                                                gap.messages < 0
                                                    ? Py_NewRef(Py_None)
                                                    : PyLong_FromLongLong(gap.messages));
            if (g == NULL || PyList_Append(gaps, g) < 0) {
                Py_XDECREF(g);
                goto error_self;
            }
            Py_DECREF(g);
        }
        if (rc) {
            fail(rc);
            goto error_self;
        }
    }
    if (PyErr_Occurred())
        goto error_self;
    Py_DECREF(it);
    txstream_nack_end(&self->s, n);
    Py_DECREF(self);
    return Py_BuildValue("(NN)", again, gaps);
error_self:
    Py_DECREF(self);
error:
    Py_XDECREF(item);
    Py_XDECREF(it);
    Py_XDECREF(again);
    Py_XDECREF(gaps);
    return NULL;
}

static PyObject *stream_tail_due(SendStreamObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"now"};
    static const py_argspec spec = {"SendStream.tail_due", names, 1, 1, PY_ARGS_METHOD};
    PyObject *a[1];
    double now;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || py_double(a[0], &now) < 0)
        return NULL;
    return PyBool_FromLong(txstream_tail_due(&self->s, now));
}

static PyObject *stream_tail(SendStreamObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"now"};
    static const py_argspec spec = {"SendStream.tail", names, 1, 1, PY_ARGS_METHOD};
    PyObject *a[1];
    double now;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || py_double(a[0], &now) < 0)
        return NULL;
    return PyLong_FromLongLong(txstream_tail(&self->s, now));
}

static PyObject *stream_next_timer(SendStreamObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"now"};
    static const py_argspec spec = {"SendStream.next_timer", names, 1, 1, PY_ARGS_METHOD};
    PyObject *a[1];
    double now, when;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || py_double(a[0], &now) < 0)
        return NULL;
    if (!txstream_next_timer(&self->s, now, &when))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(when);
}

static PyMethodDef stream_methods[] = {
    {"number", (PyCFunction)stream_number, METH_NOARGS,
     "The number of the next datagram (call sent with it once it is built)."},
    {"sent", (PyCFunction)(void (*)(void))stream_sent, METH_FASTCALL | METH_KEYWORDS,
     "sent(seq, datagram, now): keep a numbered datagram for retransmission."},
    {"evict_expired", (PyCFunction)(void (*)(void))stream_evict_expired, METH_FASTCALL | METH_KEYWORDS,
     "evict_expired(now): evict what is older than max_age."},
    {"take_discarded", (PyCFunction)stream_take_discarded, METH_NOARGS,
     "Messages discarded undelivered since the last call, to report."},
    {"abandon", (PyCFunction)stream_abandon, METH_NOARGS,
     "The receiver is gone for good: the messages of everything not acknowledged, not yet "
     "reported."},
    {"on_ack", (PyCFunction)(void (*)(void))stream_on_ack, METH_FASTCALL | METH_KEYWORDS,
     "on_ack(next_expected): True when that took the stream out of full."},
    {"on_nack", (PyCFunction)(void (*)(void))stream_on_nack, METH_FASTCALL | METH_KEYWORDS,
     "on_nack(ranges, now) -> (datagrams to send again, gaps)."},
    {"tail_due", (PyCFunction)(void (*)(void))stream_tail_due, METH_FASTCALL | METH_KEYWORDS,
     "tail_due(now): whether to send a TAIL now."},
    {"tail", (PyCFunction)(void (*)(void))stream_tail, METH_FASTCALL | METH_KEYWORDS, "tail(now): our last number (a TAIL is sent)."},
    {"next_timer", (PyCFunction)(void (*)(void))stream_next_timer, METH_FASTCALL | METH_KEYWORDS,
     "next_timer(now): when tail_due may next become true (None: nothing to wait for)."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------ SendStream: attributes */

static PyObject *get_epoch(SendStreamObject *self, void *c)
{
    (void)c;
    if (self->epoch == NULL) { /* (cleared by the collector) */
        PyErr_SetString(PyExc_AttributeError, "epoch");
        return NULL;
    }
    return Py_NewRef(self->epoch);
}

static int set_epoch(SendStreamObject *self, PyObject *v, void *c)
{
    (void)c;
    if (py_no_delete(v, "cannot delete epoch") < 0)
        return -1;
    Py_SETREF(self->epoch, Py_NewRef(v));
    return 0;
}

/* int64 fields by offset into the core; the closure's low bit: saturate when set. */
#define I64(field, sat) ((void *)(uintptr_t)(offsetof(txstream, field) * 2 + (sat)))
#define DBL(field) ((void *)(uintptr_t)offsetof(txstream, field))

static PyObject *get_i64(SendStreamObject *self, void *c)
{
    int64_t v;
    memcpy(&v, (char *)&self->s + (uintptr_t)c / 2, sizeof v);
    return PyLong_FromLongLong(v);
}

static int set_i64(SendStreamObject *self, PyObject *value, void *c)
{
    if (py_no_delete(value, "cannot delete a stream setting") < 0)
        return -1;
    int64_t v;
    if (as_i64(value, &v, (int)((uintptr_t)c & 1)) < 0)
        return -1;
    memcpy((char *)&self->s + (uintptr_t)c / 2, &v, sizeof v);
    return 0;
}

static PyObject *get_dbl(SendStreamObject *self, void *c)
{
    double v;
    memcpy(&v, (char *)&self->s + (uintptr_t)c, sizeof v);
    return PyFloat_FromDouble(v);
}

static PyObject *get_stats(SendStreamObject *self, void *c)
{
    (void)c;
    return stats_view(self);
}

static int set_stats(SendStreamObject *self, PyObject *value, void *c)
{
    (void)c;
    if (py_no_delete(value, "cannot delete stats") < 0)
        return -1;
    txstream_stats st;
    for (int i = 0; i < NSTATS; i++) {
        PyObject *v = PyObject_GetAttrString(value, stats_names[i]);
        int rc = v ? as_i64(v, stats_slot(&st, i), 0) : -1;
        Py_XDECREF(v);
        if (rc < 0)
            return -1;
    }
    self->s.stats = st;
    return 0;
}

static PyObject *get_kept(SendStreamObject *self, void *c)
{
    (void)c;
    return PyLong_FromSize_t(txstream_kept(&self->s));
}

static PyObject *get_unacked(SendStreamObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(txstream_unacked(&self->s));
}

static PyObject *get_full(SendStreamObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(txstream_full(&self->s));
}

static PyObject *get_detail(SendStreamObject *self, void *c)
{
    (void)c;
    return PyLong_FromSize_t(self->s.discarded.detail);
}

static int set_detail(SendStreamObject *self, PyObject *value, void *c)
{
    (void)c;
    int64_t v;
    if (py_no_delete(value, "cannot delete _discard_detail") < 0)
        return -1;
    if (as_i64(value, &v, 0) < 0)
        return -1;
    if (v < 0 || (uint64_t)v > TXSTREAM_DISCARD_DETAIL) {
        PyErr_SetString(PyExc_ValueError, "_discard_detail: 0 to 2**20");
        return -1;
    }
    self->s.discarded.detail = (size_t)v;
    return 0;
}

static PyGetSetDef stream_getset[] = {
    {"epoch", (getter)get_epoch, (setter)set_epoch, "The stream's epoch.", NULL},
    {"max_bytes", (getter)get_conf, (setter)set_conf, "The byte budget.",
     (void *)(intptr_t)CONF_max_bytes},
    {"window", (getter)get_conf, (setter)set_conf, "Bytes unacknowledged before full.",
     (void *)(intptr_t)CONF_window},
    {"next_seq", (getter)get_i64, (setter)set_i64, "The next number.", I64(next_seq, 0)},
    {"acked", (getter)get_i64, (setter)set_i64, "Every number below this was received.",
     I64(acked, 0)},
    {"max_age", (getter)get_conf, (setter)set_conf, "The age limit (s).",
     (void *)(intptr_t)CONF_max_age},
    {"tail_delay", (getter)get_conf, (setter)set_conf, "Quiet time before a TAIL (s).",
     (void *)(intptr_t)CONF_tail_delay},
    {"tail_interval", (getter)get_conf, (setter)set_conf, "Time between TAILs (s).",
     (void *)(intptr_t)CONF_tail_interval},
    {"resend_guard", (getter)get_conf, (setter)set_conf,
     "A datagram is not sent again sooner than this after its last retransmission (s).",
     (void *)(intptr_t)CONF_resend_guard},
    {"stats", (getter)get_stats, (setter)set_stats, "The counters (a live SendStats).", NULL},
    {"kept", (getter)get_kept, NULL, "Datagrams kept for retransmission.", NULL},
    {"unacked", (getter)get_unacked, NULL, "Data sent and not acknowledged.", NULL},
    {"full", (getter)get_full, NULL,
     "A window's worth (or three quarters of the byte budget) is unacknowledged.", NULL},
    {"_kept_bytes", (getter)get_i64, NULL, NULL, I64(kept_bytes, 0)},
    {"_last_send", (getter)get_dbl, NULL, NULL, DBL(last_send)},
    {"_last_tail", (getter)get_dbl, NULL, NULL, DBL(last_tail)},
    {"_unreported", (getter)get_i64, NULL, NULL, I64(unreported, 0)},
    {"_gap_reported", (getter)get_i64, NULL, NULL, I64(gap_reported, 0)},
    {"_discard_detail", (getter)get_detail, (setter)set_detail,
     "Evicted datagrams counted one by one (the reference's _DISCARD_DETAIL).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SendStream_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.SendStream",
    .tp_doc = "SendStream(max_bytes=64 MiB, max_age=10.0, tail_delay=0.01, tail_interval=0.05, "
              "window=4 MiB, *, epoch=None, count_messages=None)\n\n"
              "The sending side of one reliable stream (insane.protocol.reliability.SendStream, "
              "in C).",
    .tp_basicsize = sizeof(SendStreamObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = stream_new,
    .tp_init = (initproc)stream_init,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_traverse = (traverseproc)stream_traverse,
    .tp_clear = (inquiry)stream_clear,
    .tp_methods = stream_methods,
    .tp_getset = stream_getset,
    .tp_weaklistoffset = offsetof(SendStreamObject, weakrefs),
};

int engine_add_txstream(PyObject *module)
{
    if (py_add_type(module, "SendStats", &SendStats_Type) < 0 ||
        py_add_type(module, "SendStream", &SendStream_Type) < 0)
        return -1;
    return 0;
}
