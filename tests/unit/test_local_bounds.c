/*
 * test_local_bounds.c -- the bound check of bounded add/sub on the local
 * engine, at its edges: a result exactly on min or max is applied, one
 * past either is refused with the current value and nothing changed; on a
 * missing key (which reads as 0) and on an existing counter; for the
 * private collection and the shared one (shm=); bounds that are negative,
 * a single value, or the ends of int64.  An off-by-one in either
 * comparison of either path fails here in milliseconds, without the
 * conformance suite.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"

struct fx {
    kvi *k;
    const char *id;
    char shm[96]; /* "" for the private collection */
};

static int setup_private(void **state)
{
    static struct fx f;
    memset(&f, 0, sizeof f);
    assert_int_equal(kvi_new(&f.k), KVI_OK);
    f.id = "local";
    *state = &f;
    return 0;
}

static int setup_shared(void **state)
{
    static struct fx f;
    static unsigned n;
    memset(&f, 0, sizeof f);
    char url[160];
    snprintf(f.shm, sizeof f.shm, "kvi-unit-bounds-%ld-%u", (long)getpid(), ++n);
    char path[128];
    snprintf(path, sizeof path, "/kvi.%s", f.shm);
    shm_unlink(path);
    snprintf(url, sizeof url, "local:shared://?shm=%s&max_memory=2m", f.shm);
    assert_int_equal(kvi_new(&f.k), KVI_OK);
    assert_int_equal(kvi_add_url(f.k, url), KVI_OK);
    f.id = "local:shared";
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    kvi_free(f->k);
    if (f->shm[0] != '\0') {
        char path[128];
        snprintf(path, sizeof path, "/kvi.%s", f->shm);
        shm_unlink(path);
    }
    return 0;
}

static int64_t counter(struct fx *f, const char *key)
{
    int64_t v = 0;
    assert_int_equal(kvi_counter_fetch(f->k, f->id, key, strlen(key), &v), KVI_OK);
    return v;
}

static kvi_status add_b(struct fx *f, const char *key, int64_t delta, int64_t min, int64_t max,
                        int64_t *v)
{
    *v = 12345;
    return kvi_add_bounded(f->k, f->id, key, strlen(key), delta, 0, min, max, v);
}

static kvi_status sub_b(struct fx *f, const char *key, int64_t delta, int64_t min, int64_t max,
                        int64_t *v)
{
    *v = 12345;
    return kvi_sub_bounded(f->k, f->id, key, strlen(key), delta, 0, min, max, v);
}

