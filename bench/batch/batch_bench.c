/*
 * batch_bench.c -- batches (docs/batch.md) against the baselines they are
 * meant to reach, all in one run, all servers throwaway on 127.0.0.1:
 *
 *   redis      kvi batches of 16 and of 100 GETs / SETs on one connection,
 *              and non-blocking batches of 64 GETs (start/resume from a
 *              poll() loop), vs `redis-benchmark -P 16 -c 1` (started here,
 *              same server, 3-byte values, 1000 keys): the pipelining
 *              client's rate
 *   cluster    the same on a 3-master Redis Cluster (keys over all slots)
 *              vs `redis-benchmark --cluster -P 16 -c 1`, whose one client
 *              sends every request to one master; so also batches of 16 on
 *              keys of one hash tag ("one master"), the anchor's own load
 *   pipe       `kvi pipe` of 200000 stores vs `redis-cli --pipe` of the same
 *              SETs (with --pipe KVI: the path of the kvi command)
 *   memcached  kvi batches of 100 fetches (pipelined GETs) vs raw libmemcached
 *              memcached_mget + memcached_fetch_result of the same 100 keys;
 *              kvi batches of 100 stores vs 100 memcached_set calls
 *   local      kvi batches of 100 fetches vs 100 single kvi_fetch calls: the
 *              in-process table over 1000 keys (local) and 1M keys
 *              (local-big), the shared one over 1000 keys (local-shm)
 *
 *     batch_bench [--quick] [--pipe PATH_TO_KVI]
 *                 [--only redis|cluster|memcached|local|local-big|local-shm]
 *
 * Each measurement runs ROUNDS times (alternating kvi and baseline) and the
 * median rate is printed with the ratio kvi / baseline.  Short by design
 * (the machine is shared).  A program, not a test.
 */
#include <libmemcached/memcached.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvi/kvi.h"
#include "testcluster.h"
#include "testserver.h"

#define NKEYS 1000
#define ROUNDS 5

static long g_ops = 200000; /* per measurement */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "batch_bench: %s: %s\n", what, why);
    kvi_ts_kill_all();
    exit(1);
}

/* "key:%012ld" of i % NKEYS, made once: the measuring loops only pick a
 * key (snprintf costs about 1000 instructions, more than a local fetch;
 * redis-benchmark too writes its random keys in place). */
static char (*g_keys)[17];
static long g_nkeys;
/* The same keys with the hash tag "{t}" in place of "key:"'s first three
 * bytes ("{t}:000000000123"): all in one Cluster slot, so on one master, as
 * redis-benchmark --cluster -c 1 sends its pipeline (the like-for-like row). */
static char (*g_tagged)[17];
static int g_use_tagged;

/* Makes the keys of indexes 0..n-1 (replacing earlier ones). */
static void keys_init(long n)
{
    free(g_keys);
    g_keys = malloc((size_t)n * sizeof *g_keys);
    if (g_keys == NULL)
        die("keys", "out of memory");
    g_nkeys = n;
    for (long i = 0; i < n; i++) {
        long v = i;
        memcpy(g_keys[i], "key:", 4);
        for (int d = 15; d >= 4; d--) {
            g_keys[i][d] = (char)('0' + v % 10);
            v /= 10;
        }
        g_keys[i][16] = '\0';
    }
    free(g_tagged);
    g_tagged = malloc((size_t)n * sizeof *g_tagged);
    if (g_tagged == NULL)
        die("keys", "out of memory");
    for (long i = 0; i < n; i++) {
        memcpy(g_tagged[i], g_keys[i], sizeof *g_tagged);
        memcpy(g_tagged[i], "{t}", 3);
    }
}

static const char *key_at(long i)
{
    return g_use_tagged ? g_tagged[i % g_nkeys] : g_keys[i % g_nkeys];
}

/* ---- kvi batches ----------------------------------------------------------- */

