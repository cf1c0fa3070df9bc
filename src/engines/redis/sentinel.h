/*
 * sentinel.h -- finding the master through Redis Sentinel (sentinel=NAME):
 * the URL's hosts are sentinels, asked in turn (the one that answered last
 * first) for the master's address, which is then checked with ROLE.
 * Routing layer: calls the pool and the state, never dispatch.
 */
#ifndef KVI_REDIS_SENTINEL_H
#define KVI_REDIS_SENTINEL_H

#include "state.h"

/*
 * The master the sentinels name for name (the sentinel option; it must
 * outlive st) in *out: the one found before, or
 * (none yet, or forgotten) asks the sentinels in turn, each within
 * connect_timeout and timeout, and checks that the server they name says
 * ROLE master.  Errors: KVI_E_CONNECT / KVI_E_TIMEOUT when no sentinel
 * answered, KVI_E_BACKEND when the sentinels do not know the name or name a
 * server that is not (yet) a master, KVI_E_AUTH for refused credentials.
 */
kvi_status kvi__redis_sentinel_master(kvi_conn *c, struct kvi_redis_state *st, const char *name,
                                      struct kvi_redis_node **out);

/* Forgets master m (after a connection error, -READONLY or -LOADING): the
 * next call asks the sentinels again.  No-op when another thread already
 * did. */
void kvi__redis_sentinel_forget(struct kvi_redis_state *st, struct kvi_redis_node *m);

/*
 * The +switch-master listener: a thread per process and connection that
 * subscribes to +switch-master on one sentinel (the next one when that
 * fails) and installs the new master the moment a failover ends, without
 * waiting for an error.  Started by the first kvi__redis_sentinel_master()
 * that finds a master, or by kvi__redis_sentinel_watch() (the non-blocking
 * lookup's: starting the thread does no I/O in the caller); stopped
 * (joined) by kvi__redis_sentinel_watch_stop(), which close calls before
 * freeing the state.
 */
void kvi__redis_sentinel_watch(kvi_conn *c, struct kvi_redis_state *st, const char *name);
void kvi__redis_sentinel_watch_stop(kvi_conn *c, struct kvi_redis_state *st);

#endif /* KVI_REDIS_SENTINEL_H */
