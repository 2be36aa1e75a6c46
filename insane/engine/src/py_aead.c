/* py_aead: the engine's Sealer and Opener, drop-in replacements of insane/protocol/security.py's
 * over the aead core (aead.c), and Opener.open_batch (the node's _open in one call).
 *
 * Both follow the Keyring they were given: the key table is rebuilt from the keyring's secrets
 * (current, previous) whenever its `_sealing` (Sealer) or `_keys` (Opener) is another object
 * than at the last call, which Keyring.rotate() makes so. */
#include "py_common.h"
#include <structmember.h>

#include "aead.h"
#include "parts.h"

/* ------------------------------------------------------------------------------ shared */

static PyObject *str_sealing, *str_keys, *str_kid, *str_current, *str_previous,
    *str_accept_until;
static PyObject *drop_reason[16]; /* -status -> interned reason */
static PyObject *wire_error;      /* insane.protocol.wire.WireError, imported when first needed */
static uint8_t wire_prefix[3];

static int load_wire(void)
{
    if (wire_error != NULL)
        return 0;
    static const char *const names[] = {"WireError", "PREFIX", NULL};
    PyObject *got[2] = {NULL, NULL};
    if (py_import_attrs("insane.protocol.wire", names, got) < 0)
        return -1;
    if (!PyBytes_Check(got[1]) || PyBytes_GET_SIZE(got[1]) != 3) {
        PyErr_SetString(PyExc_RuntimeError, "insane.protocol.wire.PREFIX: expected 3 bytes");
        Py_DECREF(got[1]);
        Py_DECREF(got[0]);
        return -1;
    }
    memcpy(wire_prefix, PyBytes_AS_STRING(got[1]), 3);
    Py_DECREF(got[1]);
    wire_error = got[0];
    return 0;
}

