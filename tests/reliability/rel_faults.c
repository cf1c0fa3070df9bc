/*
 * rel_faults.c -- the billing workload (examples/billing/billing_logic.c)
 * from several threads while the store fails underneath:
 *
 *   rel_faults redis-aof      redis-server with appendonly yes and
 *                             appendfsync always is hung (SIGSTOP), then
 *                             killed (SIGKILL) and restarted on the same port
 *                             and directory mid-run.  No acknowledged debit
 *                             may be lost; failing calls end within the
 *                             timeout; the run ends by itself.
 *   rel_faults redis-cluster [wait]
 *                             3 masters + 3 replicas; a master is killed
 *                             mid-run and its replica promoted, the dead node
 *                             restarted 4 s later (it rejoins as a replica).
 *                             Traffic must resume; acknowledged debits lost
 *                             are measured
 *                             (with "wait": the URL asks for wait_replicas=1
 *                             and none may be lost).
 *   rel_faults memcached      memcached killed and restarted: calls fail
 *                             within the timeout, then work again without any
 *                             action; everything stored before is gone.
 *
 * The contract checked for every user u (see docs/reliability.md):
 *   initial - acked(u) - unknown(u) <= final(u) <= initial - acked(u)
 * where acked are the charges whose BYE returned KVI_OK and unknown those
 * whose BYE failed (TIMEOUT/CONNECT/...: the sub may or may not have been
 * applied).  The right inequality is "no acknowledged debit is lost".
 *
 * Each mode prints a line "RESULT ..." with its figures.  Exit 0 pass, 1
 * fail, 77 skipped (server binary or engine module missing).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing_logic.h"
#include "rel_util.h"
#include "testcluster.h"
#include "testserver.h"

#define CREDIT INT64_C(1000000000000)
/* Slack on top of the configured timeout for a failing call: scheduling on
 * a loaded 2-core CI machine, more under sanitizers. */
#define MARGIN_MS (rel_asan() ? 1500 : 600)

static kvi *new_context(const char *url)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        rel_fail("kvi_new");
    kvi_status st = kvi_add_url(k, url);
    if (st == KVI_E_MODULE_MISSING)
        rel_skip("engine module not built");
    if (st != KVI_OK)
        rel_fail("kvi_add_url(%s): %s: %s", url, kvi_status_name(st), kvi_errmsg(k));
    return k;
}

static kvi_conn *conn_of(kvi *k, const char *id)
{
    kvi_conn *c = NULL;
    kvi_status st = kvi_conn_get(k, id, &c);
    if (st != KVI_OK)
        rel_fail("kvi_conn_get(%s): %s", id, kvi_status_name(st));
    return c;
}

/* Compares every user's final credit with what was acknowledged.  Returns
 * the amount of acknowledged debits missing from the store (0 = none lost)
 * and counts users in *users_lost; fails when a final credit is below the
 * lower bound (a debit applied that nobody asked for) or unreadable. */
static int64_t check_credits(rel_billing *b, uint64_t *users_lost, int64_t *acked_total,
                             int64_t *unknown_total, uint64_t *acked_calls, uint64_t *unknown_calls)
{
    int64_t lost = 0;
    *users_lost = 0;
    *acked_total = *unknown_total = 0;
    *acked_calls = *unknown_calls = 0;
    for (int u = 0; u < b->nusers; u++) {
        int64_t final = 0;
        kvi_status st = rel_billing_credit(b, u, &final);
        if (st != KVI_OK)
            rel_fail("user %d: final credit unreadable: %s", u, kvi_status_name(st));
        const rel_user *r = &b->users[u];
        int64_t hi = b->credit - r->acked;
        int64_t lo = hi - r->unknown;
        *acked_total += r->acked;
        *unknown_total += r->unknown;
        *acked_calls += r->acked_calls;
        *unknown_calls += r->unknown_calls;
        if (final > hi) {
            lost += final - hi;
            (*users_lost)++;
            printf("user %d: final %" PRId64 " > initial - acked %" PRId64 " (lost %" PRId64 ")\n",
                   u, final, hi, final - hi);
        }
        if (final < lo)
            rel_fail("user %d: final %" PRId64 " below initial - acked - unknown %" PRId64, u,
                     final, lo);
    }
    return lost;
}

