/* rxstream: the receiving side of one reliable stream (the C core of
 * insane.protocol.reliability.ReceiveStream, no Python).
 *
 * Numbers are the wire's 64-bit sequence numbers. Where the reference uses exclusive ends
 * (next_expected, ranges' ends), which may reach 2**64, the core keeps inclusive ones:
 * `done` is next_expected - 1, a range is [first, last].
 *
 * The stream remembers which numbers above `done` are present (arrived, or settled by a GAP)
 * as sorted, disjoint, non-adjacent ranges, and, in an ordered stream, a copy of every
 * non-empty datagram held back (an empty one behaves as a settled number in the reference,
 * so it is one). What a call hands over from what was held is left "pending" at the head of
 * the held datagrams (rxstream_pending_*), valid until rxstream_release or the next call.
 *
 * Every function that can allocate returns RXSTREAM_ENOMEM with the stream unchanged when
 * an allocation fails.
 */
#ifndef INSANE_RXSTREAM_H
#define INSANE_RXSTREAM_H

#include <stddef.h>
#include <stdint.h>

#define RXSTREAM_MAX_BACKOFF 0.2

#define RXSTREAM_ENOMEM (-1)

/* rxstream_on_data's results */
#define RXSTREAM_DUPLICATE 0 /* nothing to process */
#define RXSTREAM_DROPPED 1   /* ordered, early, too much held: forgotten (nothing to process) */
#define RXSTREAM_HELD 2      /* ordered, early: held back (nothing to process) */
#define RXSTREAM_PASS 3      /* unordered, early: process the arriving datagram alone */
#define RXSTREAM_DELIVER 4   /* in order: the arriving datagram, then what is pending */

typedef struct {
    uint64_t first, last; /* inclusive */
} rxstream_range;

typedef struct {
    uint64_t seq;
    uint8_t *data; /* malloc'ed copy, len > 0 */
    size_t len;
} rxstream_item;

typedef struct {
    int64_t received, duplicates, nacks, recovered;
    /* lost is signed and may pass 64 bits (a TAIL of 2**64-1 given up on): lost_hi * 2**64
     * + lost_lo, two's complement */
    uint64_t lost_lo;
    int64_t lost_hi;
} rxstream_stats;

typedef struct {
    int ordered;
    double nack_delay, nack_interval;
    int64_t max_held_bytes;
    uint64_t done;    /* every number up to this one was handed over (or given up) */
    uint64_t highest; /* the highest number known to exist */
    /* present numbers above done: ranges[rhead .. rhead + rcount) */
    rxstream_range *ranges;
    size_t rhead, rcount, rcap;
    /* held datagrams (ordered), by number: items[ihead .. ihead + pend) are pending (handed
     * over by the last call), items[ihead + pend .. ihead + pend + icount) are held */
    rxstream_item *items;
    size_t ihead, pend, icount, icap;
    int64_t held_bytes;
    /* pending: numbers pend_first..pend_last were handed over from what was held;
     * pend_empties: each of them without a held datagram is an empty datagram to process
     * (an ordered stream's drain on arrival, as the reference's) */
    int pend_active, pend_empties;
    uint64_t pend_first, pend_last;
    int has_gap;
    double gap_since, last_nack, backoff;
    rxstream_stats stats;
    /* the gaps of the last on_gap/abandon: gaps[0 .. ngaps), a range with first > last is
     * the reference's Gap(start, end) for start >= end */
    rxstream_range *gaps;
    size_t ngaps, gcap;
} rxstream;

void rxstream_init(rxstream *s, int ordered, double nack_delay, double nack_interval,
                   int64_t max_held_bytes);
void rxstream_free(rxstream *s);

/* A numbered datagram (seq 0 stands for every number below 1: a duplicate). */
int rxstream_on_data(rxstream *s, uint64_t seq, const uint8_t *data, size_t len, double now);
void rxstream_on_tail(rxstream *s, uint64_t last, double now);
/* The sender says start..end_last are gone (end_last inclusive; end_beyond is not needed by
 * the core: a range never passes 2**64-1). The gaps given up on are in s->gaps, what can be
 * handed over is pending. 0, or RXSTREAM_ENOMEM. */
int rxstream_on_gap(rxstream *s, uint64_t start, uint64_t end_last, double now);
int rxstream_abandon(rxstream *s, double now);
/* 1 when the missing ranges are to be asked for now (then read them with the iterator). */
int rxstream_nack_due(rxstream *s, double now);
/* When nack_due may next have something; 0 when there is no gap. */
int rxstream_next_timer(const rxstream *s, double *when);

/* What the last call handed over from what was held: the number of datagrams (empty ones
 * included), then each in order (data NULL and len 0 for an empty one). */
uint64_t rxstream_pending_count(const rxstream *s);
typedef struct {
    uint64_t seq;
    size_t item;
} rxstream_pending_iter;
void rxstream_pending_begin(const rxstream *s, rxstream_pending_iter *it);
int rxstream_pending_next(const rxstream *s, rxstream_pending_iter *it, const uint8_t **data,
                          size_t *len);
/* Frees what is pending (each call does it first anyway). */
void rxstream_release(rxstream *s);

/* The missing ranges, inclusive, in order. */
typedef struct {
    size_t i;
    uint64_t cur;
    int end;
} rxstream_missing_iter;
void rxstream_missing_begin(const rxstream *s, rxstream_missing_iter *it);
int rxstream_missing_next(const rxstream *s, rxstream_missing_iter *it, uint64_t *first,
                          uint64_t *last);

/* Datagrams held back (non-empty ones, as the reference's `held`). */
static inline size_t rxstream_held(const rxstream *s) { return s->icount; }

/* lost += delta (signed) */
void rxstream_lost_add(rxstream_stats *st, uint64_t magnitude, int negative);

/* 0 when the stream's invariants hold (for the fuzzer and the tests). */
int rxstream_check(const rxstream *s);

/* The fuzzer's entry: a schedule of operations on an ordered and an unordered stream.
 * Returns 0, or -1 if an invariant broke (the harness aborts on it). */
int rxstream_fuzz_one(const uint8_t *data, size_t len);

#endif
