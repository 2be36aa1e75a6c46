/*
 * insane._dpdk: the DPDK datapath's native layer (DPDK 22.11: EAL, ethdev, mbuf).
 *
 * init(args) starts the EAL once per process (DPDK cannot start it twice); its own error
 * message comes back as an OSError. A Port is one ethdev port (a PCI NIC bound to vfio, or a
 * virtual device such as net_af_packet, net_af_xdp or net_tap) with one RX and one TX queue
 * and a small mempool. Python sees batches of UDP datagrams only:
 *
 *   recv(max) -> [(payload, (ip, port)), ...]   IPv4/UDP frames for our address and ports,
 *                                              checked (udp_frames.h); ARP requests for our
 *                                              address are answered here; ARP replies are
 *                                              kept for arp_replies(); the rest is ignored
 *                                              (it is the kernel's, where a kernel shares
 *                                              the interface) or counted when malformed.
 *   send([(payload, header), ...]) -> n         frames built from 42-byte header templates
 *   send_raw(frame)                             one frame as it is (an ARP request)
 *
 * close() stops and closes the port; cleanup() ends the EAL (at exit, and on SIGTERM).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_log.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "udp_frames.h"

#define BURST 64
#define MAX_PORTS 16
#define MAX_ARP 64

static int eal_ready = 0;
static PyObject *eal_log_text = NULL; /* what the EAL logged while starting */

typedef struct {
    PyObject_HEAD
    uint16_t port_id;
    int started;
    struct rte_mempool *pool;
    struct rte_ether_addr mac;
    uint32_t ip;            /* our IPv4 address, network order */
    uint16_t ports[MAX_PORTS]; /* our UDP ports, host order */
    int nports;
    uint16_t ip_id;
    PyObject *arp;          /* ARP replies seen: list of bytes */
    unsigned long long rx_frames, tx_frames, bad_checksum, malformed, tx_full, arp_answered;
} PortObject;

/* ------------------------------------------------------------------------------------ EAL */

static PyObject *eal_init(PyObject *self, PyObject *args_list)
{
    (void)self;
    if (eal_ready)
        Py_RETURN_FALSE;
    PyObject *seq = PySequence_Fast(args_list, "init() takes a list of EAL arguments");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    char **argv = PyMem_Calloc((size_t)n + 2, sizeof(char *));
    if (!argv) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    argv[0] = "insane";
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *a = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        if (!a) {
            PyMem_Free(argv);
            Py_DECREF(seq);
            return NULL;
        }
        argv[i + 1] = (char *)a;
    }
    /* The EAL explains itself in its log: catch that, to put it in the error. */
    char *log_text = NULL;
    size_t log_len = 0;
    FILE *log = open_memstream(&log_text, &log_len);
    if (log)
        rte_openlog_stream(log);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = rte_eal_init((int)n + 1, argv);
    Py_END_ALLOW_THREADS
    int err = rte_errno;
    PyMem_Free(argv);
    Py_DECREF(seq);
    if (log) {
        rte_openlog_stream(NULL);
        fclose(log);
    }
    if (rc < 0) {
        /* the log's last lines, without "EAL: " prefixes and newlines */
        const char *tail = log_text ? log_text : "";
        if (log_len > 400)
            tail = log_text + log_len - 400;
        PyErr_Format(PyExc_OSError, "EAL: %s: %s", rte_strerror(err), tail);
        free(log_text);
        return NULL;
    }
    Py_XDECREF(eal_log_text);
    eal_log_text = PyUnicode_DecodeUTF8(log_text ? log_text : "", (Py_ssize_t)log_len, "replace");
    free(log_text);
    eal_ready = 1;
    Py_RETURN_TRUE;
}

static PyObject *eal_cleanup(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    if (!eal_ready)
        Py_RETURN_FALSE;
    uint16_t pid;
    RTE_ETH_FOREACH_DEV(pid)
    {
        rte_eth_dev_stop(pid);
        rte_eth_dev_close(pid);
    }
    rte_eal_cleanup();
    eal_ready = 0; /* and it cannot start again in this process */
    Py_RETURN_TRUE;
}

static PyObject *eal_log(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    if (!eal_log_text)
        return PyUnicode_FromString("");
    Py_INCREF(eal_log_text);
    return eal_log_text;
}

static PyObject *port_count(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyLong_FromLong(eal_ready ? rte_eth_dev_count_avail() : 0);
}

