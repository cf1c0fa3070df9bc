/* conditional.c -- bounded add/sub and store-if-absent (KVI_CAP_CONDITIONAL):
 * bounds are inclusive, a refusal changes nothing and reports the current
 * value, a missing key is created only within bounds, expired counts as
 * absent, and under races the bound holds and exactly one racer wins
 * (docs/semantics.md). */
#include "conformance.h"

#include <pthread.h>

/* ---- operations, alternating the engine-id and the handle form ------------- */

static kvi_status op_add_bounded(fx *f, const tkey *k, int64_t d, int64_t exp, int64_t min,
                                 int64_t max, int64_t *v)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_add_bounded(f->nb, f->id, k->b, k->n, d, exp, min, max, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, v);
    }
    return by_id(f) ? kvi_add_bounded(f->k, f->id, k->b, k->n, d, exp, min, max, v)
                    : kvi_conn_add_bounded(f->c, k->b, k->n, d, exp, min, max, v);
}

static kvi_status op_sub_bounded(fx *f, const tkey *k, int64_t d, int64_t exp, int64_t min,
                                 int64_t max, int64_t *v)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_sub_bounded(f->nb, f->id, k->b, k->n, d, exp, min, max, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, v);
    }
    return by_id(f) ? kvi_sub_bounded(f->k, f->id, k->b, k->n, d, exp, min, max, v)
                    : kvi_conn_sub_bounded(f->c, k->b, k->n, d, exp, min, max, v);
}

static kvi_status op_store_nx(fx *f, const tkey *k, const char *v, int64_t exp)
{
    if (conf_g.nonblocking) {
        kvi_wait w;
        return conf_nb_end(f, kvi_start_store_nx(f->nb, f->id, k->b, k->n, v, strlen(v), exp, CONF_NB_TIMEOUT_MS, NULL, NULL, &w), &w, NULL, NULL);
    }
    return by_id(f) ? kvi_store_nx(f->k, f->id, k->b, k->n, v, strlen(v), exp)
                    : kvi_conn_store_nx(f->c, k->b, k->n, v, strlen(v), exp);
}

/* A bounded change whose outcome must be want_st (KVI_OK or
 * KVI_OUT_OF_BOUNDS) with *value want_v: the new value, or the current one
 * of a refusal. */
static void expect_bounded_outcome(fx *f, const tkey *k, int sub, int64_t d, int64_t exp,
                                   int64_t min, int64_t max, kvi_status want_st, int64_t want_v)
{
    int64_t v = 12345;
    kvi_status st = sub ? op_sub_bounded(f, k, d, exp, min, max, &v)
                        : op_add_bounded(f, k, d, exp, min, max, &v);
    assert_status(f, st, want_st);
    if (v != want_v)
        fail_msg("%s %s %lld in [%lld, %lld] gave %lld, want %lld", kvi_status_name(st),
                 sub ? "sub" : "add", (long long)d, (long long)min, (long long)max, (long long)v,
                 (long long)want_v);
}

/* A bounded change that must succeed with the new value want. */
static void expect_bounded(fx *f, const tkey *k, int sub, int64_t d, int64_t exp, int64_t min,
                           int64_t max, int64_t want)
{
    expect_bounded_outcome(f, k, sub, d, exp, min, max, KVI_OK, want);
}

/* A bounded change that must be refused, reporting the current value cur. */
static void expect_refused(fx *f, const tkey *k, int sub, int64_t d, int64_t exp, int64_t min,
                           int64_t max, int64_t cur)
{
    expect_bounded_outcome(f, k, sub, d, exp, min, max, KVI_OUT_OF_BOUNDS, cur);
}

/* Without KVI_CAP_CONDITIONAL every conditional call is refused by the core
 * and writes nothing; the row then does not apply (N/A, said loudly). */
