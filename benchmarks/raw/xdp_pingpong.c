/*
 * xdp_pingpong: raw C AF_XDP baselines for the INSANE benchmarks (libxdp's xsk API).
 *
 *   xdp_pingpong server IFACE QUEUE               echo every UDP/IPv4 frame received on IFACE's
 *                                                 queue QUEUE back to its sender (MACs, IPs and
 *                                                 ports swapped), until a zero-length datagram
 *   xdp_pingpong client IFACE QUEUE SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE COUNT [WARMUP]
 *                                                 ping-pong COUNT datagrams of SIZE payload bytes
 *                                                 to DST_IP:PORT, print p50/p99 RTT (us) and
 *                                                 msg/s as JSON, then stop the server
 *   xdp_pingpong sink IFACE QUEUE [COUNT]         count UDP data frames until the end marker,
 *                                                 COUNT received, or an idle timeout; print JSON
 *   xdp_pingpong blast IFACE QUEUE SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE COUNT
 *                                                 send COUNT datagrams of SIZE bytes as fast as
 *                                                 the TX ring takes them (batches of 64), then
 *                                                 end markers
 *
 * Build:  cc -O2 -Wall -Wextra -o benchmarks/raw/bin/xdp_pingpong \
 *             benchmarks/raw/xdp_pingpong.c -lxdp -lbpf
 *
 * Needs CAP_NET_ADMIN + CAP_BPF (root).  The program opens one AF_XDP socket on IFACE/QUEUE
 * through libxdp, which loads its default XDP program (every frame of that queue is
 * redirected to the socket, so nothing else on that queue reaches the kernel stack while it
 * runs).  It asks for native XDP (XDP_FLAGS_DRV_MODE) and falls back to generic XDP
 * (XDP_FLAGS_SKB_MODE); the socket is bound in copy mode (XDP_COPY; veth has no zero-copy)
 * with XDP_USE_NEED_WAKEUP.  UMEM: 4096 frames of 4096 bytes, the first half in the fill ring
 * for RX, the second half a pool of TX frames.  All rings are busy-polled; TX is kicked with
 * sendto() when the kernel asks for it.  The XDP mode used goes to stderr and into the JSON.
 * Environment: XDP_PINGPONG_MODE=native|generic insists on one mode (default: native, else
 * generic); XDP_PINGPONG_VERBOSE=1 lets libbpf's and libxdp's informational messages through.
 * Without a bpffs at /sys/fs/bpf (`ip netns exec` mounts a fresh /sys) libxdp warns "No bpffs
 * found" and attaches its program directly, without its dispatcher: harmless here.
 * Cross-checks against udp_pingpong: the kernel accepts the client's frames, and the echoes
 * of the server; a kernel sender's frames on a veth carry a partial UDP checksum (TX checksum
 * offload), which is why the server recomputes it and why the client, which checks the
 * echoes' checksums during its warm-up, counts "bad_checksum" against a kernel echo server
 * unless TX checksumming is off on that veth (ethtool -K DEV tx off).
 *
 * Frames are built by hand: Ethernet + IPv4 (no options, correct header checksum) + UDP
 * (correct checksum over the pseudo header).  MACs are aa:bb:cc:dd:ee:ff, IPs dotted quads;
 * the client/blaster's source port is PORT + 1.  SIZE is 1..1472 (an MTU of 1500).
 *
 * Wire conventions are udp_pingpong.c's: the first 4 payload bytes of a ping carry its
 * sequence number; a zero-length datagram stops the echo server; sink data datagrams start
 * with 'D', the end marker is 'E' followed by the 64-bit count that was sent.  The server
 * and sink print "ready" on stdout once their socket is set up, then one JSON line when they
 * end.  Every wait has a timeout: a round trip is lost after 1 s (more than 10 lost ends the
 * client), the server and sink give up after 30 s without traffic (the sink after 2 s once
 * data has arrived), a TX slot or completion is awaited 2 s at most.
 * Only meant for veth pairs inside network namespaces made for the benchmark.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#define NUM_FRAMES 4096
#define FRAME_SIZE 4096 /* XSK_UMEM__DEFAULT_FRAME_SIZE */
#define RX_FRAMES (NUM_FRAMES / 2)
#define RING_SIZE 2048 /* fill, completion, RX and TX rings */
#define BATCH 64
#define HDR_LEN (sizeof(struct ether_header) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define MAX_SIZE (1500 - 20 - 8) /* UDP payload at an MTU of 1500 */
#define END_MARKERS 16
#define WAIT_NS 2000000000ull   /* TX slot / completion wait */
#define RTT_TIMEOUT_NS 1000000000ull
#define IDLE_NS 30000000000ull  /* server / sink before any traffic */
#define SINK_IDLE_NS 2000000000ull

