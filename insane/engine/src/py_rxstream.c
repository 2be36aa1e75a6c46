/* py_rxstream: the CPython type ReceiveStream over the rxstream core, a drop-in replacement
 * for insane.protocol.reliability.ReceiveStream (same constructor, methods, attributes,
 * results), and its live statistics view ReceiveStats. Gaps are the reference's Gap
 * instances. Sequence numbers are the wire's 64-bit ones (see DEVIATIONS below). */
#include "py_common.h"
#include <structmember.h>

#include "parts.h"
#include "rxstream.h"

/* DEVIATIONS from the reference (none on the wire's values):
 *  - on_data's seq and on_tail's last above 2**64-1 raise OverflowError (below 1, resp. 0,
 *    they are what the reference makes of them: a duplicate, nothing);
 *  - the times are doubles (an int `now` is taken as a float). */

/* insane.protocol.reliability's Gap and ReceiveStats (for == with the reference's), imported
 * on first use */
static PyObject *reference[2];
#define gap_class reference[0]
#define stats_class reference[1]
static PyObject *two_64; /* 2**64 */

static int import_reference(void)
{
    static const char *const names[] = {"Gap", "ReceiveStats", NULL};
    return py_import_attrs("insane.protocol.reliability", names, reference);
}

/* ------------------------------------------------------------------ numbers */

static PyObject *u64_plus_one(uint64_t v)
{
    if (v < UINT64_MAX)
        return PyLong_FromUnsignedLongLong(v + 1);
    return Py_NewRef(two_64);
}

/* A number: -1 below 0 (*v = 0), 0 within 0..2**64-1 (*v), 1 above (*v = UINT64_MAX),
 * -2 with an exception set. */
static int parse_u64(PyObject *o, uint64_t *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (x == -1 && PyErr_Occurred())
        return -2;
    if (overflow == 0) {
        if (x < 0) {
            *v = 0;
            return -1;
        }
        *v = (uint64_t)x;
        return 0;
    }
    if (overflow < 0) {
        *v = 0;
        return -1;
    }
    PyObject *i = PyNumber_Index(o);
    if (i == NULL)
        return -2;
    unsigned long long u = PyLong_AsUnsignedLongLong(i);
    Py_DECREF(i);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -2;
        PyErr_Clear();
        *v = UINT64_MAX;
        return 1;
    }
    *v = u;
    return 0;
}

/* ------------------------------------------------------------------ ReceiveStats */

typedef struct {
    PyObject_HEAD
    rxstream_stats *p; /* the stream's, or own once the stream is gone */
    rxstream_stats own;
} StatsObject;

static PyTypeObject StatsType;

static PyObject *lost_value(const rxstream_stats *st)
{
    if (st->lost_hi == 0)
        return PyLong_FromUnsignedLongLong(st->lost_lo);
    if (st->lost_hi == -1 && st->lost_lo >= (UINT64_C(1) << 63))
        return PyLong_FromLongLong(-(long long)(UINT64_MAX - st->lost_lo) - 1);
    PyObject *hi = PyLong_FromLongLong(st->lost_hi);
    PyObject *lo = PyLong_FromUnsignedLongLong(st->lost_lo);
    PyObject *r = NULL;
    if (hi && lo) {
        PyObject *t = PyNumber_Multiply(hi, two_64);
        if (t) {
            r = PyNumber_Add(t, lo);
            Py_DECREF(t);
        }
    }
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    return r;
}

static int lost_set(rxstream_stats *st, PyObject *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        st->lost_lo = (uint64_t)x;
        st->lost_hi = x < 0 ? -1 : 0;
        return 0;
    }
    PyObject *i = PyNumber_Index(v);
    if (i == NULL)
        return -1;
    PyObject *mask = PyLong_FromUnsignedLongLong(UINT64_MAX);
    PyObject *lo = mask ? PyNumber_And(i, mask) : NULL;
    PyObject *sixty_four = PyLong_FromLong(64);
    PyObject *hi = sixty_four ? PyNumber_Rshift(i, sixty_four) : NULL;
    int rc = -1;
    if (lo && hi) {
        unsigned long long l = PyLong_AsUnsignedLongLong(lo);
        long long h = PyLong_AsLongLong(hi);
        if (!PyErr_Occurred()) {
            st->lost_lo = l;
            st->lost_hi = h;
            rc = 0;
        }
    }
    Py_DECREF(i);
    Py_XDECREF(mask);
    Py_XDECREF(lo);
    Py_XDECREF(sixty_four);
    Py_XDECREF(hi);
    return rc;
}