static int not_conditional(fx *f)
{
    if (has(f, KVI_CAP_CONDITIONAL))
        return 0;
    tkey k = key(f, "no-conditional");
    int64_t v = 5;
    assert_status(f, op_add_bounded(f, &k, 1, 0, 0, 9, &v), KVI_E_UNSUPPORTED);
    assert_int_equal(v, 0);
    assert_status(f, op_sub_bounded(f, &k, 1, 0, -9, 9, &v), KVI_E_UNSUPPORTED);
    assert_status(f, op_store_nx(f, &k, "x", 0), KVI_E_UNSUPPORTED);
    expect_missing(f, &k);
    kvi_test_not_applicable("engine %s has no KVI_CAP_CONDITIONAL (bounded add/sub, "
                            "store-if-absent): every call was refused, nothing written",
                            conf_g.scheme);
    return 1;
}

/* ---- bounded add/sub ---------------------------------------------------------- */

static void test_bounded_change_within_bounds_returns_new_value(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    tkey k = key(f, "b:in");
    store_str(f, &k, "5", 0);
    expect_bounded(f, &k, 0, 3, 0, 0, 10, 8);
    expect_bounded(f, &k, 1, 2, 0, 0, 10, 6);
    /* Negative deltas and negative bounds. */
    expect_bounded(f, &k, 0, -10, 0, -5, 10, -4);
    expect_bounded(f, &k, 1, -4, 0, -5, 10, 0);
    expect_counter(f, &k, 0);
    /* Open sides. */
    expect_bounded(f, &k, 0, INT64_MAX, 0, INT64_MIN, INT64_MAX, INT64_MAX);
    expect_bounded(f, &k, 1, INT64_MAX, 0, INT64_MIN, INT64_MAX, 0);
}

static void test_bounded_change_to_exactly_a_bound_is_allowed(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    tkey k = key(f, "b:edge");
    store_str(f, &k, "3", 0);
    expect_bounded(f, &k, 1, 3, 0, 0, 10, 0);    /* down to min */
    expect_bounded(f, &k, 0, 10, 0, 0, 10, 10);  /* up to max */
    expect_bounded(f, &k, 0, 0, 0, 10, 10, 10);  /* one-point range, delta 0 */
    expect_bounded(f, &k, 1, 20, 0, -10, 10, -10);
    expect_counter(f, &k, -10);
}

static void test_bounded_refusal_leaves_value_and_reports_it(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    tkey k = key(f, "b:refuse");
    store_str(f, &k, "2", 0);
    kvi_stats before, after;
    assert_status(f, kvi_conn_stats(f->c, &before), KVI_OK);
    /* The example of the issue: sub 3 at floor 0 on a counter at 2. */
    expect_refused(f, &k, 1, 3, 0, 0, INT64_MAX, 2);
    expect_counter(f, &k, 2);
    expect_str(f, &k, "2");
    expect_refused(f, &k, 0, 9, 0, INT64_MIN, 10, 2);
    expect_refused(f, &k, 0, -1, 0, 2, 2, 2);
    /* A counter already outside the bounds is refused unless the change
     * brings it inside. */
    expect_refused(f, &k, 0, 1, 0, 5, 10, 2);
    expect_bounded(f, &k, 0, 3, 0, 5, 10, 5);
    expect_counter(f, &k, 5);
    /* Refusals are outcomes: operations, not errors. */
    assert_status(f, kvi_conn_stats(f->c, &after), KVI_OK);
    if (!after.shared) /* else every process's: others may run beside */
        assert_int_equal(after.errors, before.errors);
    assert_true(after.ops >= before.ops + 5);
}

