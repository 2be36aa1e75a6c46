/*
 * dpdk_pingpong: raw C DPDK baselines for the INSANE benchmarks (EAL + ethdev + mbuf, port 0).
 *
 *   dpdk_pingpong EAL_ARGS -- server PORT         echo every UDP/IPv4 frame sent to PORT back to
 *                                                 its sender (MACs, IPs and ports swapped), until
 *                                                 a zero-length datagram
 *   dpdk_pingpong EAL_ARGS -- client SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE COUNT [WARMUP]
 *                                                 ping-pong COUNT datagrams of SIZE payload bytes
 *                                                 to DST_IP:PORT, print p50/p99 RTT (us) and
 *                                                 msg/s as JSON, then stop the server
 *   dpdk_pingpong EAL_ARGS -- sink PORT [COUNT]   count UDP data frames sent to PORT until the
 *                                                 end marker, COUNT received, or an idle
 *                                                 timeout; print JSON
 *   dpdk_pingpong EAL_ARGS -- blast SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE COUNT
 *                                                 send COUNT datagrams of SIZE bytes as fast as
 *                                                 the port takes them (bursts of 64), then end
 *                                                 markers
 *
 * Build:  cc -O2 -Wall -Wextra $(pkg-config --cflags libdpdk) \
 *             -o benchmarks/raw/bin/dpdk_pingpong benchmarks/raw/dpdk_pingpong.c \
 *             $(pkg-config --libs libdpdk)
 *
 * EAL_ARGS go to rte_eal_init() as they are; the program drives port 0 of what they give it.
 * benchmarks/xdp_veth.py runs it on a veth end inside a network namespace with
 *   --no-huge -m 512 --no-pci --no-shconf --file-prefix=UNIQUE --no-telemetry
 *   --log-level=*:error --vdev=net_af_packet0,iface=VETH,framecnt=4096
 * (no hugepages needed; a file prefix of its own per process, so that two run at once).
 * Unless EAL_ARGS name the lcores (-l, -c, --lcores), the program adds --lcores=0@(CPUS) with
 * the CPUs it may run on, so the EAL keeps the placement it was started with instead of pinning
 * the main thread to the first CPU.  Needs root (the EAL, and net_af_packet's raw socket).
 * One port, one RX and one TX queue of 1024 descriptors, a mempool of 4095 mbufs (cache 128,
 * default buffer size); RX is busy-polled with rte_eth_rx_burst (bursts of 64), TX goes out
 * with rte_eth_tx_burst, retried until the port takes every frame.  The port is stopped and
 * closed and the EAL cleaned up on every way out (also on SIGINT/SIGTERM and on errors after
 * the EAL started).  The PMD's name goes to stderr and into the JSON ("driver"), with the
 * port's counters ("port_stats": ipackets, imissed, ierrors, rx_nombuf, opackets, oerrors).
 *
 * net_af_packet is a tap, not a bypass: the kernel receives every frame as well, so a kernel
 * with no socket on PORT (or PORT + 1) answers some of them (rate-limited) with an ICMP port
 * unreachable, which the peer's port then shows.  Frames that are not ours are dropped and
 * counted ("ignored", of which "icmp" were ICMP).  The PMD copies every frame between the mbufs
 * and its TPACKET ring, and each TX burst costs one sendto() (qdisc bypassed).
 *
 * Frames are built by hand: Ethernet + IPv4 (no options, correct header checksum) + UDP
 * (correct checksum over the pseudo header).  MACs are aa:bb:cc:dd:ee:ff, IPs dotted quads;
 * the client/blaster's source port is PORT + 1.  SIZE is 1..1472 (an MTU of 1500).  SRC_MAC
 * should be the port's own address (a warning says when it is not).
 *
 * Wire conventions are udp_pingpong.c's and xdp_pingpong.c's: the first 4 payload bytes of a
 * ping carry its sequence number; a zero-length datagram stops the echo server; sink data
 * datagrams start with 'D', the end marker is 'E' followed by the 64-bit count that was sent.
 * The server and sink print "ready" on stdout once their port is started, then one JSON line
 * when they end.  Every wait has a timeout: a round trip is lost after 1 s (more than 10 lost
 * ends the client), the server and sink give up after 30 s without traffic (the sink after 2 s
 * once data has arrived), the port taking a TX burst is awaited 2 s at most.  The server
 * recomputes both checksums of its echoes; the client checks the echoes' checksums during its
 * warm-up and counts "bad_checksum".
 * Only meant for veth pairs inside network namespaces made for the benchmark.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define PORT_ID 0
#define NUM_MBUFS 4095
#define MBUF_CACHE 128
#define RING_DESC 1024
#define BURST 64
#define HDR_LEN (sizeof(struct ether_header) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define MAX_SIZE (1500 - 20 - 8) /* UDP payload at an MTU of 1500 */
#define END_MARKERS 16
#define WAIT_NS 2000000000ull   /* the port taking a TX burst */
#define RTT_TIMEOUT_NS 1000000000ull
#define IDLE_NS 30000000000ull  /* server / sink before any traffic */
#define SINK_IDLE_NS 2000000000ull
#define MAX_EAL_ARGS 64