/* ops/s of batches of `size` GETs (set 0) or SETs (set 1) on id. */
static double kvi_batch_rate(kvi *k, const char *id, int set, int size)
{
    kvi_batch *b = NULL;
    if (kvi_batch_new(k, &b) != KVI_OK)
        die("kvi_batch_new", kvi_errmsg(k));
    long done = 0, i = 0;
    double t0 = now_s();
    while (done < g_ops) {
        kvi_batch_clear(b);
        for (int j = 0; j < size; j++, i++) {
            const char *key = key_at(i);
            if (set)
                kvi_batch_store(b, id, key, 16, "xxx", 3, 0);
            else
                kvi_batch_fetch(b, id, key, 16);
        }
        kvi_status st = kvi_batch_run(b, 0);
        if (st != KVI_OK)
            die("kvi_batch_run", kvi_errmsg(k));
        done += size;
    }
    double dt = now_s() - t0;
    kvi_batch_free(b);
    return (double)done / dt;
}

/* ops/s of non-blocking batches of `size` GETs driven by a poll() loop
 * (kvi_batch_start / kvi_batch_resume): `size` operations in flight on one
 * connection. */
static double kvi_async_rate(kvi *k, const char *id, int size)
{
    kvi_batch *b = NULL;
    if (kvi_batch_new(k, &b) != KVI_OK)
        die("kvi_batch_new", kvi_errmsg(k));
    long done = 0, i = 0;
    double t0 = now_s();
    while (done < g_ops) {
        kvi_batch_clear(b);
        for (int j = 0; j < size; j++, i++) {
            const char *key = key_at(i);
            kvi_batch_fetch(b, id, key, 16);
        }
        kvi_wait w;
        int r = kvi_batch_start(b, 0, NULL, NULL, &w);
        while (r == 0) {
            struct pollfd p = {w.fd, (short)((w.events & KVI_WAIT_READ ? POLLIN : 0) |
                                             (w.events & KVI_WAIT_WRITE ? POLLOUT : 0)),
                               0};
            if (poll(&p, 1, 5000) < 0)
                die("poll", "failed");
            r = kvi_batch_resume(b, &w);
        }
        if (r < 0 || kvi_batch_failed(b) != 0)
            die("non-blocking batch", kvi_batch_errmsg(b, 0));
        done += size;
    }
    double dt = now_s() - t0;
    kvi_batch_free(b);
    return (double)done / dt;
}

/* ---- redis-benchmark --------------------------------------------------------- */

/* Runs redis-benchmark and returns the requests per second of test `t`
 * ("SET" or "GET").  With --cluster its run ends on a ~0.5 s step (200000
 * requests report 0.5 or 1.0 s, i.e. 400k or 200k/s, whatever the real
 * rate), so it gets ten times the requests there.  Note: with -c 1 its one
 * client is bound to one master, so the cluster anchor is one node's
 * pipeline of 16 (kvi's batch of 16 spans every master). */
static double redis_benchmark(uint16_t port, int cluster, const char *t)
{
    char cmd[512], line[512];
    snprintf(cmd, sizeof cmd,
             "redis-benchmark -h 127.0.0.1 -p %u %s -P 16 -c 1 -n %ld -r %d -d 3 -t %s -q 2>&1",
             (unsigned)port, cluster ? "--cluster" : "", cluster ? 10 * g_ops : g_ops, NKEYS, t);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        die("popen redis-benchmark", "failed");
    double rate = 0;
    char want[16];
    snprintf(want, sizeof want, "%s: ", t);
    while (fgets(line, sizeof line, p) != NULL) {
        /* -q prints progress with \r, then "SET: 123456.78 requests per second". */
        char *s = strstr(line, want);
        char *last = NULL;
        while (s != NULL) {
            last = s;
            s = strstr(s + 1, want);
        }
        if (last != NULL)
            rate = strtod(last + strlen(want), NULL);
    }
    if (pclose(p) != 0 || rate <= 0)
        die("redis-benchmark", "no rate in its output (is redis-tools installed?)");
    return rate;
}

static void print_row(const char *what, double kvi_rate, const char *base, double base_rate,
                      const char *goal)
{
    printf("%-44s %12.0f/s   %-30s %12.0f/s   ratio %5.2fx   (goal %s)\n", what, kvi_rate, base,
           base_rate, kvi_rate / base_rate, goal);
    fflush(stdout);
}