static void test_bounded_on_missing_key_creates_only_within_bounds(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    int ttl = has(f, KVI_CAP_TTL);
    int64_t exp = ttl ? short_expire() : 0;
    tkey out = key(f, "b:miss-out");
    tkey in = key(f, "b:miss-in");
    tkey neg = key(f, "b:miss-neg");
    /* Outside: nothing is created; the missing key reads as 0. */
    expect_refused(f, &out, 0, 11, exp, 0, 10, 0);
    expect_refused(f, &out, 1, 1, exp, 0, 10, 0);
    expect_missing(f, &out);
    /* 0 itself outside the bounds, 0 + delta inside: created. */
    expect_bounded(f, &neg, 1, 7, 0, -10, -5, -7);
    expect_counter(f, &neg, -7);
    /* Inside: created at 0 + delta with the expiry. */
    expect_bounded(f, &in, 0, 4, exp, 0, 10, 4);
    expect_counter(f, &in, 4);
    if (!ttl)
        return;
    int64_t t = ttl_of(f, &in);
    assert_true(t >= 1 && t <= short_expire());
    /* An existing counter keeps its expiry (as add does). */
    expect_bounded(f, &in, 0, 1, 3600, 0, 10, 5);
    t = ttl_of(f, &in);
    assert_true(t >= 1 && t <= short_expire());
    pass_short_expire(f);
    /* Expired counts as missing: refused at 0 when 0 - 1 < min, created
     * again from 0 otherwise. */
    expect_refused(f, &in, 1, 1, 0, 0, 10, 0);
    expect_missing(f, &in);
    expect_bounded(f, &in, 0, 2, 0, 0, 10, 2);
    assert_int_equal(ttl_of(f, &in), -1);
}

static void test_bounded_overflow_stays_overflow(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    tkey top = key(f, "b:top");
    tkey bottom = key(f, "b:bottom");
    store_str(f, &top, "9223372036854775807", 0);
    store_str(f, &bottom, "-9223372036854775808", 0);
    int64_t v = 7;
    /* Overflow is checked before the bounds, whatever they are. */
    assert_status(f, op_add_bounded(f, &top, 1, 0, INT64_MIN, INT64_MAX, &v), KVI_E_OVERFLOW);
    assert_int_equal(v, 0);
    assert_status(f, op_add_bounded(f, &top, 1, 0, 0, 10, &v), KVI_E_OVERFLOW);
    assert_status(f, op_sub_bounded(f, &top, -1, 0, 0, 10, &v), KVI_E_OVERFLOW);
    assert_status(f, op_sub_bounded(f, &bottom, 1, 0, INT64_MIN, INT64_MAX, &v), KVI_E_OVERFLOW);
    assert_status(f, op_add_bounded(f, &bottom, INT64_MIN, 0, 0, 10, &v), KVI_E_OVERFLOW);
    assert_int_equal(v, 0);
    expect_str(f, &top, "9223372036854775807");
    expect_str(f, &bottom, "-9223372036854775808");
}

static void test_bounded_on_non_integer_is_not_a_counter_unchanged(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    static const char *const bad[] = {"abc", "12a", "", " 1", "+1", "01", "-0", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "b:text:%zu", i);
        tkey k = key(f, name);
        store_str(f, &k, bad[i], 0);
        int64_t v = 7;
        assert_status(f, op_sub_bounded(f, &k, 1, 0, INT64_MIN, INT64_MAX, &v),
                      KVI_E_NOT_A_COUNTER);
        assert_int_equal(v, 0);
        /* Also when the change would be refused by the bounds. */
        assert_status(f, op_add_bounded(f, &k, 100, 0, 0, 1, &v), KVI_E_NOT_A_COUNTER);
        expect_str(f, &k, bad[i]);
    }
}

static void test_bounded_bad_arguments_are_invalid_and_write_nothing(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    tkey k = key(f, "b:invalid");
    int64_t v = 7;
    /* min > max, a sub of INT64_MIN, a negative expiry: refused by the
     * core before the engine runs. */
    assert_status(f, op_add_bounded(f, &k, 1, 0, 5, 4, &v), KVI_E_INVALID);
    assert_int_equal(v, 0);
    assert_status(f, op_sub_bounded(f, &k, 1, 0, INT64_MAX, INT64_MIN, &v), KVI_E_INVALID);
    assert_status(f, op_add_bounded(f, &k, 1, -1, 0, 9, &v), KVI_E_INVALID);
    assert_status(f, op_store_nx(f, &k, "x", -1), KVI_E_INVALID);
    assert_status(f, op_sub_bounded(f, &k, INT64_MIN, 0, INT64_MIN, INT64_MAX, &v),
                  KVI_E_INVALID);
    expect_missing(f, &k);
}

