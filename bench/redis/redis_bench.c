/*
 * redis_bench.c -- kvi's redis engine against raw hiredis, on a standalone
 * redis-server and on a Redis Cluster, all throwaway servers on 127.0.0.1.
 *
 *     redis_bench [ops]        (default 20000 per case and side)
 *
 * Four sides run the same commands, request/reply:
 *
 *   raw-sa   raw hiredis, one connection to the standalone server
 *   kvi-sa   kvi on redis://standalone/
 *   raw-node raw hiredis, one connection to the cluster node that owns the
 *            keys (every key carries the hash tag {b}, so one node has them)
 *   kvi-cl   kvi on redis://node1,node2,node3/ (3 masters, no replicas):
 *            slot computation and routing on every call
 *
 * kvi-sa/raw-sa is kvi's own overhead; kvi-cl/raw-node is kvi's overhead
 * plus cluster routing against the very same server; kvi-cl/kvi-sa is what
 * a cluster costs kvi (also server differences).  The sides alternate in
 * blocks of BLOCK ops (the order rotating) so that machine noise hits all;
 * a side's ops/s is the median of its blocks' rates and each ratio is the
 * median of the per-round ratios (a round = one block of every side), so a
 * few blocks hit by other processes on a shared machine do not decide it.
 * The 2-thread cases give each thread its own raw connections, while the
 * kvi threads share one handle (its per-server connection pool); a block
 * lasts until both threads are done, ops/s counts both threads' ops.
 *
 * A program, not a test.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvi/kvi.h"
#include "testcluster.h"
#include "testserver.h"

#define BLOCK 200
#define NKEYS 1000
#define MAX_THREADS 2
#define TAG "{b}"
#define COUNTER_SCRIPT                                                                             \
    "local created = redis.call('EXISTS', KEYS[1]) == 0\n"                                         \
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"                                                     \
    "if created and ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"              \
    "return redis.call('GET', KEYS[1])\n"

enum { CASE_SET, CASE_GET, CASE_SETEX, CASE_ADD, CASE_INCR };
enum { SIDE_RAW_SA, SIDE_KVI_SA, SIDE_RAW_NODE, SIDE_KVI_CL, NSIDES };

/* One side as one thread drives it: raw when rc is set, else kvi on c. */
struct side {
    redisContext *rc;
    const char *sha; /* the counter script's SHA on rc's server */
    kvi_conn *c;
    kvi *k;
};

struct worker {
    struct side sides[NSIDES];
    unsigned id;
    struct run *run;
    pthread_t tid;
};

/* One measurement: a case on all four sides by nthreads threads. */
struct run {
    int raw_what, kvi_what;
    long ops; /* per thread and side */
    unsigned nthreads;
    pthread_barrier_t barrier;
    double *rate[NSIDES]; /* ops/s of each block; written by thread 0 only */
};

static char g_val[100];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "redis_bench: %s: %s\n", what, why);
    exit(1);
}

