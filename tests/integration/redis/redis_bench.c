/*
 * redis_bench.c -- kvi's redis engine against raw hiredis: the same
 * commands on the same kind of connection (one TCP connection to a
 * throwaway redis-server on 127.0.0.1), one thread, request/reply.
 *
 *     redis_bench [ops]        (default 20000 per case)
 *
 * Prints one line per case: ops/s of raw hiredis, ops/s of kvi, and the
 * ratio kvi/raw (1.00 = no overhead).  A program, not a test.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvi/kvi.h"
#include "testserver.h"

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

static void report(const char *name, long ops, double raw_s, double kvi_s)
{
    printf("%-28s raw %9.0f ops/s   kvi %9.0f ops/s   kvi/raw %.2f\n", name, (double)ops / raw_s,
           (double)ops / kvi_s, raw_s / kvi_s);
}

#define BLOCK 1000
#define COUNTER_SCRIPT                                                                             \
    "local created = redis.call('EXISTS', KEYS[1]) == 0\n"                                         \
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"                                                     \
    "if created and ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"              \
    "return redis.call('GET', KEYS[1])\n"

enum { CASE_SET, CASE_GET, CASE_SETEX, CASE_ADD, CASE_INCR };

struct bench {
    redisContext *rc;
    kvi_conn *c;
    kvi *k;
    const char *val;
    size_t val_len;
    const char *sha;
};

/* n raw hiredis requests of kind what, starting at key number i0. */
static void raw_block(const struct bench *b, int what, long i0, long n)
{
    char key[32];
    for (long i = i0; i < i0 + n; i++) {
        size_t kl = (size_t)snprintf(key, sizeof key, "%c%ld", "ssscc"[what], i % 1000);
        const char *a[6];
        size_t l[6];
        int argc;
        switch (what) {
        case CASE_SET:
        case CASE_SETEX:
            a[0] = "SET", a[1] = key, a[2] = b->val, a[3] = "EX", a[4] = "300";
            l[0] = 3, l[1] = kl, l[2] = b->val_len, l[3] = 2, l[4] = 3;
            argc = what == CASE_SET ? 3 : 5;
            break;
        case CASE_GET:
            a[0] = "GET", a[1] = key, l[0] = 3, l[1] = kl, argc = 2;
            break;
        case CASE_ADD:
            a[0] = "EVALSHA", a[1] = b->sha, a[2] = "1", a[3] = key, a[4] = "1", a[5] = "300";
            l[0] = 7, l[1] = strlen(b->sha), l[2] = 1, l[3] = kl, l[4] = 1, l[5] = 3;
            argc = 6;
            break;
        default:
            a[0] = "INCRBY", a[1] = key, a[2] = "1", l[0] = 6, l[1] = kl, l[2] = 1, argc = 3;
            key[0] = 'i';
            break;
        }
        raw_cmd(b->rc, argc, a, l);
    }
}

/* n kvi calls of kind what. */
static void kvi_block(const struct bench *b, int what, long i0, long n)
{
    char key[32];
    for (long i = i0; i < i0 + n; i++) {
        size_t kl = (size_t)snprintf(key, sizeof key, "%c%ld", "ssscc"[what], i % 1000);
        kvi_status st;
        kvi_value v = KVI_VALUE_INIT;
        int64_t nv;
        switch (what) {
        case CASE_SET:
            st = kvi_conn_store(b->c, key, kl, b->val, b->val_len, 0);
            break;
        case CASE_SETEX:
            st = kvi_conn_store(b->c, key, kl, b->val, b->val_len, 300);
            break;
        case CASE_GET:
            st = kvi_conn_fetch(b->c, key, kl, &v);
            kvi_value_free(&v);
            break;
        default:
            st = kvi_conn_add(b->c, key, kl, 1, 300, &nv);
            break;
        }
        if (st != KVI_OK)
            die("kvi", kvi_errmsg(b->k));
    }
}

static void run_case(const struct bench *b, const char *name, int raw_what, int kvi_what, long ops)
{
    double raw_s = 0, kvi_s = 0;
    if (raw_what == CASE_GET) {
        raw_block(b, CASE_SET, 0, 1000); /* keys to read */
    }
    for (long done = 0; done < ops; done += BLOCK) {
        long n = ops - done < BLOCK ? ops - done : BLOCK;
        double t0 = now_s();
        raw_block(b, raw_what, done, n);
        double t1 = now_s();
        kvi_block(b, kvi_what, done, n);
        double t2 = now_s();
        raw_s += t1 - t0;
        kvi_s += t2 - t1;
    }
    report(name, ops, raw_s, kvi_s);
}

int main(int argc, char **argv)
{
    long ops = argc > 1 ? atol(argv[1]) : 20000;
    kvi_ts_server *srv = NULL;
    if (ops <= 0)
        die("usage", "redis_bench [ops]");
    kvi_ts_result tr = kvi_ts_redis_start(&srv, NULL);
    if (tr != KVI_TS_OK)
        die("redis-server", kvi_ts_errmsg());
    unsigned port = kvi_ts_port(srv);

    redisContext *rc = redisConnect("127.0.0.1", (int)port);
    if (rc == NULL || rc->err)
        die("hiredis connect", rc ? rc->errstr : "out of memory");
    kvi *k = NULL;
    kvi_conn *c = NULL;
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", port);
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url) != KVI_OK ||
        kvi_conn_get(k, "redis", &c) != KVI_OK)
        die("kvi", kvi_errmsg(k));

    char val[100];
    memset(val, 'v', sizeof val);
    redisReply *sha = redisCommand(rc, "SCRIPT LOAD %s", COUNTER_SCRIPT);
    if (sha == NULL || sha->type != REDIS_REPLY_STRING)
        die("SCRIPT LOAD", rc->errstr);
    struct bench b = {rc, c, k, val, sizeof val, sha->str};
    printf("redis_bench: %ld ops per case, value %zu bytes, one connection, 127.0.0.1:%u\n"
           "(raw and kvi alternate in blocks of %d ops so that machine noise hits both)\n",
           ops, sizeof val, port, BLOCK);
    run_case(&b, "store / SET", CASE_SET, CASE_SET, ops);
    run_case(&b, "fetch / GET", CASE_GET, CASE_GET, ops);
    run_case(&b, "store ttl / SET EX", CASE_SETEX, CASE_SETEX, ops);
    run_case(&b, "add ttl / same EVALSHA", CASE_ADD, CASE_ADD, ops);
    run_case(&b, "add ttl / plain INCRBY", CASE_INCR, CASE_ADD, ops);
    freeReplyObject(sha);

    redisFree(rc);
    kvi_free(k);
    kvi_ts_free(srv);
    return 0;
}