/* ---- store if absent ------------------------------------------------------------ */

static void test_store_nx_on_absent_key_stores(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    tkey k = key(f, "nx:absent");
    assert_status(f, op_store_nx(f, &k, "first", 0), KVI_OK);
    expect_str(f, &k, "first");
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &k), -1);
    /* An empty value counts as present. */
    tkey e = key(f, "nx:empty");
    assert_status(f, op_store_nx(f, &e, "", 0), KVI_OK);
    expect_str(f, &e, "");
    assert_status(f, op_store_nx(f, &e, "x", 0), KVI_KEY_EXISTS);
    expect_str(f, &e, "");
}

static void test_store_nx_on_present_key_changes_nothing(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    tkey k = key(f, "nx:present");
    store_str(f, &k, "old", 0);
    kvi_stats before, after;
    assert_status(f, kvi_conn_stats(f->c, &before), KVI_OK);
    assert_status(f, op_store_nx(f, &k, "new", 0), KVI_KEY_EXISTS);
    assert_status(f, op_store_nx(f, &k, "new", has(f, KVI_CAP_TTL) ? 60 : 0), KVI_KEY_EXISTS);
    expect_str(f, &k, "old");
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &k), -1); /* the refused expiry was not applied */
    assert_status(f, kvi_conn_stats(f->c, &after), KVI_OK);
    if (!after.shared) /* else every process's: others may run beside */
        assert_int_equal(after.errors, before.errors);
    /* A counter is present too; after remove the key is absent again. */
    tkey c = key(f, "nx:counter");
    expect_add(f, &c, 3, 0, 3);
    assert_status(f, op_store_nx(f, &c, "x", 0), KVI_KEY_EXISTS);
    expect_counter(f, &c, 3);
    assert_status(f, op_remove(f, &c), KVI_OK);
    assert_status(f, op_store_nx(f, &c, "x", 0), KVI_OK);
    expect_str(f, &c, "x");
}

static void test_store_nx_sets_expiry_and_expired_counts_as_absent(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    if (ttl_unsupported(f))
        return;
    tkey k = key(f, "nx:exp");
    assert_status(f, op_store_nx(f, &k, "lock-a", short_expire()), KVI_OK);
    int64_t t = ttl_of(f, &k);
    assert_true(t >= 1 && t <= short_expire());
    pass_to_just_before_expiry(f);
    assert_status(f, op_store_nx(f, &k, "lock-b", 0), KVI_KEY_EXISTS);
    expect_str(f, &k, "lock-a");
    pass_rest_of_expiry(f);
    assert_status(f, op_store_nx(f, &k, "lock-c", 3600), KVI_OK);
    expect_str(f, &k, "lock-c");
    t = ttl_of(f, &k);
    assert_true(t > short_expire() && t <= 3600);
}

/* ---- races ------------------------------------------------------------------------ */

struct racer {
    fx *f;
    const tkey *k;
    int index;
    int64_t delta, rounds;
    pthread_barrier_t *go;
    int64_t successes; /* bounded subs that succeeded */
    int64_t lowest;    /* lowest value any OK or refusal reported */
    int unexpected;    /* statuses other than OK / OUT_OF_BOUNDS */
    kvi_status first_unexpected;
    char first_detail[256]; /* its detail message (kvi_errmsg is per thread) */
};

