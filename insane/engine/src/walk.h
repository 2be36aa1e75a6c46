/* The datagram walk: the header, the POSITION and SEQ frames a datagram may open with, and
 * its frames one by one, every length checked. The C side of insane/protocol/wire.py's
 * decode_header, read_position, read_seq and frame_spans, failing with the same reasons and
 * details (tests/test_engine_walk.py holds them together). */
#ifndef INSANE_ENGINE_WALK_H
#define INSANE_ENGINE_WALK_H

#include <stddef.h>
#include <stdint.h>

#define WALK_HEADER 16
#define WALK_FRAME_HEAD 4
#define WALK_POSITION_FRAME 12
#define WALK_SEQ_FRAME 21
#define WALK_T_POSITION 9
#define WALK_T_SEQ 11
#define WALK_VERSION 2

enum walk_result {
    WALK_OK = 0,
    WALK_SHORT_HEADER,
    WALK_FOREIGN,
    WALK_BAD_VERSION,
    WALK_EMPTY,
    WALK_PARTIAL_FRAME_HEAD,
    WALK_FRAME_TOO_LONG,
    WALK_SHORT_POSITION,
    WALK_BAD_POSITION,
    WALK_SHORT_SEQ,
    WALK_BAD_SEQ,
    WALK_SEQ_LONGER,
    WALK_SEQ_SHORTER,
    WALK_RESULTS
};

struct walk_dgram {
    uint8_t version, flags;
    uint32_t domain;
    uint64_t sender;
    int has_position;
    uint8_t position_flags;
    uint64_t position;
    int has_seq;
    uint8_t kind;
    uint32_t epoch;
    uint64_t seq;
    size_t frames_at; /* where the frames after POSITION and SEQ start */
};

struct walk_frame {
    uint8_t type;
    uint8_t flags;
    size_t start, end; /* the body's offsets in the datagram */
};

/* The metric label of a result ("ok" for WALK_OK) and the detail wire.py gives with it. */
const char *walk_reason(enum walk_result r);
const char *walk_detail(enum walk_result r);

/* The 16-byte header. */
enum walk_result walk_header(const uint8_t *d, size_t n, struct walk_dgram *out);
/* The POSITION frame at off (the caller checked its type). */
enum walk_result walk_position(const uint8_t *d, size_t n, size_t off, struct walk_dgram *out);
/* The SEQ frame at off (the caller checked its type); its declared datagram length must be n. */
enum walk_result walk_seq(const uint8_t *d, size_t n, size_t off, struct walk_dgram *out);

/* The header, then POSITION and SEQ where the datagram opens with them, as the receive path
 * reads them; out->frames_at is where the other frames start. */
enum walk_result walk_datagram(const uint8_t *d, size_t n, struct walk_dgram *out);

/* The frame at *pos (advanced past it). */
enum walk_result walk_frame(const uint8_t *d, size_t n, size_t *pos, struct walk_frame *f);

#endif
