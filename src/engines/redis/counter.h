/*
 * counter.h -- the counter operations of the redis engine, run as the Lua
 * scripts of scripts.h.
 */
#ifndef KVI_REDIS_COUNTER_H
#define KVI_REDIS_COUNTER_H

#include <hiredis/hiredis.h>

#include "kvi/engine.h"

/* The engine's add slot: atomic INCRBY with the expiry set on creation,
 * in one round trip (EVALSHA, EVAL after NOSCRIPT). */
kvi_status kvi__redis_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                          int64_t expire_s, int64_t *new_value);

/* The engine's add_bounded slot (engine.h): one round trip, one Lua
 * script; KVI_OUT_OF_BOUNDS with the current value when refused. */
kvi_status kvi__redis_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                  int64_t expire_s, int64_t min, int64_t max, int64_t *value);

/* The engine's counter_fetch slot; WRONGTYPE is KVI_E_NOT_A_COUNTER. */
kvi_status kvi__redis_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out);

/* For batches (batch.c): the words of an add (bounded: add_bounded) as
 * EVALSHA when allowed and the script's SHA is known, else EVAL of its text, in
 * argv/lens (8 entries; the numbers are written into text); returns argc.
 * A NOSCRIPT reply means it did not run. */
int kvi__redis_counter_argv(kvi_conn *c, int bounded, int allow_sha, const void *key,
                            size_t key_len,
                            int64_t delta, int64_t expire_s, int64_t min, int64_t max,
                            char text[4][24], const char *argv[8], size_t lens[8]);

/* The status and value of a counter script's reply r (freed), as the add
 * and add_bounded slots give them. */
kvi_status kvi__redis_counter_reply(kvi_conn *c, int bounded, redisReply *r, int64_t *value);

/* The status and value of counter_fetch from the reply r (freed) of
 * GET key. */
kvi_status kvi__redis_counter_get_reply(kvi_conn *c, redisReply *r, int64_t *out);

#endif /* KVI_REDIS_COUNTER_H */