static PyObject *port_by_name(PyObject *self, PyObject *name)
{
    (void)self;
    const char *s = PyUnicode_AsUTF8(name);
    uint16_t pid;
    if (!s)
        return NULL;
    if (!eal_ready || rte_eth_dev_get_port_by_name(s, &pid) != 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(pid);
}

/* ----------------------------------------------------------------------------------- Port */

static PyObject *Port_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PortObject *p = (PortObject *)PyType_GenericNew(type, args, kwds);
    if (p) {
        p->arp = PyList_New(0);
        if (!p->arp) {
            Py_DECREF(p);
            return NULL;
        }
    }
    return (PyObject *)p;
}

static void stop_port(PortObject *p)
{
    if (p->started) {
        rte_eth_dev_stop(p->port_id);
        rte_eth_dev_close(p->port_id);
        p->started = 0;
    }
    if (p->pool) {
        rte_mempool_free(p->pool);
        p->pool = NULL;
    }
}

static int Port_init(PortObject *p, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"port", "ip", "udp_ports", "mbufs", "descriptors", NULL};
    unsigned int port_id, mbufs = 4095, desc = 512;
    const char *ip;
    PyObject *ports;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "IsO|II", kwlist, &port_id, &ip, &ports, &mbufs,
                                     &desc))
        return -1;
    if (!eal_ready) {
        PyErr_SetString(PyExc_OSError, "the EAL is not initialised (insane._dpdk.init)");
        return -1;
    }
    if (!rte_eth_dev_is_valid_port((uint16_t)port_id)) {
        PyErr_Format(PyExc_OSError, "no DPDK port %u (%u available)", port_id,
                     rte_eth_dev_count_avail());
        return -1;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1) {
        PyErr_Format(PyExc_ValueError, "not an IPv4 address: %s", ip);
        return -1;
    }
    stop_port(p);
    p->port_id = (uint16_t)port_id;
    p->ip = a.s_addr;
    p->nports = 0;
    Py_ssize_t n = PySequence_Size(ports);
    for (Py_ssize_t i = 0; i < n && p->nports < MAX_PORTS; i++) {
        PyObject *item = PySequence_GetItem(ports, i);
        long v = item ? PyLong_AsLong(item) : -1;
        Py_XDECREF(item);
        if (v <= 0 || v > 65535) {
            PyErr_SetString(PyExc_ValueError, "udp_ports: ports 1-65535");
            return -1;
        }
        p->ports[p->nports++] = (uint16_t)v;
    }
    char name[64];
    snprintf(name, sizeof name, "insane_pool_%u", port_id);
    int socket_id = rte_eth_dev_socket_id(p->port_id);
    p->pool = rte_pktmbuf_pool_create(name, mbufs, 128, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                      socket_id < 0 ? (int)rte_socket_id() : socket_id);
    if (!p->pool) {
        PyErr_Format(PyExc_OSError, "cannot create the mbuf pool (%u mbufs): %s", mbufs,
                     rte_strerror(rte_errno));
        return -1;
    }
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    uint16_t nrx = (uint16_t)desc, ntx = (uint16_t)desc;
    int rc = rte_eth_dev_configure(p->port_id, 1, 1, &conf);
    if (rc == 0)
        rc = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &nrx, &ntx);
    if (rc == 0)
        rc = rte_eth_rx_queue_setup(p->port_id, 0, nrx, (unsigned)socket_id, NULL, p->pool);
    if (rc == 0)
        rc = rte_eth_tx_queue_setup(p->port_id, 0, ntx, (unsigned)socket_id, NULL);
    if (rc == 0)
        rc = rte_eth_dev_start(p->port_id);
    if (rc != 0) {
        PyErr_Format(PyExc_OSError, "cannot start DPDK port %u: %s", port_id, rte_strerror(-rc));
        rte_mempool_free(p->pool);
        p->pool = NULL;
        return -1;
    }
    p->started = 1;
    rte_eth_macaddr_get(p->port_id, &p->mac);
    return 0;
}

static void Port_dealloc(PortObject *p)
{
    if (eal_ready)
        stop_port(p);
    Py_XDECREF(p->arp);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int ours(PortObject *p, uint16_t port)
{
    for (int i = 0; i < p->nports; i++)
        if (p->ports[i] == port)
            return 1;
    return 0;
}

/* Answer an ARP request for our address in place (the mbuf goes back out). */
static int arp(PortObject *p, struct rte_mbuf *m, uint8_t *f, uint32_t len)
{
    if (len < 42 || f[14] != 0 || f[15] != 1 || f[16] != 0x08 || f[17] != 0 || f[18] != 6 ||
        f[19] != 4)
        return 0;
    uint16_t op = (uint16_t)(f[20] << 8 | f[21]);
    if (op == 2) { /* a reply: for the resolver in Python */
        if (PyList_GET_SIZE(p->arp) < MAX_ARP) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)f, 42);
            if (b) {
                PyList_Append(p->arp, b);
                Py_DECREF(b);
            }
        }
        return 0;
    }
    if (op != 1 || memcmp(f + 38, &p->ip, 4) != 0)
        return 0;
    /* reply: target <- sender, sender <- us */
    memcpy(f, f + 6, 6);
    memcpy(f + 6, &p->mac, 6);
    f[21] = 2;
    memcpy(f + 32, f + 22, 10); /* target hw + ip <- sender hw + ip */
    memcpy(f + 22, &p->mac, 6);
    memcpy(f + 28, &p->ip, 4);
    m->data_len = m->pkt_len = 42;
    if (rte_eth_tx_burst(p->port_id, 0, &m, 1) == 1) {
        p->arp_answered++;
        return 1;
    }
    return 0;
}

