/* rxstream: the receiving side of one reliable stream, in C (no Python): duplicates dropped,
 * an ordered stream's early datagrams held until the gap before them fills, NACKs scheduled
 * (nack_delay, then nack_interval doubling up to RXSTREAM_MAX_BACKOFF), gaps given up on
 * (GAP, abandon). The specification is insane/protocol/reliability.py's ReceiveStream; see
 * rxstream.h for the representation. */
#include "rxstream.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ growable arrays */

/* Room for `extra` more elements after the `used` ones at *head (compacting, then growing). */
static int reserve(void **arr, size_t elsize, size_t *head, size_t used, size_t *cap,
                   size_t extra)
{
    if (extra > SIZE_MAX - used)
        return RXSTREAM_ENOMEM;
    size_t need = used + extra;
    if (need <= *cap && *head <= *cap - need)
        return 0;
    if (need <= *cap) {
        if (used)
            memmove(*arr, (char *)*arr + *head * elsize, used * elsize);
        *head = 0;
        return 0;
    }
    size_t ncap = *cap < 8 ? 8 : *cap;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return RXSTREAM_ENOMEM;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / elsize)
        return RXSTREAM_ENOMEM;
    char *p = malloc(ncap * elsize);
    if (p == NULL)
        return RXSTREAM_ENOMEM;
    if (used)
        memcpy(p, (char *)*arr + *head * elsize, used * elsize);
    free(*arr);
    *arr = p;
    *head = 0;
    *cap = ncap;
    return 0;
}

/* Give back most of an array that emptied out (failure is harmless: it stays as it is). */
static void shrink(void **arr, size_t elsize, size_t *head, size_t used, size_t *cap)
{
    if (*cap <= 64 || used > *cap / 8)
        return;
    size_t ncap = *cap / 4;
    char *p = malloc(ncap * elsize);
    if (p == NULL)
        return;
    if (used)
        memcpy(p, (char *)*arr + *head * elsize, used * elsize);
    free(*arr);
    *arr = p;
    *head = 0;
    *cap = ncap;
}

static int reserve_ranges(rxstream *s, size_t extra)
{
    void *arr = s->ranges;
    int rc = reserve(&arr, sizeof(rxstream_range), &s->rhead, s->rcount, &s->rcap, extra);
    s->ranges = arr;
    return rc;
}

static int reserve_items(rxstream *s, size_t extra)
{
    void *arr = s->items;
    int rc = reserve(&arr, sizeof(rxstream_item), &s->ihead, s->pend + s->icount, &s->icap,
                     extra);
    s->items = arr;
    return rc;
}

static int reserve_gaps(rxstream *s, size_t extra)
{
    void *arr = s->gaps;
    size_t head = 0;
    int rc = reserve(&arr, sizeof(rxstream_range), &head, s->ngaps, &s->gcap, extra);
    s->gaps = arr;
    return rc;
}

/* ------------------------------------------------------------------ counters */

static int64_t inc(int64_t v) { return (int64_t)((uint64_t)v + 1u); }

void rxstream_lost_add(rxstream_stats *st, uint64_t magnitude, int negative)
{
    if (!negative) {
        uint64_t lo = st->lost_lo + magnitude;
        if (lo < st->lost_lo)
            st->lost_hi = inc(st->lost_hi);
        st->lost_lo = lo;
    } else {
        if (st->lost_lo < magnitude)
            st->lost_hi = (int64_t)((uint64_t)st->lost_hi - 1u);
        st->lost_lo -= magnitude;
    }
}

/* ------------------------------------------------------------------ life */

void rxstream_init(rxstream *s, int ordered, double nack_delay, double nack_interval,
                   int64_t max_held_bytes)
{
    memset(s, 0, sizeof(*s));
    s->ordered = ordered != 0;
    s->nack_delay = nack_delay;
    s->nack_interval = nack_interval;
    s->max_held_bytes = max_held_bytes;
    s->last_nack = -1e9;
    s->backoff = nack_interval;
}

void rxstream_release(rxstream *s)
{
    if (s->pend == 0 && s->icap <= 64) { /* (the common case: nothing to free or give back) */
        s->pend_active = 0;
        if (s->icount == 0)
            s->ihead = 0;
        return;
    }
    if (s->pend) {
        rxstream_item *it = s->items + s->ihead;
        for (size_t i = 0; i < s->pend; i++)
            free(it[i].data);
        s->ihead += s->pend;
        s->pend = 0;
    }
    if (s->icount == 0)
        s->ihead = 0;
    s->pend_active = 0;
    void *arr = s->items;
    shrink(&arr, sizeof(rxstream_item), &s->ihead, s->icount, &s->icap);
    s->items = arr;
}