/* Sets the exception of a status (a WireError for what the reference raises one for). */
static void raise_status(int status)
{
    switch (status) {
    case AEAD_ERR_NOMEM:
        PyErr_NoMemory();
        return;
    case AEAD_ERR_CRYPTO:
        PyErr_SetString(PyExc_RuntimeError, "libcrypto failed");
        return;
    case AEAD_ERR_SHORT_HEADER:
        PyErr_SetString(PyExc_IndexError, "bytearray index out of range");
        return;
    case AEAD_ERR_COUNTER:
        PyErr_SetString(PyExc_OverflowError, "the sealer's 64-bit counter is spent");
        return;
    case AEAD_ERR_ARG:
        PyErr_SetString(PyExc_SystemError, "aead: bad argument");
        return;
    default:
        break;
    }
    if (load_wire() < 0)
        return;
    PyObject *exc = PyObject_CallFunction(wire_error, "ss", aead_reason(status), aead_detail(status));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* The keyring's secrets (current, then previous in order) and their key ids. */
typedef struct {
    PyObject *list; /* the secrets, new references */
    uint8_t (*kids)[AEAD_KID_SIZE];
    Py_ssize_t n;
} secrets;

static void secrets_free(secrets *s)
{
    Py_XDECREF(s->list);
    PyMem_Free(s->kids);
    s->list = NULL;
    s->kids = NULL;
}

static int secrets_load(PyObject *keyring, secrets *s)
{
    s->list = NULL;
    s->kids = NULL;
    s->n = 0;
    PyObject *current = PyObject_GetAttr(keyring, str_current);
    if (current == NULL)
        return -1;
    s->list = PyList_New(1);
    if (s->list == NULL) {
        Py_DECREF(current);
        return -1;
    }
    PyList_SET_ITEM(s->list, 0, current);
    PyObject *previous = PyObject_GetAttr(keyring, str_previous);
    PyObject *it = previous ? PyObject_GetIter(previous) : NULL;
    Py_XDECREF(previous);
    if (it == NULL)
        goto fail;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *key = PySequence_GetItem(item, 0); /* (key, accept until) */
        Py_DECREF(item);
        if (key == NULL || PyList_Append(s->list, key) < 0) {
            Py_XDECREF(key);
            Py_DECREF(it);
            goto fail;
        }
        Py_DECREF(key);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        goto fail;
    s->n = PyList_GET_SIZE(s->list);
    s->kids = PyMem_Calloc((size_t)s->n, AEAD_KID_SIZE);
    if (s->kids == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < s->n; i++) {
        py_data d;
        if (py_data_get(PyList_GET_ITEM(s->list, i), &d) < 0)
            goto fail;
        int rc = aead_key_id(d.p, d.len, s->kids[i]);
        py_data_release(&d);
        if (rc != AEAD_OK) {
            raise_status(rc);
            goto fail;
        }
    }
    return 0;
fail:
    secrets_free(s);
    return -1;
}

/* Adds the secret whose key id is `kid` (bytes) to `t`: its index, or -1 (error set). */
static int secrets_add(const secrets *s, PyObject *kid, double accept_until, aead_keys *t)
{
    if (!PyBytes_Check(kid) || PyBytes_GET_SIZE(kid) != AEAD_KID_SIZE) {
        PyErr_SetString(PyExc_TypeError, "a keyring's key id: expected 4 bytes");
        return -1;
    }
    for (Py_ssize_t i = 0; i < s->n; i++) {
        if (memcmp(s->kids[i], PyBytes_AS_STRING(kid), AEAD_KID_SIZE) != 0)
            continue;
        py_data d;
        if (py_data_get(PyList_GET_ITEM(s->list, i), &d) < 0)
            return -1;
        int rc = aead_keys_add(t, d.p, d.len, accept_until);
        py_data_release(&d);
        if (rc < 0) {
            if (rc == AEAD_ERR_ARG)
                PyErr_Format(PyExc_ValueError, "a key must hold at least %d bytes",
                             AEAD_MIN_KEY_BYTES);
            else
                raise_status(rc);
            return -1;
        }
        return rc;
    }
    PyErr_SetString(PyExc_ValueError, "the keyring holds a key id none of its secrets has");
    return -1;
}

static int set_keyring(PyObject **slot, PyObject *value, PyObject **cached)
{
    if (py_no_delete(value, "keyring cannot be deleted") < 0)
        return -1;
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    Py_CLEAR(*cached);
    return 0;
}

/* ------------------------------------------------------------------------------ Sealer */

typedef struct {
    PyObject_HEAD
    aead_sealer core;
    PyObject *keyring;
    PyObject *encrypt;  /* as given */
    PyObject *sealing;  /* the keyring's _sealing the key was taken from */
} SealerObject;

static PyTypeObject SealerType;

static PyObject *sealer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    SealerObject *self = (SealerObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        aead_sealer_init(&self->core, 0);
    return (PyObject *)self;
}

static int sealer_init(SealerObject *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"keyring", "encrypt", NULL};
    PyObject *keyring, *encrypt;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Sealer", names, &keyring, &encrypt))
        return -1;
    int truth = PyObject_IsTrue(encrypt);
    if (truth < 0)
        return -1;
    Py_INCREF(keyring);
    Py_XSETREF(self->keyring, keyring);
    Py_INCREF(encrypt);
    Py_XSETREF(self->encrypt, encrypt);
    Py_CLEAR(self->sealing);
    self->core.encrypt = truth;
    self->core.counter = 0;
    return 0;
}

static int sealer_traverse(SealerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keyring);
    Py_VISIT(self->encrypt);
    Py_VISIT(self->sealing);
    return 0;
}

static int sealer_clear(SealerObject *self)
{
    Py_CLEAR(self->keyring);
    Py_CLEAR(self->encrypt);
    Py_CLEAR(self->sealing);
    return 0;
}

