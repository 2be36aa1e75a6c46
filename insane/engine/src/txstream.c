/* txstream: the sending side of one reliable stream (see txstream.h; the specification is
 * SendStream in insane/protocol/reliability.py, followed step by step, in the same order, so
 * that a failing callback leaves the same state behind). */
#include "txstream.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct txstream_entry {
    int64_t seq;
    double t;      /* when it was sent */
    double resent; /* its last retransmission (-1e9: none) */
    size_t len;
    uint8_t data[];
};

/* Small counters and sums: saturating, where Python's ints would just grow. */
static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* ------------------------------------------------------------------ the discarded record */

static void discarded_reset(txstream_discarded *d)
{
    d->start = d->end = d->rest = 0;
    d->head = d->len = 0;
    if (d->cap > 256) { /* a fresh record, as the reference makes one */
        free(d->counts);
        d->counts = NULL;
        d->cap = 0;
    }
}

int txstream_discarded_add(txstream_discarded *d, int64_t seq, uint32_t messages)
{
    if (seq == INT64_MAX)
        return TXSTREAM_EOVERFLOW;
    if (d->len == 0 && d->rest == 0)
        d->start = d->end = seq;
    if (seq != d->end) { /* not contiguous (cannot happen: eviction is oldest first) */
        d->rest = sat_add(d->rest, messages);
    } else if (d->len < d->detail) {
        if (d->head + d->len == d->cap) {
            if (d->head > 0) {
                memmove(d->counts, d->counts + d->head, d->len * sizeof *d->counts);
                d->head = 0;
            }
            if (d->len == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 16;
                if (cap > SIZE_MAX / sizeof *d->counts)
                    return TXSTREAM_ENOMEM;
                uint32_t *p = realloc(d->counts, cap * sizeof *p);
                if (p == NULL)
                    return TXSTREAM_ENOMEM;
                d->counts = p;
                d->cap = cap;
            }
        }
        d->counts[d->head + d->len++] = messages;
    } else {
        d->rest = sat_add(d->rest, messages);
    }
    d->end = seq + 1;
    return TXSTREAM_OK;
}

void txstream_discarded_release(txstream_discarded *d, int64_t below)
{
    if (below <= d->start)
        return;
    if (below >= d->end) {
        discarded_reset(d);
        return;
    }
    uint64_t drop = (uint64_t)below - (uint64_t)d->start;
    if (drop >= d->len) {
        d->head = d->len = 0;
    } else {
        d->head += (size_t)drop;
        d->len -= (size_t)drop;
    }
    d->start = below;
}

int64_t txstream_discarded_messages(const txstream_discarded *d, int64_t start, int64_t end)
{
    if (d->start > start)
        start = d->start;
    if (d->end < end)
        end = d->end;
    if (start >= end)
        return 0;
    int64_t detailed_end =
        (int64_t)d->len > INT64_MAX - d->start ? INT64_MAX : d->start + (int64_t)d->len;
    if (start >= detailed_end)
        return end == d->end && start == detailed_end ? d->rest : -1;
    int64_t stop = end < detailed_end ? end : detailed_end;
    size_t a = (size_t)((uint64_t)start - (uint64_t)d->start);
    size_t b = (size_t)((uint64_t)stop - (uint64_t)d->start);
    const uint32_t *c = d->counts + d->head;
    int64_t n = 0;
    for (size_t i = a; i < b; i++)
        n += c[i]; /* at most 2^20 of 2^32 */
    if (end > detailed_end) {
        if (end != d->end)
            return -1;
        n = sat_add(n, d->rest);
    }
    return n;
}

int64_t txstream_discarded_total(const txstream_discarded *d)
{
    int64_t n = 0;
    for (size_t i = 0; i < d->len; i++)
        n += d->counts[d->head + i];
    return sat_add(n, d->rest);
}

/* ------------------------------------------------------------------ the kept datagrams */

static txstream_entry *ring_at(const txstream *s, size_t i)
{
    return s->ring[(s->ring_head + i) & (s->ring_cap - 1)];
}

static int ring_resize(txstream *s, size_t cap)
{
    if (cap > SIZE_MAX / sizeof *s->ring)
        return TXSTREAM_ENOMEM;
    txstream_entry **ring = malloc(cap * sizeof *ring);
    if (ring == NULL)
        return TXSTREAM_ENOMEM;
    for (size_t i = 0; i < s->ring_len; i++)
        ring[i] = ring_at(s, i);
    free(s->ring);
    s->ring = ring;
    s->ring_cap = cap;
    s->ring_head = 0;
    return TXSTREAM_OK;
}

