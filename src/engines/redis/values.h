/*
 * values.h -- the single-key commands of the redis engine (the store,
 * store_nx, fetch, remove and ttl slots of engine.h), each one command
 * routed by its key through dispatch.h.
 */
#ifndef KVI_REDIS_VALUES_H
#define KVI_REDIS_VALUES_H

#include <hiredis/hiredis.h>

#include "kvi/engine.h"

/* The store slot: SET key val [EX expire_s] (without EX, SET also removes
 * an earlier TTL). */
kvi_status kvi__redis_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s);

/* The store_nx slot: SET key val NX [EX expire_s]; KVI_KEY_EXISTS when the
 * key exists. */
kvi_status kvi__redis_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                               size_t val_len, int64_t expire_s);

/* The fetch slot: GET key. */
kvi_status kvi__redis_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out);

/* The remove slot: DEL key; KVI_NOT_FOUND when there was none. */
kvi_status kvi__redis_remove(kvi_conn *c, const void *key, size_t key_len);

/* The ttl slot: PTTL key in whole seconds, rounded down (-1: no expiry). */
kvi_status kvi__redis_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s);

/* GET key: KVI_OK with the string reply in *out (caller frees it),
 * KVI_NOT_FOUND for nil; an error reply comes back as KVI_OK with *err set
 * to it (caller frees it) when err is not NULL, else as its status. */
kvi_status kvi__redis_get_string(kvi_conn *c, const void *key, size_t key_len, redisReply **out,
                                 redisReply **err);

#endif /* KVI_REDIS_VALUES_H */
