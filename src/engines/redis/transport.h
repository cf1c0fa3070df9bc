/*
 * transport.h -- one hiredis context of the redis engine: connecting with
 * the connect timeout, the set-up round trip (AUTH, SELECT, SCRIPT LOAD),
 * and request/reply I/O bounded by a deadline.  Knows servers only by
 * their address; pools and routing live above (pool.h, dispatch.h).
 */
#ifndef KVI_REDIS_TRANSPORT_H
#define KVI_REDIS_TRANSPORT_H

#include <hiredis/hiredis.h>

#include "redis.h"

/* Where a server listens. */
struct kvi_redis_addr {
    char *host; /* NULL for a unix socket */
    char *path; /* unix socket path or NULL */
    uint16_t port;
    char *name; /* "host:port", "[v6]:port" or the path, for messages */
};

/* The monotonic time ms from now, or 0 (= no deadline) when ms is 0. */
int64_t kvi__redis_deadline_after(uint32_t ms);

/*
 * Opens a context to a and sends, in one round trip, AUTH (when the URL
 * has credentials), SELECT (when select_db and the URL names a database
 * > 0) and SCRIPT LOAD of every script of the connection (when
 * load_scripts; *scripts_loaded becomes 1 once all were loaded).  KVI_OK
 * with the context in *out (free with redisFree); otherwise an error
 * status with the detail message set and nothing left open.
 */
kvi_status kvi__redis_connect(kvi_conn *c, const struct kvi_redis_addr *a, int select_db,
                              int load_scripts, int *scripts_loaded, redisContext **out);

/*
 * Writes out what was appended to ctx and reads one reply, all before the
 * deadline (monotonic ms, 0 = none): a server that trickles a byte at a
 * time cannot stretch a call past it.  KVI_OK with the reply in *out (free
 * with freeReplyObject).  A failed context must not be used again.
 */
kvi_status kvi__redis_get_reply(kvi_conn *c, const struct kvi_redis_addr *a, redisContext *ctx,
                                int64_t deadline, int connecting, void **out);

/*
 * One request on ctx and its reply (KVI_OK with *out, which may be an
 * error reply): preceded by ASKING when asking, followed in the same round
 * trip by WAIT when the command writes and cfg.wait_replicas > 0 (a write
 * that too few replicas confirmed is KVI_E_TIMEOUT).  *answered becomes 1
 * once the server has replied at all (a WAIT shortfall is not a silent
 * server).
 */
kvi_status kvi__redis_roundtrip(kvi_conn *c, const struct kvi_redis_addr *a, redisContext *ctx,
                                const struct kvi_redis_cmd *cmd, int asking, int *answered,
                                redisReply **out);

#endif /* KVI_REDIS_TRANSPORT_H */
