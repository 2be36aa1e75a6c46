/*
 * udp_pingpong: raw C UDP baselines for the INSANE benchmarks.
 *
 *   udp_pingpong server PORT [ADDR]                echo every datagram back (round-trip peer)
 *   udp_pingpong client HOST PORT SIZE COUNT [WARMUP]
 *                                                  ping-pong COUNT messages of SIZE bytes,
 *                                                  print p50/p99 RTT (us) and msg/s as JSON
 *   udp_pingpong sink PORT [COUNT [ADDR]]          count datagrams (recvmmsg batches) until the
 *                                                  end marker, COUNT received, or an idle
 *                                                  timeout; print JSON
 *   udp_pingpong blast HOST PORT SIZE COUNT        send COUNT datagrams of SIZE bytes as fast as
 *                                                  possible (sendmmsg batches), then end markers
 *
 * PORT 0 on the server/sink picks a free port; they bind to ADDR, 127.0.0.1 unless given
 * (benchmarks/xdp_veth.py binds inside a network namespace of its own).  Servers print "ready PORT" on stdout once
 * bound, then the result (sink) as one JSON line.  A zero-length datagram stops the echo
 * server; the end marker for the sink is a datagram starting with 'E' followed by the
 * 64-bit count that was sent (data datagrams start with 'D').  Every receive has a timeout,
 * so no mode hangs when its peer dies.  Only meant for loopback (HOST is normally 127.0.0.1).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_SIZE 65507
#define END_MARKERS 16

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "udp_pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: udp_pingpong server PORT [ADDR]\n"
            "       udp_pingpong client HOST PORT SIZE COUNT [WARMUP]\n"
            "       udp_pingpong sink PORT [COUNT [ADDR]]\n"
            "       udp_pingpong blast HOST PORT SIZE COUNT\n");
    exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "udp_pingpong: bad %s: %s (expected %ld..%ld)\n", name, s, lo, hi);
        exit(2);
    }
    return v;
}

static void set_timeout(int fd, double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        die("setsockopt SO_RCVTIMEO");
}

static void set_bufs(int fd)
{
    int size = 8 << 20;
    /* SO_*BUFFORCE needs CAP_NET_ADMIN; fall back to the capped variants. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

static int bound_socket(long port, const char *addr)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        die("socket");
    set_bufs(fd);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (addr && inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
        fprintf(stderr, "udp_pingpong: bad IPv4 address: %s\n", addr);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind");
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("getsockname");
    printf("ready %u\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

static int connected_socket(const char *host, long port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        die("socket");
    set_bufs(fd);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "udp_pingpong: bad IPv4 address: %s\n", host);
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("connect");
    return fd;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile on a sorted array (the same rule as benchmarks/common.py). */
static double percentile_us(const uint64_t *sorted, long n, double p)
{
    if (n == 0)
        return 0.0;
    long rank = (long)((p / 100.0) * (double)n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

static int run_server(long port, const char *addr)
{
    int fd = bound_socket(port, addr);
    static char buf[MAX_SIZE];
    struct sockaddr_in from;
    set_timeout(fd, 30.0); /* idle timeout: give up if nobody talks for 30 s */
    for (;;) {
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                fprintf(stderr, "udp_pingpong server: idle timeout\n");
                return 1;
            }
            die("recvfrom");
        }
        if (n == 0) /* stop request */
            return 0;
        if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) < 0)
            die("sendto");
    }
}

