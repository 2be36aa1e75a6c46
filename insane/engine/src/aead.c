/* aead: sealed datagrams and replay windows, the core of the engine's Sealer and Opener (see
 * aead.h; the reference is insane/protocol/security.py). Plain C11 on libcrypto. */
#include "aead.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "engine.h"

#define AES_KEY_SIZE 32
#define NONCE_SIZE 12
#define CHUNK ((size_t)1 << 30) /* EVP lengths are ints */
#define WORDS (AEAD_REPLAY_WINDOW / 64)

static const char LABEL[] = "insane-datagram-v1";

const char *aead_reason(int status)
{
    switch (status) {
    case AEAD_ERR_TOO_SHORT:
    case AEAD_ERR_NO_TAG:
        return "unauthenticated";
    case AEAD_ERR_UNENCRYPTED:
        return "unencrypted";
    case AEAD_ERR_UNKNOWN_KEY:
        return "unknown_key";
    case AEAD_ERR_BAD_AUTH:
        return "bad_auth";
    case AEAD_ERR_REPLAY:
        return "replay";
    case AEAD_ERR_FOREIGN:
        return "foreign";
    case AEAD_ERR_BAD_VERSION:
        return "bad_version";
    case AEAD_ERR_FOREIGN_DOMAIN:
        return "foreign_domain";
    default:
        return "";
    }
}

const char *aead_detail(int status)
{
    switch (status) {
    case AEAD_ERR_TOO_SHORT:
        return "too short to carry a tag";
    case AEAD_ERR_NO_TAG:
        return "no tag";
    case AEAD_ERR_UNENCRYPTED:
        return "clear frames where encryption is required";
    case AEAD_ERR_UNKNOWN_KEY:
        return "sealed with a key we do not hold";
    case AEAD_ERR_BAD_AUTH:
        return "tag does not match";
    case AEAD_ERR_REPLAY:
        return "counter already seen or too old";
    case AEAD_ERR_FOREIGN:
        return "bad magic";
    default:
        return ""; /* (bad_version's detail names the version: the caller's) */
    }
}

/* ---------------------------------------------------------------------------------- keys */

int aead_key_id(const uint8_t *secret, size_t len, uint8_t kid[AEAD_KID_SIZE])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(secret, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < AEAD_KID_SIZE) {
        ERR_clear_error();
        return AEAD_ERR_CRYPTO;
    }
    memcpy(kid, md, AEAD_KID_SIZE);
    return AEAD_OK;
}

static int derive(const uint8_t *secret, size_t len, uint8_t key[AES_KEY_SIZE])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int mdlen = 0;
    int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, LABEL, sizeof LABEL - 1) == 1 &&
             EVP_DigestUpdate(md, secret, len) == 1 && EVP_DigestFinal_ex(md, key, &mdlen) == 1 &&
             mdlen == AES_KEY_SIZE;
    EVP_MD_CTX_free(md);
    if (!ok) {
        ERR_clear_error();
        return md == NULL ? AEAD_ERR_NOMEM : AEAD_ERR_CRYPTO;
    }
    return AEAD_OK;
}

void aead_keys_init(aead_keys *t, int encrypt)
{
    t->keys = NULL;
    t->n = t->cap = 0;
    t->encrypt = encrypt ? 1 : 0;
}

void aead_keys_clear(aead_keys *t) { t->n = 0; }

int aead_keys_find(const aead_keys *t, const uint8_t kid[AEAD_KID_SIZE])
{
    for (size_t i = 0; i < t->n; i++)
        if (memcmp(t->keys[i].kid, kid, AEAD_KID_SIZE) == 0)
            return (int)i;
    return -1;
}