#define STATS_FIELD(name)                                                        \
    static PyObject *stats_get_##name(PyObject *self, void *closure)             \
    {                                                                            \
        (void)closure;                                                           \
        return PyLong_FromLongLong(((StatsObject *)self)->p->name);              \
    }                                                                            \
    static int stats_set_##name(PyObject *self, PyObject *v, void *closure)      \
    {                                                                            \
        (void)closure;                                                           \
        if (py_no_delete(v, "cannot delete " #name) < 0)                         \
            return -1;                                                           \
        long long x = PyLong_AsLongLong(v);                                      \
        if (x == -1 && PyErr_Occurred())                                         \
            return -1;                                                           \
        ((StatsObject *)self)->p->name = x;                                      \
        return 0;                                                                \
    }
STATS_FIELD(received)
STATS_FIELD(duplicates)
STATS_FIELD(nacks)
STATS_FIELD(recovered)

static PyObject *stats_get_lost(PyObject *self, void *closure)
{
    (void)closure;
    return lost_value(((StatsObject *)self)->p);
}

static int stats_set_lost(PyObject *self, PyObject *v, void *closure)
{
    (void)closure;
    if (py_no_delete(v, "cannot delete lost") < 0)
        return -1;
    return lost_set(((StatsObject *)self)->p, v);
}

static PyGetSetDef stats_getset[] = {
    {"received", stats_get_received, stats_set_received, NULL, NULL},
    {"duplicates", stats_get_duplicates, stats_set_duplicates, NULL, NULL},
    {"nacks", stats_get_nacks, stats_set_nacks, NULL, NULL},
    {"recovered", stats_get_recovered, stats_set_recovered, "datagrams that filled a gap", NULL},
    {"lost", stats_get_lost, stats_set_lost, "datagrams given up on (gap events)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static const char *const stats_names[] = {"received", "duplicates", "nacks", "recovered", "lost"};

static PyObject *stats_tuple(PyObject *self)
{
    StatsObject *o = (StatsObject *)self;
    PyObject *lost = lost_value(o->p);
    if (lost == NULL)
        return NULL;
    return Py_BuildValue("(LLLLN)", (long long)o->p->received, (long long)o->p->duplicates,
                         (long long)o->p->nacks, (long long)o->p->recovered, lost);
}

static PyObject *stats_repr(PyObject *self)
{
    PyObject *lost = lost_value(((StatsObject *)self)->p);
    if (lost == NULL)
        return NULL;
    const rxstream_stats *st = ((StatsObject *)self)->p;
    PyObject *r = PyUnicode_FromFormat(
        "ReceiveStats(received=%lld, duplicates=%lld, nacks=%lld, recovered=%lld, lost=%S)",
        (long long)st->received, (long long)st->duplicates, (long long)st->nacks,
        (long long)st->recovered, lost);
    Py_DECREF(lost);
    return r;
}

/* Equal to another view, or to the reference's ReceiveStats, with the same fields. */
static PyObject *stats_richcompare(PyObject *self, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *theirs;
    if (Py_IS_TYPE(other, &StatsType)) {
        theirs = stats_tuple(other);
    } else {
        if (import_reference() < 0)
            return NULL;
        int is = PyObject_IsInstance(other, stats_class);
        if (is < 0)
            return NULL;
        if (!is)
            Py_RETURN_NOTIMPLEMENTED;
        theirs = PyTuple_New(5);
        for (Py_ssize_t i = 0; theirs && i < 5; i++) {
            PyObject *v = PyObject_GetAttrString(other, stats_names[i]);
            if (v == NULL)
                Py_CLEAR(theirs);
            else
                PyTuple_SET_ITEM(theirs, i, v);
        }
    }
    if (theirs == NULL)
        return NULL;
    PyObject *mine = stats_tuple(self);
    PyObject *r = mine ? PyObject_RichCompare(mine, theirs, op) : NULL;
    Py_XDECREF(mine);
    Py_DECREF(theirs);
    return r;
}

static PyTypeObject StatsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.ReceiveStats",
    .tp_doc = "A receive stream's counters (a live view, as the reference's dataclass).",
    .tp_basicsize = sizeof(StatsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_repr = stats_repr,
    .tp_richcompare = stats_richcompare,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_getset = stats_getset,
};

/* ------------------------------------------------------------------ ReceiveStream */

typedef struct {
    PyObject_HEAD
    rxstream s;
    StatsObject *stats;
    int ready;
} RxObject;

static int rx_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ordered", "nack_delay", "nack_interval", "max_held_bytes", NULL};
    RxObject *o = (RxObject *)self;
    PyObject *ordered;
    double nack_delay = 0.002, nack_interval = 0.02;
    long long max_held = 32 * 1024 * 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|ddL:ReceiveStream", kwlist, &ordered,
                                     &nack_delay, &nack_interval, &max_held))
        return -1;
    int is = PyObject_IsTrue(ordered);
    if (is < 0)
        return -1;
    if (o->ready)
        rxstream_free(&o->s);
    rxstream_init(&o->s, is, nack_delay, nack_interval, max_held);
    o->ready = 1;
    if (o->stats != NULL)
        o->stats->p = &o->s.stats;
    return 0;
}

static void rx_dealloc(PyObject *self)
{
    RxObject *o = (RxObject *)self;
    if (o->stats != NULL) { /* the view outlives the stream with the last counts */
        o->stats->own = o->s.stats;
        o->stats->p = &o->stats->own;
        Py_DECREF(o->stats);
    }
    rxstream_free(&o->s);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *no_memory(rxstream *s)
{
    rxstream_release(s);
    return PyErr_NoMemory();
}

/* A list: `first` (if not NULL), then what the stream handed over from what it held. */
static PyObject *take_pending(rxstream *s, PyObject *first)
{
    uint64_t n = rxstream_pending_count(s);
    Py_ssize_t lead = first != NULL;
    if (n > (uint64_t)(PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(PyObject *)) - 1)
        return no_memory(s);
    PyObject *list = PyList_New(lead + (Py_ssize_t)n);
    if (list == NULL) {
        rxstream_release(s);
        return NULL;
    }
    if (first != NULL)
        PyList_SET_ITEM(list, 0, Py_NewRef(first));
    if (n) {
        rxstream_pending_iter it;
        const uint8_t *d;
        size_t len;
        Py_ssize_t i = lead;
        rxstream_pending_begin(s, &it);
        while (rxstream_pending_next(s, &it, &d, &len)) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)len);
            if (b == NULL) {
                Py_DECREF(list);
                rxstream_release(s);
                return NULL;
            }
            PyList_SET_ITEM(list, i++, b);
        }
        if (i != lead + (Py_ssize_t)n) /* (a finalizer run meanwhile used the stream) */
            Py_SET_SIZE(list, i);
    }
    rxstream_release(s);
    return list;
}