/* GET and SET by batches of 16 and 100 against redis-benchmark -P 16. */
static void redis_cases(const char *label, const char *url, uint16_t port, int cluster)
{
    kvi *k = NULL;
    kvi_new(&k);
    if (kvi_add_url(k, url) != KVI_OK)
        die(url, kvi_errmsg(k));
    const char *id = "redis";
    (void)kvi_batch_rate(k, id, 1, 100); /* fill the keys, warm the connection */
    if (cluster) {
        g_use_tagged = 1; /* the one-master keys too */
        (void)kvi_batch_rate(k, id, 1, 100);
        g_use_tagged = 0;
    }
    const char *tests[2] = {"GET", "SET"};
    for (int t = 0; t < 2; t++) {
        double base[ROUNDS], b16[ROUNDS], b100[ROUNDS], a64[ROUNDS], t16[ROUNDS];
        for (int r = 0; r < ROUNDS; r++) {
            base[r] = redis_benchmark(port, cluster, tests[t]);
            b16[r] = kvi_batch_rate(k, id, t == 1, 16);
            b100[r] = kvi_batch_rate(k, id, t == 1, 100);
            a64[r] = t == 0 ? kvi_async_rate(k, id, 64) : 0;
            g_use_tagged = 1;
            t16[r] = cluster ? kvi_batch_rate(k, id, t == 1, 16) : 0;
            g_use_tagged = 0;
        }
        double mb = median(base, ROUNDS);
        char what[128], bl[64];
        snprintf(bl, sizeof bl, "redis-benchmark%s -P 16 -c 1", cluster ? " --cluster" : "");
        snprintf(what, sizeof what, "%s: kvi batch of 16 %ss", label, tests[t]);
        print_row(what, median(b16, ROUNDS), bl, mb, ">= 0.9x");
        if (cluster) {
            /* The anchor's own load: its pipeline goes to one master. */
            snprintf(what, sizeof what, "%s: batch of 16 %ss, one master", label, tests[t]);
            print_row(what, median(t16, ROUNDS), bl, mb, ">= 0.9x");
        }
        snprintf(what, sizeof what, "%s: kvi batch of 100 %ss", label, tests[t]);
        print_row(what, median(b100, ROUNDS), bl, mb, ">= 0.9x");
        if (t == 0) {
            snprintf(what, sizeof what, "%s: non-blocking, 64 GETs in flight", label);
            print_row(what, median(a64, ROUNDS), bl, mb, ">= 0.9x");
        }
    }
    kvi_free(k);
}

/* kvi pipe vs redis-cli --pipe: 200000 stores / SETs. */
static void pipe_case(const char *kvi_bin, uint16_t port)
{
    char dir[] = "/tmp/kvi-batch-bench-XXXXXX";
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", "failed");
    char kf[128], rf[128], cmd[1024];
    snprintf(kf, sizeof kf, "%s/kvi.txt", dir);
    snprintf(rf, sizeof rf, "%s/redis.txt", dir);
    FILE *a = fopen(kf, "w"), *b = fopen(rf, "w");
    if (a == NULL || b == NULL)
        die("writing the pipe input", "failed");
    for (long i = 0; i < 200000; i++) {
        fprintf(a, "store k%ld v%ld\n", i, i);
        fprintf(b, "SET k%ld v%ld\r\n", i, i);
    }
    fclose(a);
    fclose(b);
    double tk[ROUNDS], tr[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        snprintf(cmd, sizeof cmd,
                 "%s -u redis://127.0.0.1:%u/ pipe redis < %s > /dev/null 2>&1", kvi_bin,
                 (unsigned)port, kf);
        double t0 = now_s();
        if (system(cmd) != 0)
            die("kvi pipe", cmd);
        tk[r] = now_s() - t0;
        snprintf(cmd, sizeof cmd, "redis-cli -p %u --pipe < %s > /dev/null 2>&1", (unsigned)port,
                 rf);
        t0 = now_s();
        if (system(cmd) != 0)
            die("redis-cli --pipe", cmd);
        tr[r] = now_s() - t0;
    }
    double mk = median(tk, ROUNDS), mr = median(tr, ROUNDS);
    print_row("pipe: kvi pipe, 200000 stores (process)", 200000 / mk, "redis-cli --pipe (process)",
              200000 / mr, ">= 0.8x");
    unlink(kf);
    unlink(rf);
    rmdir(dir);
}

