/*
 * test_redis_tls.c -- the redis engine over TLS against real redis-server
 * processes (TLS ports on 127.0.0.1) with certificates made by openssl at
 * test time (testtls.h): credentials and database over TLS, the host name
 * and the address checked, session reuse on reconnect, and every error a
 * TLS set-up can have -- each within connect_timeout, with its documented
 * status (docs/engines/redis.md) and a message that names the cause and
 * never the password.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"
#include "testtls.h"

#define PASSWORD "tls-s3cret-pw"
#define CONNECT_TIMEOUT_MS 1000
/* Slack over connect_timeout for a failing connect (slow, loaded CI). */
#define MARGIN_MS 1500

/* The servers every test shares (started once). */
static struct {
    char *dir;
    kvi_ts_server *plain_auth; /* server.pem, requirepass, TLS + plain port */
    uint16_t tls_auth;
    kvi_ts_server *mtls; /* tls-auth-clients yes */
    uint16_t tls_mtls;
    kvi_ts_server *expired;
    uint16_t tls_expired;
    kvi_ts_server *wrongname;
    uint16_t tls_wrongname;
} g;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static kvi_ts_server *start_tls(const char *cert, int auth_clients, const char *const *extra,
                                uint16_t *port)
{
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_tt_redis_start(&s, g.dir, cert, auth_clients, extra, port);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        kvi_test_fail("cannot start a TLS redis-server: %s", kvi_ts_errmsg());
    return s;
}

static int group_setup(void **state)
{
    (void)state;
    if (kvi_ts_make_tempdir("tls", &g.dir) != KVI_TS_OK)
        kvi_test_fail("no temp dir: %s", kvi_ts_errmsg());
    kvi_ts_result r = kvi_tt_make_certs(g.dir);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        kvi_test_fail("cannot make certificates: %s", kvi_ts_errmsg());
    const char *pw[] = {"--requirepass", PASSWORD, NULL};
    g.plain_auth = start_tls("server", 0, pw, &g.tls_auth);
    g.mtls = start_tls("server", 1, NULL, &g.tls_mtls);
    g.expired = start_tls("expired", 0, NULL, &g.tls_expired);
    g.wrongname = start_tls("wrongname", 0, NULL, &g.tls_wrongname);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kvi_ts_free(g.plain_auth);
    kvi_ts_free(g.mtls);
    kvi_ts_free(g.expired);
    kvi_ts_free(g.wrongname);
    kvi_ts_remove_tree(g.dir);
    free(g.dir);
    return 0;
}

static kvi *new_kvi(void)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    return k;
}

/* kvi_add_url of the printf-style URL on a new context in *k; the time it
 * took in *ms. */
static kvi_status open_urlf(kvi **k, int64_t *ms, const char *fmt, ...)
{
    char url[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    *k = new_kvi();
    int64_t t0 = mono_ms();
    kvi_status st = kvi_add_url(*k, url);
    if (ms != NULL)
        *ms = mono_ms() - t0;
    return st;
}

/* Opening the URL fails with want, within connect_timeout (+ margin),
 * with a message that holds every word in needles and not the
 * password. */
static void expect_open_error(kvi_status want, const char *const *needles, const char *fmt, ...)
{
    char url[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    kvi *k = new_kvi();
    int64_t t0 = mono_ms();
    kvi_status st = kvi_add_url(k, url);
    int64_t ms = mono_ms() - t0;
    const char *msg = kvi_errmsg(k);
    print_message("  %s -> %s in %lld ms: %s\n", url, kvi_status_name(st), (long long)ms, msg);
    if (st != want)
        fail_msg("%s: got %s (%s), want %s", url, kvi_status_name(st), msg, kvi_status_name(want));
    assert_true(ms < CONNECT_TIMEOUT_MS + MARGIN_MS);
    assert_null(strstr(msg, PASSWORD));
    for (size_t i = 0; needles != NULL && needles[i] != NULL; i++)
        if (strstr(msg, needles[i]) == NULL)
            fail_msg("message \"%s\" does not name \"%s\"", msg, needles[i]);
    kvi_free(k);
}

static void store_fetch(kvi *k, const char *id)
{
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_store(k, id, "tk", 2, "over tls\0!", 10, 0), KVI_OK);
    assert_int_equal(kvi_fetch(k, id, "tk", 2, &v), KVI_OK);
    assert_int_equal(v.len, 10);
    assert_memory_equal(v.data, "over tls\0!", 10);
    kvi_value_free(&v);
}

static void test_tls_with_password_and_database(void **state)
{
    (void)state;
    kvi *k;
    kvi_status st = open_urlf(&k, NULL, "redis://:%s@localhost:%u/3?tls=yes&tls_ca=%s/ca.pem",
                              PASSWORD, g.tls_auth, g.dir);
    if (st != KVI_OK)
        fail_msg("open: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    store_fetch(k, "redis");
    /* The value went to database 3. */
    kvi_reply *r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "DBSIZE", 6, &r), KVI_OK);
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_INTEGER);
    assert_int_equal(kvi_reply_integer(r), 1);
    kvi_reply_free(r);
    kvi_free(k);
}

