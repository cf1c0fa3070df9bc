/*
 * nearcache.h -- the redis engine's near cache (URL option client_cache=N):
 * a per-process copy of recently fetched values, served without a round
 * trip and kept true by the server through Redis client-side caching
 * (CLIENT TRACKING, Redis >= 6).  docs/engines/redis.md ("Near cache") has
 * the contract and the argument why a value is never served after its
 * invalidation was received.
 *
 * How: one invalidation connection per process, subscribed to
 * __redis__:invalidate (RESP2 pub/sub: hiredis 0.14 has no push type); the
 * pooled connection that runs a cached fetch's GET has CLIENT TRACKING on
 * REDIRECT <its client id>, so the server tells that connection about every
 * later change of a key we read.  The connection is drained without
 * blocking before every hit and after every GET reply, before its value is
 * kept.  Losing the connection (or its tracking) flushes everything and
 * bypasses the cache until a new subscription stands.
 *
 * Layer: above dispatch.h (it reads the per-process state through it);
 * the commands (values.c, counter.c, raw.c, scan.c, batch.c) call the hooks
 * below, redis.c's close frees it.  Standalone, failover list and
 * Sentinel; a Redis Cluster is refused.  Thread-safe: one mutex per
 * process guards the table and the invalidation connection, whose reads
 * under it never block.
 */
#ifndef KVI_REDIS_NEARCACHE_H
#define KVI_REDIS_NEARCACHE_H

#include "state.h"

/* Most entries client_cache= may ask for. */
#define KVI_REDIS_NC_MAX_ENTRIES 1000000

struct kvi_redis_nc; /* nearcache.c */

/*
 * The fetch slot's near-cache path.  Returns 1 when it answered (the
 * status in *st; *out filled on KVI_OK), 0 when the caller must fetch the
 * usual way (no client_cache, no subscription yet or any more, mode not
 * known yet).  A Redis Cluster is *st = KVI_E_INVALID.
 */
int kvi__redis_nc_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out,
                        kvi_status *st);

/* After a write of key through this connection (any outcome: a write that
 * failed may have been applied): drops the key's entry and keeps a fetch of
 * it under way from keeping what it read.  No-op without client_cache. */
void kvi__redis_nc_drop(kvi_conn *c, const void *key, size_t key_len);

/* After a write whose keys are not known (raw query, remove by glob):
 * drops every entry. */
void kvi__redis_nc_drop_all(kvi_conn *c);

/* After a fetch with client_cache that found its key without the near
 * cache's help (it was bypassed): counted in the stats' hits. */
void kvi__redis_nc_found(kvi_conn *c);

/* The stats slot, with client_cache only (has_content): entries, bytes,
 * expired, evicted of this process's near cache; hits = this process's
 * fetches that found their key, near_hits = those it answered itself. */
kvi_status kvi__redis_nc_stats(kvi_conn *c, kvi_stats *out);

/* Frees the near cache of every state of c (this process's, and a parent
 * process's after fork: its mutex is not touched, its socket closed
 * without a word).  close calls it before kvi__redis_net_close frees the
 * states. */
void kvi__redis_nc_close(kvi_conn *c);

#endif /* KVI_REDIS_NEARCACHE_H */
