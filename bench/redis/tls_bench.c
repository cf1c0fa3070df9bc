/*
 * tls_bench.c -- the redis engine over TLS, in one run on one throwaway
 * redis-server with a plain and a TLS port (certificates made by openssl):
 *
 *   plain kvi        SET/GET request/reply on the plain port, 1 thread
 *   TLS kvi          the same on the TLS port
 *   redis-benchmark  --tls -c 1 -P 1 on the TLS port (SET, GET): the
 *                    reference the issue sets (TLS kvi / it, goal >= 0.9)
 *   connect          a new connection's connect + TLS handshake + PING
 *                    set-up + the first PING, without session reuse (a new
 *                    context each time) and with it (the server drops the
 *                    connection; the next call reconnects offering the
 *                    ticket it got)
 *
 *     tls_bench [ops]     (default 20000 per case, in 7 rounds: each side
 *                          runs a block per round; ops/s and ratios are
 *                          medians over the rounds)
 *
 * A program, not a test.  Needs redis-server, redis-benchmark, openssl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvi/kvi.h"
#include "testserver.h"
#include "testtls.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define ROUNDS 7

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of ROUNDS values (sorts a copy). */
static double median(const double *v)
{
    double c[ROUNDS];
    memcpy(c, v, sizeof c);
    qsort(c, ROUNDS, sizeof c[0], cmp_double);
    return c[ROUNDS / 2];
}

static kvi *open_or_die(const char *url)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url) != KVI_OK) {
        fprintf(stderr, "tls_bench: %s: %s\n", url, k ? kvi_errmsg(k) : "kvi_new failed");
        exit(1);
    }
    return k;
}

/* ops/s of n SETs (get = 0) or GETs (get = 1) on k. */
static double rate(kvi *k, int n, int get)
{
    char key[32], val[100];
    memset(val, 'v', sizeof val);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "tb_%d", i % 1000);
        kvi_value v = KVI_VALUE_INIT;
        kvi_status st = get ? kvi_fetch(k, "redis", key, strlen(key), &v)
                            : kvi_store(k, "redis", key, strlen(key), val, sizeof val, 0);
        kvi_value_free(&v);
        if (st != KVI_OK) {
            fprintf(stderr, "tls_bench: %s: %s\n", kvi_status_name(st), kvi_errmsg(k));
            exit(1);
        }
    }
    return n / (now_s() - t0);
}

/* redis-benchmark's requests/s for test ("SET" or "GET"), or 0. */
static double redis_benchmark(uint16_t port, const char *dir, int n, const char *test)
{
    char cmd[4096], line[512];
    snprintf(cmd, sizeof cmd,
             "redis-benchmark --tls --cacert %s/ca.pem -h 127.0.0.1 -p %u -c 1 -P 1 -n %d -d 100 "
             "-t %s --csv 2>/dev/null",
             dir, (unsigned)port, n, test);
    FILE *p = popen(cmd, "r");
    double r = 0;
    if (p == NULL)
        return 0;
    while (fgets(line, sizeof line, p) != NULL) {
        char name[64];
        double v;
        if (sscanf(line, "\"%63[^\"]\",\"%lf\"", name, &v) == 2 && strcmp(name, test) == 0)
            r = v;
    }
    pclose(p);
    return r;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    char *dir = NULL, url[4096];
    kvi_ts_server *s = NULL;
    uint16_t tls_port;
    if (n < 100 || kvi_ts_make_tempdir("tlsbench", &dir) != KVI_TS_OK ||
        kvi_tt_make_certs(dir) != KVI_TS_OK ||
        kvi_tt_redis_start(&s, dir, "server", 0, NULL, &tls_port) != KVI_TS_OK) {
        fprintf(stderr, "tls_bench: cannot set up: %s\n", kvi_ts_errmsg());
        return 1;
    }
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", (unsigned)kvi_ts_port(s));
    kvi *plain = open_or_die(url);
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/?tls=yes&tls_ca=%s/ca.pem", (unsigned)tls_port,
             dir);
    kvi *tls = open_or_die(url);

    /* Rounds: each runs a block of every side, so that the load of a
     * shared machine hits all of them; ratios are medians of the rounds'. */
    printf("tls_bench: %d ops per case in %d rounds, value 100 bytes, 1 thread, request/reply\n", n,
           ROUNDS);
    printf("%-6s %12s %12s %16s %10s %10s\n", "", "plain kvi", "TLS kvi", "redis-benchmark",
           "TLS/plain", "TLS/r-b");
    const char *names[2] = {"SET", "GET"};
    for (int get = 0; get < 2; get++) {
        double p[ROUNDS], t[ROUNDS], rb[ROUNDS], tp[ROUNDS], trb[ROUNDS];
        rate(plain, n / 10, get); /* warm-up */
        rate(tls, n / 10, get);
        for (int r = 0; r < ROUNDS; r++) {
            p[r] = rate(plain, n / ROUNDS, get);
            t[r] = rate(tls, n / ROUNDS, get);
            rb[r] = redis_benchmark(tls_port, dir, n / ROUNDS, names[get]);
            tp[r] = t[r] / p[r];
            trb[r] = rb[r] > 0 ? t[r] / rb[r] : 0;
        }
        printf("%-6s %12.0f %12.0f %16.0f %10.2f %10.2f\n", names[get], median(p), median(t),
               median(rb), median(tp), median(trb));
    }

    /* Connect + handshake + set-up + PING. */
    int m = n / 100 < 50 ? 50 : n / 100;
    double t0 = now_s();
    for (int i = 0; i < m; i++)
        kvi_free(open_or_die(url));
    double full_ms = (now_s() - t0) * 1000 / m;
    double resumed_ms = 0;
    const char *kill = "CLIENT KILL TYPE normal SKIPME no";
    for (int i = 0; i < m; i++) {
        kvi_reply *r = NULL;
        kvi_raw_query(tls, "redis", kill, strlen(kill), &r);
        kvi_reply_free(r);
        double t1 = now_s();
        if (kvi_ping(tls, "redis") != KVI_OK) {
            fprintf(stderr, "tls_bench: ping: %s\n", kvi_errmsg(tls));
            return 1;
        }
        resumed_ms += (now_s() - t1) * 1000;
    }
    resumed_ms /= m;
    printf("connect + TLS handshake + PING: %.3f ms new session, %.3f ms resumed (%d each)\n",
           full_ms, resumed_ms, m);
    kvi_free(plain);
    kvi_free(tls);
    kvi_ts_free(s);
    kvi_ts_remove_tree(dir);
    free(dir);
    return 0;
}
