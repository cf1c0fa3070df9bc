/*
 * mc_envelope.h -- how kvi keys, values and expiry times are laid out in
 * memcached (pure functions, no I/O; the design is in
 * docs/engines/memcached.md).
 *
 *  - Keys: a kvi key of 1..250 printable non-space ASCII bytes (0x21..0x7e)
 *    that does not start with KVI_MC_KEY_PREFIX is used as it is, so other
 *    memcached clients can read it.  Every other key becomes
 *    KVI_MC_KEY_PREFIX + the lowercase hex SHA-256 of the key ("mapped";
 *    the digest comes from OpenSSL's libcrypto).
 *  - Values of mapped keys are wrapped: magic "KVI\1", the key's length as
 *    2 bytes big-endian, the key itself, then the value bytes.  A fetch
 *    checks the key, so a digest collision can never return another key's
 *    value.  Values of unmapped keys are stored as they are.
 *  - Expiry: an item's 32-bit memcached flags hold its absolute expiry time
 *    (Unix seconds) or 0 for none, so a counter update (CAS rewrite) can
 *    keep the remaining lifetime and ttl() can answer.  Flags below
 *    KVI_MC_MIN_STAMP were not written by kvi and mean "no known expiry".
 */
#ifndef KVI_MC_ENVELOPE_H
#define KVI_MC_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define KVI_MC_MAX_NATIVE_KEY 250u
#define KVI_MC_KEY_PREFIX "~kvi:"
#define KVI_MC_KEY_PREFIX_LEN 5u
/* Size of a buffer that holds any memcached key made by kvi__mc_key(). */
#define KVI_MC_KEY_BUF (KVI_MC_MAX_NATIVE_KEY + 1u)
/* Bytes of the envelope before the key in a mapped key's value. */
#define KVI_MC_WRAP_FIXED 6u
/* Smallest flags value taken as an expiry stamp (2004-01-10). */
#define KVI_MC_MIN_STAMP (UINT32_C(1) << 30)
/* Memcached takes exptime values up to this many seconds as relative. */
#define KVI_MC_MAX_RELATIVE 2592000

/* Bytes of the SHA-256 digest of a mapped key (OpenSSL libcrypto). */
#define KVI_MC_DIGEST_LEN 32u

/* Writes the memcached key of kvi key (key_len 1..1024) into out, NUL
 * terminated, and returns its length (1..250).  *mapped is set to 1 when
 * the key was replaced by its digest, 0 when it is used as it is.  Returns
 * 0 when libcrypto could not compute the digest (no SHA-256 provider).
 * Thread-safe. */
size_t kvi__mc_key(const void *key, size_t key_len, char out[KVI_MC_KEY_BUF], int *mapped);

/* The same with a SHA-256 from kvi__mc_sha256_fetch() (NULL: libcrypto's
 * EVP_sha256(), which OpenSSL 3 looks up again on every digest, about 0.9 us
 * more per call). */
size_t kvi__mc_key_md(const void *key, size_t key_len, const void *sha256, char out[KVI_MC_KEY_BUF],
                      int *mapped);

/* libcrypto's SHA-256 fetched once (an EVP_MD, NULL when it cannot be had:
 * kvi__mc_key_md then falls back to EVP_sha256()); free with
 * kvi__mc_sha256_free() (NULL is fine) while libcrypto is still up. */
void *kvi__mc_sha256_fetch(void);
void kvi__mc_sha256_free(void *sha256);

/* Writes the envelope header of a mapped key's value (KVI_MC_WRAP_FIXED +
 * key_len bytes) into out. */
void kvi__mc_wrap_header(const void *key, size_t key_len, unsigned char *out);

/* Checks that data (len bytes) is an envelope for this key; returns 1 and
 * sets *payload_off to where the value starts, 0 when it is not (a foreign
 * item or, in theory, a digest collision). */
int kvi__mc_unwrap(const void *data, size_t len, const void *key, size_t key_len,
                   size_t *payload_off);

/* Flags to store for an item written at now_ms (Unix ms) with lifetime
 * expire_s (0 = never expires -> 0): the expiry rounded up to a whole
 * second, so the item lives at least expire_s. */
uint32_t kvi__mc_stamp(int64_t now_ms, int64_t expire_s);

/* Absolute expiry (Unix seconds) recorded in flags, 0 when none is known. */
int64_t kvi__mc_stamp_expiry(uint32_t flags);

/* Exptime to send to memcached at now_ms for an item that must live until
 * expiry_s: two seconds more than the time left (memcached's clock, whole
 * seconds set by a once-a-second timer, may drop an item up to 2 s early), as
 * relative seconds when memcached takes them so, else as the absolute time
 * when it fits memcached's signed 32-bit clock, else 0 (the server keeps it;
 * kvi hides it once expiry_s has passed).  Never 0 for a due item. */
int64_t kvi__mc_server_exptime(int64_t expiry_s, int64_t now_ms);

#endif /* KVI_MC_ENVELOPE_H */