static void raw_cmd(redisContext *rc, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(rc, argc, argv, lens);
    if (r == NULL)
        die("hiredis", rc->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        die("hiredis reply", r->str);
    freeReplyObject(r);
}

/* Key number i of kind what for thread t: "{b}<kind><t>_<n>", the same text
 * on every side. */
static size_t make_key(char *key, size_t size, int what, unsigned t, long i)
{
    return (size_t)snprintf(key, size, TAG "%c%u_%ld", "sssci"[what], t, i % NKEYS);
}

/* n raw hiredis requests of kind what, starting at key number i0. */
static void raw_block(const struct side *s, unsigned t, int what, long i0, long n)
{
    char key[48];
    for (long i = i0; i < i0 + n; i++) {
        size_t kl = make_key(key, sizeof key, what, t, i);
        const char *a[6];
        size_t l[6];
        int argc;
        switch (what) {
        case CASE_SET:
        case CASE_SETEX:
            a[0] = "SET", a[1] = key, a[2] = g_val, a[3] = "EX", a[4] = "300";
            l[0] = 3, l[1] = kl, l[2] = sizeof g_val, l[3] = 2, l[4] = 3;
            argc = what == CASE_SET ? 3 : 5;
            break;
        case CASE_GET:
            a[0] = "GET", a[1] = key, l[0] = 3, l[1] = kl, argc = 2;
            break;
        case CASE_ADD:
            a[0] = "EVALSHA", a[1] = s->sha, a[2] = "1", a[3] = key, a[4] = "1", a[5] = "300";
            l[0] = 7, l[1] = strlen(s->sha), l[2] = 1, l[3] = kl, l[4] = 1, l[5] = 3;
            argc = 6;
            break;
        default:
            a[0] = "INCRBY", a[1] = key, a[2] = "1", l[0] = 6, l[1] = kl, l[2] = 1, argc = 3;
            break;
        }
        raw_cmd(s->rc, argc, a, l);
    }
}

/* n kvi calls of kind what. */
static void kvi_block(const struct side *s, unsigned t, int what, long i0, long n)
{
    char key[48];
    for (long i = i0; i < i0 + n; i++) {
        size_t kl = make_key(key, sizeof key, what, t, i);
        kvi_status st;
        kvi_value v = KVI_VALUE_INIT;
        int64_t nv;
        switch (what) {
        case CASE_SET:
            st = kvi_conn_store(s->c, key, kl, g_val, sizeof g_val, 0);
            break;
        case CASE_SETEX:
            st = kvi_conn_store(s->c, key, kl, g_val, sizeof g_val, 300);
            break;
        case CASE_GET:
            st = kvi_conn_fetch(s->c, key, kl, &v);
            kvi_value_free(&v);
            break;
        default:
            st = kvi_conn_add(s->c, key, kl, 1, 300, &nv);
            break;
        }
        if (st != KVI_OK)
            die("kvi", kvi_errmsg(s->k));
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    long blocks = 0;
    for (long done = 0; done < r->ops; done += BLOCK, blocks++) {
        long n = r->ops - done < BLOCK ? r->ops - done : BLOCK;
        for (unsigned j = 0; j < NSIDES; j++) {
            /* Rotating the order keeps any side from always following the
             * same one (cache state, the server's own rhythm). */
            unsigned sd = (unsigned)((j + (unsigned long)blocks) % NSIDES);
            const struct side *s = &w->sides[sd];
            pthread_barrier_wait(&r->barrier);
            double t0 = now_s();
            if (s->rc != NULL)
                raw_block(s, w->id, r->raw_what, done, n);
            else
                kvi_block(s, w->id, r->kvi_what, done, n);
            /* A block ends when the slowest thread is done. */
            pthread_barrier_wait(&r->barrier);
            if (w->id == 0)
                r->rate[sd][blocks] = (double)n * r->nthreads / (now_s() - t0);
        }
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1] (reorders v). */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Median over the rounds of side a's block rate / side b's: the blocks of a
 * round ran back to back, so a burst of load elsewhere on the machine
 * mostly lands in a round's blocks alike or in few rounds. */
static double ratio(const struct run *r, size_t nblocks, int a, int b, double *tmp)
{
    for (size_t i = 0; i < nblocks; i++)
        tmp[i] = r->rate[a][i] / r->rate[b][i];
    return median(tmp, nblocks);
}

static void run_case(struct worker *ws, unsigned nthreads, const char *name, int raw_what,
                     int kvi_what, long ops)
{
    size_t nblocks = (size_t)((ops + BLOCK - 1) / BLOCK);
    struct run r = {.raw_what = raw_what, .kvi_what = kvi_what, .ops = ops, .nthreads = nthreads};
    double *tmp = calloc(nblocks, sizeof *tmp);
    for (unsigned j = 0; j < NSIDES; j++)
        if ((r.rate[j] = calloc(nblocks, sizeof *r.rate[j])) == NULL)
            die("calloc", "out of memory");
    if (tmp == NULL || pthread_barrier_init(&r.barrier, NULL, nthreads) != 0)
        die("setup", "out of memory");
    for (unsigned t = 0; t < nthreads; t++) {
        ws[t].run = &r;
        if (raw_what == CASE_GET) {
            /* Keys to read, on both servers. */
            raw_block(&ws[t].sides[SIDE_RAW_SA], t, CASE_SET, 0, NKEYS);
            raw_block(&ws[t].sides[SIDE_RAW_NODE], t, CASE_SET, 0, NKEYS);
        }
    }
    for (unsigned t = 0; t < nthreads; t++)
        if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0)
            die("pthread_create", "failed");
    for (unsigned t = 0; t < nthreads; t++)
        pthread_join(ws[t].tid, NULL);
    pthread_barrier_destroy(&r.barrier);

    double kr_sa = ratio(&r, nblocks, SIDE_KVI_SA, SIDE_RAW_SA, tmp);
    double kr_cl = ratio(&r, nblocks, SIDE_KVI_CL, SIDE_RAW_NODE, tmp);
    double cl_sa = ratio(&r, nblocks, SIDE_KVI_CL, SIDE_KVI_SA, tmp);
    double med[NSIDES];
    for (unsigned j = 0; j < NSIDES; j++) {
        med[j] = median(r.rate[j], nblocks);
        free(r.rate[j]);
    }
    free(tmp);
    printf("%-26s %8.0f %8.0f %5.2f | %8.0f %8.0f %5.2f | %5.2f\n", name, med[SIDE_RAW_SA],
           med[SIDE_KVI_SA], kr_sa, med[SIDE_RAW_NODE], med[SIDE_KVI_CL], kr_cl, cl_sa);
    fflush(stdout);
}

static redisContext *raw_connect(uint16_t port, redisReply **sha)
{
    redisContext *rc = redisConnect("127.0.0.1", port);
    if (rc == NULL || rc->err)
        die("hiredis connect", rc ? rc->errstr : "out of memory");
    *sha = redisCommand(rc, "SCRIPT LOAD %s", COUNTER_SCRIPT);
    if (*sha == NULL || (*sha)->type != REDIS_REPLY_STRING)
        die("SCRIPT LOAD", rc->errstr);
    return rc;
}

int main(int argc, char **argv)
{
    long ops = argc > 1 ? atol(argv[1]) : 20000;
    if (ops <= 0)
        die("usage", "redis_bench [ops]");
    memset(g_val, 'v', sizeof g_val);

    kvi_ts_server *srv = NULL;
    if (kvi_ts_redis_start(&srv, NULL) != KVI_TS_OK)
        die("redis-server", kvi_ts_errmsg());
    kvi_tc_spec spec = {.masters = 3, .replicas = 0};
    kvi_tc_cluster *cl = NULL;
    if (kvi_tc_start(&spec, &cl) != KVI_TS_OK) {
        kvi_ts_free(srv);
        die("redis cluster", kvi_tc_errmsg());
    }

    /* The node owning the hash tag's slot. */
    size_t owner = 0;
    {
        redisContext *rc = redisConnect("127.0.0.1", kvi_tc_port(cl, 0));
        if (rc == NULL || rc->err)
            die("hiredis connect", rc ? rc->errstr : "out of memory");
        redisReply *slot = redisCommand(rc, "CLUSTER KEYSLOT %s", TAG);
        if (slot == NULL || slot->type != REDIS_REPLY_INTEGER)
            die("CLUSTER KEYSLOT", rc->errstr);
        if (kvi_tc_master_of(cl, 0, (unsigned)slot->integer, &owner) != KVI_TS_OK)
            die("cluster master of slot", kvi_tc_errmsg());
        freeReplyObject(slot);
        redisFree(rc);
    }
    uint16_t sa_port = kvi_ts_port(srv), node_port = kvi_tc_port(cl, owner);

    kvi *k = NULL;
    kvi_conn *c_sa = NULL, *c_cl = NULL;
    char url_sa[64], url_cl[256];
    snprintf(url_sa, sizeof url_sa, "redis:sa://127.0.0.1:%u/", (unsigned)sa_port);
    kvi_tc_url(cl, "redis:cl", url_cl, sizeof url_cl);
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url_sa) != KVI_OK ||
        kvi_add_url(k, url_cl) != KVI_OK || kvi_conn_get(k, "redis:sa", &c_sa) != KVI_OK ||
        kvi_conn_get(k, "redis:cl", &c_cl) != KVI_OK)
        die("kvi", kvi_errmsg(k));

    struct worker ws[MAX_THREADS];
    redisReply *shas[MAX_THREADS][2];
    for (unsigned t = 0; t < MAX_THREADS; t++) {
        struct side *s = ws[t].sides;
        ws[t].id = t;
        s[SIDE_RAW_SA] = (struct side){.rc = raw_connect(sa_port, &shas[t][0])};
        s[SIDE_RAW_SA].sha = shas[t][0]->str;
        s[SIDE_RAW_NODE] = (struct side){.rc = raw_connect(node_port, &shas[t][1])};
        s[SIDE_RAW_NODE].sha = shas[t][1]->str;
        s[SIDE_KVI_SA] = (struct side){.c = c_sa, .k = k};
        s[SIDE_KVI_CL] = (struct side){.c = c_cl, .k = k};
    }

    printf("redis_bench: %ld ops per case and side and thread, value %zu bytes, keys " TAG
           "<kind><thread>_<0..%d>\n"
           "standalone 127.0.0.1:%u; cluster of 3 masters, keys on node 127.0.0.1:%u\n"
           "sides alternate in blocks of %d ops; ops/s = median of the blocks' rates;\n"
           "k/r = kvi/raw, cl/sa = kvi-cl/kvi-sa: medians of the per-round ratios\n\n",
           ops, sizeof g_val, NKEYS - 1, (unsigned)sa_port, (unsigned)node_port, BLOCK);
    for (unsigned nt = 1; nt <= MAX_THREADS; nt++) {
        printf("%u thread%s %-17s %8s %8s %5s | %8s %8s %5s | %5s\n", nt, nt > 1 ? "s" : " ", "",
               "raw-sa", "kvi-sa", "k/r", "raw-node", "kvi-cl", "k/r", "cl/sa");
        run_case(ws, nt, "store / SET", CASE_SET, CASE_SET, ops);
        run_case(ws, nt, "fetch / GET", CASE_GET, CASE_GET, ops);
        if (nt == 1) {
            run_case(ws, nt, "store ttl / SET EX", CASE_SETEX, CASE_SETEX, ops);
            run_case(ws, nt, "add ttl / same EVALSHA", CASE_ADD, CASE_ADD, ops);
            run_case(ws, nt, "add ttl / plain INCRBY", CASE_INCR, CASE_ADD, ops);
        }
        printf("\n");
    }

    for (unsigned t = 0; t < MAX_THREADS; t++) {
        freeReplyObject(shas[t][0]);
        freeReplyObject(shas[t][1]);
        redisFree(ws[t].sides[SIDE_RAW_SA].rc);
        redisFree(ws[t].sides[SIDE_RAW_NODE].rc);
    }
    kvi_free(k);
    kvi_tc_free(cl);
    kvi_ts_free(srv);
    return 0;
}
