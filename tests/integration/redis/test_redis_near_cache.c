/*
 * test_redis_near_cache.c -- the redis engine's near cache (client_cache=N,
 * docs/engines/redis.md "Near cache") against a real redis-server started
 * on a free 127.0.0.1 port: context A has the near cache, context B (no
 * near cache) plays "another client".  Invalidation is asynchronous, so a
 * change made by B must be seen by A within a bound (1 s), never at once;
 * what must hold at once is said so in each test.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
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

/* How long an invalidation may take to reach A. */
#define SEEN_WITHIN_MS 1000

struct fx {
    kvi_ts_server *s;
    kvi *a; /* client_cache=1000 */
    kvi *b; /* plain */
};

static kvi *context(const kvi_ts_server *s, const char *rest)
{
    char url[256];
    kvi_test_url(url, sizeof url, "redis", s, rest);
    return kvi_test_context1(url);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    /* DEBUG SET-ACTIVE-EXPIRE: the TTL test stops the server's own sweep. */
    const char *extra[] = {"--enable-debug-command", "yes", NULL};
    f->s = kvi_test_redis(extra);
    f->a = context(f->s, "?client_cache=1000");
    f->b = context(f->s, "");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    kvi_free(f->a);
    kvi_free(f->b);
    kvi_ts_free(f->s);
    free(f);
    return 0;
}

/* fetch of key through k: the status, and the value in buf (NUL-ended). */
static kvi_status fetch(kvi *k, const char *key, char *buf, size_t len)
{
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_fetch(k, "redis", key, strlen(key), &v);
    buf[0] = '\0';
    if (st == KVI_OK)
        snprintf(buf, len, "%.*s", (int)v.len, (const char *)v.data);
    else if (st != KVI_NOT_FOUND)
        fail_msg("fetch %s: %s: %s", key, kvi_status_name(st), kvi_errmsg(k));
    kvi_value_free(&v);
    return st;
}

/* Asserts that key reads want through k right now (want NULL: missing). */
static void assert_reads(kvi *k, const char *key, const char *want)
{
    char buf[256];
    kvi_status st = fetch(k, key, buf, sizeof buf);
    if (want == NULL && st != KVI_NOT_FOUND)
        fail_msg("%s: read '%s', want it missing", key, buf);
    if (want != NULL && (st != KVI_OK || strcmp(buf, want) != 0))
        fail_msg("%s: read %s '%s', want '%s'", key, kvi_status_name(st), buf, want);
}

/* Fetches key through k until it reads want (NULL: missing), at most
 * bound_ms; the ms it took, or fails. */
static int64_t until_reads(kvi *k, const char *key, const char *want, int64_t bound_ms)
{
    int64_t t0 = kvi_test_mono_ms();
    char buf[256];
    for (;;) {
        kvi_status st = fetch(k, key, buf, sizeof buf);
        if (want == NULL ? st == KVI_NOT_FOUND : st == KVI_OK && strcmp(buf, want) == 0)
            return kvi_test_mono_ms() - t0;
        if (kvi_test_mono_ms() - t0 > bound_ms)
            fail_msg("%s: still '%s' (%s) %lld ms after the change, want %s%s%s", key, buf,
                     kvi_status_name(st), (long long)bound_ms, want ? "'" : "missing",
                     want ? want : "", want ? "'" : "");
        kvi_test_sleep_ms(1);
    }
}

static void store(kvi *k, const char *key, const char *val)
{
    kvi_status st = kvi_store(k, "redis", key, strlen(key), val, strlen(val), 0);
    if (st != KVI_OK)
        fail_msg("store %s: %s: %s", key, kvi_status_name(st), kvi_errmsg(k));
}

static void raw(kvi *k, const char *q, kvi_reply **out)
{
    kvi_reply *r = NULL;
    kvi_status st = kvi_raw_query(k, "redis", q, strlen(q), &r);
    if (st != KVI_OK)
        fail_msg("raw %s: %s: %s", q, kvi_status_name(st), kvi_errmsg(k));
    if (out != NULL)
        *out = r;
    else
        kvi_reply_free(r);
}