int aead_keys_add(aead_keys *t, const uint8_t *secret, size_t len, double accept_until)
{
    uint8_t kid[AEAD_KID_SIZE];
    uint8_t key[AES_KEY_SIZE];
    if (secret == NULL || len < AEAD_MIN_KEY_BYTES)
        return AEAD_ERR_ARG;
    int rc = aead_key_id(secret, len, kid);
    if (rc != AEAD_OK)
        return rc;
    int found = aead_keys_find(t, kid);
    if (found >= 0)
        return found;
    if (t->n >= (size_t)INT_MAX)
        return AEAD_ERR_ARG;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        if (cap > (size_t)INT_MAX || cap > SIZE_MAX / sizeof(aead_key))
            return AEAD_ERR_NOMEM;
        aead_key *keys = realloc(t->keys, cap * sizeof(aead_key));
        if (keys == NULL)
            return AEAD_ERR_NOMEM;
        for (size_t i = t->cap; i < cap; i++)
            keys[i].ctx = NULL;
        t->keys = keys;
        t->cap = cap;
    }
    aead_key *k = &t->keys[t->n];
    if (k->ctx == NULL) {
        k->ctx = EVP_CIPHER_CTX_new();
        if (k->ctx == NULL)
            return AEAD_ERR_NOMEM;
    } else if (EVP_CIPHER_CTX_reset(k->ctx) != 1) {
        ERR_clear_error();
        return AEAD_ERR_CRYPTO;
    }
    rc = derive(secret, len, key);
    if (rc == AEAD_OK &&
        EVP_CipherInit_ex(k->ctx, EVP_aes_256_gcm(), NULL, key, NULL, t->encrypt) != 1) {
        ERR_clear_error();
        rc = AEAD_ERR_CRYPTO;
    }
    OPENSSL_cleanse(key, sizeof key);
    if (rc != AEAD_OK)
        return rc;
    memcpy(k->kid, kid, AEAD_KID_SIZE);
    k->accept_until = accept_until;
    return (int)t->n++;
}

void aead_keys_free(aead_keys *t)
{
    for (size_t i = 0; i < t->cap; i++)
        EVP_CIPHER_CTX_free(t->keys[i].ctx);
    free(t->keys);
    t->keys = NULL;
    t->n = t->cap = 0;
}

/* EVP update in int-sized pieces; out NULL: additional data. */
static int update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len, int enc)
{
    while (len > 0) {
        int piece = (int)(len < CHUNK ? len : CHUNK);
        int outl = 0;
        int ok = enc ? EVP_EncryptUpdate(ctx, out, &outl, in, piece)
                     : EVP_DecryptUpdate(ctx, out, &outl, in, piece);
        if (ok != 1 || (out != NULL && outl != piece))
            return 0;
        in += piece;
        if (out != NULL)
            out += piece;
        len -= (size_t)piece;
    }
    return 1;
}

/* -------------------------------------------------------------------------------- sealer */

void aead_sealer_init(aead_sealer *s, int encrypt)
{
    aead_keys_init(&s->keys, 1);
    s->counter = 0;
    s->encrypt = encrypt ? 1 : 0;
}

int aead_sealer_set_key(aead_sealer *s, const uint8_t *secret, size_t len)
{
    aead_keys_clear(&s->keys);
    int rc = aead_keys_add(&s->keys, secret, len, 0.0);
    return rc < 0 ? rc : AEAD_OK;
}

void aead_sealer_free(aead_sealer *s) { aead_keys_free(&s->keys); }

size_t aead_sealed_size(size_t len) { return len > SIZE_MAX - AEAD_OVERHEAD ? 0 : len + AEAD_OVERHEAD; }

int aead_seal(aead_sealer *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
              size_t *out_len)
{
    size_t total = aead_sealed_size(len);
    if (s->keys.n == 0 || total == 0 || cap < total || (in == NULL && len > 0))
        return AEAD_ERR_ARG;
    if (s->counter == UINT64_MAX)
        return AEAD_ERR_COUNTER;
    uint64_t counter = ++s->counter;
    if (len < 4)
        return AEAD_ERR_SHORT_HEADER;
    const aead_key *k = &s->keys.keys[0];
    EVP_CIPHER_CTX *ctx = k->ctx;
    size_t hlen = len < AEAD_HEADER_SIZE ? len : AEAD_HEADER_SIZE;
    memcpy(out, in, hlen);
    out[3] |= (uint8_t)(AEAD_FLAG_AUTHENTICATED | (s->encrypt ? AEAD_FLAG_ENCRYPTED : 0));
    memcpy(out + hlen, k->kid, AEAD_KID_SIZE);
    engine_put_be64(out + hlen + AEAD_KID_SIZE, counter);
    /* The nonce: header[12:16] and the counter (shorter with a short header, as in the
     * reference, whose AES-GCM then takes a nonce of 8 to 11 bytes). */
    uint8_t iv[NONCE_SIZE];
    size_t ivlen = hlen > 12 ? hlen - 12 : 0;
    if (ivlen > 0)
        memcpy(iv, in + 12, ivlen);
    engine_put_be64(iv + ivlen, counter);
    ivlen += 8;
    int rc = AEAD_ERR_CRYPTO;
    if (ivlen != NONCE_SIZE &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)ivlen, NULL) != 1)
        goto done;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1)
        goto done;
    uint8_t *body = out + hlen + AEAD_PREFIX_SIZE;
    size_t flen = len - hlen;
    if (s->encrypt) {
        if (!update(ctx, NULL, out, hlen + AEAD_PREFIX_SIZE, 1) ||
            !update(ctx, body, in + hlen, flen, 1))
            goto done;
    } else {
        memcpy(body, in + hlen, flen);
        if (!update(ctx, NULL, out, hlen + AEAD_PREFIX_SIZE + flen, 1))
            goto done;
    }
    int outl = 0;
    if (EVP_EncryptFinal_ex(ctx, body + flen, &outl) != 1 || outl != 0)
        goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_SIZE, body + flen) != 1)
        goto done;
    *out_len = total;
    rc = AEAD_OK;