/* SIGINT/SIGTERM: leave the loops and close the socket, so that libxdp detaches its program. */
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "xdp_pingpong: %s: %s\n", what, strerror(err));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: xdp_pingpong server IFACE QUEUE\n"
            "       xdp_pingpong client IFACE QUEUE SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE COUNT "
            "[WARMUP]\n"
            "       xdp_pingpong sink IFACE QUEUE [COUNT]\n"
            "       xdp_pingpong blast IFACE QUEUE SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE "
            "COUNT\n");
    exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "xdp_pingpong: bad %s: %s (expected %ld..%ld)\n", name, s, lo, hi);
        exit(2);
    }
    return v;
}

static void parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char extra;
    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6) {
        fprintf(stderr, "xdp_pingpong: bad MAC address: %s\n", s);
        exit(2);
    }
    for (int i = 0; i < 6; i++) {
        if (v[i] > 0xff) {
            fprintf(stderr, "xdp_pingpong: bad MAC address: %s\n", s);
            exit(2);
        }
        mac[i] = (uint8_t)v[i];
    }
}

static uint32_t parse_ip(const char *s)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        fprintf(stderr, "xdp_pingpong: bad IPv4 address: %s\n", s);
        exit(2);
    }
    return a.s_addr; /* network order */
}

/* ------------------------------------------------------------------ checksums */

/* One's complement sum of 16-bit big-endian words (an odd last byte padded with zero),
 * 32 bits at a time into a 64-bit accumulator; `len` must be even except on the last call. */
static uint64_t csum_add(uint64_t sum, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum += ntohl(w);
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        sum += (uint32_t)p[0] << 8 | p[1];
        p += 2;
        len -= 2;
    }
    if (len)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

static uint16_t csum_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void ip_checksum(struct iphdr *ip)
{
    ip->check = 0;
    ip->check = htons(csum_fold(csum_add(0, ip, (size_t)ip->ihl * 4)));
}

/* UDP checksum over the IPv4 pseudo header, the UDP header and the payload. */
static uint16_t udp_checksum(const struct iphdr *ip, const struct udphdr *udp)
{
    uint16_t ulen = ntohs(udp->len);
    uint64_t sum = 0;
    sum = csum_add(sum, &ip->saddr, 4);
    sum = csum_add(sum, &ip->daddr, 4);
    sum += IPPROTO_UDP;
    sum += ulen;
    sum = csum_add(sum, udp, ulen); /* udp->check must be 0 here */
    uint16_t c = csum_fold(sum);
    return c ? c : 0xffff; /* 0 means "no checksum" in UDP */
}

/* ------------------------------------------------------------------ AF_XDP socket */

/* libbpf and libxdp chatter (skipped ELF sections, "no bpffs, no dispatcher") goes to stderr
 * only with XDP_PINGPONG_VERBOSE set; their warnings always do. */
static int verbose;

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    return level == LIBBPF_WARN || (verbose && level == LIBBPF_INFO) ? vfprintf(stderr, fmt, ap)
                                                                      : 0;
}

static int print_libxdp(enum libxdp_print_level level, const char *fmt, va_list ap)
{
    return level == LIBXDP_WARN || (verbose && level == LIBXDP_INFO) ? vfprintf(stderr, fmt, ap)
                                                                      : 0;
}

struct xsk {
    void *area;
    struct xsk_umem *umem;
    struct xsk_socket *sock;
    struct xsk_ring_prod fill, tx;
    struct xsk_ring_cons comp, rx;
    int fd;
    const char *mode; /* "native" or "generic" */
    uint64_t tx_free[NUM_FRAMES - RX_FRAMES]; /* addresses of idle TX frames */
    uint32_t n_free;
};

static int memlock_limited; /* RLIMIT_MEMLOCK could not be lifted */

