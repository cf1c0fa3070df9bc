/*
 * conformance.h -- the shared fixture and helpers of kvi-conformance, the one
 * contract suite (docs/semantics.md) run against any engine
 * id through the public API only.  One file per block of docs/semantics.md:
 *
 *   store.c        store, fetch, remove, keys and values
 *   expiry.c       expiry and ttl
 *   counters.c     add, sub, counter_fetch
 *   concurrency.c  concurrent adds across threads and processes
 *   query.c        raw query, keys and remove by glob
 *   conditional.c  bounded add/sub and store-if-absent (KVI_CAP_CONDITIONAL)
 *   bad_input.c    KVI_E_INVALID before any engine runs
 *   batch.c        batches: many operations of any kind run together
 *   fixture.c      the run configuration and the per-test fixture
 *   main.c         options, throwaway servers, the list of blocks
 *
 * Every test gets a fresh context and a unique key prefix (so reruns against
 * a persistent server never collide) and removes its keys at the end.  With
 * virtual time the suite moves the context's clock (kvi_set_clock) instead
 * of sleeping; with real time (the server keeps time) it sleeps the real
 * seconds, using expiries of 2 s and one sleep per test.  A missing
 * capability bit must make the operation KVI_E_UNSUPPORTED.
 *
 * The helpers are static inline so that each block is one self-contained
 * file; the state they share lives in fixture.c.
 */
#ifndef KVI_CONFORMANCE_H
#define KVI_CONFORMANCE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "kvitest.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "kvi/kvi.h"
#include "testclock.h"
#include "testserver.h"
#ifdef KVI_HAVE_TESTCLUSTER
#include "testcluster.h"
#endif

#define SKIP_EXIT 77
#define NTHREADS 8
#define NCOUNTERS 4
#define NPROCS 4

/* ---- run configuration ---------------------------------------------------- */

struct conf_config {
    char url[4096];
    char id[KVI_MAX_ID_LEN + 1];
    char scheme[64];
    const char *url_file;
    int virtual_time; /* 1 virtual, 0 real */
    int ops;          /* adds per thread */
    char run[64];     /* unique per run: part of every key */
    unsigned test_no;
    int nonblocking; /* --nonblocking: the op_* helpers go through kvi_start_* */
    kvi_ts_server *servers[3];
    size_t nservers;
#ifdef KVI_HAVE_TESTCLUSTER
    kvi_tc_cluster *cluster;
#endif
};

/* The run configuration (fixture.c), set by main before any test. */
extern struct conf_config conf_g;

/* ---- fixture -------------------------------------------------------------- */

typedef struct tkey {
    char b[KVI_MAX_KEY_LEN];
    size_t n;
} tkey;

typedef struct fx {
    kvi *k;
    kvi_conn *c;
    uint32_t caps;
    const char *id;
    kvi_test_clock clock; /* the virtual clock */
    char prefix[128];
    size_t prefix_len;
    tkey *keys; /* removed at teardown */
    size_t nkeys, capkeys;
    unsigned calls; /* alternates id form and handle form */
    kvi_batch *nb;  /* --nonblocking: the batch of the single ops */
} fx;

#define F ((fx *)*state)


/* Defines conf_g.id on a new context (from the URL, or the config file). */
kvi_status conf_define_engine(kvi *k);

/* cmocka setup/teardown of every test: a fresh context with the engine id
 * defined, its handle and a unique key prefix; teardown removes the keys the
 * test made (key()/bkey()) and frees the context. */
int conf_setup(void **state);
int conf_teardown(void **state);

/* One test of a block, with the fixture. */
#define CONF_TEST(name) cmocka_unit_test_setup_teardown(name, conf_setup, conf_teardown)

/* A block's tests, listed at the end of its file (in the order they run). */
typedef struct conf_block {
    const struct CMUnitTest *tests;
    size_t count;
} conf_block;

extern const conf_block conf_store_block, conf_expiry_block, conf_counters_block,
    conf_concurrency_block, conf_query_block, conf_conditional_block, conf_bad_input_block,
    conf_batch_block;


