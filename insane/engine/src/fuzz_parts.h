/* What else the fuzzer runs on an input (fuzz_receive.c): each part's `<part>_fuzz_one`,
 * chosen by the input's first byte. One line per part in FUZZ_PARTS. */
#ifndef INSANE_ENGINE_FUZZ_PARTS_H
#define INSANE_ENGINE_FUZZ_PARTS_H
#include <stddef.h>
#include <stdint.h>

#define FUZZ_PARTS(X) X(aead)

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
    if (count > 0)
        parts[choice % count](data, len);
    else
        (void)data, (void)len;
}

#endif
