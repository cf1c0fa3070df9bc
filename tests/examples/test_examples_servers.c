/*
 * test_examples_servers.c -- the two use cases against real servers started
 * here on free 127.0.0.1 ports: billing on a standalone redis, on a 3-master
 * / 3-replica Redis Cluster and on memcached must end with exact credits;
 * password_cache must run on redis.
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
#include <sys/wait.h>

#include <cmocka.h>

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
}

static void test_billing_on_redis_standalone_is_exact(void **state)
{
    (void)state;
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, NULL);
    if (r == KVI_TS_MISSING) {
        printf("skipped: %s\n", kvi_ts_errmsg());
        skip();
    }
    assert_int_equal(r, KVI_TS_OK);
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
        printf("skipped: %s\n", kvi_tc_errmsg());
        skip();
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
        printf("skipped: %s\n", kvi_ts_errmsg());
        skip();
    }
    assert_int_equal(r, KVI_TS_OK);
    char url[128];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/", (unsigned)kvi_ts_port(s));
    billing_exact(url);
    kvi_ts_free(s);
}

static void test_password_cache_runs_on_redis(void **state)
{
    (void)state;
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, NULL);
    if (r == KVI_TS_MISSING) {
        printf("skipped: %s\n", kvi_ts_errmsg());
        skip();
    }
    assert_int_equal(r, KVI_TS_OK);
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
        cmocka_unit_test(test_password_cache_runs_on_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