static uint64_t hits(kvi *k)
{
    kvi_stats s;
    assert_int_equal(kvi_stats_get(k, "redis", &s), KVI_OK);
    assert_true(s.has_content);
    return s.near_hits;
}

/* Reads key (which holds val) through k twice: the second read must be a
 * near-cache hit. */
static void second_read_hits(kvi *k, const char *key, const char *val)
{
    assert_reads(k, key, val);
    uint64_t h = hits(k);
    assert_reads(k, key, val);
    if (hits(k) != h + 1)
        fail_msg("%s: the second fetch was not served by the near cache", key);
}

/* Reads key (which holds val) through k until a read is a near-cache hit
 * (the cache serves again once a new subscription stands), at most 3 s;
 * fails naming `after` otherwise. */
static void until_hit(kvi *k, const char *key, const char *val, const char *after)
{
    int64_t t0 = kvi_test_mono_ms();
    uint64_t h = hits(k);
    while (hits(k) == h) {
        assert_reads(k, key, val);
        if (kvi_test_mono_ms() - t0 > 3000)
            fail_msg("no near-cache hit within 3 s after %s", after);
        kvi_test_sleep_ms(10);
    }
}

/* Stores key=val through writer and reads it twice through k (the second
 * read a hit, checked). */
static void cached_in(kvi *writer, kvi *k, const char *key, const char *val)
{
    store(writer, key, val);
    second_read_hits(k, key, val);
}

/* Stores key=val through B and reads it twice through A: the second read
 * is a near-cache hit (checked). */
static void cached(struct fx *f, const char *key, const char *val)
{
    cached_in(f->b, f->a, key, val);
}

/* The near cache serves repeated fetches without asking the server. */
static void test_repeated_fetches_do_not_reach_the_server(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:hot", "v1");
    kvi_reply *r = NULL;
    raw(f->b, "INFO commandstats", &r);
    const char *text = kvi_reply_str(r, NULL);
    const char *g = strstr(text, "cmdstat_get:calls=");
    assert_non_null(g);
    long before = strtol(g + 18, NULL, 10);
    kvi_reply_free(r);
    for (int i = 0; i < 100; i++)
        assert_reads(f->a, "nc:hot", "v1");
    raw(f->b, "INFO commandstats", &r);
    text = kvi_reply_str(r, NULL);
    g = strstr(text, "cmdstat_get:calls=");
    long after = strtol(g + 18, NULL, 10);
    kvi_reply_free(r);
    if (after != before)
        fail_msg("100 cached fetches made %ld GETs at the server", after - before);
}

/* Another client changes a cached key: A sees the new value. */
static void test_a_change_by_another_client_is_seen(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:k", "v1");
    store(f->b, "nc:k", "v2");
    until_reads(f->a, "nc:k", "v2", SEEN_WITHIN_MS);
}

/* Another client removes a cached key: A sees it missing. */
static void test_a_removal_by_another_client_is_seen(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:k", "v1");
    assert_int_equal(kvi_remove(f->b, "redis", "nc:k", 4), KVI_OK);
    until_reads(f->a, "nc:k", NULL, SEEN_WITHIN_MS);
}

/* FLUSHALL (a nil invalidation: everything) is seen too. */
static void test_flushall_by_another_client_is_seen(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:k", "v1");
    raw(f->b, "FLUSHALL", NULL);
    until_reads(f->a, "nc:k", NULL, SEEN_WITHIN_MS);
}

/* A key with a TTL is never served after it: not even when the server has
 * not deleted it yet (no invalidation is sent before it does), here with
 * the server's own expiry sweep stopped. */