static PyObject *rx_on_data(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"seq", "datagram", "now"};
    static const py_argspec spec = {"on_data", names, 3, 3, PY_ARGS_AT_MOST};
    rxstream *s = &((RxObject *)self)->s;
    PyObject *a[3];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    uint64_t seq;
    int r = parse_u64(a[0], &seq);
    if (r == -2)
        return NULL;
    if (r > 0) {
        PyErr_SetString(PyExc_OverflowError, "sequence number above 2**64-1");
        return NULL;
    }
    double now;
    if (py_double(a[2], &now) < 0)
        return NULL;
    PyObject *dgram = a[1];
    py_data d;
    if (py_data_get(dgram, &d) < 0)
        return NULL;
    int rc = rxstream_on_data(s, seq, d.p, d.len, now);
    py_data_release(&d);
    switch (rc) {
    case RXSTREAM_DELIVER:
        return take_pending(s, dgram);
    case RXSTREAM_PASS: {
        PyObject *list = PyList_New(1);
        if (list != NULL)
            PyList_SET_ITEM(list, 0, Py_NewRef(dgram));
        return list;
    }
    case RXSTREAM_ENOMEM:
        return PyErr_NoMemory();
    default:
        return PyList_New(0);
    }
}

static PyObject *rx_on_tail(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"last", "now"};
    static const py_argspec spec = {"on_tail", names, 2, 2, PY_ARGS_AT_MOST};
    PyObject *a[2];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    uint64_t last;
    int r = parse_u64(a[0], &last);
    if (r == -2)
        return NULL;
    if (r > 0) {
        PyErr_SetString(PyExc_OverflowError, "sequence number above 2**64-1");
        return NULL;
    }
    double now;
    if (py_double(a[1], &now) < 0)
        return NULL;
    if (r == 0)
        rxstream_on_tail(&((RxObject *)self)->s, last, now);
    Py_RETURN_NONE;
}