/* An existing counter: down to exactly min, then one more is refused. */
static void test_existing_counter_reaches_min_exactly_not_beyond(void **state)
{
    struct fx *f = *state;
    int64_t v;
    assert_int_equal(kvi_store(f->k, f->id, "credit", 6, "5", 1, 0), KVI_OK);
    assert_int_equal(sub_b(f, "credit", 4, 0, 100, &v), KVI_OK);
    assert_int_equal(v, 1);
    assert_int_equal(sub_b(f, "credit", 1, 0, 100, &v), KVI_OK); /* lands on min */
    assert_int_equal(v, 0);
    assert_int_equal(sub_b(f, "credit", 1, 0, 100, &v), KVI_OUT_OF_BOUNDS); /* min - 1 */
    assert_int_equal(v, 0);
    assert_int_equal(counter(f, "credit"), 0);
    /* The same with add and a negative delta, and a negative floor. */
    assert_int_equal(kvi_store(f->k, f->id, "neg", 3, "-7", 2, 0), KVI_OK);
    assert_int_equal(add_b(f, "neg", -3, -10, 10, &v), KVI_OK);
    assert_int_equal(v, -10);
    assert_int_equal(add_b(f, "neg", -1, -10, 10, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, -10);
    assert_int_equal(counter(f, "neg"), -10);
}

/* An existing counter: up to exactly max, then one more is refused. */
static void test_existing_counter_reaches_max_exactly_not_beyond(void **state)
{
    struct fx *f = *state;
    int64_t v;
    assert_int_equal(kvi_store(f->k, f->id, "used", 4, "8", 1, 0), KVI_OK);
    assert_int_equal(add_b(f, "used", 2, 0, 10, &v), KVI_OK); /* lands on max */
    assert_int_equal(v, 10);
    assert_int_equal(add_b(f, "used", 1, 0, 10, &v), KVI_OUT_OF_BOUNDS); /* max + 1 */
    assert_int_equal(v, 10);
    assert_int_equal(sub_b(f, "used", -1, 0, 10, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(counter(f, "used"), 10);
}

/* A missing key reads as 0: created when 0 + delta is within bounds, also
 * exactly on either bound; refused (reporting 0, creating nothing) one
 * past either. */
static void test_missing_key_created_on_a_bound_refused_past_it(void **state)
{
    struct fx *f = *state;
    int64_t v;
    assert_int_equal(add_b(f, "m1", 5, 5, 9, &v), KVI_OK); /* exactly min */
    assert_int_equal(v, 5);
    assert_int_equal(add_b(f, "m2", 4, 5, 9, &v), KVI_OUT_OF_BOUNDS); /* min - 1 */
    assert_int_equal(v, 0);
    assert_int_equal(kvi_counter_fetch(f->k, f->id, "m2", 2, &v), KVI_NOT_FOUND);
    assert_int_equal(add_b(f, "m3", 9, 5, 9, &v), KVI_OK); /* exactly max */
    assert_int_equal(v, 9);
    assert_int_equal(add_b(f, "m4", 10, 5, 9, &v), KVI_OUT_OF_BOUNDS); /* max + 1 */
    assert_int_equal(v, 0);
    assert_int_equal(kvi_counter_fetch(f->k, f->id, "m4", 2, &v), KVI_NOT_FOUND);
    assert_int_equal(sub_b(f, "m5", 3, -3, 0, &v), KVI_OK); /* sub: exactly min */
    assert_int_equal(v, -3);
    assert_int_equal(sub_b(f, "m6", 4, -3, 0, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, 0);
    assert_int_equal(kvi_counter_fetch(f->k, f->id, "m6", 2, &v), KVI_NOT_FOUND);
}

/* A range of one value, and the ends of int64. */
static void test_single_value_range_and_int64_ends(void **state)
{
    struct fx *f = *state;
    int64_t v;
    assert_int_equal(kvi_store(f->k, f->id, "one", 3, "7", 1, 0), KVI_OK);
    assert_int_equal(add_b(f, "one", 0, 7, 7, &v), KVI_OK);
    assert_int_equal(v, 7);
    assert_int_equal(add_b(f, "one", 1, 7, 7, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(add_b(f, "one", -1, 7, 7, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, 7);
    assert_int_equal(add_b(f, "top", INT64_MAX, 0, INT64_MAX, &v), KVI_OK);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(sub_b(f, "top", 1, INT64_MAX, INT64_MAX, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(add_b(f, "bottom", INT64_MIN, INT64_MIN, 0, &v), KVI_OK);
    assert_int_equal(v, INT64_MIN);
    assert_int_equal(add_b(f, "bottom", 1, INT64_MIN, INT64_MIN, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, INT64_MIN);
    assert_int_equal(counter(f, "bottom"), INT64_MIN);
}

#define BOTH(t)                                                                                    \
    cmocka_unit_test_setup_teardown(t, setup_private, teardown),                                   \
        cmocka_unit_test_setup_teardown(t, setup_shared, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_existing_counter_reaches_min_exactly_not_beyond),
        BOTH(test_existing_counter_reaches_max_exactly_not_beyond),
        BOTH(test_missing_key_created_on_a_bound_refused_past_it),
        BOTH(test_single_value_range_and_int64_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
