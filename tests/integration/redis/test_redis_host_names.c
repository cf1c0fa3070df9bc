/*
 * test_redis_host_names.c -- host names in a redis URL are resolved once,
 * when the URL is defined, and an IP address never reaches the resolver:
 * every connect and reconnect uses the addresses found then.
 *
 * The program interposes getaddrinfo() (it exports its own, which the
 * engine module binds to): a call without AI_NUMERICHOST is a resolver call
 * and is counted.  Two names exist only here and never reach a real
 * resolver: "kvi-test-alias" answers the address the test chooses (so the
 * test can move it, as a DNS change would), "kvi-test-no-such-host" does
 * not resolve.  The only real name resolved is "localhost" (also as the
 * name sentinels announce a master by).  Every server is on 127.0.0.1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"
#include "testsentinel.h"
#include "testserver.h"

static atomic_int g_resolver_calls;
static char g_alias_target[64] = "127.0.0.1";
static pthread_mutex_t g_alias_mu = PTHREAD_MUTEX_INITIALIZER;

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

/* The interposer: counts resolver calls, answers the test's two names. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static gai_fn real;
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    if (real == NULL)
        return EAI_SYSTEM;
    if (node != NULL && (hints == NULL || !(hints->ai_flags & AI_NUMERICHOST))) {
        atomic_fetch_add(&g_resolver_calls, 1);
        if (strcmp(node, "kvi-test-no-such-host") == 0)
            return EAI_NONAME;
        if (strcmp(node, "kvi-test-alias") == 0) {
            char target[64];
            pthread_mutex_lock(&g_alias_mu);
            snprintf(target, sizeof target, "%s", g_alias_target);
            pthread_mutex_unlock(&g_alias_mu);
            struct addrinfo h = hints ? *hints : (struct addrinfo){0};
            h.ai_flags |= AI_NUMERICHOST;
            return real(target, service, &h, res);
        }
    }
    return real(node, service, hints, res);
}

static void alias_to(const char *addr)
{
    pthread_mutex_lock(&g_alias_mu);
    snprintf(g_alias_target, sizeof g_alias_target, "%s", addr);
    pthread_mutex_unlock(&g_alias_mu);
}

static kvi_ts_server *g_redis;

static int group_setup(void **state)
{
    (void)state;
    kvi_ts_result r = kvi_ts_redis_start(&g_redis, NULL);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        kvi_test_fail("cannot start redis-server: %s", kvi_ts_errmsg());
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kvi_ts_free(g_redis);
    return 0;
}

/* Defines host:port of the test's server (with options), checks a store,
 * restarts the server (every connection of kvi is cut, so the next call
 * reconnects) and checks a store again.  Returns the resolver calls made
 * while defining in *at_definition and after it in *after. */
