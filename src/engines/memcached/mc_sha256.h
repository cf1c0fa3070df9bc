/*
 * mc_sha256.h -- SHA-256 for the memcached module's key mapping.
 */
#ifndef KVI_MC_SHA256_H
#define KVI_MC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define KVI_MC_SHA256_LEN 32u

/* Writes the SHA-256 digest of len bytes at data into out.  Pure function,
 * thread-safe; data may be NULL when len is 0. */
void kvi__mc_sha256(const void *data, size_t len, unsigned char out[KVI_MC_SHA256_LEN]);

#endif /* KVI_MC_SHA256_H */
