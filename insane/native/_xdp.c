/*
 * insane._xdp: the AF_XDP datapath's native layer (libxdp's xsk rings, libbpf for the program).
 *
 * One Socket is one AF_XDP socket on one interface queue, with its UMEM (half the frames for
 * receiving, half for sending), INSANE's XDP program (xdp_redirect.bpf.c) attached through a
 * BPF link owned by this process (so the kernel detaches it when the process exits, even by
 * SIGKILL), the socket in the program's XSKMAP and the middleware's UDP port in its port map.
 *
 * Python sees batches of UDP datagrams only: recv() returns [(payload, (ip, port)), ...] for
 * well-formed IPv4/UDP frames (checksums verified; others are counted and dropped), send()
 * takes [(payload, header), ...] where header is the 42-byte Ethernet/IPv4/UDP template of the
 * destination (insane/transports/frames.py builds it) and fills in lengths, IP id and both
 * checksums. Frames are built and parsed here, in the hot path; frames.py is the reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include "udp_frames.h"

#define HDR_LEN UDP_FRAME_HDR

typedef struct {
    PyObject_HEAD
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    struct xsk_ring_prod fill, tx;
    struct xsk_ring_cons comp, rx;
    struct bpf_object *obj;
    void *buffer;
    size_t buffer_size;
    uint32_t frame_size, nframes;
    uint64_t *free_tx; /* free TX frame addresses (a stack) */
    uint32_t n_free_tx;
    uint32_t outstanding_tx; /* sent, not yet completed */
    int link_fd, ifindex, fd;
    uint16_t ip_id;
    int native, zero_copy;
    /* counters */
    unsigned long long rx_frames, tx_frames, bad_checksum, malformed, tx_full;
} SocketObject;

/* ---------------------------------------------------------------------------------- setup */

/* libbpf's warnings are kept here instead of reaching stderr: a failed set-up appends them to
 * its error, which the session and `insane doctor` report as the reason. */
static char libbpf_said[512];

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
    char line[256];
    if (level != LIBBPF_WARN)
        return 0;
    vsnprintf(line, sizeof line, fmt, args);
    const char *text = strncmp(line, "libbpf: ", 8) == 0 ? line + 8 : line;
    size_t len = strlen(text);
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    size_t used = strlen(libbpf_said);
    if (!len || used + len + 3 >= sizeof libbpf_said)
        return 0;
    if (used) {
        memcpy(libbpf_said + used, "; ", 2);
        used += 2;
    }
    memcpy(libbpf_said + used, text, len);
    libbpf_said[used + len] = '\0';
    return 0;
}

/* Let the UMEM be locked: unlimited where allowed (CAP_SYS_RESOURCE), else up to the hard
 * limit, which raising the soft one needs no privilege for. */
static void raise_memlock(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_MEMLOCK, &lim) || lim.rlim_cur == RLIM_INFINITY)
        return;
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_MEMLOCK, &unlimited)) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_MEMLOCK, &lim);
    }
}

static int attach_program(SocketObject *s, const char *bpf_path, const char *mode,
                          char *err, size_t errlen)
{
    struct bpf_program *prog;
    int prog_fd;

    s->obj = bpf_object__open_file(bpf_path, NULL);
    if (!s->obj || libbpf_get_error(s->obj)) {
        s->obj = NULL;
        snprintf(err, errlen, "cannot open the XDP program %s: %s", bpf_path, strerror(errno));
        return -1;
    }
    if (bpf_object__load(s->obj)) {
        snprintf(err, errlen, "the kernel refused the XDP program: %s", strerror(errno));
        return -1;
    }
    prog = bpf_object__find_program_by_name(s->obj, "insane_xdp");
    if (!prog) {
        snprintf(err, errlen, "no insane_xdp program in %s", bpf_path);
        return -1;
    }
    prog_fd = bpf_program__fd(prog);
    /* auto: native (driver) XDP where the driver has it, else generic; as asked otherwise */
    __u32 tries[2] = {0, XDP_FLAGS_SKB_MODE};
    int ntries = 2;
    if (strcmp(mode, "native") == 0) {
        tries[0] = XDP_FLAGS_DRV_MODE;
        ntries = 1;
    } else if (strcmp(mode, "generic") == 0) {
        tries[0] = XDP_FLAGS_SKB_MODE;
        ntries = 1;
    }
    for (int i = 0; i < ntries; i++) {
        LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = tries[i]);
        s->link_fd = bpf_link_create(prog_fd, s->ifindex, BPF_XDP, &opts);
        if (s->link_fd >= 0)
            break;
    }
    if (s->link_fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot attach XDP (mode %s): %s%s", mode, strerror(e),
                 e == EBUSY || e == EEXIST ? " (another XDP program is attached)" : "");
        return -1;
    }
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(s->ifindex, 0, &q) == 0)
        s->native = q.attach_mode == XDP_ATTACHED_DRV || q.attach_mode == XDP_ATTACHED_HW;
    return 0;
}