static inline void track(fx *f, const tkey *k)
{
    if (f->nkeys == f->capkeys) {
        f->capkeys = f->capkeys ? f->capkeys * 2 : 16;
        f->keys = realloc(f->keys, f->capkeys * sizeof *f->keys);
        assert_non_null(f->keys);
    }
    f->keys[f->nkeys++] = *k;
}

/* A key: this test's prefix + name bytes. */
static inline tkey bkey(fx *f, const void *name, size_t len)
{
    tkey k;
    assert_true(f->prefix_len + len <= KVI_MAX_KEY_LEN);
    memcpy(k.b, f->prefix, f->prefix_len);
    memcpy(k.b + f->prefix_len, name, len);
    k.n = f->prefix_len + len;
    track(f, &k);
    return k;
}

static inline tkey key(fx *f, const char *name)
{
    return bkey(f, name, strlen(name));
}

/* This test's prefix + tail as a C string (for globs and queries). */
static inline void pattern(fx *f, char *buf, size_t buflen, const char *tail)
{
    snprintf(buf, buflen, "%s%s", f->prefix, tail);
}

static inline int has(const fx *f, uint32_t cap)
{
    return (f->caps & cap) != 0;
}

#define assert_status(f, got, want)                                                                \
    do {                                                                                           \
        kvi_status got_ = (got), want_ = (want);                                                   \
        if (got_ != want_)                                                                         \
            fail_msg("%s:%d: got %s, want %s (detail: %s)", __FILE__, __LINE__,                    \
                     kvi_status_name(got_), kvi_status_name(want_), kvi_errmsg((f)->k));           \
    } while (0)

/* ---- operations, alternating the engine-id and the handle form ------------- */

/* --nonblocking: drives the single op kvi_start_X started on f->nb (r: what
 * it returned, w its wait) with poll() to its end and returns its status,
 * with *out (fetch: the value, taken from the batch) and *iv (counters:
 * the integer, 0 on failure) as the single call gives them. */
kvi_status conf_nb_end(fx *f, int r, kvi_wait *w, kvi_value *out, int64_t *iv);
#define CONF_NB_TIMEOUT_MS 30000u

static inline int by_id(fx *f)
{
    return (f->calls++ & 1u) != 0;
}

static inline kvi_status op_store(fx *f, const tkey *k, const void *v, size_t vlen, int64_t exp)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_store(f->nb, f->id, k->b, k->n, v, vlen, exp, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, NULL);
    }
    return by_id(f) ? kvi_store(f->k, f->id, k->b, k->n, v, vlen, exp)
                    : kvi_conn_store(f->c, k->b, k->n, v, vlen, exp);
}

static inline kvi_status op_fetch(fx *f, const tkey *k, kvi_value *out)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_fetch(f->nb, f->id, k->b, k->n, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, out, NULL);
    }
    return by_id(f) ? kvi_fetch(f->k, f->id, k->b, k->n, out)
                    : kvi_conn_fetch(f->c, k->b, k->n, out);
}

static inline kvi_status op_remove(fx *f, const tkey *k)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_remove(f->nb, f->id, k->b, k->n, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, NULL);
    }
    return by_id(f) ? kvi_remove(f->k, f->id, k->b, k->n) : kvi_conn_remove(f->c, k->b, k->n);
}

static inline kvi_status op_add(fx *f, const tkey *k, int64_t d, int64_t exp, int64_t *nv)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_add(f->nb, f->id, k->b, k->n, d, exp, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, nv);
    }
    return by_id(f) ? kvi_add(f->k, f->id, k->b, k->n, d, exp, nv)
                    : kvi_conn_add(f->c, k->b, k->n, d, exp, nv);
}

static inline kvi_status op_sub(fx *f, const tkey *k, int64_t d, int64_t exp, int64_t *nv)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_sub(f->nb, f->id, k->b, k->n, d, exp, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, nv);
    }
    return by_id(f) ? kvi_sub(f->k, f->id, k->b, k->n, d, exp, nv)
                    : kvi_conn_sub(f->c, k->b, k->n, d, exp, nv);
}