static void racer_saw(struct racer *r, kvi_status st, int64_t v)
{
    if (st == KVI_OK)
        r->successes++;
    if (st == KVI_OK || st == KVI_OUT_OF_BOUNDS) {
        if (v < r->lowest)
            r->lowest = v;
    } else if (r->unexpected++ == 0) {
        r->first_unexpected = st;
        snprintf(r->first_detail, sizeof r->first_detail, "%s", kvi_errmsg(r->f->k));
    }
}

static void *sub_racer_main(void *arg)
{
    struct racer *r = arg;
    fx *f = r->f;
    pthread_barrier_wait(r->go);
    /* Until refused: the counter only goes down, so once a sub of delta is
     * refused no later one can succeed. */
    for (int64_t i = 0; i < r->rounds; i++) {
        int64_t v = 0;
        kvi_status st =
            (r->index + i) & 1
                ? kvi_sub_bounded(f->k, f->id, r->k->b, r->k->n, r->delta, 0, 0, INT64_MAX, &v)
                : kvi_conn_sub_bounded(f->c, r->k->b, r->k->n, r->delta, 0, 0, INT64_MAX, &v);
        racer_saw(r, st, v);
        if (st == KVI_OUT_OF_BOUNDS)
            break;
    }
    return NULL;
}

/* Runs NTHREADS racers of fn on k; returns the sum of their successes and
 * fails on any unexpected status or a reported value below 0. */
static int64_t race(fx *f, const tkey *k, void *(*fn)(void *), int64_t delta, int64_t rounds)
{
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, NTHREADS), 0);
    struct racer rs[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        rs[i] = (struct racer){f, k, i, delta, rounds, &go, 0, INT64_MAX, 0, KVI_OK, ""};
        assert_int_equal(pthread_create(&th[i], NULL, fn, &rs[i]), 0);
    }
    /* Every racer is joined before anything is asserted: a failed
     * assertion leaves this function, and racers still running would
     * write into its dead stack frame (rs, go). */
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    int64_t total = 0;
    for (int i = 0; i < NTHREADS; i++) {
        if (rs[i].unexpected)
            fail_msg("racer %d: %d unexpected statuses, first %s (%s)", i, rs[i].unexpected,
                     kvi_status_name(rs[i].first_unexpected), rs[i].first_detail);
        if (rs[i].lowest < 0)
            fail_msg("racer %d saw the counter at %lld, below min 0", i,
                     (long long)rs[i].lowest);
        total += rs[i].successes;
    }
    return total;
}

static void test_concurrent_bounded_subs_never_pass_min_and_count_exactly(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    int64_t m = conf_g.ops < 200 ? conf_g.ops : 200; /* subs per thread */
    /* Start values that allow about half of all subs: of delta 1 exactly
     * start many succeed; of delta 2 on an odd start (start-1)/2 succeed and
     * 1 is left that no sub of 2 can take. */
    int64_t start1 = NTHREADS * m / 2;
    int64_t start2 = NTHREADS * m / 2 + 1;
    tkey one = key(f, "race:d1");
    tkey two = key(f, "race:d2");
    expect_add(f, &one, start1, 0, start1);
    expect_add(f, &two, start2, 0, start2);
    int64_t won1 = race(f, &one, sub_racer_main, 1, m);
    int64_t won2 = race(f, &two, sub_racer_main, 2, m);
    if (won1 != start1)
        fail_msg("%lld bounded subs of 1 succeeded on a counter at %lld, want exactly %lld",
                 (long long)won1, (long long)start1, (long long)start1);
    expect_counter(f, &one, 0);
    if (won2 != (start2 - 1) / 2)
        fail_msg("%lld bounded subs of 2 succeeded on a counter at %lld, want exactly %lld",
                 (long long)won2, (long long)start2, (long long)((start2 - 1) / 2));
    expect_counter(f, &two, 1);
}

struct nx_racer {
    fx *f;
    const tkey *k;
    int index;
    pthread_barrier_t *go;
    kvi_status st;
};