static int create_socket(SocketObject *s, const char *ifname, uint32_t queue, int zc_wanted,
                         int need_wakeup, char *err, size_t errlen)
{
    struct xsk_umem_config ucfg = {
        .fill_size = s->nframes / 2,
        .comp_size = s->nframes / 2,
        .frame_size = s->frame_size,
        .frame_headroom = 0,
        .flags = 0,
    };
    int rc = xsk_umem__create(&s->umem, s->buffer, s->buffer_size, &s->fill, &s->comp, &ucfg);
    if (rc) {
        snprintf(err, errlen, "cannot create the UMEM: %s", strerror(-rc));
        return -1;
    }
    /* zero-copy where the driver has it (auto), copy mode otherwise */
    int modes[2] = {XDP_ZEROCOPY, XDP_COPY};
    int first = zc_wanted == 0 ? 1 : 0, last = zc_wanted == 1 ? 0 : 1;
    for (int i = first; i <= last; i++) {
        struct xsk_socket_config cfg = {
            .rx_size = s->nframes / 2,
            .tx_size = s->nframes / 2,
            .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
            .xdp_flags = 0,
            .bind_flags = (uint16_t)(modes[i] | (need_wakeup ? XDP_USE_NEED_WAKEUP : 0)),
        };
        rc = xsk_socket__create(&s->xsk, ifname, queue, s->umem, &s->rx, &s->tx, &cfg);
        if (rc == 0) {
            s->zero_copy = modes[i] == XDP_ZEROCOPY;
            break;
        }
    }
    if (rc) {
        snprintf(err, errlen, "cannot bind an AF_XDP socket to %s queue %u: %s", ifname, queue,
                 strerror(-rc));
        return -1;
    }
    s->fd = xsk_socket__fd(s->xsk);
    /* the first half of the frames receive: all of them go to the fill ring */
    uint32_t idx, n = s->nframes / 2;
    if (xsk_ring_prod__reserve(&s->fill, n, &idx) != n) {
        snprintf(err, errlen, "cannot fill the fill ring");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++)
        *xsk_ring_prod__fill_addr(&s->fill, idx + i) = (uint64_t)i * s->frame_size;
    xsk_ring_prod__submit(&s->fill, n);
    /* the second half send */
    s->free_tx = malloc(sizeof(uint64_t) * (s->nframes - n));
    if (!s->free_tx) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (uint32_t i = n; i < s->nframes; i++)
        s->free_tx[s->n_free_tx++] = (uint64_t)i * s->frame_size;
    return 0;
}

