/*
 * priv.h -- the redis engine's private types (as src/core/types.h is the
 * core's): the settings parsed from the URL and the private part of a
 * kvi_conn.  Types only.  The engine's files, from the ground up; each
 * calls only files listed above it:
 *
 *   error.h     server error replies -> kvi statuses
 *   route.h     pure helpers: key slots, key positions, globs
 *   net.h       byte streams: TCP, unix socket, TLS (OpenSSL) behind one ops struct
 *   resolve.h   host names resolved once, their addresses kept
 *   deep.h      RESP2 reader of raw replies (any depth up to 64)
 *   conn.h      one connection as a non-blocking state machine (connect, TLS,
 *               AUTH/SELECT, requests, replies via hiredis's public reader)
 *               -- net, resolve and conn know nothing of the engine --
 *   scripts.h   every Lua script: texts, SHAs, SCRIPT LOAD, EVALSHA/EVAL words
 *   transport.h the node settings (struct kvi_redis_node_cfg, a value), a
 *               connection's set-up and round trips (ASKING, WAIT)
 *   pool.h      nodes (a server each, with a copy of the settings and a
 *               breaker), their idle connections, calls on one node
 *   state.h     the per-process state: the node registry, seeds, slot table
 *   slotmap.h   the Redis Cluster slot map (a key's slot -> its master)
 *   sentinel.h  the master through Redis Sentinel, the +switch-master listener
 *   priv.h      (this file)
 *   dispatch.h  routing: failover list, Sentinel, cluster (the slot from the
 *               command's key; MOVED/ASK/TRYAGAIN/CLUSTERDOWN); knows no command
 *   nearcache.h the near cache (client_cache=N): CLIENT TRACKING; closed by redis.c
 *   values.h    the commands: SET/GET/DEL/PTTL (store, fetch, remove, ttl)
 *   counter.h   add, add_bounded, counter_fetch (run as scripts.h's scripts)
 *   raw.h       raw queries
 *   scan.h      keys and remove_chunk by glob (SCAN), ping: every master
 *   batch.h     the batch slot: ops pipelined per server
 *   redis.c     URL options, open/close, the engine table (on top)
 */
#ifndef KVI_REDIS_PRIV_H
#define KVI_REDIS_PRIV_H

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

/* What open() parsed from the URL besides the node settings (struct
 * kvi_redis.node_cfg, which points to the strings and TLS settings owned
 * here): what routing and the near cache read.  Read-only after open(). */
struct kvi_redis_cfg {
    char *user;     /* ACL user or NULL */
    char *password; /* NULL: no AUTH */
    int cluster;    /* enum kvi_redis_cluster_opt */
    char *socket;   /* unix socket path or NULL */
    struct kvi_redis_host *hosts;
    size_t nhosts;
    struct kvi_redis_tls *tls; /* tls=yes: shared by every connection; NULL = plain */
    char *sentinel;            /* master name: hosts are sentinels; NULL = none */
    char *sentinel_user;       /* the sentinels' own credentials (NULL: no AUTH) */
    char *sentinel_password;
    size_t client_cache;           /* near cache: entries per process; 0 = off */
    size_t client_cache_max_value; /* longest value it keeps */
};

/* The private part of a kvi_conn (engine conn_size). */
struct kvi_redis {
    struct kvi_redis_cfg cfg;
    struct kvi_redis_node_cfg node_cfg; /* what every node gets (timeouts, db, WAIT, ...) */
    struct kvi_redis_state *_Atomic state;
    _Atomic int mode;                 /* enum kvi_redis_mode */
    struct kvi_redis_scripts scripts; /* the Lua scripts and their SHAs (scripts.h) */
    struct kvi_redis_names *names;    /* host addresses found once (resolve.h) */
};

/* The private part of c. */
static inline struct kvi_redis *kvi__redis_priv(kvi_conn *c)
{
    return kvi_conn_priv(c);
}

#endif /* KVI_REDIS_PRIV_H */
