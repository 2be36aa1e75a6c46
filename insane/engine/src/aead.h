/* aead: sealed datagrams (AES-256-GCM through libcrypto's EVP API) and replay windows, the
 * native core of insane/protocol/security.py (Sealer, Opener), without Python.
 *
 * Secured datagram: header (16, flags 0x01 authenticated, 0x02 encrypted), key id (4), counter
 * (8, big-endian), frames (clear or encrypted), tag (16). Nonce: header bytes 12..16 (the low
 * half of the sender id) then the counter. The key of a secret is sha256("insane-datagram-v1"
 * + secret), its id the first 4 bytes of sha256(secret).
 *
 * Every function returns AEAD_OK (0) or a negative aead_status; none aborts. Memory is bounded:
 * an opener holds at most AEAD_MAX_SENDERS replay windows (all are forgotten when one more
 * sender comes, as the reference does).
 */
#ifndef INSANE_ENGINE_AEAD_H
#define INSANE_ENGINE_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define AEAD_HEADER_SIZE 16
#define AEAD_KID_SIZE 4
#define AEAD_PREFIX_SIZE 12 /* key id, counter */
#define AEAD_TAG_SIZE 16
#define AEAD_OVERHEAD (AEAD_PREFIX_SIZE + AEAD_TAG_SIZE)
#define AEAD_FLAG_AUTHENTICATED 0x01
#define AEAD_FLAG_ENCRYPTED 0x02
#define AEAD_MIN_KEY_BYTES 32
#define AEAD_REPLAY_WINDOW 1024
#define AEAD_MAX_SENDERS 65536

enum aead_status {
    AEAD_OK = 0,
    AEAD_ERR_TOO_SHORT = -1,      /* unauthenticated: too short to carry a tag */
    AEAD_ERR_NO_TAG = -2,         /* unauthenticated: no tag */
    AEAD_ERR_UNENCRYPTED = -3,    /* clear frames where encryption is required */
    AEAD_ERR_UNKNOWN_KEY = -4,    /* sealed with a key we do not hold (or no longer accept) */
    AEAD_ERR_BAD_AUTH = -5,       /* tag does not match */
    AEAD_ERR_REPLAY = -6,         /* counter already seen or too old */
    AEAD_ERR_FOREIGN = -7,        /* header: bad magic */
    AEAD_ERR_BAD_VERSION = -8,    /* header: another version */
    AEAD_ERR_FOREIGN_DOMAIN = -9, /* header: another domain */
    AEAD_ERR_NOMEM = -10,         /* out of memory */
    AEAD_ERR_CRYPTO = -11,        /* libcrypto failed */
    AEAD_ERR_ARG = -12,           /* bad argument: short key, small buffer, no key */
    AEAD_ERR_SHORT_HEADER = -13,  /* seal: fewer than 4 bytes (no flags byte) */
    AEAD_ERR_COUNTER = -14        /* seal: the 64-bit counter is spent */
};

/* The metric label and the detail of a status (the reference's WireError reason and text);
 * "" for a status that is no wire error. */
const char *aead_reason(int status);
const char *aead_detail(int status);

struct evp_cipher_ctx_st;

typedef struct aead_key {
    uint8_t kid[AEAD_KID_SIZE];
    double accept_until;
    struct evp_cipher_ctx_st *ctx; /* keyed once, reused for every datagram */
} aead_key;

/* The keys of a sealer (one, encrypting) or an opener (all accepted, decrypting). Contexts
 * of keys[n..cap) are kept for reuse when the table is rebuilt. */
typedef struct aead_keys {
    aead_key *keys;
    size_t n;
    size_t cap;
    int encrypt;
} aead_keys;

/* kid = sha256(secret)[:4]. */
int aead_key_id(const uint8_t *secret, size_t len, uint8_t kid[AEAD_KID_SIZE]);

void aead_keys_init(aead_keys *t, int encrypt);
void aead_keys_clear(aead_keys *t);
/* Adds a secret (>= AEAD_MIN_KEY_BYTES) accepted until `accept_until`; a key id already
 * present keeps its first key (dict.setdefault). Returns the key's index, or a status. */
int aead_keys_add(aead_keys *t, const uint8_t *secret, size_t len, double accept_until);
/* The index of a key id, or -1. */
int aead_keys_find(const aead_keys *t, const uint8_t kid[AEAD_KID_SIZE]);
void aead_keys_free(aead_keys *t);

typedef struct aead_sealer {
    aead_keys keys; /* keys[0] seals */
    uint64_t counter;
    int encrypt;
} aead_sealer;

void aead_sealer_init(aead_sealer *s, int encrypt);
int aead_sealer_set_key(aead_sealer *s, const uint8_t *secret, size_t len);
void aead_sealer_free(aead_sealer *s);
/* What sealing `len` bytes gives (len + AEAD_OVERHEAD; 0 on overflow). */
size_t aead_sealed_size(size_t len);
/* Seals `in` into `out` (cap >= aead_sealed_size(len)). The counter goes up first, as the
 * reference's does (a datagram of fewer than 4 bytes spends one and fails). A header shorter
 * than 16 bytes gives a shorter nonce, as the reference's slicing does. */
int aead_seal(aead_sealer *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
              size_t *out_len);

typedef struct aead_window {
    uint64_t sender;
    uint64_t highest;
    uint64_t seen[AEAD_REPLAY_WINDOW / 64]; /* bit (c % 1024): counter c seen */
} aead_window;

/* Per-sender windows: a dense array and an open-addressing index into it. */
typedef struct aead_windows {
    aead_window *entries;
    uint32_t *index; /* entry + 1, 0: empty */
    size_t count;
    size_t entries_cap;
    size_t index_cap; /* a power of two, at least twice count */
    uint64_t seed;
} aead_windows;

typedef struct aead_opener {
    aead_keys keys;
    aead_windows windows;
    int require_encryption;
} aead_opener;

void aead_opener_init(aead_opener *o, int require_encryption);
void aead_opener_free(aead_opener *o);
/* The senders whose windows are held. */
size_t aead_opener_senders(const aead_opener *o);
/* Forgets every replay window. */
void aead_opener_forget(aead_opener *o);
/* What opening `len` bytes gives at most (len - AEAD_OVERHEAD, 0 when shorter). */
size_t aead_opened_size(size_t len);
/* The checks before the tag's (length, flags, encryption required, key): the index of the key
 * (>= 0), or a status. */
int aead_open_check(const aead_opener *o, const uint8_t *in, size_t len, double now);
/* Checks and opens `in` into `out` (cap >= aead_opened_size(len)): the header with flags
 * 0x01|0x02 cleared, then the frames. The checks run in the reference's order (length, flags,
 * encryption required, key, tag, replay); `*key_index` is the key that opened it. */
int aead_open(aead_opener *o, const uint8_t *in, size_t len, double now, uint8_t *out,
              size_t cap, size_t *out_len, int *key_index);

/* The node's check before opening (wire.decode_header, then the domain) for a datagram of
 * at least 16 bytes: AEAD_OK, AEAD_ERR_FOREIGN, AEAD_ERR_BAD_VERSION, AEAD_ERR_FOREIGN_DOMAIN.
 * `prefix` is the magic and version (3 bytes). Shorter datagrams pass (open refuses them). */
int aead_check_header(const uint8_t *in, size_t len, const uint8_t prefix[3], uint32_t domain);

/* Fuzzer entry: opens `data` (and, by its first byte, seals and opens it, tampered or not)
 * with openers built once on a fixed test key. Always returns 0. */
int aead_fuzz_one(const uint8_t *data, size_t len);

#endif