done:
    if (ivlen != NONCE_SIZE &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_SIZE, NULL) != 1)
        rc = AEAD_ERR_CRYPTO;
    if (rc != AEAD_OK)
        ERR_clear_error();
    return rc;
}

/* ------------------------------------------------------------------------ replay windows */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static void windows_init(aead_windows *w)
{
    w->entries = NULL;
    w->index = NULL;
    w->count = w->entries_cap = w->index_cap = 0;
    w->seed = 0;
    uint8_t seed[8];
    if (RAND_bytes(seed, sizeof seed) == 1)
        w->seed = engine_be64(seed);
    else
        ERR_clear_error();
}

static void windows_free(aead_windows *w)
{
    free(w->entries);
    free(w->index);
    w->entries = NULL;
    w->index = NULL;
    w->count = w->entries_cap = w->index_cap = 0;
}

static int windows_reindex(aead_windows *w, size_t cap)
{
    uint32_t *index = calloc(cap, sizeof *index);
    if (index == NULL)
        return AEAD_ERR_NOMEM;
    for (size_t e = 0; e < w->count; e++) {
        size_t i = (size_t)(mix(w->entries[e].sender ^ w->seed) & (cap - 1));
        while (index[i] != 0)
            i = (i + 1) & (cap - 1);
        index[i] = (uint32_t)(e + 1);
    }
    free(w->index);
    w->index = index;
    w->index_cap = cap;
    return AEAD_OK;
}

/* The window of `sender`, made (and, at AEAD_MAX_SENDERS, every other one forgotten first)
 * when there is none. */
static int windows_get(aead_windows *w, uint64_t sender, aead_window **out)
{
    size_t i = 0;
    if (w->index_cap > 0) {
        i = (size_t)(mix(sender ^ w->seed) & (w->index_cap - 1));
        for (uint32_t e; (e = w->index[i]) != 0; i = (i + 1) & (w->index_cap - 1)) {
            if (w->entries[e - 1].sender == sender) {
                *out = &w->entries[e - 1];
                return AEAD_OK;
            }
        }
    }
    if (w->count >= AEAD_MAX_SENDERS)
        windows_free(w);
    if (w->count == w->entries_cap) {
        size_t cap = w->entries_cap ? w->entries_cap * 2 : 8;
        aead_window *entries = realloc(w->entries, cap * sizeof *entries);
        if (entries == NULL)
            return AEAD_ERR_NOMEM;
        w->entries = entries;
        w->entries_cap = cap;
    }
    if ((w->count + 1) * 2 > w->index_cap) {
        int rc = windows_reindex(w, w->index_cap ? w->index_cap * 2 : 16);
        if (rc != AEAD_OK)
            return rc;
    }
    i = (size_t)(mix(sender ^ w->seed) & (w->index_cap - 1));
    while (w->index[i] != 0)
        i = (i + 1) & (w->index_cap - 1);
    aead_window *win = &w->entries[w->count];
    memset(win, 0, sizeof *win);
    win->sender = sender;
    w->index[i] = (uint32_t)(++w->count);
    *out = win;
    return AEAD_OK;
}