static int register_socket(SocketObject *s, uint32_t queue, PyObject *ports, char *err,
                           size_t errlen)
{
    struct bpf_map *xsks = bpf_object__find_map_by_name(s->obj, "xsks_map");
    struct bpf_map *pmap = bpf_object__find_map_by_name(s->obj, "ports_map");
    if (!xsks || !pmap) {
        snprintf(err, errlen, "the XDP program lacks its maps");
        return -1;
    }
    int fd = s->fd;
    if (bpf_map_update_elem(bpf_map__fd(xsks), &queue, &fd, 0)) {
        snprintf(err, errlen, "cannot register the socket in the XSKMAP: %s", strerror(errno));
        return -1;
    }
    Py_ssize_t n = PySequence_Size(ports);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(ports, i);
        long port = item ? PyLong_AsLong(item) : -1;
        Py_XDECREF(item);
        if (port <= 0 || port > 65535) {
            snprintf(err, errlen, "bad port in ports");
            return -1;
        }
        uint16_t key = htons((uint16_t)port);
        uint8_t one = 1;
        if (bpf_map_update_elem(bpf_map__fd(pmap), &key, &one, 0)) {
            snprintf(err, errlen, "cannot register port %ld: %s", port, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void teardown(SocketObject *s)
{
    if (s->xsk) {
        xsk_socket__delete(s->xsk);
        s->xsk = NULL;
    }
    if (s->umem) {
        xsk_umem__delete(s->umem);
        s->umem = NULL;
    }
    if (s->link_fd >= 0) {
        close(s->link_fd); /* detaches the program */
        s->link_fd = -1;
    }
    if (s->obj) {
        bpf_object__close(s->obj);
        s->obj = NULL;
    }
    if (s->buffer) {
        munmap(s->buffer, s->buffer_size);
        s->buffer = NULL;
    }
    free(s->free_tx);
    s->free_tx = NULL;
    s->fd = -1;
}

static int Socket_init(SocketObject *s, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"interface", "queue", "program", "ports", "mode", "zero_copy",
                             "need_wakeup", "frames", "frame_size", NULL};
    const char *ifname, *bpf_path, *mode = "auto", *zc = "auto";
    unsigned int queue = 0, frames = 4096, frame_size = 4096;
    int need_wakeup = 1;
    PyObject *ports;
    char err[256] = "";

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sIsO|sspII", kwlist, &ifname, &queue,
                                     &bpf_path, &ports, &mode, &zc, &need_wakeup, &frames,
                                     &frame_size))
        return -1;
    if (frames < 64 || (frames & (frames - 1)) || frame_size < 2048 ||
        (frame_size & (frame_size - 1))) {
        PyErr_SetString(PyExc_ValueError, "frames and frame_size: powers of two, >= 64 / 2048");
        return -1;
    }
    teardown(s); /* init called twice */
    s->nframes = frames;
    s->frame_size = frame_size;
    s->ifindex = (int)if_nametoindex(ifname);
    if (!s->ifindex) {
        PyErr_Format(PyExc_OSError, "no interface %s", ifname);
        return -1;
    }
    raise_memlock(); /* the UMEM is charged to it (older kernels: the BPF maps too) */
    libbpf_said[0] = '\0';
    libbpf_set_print(quiet_print);
    s->buffer_size = (size_t)frames * frame_size;
    s->buffer = mmap(NULL, s->buffer_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (s->buffer == MAP_FAILED) {
        s->buffer = NULL;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int zc_wanted = strcmp(zc, "on") == 0 ? 1 : strcmp(zc, "off") == 0 ? 0 : -1;
    if (attach_program(s, bpf_path, mode, err, sizeof err) ||
        create_socket(s, ifname, queue, zc_wanted, need_wakeup, err, sizeof err) ||
        register_socket(s, queue, ports, err, sizeof err)) {
        teardown(s);
        if (libbpf_said[0])
            PyErr_Format(PyExc_OSError, "%s (libbpf: %s)", err, libbpf_said);
        else
            PyErr_SetString(PyExc_OSError, err);
        return -1;
    }
    return 0;
}

static PyObject *Socket_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    SocketObject *s = (SocketObject *)PyType_GenericNew(type, args, kwds);
    if (s) {
        s->link_fd = -1;
        s->fd = -1;
    }
    return (PyObject *)s;
}

static void Socket_dealloc(SocketObject *s)
{
    teardown(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* ---------------------------------------------------------------------------------- receive */

static void refill(SocketObject *s, const uint64_t *addrs, uint32_t n)
{
    uint32_t idx;
    while (n) {
        uint32_t got = xsk_ring_prod__reserve(&s->fill, n, &idx);
        if (!got)
            break; /* cannot happen: the fill ring holds every receive frame */
        for (uint32_t i = 0; i < got; i++)
            *xsk_ring_prod__fill_addr(&s->fill, idx + i) = addrs[i];
        xsk_ring_prod__submit(&s->fill, got);
        addrs += got;
        n -= got;
    }
    if (xsk_ring_prod__needs_wakeup(&s->fill))
        recvfrom(s->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* An IPv4/UDP frame's payload, or NULL (counted) when it is not a well-formed one. */
static const uint8_t *parse(SocketObject *s, const uint8_t *f, uint32_t len, uint16_t *plen)
{
    const uint8_t *payload, *ip, *udp;
    enum frame_verdict v = frame_parse(f, len, &payload, plen, &ip, &udp);
    if (v == FRAME_MALFORMED)
        s->malformed++;
    else if (v == FRAME_BAD_CHECKSUM)
        s->bad_checksum++;
    return v == FRAME_OK ? payload : NULL;
}

static PyObject *Socket_recv(SocketObject *s, PyObject *arg)
{
    long max = PyLong_AsLong(arg);
    if (max <= 0 || !s->xsk) {
        if (!PyErr_Occurred() && !s->xsk)
            PyErr_SetString(PyExc_OSError, "socket closed");
        return PyErr_Occurred() ? NULL : PyList_New(0);
    }
    uint32_t idx;
    uint32_t n = xsk_ring_cons__peek(&s->rx, (uint32_t)(max > 256 ? 256 : max), &idx);
    PyObject *out = PyList_New(0);
    uint64_t addrs[256];
    if (!out)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&s->rx, idx + i);
        uint64_t addr = xsk_umem__extract_addr(d->addr);
        const uint8_t *f = xsk_umem__get_data(s->buffer, xsk_umem__add_offset_to_addr(d->addr));
        uint16_t plen;
        const uint8_t *payload = parse(s, f, d->len, &plen);
        addrs[i] = addr - addr % s->frame_size;
        if (!payload)
            continue;
        const uint8_t *ip = f + 14;
        PyObject *item = Py_BuildValue(
            "(y#(Ni))", payload, (Py_ssize_t)plen,
            PyUnicode_FromFormat("%u.%u.%u.%u", ip[12], ip[13], ip[14], ip[15]),
            (int)(ip[(ip[0] & 0x0f) * 4] << 8 | ip[(ip[0] & 0x0f) * 4 + 1]));
        if (!item) {
            Py_DECREF(out);
            out = NULL;
            break;
        }
        PyList_Append(out, item);
        Py_DECREF(item);
        s->rx_frames++;
    }
    if (n) {
        xsk_ring_cons__release(&s->rx, n);
        refill(s, addrs, n);
    }
    return out;
}

/* ------------------------------------------------------------------------------------- send */

static void reclaim(SocketObject *s)
{
    uint32_t idx;
    uint32_t n = xsk_ring_cons__peek(&s->comp, s->nframes / 2, &idx);
    for (uint32_t i = 0; i < n; i++)
        s->free_tx[s->n_free_tx++] = *xsk_ring_cons__comp_addr(&s->comp, idx + i);
    if (n) {
        xsk_ring_cons__release(&s->comp, n);
        s->outstanding_tx -= n;
    }
}

/* Wake the kernel to transmit. In copy mode each sendto() moves a bounded batch of frames
 * (and fails with EAGAIN while more wait, or EBUSY while the completion ring is full), so
 * keep kicking, taking back completed frames, until the ring is empty or the kernel stops. */
static void kick(SocketObject *s)
{
    for (int i = 0; i < 256; i++) {
        if (!xsk_ring_prod__needs_wakeup(&s->tx) && s->zero_copy)
            return;
        if (sendto(s->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0) {
            reclaim(s);
            if (!s->outstanding_tx || s->zero_copy)
                return;
            continue;
        }
        if (errno != EAGAIN && errno != EBUSY && errno != ENOBUFS && errno != EINTR)
            return;
        reclaim(s);
    }
}

static PyObject *Socket_send(SocketObject *s, PyObject *items)
{
    if (!s->xsk) {
        PyErr_SetString(PyExc_OSError, "socket closed");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(items, "send() takes a list of (payload, header)");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), sent = 0;
    reclaim(s);
    uint32_t want = (uint32_t)(n < (Py_ssize_t)s->n_free_tx ? n : (Py_ssize_t)s->n_free_tx);
    /* check first, so that only well-formed items are reserved on the ring */
    for (uint32_t i = 0; i < want; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *p, *h;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyBytes_Check(p = PyTuple_GET_ITEM(item, 0)) ||
            !PyBytes_Check(h = PyTuple_GET_ITEM(item, 1)) || PyBytes_GET_SIZE(h) != HDR_LEN ||
            PyBytes_GET_SIZE(p) + HDR_LEN > (Py_ssize_t)s->frame_size ||
            PyBytes_GET_SIZE(p) > 65507) {
            PyErr_SetString(PyExc_ValueError, "(payload, 42-byte header) that fits a frame");
            want = i;
            break;
        }
    }
    uint32_t idx = 0;
    if (want)
        want = xsk_ring_prod__reserve(&s->tx, want, &idx);
    for (uint32_t i = 0; i < want; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        const char *payload = PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 0));
        const char *hdr = PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 1));
        Py_ssize_t plen = PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 0));
        uint64_t addr = s->free_tx[--s->n_free_tx];
        uint8_t *f = xsk_umem__get_data(s->buffer, addr);
        frame_fill(f, (const uint8_t *)hdr, (const uint8_t *)payload, (uint16_t)plen,
                   s->ip_id++);
        struct xdp_desc *d = xsk_ring_prod__tx_desc(&s->tx, idx + i);
        d->addr = addr;
        d->len = (uint32_t)(HDR_LEN + plen);
        sent++;
    }
    if (sent) {
        xsk_ring_prod__submit(&s->tx, (uint32_t)sent);
        s->outstanding_tx += (uint32_t)sent;
        s->tx_frames += (unsigned long long)sent;
        kick(s);
    }
    if (sent < n && !PyErr_Occurred())
        s->tx_full++;
    Py_DECREF(seq);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromSsize_t(sent);
}