static inline kvi_status op_counter(fx *f, const tkey *k, int64_t *out)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_counter_fetch(f->nb, f->id, k->b, k->n, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, out);
    }
    return by_id(f) ? kvi_counter_fetch(f->k, f->id, k->b, k->n, out)
                    : kvi_conn_counter_fetch(f->c, k->b, k->n, out);
}

static inline kvi_status op_ttl(fx *f, const tkey *k, int64_t *out)
{
    return by_id(f) ? kvi_ttl(f->k, f->id, k->b, k->n, out) : kvi_conn_ttl(f->c, k->b, k->n, out);
}

static inline kvi_status op_keys(fx *f, const char *glob, kvi_reply **out)
{
    size_t len = glob ? strlen(glob) : 0;
    return by_id(f) ? kvi_keys(f->k, f->id, glob, len, out) : kvi_conn_keys(f->c, glob, len, out);
}

static inline kvi_status op_remove_chunk(fx *f, const char *glob, uint64_t *removed)
{
    size_t len = glob ? strlen(glob) : 0;
    return by_id(f) ? kvi_remove_chunk(f->k, f->id, glob, len, removed)
                    : kvi_conn_remove_chunk(f->c, glob, len, removed);
}

static inline kvi_status op_raw(fx *f, const char *q, kvi_reply **out)
{
    size_t len = q ? strlen(q) : 0;
    return by_id(f) ? kvi_raw_query(f->k, f->id, q, len, out)
                    : kvi_conn_raw_query(f->c, q, len, out);
}

/* ---- checks ------------------------------------------------------------------ */

static inline void store_ok(fx *f, const tkey *k, const void *v, size_t vlen, int64_t exp)
{
    assert_status(f, op_store(f, k, v, vlen, exp), KVI_OK);
}

static inline void store_str(fx *f, const tkey *k, const char *v, int64_t exp)
{
    store_ok(f, k, v, strlen(v), exp);
}

static inline void expect_bytes(fx *f, const tkey *k, const void *v, size_t vlen)
{
    kvi_value out = KVI_VALUE_INIT;
    assert_status(f, op_fetch(f, k, &out), KVI_OK);
    assert_non_null(out.data);
    assert_int_equal(out.len, vlen);
    if (vlen > 0)
        assert_memory_equal(out.data, v, vlen);
    assert_int_equal(out.data[vlen], '\0');
    kvi_value_free(&out);
    assert_null(out.data);
}

static inline void expect_str(fx *f, const tkey *k, const char *v)
{
    expect_bytes(f, k, v, strlen(v));
}

static inline void expect_missing(fx *f, const tkey *k)
{
    kvi_value out = KVI_VALUE_INIT;
    assert_status(f, op_fetch(f, k, &out), KVI_NOT_FOUND);
    assert_null(out.data);
    assert_int_equal(out.len, 0);
    kvi_value_free(&out);
}

static inline void expect_counter(fx *f, const tkey *k, int64_t want)
{
    int64_t v = 0;
    assert_status(f, op_counter(f, k, &v), KVI_OK);
    if (v != want)
        fail_msg("counter is %lld, want %lld", (long long)v, (long long)want);
}

static inline void expect_add(fx *f, const tkey *k, int64_t delta, int64_t exp, int64_t want)
{
    int64_t nv = 0;
    assert_status(f, op_add(f, k, delta, exp, &nv), KVI_OK);
    if (nv != want)
        fail_msg("add %lld gave %lld, want %lld", (long long)delta, (long long)nv, (long long)want);
}

static inline void expect_sub(fx *f, const tkey *k, int64_t delta, int64_t exp, int64_t want)
{
    int64_t nv = 0;
    assert_status(f, op_sub(f, k, delta, exp, &nv), KVI_OK);
    if (nv != want)
        fail_msg("sub %lld gave %lld, want %lld", (long long)delta, (long long)nv, (long long)want);
}