static void sealer_dealloc(SealerObject *self)
{
    PyObject_GC_UnTrack(self);
    sealer_clear(self);
    aead_sealer_free(&self->core);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Follows the keyring: the sealing key again when its _sealing is another object. */
static int sealer_sync(SealerObject *self)
{
    if (self->keyring == NULL) {
        PyErr_SetString(PyExc_AttributeError, "Sealer has no keyring (not initialised)");
        return -1;
    }
    PyObject *sealing = PyObject_GetAttr(self->keyring, str_sealing);
    if (sealing == NULL)
        return -1;
    if (sealing == self->sealing) {
        Py_DECREF(sealing);
        return 0;
    }
    Py_CLEAR(self->sealing);
    secrets s;
    PyObject *kid = PyObject_GetAttr(sealing, str_kid);
    if (kid == NULL || secrets_load(self->keyring, &s) < 0) {
        Py_XDECREF(kid);
        Py_DECREF(sealing);
        return -1;
    }
    aead_keys_clear(&self->core.keys);
    int rc = secrets_add(&s, kid, 0.0, &self->core.keys);
    secrets_free(&s);
    Py_DECREF(kid);
    if (rc < 0) {
        aead_keys_clear(&self->core.keys);
        Py_DECREF(sealing);
        return -1;
    }
    self->sealing = sealing;
    return 0;
}

static PyObject *sealer_seal(SealerObject *self, PyObject *datagram)
{
    if (sealer_sync(self) < 0)
        return NULL;
    py_data d;
    if (py_data_get(datagram, &d) < 0)
        return NULL;
    size_t total = aead_sealed_size(d.len);
    if (total == 0 || total > (size_t)PY_SSIZE_T_MAX) {
        py_data_release(&d);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out == NULL) {
        py_data_release(&d);
        return NULL;
    }
    size_t n = 0;
    int rc = aead_seal(&self->core, d.p, d.len, (uint8_t *)PyBytes_AS_STRING(out), total, &n);
    py_data_release(&d);
    if (rc != AEAD_OK) {
        Py_DECREF(out);
        raise_status(rc);
        return NULL;
    }
    return out;
}

static PyObject *sealer_get_keyring(SealerObject *self, void *closure)
{
    (void)closure;
    if (self->keyring == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->keyring);
}

static int sealer_set_keyring(SealerObject *self, PyObject *value, void *closure)
{
    (void)closure;
    return set_keyring(&self->keyring, value, &self->sealing);
}

static PyObject *sealer_get_encrypt(SealerObject *self, void *closure)
{
    (void)closure;
    if (self->encrypt == NULL)
        return PyBool_FromLong(self->core.encrypt);
    return Py_NewRef(self->encrypt);
}

static int sealer_set_encrypt(SealerObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (py_no_delete(value, "encrypt cannot be deleted") < 0)
        return -1;
    int truth = PyObject_IsTrue(value);
    if (truth < 0)
        return -1;
    Py_INCREF(value);
    Py_XSETREF(self->encrypt, value);
    self->core.encrypt = truth;
    return 0;
}

static PyObject *sealer_get_counter(SealerObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->core.counter);
}

static int sealer_set_counter(SealerObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (py_no_delete(value, "_counter cannot be deleted") < 0)
        return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(value);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    self->core.counter = (uint64_t)v;
    return 0;
}