static PyObject *Socket_flush(SocketObject *s, PyObject *Py_UNUSED(ignored))
{
    if (s->xsk) {
        kick(s);
        reclaim(s);
    }
    return PyLong_FromUnsignedLong(s->outstanding_tx);
}

/* --------------------------------------------------------------------------------- the rest */

static PyObject *Socket_close(SocketObject *s, PyObject *Py_UNUSED(ignored))
{
    teardown(s);
    Py_RETURN_NONE;
}

static PyObject *Socket_fileno(SocketObject *s, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(s->fd);
}

static PyObject *Socket_stats(SocketObject *s, PyObject *Py_UNUSED(ignored))
{
    struct xdp_statistics st = {0};
    socklen_t len = sizeof st;
    if (s->fd >= 0)
        getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, &st, &len);
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsI}", "rx", s->rx_frames, "tx", s->tx_frames, "bad_checksum",
        s->bad_checksum, "malformed", s->malformed, "tx_full", s->tx_full, "rx_dropped",
        (unsigned long long)st.rx_dropped, "rx_invalid", (unsigned long long)st.rx_invalid_descs,
        "rx_ring_full", (unsigned long long)st.rx_ring_full, "outstanding", s->outstanding_tx);
}

static PyObject *Socket_get_native(SocketObject *s, void *c)
{
    (void)c;
    return PyBool_FromLong(s->native);
}