static int ring_push(txstream *s, txstream_entry *e)
{
    if (s->ring_len == s->ring_cap) {
        int rc = ring_resize(s, s->ring_cap ? s->ring_cap * 2 : 16);
        if (rc)
            return rc;
    }
    s->ring[(s->ring_head + s->ring_len) & (s->ring_cap - 1)] = e;
    s->ring_len++;
    return TXSTREAM_OK;
}

/* The oldest kept datagram, out of the ring (the caller frees it). */
static txstream_entry *ring_pop(txstream *s)
{
    txstream_entry *e = s->ring[s->ring_head];
    s->ring_head = (s->ring_head + 1) & (s->ring_cap - 1);
    s->ring_len--;
    s->kept_bytes -= (int64_t)e->len;
    if (s->ring_len == 0) {
        s->ring_head = 0;
        if (s->ring_cap > 64) { /* an idle stream holds no large ring */
            free(s->ring);
            s->ring = NULL;
            s->ring_cap = 0;
        }
    } else if (s->ring_cap > 64 && s->ring_len < s->ring_cap / 8) {
        (void)ring_resize(s, s->ring_cap / 4); /* (if that fails, the ring stays large) */
    }
    return e;
}

/* ------------------------------------------------------------------ the stream */

void txstream_init(txstream *s)
{
    memset(s, 0, sizeof *s);
    s->max_bytes = 64 * 1024 * 1024;
    s->window = 4 * 1024 * 1024;
    s->max_age = 10.0;
    s->tail_delay = 0.01;
    s->tail_interval = 0.05;
    s->resend_guard = 0.01;
    s->next_seq = 1;
    s->acked = 1;
    s->last_send = 0.0;
    s->last_tail = -1e9;
    s->gap_reported = 1;
    s->discarded.detail = TXSTREAM_DISCARD_DETAIL;
}

void txstream_free(txstream *s)
{
    for (size_t i = 0; i < s->ring_len; i++)
        free(ring_at(s, i));
    free(s->ring);
    s->ring = NULL;
    s->ring_len = s->ring_cap = s->ring_head = 0;
    s->kept_bytes = 0;
    free(s->discarded.counts);
    s->discarded.counts = NULL;
    s->discarded.cap = s->discarded.len = s->discarded.head = 0;
}

int txstream_number(txstream *s, int64_t *seq)
{
    if (s->next_seq == INT64_MAX)
        return TXSTREAM_EOVERFLOW;
    *seq = s->next_seq++;
    return TXSTREAM_OK;
}

int txstream_sent(txstream *s, int64_t seq, const uint8_t *datagram, size_t len, double now)
{
    if (seq == INT64_MAX || len > (size_t)(INT64_MAX - s->kept_bytes) ||
        len > SIZE_MAX - sizeof(txstream_entry))
        return TXSTREAM_EOVERFLOW;
    txstream_entry *e = malloc(sizeof *e + len);
    if (e == NULL)
        return TXSTREAM_ENOMEM;
    e->seq = seq;
    e->t = now;
    e->resent = -1e9;
    e->len = len;
    if (len)
        memcpy(e->data, datagram, len);
    if (ring_push(s, e)) {
        free(e);
        return TXSTREAM_ENOMEM;
    }
    s->kept_bytes += (int64_t)len;
    s->last_send = now;
    s->stats.sent = sat_add(s->stats.sent, 1);
    return txstream_evict(s, now);
}

int txstream_evict(txstream *s, double now)
{
    while (s->ring_len) {
        int full = s->kept_bytes > s->max_bytes;
        if (!full && !(now - ring_at(s, 0)->t > s->max_age))
            break;
        if (full)
            s->stats.evicted_full = sat_add(s->stats.evicted_full, 1);
        else
            s->stats.evicted_old = sat_add(s->stats.evicted_old, 1);
        txstream_entry *e = ring_pop(s);
        int rc = TXSTREAM_OK;
        if (e->seq >= s->acked) { /* not acknowledged: its messages may never be delivered */
            uint32_t messages = 1;
            if (s->count != NULL && s->count(s->count_ctx, e->data, e->len, &messages) != 0)
                rc = TXSTREAM_ECOUNT;
            else if ((rc = txstream_discarded_add(&s->discarded, e->seq, messages)) == 0)
                s->stats.discarded_messages = sat_add(s->stats.discarded_messages, messages);
        }
        free(e);
        if (rc)
            return rc;
    }
    return TXSTREAM_OK;
}

int64_t txstream_take_discarded(txstream *s)
{
    int64_t n = s->unreported;
    s->unreported = 0;
    return n;
}

int txstream_abandon(txstream *s, int64_t *messages)
{
    int rc = txstream_evict(s, INFINITY); /* every kept datagram is now discarded */
    if (rc)
        return rc;
    int64_t n = txstream_discarded_messages(&s->discarded, s->gap_reported, s->next_seq);
    *messages = n < 0 ? 0 : n;
    return TXSTREAM_OK;
}

