/*
 * pool.h -- the servers (nodes) of the redis engine and their idle
 * connections, and running commands on one given node.
 *
 * Threads: every call borrows a connection of its own from a pool (or
 * opens one), so no call ever waits on another thread's network I/O; the
 * mutex of a node only guards its idle list.
 */
#ifndef KVI_REDIS_POOL_H
#define KVI_REDIS_POOL_H

#include <pthread.h>

#include "transport.h"

/* One open connection. */
struct kvi_redis_link {
    struct kvi_redis_conn conn;
    struct kvi_redis_link *next;
    uint64_t nc_epoch; /* near cache: the subscription its tracking redirects to (0: none) */
};

/* One server: its address, its settings (a copy of the kvi_conn's) and
 * its idle connections.  Nodes live in the per-process state (state.h)
 * and are never freed before it. */
struct kvi_redis_node {
    struct kvi_redis_addr addr;
    struct kvi_redis_node_cfg cfg;
    pthread_mutex_t mu;
    struct kvi_redis_link *idle;
    size_t nidle;
    atomic_int script_loaded;
    kvi_breaker *breaker;        /* marks the node down after repeated failures */
    struct kvi_redis_tls_cache tls_cache; /* its last TLS session, for resumption */
    int sentinel;                /* a sentinel (its own credentials), not a data node */
    struct kvi_redis_node *next; /* the state's list of nodes */
};

/* How many connections with near-cache tracking on (nc_epoch != 0) this
 * process has closed so far; thread-safe.  The server sends no
 * invalidation for the keys such a connection read, so a near cache must
 * drop its entries when this changes (nearcache.c). */
uint64_t kvi__redis_tracked_closed(void);

/* Closes the idle connections of n with near-cache tracking on that the
 * server has closed (a server `timeout`, CLIENT KILL) or that hold bytes
 * nobody asked for, so that kvi__redis_tracked_closed() moves at once
 * rather than at their next borrow: one poll() over them all, no system
 * call when there is none.  Thread-safe. */
void kvi__redis_node_reap_tracked(kvi_conn *c, struct kvi_redis_node *n);

/* A new node for host:port or (path != NULL) a unix socket, with a copy
 * of the settings cfg; NULL when out of memory. */
struct kvi_redis_node *kvi__redis_node_new(kvi_conn *c, const struct kvi_redis_node_cfg *cfg,
                                           const char *host, uint16_t port, const char *path);

/* Frees a node and its idle connections.  destroy_mutex 0: a parent
 * process's node in a forked child, whose mutex is never touched. */
void kvi__redis_node_free(kvi_conn *c, struct kvi_redis_node *n, int destroy_mutex);

/* Runs one command on one given node (no redirection handling); a command
 * with resend_ok is sent once more on a new connection when a reused one
 * turned out broken.  KVI_OK with the reply in *out (maybe an error
 * reply). */
kvi_status kvi__redis_exec_on(kvi_conn *c, struct kvi_redis_node *node,
                              const struct kvi_redis_cmd *cmd, redisReply **out);

/* How far kvi__redis_node_call() got. */
enum kvi_redis_phase {
    KVI_REDIS_REFUSED = 0, /* the node is marked down: nothing tried */
    KVI_REDIS_NO_CONN = 1, /* no connection (connect or set-up failed) */
    KVI_REDIS_SENT = 2     /* the request went out on a connection */
};

/* One request (after ASKING when asking) on a pooled connection to node,
 * never re-sent, through the node's breaker.  *phase says how far it got,
 * *reused whether the connection had served before (a failure then may be
 * a connection the server closed meanwhile). */
kvi_status kvi__redis_node_call(kvi_conn *c, struct kvi_redis_node *node,
                                const struct kvi_redis_cmd *cmd, int asking, int *reused,
                                int *phase, redisReply **out);

/* Sends count commands to one node in one batch on one connection and
 * reads their replies into replies[0..count) (free each with
 * freeReplyObject).  No redirection handling and no WAIT; nothing is
 * re-sent.  On error no reply is left. */
kvi_status kvi__redis_pipeline_on(kvi_conn *c, struct kvi_redis_node *node, size_t count,
                                  const struct kvi_redis_cmd *cmds, redisReply **replies);

