/*
 * testsentinel.h -- a throwaway Redis Sentinel set-up for kvi's tests
 * (prefix kvi_tsn_), on top of testserver.h: one master, R replicas of it
 * and S sentinels (redis-server --sentinel) monitoring it under a name with
 * a quorum, all on free 127.0.0.1 ports in their own temp directories.
 *
 *     kvi_tsn_spec spec = {.replicas = 2, .sentinels = 3, .quorum = 2};
 *     kvi_tsn_setup *s;
 *     if (kvi_tsn_start(&spec, &s) == KVI_TS_MISSING) ... skip ...
 *     kvi_tsn_url(s, "redis", buf, sizeof buf);  // redis://127.0.0.1:S1,.../?sentinel=mymaster
 *     ...
 *     kvi_tsn_free(s);
 *
 * kvi_tsn_start() returns once every replica is in sync and every
 * sentinel knows the master.  Threads: one set-up from one thread.
 */
#ifndef KVI_TESTSENTINEL_H
#define KVI_TESTSENTINEL_H

#include <stddef.h>
#include <stdint.h>

#include "testserver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvi_tsn_spec {
    unsigned replicas;         /* replicas of the master */
    unsigned sentinels;        /* 0 = 3 */
    unsigned quorum;           /* 0 = sentinels / 2 + 1 */
    const char *name;          /* master name; NULL = "mymaster" */
    unsigned down_after_ms;    /* sentinel down-after-milliseconds; 0 = 1000 */
    unsigned failover_timeout_ms; /* 0 = 5000 */
    /* TLS: certificates made by kvi_tt_make_certs() (testtls.h); NULL =
     * none.  Every server and sentinel then also has a TLS port, the
     * replicas and the sentinels reach the servers over TLS, and
     * kvi_tsn_url() names the sentinels' TLS ports (add tls=yes). */
    const char *tls_dir;
    /* The sentinels' requirepass (and sentinel-pass among them); NULL =
     * none. */
    const char *sentinel_password;
    /* The master's address as the sentinels monitor and announce it: NULL =
     * 127.0.0.1; a name (tests: only "localhost") turns on the sentinels'
     * resolve-hostnames and announce-hostnames, so that they name the
     * master by it. */
    const char *monitor_host;
} kvi_tsn_spec;

typedef struct kvi_tsn_setup kvi_tsn_setup;

/* Starts everything.  KVI_TS_MISSING when redis-server is not on PATH
 * (skip), KVI_TS_FAILED otherwise (kvi_ts_errmsg(); nothing left running). */
kvi_ts_result kvi_tsn_start(const kvi_tsn_spec *spec, kvi_tsn_setup **out);

/* Data node i (0 = the master as started, then the replicas) and sentinel
 * i. */
kvi_ts_server *kvi_tsn_data(kvi_tsn_setup *s, size_t i);
size_t kvi_tsn_ndata(const kvi_tsn_setup *s);
kvi_ts_server *kvi_tsn_sentinel(kvi_tsn_setup *s, size_t i);
size_t kvi_tsn_nsentinels(const kvi_tsn_setup *s);

/* The TLS port of data node i (0 without spec.tls_dir). */
uint16_t kvi_tsn_data_tls_port(const kvi_tsn_setup *s, size_t i);

/* "SCHEME://127.0.0.1:S1,...,127.0.0.1:Sn/?sentinel=NAME" into buf (with
 * tls_dir: the sentinels' TLS ports);
 * returns the length the full text needs, as snprintf. */
size_t kvi_tsn_url(const kvi_tsn_setup *s, const char *scheme_group, char *buf, size_t buflen);

/* Sends the inline command cmd to 127.0.0.1:port (no TLS, no AUTH) and
 * reads what comes back within 1 s into buf, NUL-terminated (a bulk reply
 * up to its announced length, anything else until 100 ms of silence).
 * 0 when something came, -1 otherwise.  Thread-safe. */
int kvi_tsn_query(uint16_t port, const char *cmd, char *buf, size_t buflen);

/* Stops everything, removes the directories, frees s (NULL accepted). */
void kvi_tsn_free(kvi_tsn_setup *s);

#ifdef __cplusplus
}
#endif

#endif /* KVI_TESTSENTINEL_H */