static int run_client(const char *host, long port, long size, long count, long warmup)
{
    int fd = connected_socket(host, port);
    static char out[MAX_SIZE], in[MAX_SIZE];
    memset(out, 'p', (size_t)size);
    uint64_t *rtt = malloc(sizeof(uint64_t) * (size_t)count);
    if (!rtt)
        die("malloc");
    set_timeout(fd, 1.0);
    long lost = 0, done = 0;
    uint64_t t_start = 0;
    for (long i = 0; i < warmup + count; i++) {
        if (i == warmup)
            t_start = now_ns();
        uint32_t seq = (uint32_t)i;
        memcpy(out, &seq, size >= 4 ? 4 : (size_t)size);
        uint64_t t0 = now_ns();
        if (send(fd, out, (size_t)size, 0) < 0)
            die("send");
        for (;;) {
            ssize_t n = recv(fd, in, sizeof in, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    lost++; /* a lost round trip: do not record it, move on */
                    break;
                }
                die("recv");
            }
            if (n == size && memcmp(in, out, size >= 4 ? 4 : (size_t)size) == 0) {
                if (i >= warmup)
                    rtt[done++] = now_ns() - t0;
                break;
            }
            /* a stale echo of an earlier (timed-out) ping: keep waiting */
        }
        if (lost > 10) {
            fprintf(stderr, "udp_pingpong client: too many lost round trips\n");
            break;
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    send(fd, out, 0, 0); /* ask the server to stop */
    qsort(rtt, (size_t)done, sizeof rtt[0], cmp_u64);
    printf("{\"system\": \"raw-c-udp\", \"mode\": \"pingpong\", \"size\": %ld, \"count\": %ld, "
           "\"done\": %ld, \"lost\": %ld, \"p50_us\": %.3f, \"p99_us\": %.3f, "
           "\"msg_per_s\": %.1f, \"seconds\": %.6f}\n",
           size, count, done, lost, percentile_us(rtt, done, 50), percentile_us(rtt, done, 99),
           secs > 0 ? (double)done / secs : 0.0, secs);
    free(rtt);
    return done == count ? 0 : 1;
}

static int run_sink(long port, long expect, const char *addr)
{
    int fd = bound_socket(port, addr);
    static char bufs[BATCH][MAX_SIZE];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = MAX_SIZE;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    set_timeout(fd, 30.0); /* before the first datagram: wait for the blaster to start */
    long received = 0, sent = -1;
    uint64_t first = 0, last = 0;
    const char *why = "marker";
    while (sent < 0 && (expect <= 0 || received < expect)) {
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                why = received ? "idle timeout" : "no data";
                break;
            }
            die("recvmmsg");
        }
        uint64_t t = now_ns();
        for (int i = 0; i < n; i++) {
            if (msgs[i].msg_len > 0 && bufs[i][0] == 'E' && msgs[i].msg_len >= 9) {
                int64_t s;
                memcpy(&s, bufs[i] + 1, sizeof s);
                sent = (long)s;
            } else if (msgs[i].msg_len > 0) {
                if (received == 0) {
                    first = t;
                    set_timeout(fd, 2.0); /* after the first datagram: idle timeout */
                }
                received++;
                last = t;
            }
        }
    }
    if (expect > 0 && received >= expect)
        why = "count";
    double secs = received > 1 ? (double)(last - first) / 1e9 : 0.0;
    printf("{\"system\": \"raw-c-udp\", \"mode\": \"throughput\", \"received\": %ld, "
           "\"sent\": %ld, \"seconds\": %.6f, \"msg_per_s\": %.1f, \"stop\": \"%s\", "
           "\"first_ns\": %llu, \"last_ns\": %llu}\n",
           received, sent, secs, secs > 0 ? (double)received / secs : 0.0, why,
           (unsigned long long)first, (unsigned long long)last);
    return received > 0 ? 0 : 1;
}

static int run_blast(const char *host, long port, long size, long count)
{
    int fd = connected_socket(host, port);
    static char buf[MAX_SIZE];
    memset(buf, 'd', (size_t)size);
    buf[0] = 'D';
    struct mmsghdr msgs[BATCH];
    struct iovec iov;
    iov.iov_base = buf;
    iov.iov_len = (size_t)size;
    for (int i = 0; i < BATCH; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long sent = 0;
    uint64_t t0 = now_ns();
    while (sent < count) {
        long want = count - sent < BATCH ? count - sent : BATCH;
        int n = sendmmsg(fd, msgs, (unsigned)want, 0);
        if (n < 0) {
            if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN)
                continue;
            if (errno == ECONNREFUSED) /* ICMP from an earlier datagram: sink not there */
                continue;
            die("sendmmsg");
        }
        sent += n;
    }
    uint64_t t1 = now_ns();
    double secs = (double)(t1 - t0) / 1e9;
    /* End markers, spaced out a little so that a full receive buffer drains between them. */
    char marker[9];
    marker[0] = 'E';
    int64_t s = (int64_t)sent;
    memcpy(marker + 1, &s, sizeof s);
    for (int i = 0; i < END_MARKERS; i++) {
        send(fd, marker, sizeof marker, 0);
        usleep(2000);
    }
    printf("{\"system\": \"raw-c-udp\", \"mode\": \"blast\", \"size\": %ld, \"sent\": %ld, "
           "\"seconds\": %.6f, \"send_msg_per_s\": %.1f, \"start_ns\": %llu, "
           "\"end_ns\": %llu}\n",
           size, sent, secs, secs > 0 ? (double)sent / secs : 0.0, (unsigned long long)t0,
           (unsigned long long)t1);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    if (strcmp(mode, "server") == 0 && (argc == 3 || argc == 4))
        return run_server(parse_long(argv[2], 0, 65535, "port"), argc == 4 ? argv[3] : NULL);
    if (strcmp(mode, "sink") == 0 && argc >= 3 && argc <= 5)
        return run_sink(parse_long(argv[2], 0, 65535, "port"),
                        argc >= 4 ? parse_long(argv[3], 0, 1000000000, "count") : 0,
                        argc == 5 ? argv[4] : NULL);
    if (strcmp(mode, "client") == 0 && (argc == 6 || argc == 7)) {
        long count = parse_long(argv[5], 1, 100000000, "count");
        long warmup = argc == 7 ? parse_long(argv[6], 0, 100000000, "warmup")
                                : (count / 10 < 1000 ? count / 10 : 1000);
        return run_client(argv[2], parse_long(argv[3], 1, 65535, "port"),
                          parse_long(argv[4], 1, MAX_SIZE, "size"), count, warmup);
    }
    if (strcmp(mode, "blast") == 0 && argc == 6)
        return run_blast(argv[2], parse_long(argv[3], 1, 65535, "port"),
                         parse_long(argv[4], 1, MAX_SIZE, "size"),
                         parse_long(argv[5], 1, 1000000000, "count"));
    usage();
    return 2;
}