/* SIGINT/SIGTERM: leave the loops, so that the port is stopped and the EAL cleaned up. */
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

/* What has to be undone on the way out. */
static int eal_up, port_up;

static void shutdown_dpdk(void)
{
    if (port_up) {
        rte_eth_dev_stop(PORT_ID);
        rte_eth_dev_close(PORT_ID);
        port_up = 0;
    }
    if (eal_up) {
        rte_eal_cleanup();
        eal_up = 0;
    }
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "dpdk_pingpong: %s: %s\n", what, why);
    shutdown_dpdk();
    exit(1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: dpdk_pingpong EAL_ARGS -- server PORT\n"
            "       dpdk_pingpong EAL_ARGS -- client SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE "
            "COUNT [WARMUP]\n"
            "       dpdk_pingpong EAL_ARGS -- sink PORT [COUNT]\n"
            "       dpdk_pingpong EAL_ARGS -- blast SRC_MAC DST_MAC SRC_IP DST_IP PORT SIZE "
            "COUNT\n");
    exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "dpdk_pingpong: bad %s: %s (expected %ld..%ld)\n", name, s, lo, hi);
        exit(2);
    }
    return v;
}

static void parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char extra;
    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6) {
        fprintf(stderr, "dpdk_pingpong: bad MAC address: %s\n", s);
        exit(2);
    }
    for (int i = 0; i < 6; i++) {
        if (v[i] > 0xff) {
            fprintf(stderr, "dpdk_pingpong: bad MAC address: %s\n", s);
            exit(2);
        }
        mac[i] = (uint8_t)v[i];
    }
}

static uint32_t parse_ip(const char *s)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        fprintf(stderr, "dpdk_pingpong: bad IPv4 address: %s\n", s);
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
 * or NULL; *icmp is set when the frame is ICMP instead (the kernel's answers, see above). */
static struct udphdr *parse_udp(uint8_t *f, uint32_t flen, uint32_t *payload_len, int *icmp)
{
    *icmp = 0;
    if (flen < HDR_LEN)
        return NULL;
    struct ether_header *eth = (struct ether_header *)f;
    struct iphdr *ip = (struct iphdr *)(eth + 1);
    if (eth->ether_type != htons(ETHERTYPE_IP) || ip->version != 4)
        return NULL;
    if (ip->protocol == IPPROTO_ICMP) {
        *icmp = 1;
        return NULL;
    }
    if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ntohs(ip->frag_off) & 0x3fff) != 0)
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
 * checksums (a frame from a kernel socket on a veth may carry only the pseudo-header part of
 * its UDP checksum: TX checksum offload). */
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

/* ------------------------------------------------------------------ DPDK port */

