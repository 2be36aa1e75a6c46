/* What else the fuzzer runs on an input (fuzz_receive.c): each part's `<part>_fuzz_one`,
 * chosen by the input's first byte (each returns 0, or -1 when one of its invariants broke:
 * the harness aborts then). One entry per part in FUZZ_PARTS. */
#ifndef INSANE_ENGINE_FUZZ_PARTS_H
#define INSANE_ENGINE_FUZZ_PARTS_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define FUZZ_PARTS(X) X(aead) X(txstream) X(rxstream)

#define FUZZ_DECLARE(part) int part##_fuzz_one(const uint8_t *data, size_t len);
FUZZ_PARTS(FUZZ_DECLARE)
#undef FUZZ_DECLARE

static inline void fuzz_part(uint8_t choice, const uint8_t *data, size_t len)
{
    typedef int (*fuzz_fn)(const uint8_t *, size_t);
#define FUZZ_ENTRY(part) part##_fuzz_one,
    static const fuzz_fn parts[] = {FUZZ_PARTS(FUZZ_ENTRY) NULL};
#undef FUZZ_ENTRY
    size_t count = sizeof parts / sizeof parts[0] - 1;
    if (count == 0) {
        (void)data, (void)len;
        return;
    }
    if (parts[choice % count](data, len) < 0)
        abort();
}

#endif