static PyObject *Port_recv(PortObject *p, PyObject *arg)
{
    long max = PyLong_AsLong(arg);
    if (max == -1 && PyErr_Occurred())
        return NULL;
    if (!p->started) {
        PyErr_SetString(PyExc_OSError, "port closed");
        return NULL;
    }
    struct rte_mbuf *bufs[BURST];
    uint16_t n = rte_eth_rx_burst(p->port_id, 0, bufs, (uint16_t)(max > BURST ? BURST : max));
    PyObject *out = PyList_New(0);
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *m = bufs[i];
        uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
        uint32_t len = rte_pktmbuf_data_len(m);
        if (len >= 14 && f[12] == 0x08 && f[13] == 0x06) {
            if (arp(p, m, f, len))
                continue; /* the mbuf went out as the answer */
            rte_pktmbuf_free(m);
            continue;
        }
        /* only IPv4/UDP to our address and ports, not our own frames (a tap sees them) */
        if (!out || len < UDP_FRAME_HDR || f[12] != 0x08 || f[13] != 0x00 || f[23] != 17 ||
            memcmp(f + 30, &p->ip, 4) != 0 || memcmp(f + 6, &p->mac, 6) == 0 ||
            !ours(p, (uint16_t)(f[14 + (f[14] & 0x0f) * 4 + 2] << 8 |
                                f[14 + (f[14] & 0x0f) * 4 + 3]))) {
            rte_pktmbuf_free(m);
            continue;
        }
        const uint8_t *payload, *ip, *udp;
        uint16_t plen;
        enum frame_verdict v = frame_parse(f, len, &payload, &plen, &ip, &udp);
        if (v != FRAME_OK) {
            if (v == FRAME_MALFORMED)
                p->malformed++;
            else
                p->bad_checksum++;
            rte_pktmbuf_free(m);
            continue;
        }
        PyObject *item = Py_BuildValue(
            "(y#(Ni))", payload, (Py_ssize_t)plen,
            PyUnicode_FromFormat("%u.%u.%u.%u", ip[12], ip[13], ip[14], ip[15]),
            (int)(udp[0] << 8 | udp[1]));
        rte_pktmbuf_free(m);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            continue;
        }
        Py_DECREF(item);
        p->rx_frames++;
    }
    return out;
}

static PyObject *Port_send(PortObject *p, PyObject *items)
{
    if (!p->started) {
        PyErr_SetString(PyExc_OSError, "port closed");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(items, "send() takes a list of (payload, header)");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), sent = 0;
    struct rte_mbuf *bufs[BURST];
    for (Py_ssize_t at = 0; at < n;) {
        uint16_t k = 0;
        for (; k < BURST && at + k < n; k++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seq, at + k);
            PyObject *pl, *h;
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
                !PyBytes_Check(pl = PyTuple_GET_ITEM(item, 0)) ||
                !PyBytes_Check(h = PyTuple_GET_ITEM(item, 1)) ||
                PyBytes_GET_SIZE(h) != UDP_FRAME_HDR ||
                PyBytes_GET_SIZE(pl) + UDP_FRAME_HDR > RTE_MBUF_DEFAULT_DATAROOM) {
                PyErr_SetString(PyExc_ValueError, "(payload, 42-byte header) that fits an mbuf");
                break;
            }
            struct rte_mbuf *m = rte_pktmbuf_alloc(p->pool);
            if (!m)
                break;
            uint16_t plen = (uint16_t)PyBytes_GET_SIZE(pl);
            uint8_t *f = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(UDP_FRAME_HDR + plen));
            frame_fill(f, (const uint8_t *)PyBytes_AS_STRING(h),
                       (const uint8_t *)PyBytes_AS_STRING(pl), plen, p->ip_id++);
            bufs[k] = m;
        }
        uint16_t done = k ? rte_eth_tx_burst(p->port_id, 0, bufs, k) : 0;
        for (uint16_t j = done; j < k; j++)
            rte_pktmbuf_free(bufs[j]);
        sent += done;
        at += done;
        if (done < k || k == 0 || PyErr_Occurred())
            break; /* the TX ring is full, the pool is empty, or a bad item */
    }
    Py_DECREF(seq);
    p->tx_frames += (unsigned long long)sent;
    if (sent < n && !PyErr_Occurred())
        p->tx_full++;
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromSsize_t(sent);
}