static void test_a_key_is_never_served_after_its_ttl(void **state)
{
    struct fx *f = *state;
    raw(f->b, "DEBUG SET-ACTIVE-EXPIRE 0", NULL);
    raw(f->b, "SET nc:ttl v1 PX 300", NULL);
    /* The TTL began before t0 (+1: t0 is rounded down to the ms). */
    int64_t t0 = kvi_test_mono_ms() + 1;
    assert_reads(f->a, "nc:ttl", "v1");
    uint64_t h0 = hits(f->a);
    char buf[64];
    int64_t last_seen = 0;
    for (;;) {
        int64_t start = kvi_test_mono_ms();
        uint64_t h = hits(f->a);
        kvi_status st = fetch(f->a, "nc:ttl", buf, sizeof buf);
        if (st == KVI_NOT_FOUND)
            break;
        /* (The server itself answers a key until its clock, in ms, has
         * passed the expiry: only a near-cache hit is judged.) */
        if (start - t0 >= 300 && hits(f->a) != h)
            fail_msg("the near cache served '%s' %lld ms after a 300 ms TTL began", buf,
                     (long long)(start - t0));
        last_seen = start - t0;
        if (start - t0 > 2000)
            fail_msg("never expired");
    }
    /* It was served from the near cache meanwhile. */
    if (hits(f->a) == h0)
        fail_msg("no near-cache hit while the key lived (last seen at %lld ms)",
                 (long long)last_seen);
    raw(f->b, "DEBUG SET-ACTIVE-EXPIRE 1", NULL);
}

/* The id of the connection subscribed to invalidations (CLIENT LIST TYPE
 * pubsub: A's is the only one). */
static long long subscriber_id(struct fx *f)
{
    kvi_reply *r = NULL;
    raw(f->b, "CLIENT LIST TYPE pubsub", &r);
    const char *text = kvi_reply_str(r, NULL);
    assert_non_null(text);
    const char *nl = strchr(text, '\n');
    long long id = strncmp(text, "id=", 3) == 0 ? strtoll(text + 3, NULL, 10) : 0;
    if (id <= 0 || nl == NULL || strstr(nl + 1, "id=") != NULL)
        fail_msg("not one subscriber: %s", text);
    kvi_reply_free(r);
    return id;
}

/* The invalidation connection is killed: its messages are lost, so the
 * near cache is flushed at once (the next fetch reads the server), and is
 * used again once a new subscription stands. */
static void test_a_killed_invalidation_connection_flushes_the_cache(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:k", "v1");
    char q[64];
    snprintf(q, sizeof q, "CLIENT KILL ID %lld", subscriber_id(f));
    raw(f->b, q, NULL);
    /* Its invalidation goes nowhere. */
    store(f->b, "nc:k", "v2");
    assert_reads(f->a, "nc:k", "v2");
    /* Subscribed again: cached and invalidated as before. */
    until_hit(f->a, "nc:k", "v2", "the subscription was killed");
    store(f->b, "nc:k", "v3");
    until_reads(f->a, "nc:k", "v3", SEEN_WITHIN_MS);
}

/* A subscription that stops answering without closing (here the server is
 * stopped with SIGSTOP; on a network, a cut without a reset) serves no hit
 * once it has been silent for a second plus the timeout: every second of
 * silence a PING must be answered. */
static void test_a_silent_invalidation_connection_stops_the_hits(void **state)
{
    struct fx *f = *state;
    kvi *k = context(f->s, "?client_cache=10&timeout=300&down_after=0");
    cached_in(f->b, k, "nc:quiet", "v1");
    int64_t t0 = kvi_test_mono_ms();
    kvi_test_hang(f->s);
    int64_t last_hit = -1;
    while (kvi_test_mono_ms() - t0 < 2500) {
        uint64_t before = hits(k);
        /* The time the fetch began: its hit was decided no earlier, so a
         * stall of this thread after the decision cannot fail the test. */
        int64_t began = kvi_test_mono_ms() - t0;
        kvi_value v = KVI_VALUE_INIT;
        (void)kvi_fetch(k, "redis", "nc:quiet", 8, &v); /* a hit, or a timeout */
        kvi_value_free(&v);
        if (hits(k) != before)
            last_hit = began;
        kvi_test_sleep_ms(20);
    }
    kvi_test_unhang(f->s);
    /* 1000 ms of silence, then 300 ms for the PING's answer (+ slack). */
    if (last_hit > 1600)
        fail_msg("a near-cache hit %lld ms after the server stopped answering",
                 (long long)last_hit);
    /* Back: cached again. */
    int64_t t1 = kvi_test_mono_ms();
    uint64_t h = hits(k);
    while (hits(k) == h) {
        char buf[16];
        kvi_value v = KVI_VALUE_INIT;
        (void)kvi_fetch(k, "redis", "nc:quiet", 8, &v);
        kvi_value_free(&v);
        (void)buf;
        if (kvi_test_mono_ms() - t1 > 5000)
            fail_msg("no near-cache hit within 5 s after the server answered again");
        kvi_test_sleep_ms(20);
    }
    kvi_free(k);
}