/* ---- redis with AOF ----------------------------------------------------------- */

#define AOF_TIMEOUT_MS 400

static int run_redis_aof(void)
{
    const char *extra[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, extra);
    if (r == KVI_TS_MISSING)
        rel_skip(kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        rel_fail("redis-server: %s", kvi_ts_errmsg());

    char url[256];
    snprintf(url, sizeof url, "redis:bill://127.0.0.1:%u/?timeout=%d&connect_timeout=%d",
             kvi_ts_port(s), AOF_TIMEOUT_MS, AOF_TIMEOUT_MS);
    kvi *k = new_context(url);
    rel_billing b = {.conn = conn_of(k, "redis:bill"),
                     .prefix = "aof:",
                     .nusers = 16,
                     .threads = 4,
                     .credit = CREDIT,
                     .run_ms = 8000};
    if (rel_billing_init(&b) != KVI_OK)
        rel_fail("setting credits: %s", kvi_errmsg(k));
    rel_billing_start(&b);

    /* Hang: requests in flight time out; those the server reads after
     * SIGCONT are applied although their caller saw TIMEOUT (unknown). */
    kvi_test_sleep_ms(1500);
    if (kill(kvi_ts_pid(s), SIGSTOP) != 0)
        rel_fail("SIGSTOP");
    kvi_test_sleep_ms(1200);
    kill(kvi_ts_pid(s), SIGCONT);
    kvi_test_sleep_ms(1000);
    /* Crash: whatever was acknowledged must be in the AOF. */
    if (kvi_ts_kill(s) != KVI_TS_OK)
        rel_fail("kill: %s", kvi_ts_errmsg());
    int64_t killed_at = kvi_test_mono_ms();
    kvi_test_sleep_ms(1200);
    if (kvi_ts_restart(s) != KVI_TS_OK) {
        kvi_ts_print_log(s, stdout, 2000);
        rel_fail("restart: %s", kvi_ts_errmsg());
    }
    int64_t back_at = kvi_test_mono_ms();
    atomic_store(&b.mark_ms, back_at);

    if (rel_billing_join(&b, 5000) != 0)
        rel_fail("the workers did not finish by themselves");
    rel_billing_print(&b, "redis-aof");

    uint64_t users_lost, acked_calls, unknown_calls;
    int64_t acked, unknown;
    int64_t lost = check_credits(&b, &users_lost, &acked, &unknown, &acked_calls, &unknown_calls);
    int64_t max_fail = atomic_load(&b.max_fail_ms);
    printf("RESULT redis-aof: acked_debits=%" PRIu64 " (amount %" PRId64 ") unknown_debits=%" PRIu64
           " (amount %" PRId64 ") lost_amount=%" PRId64 " max_failing_call_ms=%" PRId64
           " timeout_ms=%d ops_after_restart=%" PRIu64 " outage_ms=%" PRId64 "\n",
           acked_calls, acked, unknown_calls, unknown, lost, max_fail, AOF_TIMEOUT_MS,
           atomic_load(&b.ok_after_mark), back_at - killed_at);
    if (lost != 0)
        rel_fail("%" PRIu64 " users lost acknowledged debits (amount %" PRId64 ")", users_lost,
                 lost);
    if (atomic_load(&b.ops_failed) == 0)
        rel_fail("no call failed: the fault was not injected");
    if (max_fail > AOF_TIMEOUT_MS + MARGIN_MS)
        rel_fail("a failing call took %" PRId64 " ms (timeout %d ms)", max_fail, AOF_TIMEOUT_MS);
    if (atomic_load(&b.ok_after_mark) == 0)
        rel_fail("no call succeeded after the restart");
    if (atomic_load(&b.dialogs_lost) != 0)
        rel_fail("%" PRIu64 " acknowledged dialog records lost", atomic_load(&b.dialogs_lost));
    rel_billing_free(&b);
    kvi_free(k);
    kvi_ts_free(s);
    printf("PASS redis-aof\n");
    return 0;
}

/* ---- Redis Cluster ----------------------------------------------------------- */

#define CL_TIMEOUT_MS 1500

static int wait_supported(void)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        rel_fail("kvi_new");
    /* lazy: only the option parsing is asked. */
    kvi_status st = kvi_add_url(k, "redis:probe://127.0.0.1:1/?lazy=1&wait_replicas=1");
    if (st == KVI_E_MODULE_MISSING)
        rel_skip("redis engine module not built");
    if (st != KVI_OK)
        printf("wait_replicas not accepted: %s: %s\n", kvi_status_name(st), kvi_errmsg(k));
    kvi_free(k);
    return st == KVI_OK;
}