static PyMethodDef sealer_methods[] = {
    {"seal", (PyCFunction)sealer_seal, METH_O,
     "seal(datagram) -> bytes: the datagram authenticated (and encrypted) with the current key."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sealer_getset[] = {
    {"keyring", (getter)sealer_get_keyring, (setter)sealer_set_keyring, "The Keyring.", NULL},
    {"encrypt", (getter)sealer_get_encrypt, (setter)sealer_set_encrypt,
     "Whether the frames are encrypted.", NULL},
    {"_counter", (getter)sealer_get_counter, (setter)sealer_set_counter,
     "The counter of the last datagram sealed.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SealerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.Sealer",
    .tp_doc = "Sealer(keyring, encrypt): seals what one sender sends (security.Sealer, native).",
    .tp_basicsize = sizeof(SealerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = sealer_new,
    .tp_init = (initproc)sealer_init,
    .tp_dealloc = (destructor)sealer_dealloc,
    .tp_traverse = (traverseproc)sealer_traverse,
    .tp_clear = (inquiry)sealer_clear,
    .tp_methods = sealer_methods,
    .tp_getset = sealer_getset,
};

/* ------------------------------------------------------------------------------ Opener */

typedef struct {
    PyObject_HEAD
    aead_opener core;
    PyObject *keyring;
    PyObject *require;    /* require_encryption as given */
    PyObject *keys;       /* the keyring's _keys the table was built from */
    PyObject *kids;       /* tuple: key index -> key id (bytes) */
    PyObject *last_kid;   /* the key id of the last datagram opened */
    PyObject *batch_kids; /* list: the key ids of what the last open_batch opened */
} OpenerObject;

static PyTypeObject OpenerType;

static PyObject *opener_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    OpenerObject *self = (OpenerObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    aead_opener_init(&self->core, 0);
    self->last_kid = PyBytes_FromStringAndSize("", 0);
    self->batch_kids = PyList_New(0);
    if (self->last_kid == NULL || self->batch_kids == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int opener_init(OpenerObject *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"keyring", "require_encryption", NULL};
    PyObject *keyring, *require;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Opener", names, &keyring, &require))
        return -1;
    int truth = PyObject_IsTrue(require);
    if (truth < 0)
        return -1;
    PyObject *empty = PyBytes_FromStringAndSize("", 0);
    if (empty == NULL)
        return -1;
    Py_INCREF(keyring);
    Py_XSETREF(self->keyring, keyring);
    Py_INCREF(require);
    Py_XSETREF(self->require, require);
    Py_XSETREF(self->last_kid, empty);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->kids);
    self->core.require_encryption = truth;
    aead_opener_forget(&self->core);
    return 0;
}

static int opener_traverse(OpenerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keyring);
    Py_VISIT(self->require);
    Py_VISIT(self->keys);
    Py_VISIT(self->kids);
    Py_VISIT(self->last_kid);
    Py_VISIT(self->batch_kids);
    return 0;
}

static int opener_clear(OpenerObject *self)
{
    Py_CLEAR(self->keyring);
    Py_CLEAR(self->require);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->kids);
    Py_CLEAR(self->last_kid);
    Py_CLEAR(self->batch_kids);
    return 0;
}

static void opener_dealloc(OpenerObject *self)
{
    PyObject_GC_UnTrack(self);
    opener_clear(self);
    aead_opener_free(&self->core);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Follows the keyring: the key table again when its _keys is another object. */
static int opener_sync(OpenerObject *self)
{
    if (self->keyring == NULL) {
        PyErr_SetString(PyExc_AttributeError, "Opener has no keyring (not initialised)");
        return -1;
    }
    PyObject *keys = PyObject_GetAttr(self->keyring, str_keys);
    if (keys == NULL)
        return -1;
    if (keys == self->keys) {
        Py_DECREF(keys);
        return 0;
    }
    Py_CLEAR(self->keys);
    Py_CLEAR(self->kids);
    aead_keys_clear(&self->core.keys);
    secrets s;
    PyObject *items = PyMapping_Items(keys);
    if (items == NULL || secrets_load(self->keyring, &s) < 0) {
        Py_XDECREF(items);
        Py_DECREF(keys);
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *kids = PyTuple_New(n);
    if (kids == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "a keyring's _keys: expected (kid, key) items");
            goto fail;
        }
        PyObject *kid = PyTuple_GET_ITEM(item, 0);
        PyObject *until = PyObject_GetAttr(PyTuple_GET_ITEM(item, 1), str_accept_until);
        double accept_until = until ? PyFloat_AsDouble(until) : -1.0;
        Py_XDECREF(until);
        if (until == NULL || (accept_until == -1.0 && PyErr_Occurred()))
            goto fail;
        int index = secrets_add(&s, kid, accept_until, &self->core.keys);
        if (index < 0)
            goto fail;
        if (index != i) {
            PyErr_SetString(PyExc_ValueError, "a keyring's _keys: a key id twice");
            goto fail;
        }
        PyTuple_SET_ITEM(kids, i, Py_NewRef(kid));
    }
    secrets_free(&s);
    Py_DECREF(items);
    self->keys = keys;
    self->kids = kids;
    return 0;
fail:
    aead_keys_clear(&self->core.keys);
    secrets_free(&s);
    Py_XDECREF(kids);
    Py_DECREF(items);
    Py_DECREF(keys);
    return -1;
}

/* Opens one datagram: new bytes, or NULL with *status (< 0; for AEAD_ERR_NOMEM the Python
 * error is set). *key_index: the key that opened it. */
static PyObject *open_one(OpenerObject *self, const uint8_t *p, size_t len, double now,
                          int *status, int *key_index)
{
    int rc = aead_open_check(&self->core, p, len, now);
    if (rc < 0) {
        *status = rc;
        return NULL;
    }
    size_t size = aead_opened_size(len);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL) {
        *status = AEAD_ERR_NOMEM;
        return NULL;
    }
    size_t n = 0;
    rc = aead_open(&self->core, p, len, now, (uint8_t *)PyBytes_AS_STRING(out), size, &n,
                   key_index);
    if (rc != AEAD_OK) {
        Py_DECREF(out);
        *status = rc;
        if (rc == AEAD_ERR_NOMEM)
            PyErr_NoMemory();
        return NULL;
    }
    return out;
}

/* `now`, 0.0 when not given */
static int parse_now(PyObject *obj, double *now)
{
    *now = 0.0;
    return obj == NULL ? 0 : py_double(obj, now);
}

static PyObject *opener_open(OpenerObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"datagram", "now"};
    static const py_argspec spec = {"open", names, 1, 2, PY_ARGS_AT_MOST};
    PyObject *a[2];
    double now;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 || parse_now(a[1], &now) < 0)
        return NULL;
    if (opener_sync(self) < 0)
        return NULL;
    py_data d;
    if (py_data_get(a[0], &d) < 0)
        return NULL;
    int status = 0, k = 0;
    PyObject *out = open_one(self, d.p, d.len, now, &status, &k);
    py_data_release(&d);
    if (out == NULL) {
        if (!PyErr_Occurred())
            raise_status(status);
        return NULL;
    }
    Py_XSETREF(self->last_kid, Py_NewRef(PyTuple_GET_ITEM(self->kids, k)));
    return out;
}

