/*
 * rel_soak.c -- mixed operations from several threads for a bounded time
 * on one engine while the process's resident memory is sampled; after a
 * warm-up the memory must stay flat (a leak fails the test).
 *
 *   rel_soak local|redis|memcached     duration: $KVI_SOAK_SECONDS (60)
 *   rel_soak selftest                  proves the detector: a local run
 *                                      that leaks on purpose must be caught
 *
 * The key space is bounded (2000 keys, values up to 4 KiB), so a store
 * that is not leaking reaches a steady size during the warm-up (the first
 * quarter).  The samples after it are split in thirds; the mean of the
 * last third may exceed the mean of the first by at most
 * max(4 MiB, 5 %) ($KVI_SOAK_TOLERANCE_KIB overrides the 4 MiB).  Prints
 * "RESULT soak ..." with the figures.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rel_util.h"
#include "testserver.h"

#define THREADS 4
#define KEYS 2000
#define MAX_VAL 4096
#define MAX_SAMPLES 100000

struct soak {
    kvi_conn *conn;
    uint32_t caps;
    int is_redis;
    int64_t deadline;
    size_t leak_bytes; /* selftest: bytes leaked per operation */
    _Atomic uint64_t ops, errors;
    pthread_mutex_t leak_mu;
    void *leaked; /* selftest: list of the "leaked" blocks */
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker(void *arg)
{
    struct soak *sk = arg;
    static _Atomic uint64_t seeds = 88172645463325252u;
    uint64_t seed = atomic_fetch_add(&seeds, 0x9e3779b97f4a7c15u) | 1u;
    char val[MAX_VAL];
    memset(val, 'v', sizeof val);
    while (kvi_test_mono_ms() < sk->deadline) {
        for (int i = 0; i < 64; i++) {
            char key[32];
            int kl = snprintf(key, sizeof key, "soak:%" PRIu64, rnd(&seed) % KEYS);
            int ckl = snprintf(key + kl + 1, sizeof key - (size_t)kl - 1, "ctr:%" PRIu64,
                               rnd(&seed) % 100);
            const char *ckey = key + kl + 1;
            kvi_value v = KVI_VALUE_INIT;
            kvi_reply *r = NULL;
            int64_t n = 0;
            uint64_t removed = 0;
            kvi_status st = KVI_OK;
            uint64_t pick = rnd(&seed) % 100;
            if (pick < 30) {
                st = kvi_conn_store(sk->conn, key, (size_t)kl, val, rnd(&seed) % MAX_VAL,
                                    (sk->caps & KVI_CAP_TTL) && pick < 5 ? 60 : 0);
            } else if (pick < 60) {
                st = kvi_conn_fetch(sk->conn, key, (size_t)kl, &v);
                kvi_value_free(&v);
            } else if (pick < 68) {
                st = kvi_conn_remove(sk->conn, key, (size_t)kl);
            } else if (pick < 78 && (sk->caps & KVI_CAP_COUNTERS)) {
                st = kvi_conn_add(sk->conn, ckey, (size_t)ckl, 3, 0, &n);
            } else if (pick < 84 && (sk->caps & KVI_CAP_COUNTERS)) {
                st = kvi_conn_sub(sk->conn, ckey, (size_t)ckl, 2, 0, &n);
            } else if (pick < 90 && (sk->caps & KVI_CAP_COUNTERS)) {
                st = kvi_conn_counter_fetch(sk->conn, ckey, (size_t)ckl, &n);
            } else if (pick < 93 && (sk->caps & KVI_CAP_TTL)) {
                st = kvi_conn_ttl(sk->conn, key, (size_t)kl, &n);
            } else if (pick < 94 && (sk->caps & KVI_CAP_ITERATE)) {
                st = kvi_conn_keys(sk->conn, "soak:1*", 7, &r);
                kvi_reply_free(r);
            } else if (pick < 95 && (sk->caps & KVI_CAP_ITERATE) && rnd(&seed) % 20 == 0) {
                st = kvi_conn_remove_chunk(sk->conn, "soak:19*", 8, &removed);
            } else if (pick < 98 && sk->is_redis) {
                st = kvi_conn_raw_query(sk->conn, "MGET soak:1 soak:2", 18, &r);
                kvi_reply_free(r);
            } else {
                st = kvi_conn_ping(sk->conn);
            }
            /* NOT_A_COUNTER: a counter key is never stored as text here,
             * but keep the test about memory, not semantics. */
            if (st != KVI_OK && st != KVI_NOT_FOUND)
                atomic_fetch_add(&sk->errors, 1);
            atomic_fetch_add(&sk->ops, 1);
            if (sk->leak_bytes > 0) {
                /* Held until the end (so that LeakSanitizer and valgrind
                 * stay quiet): to the RSS sampler it is a leak. */
                void **leak = malloc(sk->leak_bytes);
                if (leak != NULL) {
                    memset(leak, 1, sk->leak_bytes);
                    pthread_mutex_lock(&sk->leak_mu);
                    *leak = sk->leaked;
                    sk->leaked = leak;
                    pthread_mutex_unlock(&sk->leak_mu);
                }
            }
        }
    }
    return NULL;
}