/* The server restarts (its data gone): no value from before is served. */
static void test_a_restarted_server_flushes_the_cache(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:k", "v1");
    cached(f, "nc:other", "o1");
    assert_int_equal(kvi_ts_restart(f->s), KVI_TS_OK);
    assert_reads(f->a, "nc:other", NULL);
    store(f->b, "nc:k", "v2");
    assert_reads(f->a, "nc:k", "v2");
    /* And it caches again. */
    until_hit(f->a, "nc:k", "v2", "the restart");
}

/* A's own writes are seen by A at once (read your writes), for every kind
 * of write: store, store_nx after a removal, remove, add, a raw query, a
 * batch. */
static void test_own_writes_are_seen_at_once(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:own", "v1");
    store(f->a, "nc:own", "v2");
    assert_reads(f->a, "nc:own", "v2");
    assert_reads(f->a, "nc:own", "v2");
    assert_int_equal(kvi_remove(f->a, "redis", "nc:own", 6), KVI_OK);
    assert_reads(f->a, "nc:own", NULL);
    assert_int_equal(kvi_store_nx(f->a, "redis", "nc:own", 6, "v3", 2, 0), KVI_OK);
    assert_reads(f->a, "nc:own", "v3");
    assert_reads(f->a, "nc:own", "v3");
    raw(f->a, "SET nc:own v4", NULL);
    assert_reads(f->a, "nc:own", "v4");

    cached(f, "nc:ctr", "10");
    int64_t v = 0;
    assert_int_equal(kvi_add(f->a, "redis", "nc:ctr", 6, 5, 0, &v), KVI_OK);
    assert_reads(f->a, "nc:ctr", "15");
    assert_reads(f->a, "nc:ctr", "15");
    assert_int_equal(kvi_add_bounded(f->a, "redis", "nc:ctr", 6, 1, 0, 0, 100, &v), KVI_OK);
    assert_reads(f->a, "nc:ctr", "16");

    assert_reads(f->a, "nc:own", "v4");
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(f->a, &b), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "redis", "nc:own", 6, "v5", 2, 0), KVI_OK);
    assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
    kvi_batch_free(b);
    assert_reads(f->a, "nc:own", "v5");
}

/* Changes racing fetches under way: whatever a fetch read before a change
 * it must not keep once the change's invalidation arrived, so A always
 * ends up reading the last value. */
struct racer {
    kvi *k;
    volatile int stop;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    char buf[64];
    while (!r->stop)
        fetch(r->k, "nc:race", buf, sizeof buf);
    return NULL;
}

static void test_a_fetch_racing_a_change_keeps_nothing_stale(void **state)
{
    struct fx *f = *state;
    struct racer r = {.k = f->a, .stop = 0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r), 0);
    char val[32];
    for (int i = 0; i < 300; i++) {
        snprintf(val, sizeof val, "v%d", i);
        store(f->b, "nc:race", val);
        until_reads(f->a, "nc:race", val, SEEN_WITHIN_MS);
    }
    r.stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    if (hits(f->a) == 0)
        fail_msg("the near cache never served a fetch");
}

/* A child after fork() has its own near cache and subscription: it never
 * reads the parent's invalidation connection (which would steal the
 * parent's messages), and the parent still sees every change. */