/* A domain that no u32 header field has: UINT64_MAX. */
static int parse_domain(PyObject *obj, uint64_t *domain)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && !overflow && PyErr_Occurred())
        return -1;
    *domain = overflow || v < 0 || v > 0xFFFFFFFFLL ? UINT64_MAX : (uint64_t)v;
    return 0;
}

static PyObject *opener_open_batch(OpenerObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {"batch", "now", "domain"};
    static const py_argspec spec = {"open_batch", names, 3, 3, PY_ARGS_AT_MOST};
    PyObject *a[3];
    double now;
    uint64_t domain;
    if (py_parse_args(&spec, args, nargs, kwnames, a) < 0 ||
        parse_now(a[1], &now) < 0 || parse_domain(a[2], &domain) < 0)
        return NULL;
    if (load_wire() < 0 || opener_sync(self) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(a[0], "open_batch: expected a list of (data, addr)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *opened = PyList_New(0);
    PyObject *drops = PyList_New(0);
    PyObject *kids = PyList_New(0);
    PyObject *last = NULL; /* borrowed from self->kids */
    if (opened == NULL || drops == NULL || kids == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i], *data, *addr;
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
            data = PyTuple_GET_ITEM(item, 0);
            addr = PyTuple_GET_ITEM(item, 1);
        } else {
            PyErr_SetString(PyExc_TypeError, "open_batch: expected (data, addr) tuples");
            goto fail;
        }
        py_data d;
        if (py_data_get(data, &d) < 0)
            goto fail;
        int status = AEAD_OK, k = 0;
        PyObject *out = NULL;
        if (domain == UINT64_MAX && d.len >= AEAD_HEADER_SIZE) {
            status = aead_check_header(d.p, d.len, wire_prefix, 0);
            if (status == AEAD_OK)
                status = AEAD_ERR_FOREIGN_DOMAIN;
        } else {
            status = aead_check_header(d.p, d.len, wire_prefix, (uint32_t)domain);
        }
        if (status == AEAD_OK)
            out = open_one(self, d.p, d.len, now, &status, &k);
        py_data_release(&d);
        if (out == NULL) {
            if (status < AEAD_ERR_FOREIGN_DOMAIN) { /* no wire error: out of memory, ... */
                if (!PyErr_Occurred())
                    raise_status(status);
                goto fail;
            }
            if (PyList_Append(drops, drop_reason[-status]) < 0)
                goto fail;
            continue;
        }
        PyObject *pair = PyTuple_Pack(2, out, addr);
        Py_DECREF(out);
        if (pair == NULL)
            goto fail;
        int rc = PyList_Append(opened, pair);
        Py_DECREF(pair);
        last = PyTuple_GET_ITEM(self->kids, k);
        if (rc < 0 || PyList_Append(kids, last) < 0)
            goto fail;
    }
    Py_DECREF(seq);
    if (last != NULL)
        Py_XSETREF(self->last_kid, Py_NewRef(last));
    Py_XSETREF(self->batch_kids, kids);
    PyObject *result = PyTuple_Pack(2, opened, drops);
    Py_DECREF(opened);
    Py_DECREF(drops);
    return result;
fail:
    if (last != NULL)
        Py_XSETREF(self->last_kid, Py_NewRef(last));
    Py_DECREF(seq);
    Py_XDECREF(opened);
    Py_XDECREF(drops);
    Py_XDECREF(kids);
    return NULL;
}