/* ---- memcached ------------------------------------------------------------------ */

static double raw_mget_rate(memcached_st *mc, int size)
{
    const char *keys[100];
    size_t lens[100];
    long done = 0, i = 0;
    double t0 = now_s();
    while (done < g_ops) {
        for (int j = 0; j < size; j++, i++) {
            keys[j] = key_at(i);
            lens[j] = 16;
        }
        memcached_return_t rc = memcached_mget(mc, keys, lens, (size_t)size);
        if (rc != MEMCACHED_SUCCESS)
            die("memcached_mget", memcached_strerror(mc, rc));
        memcached_result_st res, *r;
        memcached_result_create(mc, &res);
        int got = 0;
        while ((r = memcached_fetch_result(mc, &res, &rc)) != NULL)
            got++;
        memcached_result_free(&res);
        if (got != size)
            die("memcached_mget", "not every key came back");
        done += size;
    }
    return (double)done / (now_s() - t0);
}

/* ops/s of the same `size` keys set one by one with memcached_set (the
 * blocking single path's cost: one round trip each). */
static double raw_set_rate(memcached_st *mc, int size)
{
    long done = 0, i = 0, ops = g_ops / 10 > 1000 ? g_ops / 10 : 1000; /* slow: fewer */
    double t0 = now_s();
    while (done < ops) {
        for (int j = 0; j < size; j++, i++) {
            const char *key = key_at(i);
            memcached_return_t rc = memcached_set(mc, key, 16, "xxx", 3, 0, 0);
            if (rc != MEMCACHED_SUCCESS)
                die("memcached_set", memcached_strerror(mc, rc));
        }
        done += size;
    }
    return (double)done / (now_s() - t0);
}

static void memcached_case(void)
{
    kvi_ts_server *s = NULL;
    if (kvi_ts_memcached_start(&s, NULL) != KVI_TS_OK)
        die("memcached", kvi_ts_errmsg());
    char url[128];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/", (unsigned)kvi_ts_port(s));
    kvi *k = NULL;
    kvi_new(&k);
    if (kvi_add_url(k, url) != KVI_OK)
        die(url, kvi_errmsg(k));
    (void)kvi_batch_rate(k, "memcached", 1, 100); /* the keys, through kvi (stamp, flags) */
    memcached_st *mc = memcached_create(NULL);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_server_add(mc, "127.0.0.1", kvi_ts_port(s));
    double kr[ROUNDS], rr[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        rr[r] = raw_mget_rate(mc, 100);
        kr[r] = kvi_batch_rate(k, "memcached", 0, 100);
    }
    print_row("memcached: kvi batch of 100 fetches", median(kr, ROUNDS),
              "libmemcached memcached_mget of 100", median(rr, ROUNDS), ">= 0.95x");
    /* Stores: a batch pipelines them (mc_pipe.c); libmemcached has no
     * pipelined store with a status per key, so the baseline is the 100
     * memcached_set calls a caller makes today. */
    for (int r = 0; r < ROUNDS; r++) {
        rr[r] = raw_set_rate(mc, 100);
        kr[r] = kvi_batch_rate(k, "memcached", 1, 100);
    }
    print_row("memcached: kvi batch of 100 stores", median(kr, ROUNDS),
              "libmemcached memcached_set x100", median(rr, ROUNDS), "(new row)");
    memcached_free(mc);
    kvi_free(k);
    kvi_ts_free(s);
}

/* ---- local ----------------------------------------------------------------------- */

static double local_single_rate(kvi *k, const char *id)
{
    kvi_value v = KVI_VALUE_INIT;
    double t0 = now_s();
    for (long i = 0; i < g_ops * 5; i++) {
        const char *key = key_at(i);
        if (kvi_fetch(k, id, key, 16, &v) != KVI_OK)
            die("kvi_fetch local", kvi_errmsg(k));
    }
    kvi_value_free(&v);
    return (double)(g_ops * 5) / (now_s() - t0);
}

