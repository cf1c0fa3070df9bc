/*
 * test_examples_servers.c -- the two use cases against real servers started
 * here on free 127.0.0.1 ports: billing on a standalone redis, on a 3-master
 * / 3-replica Redis Cluster and on memcached must end with exact credits, and
 * its --overlap mode must show the old check-at-INVITE logic going below 0
 * and the reservation logic never, both with exact credits; password_cache
 * must run on redis.
 *
 * usage: test_examples_servers BILLING_PROGRAM PASSWORD_CACHE_PROGRAM
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>
#include "kvitest.h"

#include "testclock.h"
#include "testcluster.h"
#include "testserver.h"

static const char *billing_prog;
static const char *password_prog;

/* Runs a command line, returns its exit status and its stdout in out. */
static int run(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    printf("$ %s\n%s", cmd, out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The lowest credit on the result line of one logic of billing --overlap,
 * "NAME: lowest credit N, below 0: yes|no, credits exact: yes"; fails when
 * the line is missing or the credits were not exact. */
static long long logic_lowest(const char *out, const char *name)
{
    char head[64];
    snprintf(head, sizeof head, "\n%s: lowest credit ", name);
    const char *p = strstr(out, head);
    if (p == NULL)
        fail_msg("no result line for %s", name);
    long long lowest = 0;
    char below[8] = "", exact[8] = "";
    if (sscanf(p + strlen(head), "%lld, below 0: %7[a-z], credits exact: %7[a-z]", &lowest, below,
               exact) != 3)
        fail_msg("cannot read the result line of %s", name);
    assert_string_equal(below, lowest < 0 ? "yes" : "no");
    assert_string_equal(exact, "yes");
    return lowest;
}

static void billing_exact(const char *url)
{
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "%s --url '%s' --workers 4 --users 20 --calls 3000 --credit 5000",
             billing_prog, url);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "4 processes"));
    assert_non_null(strstr(out, "credits exact: yes"));
    /* The credit ran out for some users: both outcomes were exercised. */
    assert_null(strstr(out, "rejected (403 Not enough credit) 0,"));
    assert_null(strstr(out, "calls accepted 0,"));

    /* Many calls per user in flight on 4 proxies: the old logic overdraws,
     * the reservations never do; every credit is exact with both. */
    snprintf(cmd, sizeof cmd, "%s --overlap --url '%s' --workers 4", billing_prog, url);
    int rc = run(cmd, out, sizeof out);
    if (rc == 77)
        fail_msg("billing --overlap skipped the reservation logic: the engine lacks "
                 "KVI_CAP_CONDITIONAL");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "4 processes"));
    assert_true(logic_lowest(out, "check-at-INVITE") < 0);
    assert_true(logic_lowest(out, "reserve") >= 0);
    /* Both outcomes of a reservation were exercised. */
    const char *line = strstr(out, "\nreserve ");
    assert_non_null(line);
    unsigned long long accepted = 0, rejected = 0;
    assert_int_equal(
        sscanf(line, " reserve accepted %llu rejected (403) %llu", &accepted, &rejected), 2);
    assert_true(accepted > 0);
    assert_true(rejected > 0);
}

/* A throwaway redis-server, or a loud skip when its binary is missing. */
static kvi_ts_server *redis_or_skip(void)
{
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, NULL);
    if (r == KVI_TS_MISSING) {
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    }
    assert_int_equal(r, KVI_TS_OK);
    return s;
}

static void test_billing_on_redis_standalone_is_exact(void **state)
{
    (void)state;
    kvi_ts_server *s = redis_or_skip();
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", (unsigned)kvi_ts_port(s));
    billing_exact(url);
    kvi_ts_free(s);
}

static void test_billing_on_redis_cluster_is_exact(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 1};
    kvi_tc_cluster *cl = NULL;
    kvi_ts_result r = kvi_tc_start(&spec, &cl);
    if (r == KVI_TS_MISSING) {
        KVI_TEST_SKIP_CASE("%s", kvi_tc_errmsg());
    }
    if (r != KVI_TS_OK)
        fail_msg("cluster: %s", kvi_tc_errmsg());
    char url[1024];
    kvi_tc_url(cl, "redis", url, sizeof url);
    billing_exact(url);
    kvi_tc_free(cl);
}

static void test_billing_on_memcached_is_exact(void **state)
{
    (void)state;
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_memcached_start(&s, NULL);
    if (r == KVI_TS_MISSING) {
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    }
    assert_int_equal(r, KVI_TS_OK);
    char url[128];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/", (unsigned)kvi_ts_port(s));
    billing_exact(url);
    kvi_ts_free(s);
}

/* The server stops answering for a while (SIGSTOP) under a 100 ms command
 * timeout: writes whose outcome is unknown are counted, never retried, and
 * the credits still agree with what was acknowledged plus that slack; the
 * reservations never take a credit below 0.  The circuit breaker is off
 * (down_after=0): while it holds a server down, calls fail at once with the
 * same KVI_E_TIMEOUT although nothing was sent, which would only widen the
 * slack. */
static void test_billing_counts_unknown_outcomes_on_redis(void **state)
{
    (void)state;
    kvi_ts_server *s = redis_or_skip();
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd,
             "%s --overlap --logic reserve --calls 60000 --credit 100000 --workers 4 "
             "--url 'redis://127.0.0.1:%u/?timeout=100&down_after=0'",
             billing_prog, (unsigned)kvi_ts_port(s));
    printf("$ %s   (server stopped for 800 ms after 700 ms)\n", cmd);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    kvi_test_sleep_ms(700);
    assert_int_equal(kill(kvi_ts_pid(s), SIGSTOP), 0);
    kvi_test_sleep_ms(800);
    assert_int_equal(kill(kvi_ts_pid(s), SIGCONT), 0);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    printf("%s", out);
    kvi_ts_free(s);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    const char *line = strstr(out, "\nreserve ");
    assert_non_null(line);
    unsigned long long acc = 0, rej = 0, cut = 0, err = 0, unknown = 0;
    assert_int_equal(sscanf(line,
                            " reserve accepted %llu rejected (403) %llu cut off %llu errors %llu "
                            "unknown outcome %llu",
                            &acc, &rej, &cut, &err, &unknown),
                     5);
    if (unknown == 0)
        fail_msg("no write timed out while the server was stopped (did the run end first?)");
    assert_non_null(strstr(out, "reserve: lowest credit "));
    assert_null(strstr(out, "reserve: lowest credit -"));
    assert_non_null(strstr(out, ", below 0: no, credits exact: within unknown outcomes\n"));
}

static void test_password_cache_runs_on_redis(void **state)
{
    (void)state;
    kvi_ts_server *s = redis_or_skip();
    char cmd[1024], out[8192];
    /* 3 simulated minutes at 600x: about 0.3 s of real time per pass. */
    snprintf(cmd, sizeof cmd, "%s --url 'redis://127.0.0.1:%u/' --users 100 --hours 0.05 --scale 600",
             password_prog, (unsigned)kvi_ts_port(s));
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "on 'redis' (real time)"));
    assert_non_null(strstr(out, "2-hour lifetime"));
    kvi_ts_free(s);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s BILLING PASSWORD_CACHE\n", argv[0]);
        return 2;
    }
    billing_prog = argv[1];
    password_prog = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_billing_on_redis_standalone_is_exact),
        cmocka_unit_test(test_billing_on_redis_cluster_is_exact),
        cmocka_unit_test(test_billing_on_memcached_is_exact),
        cmocka_unit_test(test_billing_counts_unknown_outcomes_on_redis),
        cmocka_unit_test(test_password_cache_runs_on_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