size_t txstream_kept(const txstream *s) { return s->ring_len; }

int txstream_unacked(const txstream *s) { return s->acked < s->next_seq; }

int txstream_full(const txstream *s)
{
    int64_t kept = s->kept_bytes, m = s->max_bytes;
    if (!(m > 0))
        return 0;
    if (kept >= s->window)
        return 1;
    /* kept * 4 >= m * 3, without overflow: kept >= ceil(3m / 4) (kept >= 0, m > 0) */
    int64_t threshold = 3 * (m / 4) + (3 * (m % 4) + 3) / 4;
    return kept >= threshold;
}

int txstream_on_ack(txstream *s, int64_t next_expected)
{
    if (s->next_seq < next_expected)
        next_expected = s->next_seq;
    if (next_expected <= s->acked)
        return 0;
    int was_full = txstream_full(s);
    s->acked = next_expected;
    txstream_discarded_release(&s->discarded, next_expected);
    if (next_expected > s->gap_reported)
        s->gap_reported = next_expected;
    while (s->ring_len && ring_at(s, 0)->seq < next_expected)
        free(ring_pop(s));
    /* (the resend times went with their datagrams) */
    return was_full && !txstream_full(s);
}

int txstream_nack_begin(txstream *s, double now, int64_t *first)
{
    int rc = txstream_evict(s, now);
    if (rc)
        return rc;
    s->stats.nacks = sat_add(s->stats.nacks, 1);
    *first = s->ring_len ? ring_at(s, 0)->seq : s->next_seq;
    return TXSTREAM_OK;
}

int txstream_nack_range(txstream *s, int64_t first, int64_t start, int64_t end, double now,
                        txstream_gap *gap, txstream_emit_fn emit, void *ctx, size_t *again)
{
    gap->present = 0;
    if (start < s->acked)
        start = s->acked;
    if (start < 1)
        start = 1;
    if (end > s->next_seq)
        end = s->next_seq;
    if (start >= end)
        return TXSTREAM_OK;
    if (start < first) {
        int64_t lost_end = end < first ? end : first;
        gap->present = 1;
        gap->start = start;
        gap->end = lost_end;
        gap->messages = txstream_discarded_messages(&s->discarded, start, lost_end);
        s->stats.gaps = sat_add(s->stats.gaps, lost_end - start);
        if (lost_end > s->gap_reported) { /* reported once, however often asked */
            int64_t from = start > s->gap_reported ? start : s->gap_reported;
            int64_t fresh = txstream_discarded_messages(&s->discarded, from, lost_end);
            s->unreported = sat_add(s->unreported, fresh < 0 ? 0 : fresh);
            s->gap_reported = lost_end;
        }
        start = lost_end;
    }
    double guard = s->resend_guard;
    for (int64_t seq = start; seq < end; seq++) {
        uint64_t i = (uint64_t)seq - (uint64_t)first; /* seq >= first here */
        if (i >= s->ring_len) {
            /* Nothing kept there (numbered, never sent): the reference's deque index fails,
             * unless the guard holds every such number back (then none of the rest counts). */
            if (now - -1e9 < guard)
                break;
            return TXSTREAM_EINDEX;
        }
        txstream_entry *e = ring_at(s, (size_t)i);
        if (now - e->resent < guard)
            continue;
        e->resent = now;
        (*again)++;
        if (emit != NULL && emit(ctx, e->data, e->len) != 0)
            return TXSTREAM_EEMIT;
    }
    return TXSTREAM_OK;
}

void txstream_nack_end(txstream *s, size_t again)
{
    s->stats.retransmitted =
        sat_add(s->stats.retransmitted, again > (size_t)INT64_MAX ? INT64_MAX : (int64_t)again);
}

int txstream_tail_due(const txstream *s, double now)
{
    if (!txstream_unacked(s) || now - s->last_send < s->tail_delay)
        return 0;
    return now - s->last_tail >= s->tail_interval;
}

int64_t txstream_tail(txstream *s, double now)
{
    s->last_tail = now;
    return s->next_seq - 1;
}

int txstream_next_timer(const txstream *s, double now, double *when)
{
    (void)now;
    if (!txstream_unacked(s))
        return 0;
    double a = s->last_send + s->tail_delay, b = s->last_tail + s->tail_interval;
    *when = b > a ? b : a; /* Python's max: the first unless the second is larger */
    return 1;
}

/* ------------------------------------------------------------------ the fuzzer's entry */

typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_input;

