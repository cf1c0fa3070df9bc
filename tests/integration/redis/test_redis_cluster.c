/*
 * test_redis_cluster.c -- the redis engine against a real Redis Cluster of
 * 3 masters and 3 replicas started on free 127.0.0.1 ports: detection,
 * routing by key and by raw-query key position, key listing across
 * masters, a slot migration during traffic (real MOVED and ASK), a master
 * killed and its replica promoted, a cluster with a password, and the
 * conformance suite run against the cluster.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include "kvitest.h"

#include "engines/redis/route.c"
#include "kvi/kvi.h"
#include "testcluster.h"

#define SKIP_EXIT 77
#define TIMEOUT_MS 1000

static kvi_tc_cluster *g_cluster;
static char g_url[1024];

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static kvi *cluster_kvi(void)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, g_url);
    if (st != KVI_OK)
        fail_msg("kvi_add_url(%s): %s: %s", g_url, kvi_status_name(st), kvi_errmsg(k));
    return k;
}

static void assert_fetch_is(kvi *k, const char *key, const char *want)
{
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_fetch(k, "redis", key, strlen(key), &v);
    if (st != KVI_OK)
        fail_msg("fetch %s: %s: %s", key, kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.data, want, v.len);
    kvi_value_free(&v);
}

/* redis-cli on node i; fails the test when it fails. */
static char *cli(size_t i, const char *const *args)
{
    char *out = NULL;
    if (kvi_tc_cli(g_cluster, i, &out, args) != KVI_TS_OK)
        fail_msg("redis-cli %s: %s", args[0], kvi_tc_errmsg());
    return out;
}

static void cli_ok(size_t i, const char *const *args)
{
    char *out = cli(i, args);
    if (strncmp(out, "OK", 2) != 0 && strncmp(out, "NOKEY", 5) != 0)
        fail_msg("redis-cli %s %s on node %zu: %s", args[0], args[1] ? args[1] : "", i, out);
    free(out);
}

static int is_master(size_t i)
{
    if (!kvi_ts_running(kvi_tc_server(g_cluster, i)))
        return 0;
    const char *args[] = {"ROLE", NULL};
    char *out = cli(i, args);
    int yes = strncmp(out, "master", 6) == 0;
    free(out);
    return yes;
}

static size_t master_of(unsigned slot)
{
    size_t idx = 0;
    for (size_t ask = 0; ask < kvi_tc_size(g_cluster); ask++) {
        if (!kvi_ts_running(kvi_tc_server(g_cluster, ask)))
            continue;
        if (kvi_tc_master_of(g_cluster, ask, slot, &idx) != KVI_TS_OK)
            fail_msg("master of slot %u: %s", slot, kvi_tc_errmsg());
        return idx;
    }
    fail_msg("no node running");
    return 0;
}

static unsigned slot_of(const char *key)
{
    return kvi__redis_key_slot(key, strlen(key));
}

static int setup(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 1, .node_timeout_ms = 1000};
    kvi_ts_result r = kvi_tc_start(&spec, &g_cluster);
    if (r == KVI_TS_MISSING) {
        fprintf(stderr, "SKIP: %s\n", kvi_tc_errmsg());
        exit(SKIP_EXIT);
    }
    if (r != KVI_TS_OK) {
        fprintf(stderr, "cannot start the cluster: %s\n", kvi_tc_errmsg());
        return -1;
    }
    size_t n = kvi_tc_url(g_cluster, "redis", g_url, sizeof g_url);
    snprintf(g_url + n - 1, sizeof g_url - (n - 1), "/?timeout=%d&connect_timeout=500", TIMEOUT_MS);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kvi_tc_free(g_cluster);
    g_cluster = NULL;
    return 0;
}

/* ------------------------------------------------------------------- */

static void test_cluster_is_detected_and_keys_spread_over_masters(void **state)
{
    (void)state;
    kvi *k = cluster_kvi();
    char key[32], val[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "spread:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(kvi_store(k, "redis", key, strlen(key), val, strlen(val), 0), KVI_OK);
    }
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "spread:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_fetch_is(k, key, val);
    }
    /* The keys are spread over the masters (and copied to replicas). */
    size_t masters_with_keys = 0;
    for (size_t i = 0; i < kvi_tc_size(g_cluster); i++) {
        const char *args[] = {"DBSIZE", NULL};
        char *out = cli(i, args);
        if (atoi(out) > 0)
            masters_with_keys++;
        free(out);
    }
    assert_true(masters_with_keys >= 3);
    uint64_t removed = 0;
    assert_int_equal(kvi_remove_chunk(k, "redis", "spread:*", 8, &removed), KVI_OK);
    assert_int_equal(removed, 300);
    kvi_free(k);
}