static double mean(const uint64_t *v, size_t from, size_t to)
{
    double sum = 0;
    for (size_t i = from; i < to; i++)
        sum += (double)v[i];
    return to > from ? sum / (double)(to - from) : 0;
}

/* Runs the soak; returns 0 when memory stayed flat, 1 when it grew. */
static int soak(const char *engine, const char *url, const char *id, long seconds,
                size_t leak_bytes)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        rel_fail("kvi_new");
    kvi_status st = url != NULL ? kvi_add_url(k, url) : KVI_OK;
    if (st == KVI_E_MODULE_MISSING)
        rel_skip("engine module not built");
    if (st != KVI_OK)
        rel_fail("kvi_add_url: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    struct soak sk = {.leak_bytes = leak_bytes,
                      .is_redis = strcmp(engine, "redis") == 0,
                      .leak_mu = PTHREAD_MUTEX_INITIALIZER};
    if (kvi_conn_get(k, id, &sk.conn) != KVI_OK)
        rel_fail("kvi_conn_get");
    sk.caps = kvi_conn_caps(sk.conn);
    int64_t start = kvi_test_mono_ms();
    sk.deadline = start + seconds * 1000;
    pthread_t tids[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&tids[i], NULL, worker, &sk) != 0)
            rel_fail("pthread_create");

    static uint64_t samples[MAX_SAMPLES];
    size_t n = 0, warm = 0;
    int64_t warm_until = start + (seconds * 1000) / 4;
    if (warm_until < start + 2000)
        warm_until = start + 2000;
    uint64_t rss_start = rel_rss_kib();
    while (kvi_test_mono_ms() < sk.deadline && n < MAX_SAMPLES) {
        kvi_test_sleep_ms(250);
        if (kvi_test_mono_ms() < warm_until) {
            warm++;
            samples[n++] = rel_rss_kib();
            continue;
        }
        samples[n++] = rel_rss_kib();
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(tids[i], NULL);
    kvi_free(k);
    while (sk.leaked != NULL) {
        void *next = *(void **)sk.leaked;
        free(sk.leaked);
        sk.leaked = next;
    }

    size_t post = n - warm;
    if (post < 6)
        rel_fail("too few samples after the warm-up (%zu); run longer", post);
    size_t third = post / 3;
    double first = mean(samples, warm, warm + third);
    double last = mean(samples, n - third, n);
    uint64_t peak = 0;
    for (size_t i = warm; i < n; i++)
        if (samples[i] > peak)
            peak = samples[i];
    double tol = (double)rel_env_long("KVI_SOAK_TOLERANCE_KIB", 4096);
    if (first * 0.05 > tol)
        tol = first * 0.05;
    double growth = last - first;
    uint64_t ops = atomic_load(&sk.ops), errors = atomic_load(&sk.errors);
    printf("RESULT soak %s: %ld s, %d threads, %" PRIu64 " ops (%" PRIu64
           " errors), rss start %" PRIu64
           " KiB, after warm-up %.0f KiB, end %.0f KiB, peak %" PRIu64
           " KiB, growth %+.0f KiB (tolerance %.0f KiB)\n",
           engine, seconds, THREADS, ops, errors, rss_start, first, last, peak, growth, tol);
    if (errors > ops / 100)
        rel_fail("%" PRIu64 " of %" PRIu64 " operations failed", errors, ops);
    return growth > tol ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: rel_soak local|redis|memcached|selftest\n");
        return 2;
    }
    long seconds = rel_env_long("KVI_SOAK_SECONDS", 60);
    if (strcmp(argv[1], "selftest") == 0) {
        /* 48 bytes per operation add tens of MiB in a few seconds. */
        if (soak("local(leaking)", NULL, "local", 6, 512) == 0)
            rel_fail("the detector missed a leak of 512 bytes per operation");
        printf("PASS: the leak was detected\n");
        return 0;
    }
    if (strcmp(argv[1], "local") == 0) {
        if (soak("local", NULL, "local", seconds, 0) != 0)
            rel_fail("resident memory grew after the warm-up (leak?)");
        printf("PASS soak local\n");
        return 0;
    }
    kvi_ts_server *s = NULL;
    kvi_ts_result r = strcmp(argv[1], "redis") == 0       ? kvi_ts_redis_start(&s, NULL)
                      : strcmp(argv[1], "memcached") == 0 ? kvi_ts_memcached_start(&s, NULL)
                                                          : KVI_TS_FAILED;
    if (r == KVI_TS_MISSING)
        rel_skip(kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        rel_fail("%s: %s", argv[1], kvi_ts_errmsg());
    char url[128], id[64];
    snprintf(id, sizeof id, "%s:soak", argv[1]);
    snprintf(url, sizeof url, "%s://127.0.0.1:%u/", id, kvi_ts_port(s));
    int grew = soak(argv[1], url, id, seconds, 0);
    kvi_ts_free(s);
    if (grew)
        rel_fail("resident memory grew after the warm-up (leak?)");
    printf("PASS soak %s\n", argv[1]);
    return 0;
}