static struct rte_mempool *pool;
static char driver[64] = "?";

/* The EAL from argv[0..argc) (the arguments before "--"), with --lcores=0@(CPUS) added
 * unless they name the lcores themselves. */
static void eal_start(int argc, char **argv)
{
    static char *args[MAX_EAL_ARGS + 2];
    static char lcores[4096];
    if (argc > MAX_EAL_ARGS) {
        fprintf(stderr, "dpdk_pingpong: more than %d EAL arguments\n", MAX_EAL_ARGS);
        exit(2);
    }
    int n = 0, named = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i > 0 && (strncmp(a, "-l", 2) == 0 || strncmp(a, "-c", 2) == 0 ||
                      strncmp(a, "--lcores", 8) == 0))
            named = 1;
        args[n++] = argv[i];
    }
    cpu_set_t set;
    if (!named && sched_getaffinity(0, sizeof set, &set) == 0) {
        size_t len = (size_t)snprintf(lcores, sizeof lcores, "--lcores=0@(");
        const char *sep = "";
        for (int c = 0; c < CPU_SETSIZE && len < sizeof lcores - 16; c++) {
            if (CPU_ISSET(c, &set)) {
                len += (size_t)snprintf(lcores + len, sizeof lcores - len, "%s%d", sep, c);
                sep = ",";
            }
        }
        snprintf(lcores + len, sizeof lcores - len, ")");
        args[n++] = lcores;
    }
    args[n] = NULL;
    if (rte_eal_init(n, args) < 0) {
        fprintf(stderr, "dpdk_pingpong: rte_eal_init: %s\n", rte_strerror(rte_errno));
        exit(1);
    }
    eal_up = 1;
}

/* Port 0 with one RX/TX queue pair, started; warns when SRC_MAC is not the port's. */
static void port_open(const uint8_t *src_mac)
{
    if (!rte_eth_dev_is_valid_port(PORT_ID))
        die("port 0", "no such port (is there a --vdev or an allowed device?)");
    struct rte_eth_dev_info info;
    if (rte_eth_dev_info_get(PORT_ID, &info) == 0 && info.driver_name)
        snprintf(driver, sizeof driver, "%s", info.driver_name);
    int socket = rte_eth_dev_socket_id(PORT_ID);
    if (socket < 0)
        socket = (int)rte_socket_id();
    pool = rte_pktmbuf_pool_create("dpdk_pingpong", NUM_MBUFS, MBUF_CACHE, 0,
                                   RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    if (pool == NULL)
        die("rte_pktmbuf_pool_create", rte_strerror(rte_errno));
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    uint16_t nrx = RING_DESC, ntx = RING_DESC;
    int rc = rte_eth_dev_configure(PORT_ID, 1, 1, &conf);
    if (rc == 0)
        rc = rte_eth_dev_adjust_nb_rx_tx_desc(PORT_ID, &nrx, &ntx);
    if (rc == 0)
        rc = rte_eth_rx_queue_setup(PORT_ID, 0, nrx, (unsigned)socket, NULL, pool);
    if (rc == 0)
        rc = rte_eth_tx_queue_setup(PORT_ID, 0, ntx, (unsigned)socket, NULL);
    if (rc == 0) {
        port_up = 1; /* configured: closed on the way out from here on */
        rc = rte_eth_dev_start(PORT_ID);
    }
    if (rc != 0)
        die("starting port 0", rte_strerror(-rc));
    struct rte_ether_addr mac;
    rte_eth_macaddr_get(PORT_ID, &mac);
    fprintf(stderr,
            "dpdk_pingpong: port 0 (%s) %02x:%02x:%02x:%02x:%02x:%02x started, %u/%u RX/TX "
            "descriptors, %d mbufs\n",
            driver, mac.addr_bytes[0], mac.addr_bytes[1], mac.addr_bytes[2], mac.addr_bytes[3],
            mac.addr_bytes[4], mac.addr_bytes[5], nrx, ntx, NUM_MBUFS);
    if (src_mac && memcmp(src_mac, mac.addr_bytes, 6) != 0)
        fprintf(stderr, "dpdk_pingpong: warning: SRC_MAC is not port 0's address\n");
}

/* The port's counters as a JSON object (no braces around the caller's fields). */
static void port_stats_json(char *out, size_t size)
{
    struct rte_eth_stats st;
    memset(&st, 0, sizeof st);
    rte_eth_stats_get(PORT_ID, &st);
    snprintf(out, size,
             "{\"ipackets\": %llu, \"imissed\": %llu, \"ierrors\": %llu, \"rx_nombuf\": %llu, "
             "\"opackets\": %llu, \"oerrors\": %llu}",
             (unsigned long long)st.ipackets, (unsigned long long)st.imissed,
             (unsigned long long)st.ierrors, (unsigned long long)st.rx_nombuf,
             (unsigned long long)st.opackets, (unsigned long long)st.oerrors);
}

/* Hand n mbufs to the port, retrying what it does not take yet; after WAIT_NS (or a signal)
 * the rest are freed.  Returns how many the port took. */
static uint16_t send_burst(struct rte_mbuf **bufs, uint16_t n)
{
    uint16_t done = rte_eth_tx_burst(PORT_ID, 0, bufs, n);
    if (done == n)
        return n;
    uint64_t deadline = now_ns() + WAIT_NS;
    while (done < n && now_ns() < deadline && !stopping)
        done += rte_eth_tx_burst(PORT_ID, 0, bufs + done, (uint16_t)(n - done));
    if (done < n) {
        fprintf(stderr, "dpdk_pingpong: the port took %u of %u frames in 2 s\n", done, n);
        rte_pktmbuf_free_bulk(bufs + done, (unsigned)(n - done));
    }
    return done;
}

/* An mbuf holding `len` bytes (to be written), or the end of the program. */
static struct rte_mbuf *frame_mbuf(uint32_t len, uint8_t **data)
{
    struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
    if (m == NULL)
        die("rte_pktmbuf_alloc", "mempool empty");
    *data = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)len);
    if (*data == NULL)
        die("rte_pktmbuf_append", "frame larger than an mbuf");
    return m;
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

