/*
 * redis.h -- the redis engine's private types: the parsed URL (cfg), the
 * per-connection private part and one command to run.  Types only; each
 * concern has its own header:
 *
 *   error.h     server error replies -> kvi statuses (lowest layer)
 *   net.h       byte streams: TCP, unix socket, TLS (OpenSSL) behind one ops struct
 *   conn.h      one connection as a non-blocking state machine (connect, TLS,
 *               AUTH/SELECT, requests, replies via hiredis's public reader)
 *   scripts.h   every Lua script: texts, SHAs, SCRIPT LOAD, EVALSHA/EVAL words
 *   transport.h the engine's settings on a connection, scripts, ASKING, WAIT
 *   deep.h      RESP2 reader of raw replies (any depth up to 64)
 *   pool.h      nodes (one server each) and their idle connections
 *   state.h     the per-process state (fork), the node registry
 *   slotmap.h   the Redis Cluster slot map
 *   sentinel.h  the master through Redis Sentinel, the +switch-master listener
 *   dispatch.h  routing: failover list, MOVED/ASK/TRYAGAIN/CLUSTERDOWN
 *   nearcache.h the near cache (client_cache=N): CLIENT TRACKING, beside dispatch
 *   counter.h   the counter operations (run as scripts.h's scripts)
 *   route.h     pure helpers (key slots, key positions, globs)
 *   batch.h     the batch slot: ops pipelined per server (beside redis.c, on top)
 *
 * Each layer calls only the layers listed above it.
 */
#ifndef KVI_REDIS_H
#define KVI_REDIS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kvi/engine.h"
#include "state.h"

/* Values of the "cluster" URL option. */
enum kvi_redis_cluster_opt {
    KVI_REDIS_CLUSTER_AUTO = 0,
    KVI_REDIS_CLUSTER_YES = 1,
    KVI_REDIS_CLUSTER_NO = 2
};

/* What a connection talks to, once known (struct kvi_redis.mode). */
enum kvi_redis_mode {
    KVI_REDIS_MODE_UNKNOWN = 0,
    KVI_REDIS_MODE_STANDALONE = 1,
    KVI_REDIS_MODE_CLUSTER = 2
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
    size_t max_idle;             /* idle connections kept per node */
    unsigned wait_replicas;      /* WAIT for this many replicas after writes; 0 = no */
    uint32_t wait_timeout_ms;    /* the WAIT's own limit (default: timeout_ms) */
    kvi_breaker_options breaker; /* per node: down_after, down_for */
    struct kvi_redis_tls *tls;   /* tls=yes: shared by every connection; NULL = plain */
    char *sentinel;              /* master name: hosts are sentinels; NULL = none */
    char *sentinel_user;         /* the sentinels' own credentials (NULL: no AUTH) */
    char *sentinel_password;
    size_t client_cache;           /* near cache: entries per process; 0 = off */
    size_t client_cache_max_value; /* longest value it keeps */
};

/* The private part of a kvi_conn (engine conn_size). */
struct kvi_redis {
    struct kvi_redis_cfg cfg;
    struct kvi_redis_node_cfg node_cfg; /* what every node gets, built from cfg by open() */
    struct kvi_redis_state *_Atomic state;
    _Atomic int mode; /* enum kvi_redis_mode */
    struct kvi_redis_scripts scripts; /* the Lua scripts and their SHAs (scripts.h) */
};

/* The private part of c. */
static inline struct kvi_redis *kvi__redis_priv(kvi_conn *c)
{
    return kvi_conn_priv(c);
}

#endif /* KVI_REDIS_H */
