/* The native data plane: what the parts of the extension module share.
 *
 * The engine is built from two kinds of files in this directory:
 *   - core files (aead.c, rxstream.c, ...): plain C11 on libc and libcrypto, no Python.h, so
 *     the fuzzer (fuzz_receive.c) and the sanitizer builds link them alone;
 *   - binding files (py_*.c): the CPython types and functions over a core file; each
 *     exports one `int engine_add_<part>(PyObject *module)` that module.c calls at import;
 *     py_common.c/.h holds what they share (argument parser, bytes-like access, lazy
 *     imports of the reference), no part of its own.
 * Every length that comes from the network is checked before it is used.
 */
#ifndef INSANE_ENGINE_H
#define INSANE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

static inline uint16_t engine_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t engine_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t engine_be64(const uint8_t *p)
{
    return ((uint64_t)engine_be32(p) << 32) | engine_be32(p + 4);
}

static inline void engine_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void engine_put_be64(uint8_t *p, uint64_t v)
{
    engine_put_be32(p, (uint32_t)(v >> 32));
    engine_put_be32(p + 4, (uint32_t)v);
}

#endif