/* Clears the bits of n counters from position `at` on (n < the window), around the ring. */
static void clear_bits(uint64_t *seen, unsigned at, uint64_t n)
{
    while (n > 0) {
        unsigned bit = at & 63;
        unsigned take = 64 - bit;
        if (n < take)
            take = (unsigned)n;
        uint64_t mask = take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1) << bit;
        seen[at >> 6] &= ~mask;
        at = (at + take) & (AEAD_REPLAY_WINDOW - 1);
        n -= take;
    }
}

/* The reference's _ReplayWindow.check_and_mark: counter c is bit c % 1024 of a ring that
 * holds the counters highest - 1023 .. highest. */
static int check_and_mark(aead_window *win, uint64_t counter)
{
    unsigned pos = (unsigned)(counter & (AEAD_REPLAY_WINDOW - 1));
    uint64_t bit = (uint64_t)1 << (pos & 63);
    if (counter > win->highest) {
        uint64_t shift = counter - win->highest;
        if (shift >= AEAD_REPLAY_WINDOW)
            memset(win->seen, 0, sizeof win->seen);
        else
            clear_bits(win->seen, (unsigned)((win->highest + 1) & (AEAD_REPLAY_WINDOW - 1)),
                       shift);
        win->seen[pos >> 6] |= bit;
        win->highest = counter;
        return 1;
    }
    if (win->highest - counter >= AEAD_REPLAY_WINDOW || (win->seen[pos >> 6] & bit))
        return 0;
    win->seen[pos >> 6] |= bit;
    return 1;
}

/* -------------------------------------------------------------------------------- opener */

void aead_opener_init(aead_opener *o, int require_encryption)
{
    aead_keys_init(&o->keys, 0);
    windows_init(&o->windows);
    o->require_encryption = require_encryption ? 1 : 0;
}

void aead_opener_free(aead_opener *o)
{
    aead_keys_free(&o->keys);
    windows_free(&o->windows);
}

size_t aead_opener_senders(const aead_opener *o) { return o->windows.count; }

void aead_opener_forget(aead_opener *o) { windows_free(&o->windows); }

size_t aead_opened_size(size_t len) { return len < AEAD_OVERHEAD ? 0 : len - AEAD_OVERHEAD; }

int aead_open_check(const aead_opener *o, const uint8_t *in, size_t len, double now)
{
    if (in == NULL || len < AEAD_HEADER_SIZE + AEAD_OVERHEAD)
        return AEAD_ERR_TOO_SHORT;
    uint8_t flags = in[3];
    if (!(flags & AEAD_FLAG_AUTHENTICATED))
        return AEAD_ERR_NO_TAG;
    if (o->require_encryption && !(flags & AEAD_FLAG_ENCRYPTED))
        return AEAD_ERR_UNENCRYPTED;
    int k = aead_keys_find(&o->keys, in + AEAD_HEADER_SIZE);
    if (k < 0 || now > o->keys.keys[k].accept_until)
        return AEAD_ERR_UNKNOWN_KEY;
    return k;
}

int aead_open(aead_opener *o, const uint8_t *in, size_t len, double now, uint8_t *out,
              size_t cap, size_t *out_len, int *key_index)
{
    int k = aead_open_check(o, in, len, now);
    if (k < 0)
        return k;
    int encrypted = (in[3] & AEAD_FLAG_ENCRYPTED) != 0;
    size_t opened = len - AEAD_OVERHEAD;
    if (out == NULL || cap < opened)
        return AEAD_ERR_ARG;
    const size_t body_at = AEAD_HEADER_SIZE + AEAD_PREFIX_SIZE;
    const uint8_t *body = in + body_at;
    size_t flen = len - body_at - AEAD_TAG_SIZE;
    uint8_t iv[NONCE_SIZE];
    uint8_t tag[AEAD_TAG_SIZE];
    memcpy(iv, in + 12, 4);
    memcpy(iv + 4, in + AEAD_HEADER_SIZE + AEAD_KID_SIZE, 8);
    memcpy(tag, in + len - AEAD_TAG_SIZE, AEAD_TAG_SIZE);
    EVP_CIPHER_CTX *ctx = o->keys.keys[k].ctx;
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1)
        goto crypto;
    if (encrypted) {
        if (!update(ctx, NULL, in, body_at, 0) || !update(ctx, out + AEAD_HEADER_SIZE, body, flen, 0))
            goto crypto;
    } else if (!update(ctx, NULL, in, len - AEAD_TAG_SIZE, 0)) {
        goto crypto;
    }
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_SIZE, tag) != 1)
        goto crypto;
    uint8_t rest[AEAD_TAG_SIZE];
    int outl = 0;
    if (EVP_DecryptFinal_ex(ctx, rest, &outl) != 1) {
        ERR_clear_error();
        return AEAD_ERR_BAD_AUTH;
    }
    if (!encrypted)
        memcpy(out + AEAD_HEADER_SIZE, body, flen);
    aead_window *win = NULL;
    int rc = windows_get(&o->windows, engine_be64(in + 8), &win);
    if (rc != AEAD_OK)
        return rc;
    if (!check_and_mark(win, engine_be64(in + AEAD_HEADER_SIZE + AEAD_KID_SIZE)))
        return AEAD_ERR_REPLAY;
    memcpy(out, in, AEAD_HEADER_SIZE);
    out[3] &= (uint8_t) ~(AEAD_FLAG_AUTHENTICATED | AEAD_FLAG_ENCRYPTED);
    *out_len = opened;
    if (key_index != NULL)
        *key_index = k;
    return AEAD_OK;
