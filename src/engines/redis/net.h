/*
 * net.h -- connections of the redis engine: per-node pools of hiredis
 * contexts, standalone failover, the cluster slot map with MOVED/ASK/
 * TRYAGAIN/CLUSTERDOWN handling, fork detection and the one place where
 * hiredis and server errors become kvi statuses.
 *
 * Threads: every call borrows a connection of its own from a pool (or
 * opens one), so no call ever waits on another thread's network I/O; the
 * locks only guard pool lists and the slot map.
 */
#ifndef KVI_REDIS_NET_H
#define KVI_REDIS_NET_H

#include <hiredis/hiredis.h>

#include "kvi/engine.h"
#include "route.h"

/* Values of the "cluster" URL option. */
enum kvi_redis_cluster_opt {
    KVI_REDIS_CLUSTER_AUTO = 0,
    KVI_REDIS_CLUSTER_YES = 1,
    KVI_REDIS_CLUSTER_NO = 2
};

struct kvi_redis_host {
    char *host; /* NULL with a unix socket */
    uint16_t port;
};

/* What open() parsed from the URL; read-only afterwards. */
struct kvi_redis_cfg {
    char *user;     /* ACL user or NULL */
    char *password; /* NULL: no AUTH */
    long db;        /* SELECT db when > 0 */
    int cluster;    /* enum kvi_redis_cluster_opt */
    char *socket;   /* unix socket path or NULL */
    struct kvi_redis_host *hosts;
    size_t nhosts;
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    size_t max_idle;          /* idle connections kept per node */
    unsigned wait_replicas;   /* WAIT for this many replicas after writes; 0 = no */
    uint32_t wait_timeout_ms; /* the WAIT's own limit (default: timeout_ms) */
};

struct kvi_redis_state; /* per-process connection state (net.c) */
struct kvi_redis_node;  /* one server */

/* The private part of a kvi_conn (engine conn_size). */
struct kvi_redis {
    struct kvi_redis_cfg cfg;
    struct kvi_redis_state *_Atomic state;
    /* SHA1 of kvi__redis_add_script as the server computed it (SCRIPT
     * LOAD); valid once sha_state is 2. */
    char sha[41];
    _Atomic int sha_state;
};

/* One command: argc words.  slot is the cluster slot of its key or -1
 * (any master).  resend_ok says that sending it a second time after a
 * connection failed mid-call cannot change the outcome (reads, SET). */
struct kvi_redis_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
    int slot;
    int resend_ok;
    int is_write; /* changes data: followed by WAIT when cfg.wait_replicas > 0 */
};

/* Creates the connection state (and connects unless lazy).  Call once from
 * open() after cfg is filled. */
kvi_status kvi__redis_net_open(kvi_conn *c);

/* Frees every connection and state of c, also those of a parent process. */
void kvi__redis_net_close(kvi_conn *c);

/*
 * Runs one command where it belongs (standalone: the working host of the
 * failover list; cluster: the master of cmd->slot, following MOVED and
 * ASK, retrying TRYAGAIN/CLUSTERDOWN with backoff).  KVI_OK with the reply
 * in *out (free with freeReplyObject; it may be an error reply, never a
 * redirection); otherwise an error status with the detail message set.
 */
kvi_status kvi__redis_exec(kvi_conn *c, const struct kvi_redis_cmd *cmd, redisReply **out);

/* 1 when c talks to a cluster (detecting the mode first if needed; 0 on
 * failure, with *st set). */
kvi_status kvi__redis_is_cluster(kvi_conn *c, int *is_cluster);

/* The masters to visit for a whole-keyspace operation (SCAN, PING): in
 * *nodes (free with kvi_engine_free) and *count.  Standalone: the working
 * host. */
kvi_status kvi__redis_masters(kvi_conn *c, struct kvi_redis_node ***nodes, size_t *count);

/* Runs one command on one given node (no redirection handling). */
kvi_status kvi__redis_exec_on(kvi_conn *c, struct kvi_redis_node *node,
                              const struct kvi_redis_cmd *cmd, redisReply **out);

/* Sends count commands to one node in one batch on one connection and
 * reads their replies into replies[0..count) (free each with
 * freeReplyObject).  No redirection handling and no WAIT; nothing is
 * re-sent.  On error no reply is left. */
kvi_status kvi__redis_pipeline_on(kvi_conn *c, struct kvi_redis_node *node, size_t count,
                                  const struct kvi_redis_cmd *cmds, redisReply **replies);

/* "host:port" (or the socket path) of a node, for messages. */
const char *kvi__redis_node_name(const struct kvi_redis_node *node);

/*
 * Maps an error reply to a status and sets the detail message: -NOAUTH,
 * -WRONGPASS, -NOPERM and invalid-password errors are KVI_E_AUTH, -OOM is
 * KVI_E_STORE_FULL, everything else KVI_E_BACKEND with the server's text
 * (any occurrence of the password is masked).
 */
kvi_status kvi__redis_reply_error(kvi_conn *c, const redisReply *r);

/* The counter script (atomic add with TTL on creation) and its SHA1. */
extern const char kvi__redis_add_script[];

#endif /* KVI_REDIS_NET_H */
