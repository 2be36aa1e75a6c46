/*
 * Ethernet/IPv4/UDP frames for the kernel-bypass datapaths (AF_XDP and DPDK): the Internet
 * checksum, parsing and checking a received frame, and filling in a frame from a 42-byte
 * header template and a payload. Header-only; insane/transports/frames.py is the Python
 * reference the tests hold this code to.
 */
#ifndef INSANE_UDP_FRAMES_H
#define INSANE_UDP_FRAMES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define UDP_FRAME_HDR 42 /* Ethernet 14 + IPv4 20 + UDP 8 */

enum frame_verdict { FRAME_OK = 0, FRAME_MALFORMED = 1, FRAME_BAD_CHECKSUM = 2 };

static inline uint32_t frame_sum16(const uint8_t *p, size_t n, uint32_t acc)
{
    while (n > 1) {
        acc += (uint32_t)p[0] << 8 | p[1];
        p += 2;
        n -= 2;
    }
    if (n)
        acc += (uint32_t)p[0] << 8;
    return acc;
}

static inline uint16_t frame_fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* The UDP pseudo-header sum (not complemented), from the IPv4 header at ``ip``. */
static inline uint32_t frame_pseudo_sum(const uint8_t *ip, uint16_t udp_len)
{
    return frame_sum16(ip + 12, 8, 0) + 17 + udp_len;
}

/*
 * Check an IPv4/UDP frame and find its payload. The UDP checksum may be complete, absent
 * (0), or only the pseudo-header part, as a kernel sender whose checksum offload never
 * happened (veth) leaves it. On FRAME_OK, *payload, *plen, *ip_out and *udp_out are set.
 */
static inline enum frame_verdict frame_parse(const uint8_t *f, uint32_t len,
                                             const uint8_t **payload, uint16_t *plen,
                                             const uint8_t **ip_out, const uint8_t **udp_out)
{
    if (len < UDP_FRAME_HDR || f[12] != 0x08 || f[13] != 0x00)
        return FRAME_MALFORMED;
    const uint8_t *ip = f + 14;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
    uint32_t tot = (uint32_t)ip[2] << 8 | ip[3];
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17 || tot < ihl + 8 || 14 + tot > len ||
        ((ip[6] & 0x3f) | ip[7]))
        return FRAME_MALFORMED;
    if (frame_fold(frame_sum16(ip, ihl, 0)) != 0xffff)
        return FRAME_BAD_CHECKSUM;
    const uint8_t *udp = ip + ihl;
    uint16_t ulen = (uint16_t)(udp[4] << 8 | udp[5]);
    if (ulen < 8 || ulen > tot - ihl)
        return FRAME_MALFORMED;
    uint16_t field = (uint16_t)(udp[6] << 8 | udp[7]);
    if (field) {
        uint32_t ps = frame_pseudo_sum(ip, ulen);
        if (frame_fold(frame_sum16(udp, ulen, ps)) != 0xffff && field != frame_fold(ps))
            return FRAME_BAD_CHECKSUM;
    }
    *payload = udp + 8;
    *plen = (uint16_t)(ulen - 8);
    *ip_out = ip;
    *udp_out = udp;
    return FRAME_OK;
}

/* Build a frame at ``f``: the template, the payload, then lengths, IP id and checksums. */
static inline uint32_t frame_fill(uint8_t *f, const uint8_t *hdr, const uint8_t *payload,
                                  uint16_t plen, uint16_t id)
{
    memcpy(f, hdr, UDP_FRAME_HDR);
    memcpy(f + UDP_FRAME_HDR, payload, plen);
    uint8_t *ip = f + 14, *udp = f + 34;
    uint16_t tot = (uint16_t)(20 + 8 + plen), ulen = (uint16_t)(8 + plen);
    ip[2] = (uint8_t)(tot >> 8), ip[3] = (uint8_t)tot;
    ip[4] = (uint8_t)(id >> 8), ip[5] = (uint8_t)id;
    ip[10] = ip[11] = 0;
    uint16_t c = (uint16_t)~frame_fold(frame_sum16(ip, 20, 0));
    ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
    udp[4] = (uint8_t)(ulen >> 8), udp[5] = (uint8_t)ulen;
    udp[6] = udp[7] = 0;
    c = (uint16_t)~frame_fold(frame_sum16(udp, ulen, frame_pseudo_sum(ip, ulen)));
    if (!c)
        c = 0xffff; /* 0 means "no checksum" in UDP over IPv4 */
    udp[6] = (uint8_t)(c >> 8), udp[7] = (uint8_t)c;
    return (uint32_t)(UDP_FRAME_HDR + plen);
}

#endif
