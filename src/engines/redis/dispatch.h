/*
 * dispatch.h -- where a command of the redis engine runs: the working host
 * of the standalone failover list, the master the sentinels name, or the
 * master of its slot in a Redis Cluster (following MOVED and ASK,
 * retrying TRYAGAIN/CLUSTERDOWN/LOADING with backoff), the slot computed
 * once from the command's key.  The top of the connection code: it runs
 * commands it is given and builds none; the command files (values,
 * counter, raw, scan, batch) call it.
 */
#ifndef KVI_REDIS_DISPATCH_H
#define KVI_REDIS_DISPATCH_H

#include "priv.h"

/* Creates the connection state (and connects unless lazy).  Call once from
 * open() after cfg is filled. */
kvi_status kvi__redis_net_open(kvi_conn *c);

/* Frees every connection and state of c, also those of a parent process. */
void kvi__redis_net_close(kvi_conn *c);

/* The state of this process in *out; after fork() a new one, so that the
 * child never touches its parent's sockets.  A fork is noticed without a
 * system call: a pthread_atfork() child handler bumps a generation number
 * (kvi__redis_fork_gen, state.h), compared with the one the state was made
 * in.  A child made without the handlers running (vfork, a raw clone
 * system call) must not use the context before exec. */
kvi_status kvi__redis_state_get(kvi_conn *c, struct kvi_redis_state **out);

/*
 * Runs one command where it belongs.  KVI_OK with the reply in *out (free
 * with freeReplyObject; it may be an error reply, never a redirection);
 * otherwise an error status with the detail message set.
 */
kvi_status kvi__redis_exec(kvi_conn *c, const struct kvi_redis_cmd *cmd, redisReply **out);

/* Flags of kvi__redis_run(). */
#define KVI_REDIS_RESEND_OK 1 /* may be sent again after its connection failed */
#define KVI_REDIS_WRITE 2     /* changes data: followed by WAIT when wait_replicas > 0 */
#define KVI_REDIS_DEEP 4      /* a raw reply: read it at any depth (deep.h) */

/* kvi__redis_exec() of argv[0..argc) with flags, routed by its key
 * argv[key_at] (0: no key, any master). */
kvi_status kvi__redis_run(kvi_conn *c, int argc, const char **argv, const size_t *lens, int key_at,
                          int flags, redisReply **out);

/* *is_cluster = 1 when c talks to a cluster (detecting the mode first if
 * needed). */
kvi_status kvi__redis_is_cluster(kvi_conn *c, int *is_cluster);

/* The masters to visit for a whole-keyspace operation (SCAN, PING): in
 * *nodes (free with kvi_engine_free) and *count.  Standalone: the working
 * host. */
kvi_status kvi__redis_masters(kvi_conn *c, struct kvi_redis_node ***nodes, size_t *count);

/* Parses the redirection r ("MOVED 3999 127.0.0.1:6381" / "ASK ...") that
 * node from sent into slot, host (hostlen bytes) and port; an empty host
 * means from's.  0, or -1 when r is malformed. */
int kvi__redis_parse_redirect(const redisReply *r, const struct kvi_redis_node *from, int *slot,
                              char *host, size_t hostlen, uint16_t *port);
#endif /* KVI_REDIS_DISPATCH_H */