static void test_a_forked_child_has_its_own_near_cache(void **state)
{
    struct fx *f = *state;
    cached(f, "nc:fork", "p1");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = 1;
        char buf[64];
        /* The child's first fetch reads the server (its cache is new). */
        kvi_value v = KVI_VALUE_INIT;
        ok &= kvi_fetch(f->a, "redis", "nc:fork", 7, &v) == KVI_OK && v.len == 2;
        kvi_value_free(&v);
        /* Another client changes the key; the child keeps fetching (a
         * child using the parent's connection would read its message). */
        ok &= kvi_store(f->b, "redis", "nc:fork", 7, "c2", 2, 0) == KVI_OK;
        /* Until seen (bounded): a loaded machine may stall the child
         * longer than any fixed window before its first fetch. */
        int64_t t0 = kvi_test_mono_ms();
        int seen = 0;
        while (!seen && kvi_test_mono_ms() - t0 < 5000) {
            kvi_value w = KVI_VALUE_INIT;
            if (kvi_fetch(f->a, "redis", "nc:fork", 7, &w) == KVI_OK && w.len == 2 &&
                memcmp(w.data, "c2", 2) == 0)
                seen = 1;
            kvi_value_free(&w);
        }
        (void)buf;
        _exit(ok && seen ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    until_reads(f->a, "nc:fork", "c2", SEEN_WITHIN_MS);
}

/* A failover list: the first server dies, fetches go to the second; no
 * value cached from the first is served, and the near cache subscribes on
 * the second. */
static void test_a_failover_serves_nothing_from_the_old_server(void **state)
{
    struct fx *f = *state;
    kvi_ts_server *s2 = kvi_test_redis(NULL);
    kvi *other = context(s2, "");
    store(other, "nc:fo", "second");
    char url[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u,127.0.0.1:%u/?client_cache=100",
             (unsigned)kvi_ts_port(f->s), (unsigned)kvi_ts_port(s2));
    kvi *k = kvi_test_context1(url);
    cached_in(f->b, k, "nc:fo", "first");
    assert_int_equal(kvi_ts_kill(f->s), KVI_TS_OK);
    assert_reads(k, "nc:fo", "second");
    /* Cached again, now from the second server, and invalidated by it. */
    until_hit(k, "nc:fo", "second", "the failover");
    store(other, "nc:fo", "second-2");
    until_reads(k, "nc:fo", "second-2", SEEN_WITHIN_MS);
    kvi_free(k);
    kvi_free(other);
    kvi_ts_free(s2);
}

/* Sentinel: the near cache follows the master Sentinel names; after a
 * failover (SENTINEL FAILOVER) a change made on the new master is seen. */
static void test_a_sentinel_failover_is_followed(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {.replicas = 1, .sentinels = 3, .quorum = 2};
    kvi_tsn_setup *set = kvi_test_sentinels_case(&spec);
    char base[512], url[600];
    kvi_tsn_url(set, "redis", base, sizeof base);
    snprintf(url, sizeof url, "%s&client_cache=100", base);
    kvi *k = kvi_test_context1(url);
    kvi *plain = kvi_test_context1(base);
    cached_in(plain, k, "nc:sn", "v1");

    char sent[128], buf[256];
    snprintf(sent, sizeof sent, "SENTINEL FAILOVER mymaster");
    for (int tries = 0;; tries++) {
        buf[0] = '\0';
        if (kvi_tsn_query(kvi_ts_port(kvi_tsn_sentinel(set, 0)), sent, buf, sizeof buf) == 0 &&
            strncmp(buf, "+OK", 3) == 0)
            break;
        if (tries > 100)
            fail_msg("SENTINEL FAILOVER: %s", buf);
        kvi_test_sleep_ms(100);
    }
    /* The plain context writes wherever Sentinel now says the master is;
     * the near cache must end up reading that value. */
    int64_t t0 = kvi_test_mono_ms();
    for (;;) {
        if (kvi_store(plain, "redis", "nc:sn", 5, "v2", 2, 0) == KVI_OK)
            break;
        if (kvi_test_mono_ms() - t0 > 20000)
            fail_msg("no write after the failover within 20 s: %s", kvi_errmsg(plain));
        kvi_test_sleep_ms(100);
    }
    t0 = kvi_test_mono_ms();
    for (;;) {
        kvi_value v = KVI_VALUE_INIT;
        kvi_status st = kvi_fetch(k, "redis", "nc:sn", 5, &v);
        int done = st == KVI_OK && v.len == 2 && memcmp(v.data, "v2", 2) == 0;
        kvi_value_free(&v);
        if (done)
            break;
        if (kvi_test_mono_ms() - t0 > 20000)
            fail_msg("the near cache still does not read v2 20 s after the failover (%s)",
                     kvi_status_name(st));
        kvi_test_sleep_ms(50);
    }
    kvi_free(k);
    kvi_free(plain);
    kvi_tsn_free(set);
}

static void count_refusals(void *ud, kvi_log_level level, const char *msg)
{
    (void)level;
    if (strstr(msg, "CLIENT TRACKING refused") != NULL)
        (*(int *)ud)++;
}

/* A user the server does not allow CLIENT TRACKING (an ACL; or Redis < 6):
 * every fetch is answered right by the server, nothing is served from the
 * near cache, and the refusal is logged once, not once a second. */
static void test_tracking_refused_bypasses_the_cache_and_says_so_once(void **state)
{
    struct fx *f = *state;
    raw(f->b, "ACL SETUSER nc on >nc-pw ~* &* +@all -client|tracking", NULL);
    char url[256];
    snprintf(url, sizeof url, "redis://nc:nc-pw@127.0.0.1:%u/?client_cache=10",
             (unsigned)kvi_ts_port(f->s));
    kvi *k = NULL;
    int refusals = 0;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_set_log(k, count_refusals, &refusals, KVI_LOG_WARN), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("%s: %s", kvi_status_name(st), kvi_errmsg(k));
    store(f->b, "nc:acl", "v1");
    int64_t t0 = kvi_test_mono_ms();
    int n = 0;
    while (kvi_test_mono_ms() - t0 < 2500) {
        assert_reads(k, "nc:acl", n % 2 ? "v2" : "v1");
        store(f->b, "nc:acl", n % 2 ? "v1" : "v2");
        n++;
        kvi_test_sleep_ms(50);
    }
    assert_int_equal(hits(k), 0);
    if (refusals != 1)
        fail_msg("the refusal was logged %d times in 2.5 s, want once", refusals);
    kvi_free(k);
}

/* A fetch that fails (the server stopped answering: a timeout) is not
 * taken for a refusal of CLIENT TRACKING: no such line is logged (which
 * would also keep a real refusal from ever being logged). */
static void test_a_failed_fetch_is_not_logged_as_a_tracking_refusal(void **state)
{
    struct fx *f = *state;
    char url[256];
    kvi_test_url(url, sizeof url, "redis", f->s, "?client_cache=10&timeout=200&down_after=0");
    kvi *k = NULL;
    int refusals = 0;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_set_log(k, count_refusals, &refusals, KVI_LOG_WARN), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("%s: %s", kvi_status_name(st), kvi_errmsg(k));
    store(f->b, "nc:stop", "v1");
    assert_reads(k, "nc:stop", "v1");
    /* Another key: its fetch needs the server, which does not answer. */
    kvi_test_hang(f->s);
    kvi_value v = KVI_VALUE_INIT;
    st = kvi_fetch(k, "redis", "nc:other", 8, &v);
    kvi_value_free(&v);
    kvi_test_unhang(f->s);
    assert_int_equal(st, KVI_E_TIMEOUT);
    if (refusals != 0)
        fail_msg("a timed-out fetch was logged as a CLIENT TRACKING refusal");
    kvi_free(k);
}

/* How many normal (not pub/sub) clients the server has. */
static int normal_clients(struct fx *f)
{
    kvi_reply *r = NULL;
    raw(f->b, "CLIENT LIST TYPE normal", &r);
    int n = 0;
    for (const char *p = kvi_reply_str(r, NULL); p != NULL && (p = strstr(p, " laddr=")) != NULL;
         p += 7)
        n++;
    kvi_reply_free(r);
    return n;
}

/* The pooled connection that read a cached key is closed by this process
 * (here: a fetch on it timed out): Redis sends no invalidation for what a
 * closed connection read, even though the subscription stands, so the
 * entry must not be served after a change made later. */
static void test_a_closed_tracking_connection_serves_nothing_stale(void **state)
{
    struct fx *f = *state;
    int before = normal_clients(f);
    kvi *k = context(f->s, "?client_cache=10&timeout=200&down_after=0&max_idle=1");
    cached_in(f->b, k, "nc:cl", "v1");
    /* The one pooled connection times out on another key and is closed. */
    kvi_test_hang(f->s);
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_fetch(k, "redis", "nc:cl-other", 11, &v);
    kvi_value_free(&v);
    kvi_test_unhang(f->s);
    assert_int_equal(st, KVI_E_TIMEOUT);
    /* The server has seen the close. */
    int64_t t0 = kvi_test_mono_ms();
    while (normal_clients(f) != before) {
        if (kvi_test_mono_ms() - t0 > 5000)
            fail_msg("the timed-out connection is still open on the server");
        kvi_test_sleep_ms(10);
    }
    store(f->b, "nc:cl", "v2");
    until_reads(k, "nc:cl", "v2", SEEN_WITHIN_MS);
    kvi_free(k);
}

/* The server closes the idle pooled connection that read a cached key
 * (CLIENT KILL; so would its `timeout`): it sends no invalidation for what
 * that connection read, so after a change made later the entry is not
 * served, not even once (the close is seen before the next hit). */
static void test_a_tracking_connection_the_server_closes_serves_nothing_stale(void **state)
{
    struct fx *f = *state;
    kvi *k = context(f->s, "?client_cache=10");
    cached_in(f->b, k, "nc:sk", "v1");
    /* Every normal client but B's asking one: k's data connection (its
     * subscription is a pub/sub client and stays). */
    kvi_reply *r = NULL;
    raw(f->b, "CLIENT KILL TYPE normal SKIPME yes", &r);
    print_message("  CLIENT KILL: %lld connection(s) closed\n", (long long)kvi_reply_integer(r));
    assert_true(kvi_reply_integer(r) >= 1);
    kvi_reply_free(r);
    store(f->b, "nc:sk", "v2");
    assert_reads(k, "nc:sk", "v2");
    /* And it caches again. */
    second_read_hits(k, "nc:sk", "v2");
    kvi_free(k);
}

/* The same through the server's `timeout` setting: the idle data
 * connection is closed by the server after 1 s (a subscription is not:
 * Redis spares pub/sub clients), and the change made after that is read
 * at once. */
static void test_a_tracking_connection_the_server_times_out_serves_nothing_stale(void **state)
{
    struct fx *f = *state;
    kvi *k = context(f->s, "?client_cache=10");
    cached_in(f->b, k, "nc:to", "v1");
    raw(f->b, "CONFIG SET timeout 1", NULL);
    /* Until only the asking connection is left (k's and B's idle ones
     * timed out). */
    int64_t t0 = kvi_test_mono_ms();
    while (normal_clients(f) > 1) {
        if (kvi_test_mono_ms() - t0 > 5000)
            fail_msg("the server's timeout closed no idle connection within 5 s");
        kvi_test_sleep_ms(100);
    }
    raw(f->b, "CONFIG SET timeout 0", NULL);
    store(f->b, "nc:to", "v2");
    assert_reads(k, "nc:to", "v2");
    kvi_free(k);
}

/* Values longer than client_cache_max_value are not kept. */
static void test_long_values_are_not_kept(void **state)
{
    struct fx *f = *state;
    kvi *k = context(f->s, "?client_cache=10&client_cache_max_value=4");
    store(f->b, "nc:long", "12345");
    char buf[16];
    for (int i = 0; i < 3; i++)
        fetch(k, "nc:long", buf, sizeof buf);
    assert_int_equal(hits(k), 0);
    kvi_free(k);
}

/* At most client_cache entries: the least recently used one goes. */
static void test_the_least_recently_used_entry_is_evicted(void **state)
{
    struct fx *f = *state;
    kvi *k = context(f->s, "?client_cache=2");
    char buf[16];
    store(f->b, "nc:e1", "1");
    store(f->b, "nc:e2", "2");
    store(f->b, "nc:e3", "3");
    fetch(k, "nc:e1", buf, sizeof buf);
    fetch(k, "nc:e2", buf, sizeof buf);
    fetch(k, "nc:e1", buf, sizeof buf); /* hit: e2 is now the oldest */
    fetch(k, "nc:e3", buf, sizeof buf); /* evicts e2 */
    kvi_stats s;
    assert_int_equal(kvi_stats_get(k, "redis", &s), KVI_OK);
    assert_int_equal(s.entries, 2);
    assert_int_equal(s.evicted, 1);
    uint64_t h = s.near_hits;
    fetch(k, "nc:e1", buf, sizeof buf);
    assert_int_equal(hits(k), h + 1);
    fetch(k, "nc:e2", buf, sizeof buf);
    assert_int_equal(hits(k), h + 1);
    kvi_free(k);
}

/* The stats: hits counts every fetch that found its key, near_hits those
 * the near cache answered; misses (the core's) the keys not found. */
static void test_stats_count_hits_and_near_hits(void **state)
{
    struct fx *f = *state;
    kvi *k = context(f->s, "?client_cache=10");
    char buf[16];
    store(f->b, "nc:st", "x");
    for (int i = 0; i < 3; i++)
        fetch(k, "nc:st", buf, sizeof buf);
    fetch(k, "nc:missing", buf, sizeof buf);
    kvi_stats s;
    assert_int_equal(kvi_stats_get(k, "redis", &s), KVI_OK);
    assert_true(s.has_content);
    assert_int_equal(s.hits, 3);
    assert_int_equal(s.near_hits, 2);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.entries, 1);
    kvi_free(k);
}

