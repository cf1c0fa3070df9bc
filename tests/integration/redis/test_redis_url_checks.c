/*
 * test_redis_url_checks.c -- redis URLs that cannot work are refused when
 * they are added, naming what is wrong, before any connection is tried:
 * TLS options without tls=yes or a key without its certificate, a unix
 * socket together with hosts, a port or a cluster, a database that is not
 * a number or not 0 on a cluster (no server needed); cluster=yes against
 * a server that is not a cluster node.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"

static void test_impossible_urls_are_refused_naming_the_fault(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        kvi_status want;
        const char *words;
    } rows[] = {
        {"redis://127.0.0.1:1/?tls_ca=/nonexistent.pem", KVI_E_INVALID, "tls_ca needs tls=yes"},
        {"redis://127.0.0.1:1/?tls_sni=x", KVI_E_INVALID, "tls_sni needs tls=yes"},
        {"redis://127.0.0.1:1/?tls=yes&tls_key=/k.pem", KVI_E_INVALID, "tls_key needs tls_cert"},
        {"redis://127.0.0.1:1/?socket=/run/r.sock", KVI_E_INVALID,
         "socket and a host list exclude each other"},
        {"redis://?socket=/run/r.sock&cluster=yes", KVI_E_INVALID, "a cluster is reached over TCP"},
        {"redis://%2Frun%2Fr.sock,127.0.0.1/", KVI_E_INVALID, "excludes other hosts"},
        {"redis://%2Frun%2Fr.sock/?socket=/run/s.sock", KVI_E_INVALID,
         "socket and a host list exclude each other"},
        {"redis://%2Frun%2Fr.sock:6379/", KVI_E_INVALID, "takes no port"},
        {"redis://%2Frun%2Fr.sock/?cluster=yes", KVI_E_INVALID, "a cluster is reached over TCP"},
        {"redis://127.0.0.1:1/abc", KVI_E_BAD_URL, "database must be a number"},
        {"redis://127.0.0.1:1/-1", KVI_E_BAD_URL, "database must be a number"},
        {"redis://127.0.0.1:1/3?cluster=yes", KVI_E_INVALID, "a cluster has only database 0"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        kvi *k = kvi_test_context(NULL);
        kvi_status st = kvi_add_url(k, rows[i].url);
        if (st != rows[i].want || strstr(kvi_errmsg(k), rows[i].words) == NULL)
            fail_msg("%s: %s '%s', want %s with '%s'", rows[i].url, kvi_status_name(st),
                     kvi_errmsg(k), kvi_status_name(rows[i].want), rows[i].words);
        /* Nothing was defined. */
        kvi_conn *c = NULL;
        assert_int_equal(kvi_conn_get(k, "redis", &c), KVI_E_UNKNOWN_ENGINE);
        kvi_free(k);
    }
}

/* cluster=yes against a server that is not a cluster node: refused when
 * added (or on first use when lazy), naming the server. */
static void test_cluster_yes_on_a_standalone_server_is_refused(void **state)
{
    (void)state;
    kvi_ts_server *s = kvi_test_redis(NULL);
    char url[256];
    kvi_test_url(url, sizeof url, "redis", s, "?cluster=yes");
    kvi *k = kvi_test_context(NULL);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_E_BACKEND || strstr(kvi_errmsg(k), "is not a cluster node") == NULL)
        fail_msg("%s: %s '%s'", url, kvi_status_name(st), kvi_errmsg(k));
    kvi_free(k);
    kvi_test_url(url, sizeof url, "redis", s, "?cluster=yes&lazy=yes");
    k = kvi_test_context1(url);
    st = kvi_store(k, "redis", "a", 1, "1", 1, 0);
    if (st != KVI_E_BACKEND || strstr(kvi_errmsg(k), "is not a cluster node") == NULL)
        fail_msg("lazy %s: store: %s '%s'", url, kvi_status_name(st), kvi_errmsg(k));
    kvi_free(k);
    kvi_ts_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_impossible_urls_are_refused_naming_the_fault),
        cmocka_unit_test(test_cluster_yes_on_a_standalone_server_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