static int xsk_try_once(struct xsk *x, const char *ifname, uint32_t queue, uint32_t xdp_flags)
{
    struct xsk_umem_config ucfg = {
        .fill_size = RING_SIZE,
        .comp_size = RING_SIZE,
        .frame_size = FRAME_SIZE,
        .frame_headroom = 0,
        .flags = 0,
    };
    int err = xsk_umem__create(&x->umem, x->area, (uint64_t)NUM_FRAMES * FRAME_SIZE, &x->fill,
                               &x->comp, &ucfg);
    if (err) {
        if (memlock_limited && (err == -EPERM || err == -ENOMEM))
            fprintf(stderr, "xdp_pingpong: RLIMIT_MEMLOCK could not be lifted (needs "
                            "CAP_SYS_RESOURCE on kernels before 5.11)\n");
        die("xsk_umem__create", -err);
    }
    struct xsk_socket_config cfg = {
        .rx_size = RING_SIZE,
        .tx_size = RING_SIZE,
        .libxdp_flags = 0, /* let libxdp load its default redirect program */
        .xdp_flags = xdp_flags,
        .bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
    };
    err = xsk_socket__create(&x->sock, ifname, queue, x->umem, &x->rx, &x->tx, &cfg);
    if (err) {
        /* A fresh UMEM for the next try: its rings are tied to the failed socket's set-up. */
        xsk_umem__delete(x->umem);
        x->umem = NULL;
        return err;
    }
    return 0;
}

/* The kernel releases an AF_XDP socket's hold on its queue a little after the socket is
 * closed (deferred work), so a run right after another one can find the queue busy for a
 * moment: retry EBUSY for up to 3 s. */
static int xsk_try(struct xsk *x, const char *ifname, uint32_t queue, uint32_t xdp_flags)
{
    uint64_t deadline = now_ns() + 3000000000ull;
    for (;;) {
        int err = xsk_try_once(x, ifname, queue, xdp_flags);
        if (err != -EBUSY || now_ns() > deadline)
            return err;
        usleep(20000);
    }
}

static void xsk_open(struct xsk *x, const char *ifname, uint32_t queue)
{
    /* Kernels before 5.11 charge the UMEM and BPF maps to RLIMIT_MEMLOCK; later ones to the
     * memory cgroup, so a refusal (no CAP_SYS_RESOURCE) only matters on old kernels. */
    verbose = getenv("XDP_PINGPONG_VERBOSE") != NULL;
    struct rlimit lim = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_MEMLOCK, &lim) < 0 && getrlimit(RLIMIT_MEMLOCK, &lim) == 0) {
        memlock_limited = 1;
        lim.rlim_cur = lim.rlim_max; /* at least the soft limit up to the hard one */
        setrlimit(RLIMIT_MEMLOCK, &lim);
        if (verbose)
            fprintf(stderr, "xdp_pingpong: RLIMIT_MEMLOCK stays at %llu bytes (%s)\n",
                    (unsigned long long)lim.rlim_cur, strerror(EPERM));
    }
    if (if_nametoindex(ifname) == 0)
        die(ifname, errno);
    libbpf_set_print(print_libbpf);
    libxdp_set_print(print_libxdp);
    x->area = mmap(NULL, (size_t)NUM_FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (x->area == MAP_FAILED)
        die("mmap UMEM", errno);
    /* XDP_PINGPONG_MODE=generic skips the native try (to compare the two). */
    const char *want = getenv("XDP_PINGPONG_MODE");
    int err = want && strcmp(want, "generic") == 0 ? -EOPNOTSUPP
                                                   : xsk_try(x, ifname, queue, XDP_FLAGS_DRV_MODE);
    if (err == 0) {
        x->mode = "native";
    } else if (want && strcmp(want, "native") == 0) {
        die("xsk_socket__create (native XDP)", -err);
    } else {
        if (!want || strcmp(want, "generic") != 0)
            fprintf(stderr, "xdp_pingpong: native XDP on %s failed (%s); trying generic XDP\n",
                    ifname, strerror(-err));
        err = xsk_try(x, ifname, queue, XDP_FLAGS_SKB_MODE);
        if (err)
            die("xsk_socket__create (generic XDP)", -err);
        x->mode = "generic";
    }
    x->fd = xsk_socket__fd(x->sock);
    fprintf(stderr, "xdp_pingpong: AF_XDP socket on %s queue %u, %s XDP, copy mode\n", ifname,
            queue, x->mode);

    /* First half of the UMEM to the fill ring (RX), second half to the TX pool. */
    uint32_t idx;
    if (xsk_ring_prod__reserve(&x->fill, RX_FRAMES, &idx) != RX_FRAMES)
        die("fill ring reserve", ENOSPC);
    for (uint32_t i = 0; i < RX_FRAMES; i++)
        *xsk_ring_prod__fill_addr(&x->fill, idx + i) = (uint64_t)i * FRAME_SIZE;
    xsk_ring_prod__submit(&x->fill, RX_FRAMES);
    x->n_free = 0;
    for (uint32_t i = RX_FRAMES; i < NUM_FRAMES; i++)
        x->tx_free[x->n_free++] = (uint64_t)i * FRAME_SIZE;
}