/* Waits (up to 20 s) until master node i has a replica in state online:
 * the failover measured is then the one of a synchronised replica. */
static int wait_replica_online(kvi_tc_cluster *cl, size_t i)
{
    const char *args[] = {"INFO", "replication", NULL};
    int64_t until = kvi_test_mono_ms() + 20000;
    do {
        char *out = NULL;
        int online = kvi_tc_cli(cl, i, &out, args) == KVI_TS_OK && out != NULL &&
                     strstr(out, "state=online") != NULL;
        free(out);
        if (online)
            return 0;
        kvi_test_sleep_ms(100);
    } while (kvi_test_mono_ms() < until);
    return -1;
}

static int run_redis_cluster(int with_wait)
{
    if (with_wait && !wait_supported())
        rel_skip("the redis engine has no wait_replicas option yet (Redis WAIT after "
                 "counter writes); the variant without WAIT runs as reliability_redis_cluster");
    /* Redis 7 waits repl-diskless-sync-delay (5 s) before the first full
     * sync of a replica, and kvi_tc_start() does not wait for it: without
     * this a master killed early takes all its data along. */
    const char *extra[] = {"--repl-diskless-sync-delay", "0", NULL};
    kvi_tc_spec spec = {.masters = 3, .replicas = 1, .node_timeout_ms = 1000, .extra = extra};
    kvi_tc_cluster *cl = NULL;
    kvi_ts_result r = kvi_tc_start(&spec, &cl);
    if (r == KVI_TS_MISSING)
        rel_skip(kvi_tc_errmsg());
    if (r != KVI_TS_OK)
        rel_fail("cluster: %s", kvi_tc_errmsg());

    char seeds[1024], url[1200];
    kvi_tc_url(cl, "redis:bill", seeds, sizeof seeds);
    snprintf(url, sizeof url, "%s?timeout=%d&connect_timeout=500%s", seeds, CL_TIMEOUT_MS,
             with_wait ? "&wait_replicas=1" : "");
    kvi *k = new_context(url);
    rel_billing b = {.conn = conn_of(k, "redis:bill"),
                     .prefix = "cl:",
                     .nusers = 24,
                     .threads = 4,
                     .credit = CREDIT,
                     .run_ms = 12000};
    if (rel_billing_init(&b) != KVI_OK)
        rel_fail("setting credits: %s", kvi_errmsg(k));
    rel_billing_start(&b);

    kvi_test_sleep_ms(2500);
    size_t victim = 0;
    if (kvi_tc_master_of(cl, 1, 0, &victim) != KVI_TS_OK)
        rel_fail("master of slot 0: %s", kvi_tc_errmsg());
    if (wait_replica_online(cl, victim) != 0)
        rel_fail("the replica of node %zu never came online", victim);
    if (getenv("REL_DEBUG")) {
        char *out = NULL;
        const char *a3[] = {"INFO", "replication", NULL};
        kvi_tc_cli(cl, victim, &out, a3);
        printf("victim %zu before kill:\n%s", victim, out ? out : "");
        free(out);
    }
    if (kvi_ts_kill(kvi_tc_server(cl, victim)) != KVI_TS_OK)
        rel_fail("kill: %s", kvi_ts_errmsg());
    int64_t killed_at = kvi_test_mono_ms();
    atomic_store(&b.mark_ms, killed_at);
    /* The operator brings the dead node back: it rejoins as a replica of
     * the promoted one, which (with wait_replicas=1) can acknowledge writes
     * again only then. */
    kvi_test_sleep_ms(4000);
    if (kvi_ts_restart(kvi_tc_server(cl, victim)) != KVI_TS_OK)
        rel_fail("restarting node %zu: %s", victim, kvi_ts_errmsg());

    if (rel_billing_join(&b, 8000) != 0)
        rel_fail("the workers did not finish by themselves");
    const char *label = with_wait ? "redis-cluster-wait" : "redis-cluster";
    rel_billing_print(&b, label);

    /* Traffic resumed for every user, also those whose master died: the
     * time to the last user's first success after the kill is the
     * failover as the application sees it. */
    int64_t resumed = 0;
    for (int u = 0; u < b.nusers; u++) {
        if (b.users[u].first_ok_after_mark == 0)
            rel_fail("user %d: no call succeeded after the master was killed", u);
        if (b.users[u].first_ok_after_mark - killed_at > resumed)
            resumed = b.users[u].first_ok_after_mark - killed_at;
    }
    if (getenv("REL_DEBUG")) {
        for (size_t i = 0; i < kvi_tc_size(cl); i++) {
            if (!kvi_ts_running(kvi_tc_server(cl, i)))
                continue;
            char *out = NULL;
            const char *a1[] = {"CLUSTER", "NODES", NULL};
            const char *a2[] = {"DBSIZE", NULL};
            const char *a3[] = {"INFO", "replication", NULL};
            kvi_tc_cli(cl, i, &out, a1);
            printf("node %zu port %u:\n%s", i, kvi_tc_port(cl, i), out ? out : "");
            free(out);
            kvi_tc_cli(cl, i, &out, a2);
            printf("dbsize %s", out ? out : "");
            free(out);
            kvi_tc_cli(cl, i, &out, a3);
            printf("%s", out ? out : "");
            free(out);
        }
    }
    uint64_t users_lost, acked_calls, unknown_calls;
    int64_t acked, unknown;
    int64_t lost = check_credits(&b, &users_lost, &acked, &unknown, &acked_calls, &unknown_calls);
    printf("RESULT %s: acked_debits=%" PRIu64 " (amount %" PRId64 ") unknown_debits=%" PRIu64
           " (amount %" PRId64 ") lost_amount=%" PRId64 " users_with_loss=%" PRIu64
           " dialogs_lost=%" PRIu64 " resumed_after_ms=%" PRId64 " max_failing_call_ms=%" PRId64
           "\n",
           label, acked_calls, acked, unknown_calls, unknown, lost, users_lost,
           atomic_load(&b.dialogs_lost), resumed, atomic_load(&b.max_fail_ms));
    if (with_wait && lost != 0)
        rel_fail("with wait_replicas=1, %" PRIu64 " users lost acknowledged debits (amount %" PRId64
                 ")",
                 users_lost, lost);
    if (atomic_load(&b.ops_failed) == 0 && resumed == 0)
        rel_fail("nothing noticed the failover");
    rel_billing_free(&b);
    kvi_free(k);
    kvi_tc_free(cl);
    printf("PASS %s\n", label);
    return 0;
}

