/* libFuzzer harness on the engine's receive path (built by `.ci/build-engine --fuzz OUT`, run
 * by .ci/engine-fuzz): every input is a datagram as it comes off the wire. It is walked as the
 * receive path walks it (header, POSITION, SEQ, then every frame), and the walk's promises are
 * checked: a frame it hands out lies inside the datagram, frames follow each other without a
 * gap, and a failure is one of the known reasons. The first byte of the input chooses what
 * else runs on it (FUZZ_PARTS in fuzz_parts.h: the sealed-datagram opener, the stream state
 * machines), each of them never crashing, leaking or reading out of bounds on any input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_parts.h"
#include "walk.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static void walk_all(const uint8_t *d, size_t n)
{
    struct walk_dgram h;
    enum walk_result r = walk_datagram(d, n, &h);
    check(r < WALK_RESULTS);
    check(strcmp(walk_reason(r), "malformed") == 0 || r == WALK_OK || walk_detail(r)[0] != 0);
    if (r != WALK_OK)
        return;
    check(h.frames_at <= n);
    size_t pos = h.frames_at;
    while (pos < n) {
        struct walk_frame f;
        size_t before = pos;
        r = walk_frame(d, n, &pos, &f);
        if (r != WALK_OK) {
            check(r == WALK_PARTIAL_FRAME_HEAD || r == WALK_FRAME_TOO_LONG);
            check(pos == before);
            return;
        }
        check(f.start == before + WALK_FRAME_HEAD && f.start <= f.end && f.end <= n);
        check(pos == f.end);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    walk_all(data + 1, size - 1);
    fuzz_part(data[0], data + 1, size - 1);
    return 0;
}