static void xsk_close(struct xsk *x)
{
    xsk_socket__delete(x->sock); /* also detaches libxdp's program when it was the last user */
    xsk_umem__delete(x->umem);
    munmap(x->area, (size_t)NUM_FRAMES * FRAME_SIZE);
}

static inline uint8_t *frame(struct xsk *x, uint64_t addr)
{
    return xsk_umem__get_data(x->area, addr);
}

static void kick_tx(struct xsk *x)
{
    if (!xsk_ring_prod__needs_wakeup(&x->tx))
        return;
    if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN &&
        errno != EBUSY && errno != ENOBUFS && errno != ENETDOWN && errno != EINTR)
        die("sendto (TX kick)", errno);
}

static void kick_fill(struct xsk *x)
{
    if (xsk_ring_prod__needs_wakeup(&x->fill))
        recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* Return RX frames to the fill ring (space is always there: there are only RX_FRAMES of
 * them, and the ring holds RING_SIZE >= RX_FRAMES). */
static void refill(struct xsk *x, const uint64_t *addrs, uint32_t n)
{
    if (n == 0)
        return;
    uint32_t idx;
    while (xsk_ring_prod__reserve(&x->fill, n, &idx) != n)
        ; /* cannot happen; see above */
    for (uint32_t i = 0; i < n; i++)
        *xsk_ring_prod__fill_addr(&x->fill, idx + i) = addrs[i] & ~(uint64_t)(FRAME_SIZE - 1);
    xsk_ring_prod__submit(&x->fill, n);
    kick_fill(x);
}

/* Completed TX frames back to the TX pool; returns how many. */
static uint32_t reclaim_tx(struct xsk *x)
{
    uint32_t idx, n = xsk_ring_cons__peek(&x->comp, RING_SIZE, &idx);
    for (uint32_t i = 0; i < n; i++)
        x->tx_free[x->n_free++] = *xsk_ring_cons__comp_addr(&x->comp, idx + i);
    if (n)
        xsk_ring_cons__release(&x->comp, n);
    return n;
}

/* A TX frame from the pool, waiting for completions (at most WAIT_NS) when it is empty. */
static uint64_t get_tx_frame(struct xsk *x)
{
    if (x->n_free == 0) {
        uint64_t deadline = now_ns() + WAIT_NS;
        while (reclaim_tx(x) == 0) {
            kick_tx(x);
            if (now_ns() > deadline) {
                fprintf(stderr, "xdp_pingpong: no TX completion within 2 s\n");
                exit(1);
            }
        }
    }
    return x->tx_free[--x->n_free];
}

/* Put n frames (addresses and lengths) on the TX ring and kick it. */
static void send_frames(struct xsk *x, const uint64_t *addrs, const uint32_t *lens, uint32_t n)
{
    uint32_t idx;
    uint64_t deadline = 0;
    while (xsk_ring_prod__reserve(&x->tx, n, &idx) != n) {
        kick_tx(x);
        if (deadline == 0)
            deadline = now_ns() + WAIT_NS;
        else if (now_ns() > deadline) {
            fprintf(stderr, "xdp_pingpong: TX ring full for 2 s\n");
            exit(1);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        struct xdp_desc *d = xsk_ring_prod__tx_desc(&x->tx, idx + i);
        d->addr = addrs[i];
        d->len = lens[i];
    }
    xsk_ring_prod__submit(&x->tx, n);
    kick_tx(x);
}

/* Wait (at most WAIT_NS) until every TX frame has completed. */
static void drain_tx(struct xsk *x, uint32_t pool_size)
{
    uint64_t deadline = now_ns() + WAIT_NS;
    while (x->n_free < pool_size && now_ns() < deadline) {
        kick_tx(x);
        reclaim_tx(x);
    }
}

/* ------------------------------------------------------------------ frames */

struct flow {
    uint8_t src_mac[6], dst_mac[6];
    uint32_t src_ip, dst_ip; /* network order */
    uint16_t src_port, dst_port;
};

/* Write Ethernet + IPv4 + UDP headers for `len` payload bytes (already in place after the
 * headers) and both checksums; returns the frame length. */
static uint32_t build_frame(uint8_t *f, const struct flow *fl, uint32_t len, uint16_t ip_id)
{
    struct ether_header *eth = (struct ether_header *)f;
    struct iphdr *ip = (struct iphdr *)(eth + 1);
    struct udphdr *udp = (struct udphdr *)(ip + 1);
    memcpy(eth->ether_dhost, fl->dst_mac, 6);
    memcpy(eth->ether_shost, fl->src_mac, 6);
    eth->ether_type = htons(ETHERTYPE_IP);
    ip->version = 4;
    ip->ihl = 5;
    ip->tos = 0;
    ip->tot_len = htons((uint16_t)(sizeof *ip + sizeof *udp + len));
    ip->id = htons(ip_id);
    ip->frag_off = htons(IP_DF);
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->saddr = fl->src_ip;
    ip->daddr = fl->dst_ip;
    ip_checksum(ip);
    udp->source = htons(fl->src_port);
    udp->dest = htons(fl->dst_port);
    udp->len = htons((uint16_t)(sizeof *udp + len));
    udp->check = 0;
    udp->check = htons(udp_checksum(ip, udp));
    return (uint32_t)(HDR_LEN + len);
}

/* The UDP header and payload length of an IPv4/UDP frame (no IP options, not a fragment),
 * or NULL. */
static struct udphdr *parse_udp(uint8_t *f, uint32_t flen, uint32_t *payload_len)
{
    if (flen < HDR_LEN)
        return NULL;
    struct ether_header *eth = (struct ether_header *)f;
    struct iphdr *ip = (struct iphdr *)(eth + 1);
    if (eth->ether_type != htons(ETHERTYPE_IP) || ip->version != 4 || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP || (ntohs(ip->frag_off) & 0x3fff) != 0)
        return NULL;
    struct udphdr *udp = (struct udphdr *)(ip + 1);
    uint32_t ulen = ntohs(udp->len);
    if (ulen < sizeof *udp || ntohs(ip->tot_len) != sizeof *ip + ulen ||
        sizeof(struct ether_header) + sizeof *ip + ulen > flen)
        return NULL;
    *payload_len = ulen - (uint32_t)sizeof *udp;
    return udp;
}

static int udp_checksum_ok(uint8_t *f)
{
    struct iphdr *ip = (struct iphdr *)(f + sizeof(struct ether_header));
    struct udphdr *udp = (struct udphdr *)(ip + 1);
    if (csum_fold(csum_add(0, ip, sizeof *ip)) != 0)
        return 0;
    if (udp->check == 0)
        return 1;
    uint64_t sum = 0;
    sum = csum_add(sum, &ip->saddr, 4);
    sum = csum_add(sum, &ip->daddr, 4);
    sum += IPPROTO_UDP;
    sum += ntohs(udp->len);
    sum = csum_add(sum, udp, ntohs(udp->len));
    return csum_fold(sum) == 0;
}

/* Turn a received frame into its echo in place: swap MACs, IPs and ports, fresh TTL and both
 * checksums.  Swapping alone leaves a correct UDP checksum correct (it is a sum), but a frame
 * from a kernel socket on the other end of a veth carries only the pseudo-header part of its
 * checksum (TX checksum offload: the receiver is trusted to know), so it is recomputed. */
static void make_echo(uint8_t *f)
{
    struct ether_header *eth = (struct ether_header *)f;
    struct iphdr *ip = (struct iphdr *)(eth + 1);
    struct udphdr *udp = (struct udphdr *)(ip + 1);
    uint8_t mac[6];
    memcpy(mac, eth->ether_dhost, 6);
    memcpy(eth->ether_dhost, eth->ether_shost, 6);
    memcpy(eth->ether_shost, mac, 6);
    uint32_t a = ip->saddr;
    ip->saddr = ip->daddr;
    ip->daddr = a;
    ip->ttl = 64;
    ip_checksum(ip);
    uint16_t p = udp->source;
    udp->source = udp->dest;
    udp->dest = p;
    udp->check = 0;
    udp->check = htons(udp_checksum(ip, udp));
}

/* ------------------------------------------------------------------ modes */

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

static int run_server(const char *ifname, uint32_t queue)
{
    static struct xsk x;
    xsk_open(&x, ifname, queue);
    printf("ready\n");
    fflush(stdout);
    long echoed = 0, ignored = 0, in_flight = 0; /* echoes not yet completed */
    int stop = 0;
    const char *why = "stop";
    uint64_t last = now_ns();
    uint32_t spins = 0;
    while (!stop) {
        uint64_t comp[RING_SIZE];
        uint32_t cidx, nc = xsk_ring_cons__peek(&x.comp, RING_SIZE, &cidx);
        for (uint32_t i = 0; i < nc; i++)
            comp[i] = *xsk_ring_cons__comp_addr(&x.comp, cidx + i);
        if (nc) {
            in_flight -= nc;
            xsk_ring_cons__release(&x.comp, nc);
            refill(&x, comp, nc); /* echoed frames were RX frames: back to the fill ring */
        }
        uint32_t idx, n = xsk_ring_cons__peek(&x.rx, BATCH, &idx);
        if (n == 0) {
            if (++spins >= 1024) { /* look at the clock now and then only */
                spins = 0;
                if (now_ns() - last > IDLE_NS || stopping) {
                    why = stopping ? "signal" : "idle timeout";
                    break;
                }
            }
            continue;
        }
        uint64_t addrs[BATCH], drop[BATCH];
        uint32_t lens[BATCH], ne = 0, nd = 0;
        for (uint32_t i = 0; i < n; i++) {
            const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x.rx, idx + i);
            uint8_t *f = frame(&x, d->addr);
            uint32_t plen;
            if (stop || parse_udp(f, d->len, &plen) == NULL) {
                drop[nd++] = d->addr; /* not ours (or after the stop request) */
                ignored++;
                continue;
            }
            if (plen == 0) { /* stop request */
                drop[nd++] = d->addr;
                stop = 1;
                continue;
            }
            make_echo(f);
            addrs[ne] = d->addr;
            lens[ne++] = d->len;
        }
        xsk_ring_cons__release(&x.rx, n);
        refill(&x, drop, nd);
        if (ne) {
            send_frames(&x, addrs, lens, ne);
            echoed += ne;
            in_flight += ne;
        }
        last = now_ns();
    }
    uint64_t deadline = now_ns() + WAIT_NS; /* let the last echoes complete */
    while (in_flight > 0 && now_ns() < deadline) {
        kick_tx(&x);
        uint32_t cidx, nc = xsk_ring_cons__peek(&x.comp, RING_SIZE, &cidx);
        if (nc) {
            xsk_ring_cons__release(&x.comp, nc);
            in_flight -= nc;
        }
    }
    if (strcmp(why, "stop") != 0)
        fprintf(stderr, "xdp_pingpong server: %s\n", why);
    printf("{\"system\": \"raw-c-xdp\", \"mode\": \"server\", \"xdp_mode\": \"%s\", "
           "\"echoed\": %ld, \"ignored\": %ld, \"stop\": \"%s\"}\n",
           x.mode, echoed, ignored, why);
    xsk_close(&x);
    return stop ? 0 : 1;
}

/* Collect an echo of `seq` (SIZE bytes, from the server's flow) from the RX ring; 1 when it
 * came within the timeout, 0 when not. Other frames are dropped. */
static int wait_echo(struct xsk *x, const struct flow *fl, uint32_t seq, uint32_t size,
                     uint64_t t0, int check, long *bad)
{
    uint32_t spins = 0;
    for (;;) {
        uint32_t idx, n = xsk_ring_cons__peek(&x->rx, BATCH, &idx);
        if (n == 0) {
            if (++spins >= 256) {
                spins = 0;
                if (now_ns() - t0 > RTT_TIMEOUT_NS || stopping)
                    return 0;
                reclaim_tx(x);
            }
            continue;
        }
        int got = 0;
        uint64_t addrs[BATCH];
        for (uint32_t i = 0; i < n; i++) {
            const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx + i);
            uint8_t *f = frame(x, d->addr);
            addrs[i] = d->addr;
            uint32_t plen;
            struct udphdr *udp = parse_udp(f, d->len, &plen);
            if (udp == NULL || plen != size || udp->source != htons(fl->dst_port) ||
                udp->dest != htons(fl->src_port))
                continue;
            uint32_t s = 0;
            memcpy(&s, udp + 1, size >= 4 ? 4 : size);
            if (memcmp(&s, &seq, size >= 4 ? 4 : size) != 0)
                continue; /* a stale echo of an earlier (timed-out) ping */
            if (check && !udp_checksum_ok(f))
                (*bad)++;
            got = 1;
        }
        xsk_ring_cons__release(&x->rx, n);
        refill(x, addrs, n);
        if (got)
            return 1;
    }
}

