/*
 * transport.h -- the redis engine's use of one connection (conn.h): the
 * connection settings taken from the URL (credentials, database,
 * timeouts, TLS) for one server, the scripts loaded on a new connection,
 * and request/reply round trips bounded by the call's deadline, with ASKING
 * and WAIT.  Turns a connection's failure into the call's status and
 * detail message.  Knows servers only by their address; pools and routing
 * live above (pool.h, dispatch.h).
 */
#ifndef KVI_REDIS_TRANSPORT_H
#define KVI_REDIS_TRANSPORT_H

#include <hiredis/hiredis.h>

#include "conn.h"
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

/* Who a connection talks to: a data node (with or without SELECT) or a
 * sentinel (its own credentials, no database). */
enum kvi_redis_role { KVI_REDIS_ROLE_DATA = 0, KVI_REDIS_ROLE_DATA_NODB, KVI_REDIS_ROLE_SENTINEL };

/* The settings of a connection to a for c (every node, seed or learned,
 * gets the same TLS, credentials and timeouts; sentinels their own
 * credentials). */
void kvi__redis_conn_cfg(kvi_conn *c, const struct kvi_redis_addr *a,
                         struct kvi_redis_tls_cache *tc, int role, struct kvi_redis_conn_cfg *out);

/*
 * Opens conn to a within connect_timeout, with AUTH and SELECT as
 * kvi__redis_conn_cfg() says for role, then SCRIPT LOAD of every script of the
 * connection (when load_scripts; *scripts_loaded becomes 1 once all were
 * loaded).  KVI_OK with conn ready (release with kvi__redis_conn_close);
 * otherwise an error status with the detail message set and conn closed.
 */
kvi_status kvi__redis_connect(kvi_conn *c, const struct kvi_redis_addr *a,
                              struct kvi_redis_tls_cache *tc, int role, int load_scripts,
                              int *scripts_loaded, struct kvi_redis_conn *conn);

/*
 * Writes out what was appended to conn and reads one reply, all before the
 * deadline (monotonic ms, 0 = none): a server that trickles a byte at a
 * time cannot stretch a call past it.  KVI_OK with the reply in *out (free
 * with freeReplyObject).  A failed connection must not be used again.
 */
kvi_status kvi__redis_get_reply(kvi_conn *c, struct kvi_redis_conn *conn, int64_t deadline,
                                redisReply **out);

/* Appends one request to conn; KVI_E_NOMEM when out of memory. */
kvi_status kvi__redis_append(kvi_conn *c, struct kvi_redis_conn *conn,
                             const struct kvi_redis_cmd *cmd);

/*
 * One request on conn and its reply (KVI_OK with *out, which may be an
 * error reply): preceded by ASKING when asking, followed in the same round
 * trip by WAIT when the command writes and cfg.wait_replicas > 0 (a write
 * that too few replicas confirmed is KVI_E_TIMEOUT).  *answered becomes 1
 * once the server has replied at all (a WAIT shortfall is not a silent
 * server).
 */
kvi_status kvi__redis_roundtrip(kvi_conn *c, struct kvi_redis_conn *conn,
                                const struct kvi_redis_cmd *cmd, int asking, int *answered,
                                redisReply **out);

#endif /* KVI_REDIS_TRANSPORT_H */