static void test_tls_checks_an_ip_address_against_the_certificate(void **state)
{
    (void)state;
    kvi *k;
    kvi_status st = open_urlf(&k, NULL, "redis://:%s@127.0.0.1:%u/?tls=yes&tls_ca=%s/ca.pem",
                              PASSWORD, g.tls_auth, g.dir);
    if (st != KVI_OK)
        fail_msg("open: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    store_fetch(k, "redis");
    kvi_free(k);
}

static void test_tls_failover_list_uses_the_next_host(void **state)
{
    (void)state;
    uint16_t dead;
    assert_int_equal(kvi_ts_free_port(&dead), KVI_TS_OK);
    kvi *k;
    kvi_status st = open_urlf(&k, NULL,
                              "redis://:%s@127.0.0.1:%u,localhost:%u/2?tls=yes&tls_ca=%s/ca.pem&"
                              "connect_timeout=%d",
                              PASSWORD, (unsigned)dead, g.tls_auth, g.dir, CONNECT_TIMEOUT_MS);
    if (st != KVI_OK)
        fail_msg("open: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    store_fetch(k, "redis");
    kvi_free(k);
}

static void test_wrong_ca_is_auth_error(void **state)
{
    (void)state;
    const char *words[] = {"certificate", "localhost", NULL};
    expect_open_error(KVI_E_AUTH, words,
                      "redis://:%s@localhost:%u/?tls=yes&tls_ca=%s/other-ca.pem&connect_timeout=%d",
                      PASSWORD, g.tls_auth, g.dir, CONNECT_TIMEOUT_MS);
}

static void test_expired_certificate_is_auth_error(void **state)
{
    (void)state;
    const char *words[] = {"expired", NULL};
    expect_open_error(KVI_E_AUTH, words,
                      "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem&connect_timeout=%d",
                      g.tls_expired, g.dir, CONNECT_TIMEOUT_MS);
}

static void test_name_mismatch_is_auth_error_unless_sni_names_it(void **state)
{
    (void)state;
    const char *words[] = {"mismatch", NULL};
    expect_open_error(KVI_E_AUTH, words,
                      "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem&connect_timeout=%d",
                      g.tls_wrongname, g.dir, CONNECT_TIMEOUT_MS);
    kvi *k;
    kvi_status st =
        open_urlf(&k, NULL, "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem&tls_sni=wrong.example",
                  g.tls_wrongname, g.dir);
    if (st != KVI_OK)
        fail_msg("tls_sni=wrong.example: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    store_fetch(k, "redis");
    kvi_free(k);
    st = open_urlf(&k, NULL, "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem&tls_verify=no",
                   g.tls_wrongname, g.dir);
    if (st != KVI_OK)
        fail_msg("tls_verify=no: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    kvi_free(k);
}

static void test_client_certificate_when_required(void **state)
{
    (void)state;
    const char *words[] = {"certificate", NULL};
    expect_open_error(KVI_E_AUTH, words,
                      "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem&connect_timeout=%d",
                      g.tls_mtls, g.dir, CONNECT_TIMEOUT_MS);
    kvi *k;
    kvi_status st = open_urlf(&k, NULL,
                              "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem&tls_cert=%s/"
                              "client.pem&tls_key=%s/client.key",
                              g.tls_mtls, g.dir, g.dir, g.dir);
    if (st != KVI_OK)
        fail_msg("with a client certificate: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    store_fetch(k, "redis");
    kvi_free(k);
}

static void test_plain_url_against_a_tls_port_says_so(void **state)
{
    (void)state;
    const char *words[] = {"tls=yes", NULL};
    expect_open_error(KVI_E_CONNECT, words, "redis://:%s@127.0.0.1:%u/?connect_timeout=%d",
                      PASSWORD, g.tls_auth, CONNECT_TIMEOUT_MS);
}

static void test_tls_url_against_a_plain_port_says_so(void **state)
{
    (void)state;
    /* The server may answer the ClientHello with an error line (not TLS)
     * or wait for the rest of an inline command (a timeout); either way
     * within connect_timeout and naming TLS. */
    char url[1024];
    snprintf(url, sizeof url,
             "redis://:%s@127.0.0.1:%u/?tls=yes&tls_ca=%s/ca.pem&connect_timeout=%d", PASSWORD,
             kvi_ts_port(g.plain_auth), g.dir, CONNECT_TIMEOUT_MS);
    kvi *k = new_kvi();
    int64_t t0 = mono_ms();
    kvi_status st = kvi_add_url(k, url);
    int64_t ms = mono_ms() - t0;
    print_message("  %s -> %s in %lld ms: %s\n", url, kvi_status_name(st), (long long)ms,
                  kvi_errmsg(k));
    assert_true(st == KVI_E_PROTOCOL || st == KVI_E_TIMEOUT);
    assert_non_null(strstr(kvi_errmsg(k), "TLS"));
    assert_true(ms < CONNECT_TIMEOUT_MS + MARGIN_MS);
    kvi_free(k);
}

static void test_stalled_handshake_times_out(void **state)
{
    (void)state;
    /* A listener that never accepts: the kernel completes the TCP
     * connect, nobody answers the ClientHello. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    const char *words[] = {"TLS handshake", NULL};
    expect_open_error(KVI_E_TIMEOUT, words,
                      "redis://127.0.0.1:%u/?tls=yes&tls_ca=%s/ca.pem&connect_timeout=%d",
                      ntohs(sa.sin_port), g.dir, CONNECT_TIMEOUT_MS);
    close(fd);
}

static void count_resumed(void *ud, kvi_log_level level, const char *msg)
{
    (void)level;
    if (strstr(msg, "TLS session resumed") != NULL)
        __atomic_fetch_add((int *)ud, 1, __ATOMIC_SEQ_CST);
}

static void test_reconnect_resumes_the_tls_session(void **state)
{
    (void)state;
    static int resumed;
    kvi *k = new_kvi();
    assert_int_equal(kvi_set_log(k, count_resumed, &resumed, KVI_LOG_DEBUG), KVI_OK);
    char url[1024];
    snprintf(url, sizeof url, "redis://:%s@localhost:%u/?tls=yes&tls_ca=%s/ca.pem&max_idle=1",
             PASSWORD, g.tls_auth, g.dir);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("open: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    store_fetch(k, "redis");
    assert_int_equal(__atomic_load_n(&resumed, __ATOMIC_SEQ_CST), 0);
    /* The server drops every client (ours too); the next call reconnects. */
    kvi_reply *r = NULL;
    const char *kill = "CLIENT KILL TYPE normal SKIPME no";
    assert_int_equal(kvi_raw_query(k, "redis", kill, strlen(kill), &r), KVI_OK);
    kvi_reply_free(r);
    store_fetch(k, "redis");
    assert_true(__atomic_load_n(&resumed, __ATOMIC_SEQ_CST) >= 1);
    kvi_free(k);
}

/* A TLS server that completes the handshake, then sends an endless stream
 * of lines that are no RESP (openssl s_server relaying `yes`). */
static void test_garbage_after_the_handshake_is_protocol_error(void **state)
{
    (void)state;
    kvi_test_need_program("openssl", "openssl");
    uint16_t port;
    assert_int_equal(kvi_ts_free_port(&port), KVI_TS_OK);
    char script[8192];
    snprintf(script, sizeof script,
             "yes 'x garbage after the handshake' | exec openssl s_server -quiet -accept "
             "127.0.0.1:%u -cert %s/server.pem -key %s/server.key",
             (unsigned)port, g.dir, g.dir);
    const char *argv[] = {"sh", "-c", script, NULL};
    kvi_ts_spec spec = {.name = "tls-garbage", .argv = argv, .port = port};
    kvi_ts_server *s = NULL;
    if (kvi_ts_start(&spec, &s) != KVI_TS_OK)
        fail_msg("cannot start openssl s_server: %s", kvi_ts_errmsg());
    const char *words[] = {"Protocol error", NULL};
    expect_open_error(KVI_E_PROTOCOL, words,
                      "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem&connect_timeout=%d",
                      (unsigned)port, g.dir, CONNECT_TIMEOUT_MS);
    kvi_ts_free(s);
}

static void test_tls_options_need_tls_yes(void **state)
{
    (void)state;
    kvi *k;
    assert_int_equal(open_urlf(&k, NULL, "redis://127.0.0.1:1/?tls_ca=/nonexistent&lazy=yes"),
                     KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "tls=yes"));
    kvi_free(k);
    assert_int_equal(open_urlf(&k, NULL,
                               "redis://127.0.0.1:1/?tls=yes&tls_ca=%s/nonexistent.pem&lazy=yes",
                               g.dir),
                     KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "nonexistent.pem"));
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_with_password_and_database),
        cmocka_unit_test(test_tls_checks_an_ip_address_against_the_certificate),
        cmocka_unit_test(test_tls_failover_list_uses_the_next_host),
        cmocka_unit_test(test_wrong_ca_is_auth_error),
        cmocka_unit_test(test_expired_certificate_is_auth_error),
        cmocka_unit_test(test_name_mismatch_is_auth_error_unless_sni_names_it),
        cmocka_unit_test(test_client_certificate_when_required),
        cmocka_unit_test(test_plain_url_against_a_tls_port_says_so),
        cmocka_unit_test(test_tls_url_against_a_plain_port_says_so),
        cmocka_unit_test(test_stalled_handshake_times_out),
        cmocka_unit_test(test_reconnect_resumes_the_tls_session),
        cmocka_unit_test(test_garbage_after_the_handshake_is_protocol_error),
        cmocka_unit_test(test_tls_options_need_tls_yes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