/* (handed over, [Gap...]) after on_gap or abandon; a gap is given `messages` where it is the
 * whole announced range start..end_last (whole_ok: there is one). */
static PyObject *gap_result(rxstream *s, int whole_ok, uint64_t start, uint64_t end_last,
                            PyObject *messages)
{
    /* a copy: building the gaps runs Python code, which might use the stream */
    size_t n = s->ngaps;
    rxstream_range *copy = PyMem_Malloc(n * sizeof(*copy) + 1);
    if (copy == NULL)
        return no_memory(s);
    memcpy(copy, s->gaps, n * sizeof(*copy));
    PyObject *gaps = PyList_New((Py_ssize_t)n);
    if (gaps == NULL || import_reference() < 0) {
        Py_XDECREF(gaps);
        PyMem_Free(copy);
        rxstream_release(s);
        return NULL;
    }
    for (size_t g = 0; g < n; g++) {
        uint64_t a = copy[g].first, b = copy[g].last;
        int whole = whole_ok && a == start && b == end_last;
        PyObject *pa = PyLong_FromUnsignedLongLong(a);
        PyObject *pb = u64_plus_one(b);
        PyObject *gap = NULL;
        if (pa && pb)
            gap = PyObject_CallFunctionObjArgs(gap_class, pa, pb, whole ? messages : Py_None,
                                               NULL);
        Py_XDECREF(pa);
        Py_XDECREF(pb);
        if (gap == NULL) {
            Py_DECREF(gaps);
            PyMem_Free(copy);
            rxstream_release(s);
            return NULL;
        }
        PyList_SET_ITEM(gaps, (Py_ssize_t)g, gap);
    }
    PyMem_Free(copy);
    PyObject *out = take_pending(s, NULL);
    if (out == NULL) {
        Py_DECREF(gaps);
        return NULL;
    }
    PyObject *r = PyTuple_New(2);
    if (r == NULL) {
        Py_DECREF(out);
        Py_DECREF(gaps);
        return NULL;
    }
    PyTuple_SET_ITEM(r, 0, out);
    PyTuple_SET_ITEM(r, 1, gaps);
    return r;
}

static PyObject *empty_result(void) { return Py_BuildValue("([][])"); }

static PyObject *rx_on_gap(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"start", "end", "now", "messages"};
    static const py_argspec spec = {"on_gap", names, 3, 4, PY_ARGS_AT_MOST};
    rxstream *s = &((RxObject *)self)->s;
    PyObject *a[4];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    PyObject *messages = a[3] ? a[3] : Py_None;
    uint64_t start, end;
    int rs = parse_u64(a[0], &start);
    if (rs == -2)
        return NULL;
    int re = parse_u64(a[1], &end);
    if (re == -2)
        return NULL;
    double now;
    if (py_double(a[2], &now) < 0)
        return NULL;
    /* A missing range r (1 <= r.first, r.last <= 2**64-1) counts where r.last >= start and
     * r.first < end: none when start > 2**64-1 or end < 2. A start below 0 is 0 (a gap
     * then never equals the announced range: it starts at 1 or later). */
    if (rs > 0 || re < 0 || end < 1)
        return empty_result();
    uint64_t end_last = end - 1;
    int whole_ok = rs == 0;
    if (re > 0) { /* end > 2**64-1: 2**64 is end_last 2**64-1, above never the whole */
        int eq = PyObject_RichCompareBool(a[1], two_64, Py_EQ);
        if (eq < 0)
            return NULL;
        end_last = UINT64_MAX;
        whole_ok = whole_ok && eq;
    }
    if (rxstream_on_gap(s, start, end_last, now) < 0)
        return no_memory(s);
    if (s->ngaps == 0)
        return empty_result();
    return gap_result(s, whole_ok, start, end_last, messages);
}

