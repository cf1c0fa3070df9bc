/*
 * deep.h -- a RESP2 reply reader for raw queries whose replies nest deeper
 * than hiredis 0.14's reader can (7 levels; COMMAND DOCS needs more).  It
 * builds the same redisReply trees (malloc'ed as hiredis 0.14 does, so
 * freeReplyObject frees them), up to KVI_REDIS_DEEP_MAX levels.  Pure
 * parsing: the caller (transport.c) reads the bytes.
 */
#ifndef KVI_REDIS_DEEP_H
#define KVI_REDIS_DEEP_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* Deepest nesting of arrays a raw reply may have. */
#define KVI_REDIS_DEEP_MAX 64

struct kvi_redis_deep;

/* A reader for one reply; NULL when out of memory. */
struct kvi_redis_deep *kvi__redis_deep_new(void);

/* Frees the reader and any partly built reply. */
void kvi__redis_deep_free(struct kvi_redis_deep *d);

/*
 * Feeds len bytes (0: parses what earlier feeds left after a reply).  1: the reply is complete, in *out (caller frees it with
 * freeReplyObject); 0: more bytes are needed; -1: the bytes are not a valid
 * reply, nest deeper than KVI_REDIS_DEEP_MAX, announce a string longer than
 * max_str or out of memory -- err (errlen bytes) says which.
 */
int kvi__redis_deep_feed(struct kvi_redis_deep *d, const char *data, size_t len, size_t max_str,
                         redisReply **out, char *err, size_t errlen);

#endif /* KVI_REDIS_DEEP_H */