static void define_store_reconnect(const char *host, const char *options, int *at_definition,
                                   int *after, void (*between)(void))
{
    char url[256];
    snprintf(url, sizeof url, "redis://%s:%u/%s", host, (unsigned)kvi_ts_port(g_redis),
             options);
    kvi *k = kvi_test_context(NULL);
    int before = atomic_load(&g_resolver_calls);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("%s: %s: %s", url, kvi_status_name(st), kvi_errmsg(k));
    int defined = atomic_load(&g_resolver_calls);
    if (between != NULL)
        between();
    assert_int_equal(kvi_store(k, "redis", "hn", 2, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_ts_restart(g_redis), KVI_TS_OK);
    /* The pooled connection is dead now: a reconnect (a store may be sent
     * again on a fresh connection). */
    st = kvi_store(k, "redis", "hn", 2, "2", 1, 0);
    if (st != KVI_OK)
        fail_msg("store after the restart: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "redis", "hn", 2, &v), KVI_OK);
    kvi_value_free(&v);
    kvi_free(k);
    *at_definition = defined - before;
    *after = atomic_load(&g_resolver_calls) - defined;
    print_message("  %s: %d resolver call(s) when defined, %d after (stores, a reconnect)\n", url,
                  *at_definition, *after);
}

static void test_an_ip_address_never_reaches_the_resolver(void **state)
{
    (void)state;
    int at_def, after;
    define_store_reconnect("127.0.0.1", "", &at_def, &after, NULL);
    assert_int_equal(at_def, 0);
    assert_int_equal(after, 0);
    /* Lazy: nothing at definition, nothing at the first connect either. */
    define_store_reconnect("127.0.0.1", "?lazy=yes", &at_def, &after, NULL);
    assert_int_equal(at_def + after, 0);
}

static void move_alias_away(void)
{
    /* As a DNS change would: nothing listens there. */
    alias_to("127.0.0.2");
}

static void test_a_name_is_resolved_once_when_the_url_is_defined(void **state)
{
    (void)state;
    int at_def, after;
    alias_to("127.0.0.1");
    define_store_reconnect("kvi-test-alias", "", &at_def, &after, move_alias_away);
    assert_int_equal(at_def, 1);
    /* The reconnect used the address found at definition: the name moved
     * meanwhile, and kvi never asked again. */
    assert_int_equal(after, 0);
    /* lazy=yes changes when kvi connects, not when it resolves. */
    alias_to("127.0.0.1");
    define_store_reconnect("kvi-test-alias", "?lazy=yes", &at_def, &after, move_alias_away);
    assert_int_equal(at_def, 1);
    assert_int_equal(after, 0);
}

static void test_localhost_is_resolved_once(void **state)
{
    (void)state;
    int at_def, after;
    define_store_reconnect("localhost", "", &at_def, &after, NULL);
    assert_int_equal(at_def, 1);
    assert_int_equal(after, 0);
}

static void test_a_name_that_does_not_resolve_is_a_connect_error_naming_it(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "redis://kvi-test-no-such-host:%u/?connect_timeout=500",
             (unsigned)kvi_ts_port(g_redis));
    kvi *k = kvi_test_context(NULL);
    kvi_status st = kvi_add_url(k, url);
    print_message("  %s -> %s: %s\n", url, kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(st, KVI_E_CONNECT);
    assert_non_null(strstr(kvi_errmsg(k), "cannot resolve kvi-test-no-such-host"));
    kvi_free(k);
}

static void keep_master_line(void *ud, kvi_log_level level, const char *msg)
{
    (void)level;
    if (strstr(msg, "master \"mymaster\" is") != NULL)
        snprintf(ud, 256, "%s", msg);
}

/* A name learned at run time: sentinels that announce the master by name
 * ("localhost", announce-hostnames).  It is looked up in the background;
 * the calls go on once it is in (the first connect to it fails at once,
 * the sentinel path tries again). */
static void test_a_master_named_by_name_by_the_sentinels_is_reached(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {.replicas = 0, .sentinels = 1, .quorum = 1, .monitor_host = "localhost"};
    kvi_tsn_setup *ts = kvi_test_sentinels_case(&spec);
    char url[256], master[256] = "";
    kvi_tsn_url(ts, "redis", url, sizeof url);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_set_log(k, keep_master_line, master, KVI_LOG_INFO), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("%s: %s: %s", url, kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(kvi_store(k, "redis", "ln", 2, "x", 1, 0), KVI_OK);
    print_message("  %s\n", master);
    char want[64];
    snprintf(want, sizeof want, "is localhost:%u", (unsigned)kvi_ts_port(kvi_tsn_data(ts, 0)));
    assert_non_null(strstr(master, want));
    kvi_free(k);
    kvi_tsn_free(ts);
}

/* The same set-up, and a fork right after the URL is defined (the parent's
 * lookup of the master's name may still be under way): the child looks
 * the name up itself and reaches the master, and so does the parent. */
static void test_a_child_after_fork_reaches_a_master_named_by_name(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {.replicas = 0, .sentinels = 1, .quorum = 1, .monitor_host = "localhost"};
    kvi_tsn_setup *ts = kvi_test_sentinels_case(&spec);
    char url[256];
    kvi_tsn_url(ts, "redis", url, sizeof url);
    kvi *k = kvi_test_context1(url);
    /* ASan's allocator would block the child, valgrind fail it
     * (kvitest.h): the parent's lookup is let end first there. */
    if (KVI_TEST_ASAN || kvi_test_valgrind())
        assert_int_equal(kvi_store(k, "redis", "fp", 2, "parent", 6, 0), KVI_OK);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(30);
        kvi_status st = kvi_store(k, "redis", "fc", 2, "child", 5, 0);
        if (st != KVI_OK)
            printf("# child: %s: %s\n", kvi_status_name(st), kvi_errmsg(k));
        fflush(stdout);
        _exit(st == KVI_OK ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "redis", "fc", 2, &v), KVI_OK);
    assert_memory_equal(v.data, "child", 5);
    kvi_value_free(&v);
    kvi_free(k);
    kvi_tsn_free(ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_ip_address_never_reaches_the_resolver),
        cmocka_unit_test(test_a_name_is_resolved_once_when_the_url_is_defined),
        cmocka_unit_test(test_localhost_is_resolved_once),
        cmocka_unit_test(test_a_name_that_does_not_resolve_is_a_connect_error_naming_it),
        cmocka_unit_test(test_a_master_named_by_name_by_the_sentinels_is_reached),
        cmocka_unit_test(test_a_child_after_fork_reaches_a_master_named_by_name),
    };
    /* KVI_TEST_FILTER=test_localhost* runs only those cases. */
    if (getenv("KVI_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KVI_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