static PyObject *rx_abandon(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"now"};
    static const py_argspec spec = {"abandon", names, 1, 1, PY_ARGS_AT_MOST};
    rxstream *s = &((RxObject *)self)->s;
    PyObject *a[1];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    double now;
    if (py_double(a[0], &now) < 0)
        return NULL;
    if (rxstream_abandon(s, now) < 0)
        return no_memory(s);
    if (s->ngaps == 0)
        return empty_result();
    return gap_result(s, 0, 0, 0, Py_None);
}

static PyObject *missing_list(const rxstream *s)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    rxstream_missing_iter it;
    uint64_t first, last;
    rxstream_missing_begin(s, &it);
    while (rxstream_missing_next(s, &it, &first, &last)) {
        PyObject *b = u64_plus_one(last);
        PyObject *t = b ? Py_BuildValue("(KN)", (unsigned long long)first, b) : NULL;
        if (t == NULL || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyObject *rx_missing(PyObject *self, PyObject *unused)
{
    (void)unused;
    return missing_list(&((RxObject *)self)->s);
}

static PyObject *rx_nack_due(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"now"};
    static const py_argspec spec = {"nack_due", names, 1, 1, PY_ARGS_AT_MOST};
    rxstream *s = &((RxObject *)self)->s;
    PyObject *a[1];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    double now;
    if (py_double(a[0], &now) < 0)
        return NULL;
    if (!rxstream_nack_due(s, now))
        return PyList_New(0);
    return missing_list(s);
}

static PyObject *rx_next_timer(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"now"};
    static const py_argspec spec = {"next_timer", names, 1, 1, PY_ARGS_AT_MOST};
    PyObject *a[1];
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0)
        return NULL;
    double when;
    if (!rxstream_next_timer(&((RxObject *)self)->s, &when))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(when);
}

