/*
 * raw.h -- the raw_query slot of the redis engine: a command line split
 * into words (quoting as kvi_split_words), routed in a cluster by its first
 * key (route.h's table, else COMMAND GETKEYS), its reply read at any depth
 * (deep.h) and turned into a kvi_reply tree.
 */
#ifndef KVI_REDIS_RAW_H
#define KVI_REDIS_RAW_H

#include <hiredis/hiredis.h>

#include "kvi/engine.h"

/* The raw_query slot (engine.h).  Commands that change the connection's
 * state (MULTI, SELECT, SUBSCRIBE, ...) are KVI_E_INVALID: pooled
 * connections cannot keep it. */
kvi_status kvi__redis_raw_query(kvi_conn *c, const char *query, size_t query_len, kvi_reply **out);

/* query split into words (kvi_split_words; free with kvi_words_free) and
 * checked as the raw_query slot checks it: KVI_E_INVALID for no command or
 * a command that changes the connection's state (nothing to free then). */
kvi_status kvi__redis_raw_words(kvi_conn *c, const char *query, size_t query_len, char ***words,
                                size_t **lens, size_t *count);

/* r (freed) as the raw_query slot's reply tree in *out: KVI_OK, or
 * KVI_E_NOMEM. */
kvi_status kvi__redis_raw_reply(kvi_conn *c, redisReply *r, kvi_reply **out);

#endif /* KVI_REDIS_RAW_H */
