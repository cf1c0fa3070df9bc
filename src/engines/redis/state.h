/*
 * state.h -- the per-process connection state of a redis kvi_conn: every
 * node known (the registry), the URL's hosts as seeds (standalone: the
 * failover list) and the cluster slot table that slotmap.c fills.
 *
 * Layout:
 *   struct kvi_redis (per kvi_conn, immutable cfg)
 *     -> state (per process: rebuilt in a child after fork() by dispatch.c)
 *          nodes: every server known, never freed before close
 *          seeds: the URL's hosts (with sentinel=: the sentinels)
 *          slots: cluster slot -> master node, under the rwlock
 */
#ifndef KVI_REDIS_STATE_H
#define KVI_REDIS_STATE_H

#include <sys/types.h>

#include "pool.h"

struct kvi_redis_watch; /* sentinel.c */
struct kvi_redis_nc;    /* nearcache.c */

/* A host of the URL. */
struct kvi_redis_host {
    char *host; /* NULL with a unix socket */
    uint16_t port;
};

/* The servers a state starts from: the URL's hosts (failover list,
 * cluster seeds, or with sentinel= the sentinels) or its unix socket. */
struct kvi_redis_seeds {
    const struct kvi_redis_host *hosts;
    size_t nhosts;
    const char *socket; /* a unix socket instead of the hosts, or NULL */
    int sentinels;      /* the hosts are sentinels */
};

struct kvi_redis_state {
    pid_t pid;                          /* the process it belongs to (checked when freed) */
    unsigned fork_gen;                  /* kvi__redis_fork_gen() when it was made */
    struct kvi_redis_node_cfg node_cfg; /* what every node of it gets */
    pthread_rwlock_t lock;              /* nodes list and slots */
    struct kvi_redis_node *nodes;
    struct kvi_redis_node **seeds;
    size_t nseeds;
    atomic_size_t current;         /* standalone: seed that worked last */
    struct kvi_redis_node **slots; /* KVI_REDIS_SLOTS entries */
    atomic_int have_map;
    /* A non-blocking batch saw a MOVED from this node's slot to it: the next
     * one reads the map first, asking it first (NULL: not stale). */
    struct kvi_redis_node *_Atomic map_stale;
    atomic_int_least64_t last_refresh_ms;
    atomic_uint rr;
    struct kvi_redis_node *_Atomic master; /* sentinel: the master it named, NULL = ask */
    struct kvi_redis_watch *_Atomic watch; /* sentinel: the +switch-master listener */
    struct kvi_redis_nc *_Atomic nc;       /* client_cache: the near cache, made on first use,
                                              freed by kvi__redis_nc_close */
    struct kvi_redis_state *retired;       /* a parent process's state */
};

/* A state with one node per seed, every node (those learned later too)
 * with a copy of nc; NULL when out of memory. */
struct kvi_redis_state *kvi__redis_state_new(kvi_conn *c, const struct kvi_redis_node_cfg *nc,
                                             const struct kvi_redis_seeds *seeds);

/* Frees st, its nodes and every retired state behind it (a parent's
 * connections are closed without touching its locks). */
void kvi__redis_state_free(kvi_conn *c, struct kvi_redis_state *st);

/* The fork generation of this process: 0 in the process that loaded the
 * module, one more in a child after each fork() (the only process-wide
 * value of the engine; it is per process by nature). */
unsigned kvi__redis_fork_gen(void);

/* Node host:port of st, created when unknown.  The _locked form expects
 * the caller to hold the write lock.  NULL when out of memory. */
struct kvi_redis_node *kvi__redis_node_get_locked(kvi_conn *c, struct kvi_redis_state *st,
                                                  const char *host, uint16_t port);
struct kvi_redis_node *kvi__redis_node_get(kvi_conn *c, struct kvi_redis_state *st,
                                           const char *host, uint16_t port);

/* Snapshot of every known node in *out (free with kvi_engine_free), seeds
 * last, so that a map is read from a node the cluster told us about
 * before falling back to the URL's hosts. */
kvi_status kvi__redis_node_snapshot(kvi_conn *c, struct kvi_redis_state *st,
                                    struct kvi_redis_node ***out, size_t *count);

#endif /* KVI_REDIS_STATE_H */