static PyMethodDef rx_methods[] = {
    {"on_data", (PyCFunction)(void (*)(void))rx_on_data, METH_FASTCALL | METH_KEYWORDS,
     "on_data(seq, datagram, now) -> the datagrams to process now, in order"},
    {"on_tail", (PyCFunction)(void (*)(void))rx_on_tail, METH_FASTCALL | METH_KEYWORDS,
     "on_tail(last, now): the sender's last number"},
    {"on_gap", (PyCFunction)(void (*)(void))rx_on_gap, METH_FASTCALL | METH_KEYWORDS,
     "on_gap(start, end, now, messages=None) -> (datagrams to process, [Gap])"},
    {"abandon", (PyCFunction)(void (*)(void))rx_abandon, METH_FASTCALL | METH_KEYWORDS,
     "abandon(now) -> (datagrams to process, [Gap]): the sender is gone"},
    {"missing", rx_missing, METH_NOARGS, "missing() -> [(start, end)]"},
    {"nack_due", (PyCFunction)(void (*)(void))rx_nack_due, METH_FASTCALL | METH_KEYWORDS,
     "nack_due(now) -> the missing ranges to ask for now"},
    {"next_timer", (PyCFunction)(void (*)(void))rx_next_timer, METH_FASTCALL | METH_KEYWORDS,
     "next_timer(now) -> when nack_due may next have something (None: no gap)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *get_ordered(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(((RxObject *)self)->s.ordered);
}

static PyObject *get_next_expected(PyObject *self, void *c)
{
    (void)c;
    return u64_plus_one(((RxObject *)self)->s.done);
}

static PyObject *get_highest(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(((RxObject *)self)->s.highest);
}

static PyObject *get_held(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromSize_t(rxstream_held(&((RxObject *)self)->s));
}

static PyObject *get_held_bytes(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromLongLong(((RxObject *)self)->s.held_bytes);
}

static PyObject *get_gap_since(PyObject *self, void *c)
{
    (void)c;
    const rxstream *s = &((RxObject *)self)->s;
    if (!s->has_gap)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(s->gap_since);
}

static PyObject *get_last_nack(PyObject *self, void *c)
{
    (void)c;
    return PyFloat_FromDouble(((RxObject *)self)->s.last_nack);
}

static PyObject *get_backoff(PyObject *self, void *c)
{
    (void)c;
    return PyFloat_FromDouble(((RxObject *)self)->s.backoff);
}

static PyObject *get_stats(PyObject *self, void *c)
{
    (void)c;
    RxObject *o = (RxObject *)self;
    if (o->stats == NULL) {
        o->stats = PyObject_New(StatsObject, &StatsType);
        if (o->stats == NULL)
            return NULL;
        o->stats->p = &o->s.stats;
    }
    return Py_NewRef((PyObject *)o->stats);
}

static PyObject *get_nack_delay(PyObject *self, void *c)
{
    (void)c;
    return PyFloat_FromDouble(((RxObject *)self)->s.nack_delay);
}

static int set_nack_delay(PyObject *self, PyObject *v, void *c)
{
    (void)c;
    if (py_no_delete(v, "cannot delete nack_delay") < 0)
        return -1;
    return py_double(v, &((RxObject *)self)->s.nack_delay);
}

static PyObject *get_nack_interval(PyObject *self, void *c)
{
    (void)c;
    return PyFloat_FromDouble(((RxObject *)self)->s.nack_interval);
}

static int set_nack_interval(PyObject *self, PyObject *v, void *c)
{
    (void)c;
    if (py_no_delete(v, "cannot delete nack_interval") < 0)
        return -1;
    return py_double(v, &((RxObject *)self)->s.nack_interval);
}

static PyObject *get_max_held_bytes(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromLongLong(((RxObject *)self)->s.max_held_bytes);
}

static int set_max_held_bytes(PyObject *self, PyObject *v, void *c)
{
    (void)c;
    if (py_no_delete(v, "cannot delete max_held_bytes") < 0)
        return -1;
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    ((RxObject *)self)->s.max_held_bytes = x;
    return 0;
}

static PyGetSetDef rx_getset[] = {
    {"ordered", get_ordered, NULL, "publisher order (else arrival order)", NULL},
    {"nack_delay", get_nack_delay, set_nack_delay, NULL, NULL},
    {"nack_interval", get_nack_interval, set_nack_interval, NULL, NULL},
    {"max_held_bytes", get_max_held_bytes, set_max_held_bytes, NULL, NULL},
    {"next_expected", get_next_expected, NULL,
     "every number below this has been handed over (or given up)", NULL},
    {"highest", get_highest, NULL, "the highest number known to exist", NULL},
    {"held", get_held, NULL, "datagrams held back", NULL},
    {"stats", get_stats, NULL, "the stream's counters (ReceiveStats)", NULL},
    {"_held_bytes", get_held_bytes, NULL, NULL, NULL},
    {"_gap_since", get_gap_since, NULL, NULL, NULL},
    {"_last_nack", get_last_nack, NULL, NULL, NULL},
    {"_backoff", get_backoff, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RxType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.ReceiveStream",
    .tp_doc = "ReceiveStream(ordered, nack_delay=0.002, nack_interval=0.02, "
              "max_held_bytes=32 MiB): the receiving side of one reliable stream (as "
              "insane.protocol.reliability.ReceiveStream).",
    .tp_basicsize = sizeof(RxObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = rx_init,
    .tp_dealloc = rx_dealloc,
    .tp_methods = rx_methods,
    .tp_getset = rx_getset,
};

int engine_add_rxstream(PyObject *module)
{
    if (two_64 == NULL) {
        PyObject *one = PyLong_FromLong(1), *sh = PyLong_FromLong(64);
        two_64 = one && sh ? PyNumber_Lshift(one, sh) : NULL;
        Py_XDECREF(one);
        Py_XDECREF(sh);
        if (two_64 == NULL)
            return -1;
    }
    if (py_add_type(module, "ReceiveStream", &RxType) < 0 ||
        py_add_type(module, "ReceiveStats", &StatsType) < 0)
        return -1;
    return 0;
}