static int run_server(uint16_t port)
{
    port_open(NULL);
    printf("ready\n");
    fflush(stdout);
    long echoed = 0, ignored = 0, icmp = 0, tx_dropped = 0;
    int stop = 0;
    const char *why = "stop";
    uint64_t last = now_ns();
    uint32_t spins = 0;
    while (!stop) {
        struct rte_mbuf *bufs[BURST], *echo[BURST];
        uint16_t n = rte_eth_rx_burst(PORT_ID, 0, bufs, BURST);
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
        uint16_t ne = 0;
        for (uint16_t i = 0; i < n; i++) {
            struct rte_mbuf *m = bufs[i];
            uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
            uint32_t plen;
            int is_icmp;
            struct udphdr *udp = parse_udp(f, rte_pktmbuf_data_len(m), &plen, &is_icmp);
            if (stop || udp == NULL || udp->dest != htons(port)) {
                rte_pktmbuf_free(m); /* not ours (or after the stop request) */
                ignored++;
                icmp += is_icmp;
                continue;
            }
            if (plen == 0) { /* stop request */
                rte_pktmbuf_free(m);
                stop = 1;
                continue;
            }
            make_echo(f);
            echo[ne++] = m;
        }
        if (ne) {
            uint16_t sent = send_burst(echo, ne);
            echoed += sent;
            tx_dropped += ne - sent;
        }
        last = now_ns();
    }
    if (strcmp(why, "stop") != 0)
        fprintf(stderr, "dpdk_pingpong server: %s\n", why);
    char stats[512];
    port_stats_json(stats, sizeof stats);
    printf("{\"system\": \"raw-c-dpdk\", \"mode\": \"server\", \"driver\": \"%s\", "
           "\"echoed\": %ld, \"tx_dropped\": %ld, \"ignored\": %ld, \"icmp\": %ld, "
           "\"stop\": \"%s\", \"port_stats\": %s}\n",
           driver, echoed, tx_dropped, ignored, icmp, why, stats);
    shutdown_dpdk();
    return stop ? 0 : 1;
}