static uint8_t fuzz_byte(fuzz_input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static int fuzz_count(void *ctx, const uint8_t *datagram, size_t len, uint32_t *messages)
{
    (void)ctx;
    if (len && datagram[0] == 0xff)
        return -1; /* a failing callback */
    *messages = len ? datagram[0] % 5 : 1;
    return 0;
}

static int fuzz_emit(void *ctx, const uint8_t *datagram, size_t len)
{
    size_t *total = ctx;
    *total += len;
    return len && datagram[len - 1] == 0xfe ? -1 : 0;
}

/* What must hold after every operation; 0 when it does. */
static int fuzz_check(const txstream *s)
{
    int64_t bytes = 0;
    for (size_t i = 0; i < s->ring_len; i++)
        bytes += (int64_t)ring_at(s, i)->len;
    if (bytes != s->kept_bytes || s->ring_len > s->ring_cap)
        return -1;
    const txstream_discarded *d = &s->discarded;
    if (d->len > d->detail || (d->len && d->head + d->len > d->cap))
        return -1;
    return 0;
}

int txstream_fuzz_one(const uint8_t *data, size_t len)
{
    fuzz_input in = {data, len};
    txstream s;
    txstream_init(&s);
    uint8_t b = fuzz_byte(&in);
    s.max_bytes = (int64_t)(b & 0x7f) * 8 - 8; /* -8 (evict everything) .. 1008 bytes */
    s.window = (int64_t)fuzz_byte(&in) * 4;
    s.max_age = fuzz_byte(&in) * 0.001;
    b = fuzz_byte(&in);
    s.discarded.detail = b & 0x80 ? TXSTREAM_DISCARD_DETAIL : (size_t)(b & 7);
    if (b & 0x40) {
        s.count = fuzz_count;
        s.count_ctx = NULL;
    }
    double now = 0.0;
    uint8_t buf[256];
    size_t emitted = 0;
    int bad = 0;
    while (in.n && !bad) {
        uint8_t op = fuzz_byte(&in);
        int64_t seq = 0, n = 0;
        switch (op % 12) {
        case 0: /* number and sent: a small datagram */
        case 1: {
            size_t dlen = fuzz_byte(&in) % 64;
            for (size_t i = 0; i < dlen; i++)
                buf[i] = fuzz_byte(&in);
            if (txstream_number(&s, &seq) == 0) {
                int rc = txstream_sent(&s, seq, buf, dlen, now);
                if (rc == 0 && s.ring_len && s.kept_bytes > s.max_bytes)
                    bad = 1;
            }
            break;
        }
        case 2: /* an ACK: old, new or beyond */
            txstream_on_ack(&s, s.acked + (int64_t)fuzz_byte(&in) - 64);
            break;
        case 3: { /* a NACK of up to 4 ranges around what was sent */
            int64_t first;
            if (txstream_nack_begin(&s, now, &first))
                break;
            size_t again = 0, count = fuzz_byte(&in) % 5;
            for (size_t r = 0; r < count; r++) {
                int64_t a = s.next_seq - (int64_t)fuzz_byte(&in);
                int64_t z = a + (int64_t)fuzz_byte(&in) - 16;
                if (fuzz_byte(&in) == 0xff)
                    z = INT64_MAX, a = INT64_MIN;
                txstream_gap gap;
                if (txstream_nack_range(&s, first, a, z, now, &gap, fuzz_emit, &emitted, &again))
                    break;
                if (gap.present && (gap.start >= gap.end || gap.end > first))
                    bad = 1;
            }
            txstream_nack_end(&s, again);
            break;
        }
        case 4: /* a TAIL when due */
            if (txstream_tail_due(&s, now) && txstream_tail(&s, now) != s.next_seq - 1)
                bad = 1;
            (void)txstream_next_timer(&s, now, &(double){0});
            break;
        case 5: /* time moves on, past max_age maybe; evict what is old */
            now += fuzz_byte(&in) * 0.0005;
            if (txstream_evict(&s, now) == 0 && s.ring_len &&
                now - ring_at(&s, 0)->t > s.max_age)
                bad = 1;
            break;
        case 6: /* the receiver is gone */
            if (txstream_abandon(&s, &n) == 0 && (s.ring_len || n < 0))
                bad = 1;
            break;
        case 7:
            if (txstream_take_discarded(&s) < 0)
                bad = 1;
            break;
        case 8: /* numbered, never sent (a NACK of it fails as the reference's does) */
            (void)txstream_number(&s, &seq);
            break;
        case 9:
            s.resend_guard = fuzz_byte(&in) * 0.001;
            break;
        case 10:
            s.max_bytes = (int64_t)fuzz_byte(&in) * 8 - 8;
            break;
        case 11:
            (void)txstream_full(&s);
            (void)txstream_unacked(&s);
            (void)txstream_discarded_messages(&s.discarded, s.acked - fuzz_byte(&in),
                                              s.next_seq + fuzz_byte(&in) - 128);
            (void)txstream_discarded_total(&s.discarded);
            break;
        }
        if (fuzz_check(&s))
            bad = 1;
    }
    txstream_free(&s);
    return bad ? -1 : 0;
}