crypto:
    ERR_clear_error();
    return AEAD_ERR_CRYPTO;
}

int aead_check_header(const uint8_t *in, size_t len, const uint8_t prefix[3], uint32_t domain)
{
    if (in == NULL || len < AEAD_HEADER_SIZE)
        return AEAD_OK;
    if (memcmp(in, prefix, 3) != 0)
        return memcmp(in, prefix, 2) != 0 ? AEAD_ERR_FOREIGN : AEAD_ERR_BAD_VERSION;
    return engine_be32(in + 4) != domain ? AEAD_ERR_FOREIGN_DOMAIN : AEAD_OK;
}

/* -------------------------------------------------------------------------------- fuzzer */

int aead_fuzz_one(const uint8_t *data, size_t len)
{
    static int ready; /* 1: built, -1: could not be */
    static aead_opener openers[2]; /* authenticate, encryption required */
    static aead_sealer sealers[2]; /* clear frames, encrypted */
    static const uint8_t prefix[3] = {'I', 'N', 2};
    if (ready == 0) {
        uint8_t key[AEAD_MIN_KEY_BYTES];
        for (size_t i = 0; i < sizeof key; i++)
            key[i] = (uint8_t)(0x5a ^ i);
        ready = 1;
        for (int i = 0; i < 2; i++) {
            aead_opener_init(&openers[i], i);
            aead_sealer_init(&sealers[i], i);
            if (aead_keys_add(&openers[i].keys, key, sizeof key, 1e300) < 0 ||
                aead_sealer_set_key(&sealers[i], key, sizeof key) != AEAD_OK)
                ready = -1;
        }
    }
    if (ready < 0 || (data == NULL && len > 0))
        return 0;
    size_t sealed_cap = aead_sealed_size(len);
    if (sealed_cap == 0)
        return 0;
    uint8_t *sealed = malloc(sealed_cap);
    uint8_t *opened = malloc(sealed_cap);
    if (sealed == NULL || opened == NULL)
        goto done;
    size_t n = 0;
    int k = 0;
    (void)aead_check_header(data, len, prefix, 7);
    for (int i = 0; i < 2; i++)
        (void)aead_open(&openers[i], data, len, 0.0, opened, sealed_cap, &n, &k);
    /* First byte: bit 0 seal the rest and open it, bit 1 encrypted, bit 2 flip one bit (at the
     * position the second byte names), bit 3 open it twice (a replay). */
    if (len >= 2 && (data[0] & 1)) {
        int enc = (data[0] >> 1) & 1;
        size_t m = 0;
        if (aead_seal(&sealers[enc], data + 2, len - 2, sealed, sealed_cap, &m) == AEAD_OK) {
            if ((data[0] & 4) && m > 0)
                sealed[(size_t)data[1] % m] ^= (uint8_t)(1u << (data[0] >> 5));
            int rounds = (data[0] & 8) ? 2 : 1;
            for (int r = 0; r < rounds; r++)
                (void)aead_open(&openers[enc], sealed, m, 0.0, opened, sealed_cap, &n, &k);
        }
    }
done:
    free(sealed);
    free(opened);
    return 0;
}