static void test_cluster_counters_ttl_and_remove(void **state)
{
    (void)state;
    kvi *k = cluster_kvi();
    int64_t n = 0, ttl = 0;
    assert_int_equal(kvi_add(k, "redis", "credit:alice", 12, 100, 60, &n), KVI_OK);
    assert_int_equal(n, 100);
    assert_int_equal(kvi_sub(k, "redis", "credit:alice", 12, 130, 5, &n), KVI_OK);
    assert_int_equal(n, -30);
    assert_int_equal(kvi_ttl(k, "redis", "credit:alice", 12, &ttl), KVI_OK);
    assert_true(ttl > 50 && ttl <= 60);
    assert_int_equal(kvi_remove(k, "redis", "credit:alice", 12), KVI_OK);
    assert_int_equal(kvi_remove(k, "redis", "credit:alice", 12), KVI_NOT_FOUND);
    assert_int_equal(kvi_ping(k, "redis"), KVI_OK);
    kvi_free(k);
}

/* Bounded add and store-if-absent are routed by key: keys of every master
 * behave alike (one round trip each, no CROSSSLOT). */
static void test_cluster_bounded_add_and_store_nx_on_every_master(void **state)
{
    (void)state;
    kvi *k = cluster_kvi();
    char key[32];
    int64_t n = 0;
    int on_master[8] = {0};
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "bnd:%d", i);
        size_t len = strlen(key);
        on_master[master_of(slot_of(key)) % 8] = 1;
        assert_int_equal(kvi_add_bounded(k, "redis", key, len, 3, 60, 0, 5, &n), KVI_OK);
        assert_int_equal(n, 3);
        assert_int_equal(kvi_add_bounded(k, "redis", key, len, 3, 60, 0, 5, &n), KVI_OUT_OF_BOUNDS);
        assert_int_equal(n, 3);
        assert_int_equal(kvi_sub_bounded(k, "redis", key, len, 3, 0, 0, 5, &n), KVI_OK);
        assert_int_equal(n, 0);
        snprintf(key, sizeof key, "nx:%d", i);
        len = strlen(key);
        assert_int_equal(kvi_store_nx(k, "redis", key, len, "a", 1, 60), KVI_OK);
        assert_int_equal(kvi_store_nx(k, "redis", key, len, "b", 1, 60), KVI_KEY_EXISTS);
        assert_fetch_is(k, key, "a");
    }
    int masters = 0;
    for (int i = 0; i < 8; i++)
        masters += on_master[i];
    assert_true(masters >= 3);
    kvi_free(k);
}

/* The breaker is per cluster node: a stopped master costs down_after
 * timeouts, then its keys fail at once saying it is marked down, while the
 * keys of the other masters keep working; after SIGCONT it is used again.
 * (Stopped well under cluster-node-timeout, so no failover starts.) */
