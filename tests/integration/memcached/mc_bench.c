/*
 * mc_bench.c -- the memcached engine against raw libmemcached, same work in
 * the same run on a throwaway memcached (127.0.0.1, started and stopped
 * here).  Not a test: it prints a table.
 *
 *   mc_bench [OPS]      (default 20000 operations per row)
 *
 * Rows: set and get of a 100-byte value under a plain key, get under a key
 * that kvi maps (with a space), and a counter update: kvi_add (gets + cas,
 * signed) against memcached_increment (native incr, unsigned).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "kvi/kvi.h"
#include "testserver.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void row(const char *what, double kvi_s, double raw_s, int ops)
{
    printf("%-28s %10.0f %10.0f %8.2f\n", what, (double)ops / kvi_s, (double)ops / raw_s,
           kvi_s / raw_s);
}

int main(int argc, char **argv)
{
    int ops = argc > 1 ? atoi(argv[1]) : 20000;
    if (ops <= 0) {
        fprintf(stderr, "usage: mc_bench [OPS]\n");
        return 2;
    }
    kvi_ts_server *s = NULL;
    if (kvi_ts_memcached_start(&s, NULL) != KVI_TS_OK) {
        fprintf(stderr, "mc_bench: cannot start memcached: %s\n", kvi_ts_errmsg());
        return 1;
    }
    char url[128];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/", kvi_ts_port(s));
    kvi *k = NULL;
    kvi_conn *c = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url) != KVI_OK ||
        kvi_conn_get(k, "memcached", &c) != KVI_OK) {
        fprintf(stderr, "mc_bench: %s\n", k ? kvi_errmsg(k) : "out of memory");
        kvi_ts_free(s);
        return 1;
    }
    memcached_st *mc = memcached_create(NULL);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_server_add(mc, "127.0.0.1", kvi_ts_port(s));

    char val[100];
    memset(val, 'v', sizeof val);
    int errors = 0;
    double t0, tk, tr;
    printf("memcached 127.0.0.1:%u, %d ops per row, one thread\n", kvi_ts_port(s), ops);
    printf("%-28s %10s %10s %8s\n", "operation", "kvi op/s", "raw op/s", "kvi/raw");

    t0 = now_s();
    for (int i = 0; i < ops; i++)
        errors += kvi_conn_store(c, "bench:key", 9, val, sizeof val, 0) != KVI_OK;
    tk = now_s() - t0;
    t0 = now_s();
    for (int i = 0; i < ops; i++)
        errors += memcached_set(mc, "bench:key", 9, val, sizeof val, 0, 0) != MEMCACHED_SUCCESS;
    tr = now_s() - t0;
    row("set 100 B", tk, tr, ops);

    t0 = now_s();
    for (int i = 0; i < ops; i++) {
        kvi_value v = KVI_VALUE_INIT;
        errors += kvi_conn_fetch(c, "bench:key", 9, &v) != KVI_OK;
        kvi_value_free(&v);
    }
    tk = now_s() - t0;
    t0 = now_s();
    for (int i = 0; i < ops; i++) {
        size_t len;
        uint32_t flags;
        memcached_return_t rc;
        char *v = memcached_get(mc, "bench:key", 9, &len, &flags, &rc);
        errors += v == NULL;
        free(v);
    }
    tr = now_s() - t0;
    row("get 100 B", tk, tr, ops);

    errors += kvi_conn_store(c, "bench key", 9, val, sizeof val, 0) != KVI_OK;
    t0 = now_s();
    for (int i = 0; i < ops; i++) {
        kvi_value v = KVI_VALUE_INIT;
        errors += kvi_conn_fetch(c, "bench key", 9, &v) != KVI_OK;
        kvi_value_free(&v);
    }
    tk = now_s() - t0;
    row("get 100 B, mapped key", tk, tr, ops);

    kvi_conn_remove(c, "bench:ctr", 9);
    t0 = now_s();
    for (int i = 0; i < ops; i++)
        errors += kvi_conn_add(c, "bench:ctr", 9, 1, 0, NULL) != KVI_OK;
    tk = now_s() - t0;
    memcached_set(mc, "bench:nctr", 10, "0", 1, 0, 0);
    t0 = now_s();
    for (int i = 0; i < ops; i++) {
        uint64_t nv;
        errors += memcached_increment(mc, "bench:nctr", 10, 1, &nv) != MEMCACHED_SUCCESS;
    }
    tr = now_s() - t0;
    row("counter +1 (cas vs incr)", tk, tr, ops);

    printf("errors: %d\n", errors);
    memcached_free(mc);
    kvi_free(k);
    kvi_ts_free(s);
    return errors ? 1 : 0;
}