/* Without client_cache nothing is cached and stats have no content. */
static void test_off_by_default(void **state)
{
    struct fx *f = *state;
    kvi_stats s;
    assert_int_equal(kvi_stats_get(f->b, "redis", &s), KVI_OK);
    assert_false(s.has_content);
}

/* A Redis Cluster is refused with a clear message (no server needed). */
static void test_a_cluster_is_refused(void **state)
{
    (void)state;
    kvi *k = kvi_test_context(NULL);
    kvi_status st = kvi_add_url(k, "redis://127.0.0.1:1/?cluster=yes&client_cache=10&lazy=yes");
    if (st != KVI_E_INVALID || strstr(kvi_errmsg(k), "not with a Redis Cluster") == NULL)
        fail_msg("%s '%s'", kvi_status_name(st), kvi_errmsg(k));
    kvi_free(k);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_repeated_fetches_do_not_reach_the_server),
        T(test_a_change_by_another_client_is_seen),
        T(test_a_removal_by_another_client_is_seen),
        T(test_flushall_by_another_client_is_seen),
        T(test_a_key_is_never_served_after_its_ttl),
        T(test_a_killed_invalidation_connection_flushes_the_cache),
        T(test_a_restarted_server_flushes_the_cache),
        T(test_a_silent_invalidation_connection_stops_the_hits),
        T(test_own_writes_are_seen_at_once),
        T(test_a_fetch_racing_a_change_keeps_nothing_stale),
        T(test_a_forked_child_has_its_own_near_cache),
        T(test_a_failover_serves_nothing_from_the_old_server),
        T(test_a_sentinel_failover_is_followed),
        T(test_a_failed_fetch_is_not_logged_as_a_tracking_refusal),
        T(test_a_closed_tracking_connection_serves_nothing_stale),
        T(test_a_tracking_connection_the_server_closes_serves_nothing_stale),
        T(test_a_tracking_connection_the_server_times_out_serves_nothing_stale),
        T(test_long_values_are_not_kept),
        T(test_the_least_recently_used_entry_is_evicted),
        T(test_stats_count_hits_and_near_hits),
        T(test_tracking_refused_bypasses_the_cache_and_says_so_once),
        T(test_off_by_default),
        cmocka_unit_test(test_a_cluster_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
