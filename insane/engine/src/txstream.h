/* txstream: the sending side of one reliable stream, in C (the core of the engine's
 * SendStream; the specification is SendStream in insane/protocol/reliability.py).
 *
 * It numbers datagrams, keeps copies of them for retransmission within a byte budget and an
 * age limit (oldest first out), releases them on ACK, answers a NACK with the datagrams still
 * kept (not sooner than `resend_guard` after their last retransmission) and with gaps for
 * the evicted ones (with their message counts), and says when a TAIL is due.  Plain C11 on
 * libc, no Python: the binding (py_txstream.c) and the fuzzer link it alone.
 *
 * Contract of `sent`: the numbers come from `txstream_number`, in order (what OutQueue does);
 * the resend guard is kept per kept datagram.  Every function that may evict (sent, evict,
 * nack_begin, abandon) calls `count` for each datagram evicted unacknowledged; `count` may
 * call into the stream again (the datagram is already out of it when it is called).
 */
#ifndef INSANE_TXSTREAM_H
#define INSANE_TXSTREAM_H

#include <stddef.h>
#include <stdint.h>

/* Evicted datagrams whose message counts are kept one by one (beyond, only their total). */
#define TXSTREAM_DISCARD_DETAIL ((size_t)1 << 20)

enum {
    TXSTREAM_OK = 0,
    TXSTREAM_ENOMEM = -1,    /* out of memory */
    TXSTREAM_ECOUNT = -2,    /* the count callback failed (its error stands) */
    TXSTREAM_EINDEX = -3,    /* a NACK named a number past what is kept ("deque index") */
    TXSTREAM_EOVERFLOW = -4, /* a number or a size past int64 */
    TXSTREAM_EEMIT = -5,     /* the emit callback failed (its error stands) */
};

/* Messages in `datagram` (evicted unacknowledged): 0 and *messages set, or nonzero. */
typedef int (*txstream_count_fn)(void *ctx, const uint8_t *datagram, size_t len,
                                 uint32_t *messages);
/* A datagram to send again: 0, or nonzero to stop. The datagram stays valid until return. */
typedef int (*txstream_emit_fn)(void *ctx, const uint8_t *datagram, size_t len);

typedef struct {
    int64_t sent;
    int64_t retransmitted;
    int64_t nacks;
    int64_t gaps;               /* datagrams announced as lost (per announcement) */
    int64_t evicted_full;       /* unacknowledged... dropped for the byte budget */
    int64_t evicted_old;        /* ... for the age limit */
    int64_t discarded_messages; /* messages in datagrams evicted before being acknowledged */
} txstream_stats;

/* Datagrams start..end-1 evicted unacknowledged: the message count of each (the first
 * `detail` one by one, the rest as a total). */
typedef struct {
    int64_t start, end, rest;
    uint32_t *counts; /* counts[head .. head+len-1] */
    size_t head, len, cap;
    size_t detail; /* TXSTREAM_DISCARD_DETAIL, smaller for tests */
} txstream_discarded;

typedef struct txstream_entry txstream_entry;

typedef struct {
    /* Settings and numbers (read and written freely). */
    int64_t max_bytes;
    int64_t window;
    double max_age;
    double tail_delay;
    double tail_interval;
    double resend_guard;
    int64_t next_seq;
    int64_t acked; /* every number below this has been received */
    txstream_stats stats;
    txstream_count_fn count; /* NULL: one message per datagram */
    void *count_ctx;
    /* State. */
    txstream_entry **ring; /* kept datagrams, oldest first: ring[(head + i) & (cap - 1)] */
    size_t ring_head, ring_len, ring_cap;
    int64_t kept_bytes;
    double last_send;
    double last_tail;
    int64_t unreported;   /* discarded messages not yet reported (take_discarded) */
    int64_t gap_reported; /* GAPs are announced below this number already */
    txstream_discarded discarded;
} txstream;

/* A gap a NACK range turned up: present, start..end-1, messages (-1: unknown). */
typedef struct {
    int present;
    int64_t start, end, messages;
} txstream_gap;

/* The reference's defaults; nothing allocated until the first datagram. */
void txstream_init(txstream *s);
void txstream_free(txstream *s);

int txstream_number(txstream *s, int64_t *seq);
int txstream_sent(txstream *s, int64_t seq, const uint8_t *datagram, size_t len, double now);
int txstream_evict(txstream *s, double now);
int64_t txstream_take_discarded(txstream *s);
int txstream_abandon(txstream *s, int64_t *messages);

size_t txstream_kept(const txstream *s);
int txstream_unacked(const txstream *s);
int txstream_full(const txstream *s);

/* 1 when the ACK took the stream out of full. */
int txstream_on_ack(txstream *s, int64_t next_expected);

/* A NACK: begin (evicts, counts it, gives `first`), one call per range, end with the number
 * of datagrams emitted.  `first` is the caller's: ranges may be read between calls. */
int txstream_nack_begin(txstream *s, double now, int64_t *first);
int txstream_nack_range(txstream *s, int64_t first, int64_t start, int64_t end, double now,
                        txstream_gap *gap, txstream_emit_fn emit, void *ctx, size_t *again);
void txstream_nack_end(txstream *s, size_t again);

int txstream_tail_due(const txstream *s, double now);
int64_t txstream_tail(txstream *s, double now);
/* 1 and *when set, or 0 (nothing to wait for). */
int txstream_next_timer(const txstream *s, double now, double *when);

/* The discarded record (exposed for the tests and the fuzzer). */
int txstream_discarded_add(txstream_discarded *d, int64_t seq, uint32_t messages);
void txstream_discarded_release(txstream_discarded *d, int64_t below);
/* Messages of start..end-1, or -1 (unknown: past the detailed part, not up to the end). */
int64_t txstream_discarded_messages(const txstream_discarded *d, int64_t start, int64_t end);
int64_t txstream_discarded_total(const txstream_discarded *d);

/* The fuzzer's entry: `data` is a schedule of operations (number and sent of small
 * datagrams, ACKs, NACKs of ranges, TAILs, time and eviction, abandon, settings changed);
 * frees everything. 0, or -1 when an invariant broke (the harness should abort then). */
int txstream_fuzz_one(const uint8_t *data, size_t len);

#endif
