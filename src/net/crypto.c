/* src/net/crypto.c - the edges' cryptography, from libsodium: SHA-256, HMAC-SHA-256, AEAD.
 *
 * Nothing here is hand-written: every primitive is libsodium's (Debian libsodium-dev). A build
 * without libsodium (DAGGER_HAVE_SODIUM unset) compiles stubs, and dagger__crypto_check makes
 * every `secret=` refuse to open with DAGGER_ENOSYS, so no edge silently runs unauthenticated.
 * AEAD is ChaCha20-Poly1305 (IETF): 32-byte keys, 12-byte nonces made of a per-direction record
 * counter, 16-byte tags.
 * Thread safety: every function may be called from any thread (sodium_init is idempotent).
 * SPDX-License-Identifier: MIT
 */
#include "net/net.h"

#include <string.h>

#ifdef DAGGER_HAVE_SODIUM
#include <sodium.h>

int dagger__crypto_check(char *err, size_t errcap)
{
    if (sodium_init() < 0) {
        dagger__net_fmt(err, errcap, "libsodium failed to initialise: secrets are unavailable");
        return DAGGER_EIO;
    }
    return 0;
}

void dagger__sha256(const void *data, size_t len, uint8_t out[32])
{
    crypto_hash_sha256(out, data, len);
}

void dagger__hmac_sha256(const void *key, size_t keylen, const void *const *parts,
                         const size_t *lens, int n, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    for (int i = 0; i < n; i++)
        crypto_auth_hmacsha256_update(&st, parts[i], lens[i]);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int dagger__ct_equal(const void *a, const void *b, size_t n) { return sodium_memcmp(a, b, n) == 0; }

int dagger__random(void *buf, size_t n)
{
    if (sodium_init() < 0)
        return DAGGER_EIO;
    randombytes_buf(buf, n);
    return 0;
}

static void nonce_of(unsigned char nonce[12], uint64_t counter)
{
    memset(nonce, 0, 12);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (unsigned char)(counter >> (8 * i));
}

void dagger__aead_seal(const uint8_t key[32], uint64_t counter, const void *ad, size_t adlen,
                       const void *plain, size_t len, void *out)
{
    unsigned char nonce[12];
    nonce_of(nonce, counter);
    unsigned long long clen;
    crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, plain, len, ad, adlen, NULL, nonce, key);
}

int dagger__aead_open(const uint8_t key[32], uint64_t counter, const void *ad, size_t adlen,
                      const void *cipher, size_t clen, void *out)
{
    unsigned char nonce[12];
    nonce_of(nonce, counter);
    unsigned long long plen;
    if (clen < DAGGER__AEAD_TAG)
        return DAGGER_EINVAL;
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, &plen, NULL, cipher, clen, ad, adlen,
                                                     nonce, key) == 0
               ? 0
               : DAGGER_EINVAL;
}

#else /* no libsodium: secrets are refused at open, so the stubs below are never reached */

#include <errno.h>
#include <sys/random.h>

int dagger__crypto_check(char *err, size_t errcap)
{
    dagger__net_fmt(err, errcap,
                    "this build has no libsodium, so secret= (authentication, encryption) is "
                    "unavailable; install libsodium-dev and rebuild");
    return DAGGER_ENOSYS;
}

void dagger__sha256(const void *data, size_t len, uint8_t out[32])
{
    (void)data, (void)len;
    memset(out, 0, 32);
}

void dagger__hmac_sha256(const void *key, size_t keylen, const void *const *parts,
                         const size_t *lens, int n, uint8_t out[32])
{
    (void)key, (void)keylen, (void)parts, (void)lens, (void)n;
    memset(out, 0, 32);
}

int dagger__ct_equal(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

int dagger__random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return DAGGER_EIO;
        }
        p += r, n -= (size_t)r;
    }
    return 0;
}

void dagger__aead_seal(const uint8_t key[32], uint64_t counter, const void *ad, size_t adlen,
                       const void *plain, size_t len, void *out)
{
    (void)key, (void)counter, (void)ad, (void)adlen, (void)plain, (void)len, (void)out;
}

int dagger__aead_open(const uint8_t key[32], uint64_t counter, const void *ad, size_t adlen,
                      const void *cipher, size_t clen, void *out)
{
    (void)key, (void)counter, (void)ad, (void)adlen, (void)cipher, (void)clen, (void)out;
    return DAGGER_ENOSYS;
}

#endif
