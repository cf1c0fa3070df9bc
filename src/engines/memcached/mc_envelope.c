/*
 * mc_envelope.c -- key mapping, value envelope and expiry stamps of the
 * memcached engine (layout described in mc_envelope.h).
 */
#include "mc_envelope.h"

#include <string.h>

#include <openssl/evp.h>

/* Seconds memcached keeps an item past its kvi stamp. */
#define MC_SERVER_SLACK_S 2

static const unsigned char WRAP_MAGIC[4] = {'K', 'V', 'I', 1};

static int key_is_native(const unsigned char *k, size_t len)
{
    if (len > KVI_MC_MAX_NATIVE_KEY)
        return 0;
    if (len >= KVI_MC_KEY_PREFIX_LEN && memcmp(k, KVI_MC_KEY_PREFIX, KVI_MC_KEY_PREFIX_LEN) == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return 0;
    return 1;
}

size_t kvi__mc_key(const void *key, size_t key_len, char out[KVI_MC_KEY_BUF], int *mapped)
{
    return kvi__mc_key_md(key, key_len, NULL, out, mapped);
}

size_t kvi__mc_key_md(const void *key, size_t key_len, const void *sha256, char out[KVI_MC_KEY_BUF],
                      int *mapped)
{
    static const char hex[] = "0123456789abcdef";
    if (key_is_native(key, key_len)) {
        memcpy(out, key, key_len);
        out[key_len] = '\0';
        *mapped = 0;
        return key_len;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    const EVP_MD *md = sha256 != NULL ? sha256 : EVP_sha256();
    if (md == NULL || EVP_Digest(key, key_len, digest, &digest_len, md, NULL) != 1 ||
        digest_len != KVI_MC_DIGEST_LEN)
        return 0;
    memcpy(out, KVI_MC_KEY_PREFIX, KVI_MC_KEY_PREFIX_LEN);
    size_t n = KVI_MC_KEY_PREFIX_LEN;
    for (size_t i = 0; i < KVI_MC_DIGEST_LEN; i++) {
        out[n++] = hex[digest[i] >> 4];
        out[n++] = hex[digest[i] & 15u];
    }
    out[n] = '\0';
    *mapped = 1;
    return n;
}

void *kvi__mc_sha256_fetch(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    return EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    return NULL;
#endif
}

void kvi__mc_sha256_free(void *sha256)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    EVP_MD_free(sha256);
#else
    (void)sha256;
#endif
}

void kvi__mc_wrap_header(const void *key, size_t key_len, unsigned char *out)
{
    memcpy(out, WRAP_MAGIC, sizeof WRAP_MAGIC);
    out[4] = (unsigned char)(key_len >> 8);
    out[5] = (unsigned char)(key_len & 0xffu);
    memcpy(out + KVI_MC_WRAP_FIXED, key, key_len);
}

int kvi__mc_unwrap(const void *data, size_t len, const void *key, size_t key_len,
                   size_t *payload_off)
{
    const unsigned char *d = data;
    if (len < KVI_MC_WRAP_FIXED + key_len || memcmp(d, WRAP_MAGIC, sizeof WRAP_MAGIC) != 0)
        return 0;
    size_t stored_len = (size_t)d[4] << 8 | d[5];
    if (stored_len != key_len || memcmp(d + KVI_MC_WRAP_FIXED, key, key_len) != 0)
        return 0;
    *payload_off = KVI_MC_WRAP_FIXED + key_len;
    return 1;
}

uint32_t kvi__mc_stamp(int64_t now_ms, int64_t expire_s)
{
    if (expire_s <= 0)
        return 0;
    /* Rounded up to the next whole second: the key lives at least
     * expire_s from now, never less (rounding down dropped a 1-second key
     * after as little as a few ms). */
    int64_t at = now_ms / 1000 + (now_ms % 1000 != 0);
    /* Beyond 2106 the stamp cannot be written; such a lifetime (> 80
     * years from now) is kept as the largest stamp. */
    if (expire_s > (int64_t)UINT32_MAX - at)
        return UINT32_MAX;
    return (uint32_t)(at + expire_s);
}

int64_t kvi__mc_stamp_expiry(uint32_t flags)
{
    return flags >= KVI_MC_MIN_STAMP ? (int64_t)flags : 0;
}

int64_t kvi__mc_server_exptime(int64_t expiry_s, int64_t now_ms)
{
    /* memcached's clock is whole seconds of its own, set by a timer once a
     * second: at the store it may be up to 2 s behind, when it next looks
     * up to date, so an item sent with a relative exptime of n can go up to
     * 2 s before n seconds have passed.  Two seconds more keep the server
     * from dropping it before its stamp (kvi hides it at the stamp). */
    int64_t left = (expiry_s * 1000 - now_ms + 999) / 1000 + MC_SERVER_SLACK_S;
    if (left < 1 + MC_SERVER_SLACK_S)
        left = 1 + MC_SERVER_SLACK_S;
    if (left <= KVI_MC_MAX_RELATIVE)
        return left;
    if (expiry_s <= (int64_t)INT32_MAX - MC_SERVER_SLACK_S)
        return expiry_s + MC_SERVER_SLACK_S;
    return 0;
}