void rxstream_free(rxstream *s)
{
    rxstream_release(s);
    for (size_t i = 0; i < s->icount; i++)
        free(s->items[s->ihead + i].data);
    free(s->items);
    free(s->ranges);
    free(s->gaps);
    memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------------ present numbers */

/* The live ranges, and the held datagrams from the pending ones on (no arithmetic on a NULL
 * array: nothing is read through it then). */
static rxstream_range *ranges(const rxstream *s)
{
    return s->ranges ? s->ranges + s->rhead : NULL;
}

static rxstream_item *items_at(const rxstream *s, size_t skip)
{
    return s->items ? s->items + s->ihead + skip : NULL;
}

/* The first range whose first number is above seq (0..rcount). */
static size_t ranges_upper(const rxstream *s, uint64_t seq)
{
    const rxstream_range *r = ranges(s);
    size_t lo = 0, hi = s->rcount;
    if (hi && r[hi - 1].first <= seq)
        return hi;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].first <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int present(const rxstream *s, uint64_t seq)
{
    size_t i = ranges_upper(s, seq);
    return i > 0 && ranges(s)[i - 1].last >= seq;
}

/* Mark a..b present (none of them is; room for one more range reserved). */
static void ranges_insert(rxstream *s, uint64_t a, uint64_t b)
{
    rxstream_range *r = ranges(s);
    size_t n = s->rcount;
    size_t i = ranges_upper(s, a);
    int join_prev = i > 0 && r[i - 1].last + 1 == a;
    int join_next = i < n && b != UINT64_MAX && r[i].first == b + 1;
    if (join_prev && join_next) {
        r[i - 1].last = r[i].last;
        memmove(r + i, r + i + 1, (n - i - 1) * sizeof(*r));
        s->rcount--;
    } else if (join_prev) {
        r[i - 1].last = b;
    } else if (join_next) {
        r[i].first = a;
    } else {
        memmove(r + i + 1, r + i, (n - i) * sizeof(*r));
        r[i].first = a;
        r[i].last = b;
        s->rcount++;
    }
}

/* Held datagrams: the first at or above seq (0..icount). */
static size_t items_lower(const rxstream *s, uint64_t seq)
{
    const rxstream_item *it = items_at(s, s->pend);
    size_t lo = 0, hi = s->icount;
    if (hi && it[hi - 1].seq < seq)
        return hi;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (it[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Move done past what is present, handing over the held datagrams (the reference's _drain
 * with empties: every number is a datagram to process; _drain_settled without). */
static void drain(rxstream *s, int empties)
{
    if (s->rcount == 0 || s->done == UINT64_MAX)
        return;
    rxstream_range *r = ranges(s);
    if (r->first != s->done + 1)
        return;
    uint64_t first = r->first, last = r->last;
    s->rhead++;
    s->rcount--;
    if (s->rcount == 0)
        s->rhead = 0;
    rxstream_item *it = items_at(s, 0); /* nothing pending: release came first */
    size_t k = 0;
    while (k < s->icount && it[k].seq <= last) {
        s->held_bytes -= (int64_t)it[k].len;
        k++;
    }
    s->pend = k;
    s->icount -= k;
    s->pend_active = 1;
    s->pend_empties = empties;
    s->pend_first = first;
    s->pend_last = last;
    s->done = last;
    void *arr = s->ranges;
    shrink(&arr, sizeof(rxstream_range), &s->rhead, s->rcount, &s->rcap);
    s->ranges = arr;
}

static void update_gap(rxstream *s, double now)
{
    if (s->done >= s->highest) {
        s->has_gap = 0;
    } else if (!s->has_gap) {
        s->has_gap = 1;
        s->gap_since = now;
    }
}

/* ------------------------------------------------------------------ input */

int rxstream_on_data(rxstream *s, uint64_t seq, const uint8_t *data, size_t len, double now)
{
    rxstream_release(s);
    rxstream_stats *st = &s->stats;
    if (seq <= s->done || present(s, seq)) {
        st->received = inc(st->received);
        st->duplicates = inc(st->duplicates);
        return RXSTREAM_DUPLICATE;
    }
    int filling = seq <= s->highest;
    if (seq == s->done + 1) {
        st->received = inc(st->received);
        if (seq > s->highest)
            s->highest = seq;
        s->done = seq;
        s->backoff = s->nack_interval;
        if (filling)
            st->recovered = inc(st->recovered);
        drain(s, s->ordered);
        update_gap(s, now);
        return RXSTREAM_DELIVER;
    }
    /* Early: a gap lies before it. */
    if (s->ordered) {
        /* held_bytes + len > max_held_bytes (held_bytes >= 0, no overflow) */
        if ((uint64_t)len > (uint64_t)INT64_MAX - (uint64_t)s->held_bytes
            || s->held_bytes + (int64_t)len > s->max_held_bytes) {
            /* forgotten (received counted, then not): the reference neither updates the
             * gap here */
            if (seq > s->highest)
                s->highest = seq;
            if (filling)
                st->recovered = inc(st->recovered);
            return RXSTREAM_DROPPED;
        }
        uint8_t *copy = NULL;
        if (len) {
            if (reserve_items(s, 1) < 0)
                return RXSTREAM_ENOMEM;
            copy = malloc(len);
            if (copy == NULL)
                return RXSTREAM_ENOMEM;
            memcpy(copy, data, len);
        }
        if (reserve_ranges(s, 1) < 0) {
            free(copy);
            return RXSTREAM_ENOMEM;
        }
        st->received = inc(st->received);
        if (seq > s->highest)
            s->highest = seq;
        if (filling)
            st->recovered = inc(st->recovered);
        if (copy) {
            rxstream_item *it = items_at(s, 0);
            size_t i = items_lower(s, seq);
            memmove(it + i + 1, it + i, (s->icount - i) * sizeof(*it));
            it[i].seq = seq;
            it[i].data = copy;
            it[i].len = len;
            s->icount++;
            s->held_bytes += (int64_t)len;
        }
        ranges_insert(s, seq, seq);
        update_gap(s, now);
        return RXSTREAM_HELD;
    }
    if (reserve_ranges(s, 1) < 0)
        return RXSTREAM_ENOMEM;
    st->received = inc(st->received);
    if (seq > s->highest)
        s->highest = seq;
    if (filling)
        st->recovered = inc(st->recovered);
    ranges_insert(s, seq, seq);
    update_gap(s, now);
    return RXSTREAM_PASS;
}

void rxstream_on_tail(rxstream *s, uint64_t last, double now)
{
    rxstream_release(s);
    if (last > s->highest) {
        s->highest = last;
        update_gap(s, now);
    }
}

int rxstream_on_gap(rxstream *s, uint64_t start, uint64_t end_last, double now)
{
    rxstream_release(s);
    s->ngaps = 0;
    if (s->done >= s->highest)
        return 0; /* nothing missing */
    /* The missing ranges whose last >= start and first <= end_last: they start with the one
     * before the first present range above start. */
    const rxstream_range *r = ranges(s);
    size_t n = s->rcount;
    for (size_t i = ranges_upper(s, start); i <= n; i++) {
        uint64_t f, l;
        if (i == 0) {
            f = s->done + 1;
        } else {
            if (r[i - 1].last >= s->highest)
                break; /* (no tail after the last present range) */
            f = r[i - 1].last + 1;
        }
        l = i < n ? r[i].first - 1 : s->highest;
        if (f > end_last)
            break;
        if (l < start)
            break; /* (only the tail can be: highest < start) */
        if (reserve_gaps(s, 1) < 0) {
            s->ngaps = 0;
            return RXSTREAM_ENOMEM;
        }
        s->gaps[s->ngaps].first = f > start ? f : start;
        s->gaps[s->ngaps].last = l < end_last ? l : end_last;
        s->ngaps++;
    }
    if (s->ngaps == 0)
        return 0;
    if (reserve_ranges(s, s->ngaps) < 0) {
        s->ngaps = 0;
        return RXSTREAM_ENOMEM;
    }
    for (size_t g = 0; g < s->ngaps; g++) {
        uint64_t a = s->gaps[g].first, b = s->gaps[g].last;
        if (a > b) { /* start >= end: the reference's range(a, b) is empty, its count < 1 */
            rxstream_lost_add(&s->stats, a - b - 1, 1);
            continue;
        }
        rxstream_lost_add(&s->stats, b - a + 1, 0); /* a >= 1: no overflow */
        if (s->done != UINT64_MAX && a == s->done + 1)
            s->done = b;
        else
            ranges_insert(s, a, b); /* settled: to be skipped */
    }
    drain(s, 0);
    update_gap(s, now);
    return 0;
}

int rxstream_abandon(rxstream *s, double now)
{
    rxstream_release(s);
    s->ngaps = 0;
    if (s->done >= s->highest)
        return 0;
    return rxstream_on_gap(s, s->done + 1, s->highest, now);
}

/* ------------------------------------------------------------------ gaps and NACKs */

int rxstream_nack_due(rxstream *s, double now)
{
    if (!s->has_gap || now - s->gap_since < s->nack_delay)
        return 0;
    if (now - s->last_nack < s->backoff)
        return 0;
    if (s->last_nack > s->gap_since) { /* asked already in this gap: back off */
        double b = s->backoff * 2;
        s->backoff = RXSTREAM_MAX_BACKOFF < b ? RXSTREAM_MAX_BACKOFF : b;
    }
    s->last_nack = now;
    s->stats.nacks = inc(s->stats.nacks);
    return 1;
}

int rxstream_next_timer(const rxstream *s, double *when)
{
    if (!s->has_gap)
        return 0;
    double a = s->gap_since + s->nack_delay, b = s->last_nack + s->backoff;
    *when = b > a ? b : a;
    return 1;
}

void rxstream_missing_begin(const rxstream *s, rxstream_missing_iter *it)
{
    it->i = 0;
    it->end = s->done >= s->highest;
    it->cur = it->end ? 0 : s->done + 1;
}

int rxstream_missing_next(const rxstream *s, rxstream_missing_iter *it, uint64_t *first,
                          uint64_t *last)
{
    const rxstream_range *r = ranges(s);
    while (!it->end) {
        if (it->i < s->rcount) {
            const rxstream_range *p = &r[it->i++];
            uint64_t cur = it->cur;
            if (p->last >= s->highest)
                it->end = 1;
            else
                it->cur = p->last + 1;
            if (p->first > cur) {
                *first = cur;
                *last = p->first - 1;
                return 1;
            }
        } else {
            it->end = 1;
            if (it->cur <= s->highest) {
                *first = it->cur;
                *last = s->highest;
                return 1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ handed over */

uint64_t rxstream_pending_count(const rxstream *s)
{
    if (!s->pend_active)
        return 0;
    if (!s->pend_empties)
        return s->pend;
    uint64_t n = s->pend_last - s->pend_first; /* + 1, saturating */
    return n == UINT64_MAX ? n : n + 1;
}

void rxstream_pending_begin(const rxstream *s, rxstream_pending_iter *it)
{
    it->seq = s->pend_first;
    it->item = 0;
}

int rxstream_pending_next(const rxstream *s, rxstream_pending_iter *it, const uint8_t **data,
                          size_t *len)
{
    if (!s->pend_active || it->item > s->pend)
        return 0;
    const rxstream_item *items = items_at(s, 0);
    if (!s->pend_empties) {
        if (it->item == s->pend)
            return 0;
        *data = items[it->item].data;
        *len = items[it->item].len;
        it->item++;
        return 1;
    }
    /* every number of pend_first..pend_last; it->item == pend + 1 once past the last */
    if (it->item < s->pend && items[it->item].seq == it->seq) {
        *data = items[it->item].data;
        *len = items[it->item].len;
        it->item++;
    } else {
        *data = NULL;
        *len = 0;
    }
    if (it->seq == s->pend_last)
        it->item = s->pend + 1;
    else
        it->seq++;
    return 1;
}

/* ------------------------------------------------------------------ checks, fuzzing */

int rxstream_check(const rxstream *s)
{
    const rxstream_range *r = ranges(s);
    if (s->rhead + s->rcount > s->rcap || s->ihead + s->pend + s->icount > s->icap)
        return -1;
    for (size_t i = 0; i < s->rcount; i++) {
        if (r[i].first > r[i].last || r[i].first <= s->done || r[i].first - s->done < 2
            || r[i].last > s->highest)
            return -1;
        if (i > 0 && (r[i].first <= r[i - 1].last || r[i].first - r[i - 1].last < 2))
            return -1;
    }
    if (!s->ordered && s->icount)
        return -1;
    const rxstream_item *it = items_at(s, s->pend);
    int64_t bytes = 0;
    for (size_t i = 0; i < s->icount; i++) {
        if (it[i].len == 0 || it[i].data == NULL || !present(s, it[i].seq))
            return -1;
        if (i > 0 && it[i].seq <= it[i - 1].seq)
            return -1;
        bytes += (int64_t)it[i].len;
    }
    if (bytes != s->held_bytes)
        return -1;
    if (s->pend && !s->pend_active)
        return -1;
    if (s->has_gap && s->done >= s->highest)
        return -1;
    return 0;
}

typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_input;

static uint8_t take8(fuzz_input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t take64(fuzz_input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | take8(in);
    return v;
}

/* A number near where the stream is: around done, around highest, anywhere, or at the top. */
static uint64_t fuzz_number(fuzz_input *in, const rxstream *s)
{
    uint8_t b = take8(in);
    uint64_t d = b >> 2;
    switch (b & 3) {
    case 0:
        return s->done + d > s->done ? s->done + d : s->done;
    case 1:
        return s->highest >= 32 ? s->highest - 32 + d : d;
    case 2:
        return take64(in);
    default:
        return UINT64_MAX - (d & 7);
    }
}

static uint64_t fuzz_drain(rxstream *s)
{
    rxstream_pending_iter it;
    const uint8_t *d;
    size_t len;
    uint64_t sum = rxstream_pending_count(s);
    rxstream_pending_begin(s, &it);
    for (int i = 0; i < 4096 && rxstream_pending_next(s, &it, &d, &len); i++)
        sum += len ? d[0] + d[len - 1] : 1;
    rxstream_release(s);
    return sum;
}

static uint64_t fuzz_missing(const rxstream *s)
{
    rxstream_missing_iter it;
    uint64_t a, b, sum = 0;
    rxstream_missing_begin(s, &it);
    while (rxstream_missing_next(s, &it, &a, &b))
        sum += b - a;
    return sum;
}

int rxstream_fuzz_one(const uint8_t *data, size_t len)
{
    fuzz_input in = {data, len};
    rxstream st[2];
    uint8_t conf = take8(&in);
    int64_t max_held = conf & 0x80 ? -1 : (int64_t)(conf & 0x7f) * 8;
    rxstream_init(&st[0], 1, 0.002, 0.02, max_held);
    rxstream_init(&st[1], 0, 0.002, 0.02, max_held);
    double now = 0.0;
    volatile uint64_t sink = 0;
    int rc = 0;
    while (in.n && rc == 0) {
        uint8_t op = take8(&in);
        rxstream *s = &st[op & 1];
        switch ((op >> 1) % 8) {
        case 0:
        case 1: { /* a datagram */
            uint64_t seq = fuzz_number(&in, s);
            size_t n = take8(&in) % 24;
            if (n > in.n)
                n = in.n;
            int r = rxstream_on_data(s, seq, in.p, n, now);
            in.p += n;
            in.n -= n;
            if (r < 0)
                break;
            sink += fuzz_drain(s);
            break;
        }
        case 2:
            rxstream_on_tail(s, fuzz_number(&in, s), now);
            break;
        case 3: { /* a GAP */
            uint64_t a = fuzz_number(&in, s), b;
            uint8_t w = take8(&in);
            b = w & 1 ? fuzz_number(&in, s) : a + (w >> 1);
            if (rxstream_on_gap(s, a, b, now) == 0) {
                for (size_t g = 0; g < s->ngaps; g++)
                    sink += s->gaps[g].last - s->gaps[g].first;
                sink += fuzz_drain(s);
            }
            break;
        }
        case 4:
            if (rxstream_nack_due(s, now))
                sink += fuzz_missing(s);
            break;
        case 5:
            if (rxstream_abandon(s, now) == 0)
                sink += s->ngaps + fuzz_drain(s);
            break;
        case 6: { /* time */
            uint8_t t = take8(&in);
            now += t & 0x80 ? (double)(t & 0x7f) : (double)t * 0.0005;
            break;
        }
        default: {
            double when;
            if (rxstream_next_timer(s, &when))
                sink += when > now;
            sink += fuzz_missing(s) + rxstream_held(s);
            break;
        }
        }
        if (rxstream_check(&st[0]) < 0 || rxstream_check(&st[1]) < 0)
            rc = -1;
    }
    (void)sink;
    rxstream_free(&st[0]);
    rxstream_free(&st[1]);
    return rc;
}