static void *nx_racer_main(void *arg)
{
    struct nx_racer *r = arg;
    char val[32];
    snprintf(val, sizeof val, "racer-%d", r->index);
    pthread_barrier_wait(r->go);
    r->st = r->index & 1 ? kvi_store_nx(r->f->k, r->f->id, r->k->b, r->k->n, val, strlen(val), 0)
                         : kvi_conn_store_nx(r->f->c, r->k->b, r->k->n, val, strlen(val), 0);
    return NULL;
}

static void test_concurrent_store_nx_exactly_one_wins(void **state)
{
    fx *f = F;
    if (not_conditional(f))
        return;
    enum { ROUNDS = 25 };
    for (int round = 0; round < ROUNDS; round++) {
        char name[32];
        snprintf(name, sizeof name, "race:nx:%d", round);
        tkey k = key(f, name);
        pthread_barrier_t go;
        assert_int_equal(pthread_barrier_init(&go, NULL, NTHREADS), 0);
        struct nx_racer rs[NTHREADS];
        pthread_t th[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
            rs[i] = (struct nx_racer){f, &k, i, &go, KVI_E_INTERNAL};
            assert_int_equal(pthread_create(&th[i], NULL, nx_racer_main, &rs[i]), 0);
        }
        /* Joined before anything is asserted (see race()). */
        for (int i = 0; i < NTHREADS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        int winners = 0, winner = -1;
        for (int i = 0; i < NTHREADS; i++) {
            if (rs[i].st == KVI_OK) {
                winners++;
                winner = i;
            } else if (rs[i].st != KVI_KEY_EXISTS) {
                fail_msg("round %d racer %d: %s", round, i, kvi_status_name(rs[i].st));
            }
        }
        if (winners != 1)
            fail_msg("round %d: %d of %d store_nx racers won, want exactly 1", round, winners,
                     NTHREADS);
        char want[32];
        snprintf(want, sizeof want, "racer-%d", winner);
        expect_str(f, &k, want);
    }
}

/* ---- every built-in engine has the capability ------------------------------------ */

/* Every built-in engine has KVI_CAP_CONDITIONAL (issue 13); one without
 * it fails. */
static const char *const builtin_schemes[] = {"local", "redis", "memcached", NULL};

static int listed(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

static void test_builtin_engines_have_conditional(void **state)
{
    fx *f = F;
    if (!listed(builtin_schemes, conf_g.scheme)) {
        kvi_test_not_applicable("%s is not a built-in engine; KVI_CAP_CONDITIONAL is "
                                "optional for it",
                                conf_g.scheme);
        return;
    }
    if (has(f, KVI_CAP_CONDITIONAL))
        return;
    fail_msg("built-in engine %s lacks KVI_CAP_CONDITIONAL (bounded add/sub, store-if-absent)",
             conf_g.scheme);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_bounded_change_within_bounds_returns_new_value),
    CONF_TEST(test_bounded_change_to_exactly_a_bound_is_allowed),
    CONF_TEST(test_bounded_refusal_leaves_value_and_reports_it),
    CONF_TEST(test_bounded_on_missing_key_creates_only_within_bounds),
    CONF_TEST(test_bounded_overflow_stays_overflow),
    CONF_TEST(test_bounded_on_non_integer_is_not_a_counter_unchanged),
    CONF_TEST(test_bounded_bad_arguments_are_invalid_and_write_nothing),
    CONF_TEST(test_store_nx_on_absent_key_stores),
    CONF_TEST(test_store_nx_on_present_key_changes_nothing),
    CONF_TEST(test_store_nx_sets_expiry_and_expired_counts_as_absent),
    CONF_TEST(test_concurrent_bounded_subs_never_pass_min_and_count_exactly),
    CONF_TEST(test_concurrent_store_nx_exactly_one_wins),
    CONF_TEST(test_builtin_engines_have_conditional),
};

const conf_block conf_conditional_block = {tests, sizeof tests / sizeof tests[0]};