/* Sends count commands to node pipelined on one connection (written in
 * chunks of 1024 kept ahead of the replies) and reads their replies in
 * order into replies[0..*got) (free each with freeReplyObject), stopping at
 * the first failure, whose status it returns (detail set).  Commands
 * [*got, *appended) were handed to the connection and may have reached the
 * server; those from *appended on were never sent.  No redirection
 * handling, no WAIT.  When every command is resend_ok the idle connection
 * is taken without a poll, and if it fails before the first reply
 * (closed while idle) everything is sent once more on a checked one;
 * otherwise nothing is re-sent.  Each reply waits at most the
 * connection's timeout and never past deadline_ms (monotonic; 0 = none).
 * fns, when not NULL, replaces the reply object functions of the
 * connection's reader while the replies are read (restored before the
 * connection goes back to the pool or is closed): replies[i] is then
 * whatever fns made of reply i.  fns_seq (may be NULL: fns's count of
 * the replies it made) is zeroed when the pipeline is written again.
 */
kvi_status kvi__redis_pipeline_partial(kvi_conn *c, struct kvi_redis_node *node, size_t count,
                                       const struct kvi_redis_cmd *cmds, redisReply **replies,
                                       int64_t deadline_ms, redisReplyObjectFunctions *fns,
                                       size_t *fns_seq, size_t *got, size_t *appended);

/* One node's pipeline of kvi__redis_pipeline_multi: the caller fills
 * the first fields; the results are st (KVI_OK, or the failure with its
 * detail in err, without the "id: " prefix), got and appended, as
 * kvi__redis_pipeline_partial's. */
struct kvi_redis_pipe {
    struct kvi_redis_node *node;
    size_t count;
    const struct kvi_redis_cmd *cmds;
    redisReply **replies;
    /* Called with 1 before this pipe's replies are read, 0 after (may be
     * NULL): the caller's per-pipe context of fns. */
    void (*enter)(void *ud, int on);
    void *ud;
    size_t *fns_seq; /* as kvi__redis_pipeline_partial's; may be NULL */
    kvi_status st;
    size_t got, appended;
    char err[400];
    /* private */
    struct kvi_redis_link *l;
    redisReplyObjectFunctions *saved_fns;
    int64_t reply_deadline;
    int reused, probe, check, resendable, active;
};

/* kvi__redis_pipeline_partial for k nodes at once: every pipe's requests
 * are written first, then the replies read as they come (one poll over
 * the sockets), so the round trips overlap.  Same rules per pipe (the
 * breaker, the idle check, the one resend of a resendable pipeline whose
 * unchecked pooled connection failed before any reply, each reply within
 * the connection's timeout and the deadline); a new connection is still
 * connected blocking, one after the other. */
void kvi__redis_pipeline_multi(kvi_conn *c, struct kvi_redis_pipe *const *p, size_t k,
                               int64_t deadline_ms, redisReplyObjectFunctions *fns);

/* For non-blocking batches (async.c), without waiting: an idle connection
 * of node in *out (1), or a new one whose connect has started (0: drive it
 * with kvi__redis_conn_step until ready), or -1 (detail message set).
 * check 0 takes an idle one without polling it first (for a caller that
 * sends again, on a checked one, what a dead one failed).  give puts a
 * connection back in node's pool, drop closes it. */
int kvi__redis_link_take(kvi_conn *c, struct kvi_redis_node *node, struct kvi_redis_link **out,
                         int check);
void kvi__redis_link_give(kvi_conn *c, struct kvi_redis_node *node, struct kvi_redis_link *l);
void kvi__redis_link_drop(kvi_conn *c, struct kvi_redis_link *l);

/* A connection to node n for the caller alone: an idle one (*reused = 1)
 * or a new one, connected and set up (detail message set on failure).
 * Give it back with kvi__redis_link_give, or drop it after a failure. */
kvi_status kvi__redis_link_borrow(kvi_conn *c, struct kvi_redis_node *n,
                                  struct kvi_redis_link **out, int *reused);

/* "host:port" (or the socket path) of a node, for messages. */
const char *kvi__redis_node_name(const struct kvi_redis_node *node);

/* A failure after which the same request may be sent again on a new
 * connection, if the command allows it. */
int kvi__redis_retryable(kvi_status s);

#endif /* KVI_REDIS_POOL_H */