/* Batches of 100 fetches against single fetches over nkeys keys: NKEYS
 * (the table in the caches) and, as "big", 1M keys (about 100 MB: most
 * lookups miss the caches, where the batch's prefetching can overlap the
 * misses); url NULL: the in-process table ("local"), else a shared one
 * defined by url as "local:shm".  Both sides fetch the same keys in the
 * same order and leave the values unread (the single side in one reused
 * kvi_value, as a caller would). */
static void local_case(long nkeys, const char *label, const char *url)
{
    kvi *k = NULL;
    kvi_new(&k);
    const char *id = url != NULL ? "local:shm" : "local";
    if (url != NULL && kvi_add_url(k, url) != KVI_OK)
        die(url, kvi_errmsg(k));
    keys_init(nkeys);
    for (long i = 0; i < nkeys; i++)
        if (kvi_store(k, id, key_at(i), 16, "xxx", 3, 0) != KVI_OK)
            die("kvi_store local", kvi_errmsg(k));
    double kr[ROUNDS], sr[ROUNDS];
    long ops = g_ops;
    for (int r = 0; r < ROUNDS; r++) {
        sr[r] = local_single_rate(k, id);
        g_ops = ops * 5;
        kr[r] = kvi_batch_rate(k, id, 0, 100);
        g_ops = ops;
    }
    print_row(label, median(kr, ROUNDS), "100 single kvi_fetch calls", median(sr, ROUNDS),
              ">= 2x");
    kvi_free(k);
    keys_init(NKEYS);
}

static const char *g_only; /* --only: one section */

static int want(const char *section)
{
    return g_only == NULL || strcmp(g_only, section) == 0;
}

int main(int argc, char **argv)
{
    keys_init(NKEYS);
    const char *kvi_bin = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            g_ops = 20000;
        else if (strcmp(argv[i], "--pipe") == 0 && i + 1 < argc)
            kvi_bin = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            g_only = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--pipe PATH_TO_KVI] [--only "
                    "redis|cluster|memcached|local|local-big|local-shm]\n",
                    argv[0]);
            return 2;
        }
    }
    printf("batch_bench: %ld ops per measurement, median of %d rounds; one connection, one "
           "thread\n",
           g_ops, ROUNDS);
    if (want("redis")) {
        kvi_ts_server *rs = NULL;
        if (kvi_ts_redis_start(&rs, NULL) != KVI_TS_OK)
            die("redis-server", kvi_ts_errmsg());
        char url[128];
        /* A generous timeout: a loaded machine stalls the server for a second at times. */
        snprintf(url, sizeof url, "redis://127.0.0.1:%u/?timeout=10000", (unsigned)kvi_ts_port(rs));
        redis_cases("redis", url, kvi_ts_port(rs), 0);
        if (kvi_bin != NULL)
            pipe_case(kvi_bin, kvi_ts_port(rs));
        kvi_ts_free(rs);
    }
    kvi_tc_spec spec = {.masters = 3, .replicas = 0};
    kvi_tc_cluster *cl = NULL;
    if (!want("cluster")) {
        /* not asked for */
    } else if (kvi_tc_start(&spec, &cl) == KVI_TS_OK) {
        char curl[512];
        size_t n = kvi_tc_url(cl, "redis", curl, sizeof curl);
        snprintf(curl + n, sizeof curl - n, "?cluster=yes&timeout=10000");
        redis_cases("cluster", curl, kvi_tc_port(cl, 0), 1);
        kvi_tc_free(cl);
    } else {
        printf("cluster: not measured (%s)\n", kvi_tc_errmsg());
    }
    if (want("memcached"))
        memcached_case();
    if (want("local"))
        local_case(NKEYS, "local: kvi batch of 100 fetches", NULL);
    if (want("local") || want("local-big"))
        local_case(1L << 20, "local, 1M keys: batch of 100 fetches", NULL);
    if (want("local") || want("local-shm")) {
        /* The shared table (a segment of this run, removed at the end). */
        char url[128];
        snprintf(url, sizeof url, "local:shm://?shm=kvi-bench-%ld&shm_unlink=yes", (long)getpid());
        local_case(NKEYS, "local shm: kvi batch of 100 fetches", url);
    }
    return 0;
}