static int run_client(const char *ifname, uint32_t queue, const struct flow *fl, long size,
                      long count, long warmup)
{
    static struct xsk x;
    xsk_open(&x, ifname, queue);
    uint64_t *rtt = malloc(sizeof(uint64_t) * (size_t)count);
    if (!rtt)
        die("malloc", errno);
    long lost = 0, done = 0, bad = 0;
    uint64_t t_start = 0;
    uint32_t pool = x.n_free;
    for (long i = 0; i < warmup + count; i++) {
        if (i == warmup)
            t_start = now_ns();
        uint32_t seq = (uint32_t)i;
        uint64_t addr = get_tx_frame(&x);
        uint8_t *f = frame(&x, addr);
        uint8_t *payload = f + HDR_LEN;
        memset(payload, 'p', (size_t)size);
        memcpy(payload, &seq, size >= 4 ? 4 : (size_t)size);
        uint32_t len = build_frame(f, fl, (uint32_t)size, (uint16_t)i);
        uint64_t t0 = now_ns();
        send_frames(&x, &addr, &len, 1);
        /* Checksums of the echoes are verified during the warm-up only (not timed). */
        if (wait_echo(&x, fl, seq, (uint32_t)size, t0, i < warmup, &bad)) {
            if (i >= warmup)
                rtt[done++] = now_ns() - t0;
        } else {
            lost++; /* a lost round trip: do not record it, move on */
        }
        if (x.n_free < pool / 2)
            reclaim_tx(&x);
        if (lost > 10 || stopping) {
            fprintf(stderr, "xdp_pingpong client: %s\n",
                    stopping ? "stopped by a signal" : "too many lost round trips");
            break;
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    /* Ask the server to stop: a zero-length datagram. */
    uint64_t addr = get_tx_frame(&x);
    uint32_t len = build_frame(frame(&x, addr), fl, 0, 0);
    send_frames(&x, &addr, &len, 1);
    drain_tx(&x, pool);
    qsort(rtt, (size_t)done, sizeof rtt[0], cmp_u64);
    double sum = 0;
    for (long i = 0; i < done; i++)
        sum += (double)rtt[i];
    if (bad)
        fprintf(stderr, "xdp_pingpong client: %ld echoes with a bad checksum\n", bad);
    printf("{\"system\": \"raw-c-xdp\", \"mode\": \"pingpong\", \"xdp_mode\": \"%s\", "
           "\"size\": %ld, \"count\": %ld, \"done\": %ld, \"lost\": %ld, \"bad_checksum\": %ld, "
           "\"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, \"msg_per_s\": %.1f, "
           "\"msgs_per_s\": %.1f, \"seconds\": %.6f}\n",
           x.mode, size, count, done, lost, bad, percentile_us(rtt, done, 50),
           percentile_us(rtt, done, 99), done ? sum / (double)done / 1000.0 : 0.0,
           secs > 0 ? (double)done / secs : 0.0, secs > 0 ? (double)count / secs : 0.0, secs);
    free(rtt);
    xsk_close(&x);
    return done == count && bad == 0 ? 0 : 1;
}

static int run_sink(const char *ifname, uint32_t queue, long expect)
{
    static struct xsk x;
    xsk_open(&x, ifname, queue);
    printf("ready\n");
    fflush(stdout);
    long received = 0, sent = -1;
    uint64_t first = 0, last = 0, idle_since = now_ns(), idle = IDLE_NS;
    const char *why = "marker";
    uint32_t spins = 0;
    while (sent < 0 && (expect <= 0 || received < expect)) {
        uint32_t idx, n = xsk_ring_cons__peek(&x.rx, BATCH, &idx);
        if (n == 0) {
            if (++spins >= 1024) {
                spins = 0;
                if (now_ns() - idle_since > idle || stopping) {
                    why = stopping ? "signal" : received ? "idle timeout" : "no data";
                    break;
                }
            }
            continue;
        }
        uint64_t t = now_ns(), addrs[BATCH];
        for (uint32_t i = 0; i < n; i++) {
            const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x.rx, idx + i);
            uint8_t *f = frame(&x, d->addr);
            addrs[i] = d->addr;
            uint32_t plen;
            struct udphdr *udp = parse_udp(f, d->len, &plen);
            if (udp == NULL || plen == 0)
                continue;
            const uint8_t *p = (const uint8_t *)(udp + 1);
            if (p[0] == 'E' && plen >= 9) {
                int64_t s;
                memcpy(&s, p + 1, sizeof s);
                sent = (long)s;
            } else if (p[0] == 'D') {
                if (received == 0) {
                    first = t;
                    idle = SINK_IDLE_NS; /* after the first datagram: idle timeout */
                }
                received++;
                last = t;
            }
        }
        xsk_ring_cons__release(&x.rx, n);
        refill(&x, addrs, n);
        idle_since = t;
    }
    if (expect > 0 && received >= expect)
        why = "count";
    double secs = received > 1 ? (double)(last - first) / 1e9 : 0.0;
    printf("{\"system\": \"raw-c-xdp\", \"mode\": \"throughput\", \"xdp_mode\": \"%s\", "
           "\"received\": %ld, \"sent\": %ld, \"seconds\": %.6f, \"msg_per_s\": %.1f, "
           "\"stop\": \"%s\", \"first_ns\": %llu, \"last_ns\": %llu}\n",
           x.mode, received, sent, secs, secs > 0 ? (double)received / secs : 0.0, why,
           (unsigned long long)first, (unsigned long long)last);
    xsk_close(&x);
    return received > 0 ? 0 : 1;
}

static int run_blast(const char *ifname, uint32_t queue, const struct flow *fl, long size,
                     long count)
{
    static struct xsk x;
    xsk_open(&x, ifname, queue);
    uint32_t pool = x.n_free;
    /* Every TX frame holds the same data datagram: build them all once. */
    uint32_t len = 0;
    for (uint32_t i = 0; i < pool; i++) {
        uint8_t *f = frame(&x, x.tx_free[i]);
        memset(f + HDR_LEN, 'd', (size_t)size);
        f[HDR_LEN] = 'D';
        len = build_frame(f, fl, (uint32_t)size, 0);
    }
    long sent = 0;
    uint64_t t0 = now_ns();
    uint64_t addrs[BATCH];
    uint32_t lens[BATCH];
    for (int i = 0; i < BATCH; i++)
        lens[i] = len;
    while (sent < count && !stopping) {
        uint32_t want = count - sent < BATCH ? (uint32_t)(count - sent) : BATCH;
        if (x.n_free < want)
            reclaim_tx(&x);
        if (x.n_free < want) {
            want = x.n_free;
            if (want == 0) {
                kick_tx(&x);
                uint64_t addr = get_tx_frame(&x); /* waits for a completion (2 s at most) */
                x.tx_free[x.n_free++] = addr;
                continue;
            }
        }
        for (uint32_t i = 0; i < want; i++)
            addrs[i] = x.tx_free[--x.n_free];
        send_frames(&x, addrs, lens, want);
        sent += want;
    }
    drain_tx(&x, pool);
    uint64_t t1 = now_ns();
    double secs = (double)(t1 - t0) / 1e9;
    /* End markers, spaced out a little so that the sink's rings drain between them. */
    for (int i = 0; i < END_MARKERS; i++) {
        uint64_t addr = get_tx_frame(&x);
        uint8_t *f = frame(&x, addr);
        int64_t s = (int64_t)sent;
        f[HDR_LEN] = 'E';
        memcpy(f + HDR_LEN + 1, &s, sizeof s);
        uint32_t mlen = build_frame(f, fl, 9, (uint16_t)i);
        send_frames(&x, &addr, &mlen, 1);
        drain_tx(&x, pool);
        usleep(2000);
    }
    printf("{\"system\": \"raw-c-xdp\", \"mode\": \"blast\", \"xdp_mode\": \"%s\", "
           "\"size\": %ld, \"sent\": %ld, \"seconds\": %.6f, \"send_msg_per_s\": %.1f, "
           "\"start_ns\": %llu, \"end_ns\": %llu}\n",
           x.mode, size, sent, secs, secs > 0 ? (double)sent / secs : 0.0,
           (unsigned long long)t0, (unsigned long long)t1);
    xsk_close(&x);
    return 0;
}

static void parse_flow(char **argv, struct flow *fl)
{
    parse_mac(argv[0], fl->src_mac);
    parse_mac(argv[1], fl->dst_mac);
    fl->src_ip = parse_ip(argv[2]);
    fl->dst_ip = parse_ip(argv[3]);
    long port = parse_long(argv[4], 1, 65534, "port");
    fl->dst_port = (uint16_t)port;
    fl->src_port = (uint16_t)(port + 1);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (argc < 4)
        usage();
    const char *mode = argv[1], *ifname = argv[2];
    uint32_t queue = (uint32_t)parse_long(argv[3], 0, 1023, "queue");
    struct flow fl;
    if (strcmp(mode, "server") == 0 && argc == 4)
        return run_server(ifname, queue);
    if (strcmp(mode, "sink") == 0 && (argc == 4 || argc == 5))
        return run_sink(ifname, queue,
                        argc == 5 ? parse_long(argv[4], 0, 1000000000, "count") : 0);
    if (strcmp(mode, "client") == 0 && (argc == 11 || argc == 12)) {
        parse_flow(argv + 4, &fl);
        long size = parse_long(argv[9], 1, MAX_SIZE, "size");
        long count = parse_long(argv[10], 1, 100000000, "count");
        long warmup = argc == 12 ? parse_long(argv[11], 0, 100000000, "warmup")
                                 : (count / 10 < 1000 ? count / 10 : 1000);
        return run_client(ifname, queue, &fl, size, count, warmup);
    }
    if (strcmp(mode, "blast") == 0 && argc == 11) {
        parse_flow(argv + 4, &fl);
        return run_blast(ifname, queue, &fl, parse_long(argv[9], 1, MAX_SIZE, "size"),
                         parse_long(argv[10], 1, 1000000000, "count"));
    }
    usage();
    return 2;
}
