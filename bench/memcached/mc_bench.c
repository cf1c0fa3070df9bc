/*
 * mc_bench.c -- the memcached engine against raw libmemcached, same work in
 * the same run on a throwaway memcached (127.0.0.1, started and stopped
 * here).  Not a test: it prints a table.
 *
 *   mc_bench [OPS]      (default 20000 operations per side and row)
 *
 * Rows: set and get of a 100-byte value under a plain key, get under a key
 * that kvi maps (with a space) against raw get of a plain key, and a counter
 * update: kvi_add (gets + cas, signed) against memcached_increment (native
 * incr, unsigned).  The two sides alternate in blocks of 250 operations so
 * that machine noise hits both; each row prints the median block rate of
 * each side and the median of the per-round ratios kvi/raw (1.00 = kvi is
 * as fast as raw libmemcached).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "kvi/kvi.h"
#include "testserver.h"

#define BLOCK 250

struct sides {
    kvi_conn *c;
    memcached_st *mc;
    char val[100];
    int errors;
};

typedef void (*op_fn)(struct sides *s, int n);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void kvi_set(struct sides *s, int n)
{
    for (int i = 0; i < n; i++)
        s->errors += kvi_conn_store(s->c, "bench:key", 9, s->val, sizeof s->val, 0) != KVI_OK;
}

static void raw_set(struct sides *s, int n)
{
    for (int i = 0; i < n; i++)
        s->errors += memcached_set(s->mc, "bench:key", 9, s->val, sizeof s->val, 0, 0) !=
                     MEMCACHED_SUCCESS;
}

static void kvi_get_key(struct sides *s, int n, const char *key)
{
    for (int i = 0; i < n; i++) {
        kvi_value v = KVI_VALUE_INIT;
        s->errors += kvi_conn_fetch(s->c, key, 9, &v) != KVI_OK;
        kvi_value_free(&v);
    }
}

static void kvi_get(struct sides *s, int n)
{
    kvi_get_key(s, n, "bench:key");
}

static void kvi_get_mapped(struct sides *s, int n)
{
    kvi_get_key(s, n, "bench key");
}

static void raw_get(struct sides *s, int n)
{
    for (int i = 0; i < n; i++) {
        size_t len;
        uint32_t flags;
        memcached_return_t rc;
        char *v = memcached_get(s->mc, "bench:key", 9, &len, &flags, &rc);
        s->errors += v == NULL;
        free(v);
    }
}

static void kvi_counter(struct sides *s, int n)
{
    for (int i = 0; i < n; i++)
        s->errors += kvi_conn_add(s->c, "bench:ctr", 9, 1, 0, NULL) != KVI_OK;
}

static void raw_counter(struct sides *s, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t nv;
        s->errors +=
            memcached_increment(s->mc, "bench:nctr", 10, 1, &nv) != MEMCACHED_SUCCESS;
    }
}

/* Alternates BLOCK-op blocks of both sides (order swapped every round). */
static void row(struct sides *s, const char *what, op_fn kvi_op, op_fn raw_op, int ops)
{
    int rounds = ops / BLOCK < 1 ? 1 : ops / BLOCK;
    double *rk = malloc(sizeof(double) * (size_t)rounds);
    double *rr = malloc(sizeof(double) * (size_t)rounds);
    double *ratio = malloc(sizeof(double) * (size_t)rounds);
    if (!rk || !rr || !ratio) {
        fprintf(stderr, "mc_bench: out of memory\n");
        exit(1);
    }
    for (int r = 0; r < rounds; r++) {
        double tk = 0, tr = 0;
        for (int side = 0; side < 2; side++) {
            int kvi_side = (side + r) % 2 == 0;
            double t0 = now_s();
            (kvi_side ? kvi_op : raw_op)(s, BLOCK);
            double dt = now_s() - t0;
            if (kvi_side)
                tk = dt;
            else
                tr = dt;
        }
        rk[r] = BLOCK / tk;
        rr[r] = BLOCK / tr;
        ratio[r] = tr / tk;
    }
    double mk = median(rk, rounds), mr = median(rr, rounds), mq = median(ratio, rounds);
    printf("%-30s %10.0f %10.0f %8.2f\n", what, mk, mr, mq);
    free(rk);
    free(rr);
    free(ratio);
}

int main(int argc, char **argv)
{
    int ops = argc > 1 ? atoi(argv[1]) : 20000;
    if (ops <= 0) {
        fprintf(stderr, "usage: mc_bench [OPS]\n");
        return 2;
    }
    kvi_ts_server *srv = NULL;
    /* One worker thread: with memcached's default 4 on a 2-vCPU machine,
     * which side's connection lands on a thread that is awake decided a
     * 4x difference between the sides from run to run. */
    const char *const extra[] = {"-t", "1", NULL};
    if (kvi_ts_memcached_start(&srv, extra) != KVI_TS_OK) {
        fprintf(stderr, "mc_bench: cannot start memcached: %s\n", kvi_ts_errmsg());
        return 1;
    }
    char url[128];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/", kvi_ts_port(srv));
    kvi *k = NULL;
    struct sides s = {0};
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url) != KVI_OK ||
        kvi_conn_get(k, "memcached", &s.c) != KVI_OK) {
        fprintf(stderr, "mc_bench: %s\n", k ? kvi_errmsg(k) : "out of memory");
        kvi_ts_free(srv);
        return 1;
    }
    s.mc = memcached_create(NULL);
    memcached_behavior_set(s.mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(s.mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_server_add(s.mc, "127.0.0.1", kvi_ts_port(srv));
    memset(s.val, 'v', sizeof s.val);

    s.errors += kvi_conn_store(s.c, "bench:key", 9, s.val, sizeof s.val, 0) != KVI_OK;
    s.errors += kvi_conn_store(s.c, "bench key", 9, s.val, sizeof s.val, 0) != KVI_OK;
    s.errors += memcached_set(s.mc, "bench:nctr", 10, "0", 1, 0, 0) != MEMCACHED_SUCCESS;
    kvi_conn_remove(s.c, "bench:ctr", 9);

    printf("memcached 127.0.0.1:%u, %d ops per side and row, one thread, blocks of %d\n",
           kvi_ts_port(srv), ops, BLOCK);
    printf("%-30s %10s %10s %8s\n", "operation", "kvi op/s", "raw op/s", "kvi/raw");
    row(&s, "set 100 B", kvi_set, raw_set, ops);
    row(&s, "get 100 B", kvi_get, raw_get, ops);
    row(&s, "get 100 B, mapped key (vs raw)", kvi_get_mapped, raw_get, ops);
    row(&s, "counter +1 (cas vs incr)", kvi_counter, raw_counter, ops);
    printf("errors: %d\n", s.errors);
    memcached_free(s.mc);
    kvi_free(k);
    kvi_ts_free(srv);
    return s.errors ? 1 : 0;
}
