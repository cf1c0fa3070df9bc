/*
 * transport.h -- the redis engine's use of one connection (conn.h): the
 * settings every node gets (struct kvi_redis_node_cfg, a value built once
 * by redis.c: credentials, database, timeouts, TLS, WAIT, breaker,
 * scripts), the connection settings they give one server, the scripts
 * loaded on a new connection, and request/reply round trips bounded by the
 * call's deadline, with ASKING and WAIT.  Turns a connection's failure into
 * the call's status and detail message.  Knows servers only by their
 * address; pools and routing live above (pool.h, dispatch.h).
 */
#ifndef KVI_REDIS_TRANSPORT_H
#define KVI_REDIS_TRANSPORT_H

#include <hiredis/hiredis.h>

#include "conn.h"
#include "scripts.h"

/* The settings of every node of a kvi_conn (seeds, nodes learned from the
 * cluster, masters named by sentinels, the sentinels themselves): built
 * once from the URL by redis.c's open and copied into each node.  The
 * strings, TLS settings and scripts it points to live as long as the
 * kvi_conn. */
struct kvi_redis_node_cfg {
    const char *user;          /* data nodes' ACL user or NULL */
    const char *password;      /* data nodes' password; NULL: no AUTH */
    long db;                   /* SELECT db when > 0 */
    const char *sentinel_user; /* the sentinels' own credentials (NULL: no AUTH) */
    const char *sentinel_password;
    const struct kvi_redis_tls *tls; /* NULL = plain */
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    size_t max_idle;                   /* idle connections kept per node */
    unsigned wait_replicas;            /* WAIT for this many replicas after writes; 0 = no */
    uint32_t wait_timeout_ms;          /* the WAIT's own limit */
    kvi_breaker_options breaker;       /* per node: down_after, down_for */
    struct kvi_redis_scripts *scripts; /* loaded on each new data connection; NULL = none */
    struct kvi_redis_names *names;     /* host addresses found once (resolve.h); NULL = none */
};

/* One command: argc words.  key (key_len bytes) is the key that routes it
 * in a cluster (dispatch.c computes its slot once), NULL for a command
 * that any master may run.  resend_ok says that sending it a second time
 * after a connection failed mid-call cannot change the outcome (reads,
 * SET). */
struct kvi_redis_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
    const void *key;
    size_t key_len;
    int resend_ok;
    int is_write; /* changes data: followed by WAIT when wait_replicas > 0 */
    int deep;     /* read the reply with deep.c (raw queries: any depth to 64) */
};

/* Where a server listens. */
struct kvi_redis_addr {
    char *host; /* NULL for a unix socket */
    char *path; /* unix socket path or NULL */
    uint16_t port;
    char *name; /* "host:port", "[v6]:port" or the path, for messages */
};

/* The monotonic time ms from now, or 0 (= no deadline) when ms is 0. */
int64_t kvi__redis_deadline_after(uint32_t ms);

/* Who a connection talks to: a data node (AUTH, SELECT) or a sentinel
 * (its own credentials, no database). */
enum kvi_redis_role { KVI_REDIS_ROLE_DATA = 0, KVI_REDIS_ROLE_SENTINEL };

/* The settings of a connection to a under nc (every node, seed or learned,
 * gets the same TLS, credentials and timeouts; sentinels their own
 * credentials).  Cluster nodes need no role of their own: a cluster only
 * has database 0, and a SELECT of another fails the connection before the
 * engine can see a cluster. */
void kvi__redis_conn_cfg(const struct kvi_redis_node_cfg *nc, const struct kvi_redis_addr *a,
                         struct kvi_redis_tls_cache *tc, int role, struct kvi_redis_conn_cfg *out);

/*
 * Opens conn to a within nc's connect_timeout, with AUTH and SELECT as
 * kvi__redis_conn_cfg() says for role, then SCRIPT LOAD of nc's scripts
 * (when load_scripts; *scripts_loaded becomes 1 once all were loaded).
 * KVI_OK with conn ready (release with kvi__redis_conn_close); otherwise an
 * error status with the detail message set (through c) and conn closed.
 */
kvi_status kvi__redis_connect(kvi_conn *c, const struct kvi_redis_node_cfg *nc,
                              const struct kvi_redis_addr *a, struct kvi_redis_tls_cache *tc,
                              int role, int load_scripts, int *scripts_loaded,
                              struct kvi_redis_conn *conn);

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
 * error reply) within nc's timeout: preceded by ASKING when asking,
 * followed in the same round trip by WAIT when the command writes and
 * nc->wait_replicas > 0 (a write that too few replicas confirmed is
 * KVI_E_TIMEOUT).  *answered becomes 1 once the server has replied at all
 * (a WAIT shortfall is not a silent server).
 */
kvi_status kvi__redis_roundtrip(kvi_conn *c, const struct kvi_redis_node_cfg *nc,
                                struct kvi_redis_conn *conn, const struct kvi_redis_cmd *cmd,
                                int asking, int *answered, redisReply **out);

#endif /* KVI_REDIS_TRANSPORT_H */