static void test_cluster_stopped_master_is_marked_down_alone(void **state)
{
    (void)state;
    kvi *k = NULL;
    char url[1100], key_b[32];
    assert_int_equal(kvi_new(&k), KVI_OK);
    size_t n = kvi_tc_url(g_cluster, "redis", url, sizeof url);
    snprintf(url + n - 1, sizeof url - (n - 1), "/?timeout=150&down_after=2&down_for=400");
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    const char *key_a = "brk:a";
    size_t ma = master_of(slot_of(key_a));
    for (int i = 0;; i++) {
        snprintf(key_b, sizeof key_b, "brk:b%d", i);
        if (master_of(slot_of(key_b)) != ma)
            break;
    }
    assert_int_equal(kvi_store(k, "redis", key_a, strlen(key_a), "a", 1, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "redis", key_b, strlen(key_b), "b", 1, 0), KVI_OK);

    kvi_ts_server *stopped = kvi_tc_server(g_cluster, ma);
    kvi_test_hang(stopped);
    int64_t t0 = mono_ms();
    int at_once = 0;
    for (int i = 0; i < 50; i++) {
        kvi_value v = KVI_VALUE_INIT;
        kvi_status st = kvi_fetch(k, "redis", key_a, strlen(key_a), &v);
        if (st != KVI_E_TIMEOUT) {
            kvi_test_unhang(stopped);
            fail_msg("fetch on the stopped master: %s: %s", kvi_status_name(st), kvi_errmsg(k));
        }
        at_once += strstr(kvi_errmsg(k), "is marked down") != NULL;
    }
    int64_t elapsed = mono_ms() - t0;
    int other_ok = 1;
    for (int i = 0; i < 20; i++) {
        kvi_value v = KVI_VALUE_INIT;
        other_ok &= kvi_fetch(k, "redis", key_b, strlen(key_b), &v) == KVI_OK;
        kvi_value_free(&v);
    }
    kvi_test_unhang(stopped);
    fprintf(stderr, "cluster breaker: 50 calls to a stopped master in %lld ms, %d at once\n",
            (long long)elapsed, at_once);
    assert_true(other_ok);
    assert_true(at_once >= 45);
    assert_true(elapsed < 50 * 150 / 4);
    kvi_status st = KVI_E_TIMEOUT;
    t0 = mono_ms();
    while (st != KVI_OK && mono_ms() - t0 < 10000) {
        kvi_value v = KVI_VALUE_INIT;
        st = kvi_fetch(k, "redis", key_a, strlen(key_a), &v);
        kvi_value_free(&v);
        if (st != KVI_OK)
            nap_ms(20);
    }
    assert_int_equal(st, KVI_OK);
    kvi_free(k);
}

static void test_cluster_keys_lists_every_master(void **state)
{
    (void)state;
    kvi *k = cluster_kvi();
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "glob:%d", i);
        assert_int_equal(kvi_store(k, "redis", key, strlen(key), "x", 1, 0), KVI_OK);
    }
    assert_int_equal(kvi_store(k, "redis", "globx", 5, "x", 1, 0), KVI_OK);
    kvi_reply *r = NULL;
    assert_int_equal(kvi_keys(k, "redis", "glob:*", 6, &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 100);
    kvi_reply_free(r);
    /* [!...] is a kvi class (negation) that redis itself does not know. */
    assert_int_equal(kvi_keys(k, "redis", "glob:[!0-8]*", 12, &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 11); /* 9 and 90..99 */
    kvi_reply_free(r);
    uint64_t removed = 0;
    assert_int_equal(kvi_remove_chunk(k, "redis", "glob*", 5, &removed), KVI_OK);
    assert_int_equal(removed, 101);
    assert_int_equal(kvi_keys(k, "redis", "glob*", 5, &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 0);
    kvi_reply_free(r);
    kvi_free(k);
}

static kvi_reply *raw(kvi *k, const char *q)
{
    kvi_reply *r = NULL;
    kvi_status st = kvi_raw_query(k, "redis", q, strlen(q), &r);
    if (st != KVI_OK)
        fail_msg("raw %s: %s: %s", q, kvi_status_name(st), kvi_errmsg(k));
    return r;
}

static void assert_reply_str(const kvi_reply *r, kvi_reply_type type, const char *want)
{
    assert_int_equal(kvi_reply_type_of(r), type);
    assert_string_equal(kvi_reply_str(r, NULL), want);
}

static void test_cluster_raw_query_routes_by_key_position(void **state)
{
    (void)state;
    kvi *k = cluster_kvi();
    kvi_reply *r;
    r = raw(k, "SET {user}.name \"alice smith\"");
    assert_reply_str(r, KVI_REPLY_STATUS, "OK");
    kvi_reply_free(r);
    r = raw(k, "get {user}.name");
    assert_reply_str(r, KVI_REPLY_STRING, "alice smith");
    kvi_reply_free(r);
    r = raw(k, "EVAL \"return redis.call('GET', KEYS[1])\" 1 {user}.name");
    assert_reply_str(r, KVI_REPLY_STRING, "alice smith");
    kvi_reply_free(r);
    r = raw(k, "MGET {user}.name {user}.none");
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_ARRAY);
    assert_int_equal(kvi_reply_count(r), 2);
    assert_reply_str(kvi_reply_element(r, 0), KVI_REPLY_STRING, "alice smith");
    assert_int_equal(kvi_reply_type_of(kvi_reply_element(r, 1)), KVI_REPLY_NIL);
    kvi_reply_free(r);
    /* Not in the engine's table: the server is asked (COMMAND GETKEYS). */
    r = raw(k, "GEORADIUS_RO {user}.geo 0 0 1 km");
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_ARRAY);
    kvi_reply_free(r);
    r = raw(k, "PING");
    assert_reply_str(r, KVI_REPLY_STATUS, "PONG");
    kvi_reply_free(r);
    /* Keys in two slots: the server's own error, as a reply. */
    r = raw(k, "MGET a b");
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_ERROR);
    assert_non_null(strstr(kvi_reply_str(r, NULL), "CROSSSLOT"));
    kvi_reply_free(r);
    kvi_free(k);
}