static PyObject *Socket_get_zero_copy(SocketObject *s, void *c)
{
    (void)c;
    return PyBool_FromLong(s->zero_copy);
}

static PyMethodDef Socket_methods[] = {
    {"recv", (PyCFunction)Socket_recv, METH_O,
     "recv(max) -> [(payload, (ip, port)), ...]: what the RX ring holds, at most max"},
    {"send", (PyCFunction)Socket_send, METH_O,
     "send([(payload, header), ...]) -> how many were queued (the TX ring may be full)"},
    {"flush", (PyCFunction)Socket_flush, METH_NOARGS,
     "wake the kernel for TX and reclaim completed frames; -> frames still in flight"},
    {"close", (PyCFunction)Socket_close, METH_NOARGS, "close the socket, detach the program"},
    {"fileno", (PyCFunction)Socket_fileno, METH_NOARGS, "the AF_XDP socket's descriptor"},
    {"stats", (PyCFunction)Socket_stats, METH_NOARGS, "counters, the kernel's included"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Socket_getset[] = {
    {"native", (getter)Socket_get_native, NULL, "attached in native (driver) mode", NULL},
    {"zero_copy", (getter)Socket_get_zero_copy, NULL, "bound in zero-copy mode", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SocketType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "insane._xdp.Socket",
    .tp_basicsize = sizeof(SocketObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Socket(interface, queue, program, ports, mode='auto', zero_copy='auto', "
              "need_wakeup=True, frames=4096, frame_size=4096): an AF_XDP socket with "
              "INSANE's XDP program attached",
    .tp_new = Socket_new,
    .tp_init = (initproc)Socket_init,
    .tp_dealloc = (destructor)Socket_dealloc,
    .tp_methods = Socket_methods,
    .tp_getset = Socket_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_xdp", "AF_XDP sockets for INSANE (libxdp, libbpf).", -1, NULL,
};

PyMODINIT_FUNC PyInit__xdp(void)
{
    if (PyType_Ready(&SocketType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&SocketType);
    if (PyModule_AddObject(m, "Socket", (PyObject *)&SocketType) < 0) {
        Py_DECREF(&SocketType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
