/* The datagram walk (see walk.h). */
#include "walk.h"

#include "engine.h"

static const struct {
    const char *reason, *detail;
} results[WALK_RESULTS] = {
    [WALK_OK] = {"ok", ""},
    [WALK_SHORT_HEADER] = {"truncated", "shorter than the datagram header"},
    [WALK_FOREIGN] = {"foreign", "bad magic"},
    [WALK_BAD_VERSION] = {"bad_version", "version"},
    [WALK_EMPTY] = {"empty", "datagram without frames"},
    [WALK_PARTIAL_FRAME_HEAD] = {"truncated", "partial frame header"},
    [WALK_FRAME_TOO_LONG] = {"truncated", "frame longer than datagram"},
    [WALK_SHORT_POSITION] = {"truncated", "position frame"},
    [WALK_BAD_POSITION] = {"malformed", "position frame length"},
    [WALK_SHORT_SEQ] = {"truncated", "seq frame"},
    [WALK_BAD_SEQ] = {"malformed", "seq frame"},
    [WALK_SEQ_LONGER] = {"truncated", "datagram length"},
    [WALK_SEQ_SHORTER] = {"malformed", "datagram length"},
};

const char *walk_reason(enum walk_result r)
{
    return (unsigned)r < WALK_RESULTS ? results[r].reason : "malformed";
}

const char *walk_detail(enum walk_result r)
{
    return (unsigned)r < WALK_RESULTS ? results[r].detail : "";
}

enum walk_result walk_header(const uint8_t *d, size_t n, struct walk_dgram *out)
{
    if (n < WALK_HEADER)
        return WALK_SHORT_HEADER;
    if (d[0] != 'I' || d[1] != 'N')
        return WALK_FOREIGN;
    out->version = d[2];
    if (d[2] != WALK_VERSION)
        return WALK_BAD_VERSION;
    out->flags = d[3];
    out->domain = engine_be32(d + 4);
    out->sender = engine_be64(d + 8);
    out->has_position = 0;
    out->has_seq = 0;
    out->frames_at = WALK_HEADER;
    return WALK_OK;
}

enum walk_result walk_position(const uint8_t *d, size_t n, size_t off, struct walk_dgram *out)
{
    if (off > n || n - off < WALK_POSITION_FRAME)
        return WALK_SHORT_POSITION;
    if (engine_be16(d + off + 2) != 8)
        return WALK_BAD_POSITION;
    out->has_position = 1;
    out->position_flags = d[off + 1];
    out->position = engine_be64(d + off + 4);
    return WALK_OK;
}

enum walk_result walk_seq(const uint8_t *d, size_t n, size_t off, struct walk_dgram *out)
{
    if (off > n || n - off < WALK_SEQ_FRAME)
        return WALK_SHORT_SEQ;
    uint16_t length = engine_be16(d + off + 2);
    uint32_t epoch = engine_be32(d + off + 5);
    uint64_t seq = engine_be64(d + off + 9);
    uint32_t total = engine_be32(d + off + 17);
    if (length != WALK_SEQ_FRAME - WALK_FRAME_HEAD || seq == 0 || epoch == 0)
        return WALK_BAD_SEQ;
    if (total != n)
        return total > n ? WALK_SEQ_LONGER : WALK_SEQ_SHORTER;
    out->has_seq = 1;
    out->kind = d[off + 4];
    out->epoch = epoch;
    out->seq = seq;
    return WALK_OK;
}

enum walk_result walk_datagram(const uint8_t *d, size_t n, struct walk_dgram *out)
{
    enum walk_result r = walk_header(d, n, out);
    if (r != WALK_OK)
        return r;
    size_t pos = WALK_HEADER;
    if (pos == n)
        return WALK_EMPTY;
    if (d[pos] == WALK_T_POSITION) {
        if ((r = walk_position(d, n, pos, out)) != WALK_OK)
            return r;
        pos += WALK_POSITION_FRAME;
    }
    if (pos < n && d[pos] == WALK_T_SEQ) {
        if ((r = walk_seq(d, n, pos, out)) != WALK_OK)
            return r;
        pos += WALK_SEQ_FRAME;
    }
    out->frames_at = pos;
    return WALK_OK;
}

enum walk_result walk_frame(const uint8_t *d, size_t n, size_t *pos, struct walk_frame *f)
{
    size_t p = *pos;
    if (p > n || n - p < WALK_FRAME_HEAD)
        return WALK_PARTIAL_FRAME_HEAD;
    size_t length = engine_be16(d + p + 2);
    if (n - p - WALK_FRAME_HEAD < length)
        return WALK_FRAME_TOO_LONG;
    f->type = d[p];
    f->flags = d[p + 1];
    f->start = p + WALK_FRAME_HEAD;
    f->end = f->start + length;
    *pos = f->end;
    return WALK_OK;
}