/* Background traffic during a migration: adds that must all land once. */
struct traffic {
    kvi *k;
    atomic_int stop;
    int64_t ok;
    int64_t failed;
    char last_error[256];
};

static void *traffic_main(void *arg)
{
    struct traffic *t = arg;
    while (!atomic_load(&t->stop)) {
        int64_t n;
        kvi_status st = kvi_add(t->k, "redis", "{mig}ctr", 8, 1, 0, &n);
        if (st == KVI_OK) {
            t->ok++;
        } else {
            t->failed++;
            snprintf(t->last_error, sizeof t->last_error, "%s: %s", kvi_status_name(st),
                     kvi_errmsg(t->k));
        }
    }
    return NULL;
}

/* Moves every key of slot from node src to node dst with MIGRATE;
 * returns how many were moved. */
static int migrate_keys(size_t src, size_t dst, unsigned slot, int limit)
{
    char slotstr[8], countstr[8], port[8];
    snprintf(slotstr, sizeof slotstr, "%u", slot);
    snprintf(countstr, sizeof countstr, "%d", limit);
    snprintf(port, sizeof port, "%u", kvi_tc_port(g_cluster, dst));
    const char *gk[] = {"CLUSTER", "GETKEYSINSLOT", slotstr, countstr, NULL};
    char *keys = cli(src, gk);
    const char *args[64] = {"MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS"};
    size_t n = 7;
    int moved = 0;
    for (char *save = NULL, *line = strtok_r(keys, "\n", &save); line != NULL && n < 63;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] != '\0') {
            args[n++] = line;
            moved++;
        }
    }
    args[n] = NULL;
    if (moved > 0)
        cli_ok(src, args);
    free(keys);
    return moved;
}

