// SPDX-License-Identifier: GPL-2.0
/*
 * INSANE's XDP program: hand this middleware's UDP datagrams to its AF_XDP socket, pass
 * everything else to the kernel.
 *
 * A frame is redirected to the AF_XDP socket of the queue it arrived on (xsks_map) when it is
 * an unfragmented IPv4 UDP datagram whose destination port is in ports_map. ARP, ICMP, TCP,
 * other UDP ports, IP fragments, IPv6 and VLAN-tagged frames go on to the kernel (XDP_PASS),
 * as does anything arriving on a queue without a socket, so the host's other traffic on the
 * interface keeps working. Compiled by setup.py with clang -target bpf; loaded and attached
 * through a BPF link by insane/native/_xdp.c, so it is detached when the owning process exits,
 * however it exits.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} xsks_map SEC(".maps");

/* UDP destination ports (network byte order) that belong to this middleware. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u16);
    __type(value, __u8);
} ports_map SEC(".maps");

SEC("xdp")
int insane_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip;
    struct udphdr *udp;

    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    if (ip->frag_off & bpf_htons(0x3fff)) /* MF set or a non-zero offset: a fragment */
        return XDP_PASS;
    udp = (void *)ip + ip->ihl * 4;
    if ((void *)(udp + 1) > end)
        return XDP_PASS;
    if (!bpf_map_lookup_elem(&ports_map, &udp->dest))
        return XDP_PASS;
    return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