/* ---- memcached --------------------------------------------------------------- */

#define MC_TIMEOUT_MS 400

static int run_memcached(void)
{
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_memcached_start(&s, NULL);
    if (r == KVI_TS_MISSING)
        rel_skip(kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        rel_fail("memcached: %s", kvi_ts_errmsg());
    char url[256];
    snprintf(url, sizeof url, "memcached:bill://127.0.0.1:%u/?timeout=%d&connect_timeout=%d",
             kvi_ts_port(s), MC_TIMEOUT_MS, MC_TIMEOUT_MS);
    kvi *k = new_context(url);
    rel_billing b = {.conn = conn_of(k, "memcached:bill"),
                     .prefix = "mc:",
                     .nusers = 16,
                     .threads = 4,
                     .credit = CREDIT,
                     .run_ms = 6000};
    if (rel_billing_init(&b) != KVI_OK)
        rel_fail("setting credits: %s", kvi_errmsg(k));
    rel_billing_start(&b);
    kvi_test_sleep_ms(1500);
    /* A hang first (calls time out), then a crash and a restart. */
    if (kill(kvi_ts_pid(s), SIGSTOP) != 0)
        rel_fail("SIGSTOP");
    kvi_test_sleep_ms(1000);
    if (kvi_ts_kill(s) != KVI_TS_OK)
        rel_fail("kill: %s", kvi_ts_errmsg());
    kvi_test_sleep_ms(800);
    if (kvi_ts_restart(s) != KVI_TS_OK)
        rel_fail("restart: %s", kvi_ts_errmsg());
    int64_t back_at = kvi_test_mono_ms();
    atomic_store(&b.mark_ms, back_at);
    if (rel_billing_join(&b, 5000) != 0)
        rel_fail("the workers did not finish by themselves");
    rel_billing_print(&b, "memcached");

    /* memcached is not durable: every credit is gone after the restart
     * (INVITE then answers "no credit", which is not an error). */
    uint64_t gone = 0;
    for (int u = 0; u < b.nusers; u++) {
        int64_t credit = 0;
        kvi_status st = rel_billing_credit(&b, u, &credit);
        if (st == KVI_NOT_FOUND)
            gone++;
        else if (st != KVI_OK)
            rel_fail("user %d: credit unreadable after restart: %s", u, kvi_status_name(st));
    }
    int64_t max_fail = atomic_load(&b.max_fail_ms);
    printf("RESULT memcached: ops_ok=%" PRIu64 " ops_failed=%" PRIu64
           " max_failing_call_ms=%" PRId64 " timeout_ms=%d ops_after_restart=%" PRIu64
           " credits_lost=%" PRIu64 "/%d\n",
           atomic_load(&b.ops_ok), atomic_load(&b.ops_failed), max_fail, MC_TIMEOUT_MS,
           atomic_load(&b.ok_after_mark), gone, b.nusers);
    if (atomic_load(&b.ops_failed) == 0)
        rel_fail("no call failed: the fault was not injected");
    if (max_fail > MC_TIMEOUT_MS + MARGIN_MS)
        rel_fail("a failing call took %" PRId64 " ms (timeout %d ms)", max_fail, MC_TIMEOUT_MS);
    if (atomic_load(&b.ok_after_mark) == 0)
        rel_fail("no call succeeded after the restart");
    if (gone != (uint64_t)b.nusers)
        rel_fail("only %" PRIu64 " of %d credits are gone after a memcached restart", gone,
                 b.nusers);
    /* The same handle works again without any action: a new credit can be
     * set and an INVITE admitted. */
    if (billing_set_credit(b.conn, b.prefix, "again", 100) != KVI_OK)
        rel_fail("store after restart: %s", kvi_errmsg(k));
    int inv = billing_invite(b.conn, b.prefix, "again-1", "again", 1, 1000);
    if (inv != BILLING_OK)
        rel_fail("INVITE after restart: %d", inv);
    rel_billing_free(&b);
    kvi_free(k);
    kvi_ts_free(s);
    printf("PASS memcached\n");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "redis-aof") == 0)
        return run_redis_aof();
    if (argc >= 2 && strcmp(argv[1], "redis-cluster") == 0)
        return run_redis_cluster(argc >= 3 && strcmp(argv[2], "wait") == 0);
    if (argc >= 2 && strcmp(argv[1], "memcached") == 0)
        return run_memcached();
    fprintf(stderr, "usage: rel_faults redis-aof|redis-cluster [wait]|memcached\n");
    return 2;
}