/* Wait for the echo of `seq` (SIZE bytes, from the server's flow); 1 when it came within the
 * timeout, 0 when not.  Every other frame is dropped (and counted). */
static int wait_echo(const struct flow *fl, uint32_t seq, uint32_t size, uint64_t t0, int check,
                     long *bad, long *ignored, long *icmp)
{
    uint32_t spins = 0;
    for (;;) {
        struct rte_mbuf *bufs[BURST];
        uint16_t n = rte_eth_rx_burst(PORT_ID, 0, bufs, BURST);
        if (n == 0) {
            if (++spins >= 256) {
                spins = 0;
                if (now_ns() - t0 > RTT_TIMEOUT_NS || stopping)
                    return 0;
            }
            continue;
        }
        int got = 0;
        for (uint16_t i = 0; i < n; i++) {
            uint8_t *f = rte_pktmbuf_mtod(bufs[i], uint8_t *);
            uint32_t plen;
            int is_icmp;
            struct udphdr *udp = parse_udp(f, rte_pktmbuf_data_len(bufs[i]), &plen, &is_icmp);
            if (udp == NULL || plen != size || udp->source != htons(fl->dst_port) ||
                udp->dest != htons(fl->src_port)) {
                (*ignored)++;
                *icmp += is_icmp;
                continue;
            }
            uint32_t s = 0;
            memcpy(&s, udp + 1, size >= 4 ? 4 : size);
            if (memcmp(&s, &seq, size >= 4 ? 4 : size) != 0)
                continue; /* a stale echo of an earlier (timed-out) ping */
            if (check && !udp_checksum_ok(f))
                (*bad)++;
            got = 1;
        }
        rte_pktmbuf_free_bulk(bufs, n);
        if (got)
            return 1;
    }
}

