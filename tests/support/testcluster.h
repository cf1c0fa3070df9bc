/*
 * testcluster.h -- a throwaway Redis Cluster for kvi's tests, built on
 * testserver.h (prefix kvi_tc_).
 *
 *     kvi_tc_spec spec = {.masters = 3, .replicas = 1};
 *     kvi_tc_cluster *cl;
 *     kvi_ts_result r = kvi_tc_start(&spec, &cl);
 *     if (r == KVI_TS_MISSING) ... skip, printing kvi_ts_errmsg() ...
 *     kvi_tc_url(cl, "redis", url, sizeof url);   // "redis://127.0.0.1:P1,...,127.0.0.1:P6/"
 *     ...
 *     kvi_tc_free(cl);                             // stops every node, removes the dirs
 *
 * Each node is a redis-server with cluster-enabled yes in its own temp
 * directory on free 127.0.0.1 ports (client port and cluster bus port both
 * picked free), with cluster-replica-validity-factor 0 (a replica always
 * may take over from a dead master) and repl-diskless-sync-delay 0.  The
 * cluster is made with `redis-cli --cluster create ... --cluster-replicas R
 * --cluster-yes`; kvi_tc_start() returns once every node reports
 * cluster_state:ok with all 16384 slots assigned and every replica is in
 * sync with its master.  Nodes are testserver servers, so they never
 * outlive the test process.  No hiredis here: commands go through
 * redis-cli.
 *
 * Threads: one cluster is driven from one thread at a time.
 */
#ifndef KVI_TESTCLUSTER_H
#define KVI_TESTCLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "testserver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvi_tc_spec {
    unsigned masters;          /* 0 = 3 (redis-cli needs at least 3) */
    unsigned replicas;         /* replicas per master */
    unsigned node_timeout_ms;  /* cluster-node-timeout; 0 = 2000 */
    const char *password;      /* requirepass and masterauth; NULL = none */
    const char *const *extra;  /* more redis-server arguments, NULL-terminated; may be NULL */
    unsigned ready_timeout_ms; /* for cluster_state:ok after create; 0 = 30000 */
    /* TLS: a directory made by kvi_tt_make_certs() (testtls.h); NULL = none.
     * Each node then also has a TLS port (kvi_tc_tls_port) with
     * tls-cluster and tls-replication yes, so the bus and the replication
     * are TLS and clients on TLS learn the nodes' TLS ports; the plain
     * ports stay for redis-cli and the readiness probe. */
    const char *tls_dir;
} kvi_tc_spec;

typedef struct kvi_tc_cluster kvi_tc_cluster;

/* Text of the last failure of a kvi_tc_ call in this thread (else that of
 * the last kvi_ts_ failure); never NULL. */
const char *kvi_tc_errmsg(void);

/* Starts masters * (1 + replicas) nodes, creates the cluster and waits for
 * it to be ok.  KVI_TS_MISSING when redis-server or redis-cli is not on
 * $PATH (skip the test), KVI_TS_FAILED otherwise (message in
 * kvi_tc_errmsg(); every node started is stopped again). */
kvi_ts_result kvi_tc_start(const kvi_tc_spec *spec, kvi_tc_cluster **out);

/* Number of nodes, and node i (0-based; the first `masters` nodes are the
 * masters as created; a failover changes roles, see kvi_tc_master_of). */
size_t kvi_tc_size(const kvi_tc_cluster *cl);
kvi_ts_server *kvi_tc_server(kvi_tc_cluster *cl, size_t i);
uint16_t kvi_tc_port(const kvi_tc_cluster *cl, size_t i);
/* The TLS port of node i (0 without spec.tls_dir). */
uint16_t kvi_tc_tls_port(const kvi_tc_cluster *cl, size_t i);

/* Writes "SCHEME://[:password@]127.0.0.1:P1,...,127.0.0.1:Pn/" (every node
 * a seed; the password percent-encoding is the caller's business) into buf.
 * scheme_group is e.g. "redis" or "redis:billing".  Returns the length the
 * full text needs, as snprintf. */
size_t kvi_tc_url(const kvi_tc_cluster *cl, const char *scheme_group, char *buf, size_t buflen);

/* Runs `redis-cli -h 127.0.0.1 -p PORT(node i) [-a password] args...` and
 * returns its standard output (malloc'd, NUL-terminated) in *out (may be
 * NULL).  KVI_TS_FAILED when it exits non-zero or runs over 15 s. */
kvi_ts_result kvi_tc_cli(const kvi_tc_cluster *cl, size_t i, char **out, const char *const *args);

/* Waits up to timeout_ms until every running node says cluster_state:ok,
 * cluster_slots_assigned:16384 and agrees with the others on who serves
 * each slot. */
kvi_ts_result kvi_tc_wait_ok(kvi_tc_cluster *cl, unsigned timeout_ms);

/* Node id (40 hex digits) of node i into id (at least 41 bytes). */
kvi_ts_result kvi_tc_node_id(const kvi_tc_cluster *cl, size_t i, char *id);

/* Index of the node that is the master of slot (as node `ask` sees it; pass
 * any running node). */
kvi_ts_result kvi_tc_master_of(const kvi_tc_cluster *cl, size_t ask, unsigned slot, size_t *index);

/* Stops every node, removes their directories, frees cl.  NULL is
 * accepted. */
void kvi_tc_free(kvi_tc_cluster *cl);

#ifdef __cplusplus
}
#endif

#endif /* KVI_TESTCLUSTER_H */
