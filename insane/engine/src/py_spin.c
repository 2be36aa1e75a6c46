/* Poll mode's spin on the kernel UDP socket, in C: `spin_udp(fd, deliver, until, idle, limit)`
 * is UdpTransport.spin's loop (its poll_once inside transports.base.busy_poll), the
 * reference, with no Python frame and no exception per empty poll:
 *
 *   read one datagram without waiting (MSG_DONTWAIT; the GIL released around the call, as the
 *   socket module does); when one came, deliver([(data, (host, port))]) and return True if
 *   until() then holds; when none came, return False once nothing came for `idle` seconds or
 *   `limit` seconds passed since the start; any other error of the socket (an ICMP error
 *   IP_RECVERR surfaces) ends the spin: False, the event loop's reader sees it next.
 *
 * The clock is CLOCK_MONOTONIC (time.perf_counter's). Signals are checked at every empty poll,
 * so Ctrl-C stops a spin as it stops the reference. Only IPv4 sockets (the transport's). */
#include "py_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "parts.h"

#define SPIN_BUFFER 65536

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The (host, port) of `sa`, the last one's tuple again when it is the same address. */
static PyObject *address(const struct sockaddr_in *sa, struct sockaddr_in *last,
                         PyObject **last_tuple)
{
    if (*last_tuple != NULL && sa->sin_addr.s_addr == last->sin_addr.s_addr &&
        sa->sin_port == last->sin_port)
        return Py_NewRef(*last_tuple);
    char host[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &sa->sin_addr, host, sizeof host) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *t = Py_BuildValue("(si)", host, (int)ntohs(sa->sin_port));
    if (t == NULL)
        return NULL;
    Py_XSETREF(*last_tuple, Py_NewRef(t));
    *last = *sa;
    return t;
}

/* deliver([(data, addr)]); -1 with the exception set. */
static int deliver_one(PyObject *deliver, const char *buf, ssize_t n, PyObject *addr)
{
    PyObject *data = PyBytes_FromStringAndSize(buf, n);
    if (data == NULL)
        return -1;
    PyObject *item = PyTuple_Pack(2, data, addr);
    Py_DECREF(data);
    if (item == NULL)
        return -1;
    PyObject *batch = PyList_New(1);
    if (batch == NULL) {
        Py_DECREF(item);
        return -1;
    }
    PyList_SET_ITEM(batch, 0, item);
    PyObject *r = PyObject_CallOneArg(deliver, batch);
    Py_DECREF(batch);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *spin_udp(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "spin_udp(fd, deliver, until, idle, limit)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "spin_udp: not a file descriptor");
        return NULL;
    }
    PyObject *deliver = args[1], *until = args[2] == Py_None ? NULL : args[2];
    double idle, limit;
    if (py_double(args[3], &idle) < 0 || py_double(args[4], &limit) < 0)
        return NULL;
    char *buf = PyMem_Malloc(SPIN_BUFFER);
    if (buf == NULL)
        return PyErr_NoMemory();
    struct sockaddr_in last = {0};
    PyObject *last_tuple = NULL, *result = NULL;
    double start = monotonic(), last_got = start;
    for (;;) {
        struct sockaddr_in sa;
        socklen_t salen = sizeof sa;
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS
        n = recvfrom((int)fd, buf, SPIN_BUFFER, MSG_DONTWAIT, (struct sockaddr *)&sa, &salen);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
                result = Py_NewRef(Py_False);
                break;
            }
            if (PyErr_CheckSignals() < 0)
                break;
            double now = monotonic();
            if (now - last_got > idle || now - start > limit) {
                result = Py_NewRef(Py_False);
                break;
            }
            continue;
        }
        if (sa.sin_family != AF_INET || salen < (socklen_t)sizeof sa) {
            PyErr_SetString(PyExc_OSError, "spin_udp: not an IPv4 socket");
            break;
        }
        PyObject *addr = address(&sa, &last, &last_tuple);
        if (addr == NULL)
            break;
        int r = deliver_one(deliver, buf, n, addr);
        Py_DECREF(addr);
        if (r < 0)
            break;
        if (until != NULL) {
            PyObject *done = PyObject_CallNoArgs(until);
            if (done == NULL)
                break;
            int yes = PyObject_IsTrue(done);
            Py_DECREF(done);
            if (yes < 0)
                break;
            if (yes) {
                result = Py_NewRef(Py_True);
                break;
            }
        }
        last_got = monotonic();
        if (last_got - start > limit) {
            result = Py_NewRef(Py_False);
            break;
        }
    }
    Py_XDECREF(last_tuple);
    PyMem_Free(buf);
    return result;
}

static PyMethodDef spin_methods[] = {
    {"spin_udp", (PyCFunction)(void (*)(void))spin_udp, METH_FASTCALL,
     "UdpTransport.spin's loop in C: True when until() held after a delivery, else False"},
    {NULL, NULL, 0, NULL},
};

int engine_add_spin(PyObject *module)
{
    return PyModule_AddFunctions(module, spin_methods);
}