static int run_client(const struct flow *fl, long size, long count, long warmup)
{
    port_open(fl->src_mac);
    uint64_t *rtt = malloc(sizeof(uint64_t) * (size_t)count);
    if (!rtt)
        die("malloc", strerror(errno));
    long lost = 0, done = 0, bad = 0, ignored = 0, icmp = 0;
    uint64_t t_start = 0;
    for (long i = 0; i < warmup + count; i++) {
        if (i == warmup)
            t_start = now_ns();
        uint32_t seq = (uint32_t)i;
        uint8_t *f;
        struct rte_mbuf *m = frame_mbuf((uint32_t)(HDR_LEN + size), &f);
        uint8_t *payload = f + HDR_LEN;
        memset(payload, 'p', (size_t)size);
        memcpy(payload, &seq, size >= 4 ? 4 : (size_t)size);
        build_frame(f, fl, (uint32_t)size, (uint16_t)i);
        uint64_t t0 = now_ns();
        send_burst(&m, 1);
        /* Checksums of the echoes are verified during the warm-up only (not timed). */
        if (wait_echo(fl, seq, (uint32_t)size, t0, i < warmup, &bad, &ignored, &icmp)) {
            if (i >= warmup)
                rtt[done++] = now_ns() - t0;
        } else {
            lost++; /* a lost round trip: do not record it, move on */
        }
        if (lost > 10 || stopping) {
            fprintf(stderr, "dpdk_pingpong client: %s\n",
                    stopping ? "stopped by a signal" : "too many lost round trips");
            break;
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    /* Ask the server to stop: a zero-length datagram. */
    uint8_t *f;
    struct rte_mbuf *m = frame_mbuf((uint32_t)HDR_LEN, &f);
    build_frame(f, fl, 0, 0);
    send_burst(&m, 1);
    qsort(rtt, (size_t)done, sizeof rtt[0], cmp_u64);
    double sum = 0;
    for (long i = 0; i < done; i++)
        sum += (double)rtt[i];
    if (bad)
        fprintf(stderr, "dpdk_pingpong client: %ld echoes with a bad checksum\n", bad);
    char stats[512];
    port_stats_json(stats, sizeof stats);
    printf("{\"system\": \"raw-c-dpdk\", \"mode\": \"pingpong\", \"driver\": \"%s\", "
           "\"size\": %ld, \"count\": %ld, \"done\": %ld, \"lost\": %ld, \"bad_checksum\": %ld, "
           "\"ignored\": %ld, \"icmp\": %ld, "
           "\"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, \"msg_per_s\": %.1f, "
           "\"msgs_per_s\": %.1f, \"seconds\": %.6f, \"port_stats\": %s}\n",
           driver, size, count, done, lost, bad, ignored, icmp, percentile_us(rtt, done, 50),
           percentile_us(rtt, done, 99), done ? sum / (double)done / 1000.0 : 0.0,
           secs > 0 ? (double)done / secs : 0.0, secs > 0 ? (double)count / secs : 0.0, secs,
           stats);
    free(rtt);
    shutdown_dpdk();
    return done == count && bad == 0 ? 0 : 1;
}

static int run_sink(uint16_t port, long expect)
{
    port_open(NULL);
    printf("ready\n");
    fflush(stdout);
    long received = 0, sent = -1, ignored = 0, icmp = 0;
    uint64_t first = 0, last = 0, idle_since = now_ns(), idle = IDLE_NS;
    const char *why = "marker";
    uint32_t spins = 0;
    while (sent < 0 && (expect <= 0 || received < expect)) {
        struct rte_mbuf *bufs[BURST];
        uint16_t n = rte_eth_rx_burst(PORT_ID, 0, bufs, BURST);
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
        uint64_t t = now_ns();
        for (uint16_t i = 0; i < n; i++) {
            uint8_t *f = rte_pktmbuf_mtod(bufs[i], uint8_t *);
            uint32_t plen;
            int is_icmp;
            struct udphdr *udp = parse_udp(f, rte_pktmbuf_data_len(bufs[i]), &plen, &is_icmp);
            if (udp == NULL || plen == 0 || udp->dest != htons(port)) {
                ignored++;
                icmp += is_icmp;
                continue;
            }
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
            } else {
                ignored++;
            }
        }
        rte_pktmbuf_free_bulk(bufs, n);
        idle_since = t;
    }
    if (expect > 0 && received >= expect)
        why = "count";
    double secs = received > 1 ? (double)(last - first) / 1e9 : 0.0;
    char stats[512];
    port_stats_json(stats, sizeof stats);
    printf("{\"system\": \"raw-c-dpdk\", \"mode\": \"throughput\", \"driver\": \"%s\", "
           "\"received\": %ld, \"sent\": %ld, \"seconds\": %.6f, \"msg_per_s\": %.1f, "
           "\"stop\": \"%s\", \"first_ns\": %llu, \"last_ns\": %llu, \"ignored\": %ld, "
           "\"icmp\": %ld, \"port_stats\": %s}\n",
           driver, received, sent, secs, secs > 0 ? (double)received / secs : 0.0, why,
           (unsigned long long)first, (unsigned long long)last, ignored, icmp, stats);
    shutdown_dpdk();
    return received > 0 ? 0 : 1;
}

static int run_blast(const struct flow *fl, long size, long count)
{
    port_open(fl->src_mac);
    /* Every data frame is the same: build it once, copy it into each mbuf. */
    static uint8_t tmpl[HDR_LEN + MAX_SIZE];
    memset(tmpl + HDR_LEN, 'd', (size_t)size);
    tmpl[HDR_LEN] = 'D';
    uint32_t len = build_frame(tmpl, fl, (uint32_t)size, 0);
    long sent = 0;
    uint64_t t0 = now_ns();
    struct rte_mbuf *bufs[BURST];
    while (sent < count && !stopping) {
        uint16_t want = count - sent < BURST ? (uint16_t)(count - sent) : BURST;
        if (rte_pktmbuf_alloc_bulk(pool, bufs, want) != 0)
            die("rte_pktmbuf_alloc_bulk", "mempool empty");
        for (uint16_t i = 0; i < want; i++)
            rte_memcpy(rte_pktmbuf_append(bufs[i], (uint16_t)len), tmpl, len);
        uint16_t done = send_burst(bufs, want);
        sent += done;
        if (done < want)
            break; /* the port stopped taking frames for 2 s */
    }
    uint64_t t1 = now_ns();
    double secs = (double)(t1 - t0) / 1e9;
    /* End markers, spaced out a little so that the sink's ring drains between them. */
    for (int i = 0; i < END_MARKERS && !stopping; i++) {
        uint8_t *f;
        struct rte_mbuf *m = frame_mbuf((uint32_t)(HDR_LEN + 9), &f);
        int64_t s = (int64_t)sent;
        f[HDR_LEN] = 'E';
        memcpy(f + HDR_LEN + 1, &s, sizeof s);
        build_frame(f, fl, 9, (uint16_t)i);
        send_burst(&m, 1);
        usleep(2000);
    }
    char stats[512];
    port_stats_json(stats, sizeof stats);
    printf("{\"system\": \"raw-c-dpdk\", \"mode\": \"blast\", \"driver\": \"%s\", "
           "\"size\": %ld, \"sent\": %ld, \"seconds\": %.6f, \"send_msg_per_s\": %.1f, "
           "\"start_ns\": %llu, \"end_ns\": %llu, \"port_stats\": %s}\n",
           driver, size, sent, secs, secs > 0 ? (double)sent / secs : 0.0,
           (unsigned long long)t0, (unsigned long long)t1, stats);
    shutdown_dpdk();
    return sent == count ? 0 : 1;
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
    /* EAL_ARGS -- MODE ARGS: the mode's arguments are checked before the EAL starts. */
    int sep = 1;
    while (sep < argc && strcmp(argv[sep], "--") != 0)
        sep++;
    if (sep >= argc - 1)
        usage();
    int ac = argc - sep - 1;
    char **av = argv + sep + 1;
    const char *mode = av[0];
    struct flow fl;
    long port = 0, count = 0, size = 0, warmup = 0;
    if (strcmp(mode, "server") == 0 && ac == 2) {
        port = parse_long(av[1], 1, 65535, "port");
    } else if (strcmp(mode, "sink") == 0 && (ac == 2 || ac == 3)) {
        port = parse_long(av[1], 1, 65535, "port");
        count = ac == 3 ? parse_long(av[2], 0, 1000000000, "count") : 0;
    } else if (strcmp(mode, "client") == 0 && (ac == 8 || ac == 9)) {
        parse_flow(av + 1, &fl);
        size = parse_long(av[6], 1, MAX_SIZE, "size");
        count = parse_long(av[7], 1, 100000000, "count");
        warmup = ac == 9 ? parse_long(av[8], 0, 100000000, "warmup")
                          : (count / 10 < 1000 ? count / 10 : 1000);
    } else if (strcmp(mode, "blast") == 0 && ac == 8) {
        parse_flow(av + 1, &fl);
        size = parse_long(av[6], 1, MAX_SIZE, "size");
        count = parse_long(av[7], 1, 1000000000, "count");
    } else {
        usage();
    }

    eal_start(sep, argv);
    /* After the EAL (which may install handlers of its own): leave the loops on a signal. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (strcmp(mode, "server") == 0)
        return run_server((uint16_t)port);
    if (strcmp(mode, "sink") == 0)
        return run_sink((uint16_t)port, count);
    if (strcmp(mode, "client") == 0)
        return run_client(&fl, size, count, warmup);
    return run_blast(&fl, size, count);
}