static PyObject *opener_get_keyring(OpenerObject *self, void *closure)
{
    (void)closure;
    if (self->keyring == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->keyring);
}

static int opener_set_keyring(OpenerObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (set_keyring(&self->keyring, value, &self->keys) < 0)
        return -1;
    Py_CLEAR(self->kids);
    return 0;
}

static PyObject *opener_get_require(OpenerObject *self, void *closure)
{
    (void)closure;
    if (self->require == NULL)
        return PyBool_FromLong(self->core.require_encryption);
    return Py_NewRef(self->require);
}

static int opener_set_require(OpenerObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (py_no_delete(value, "require_encryption cannot be deleted") < 0)
        return -1;
    int truth = PyObject_IsTrue(value);
    if (truth < 0)
        return -1;
    Py_INCREF(value);
    Py_XSETREF(self->require, value);
    self->core.require_encryption = truth;
    return 0;
}

static PyObject *opener_get_senders(OpenerObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(aead_opener_senders(&self->core));
}

static PyMethodDef opener_methods[] = {
    {"open", (PyCFunction)(void (*)(void))opener_open, METH_FASTCALL | METH_KEYWORDS,
     "open(datagram, now=0.0) -> bytes: checked and opened; WireError (its reason a metric "
     "label) otherwise."},
    {"open_batch", (PyCFunction)(void (*)(void))opener_open_batch,
     METH_FASTCALL | METH_KEYWORDS,
     "open_batch(batch, now, domain) -> (opened, drops): the node's _open. `batch`: a list of "
     "(data, addr); a datagram of 16 bytes or more whose header is not of the wire (reasons "
     "foreign, bad_version) or of `domain` (foreign_domain) is dropped, the others opened. "
     "`opened`: (opened bytes, addr) of those that opened, in order; `drops`: the reasons of "
     "the others; `batch_kids` then holds the key id of each opened one."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef opener_members[] = {
    {"last_kid", T_OBJECT_EX, offsetof(OpenerObject, last_kid), 0,
     "The key id of the last datagram opened."},
    {"batch_kids", T_OBJECT_EX, offsetof(OpenerObject, batch_kids), READONLY,
     "The key ids of what the last open_batch opened (one per item of its `opened`)."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef opener_getset[] = {
    {"keyring", (getter)opener_get_keyring, (setter)opener_set_keyring, "The Keyring.", NULL},
    {"require_encryption", (getter)opener_get_require, (setter)opener_set_require,
     "Whether clear frames are refused.", NULL},
    {"senders", (getter)opener_get_senders, NULL,
     "How many senders' replay windows are held (at most 65536).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject OpenerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "insane.engine._engine.Opener",
    .tp_doc = "Opener(keyring, require_encryption): checks and opens what arrives "
              "(security.Opener, native).",
    .tp_basicsize = sizeof(OpenerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = opener_new,
    .tp_init = (initproc)opener_init,
    .tp_dealloc = (destructor)opener_dealloc,
    .tp_traverse = (traverseproc)opener_traverse,
    .tp_clear = (inquiry)opener_clear,
    .tp_methods = opener_methods,
    .tp_members = opener_members,
    .tp_getset = opener_getset,
};

/* ------------------------------------------------------------------------------ module */

static int intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

int engine_add_aead(PyObject *module)
{
    if (intern(&str_sealing, "_sealing") < 0 || intern(&str_keys, "_keys") < 0 ||
        intern(&str_kid, "kid") < 0 || intern(&str_current, "current") < 0 ||
        intern(&str_previous, "previous") < 0 || intern(&str_accept_until, "accept_until") < 0)
        return -1;
    for (int status = AEAD_ERR_TOO_SHORT; status >= AEAD_ERR_FOREIGN_DOMAIN; status--)
        if (intern(&drop_reason[-status], aead_reason(status)) < 0)
            return -1;
    if (py_add_type(module, "Sealer", &SealerType) < 0 ||
        py_add_type(module, "Opener", &OpenerType) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "AEAD_MAX_SENDERS", AEAD_MAX_SENDERS);
}