static PyObject *Port_send_raw(PortObject *p, PyObject *frame)
{
    char *data;
    Py_ssize_t len;
    if (!p->started) {
        PyErr_SetString(PyExc_OSError, "port closed");
        return NULL;
    }
    if (PyBytes_AsStringAndSize(frame, &data, &len) < 0)
        return NULL;
    struct rte_mbuf *m = rte_pktmbuf_alloc(p->pool);
    if (!m)
        Py_RETURN_FALSE;
    uint8_t *f = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)len);
    if (!f) {
        rte_pktmbuf_free(m);
        Py_RETURN_FALSE;
    }
    memcpy(f, data, (size_t)len);
    if (rte_eth_tx_burst(p->port_id, 0, &m, 1) != 1) {
        rte_pktmbuf_free(m);
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyObject *Port_arp_replies(PortObject *p, PyObject *noargs)
{
    (void)noargs;
    PyObject *out = p->arp;
    p->arp = PyList_New(0);
    return out;
}

static PyObject *Port_close(PortObject *p, PyObject *noargs)
{
    (void)noargs;
    if (eal_ready)
        stop_port(p);
    Py_RETURN_NONE;
}

static PyObject *Port_stats(PortObject *p, PyObject *noargs)
{
    (void)noargs;
    struct rte_eth_stats st;
    memset(&st, 0, sizeof st);
    if (p->started)
        rte_eth_stats_get(p->port_id, &st);
    return Py_BuildValue("{sKsKsKsKsKsKsKsK}", "rx", p->rx_frames, "tx", p->tx_frames,
                         "bad_checksum", p->bad_checksum, "malformed", p->malformed, "tx_full",
                         p->tx_full, "arp_answered", p->arp_answered, "rx_missed",
                         (unsigned long long)st.imissed, "rx_nombuf",
                         (unsigned long long)st.rx_nombuf);
}

static PyObject *Port_get_mac(PortObject *p, void *c)
{
    (void)c;
    return PyBytes_FromStringAndSize((const char *)&p->mac, 6);
}

static PyObject *Port_get_driver(PortObject *p, void *c)
{
    (void)c;
    struct rte_eth_dev_info info;
    if (!p->started || rte_eth_dev_info_get(p->port_id, &info) != 0)
        Py_RETURN_NONE;
    return PyUnicode_FromString(info.driver_name);
}

static PyMethodDef Port_methods[] = {
    {"recv", (PyCFunction)Port_recv, METH_O, "recv(max) -> [(payload, (ip, port)), ...]"},
    {"send", (PyCFunction)Port_send, METH_O, "send([(payload, header), ...]) -> how many went"},
    {"send_raw", (PyCFunction)Port_send_raw, METH_O, "send one frame as it is"},
    {"arp_replies", (PyCFunction)Port_arp_replies, METH_NOARGS, "ARP replies seen since"},
    {"close", (PyCFunction)Port_close, METH_NOARGS, "stop and close the port"},
    {"stats", (PyCFunction)Port_stats, METH_NOARGS, "counters, the driver's included"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Port_getset[] = {
    {"mac", (getter)Port_get_mac, NULL, "the port's MAC address", NULL},
    {"driver", (getter)Port_get_driver, NULL, "the port's driver name", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PortType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "insane._dpdk.Port",
    .tp_basicsize = sizeof(PortObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Port(port, ip, udp_ports, mbufs=4095, descriptors=512): a started ethdev port",
    .tp_new = Port_new,
    .tp_init = (initproc)Port_init,
    .tp_dealloc = (destructor)Port_dealloc,
    .tp_methods = Port_methods,
    .tp_getset = Port_getset,
};

static PyMethodDef module_methods[] = {
    {"init", eal_init, METH_O, "init(args): start the EAL (once); False if it already runs"},
    {"cleanup", eal_cleanup, METH_NOARGS, "stop every port and end the EAL"},
    {"port_count", port_count, METH_NOARGS, "ports the EAL found"},
    {"eal_log", eal_log, METH_NOARGS, "what the EAL logged while starting"},
    {"port_by_name", port_by_name, METH_O, "a port's id from its device name, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_dpdk", "DPDK ports for INSANE.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__dpdk(void)
{
    if (PyType_Ready(&PortType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&PortType);
    if (PyModule_AddObject(m, "Port", (PyObject *)&PortType) < 0) {
        Py_DECREF(&PortType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