static inline int64_t ttl_of(fx *f, const tkey *k)
{
    int64_t t = 12345;
    assert_status(f, op_ttl(f, k, &t), KVI_OK);
    return t;
}

/* The short expiry tests use, in seconds.  Real servers keep whole-second
 * clocks (memcached's ticks once a second), so 2 s is the shortest expiry
 * that is certainly still alive right after the store. */
static inline int64_t short_expire(void)
{
    return conf_g.virtual_time ? 5 : 2;
}

/* Lets ms pass: the virtual clock moves, or we sleep. */
static inline void pass_ms(fx *f, int64_t ms)
{
    if (conf_g.virtual_time) {
        kvi_test_clock_advance(&f->clock, ms);
        return;
    }
    kvi_test_sleep_ms(ms);
}

/* Lets the short expiry run out, with margin for real servers: an engine
 * whose clock counts whole seconds (memcached) rounds an expiry up, never
 * down, so a key may live up to a second longer than asked. */
static inline void pass_short_expire(fx *f)
{
    pass_ms(f, short_expire() * 1000 + (conf_g.virtual_time ? 1 : 1400));
}

/* In virtual time, checks a key is still there 1 ms before its expiry. */
static inline void pass_to_just_before_expiry(fx *f)
{
    if (conf_g.virtual_time)
        pass_ms(f, short_expire() * 1000 - 1);
}

static inline void pass_rest_of_expiry(fx *f)
{
    pass_ms(f, conf_g.virtual_time ? 2 : short_expire() * 1000 + 1400);
}

/* Whether a key listing reply holds exactly key k. */
static inline int reply_has(const kvi_reply *r, const tkey *k)
{
    for (size_t i = 0; i < kvi_reply_count(r); i++) {
        const kvi_reply *e = kvi_reply_element(r, i);
        size_t len = 0;
        const char *s = kvi_reply_str(e, &len);
        if (kvi_reply_type_of(e) == KVI_REPLY_STRING && s && len == k->n &&
            memcmp(s, k->b, len) == 0)
            return 1;
    }
    return 0;
}

/* Lists this test's keys matching prefix+tail; the caller frees. */
static inline kvi_reply *list(fx *f, const char *tail)
{
    char glob[256];
    pattern(f, glob, sizeof glob, tail);
    kvi_reply *r = NULL;
    assert_status(f, op_keys(f, glob, &r), KVI_OK);
    assert_non_null(r);
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_ARRAY);
    return r;
}

static inline void fill_random(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed | 1u;
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 24);
    }
}

/* ---- capability gates shared by several blocks ------------------------------ */

/* Without the TTL bit an expiring store is refused and writes nothing. */
static inline int ttl_unsupported(fx *f)
{
    if (has(f, KVI_CAP_TTL))
        return 0;
    tkey k = key(f, "no-ttl");
    assert_status(f, op_store(f, &k, "x", 1, 5), KVI_E_UNSUPPORTED);
    expect_missing(f, &k);
    int64_t t = 7;
    assert_status(f, op_ttl(f, &k, &t), KVI_E_UNSUPPORTED);
    assert_int_equal(t, 0);
    return 1;
}

/* Without the COUNTERS bit every counter call is refused. */
static inline int counters_unsupported(fx *f)
{
    if (has(f, KVI_CAP_COUNTERS)) {
        /* The contract has counters go negative on every engine that has
         * them. */
        assert_true(has(f, KVI_CAP_NEG_COUNTERS));
        return 0;
    }
    tkey k = key(f, "no-counters");
    int64_t v = 5;
    assert_status(f, op_add(f, &k, 1, 0, &v), KVI_E_UNSUPPORTED);
    assert_int_equal(v, 0);
    assert_status(f, op_sub(f, &k, 1, 0, &v), KVI_E_UNSUPPORTED);
    assert_status(f, op_counter(f, &k, &v), KVI_E_UNSUPPORTED);
    expect_missing(f, &k);
    return 1;
}

#endif /* KVI_CONFORMANCE_H */