static void test_slot_migration_during_traffic_follows_ask_and_moved(void **state)
{
    (void)state;
    kvi *k = cluster_kvi();
    unsigned slot = slot_of("{mig}");
    size_t src = master_of(slot), dst = src;
    for (unsigned s = 0; s < KVI_REDIS_SLOTS && dst == src; s += 1000)
        dst = master_of(s);
    assert_int_not_equal(src, dst);
    char src_id[41], dst_id[41], slotstr[8], key[32], val[32];
    assert_int_equal(kvi_tc_node_id(g_cluster, src, src_id), KVI_TS_OK);
    assert_int_equal(kvi_tc_node_id(g_cluster, dst, dst_id), KVI_TS_OK);
    snprintf(slotstr, sizeof slotstr, "%u", slot);

    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "{mig}k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(kvi_store(k, "redis", key, strlen(key), val, strlen(val), 0), KVI_OK);
    }
    struct traffic t = {.k = k};
    atomic_init(&t.stop, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, traffic_main, &t), 0);
    nap_ms(100);

    const char *importing[] = {"CLUSTER", "SETSLOT", slotstr, "IMPORTING", src_id, NULL};
    const char *migrating[] = {"CLUSTER", "SETSLOT", slotstr, "MIGRATING", dst_id, NULL};
    cli_ok(dst, importing);
    cli_ok(src, migrating);
    /* Half of the keys move: the slot is split between the two nodes. */
    assert_true(migrate_keys(src, dst, slot, 20) > 0);
    nap_ms(100);

    /* ASK: a key already on dst, a key still on src, a new key (dst). */
    int64_t t0 = mono_ms();
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "{mig}k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_fetch_is(k, key, val);
    }
    assert_int_equal(kvi_store(k, "redis", "{mig}new", 8, "fresh", 5, 0), KVI_OK);
    assert_fetch_is(k, "{mig}new", "fresh");
    const char *count_keys[] = {"CLUSTER", "COUNTKEYSINSLOT", slotstr, NULL};
    char *on_dst = cli(dst, count_keys);
    assert_true(atoi(on_dst) >= 21); /* 20 migrated + the new one */
    free(on_dst);

    while (migrate_keys(src, dst, slot, 50) > 0)
        ;
    const char *node_cmd[] = {"CLUSTER", "SETSLOT", slotstr, "NODE", dst_id, NULL};
    cli_ok(dst, node_cmd);
    cli_ok(src, node_cmd);
    for (size_t i = 0; i < kvi_tc_size(g_cluster); i++)
        if (i != src && i != dst && is_master(i))
            cli_ok(i, node_cmd);
    nap_ms(300); /* traffic now meets MOVED */
    atomic_store(&t.stop, 1);
    pthread_join(th, NULL);
    fprintf(stderr,
            "migration: %" PRId64 " adds during the move, %" PRId64 " failed (%s), "
            "%lld ms\n",
            t.ok, t.failed, t.last_error, (long long)(mono_ms() - t0));

    assert_int_equal(t.failed, 0);
    assert_true(t.ok > 0);
    int64_t value = 0;
    assert_int_equal(kvi_counter_fetch(k, "redis", "{mig}ctr", 8, &value), KVI_OK);
    assert_int_equal(value, t.ok);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "{mig}k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_fetch_is(k, key, val);
    }
    assert_fetch_is(k, "{mig}new", "fresh");
    assert_int_equal(master_of(slot), dst);
    char *on_src = cli(src, count_keys);
    assert_int_equal(atoi(on_src), 0);
    free(on_src);
    assert_int_equal(kvi_tc_wait_ok(g_cluster, 20000), KVI_TS_OK);
    kvi_free(k);
}

/* Waits until a replica of master m is online and has every write of m
 * (slaveN:...,state=online,offset=X equal to master_repl_offset). */
static void wait_replicated(size_t m)
{
    const char *args[] = {"INFO", "replication", NULL};
    int64_t t0 = mono_ms();
    for (;;) {
        char *out = cli(m, args);
        const char *mo = strstr(out, "master_repl_offset:");
        const char *so = strstr(out, "state=online,offset=");
        int done = mo != NULL && so != NULL &&
                   strtoll(mo + strlen("master_repl_offset:"), NULL, 10) ==
                       strtoll(so + strlen("state=online,offset="), NULL, 10);
        free(out);
        if (done)
            return;
        if (mono_ms() - t0 > 15000)
            fail_msg("the replica of node %zu did not catch up", m);
        nap_ms(50);
    }
}

static void test_master_killed_replica_promoted_traffic_resumes(void **state)
{
    (void)state;
    kvi *k = cluster_kvi();
    const char *key = "failover:key";
    unsigned slot = slot_of(key);
    int64_t n = 0;
    assert_int_equal(kvi_store(k, "redis", key, strlen(key), "before", 6, 0), KVI_OK);
    assert_int_equal(kvi_add(k, "redis", "{failover:key}n", 15, 5, 0, &n), KVI_OK);
    size_t m = master_of(slot);
    wait_replicated(m);
    kvi_ts_server *victim = kvi_tc_server(g_cluster, m);
    assert_int_equal(kvi_ts_kill(victim), KVI_TS_OK);

    int64_t t0 = mono_ms(), worst = 0;
    kvi_status st = KVI_E_CONNECT;
    int failures = 0;
    while (mono_ms() - t0 < 30000) {
        kvi_value v = KVI_VALUE_INIT;
        int64_t c0 = mono_ms();
        st = kvi_fetch(k, "redis", key, strlen(key), &v);
        int64_t took = mono_ms() - c0;
        worst = took > worst ? took : worst;
        if (st == KVI_OK) {
            assert_int_equal(v.len, 6);
            assert_memory_equal(v.data, "before", 6);
            kvi_value_free(&v);
            break;
        }
        if (st != KVI_E_CONNECT && st != KVI_E_TIMEOUT && st != KVI_E_BACKEND)
            fail_msg("during failover: %s: %s", kvi_status_name(st), kvi_errmsg(k));
        failures++;
        nap_ms(100);
    }
    fprintf(stderr, "failover: traffic back after %lld ms, %d failed calls, slowest %lld ms\n",
            (long long)(mono_ms() - t0), failures, (long long)worst);
    assert_int_equal(st, KVI_OK);
    /* No call hangs: each is bounded by the timeout plus the retry backoff. */
    assert_true(worst < TIMEOUT_MS + 1500);
    /* The node the test asks learns of the promotion by gossip, which can lag
     * behind the engine's own view (it already served the fetch). */
    int64_t t1 = mono_ms();
    while (master_of(slot) == m && mono_ms() - t1 < 10000)
        nap_ms(100);
    assert_int_not_equal(master_of(slot), m);
    assert_int_equal(kvi_add(k, "redis", "{failover:key}n", 15, 1, 0, &n), KVI_OK);
    assert_int_equal(n, 6);
    assert_int_equal(kvi_store(k, "redis", key, strlen(key), "after", 5, 0), KVI_OK);
    assert_fetch_is(k, key, "after");

    /* The old master comes back as a replica; the cluster heals. */
    assert_int_equal(kvi_ts_restart(victim), KVI_TS_OK);
    assert_int_equal(kvi_tc_wait_ok(g_cluster, 30000), KVI_TS_OK);
    assert_fetch_is(k, key, "after");
    kvi_free(k);
}

