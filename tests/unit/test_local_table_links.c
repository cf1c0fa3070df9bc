/*
 * test_local_table_links.c -- the local table's chain links (table.c keeps
 * a hash tag and a "may have a successor" flag inside each link): a random
 * mix of stores, replacements, removals, counters and expiries through
 * growth and rehash always agrees with a plain model of the same keys, and
 * an allocator whose blocks cannot be linked is refused cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testclock.h"

#include "engines/local/local.h"

#define MODEL_KEYS 6000u
#define MODEL_OPS 400000u

struct model_entry {
    int present;
    size_t len;
    char val[40];
    int64_t expire_ms; /* 0 = none */
};

static kvi_test_clock fake = {INT64_C(1700000000000)};

static uint64_t rng_state = UINT64_C(0x9E3779B97F4A7C15);

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static size_t model_key(char *buf, unsigned i)
{
    return (size_t)snprintf(buf, 32, "k%u", i);
}

struct fetched {
    size_t len;
    char val[64];
};

static kvi_status copy_value(void *ud, const void *data, size_t len)
{
    struct fetched *f = ud;
    if (len > sizeof(f->val))
        return KVI_E_INTERNAL;
    f->len = len;
    memcpy(f->val, data, len);
    return KVI_OK;
}

static int model_live(const struct model_entry *m)
{
    return m->present && (m->expire_ms == 0 || kvi_test_clock_fn(&fake) < m->expire_ms);
}

static void check_key(kvi__lt *t, struct model_entry *model, unsigned i)
{
    char key[32];
    size_t kl = model_key(key, i);
    struct fetched f = {0, {0}};
    kvi_status st = kvi__lt_fetch(t, key, kl, copy_value, &f);
    if (model_live(&model[i])) {
        assert_int_equal(st, KVI_OK);
        assert_int_equal(f.len, model[i].len);
        assert_memory_equal(f.val, model[i].val, f.len);
    } else {
        assert_int_equal(st, KVI_NOT_FOUND);
        model[i].present = 0;
    }
}

static void test_random_operations_agree_with_a_model(void **state)
{
    (void)state;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_set_clock(k, kvi_test_clock_fn, &fake);
    kvi__lt_config cfg = {0, KVI__LT_EVICT_NONE};
    kvi__lt *t = NULL;
    assert_int_equal(kvi__lt_new(k, &cfg, &t), KVI_OK);
    struct model_entry *model = calloc(MODEL_KEYS, sizeof(*model));
    assert_non_null(model);

    char key[32];
    for (unsigned op = 0; op < MODEL_OPS; op++) {
        /* The key space widens over time so that shards keep growing. */
        unsigned span = 64u + (unsigned)((uint64_t)op * (MODEL_KEYS - 64u) / MODEL_OPS);
        unsigned i = (unsigned)(rnd() % span);
        size_t kl = model_key(key, i);
        struct model_entry *m = &model[i];
        unsigned what = (unsigned)(rnd() % 100u);
        if (what < 40) {
            char val[40];
            size_t vl = (size_t)snprintf(val, sizeof(val), "v%u.%u", i, op);
            int64_t expire_s = what < 4 ? 1 + (int64_t)(rnd() % 3u) : 0;
            assert_int_equal(kvi__lt_store(t, key, kl, val, vl, expire_s), KVI_OK);
            m->present = 1;
            m->len = vl;
            memcpy(m->val, val, vl);
            m->expire_ms = expire_s ? kvi_test_clock_fn(&fake) + expire_s * 1000 : 0;
        } else if (what < 60) {
            kvi_status st = kvi__lt_remove(t, key, kl);
            assert_int_equal(st, model_live(m) ? KVI_OK : KVI_NOT_FOUND);
            m->present = 0;
        } else if (what < 65) {
            if (model_live(m))
                continue; /* counters only on free keys, values stay comparable */
            int64_t v = 0;
            assert_int_equal(kvi__lt_add(t, key, kl, 7, 0, &v), KVI_OK);
            assert_int_equal(v, 7);
            m->present = 1;
            m->len = 1;
            m->val[0] = '7';
            m->expire_ms = 0;
        } else if (what < 66) {
            kvi_test_clock_advance(&fake, 700);
        } else {
            check_key(t, model, i);
        }
    }
    kvi__lt_stats s;
    kvi__lt_stats_get(t, &s);
    uint64_t live = 0;
    for (unsigned i = 0; i < MODEL_KEYS; i++) {
        check_key(t, model, i);
        live += model_live(&model[i]) ? 1u : 0u;
    }
    kvi__lt_stats_get(t, &s);
    assert_true(s.entries >= live); /* expired ones may still wait for the sweep */
    assert_true(live > MODEL_KEYS / 10u);
    free(model);
    kvi__lt_free(t);
    kvi_free(k);
}

/* An allocator that hands out odd addresses for blocks of one size (the
 * size of an entry with a 16-byte key and a 500-byte value). */
#define ODD_SIZE (24u + 16u + 500u)

static void *odd_malloc(void *ud, size_t size)
{
    (void)ud;
    if (size != ODD_SIZE)
        return malloc(size);
    char *p = malloc(size + 1u);
    return p ? p + 1 : NULL;
}

static void *odd_realloc(void *ud, void *ptr, size_t size)
{
    (void)ud;
    assert_true(((uintptr_t)ptr & 1u) == 0);
    return realloc(ptr, size);
}

static void odd_free(void *ud, void *ptr)
{
    (void)ud;
    if ((uintptr_t)ptr & 1u)
        ptr = (char *)ptr - 1;
    free(ptr);
}

static void test_blocks_that_cannot_be_linked_are_refused(void **state)
{
    (void)state;
    kvi_allocator a = {odd_malloc, odd_realloc, odd_free, NULL};
    kvi *k = NULL;
    assert_int_equal(kvi_new_with_allocator(&k, &a), KVI_OK);
    kvi__lt_config cfg = {0, KVI__LT_EVICT_NONE};
    kvi__lt *t = NULL;
    assert_int_equal(kvi__lt_new(k, &cfg, &t), KVI_OK);
    static const char key[17] = "0123456789abcdef";
    static char big[500];
    memset(big, 'b', sizeof(big));

    assert_int_equal(kvi__lt_store(t, key, 16, "small", 5, 0), KVI_OK);
    assert_int_equal(kvi__lt_store(t, key, 16, big, sizeof(big), 0), KVI_E_NOMEM);
    struct fetched f = {0, {0}};
    assert_int_equal(kvi__lt_fetch(t, key, 16, copy_value, &f), KVI_OK);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.val, "small", 5);
    kvi__lt_stats s;
    kvi__lt_stats_get(t, &s);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.bytes, 16 + 5);
    kvi__lt_free(t);
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_operations_agree_with_a_model),
        cmocka_unit_test(test_blocks_that_cannot_be_linked_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