static void test_cluster_with_password(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 0, .password = "clu5ter-pw"};
    kvi_tc_cluster *cl = NULL;
    kvi_ts_result r = kvi_tc_start(&spec, &cl);
    if (r != KVI_TS_OK)
        fail_msg("cannot start a cluster with a password: %s", kvi_tc_errmsg());
    char url[1024];
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_tc_url(cl, "redis:pw", url, sizeof url);
    if (kvi_add_url(k, url) != KVI_OK)
        fail_msg("%s", kvi_errmsg(k));
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "pw:%d", i);
        assert_int_equal(kvi_store(k, "redis:pw", key, strlen(key), "1", 1, 0), KVI_OK);
    }
    int64_t n = 0;
    assert_int_equal(kvi_add(k, "redis:pw", "pw:ctr", 6, 3, 0, &n), KVI_OK);
    kvi_reply *keys = NULL;
    assert_int_equal(kvi_keys(k, "redis:pw", "pw:*", 4, &keys), KVI_OK);
    assert_int_equal(kvi_reply_count(keys), 51);
    kvi_reply_free(keys);

    /* Wrong password on a cluster: AUTH, and the text never holds it. */
    snprintf(url, sizeof url, "redis:bad://:Not-The-Pw@127.0.0.1:%u/?cluster=yes",
             kvi_tc_port(cl, 0));
    assert_int_equal(kvi_add_url(k, url), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "Not-The-Pw"));
    kvi_free(k);
    kvi_tc_free(cl);
}

/* The conformance suite (the contract of docs/semantics.md) against this
 * cluster, by running the kvi-conformance program with its URL. */
static void test_conformance_suite_passes_on_the_cluster(void **state)
{
    (void)state;
    const char *build = getenv("KVI_BUILD_DIR");
    char prog[1024];
    snprintf(prog, sizeof prog, "%s/tests/conformance/kvi-conformance", build ? build : ".");
    if (access(prog, X_OK) != 0) {
        KVI_TEST_SKIP_CASE("kvi-conformance not built (%s)", prog);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(prog, prog, "--url", g_url, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    int64_t t0 = mono_ms();
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (mono_ms() - t0 > 240000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("kvi-conformance did not finish in 240 s");
        }
        nap_ms(100);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_is_detected_and_keys_spread_over_masters),
        cmocka_unit_test(test_cluster_counters_ttl_and_remove),
        cmocka_unit_test(test_cluster_keys_lists_every_master),
        cmocka_unit_test(test_cluster_bounded_add_and_store_nx_on_every_master),
        cmocka_unit_test(test_cluster_raw_query_routes_by_key_position),
        cmocka_unit_test(test_conformance_suite_passes_on_the_cluster),
        cmocka_unit_test(test_slot_migration_during_traffic_follows_ask_and_moved),
        cmocka_unit_test(test_master_killed_replica_promoted_traffic_resumes),
        cmocka_unit_test(test_cluster_with_password),
        cmocka_unit_test(test_cluster_stopped_master_is_marked_down_alone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
