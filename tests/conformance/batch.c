/* batch.c -- the batch rows of docs/semantics.md: many operations of any
 * kind added to one kvi_batch and run together give each one the result
 * its single call would give, in order, with the batch owning the results. */
#include "conformance.h"

static kvi_batch *new_batch(fx *f)
{
    kvi_batch *b = NULL;
    assert_status(f, kvi_batch_new(f->k, &b), KVI_OK);
    assert_non_null(b);
    return b;
}

#define assert_op(f, b, i, want)                                                                   \
    do {                                                                                           \
        (void)(f);                                                                                 \
        kvi_status got_ = kvi_batch_status((b), (i));                                              \
        if (got_ != (want))                                                                        \
            fail_msg("%s:%d: op %zu got %s, want %s (detail: %s)", __FILE__, __LINE__, (size_t)(i), \
                     kvi_status_name(got_), kvi_status_name(want), kvi_batch_errmsg((b), (i)));     \
    } while (0)

static void assert_op_value(fx *f, kvi_batch *b, size_t i, const void *v, size_t vlen)
{
    assert_op(f, b, i, KVI_OK);
    size_t len = 99;
    const char *got = kvi_batch_value(b, i, &len);
    assert_non_null(got);
    assert_int_equal(len, vlen);
    if (vlen > 0)
        assert_memory_equal(got, v, vlen);
    assert_int_equal(got[vlen], '\0');
}

static void assert_op_int(fx *f, kvi_batch *b, size_t i, kvi_status want, int64_t v)
{
    assert_op(f, b, i, want);
    if (kvi_batch_integer(b, i) != v)
        fail_msg("op %zu: integer %lld, want %lld", i, (long long)kvi_batch_integer(b, i),
                 (long long)v);
}

/* Every kind of operation in one batch, some failing, the others not. */
static void test_batch_mixed_operations_each_get_their_own_result(void **state)
{
    fx *f = F;
    tkey a = key(f, "a"), none = key(f, "none"), text = key(f, "text"), cnt = key(f, "cnt"),
         fresh = key(f, "fresh");
    store_str(f, &a, "apple", 0);
    store_str(f, &text, "not a number", 0);
    int counters = has(f, KVI_CAP_COUNTERS), cond = has(f, KVI_CAP_CONDITIONAL);
    if (counters)
        expect_add(f, &cnt, 5, 0, 5);

    kvi_batch *b = new_batch(f);
    size_t i_fetch = kvi_batch_count(b);
    assert_status(f, kvi_batch_fetch(b, f->id, a.b, a.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, none.b, none.n), KVI_OK);
    assert_status(f, kvi_batch_store(b, f->id, fresh.b, fresh.n, "new\0bytes", 9, 0), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, fresh.b, fresh.n), KVI_OK);
    assert_status(f, kvi_batch_remove(b, f->id, none.b, none.n), KVI_OK);
    size_t i_ctr = kvi_batch_count(b);
    if (counters) {
        assert_status(f, kvi_batch_add(b, f->id, cnt.b, cnt.n, 2, 0), KVI_OK);
        assert_status(f, kvi_batch_sub(b, f->id, cnt.b, cnt.n, 10, 0), KVI_OK);
        assert_status(f, kvi_batch_add(b, f->id, text.b, text.n, 1, 0), KVI_OK);
        assert_status(f, kvi_batch_counter_fetch(b, f->id, cnt.b, cnt.n), KVI_OK);
        assert_status(f, kvi_batch_counter_fetch(b, f->id, none.b, none.n), KVI_OK);
    }
    size_t i_cond = kvi_batch_count(b);
    if (cond) {
        assert_status(f, kvi_batch_sub_bounded(b, f->id, cnt.b, cnt.n, 10, 0, 0, INT64_MAX),
                      KVI_OK);
        assert_status(f, kvi_batch_add_bounded(b, f->id, cnt.b, cnt.n, 4, 0, INT64_MIN, 100),
                      KVI_OK);
        assert_status(f, kvi_batch_store_nx(b, f->id, a.b, a.n, "other", 5, 0), KVI_OK);
        assert_status(f, kvi_batch_store_nx(b, f->id, none.b, none.n, "lock", 4, 0), KVI_OK);
    }
    size_t i_last = kvi_batch_count(b);
    assert_status(f, kvi_batch_remove(b, f->id, a.b, a.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, a.b, a.n), KVI_OK);

    assert_status(f, kvi_batch_run(b, 10000), counters ? KVI_E_NOT_A_COUNTER : KVI_OK);
    assert_int_equal(kvi_batch_failed(b), counters ? 1 : 0);

    assert_op_value(f, b, i_fetch, "apple", 5);
    assert_op(f, b, i_fetch + 1, KVI_NOT_FOUND);
    assert_null(kvi_batch_value(b, i_fetch + 1, NULL));
    assert_op(f, b, i_fetch + 2, KVI_OK);
    assert_op_value(f, b, i_fetch + 3, "new\0bytes", 9);
    assert_op(f, b, i_fetch + 4, KVI_NOT_FOUND);
    if (counters) {
        assert_op_int(f, b, i_ctr, KVI_OK, 7);
        assert_op_int(f, b, i_ctr + 1, KVI_OK, -3);
        assert_op_int(f, b, i_ctr + 2, KVI_E_NOT_A_COUNTER, 0);
        assert_true(strlen(kvi_batch_errmsg(b, i_ctr + 2)) > 0);
        assert_string_equal(kvi_batch_errmsg(b, i_ctr), "");
        assert_op_int(f, b, i_ctr + 3, KVI_OK, -3);
        assert_op(f, b, i_ctr + 4, KVI_NOT_FOUND);
    }
    if (cond) {
        /* -3 - 10 would leave [0, max]: refused with the current value. */
        assert_op_int(f, b, i_cond, KVI_OUT_OF_BOUNDS, -3);
        assert_op_int(f, b, i_cond + 1, KVI_OK, 1);
        assert_op(f, b, i_cond + 2, KVI_KEY_EXISTS);
        assert_op(f, b, i_cond + 3, KVI_OK);
    }
    assert_op(f, b, i_last, KVI_OK);
    assert_op(f, b, i_last + 1, KVI_NOT_FOUND);
    kvi_batch_free(b);

    /* The batch's effects are those of the single calls. */
    expect_missing(f, &a);
    expect_bytes(f, &fresh, "new\0bytes", 9);
    expect_str(f, &text, "not a number");
    if (counters)
        expect_counter(f, &cnt, cond ? 1 : -3);
    if (cond)
        expect_str(f, &none, "lock");
}

/* Operations on one key take effect in the order they were added. */
static void test_batch_keeps_the_order_of_operations_on_a_key(void **state)
{
    fx *f = F;
    tkey k = key(f, "k"), n = key(f, "n");
    kvi_batch *b = new_batch(f);
    assert_status(f, kvi_batch_store(b, f->id, k.b, k.n, "1", 1, 0), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, k.b, k.n), KVI_OK);
    assert_status(f, kvi_batch_store(b, f->id, k.b, k.n, "2", 1, 0), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, k.b, k.n), KVI_OK);
    assert_status(f, kvi_batch_remove(b, f->id, k.b, k.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, k.b, k.n), KVI_OK);
    int counters = has(f, KVI_CAP_COUNTERS);
    for (int i = 0; counters && i < 100; i++)
        assert_status(f, kvi_batch_add(b, f->id, n.b, n.n, 1, 0), KVI_OK);
    assert_status(f, kvi_batch_run(b, 10000), KVI_OK);
    assert_op_value(f, b, 1, "1", 1);
    assert_op_value(f, b, 3, "2", 1);
    assert_op(f, b, 4, KVI_OK);
    assert_op(f, b, 5, KVI_NOT_FOUND);
    for (int i = 0; counters && i < 100; i++)
        assert_op_int(f, b, 6 + (size_t)i, KVI_OK, i + 1);
    kvi_batch_free(b);
}

/* What the single call refuses is refused when added: returned, kept as
 * the operation's status at its index, never sent; the rest runs. */
static void test_batch_refuses_bad_arguments_when_added(void **state)
{
    fx *f = F;
    tkey k = key(f, "k");
    kvi_batch *b = new_batch(f);
    assert_status(f, kvi_batch_store(b, f->id, "", 0, "v", 1, 0), KVI_E_INVALID);
    assert_true(strlen(kvi_errmsg(f->k)) > 0);
    assert_status(f, kvi_batch_store(b, f->id, k.b, k.n, "v", 1, -1), KVI_E_INVALID);
    assert_status(f, kvi_batch_fetch(b, "nosuchengine:x", k.b, k.n), KVI_E_UNKNOWN_ENGINE);
    assert_status(f, kvi_batch_fetch(b, f->id, NULL, 3), KVI_E_INVALID);
    assert_status(f, kvi_batch_raw_query(b, f->id, "", 0), KVI_E_INVALID);
    assert_status(f, kvi_batch_store(b, f->id, k.b, k.n, "v", 1, 0), KVI_OK);
    assert_string_equal(kvi_errmsg(f->k), "");
    if (has(f, KVI_CAP_CONDITIONAL))
        assert_status(f, kvi_batch_add_bounded(b, f->id, k.b, k.n, 1, 0, 5, 4), KVI_E_INVALID);
    else
        assert_status(f, kvi_batch_add_bounded(b, f->id, k.b, k.n, 1, 0, 0, 4),
                      KVI_E_UNSUPPORTED);
    if (has(f, KVI_CAP_COUNTERS))
        assert_status(f, kvi_batch_sub(b, f->id, k.b, k.n, INT64_MIN, 0), KVI_E_INVALID);
    else
        assert_status(f, kvi_batch_sub(b, f->id, k.b, k.n, 1, 0), KVI_E_UNSUPPORTED);
    if (!has(f, KVI_CAP_RAW_QUERY))
        assert_status(f, kvi_batch_raw_query(b, f->id, "PING", 4), KVI_E_UNSUPPORTED);
    size_t n = kvi_batch_count(b);
    assert_int_equal(n, has(f, KVI_CAP_RAW_QUERY) ? 8 : 9);
    /* A refused operation already has its status before the run. */
    assert_op(f, b, 2, KVI_E_UNKNOWN_ENGINE);
    assert_true(strlen(kvi_batch_errmsg(b, 2)) > 0);
    assert_op(f, b, 5, KVI_E_INVALID); /* the good store: not run yet */
    assert_status(f, kvi_batch_run(b, 10000), KVI_E_INVALID);
    assert_op(f, b, 0, KVI_E_INVALID);
    assert_op(f, b, 1, KVI_E_INVALID);
    assert_op(f, b, 5, KVI_OK);
    assert_int_equal(kvi_batch_failed(b), n - 1);
    kvi_batch_free(b);
    expect_str(f, &k, "v");
}

/* Binary values, the empty value and a 1 MiB value come back whole; a
 * taken value belongs to the caller. */
static void test_batch_values_are_binary_safe_and_owned_by_the_batch(void **state)
{
    fx *f = F;
    tkey e = key(f, "empty"), bin = bkey(f, "bin\0\xff key", 9), big = key(f, "big");
    const size_t big_len = 1u << 20;
    char *bigv = malloc(big_len);
    assert_non_null(bigv);
    fill_random(bigv, big_len, 42);
    const char binv[] = "a\0b\xff\n c";
    kvi_batch *b = new_batch(f);
    assert_status(f, kvi_batch_store(b, f->id, e.b, e.n, NULL, 0, 0), KVI_OK);
    assert_status(f, kvi_batch_store(b, f->id, bin.b, bin.n, binv, sizeof binv - 1, 0), KVI_OK);
    assert_status(f, kvi_batch_store(b, f->id, big.b, big.n, bigv, big_len, 0), KVI_OK);
    memset(bigv, 0, 16); /* the batch copied it */
    assert_status(f, kvi_batch_run(b, 10000), KVI_OK);
    fill_random(bigv, big_len, 42);
    assert_status(f, kvi_batch_fetch(b, f->id, e.b, e.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, bin.b, bin.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, big.b, big.n), KVI_OK);
    assert_status(f, kvi_batch_run(b, 10000), KVI_OK); /* runs only the three new ones */
    assert_int_equal(kvi_batch_count(b), 6);
    assert_op_value(f, b, 3, "", 0);
    assert_op_value(f, b, 4, binv, sizeof binv - 1);
    assert_op_value(f, b, 5, bigv, big_len);
    kvi_value v = KVI_VALUE_INIT;
    assert_status(f, kvi_batch_take_value(b, 4, &v), KVI_OK);
    assert_null(kvi_batch_value(b, 4, NULL));
    assert_status(f, kvi_batch_take_value(b, 4, &v), KVI_E_INVALID);
    assert_null(v.data);
    assert_status(f, kvi_batch_take_value(b, 5, &v), KVI_OK);
    kvi_batch_free(b); /* the taken value outlives the batch */
    /* ... and is the caller's own: another batch's 1 MiB result (likely in
     * the memory the freed batch held) does not change it. */
    char *other = malloc(big_len);
    assert_non_null(other);
    fill_random(other, big_len, 43);
    kvi_status rst = kvi_remove(f->k, f->id, big.b, big.n); /* room in a small shared segment */
    assert_true(rst == KVI_OK || rst == KVI_NOT_FOUND);
    assert_status(f, kvi_store(f->k, f->id, big.b, big.n, other, big_len, 0), KVI_OK);
    b = new_batch(f);
    assert_status(f, kvi_batch_fetch(b, f->id, big.b, big.n), KVI_OK);
    assert_status(f, kvi_batch_run(b, 10000), KVI_OK);
    assert_op_value(f, b, 0, other, big_len);
    assert_int_equal(v.len, big_len);
    assert_memory_equal(v.data, bigv, big_len);
    kvi_batch_free(b);
    free(other);
    kvi_value_free(&v);
    free(bigv);
}

/* A batch is reusable after kvi_batch_clear, and many operations run. */
static void test_batch_of_thousands_of_operations_and_reuse(void **state)
{
    fx *f = F;
    enum { N = 2000 };
    char name[32];
    kvi_batch *b = new_batch(f);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "m%d", i);
        tkey k = key(f, name);
        assert_status(f, kvi_batch_store(b, f->id, k.b, k.n, name, strlen(name), 0), KVI_OK);
    }
    assert_status(f, kvi_batch_run(b, 30000), KVI_OK);
    kvi_batch_clear(b);
    assert_int_equal(kvi_batch_count(b), 0);
    for (int i = 0; i < N + 1; i++) {
        snprintf(name, sizeof name, "m%d", i);
        tkey k = bkey(f, name, strlen(name));
        assert_status(f, kvi_batch_fetch(b, f->id, k.b, k.n), KVI_OK);
    }
    assert_status(f, kvi_batch_run(b, 30000), KVI_OK);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "m%d", i);
        assert_op_value(f, b, (size_t)i, name, strlen(name));
    }
    assert_op(f, b, N, KVI_NOT_FOUND);
    kvi_stats st;
    assert_status(f, kvi_conn_stats(f->c, &st), KVI_OK);
    assert_true(st.ops >= 2 * N + 1);
    assert_true(st.misses >= 1);
    kvi_batch_free(b);
}

/* One batch on two engine ids: each op reaches its own id. */
static void test_batch_spans_engine_ids(void **state)
{
    fx *f = F;
    assert_status(f, kvi_add_url(f->k, "local:batchside://"), KVI_OK);
    tkey k = key(f, "both");
    kvi_batch *b = new_batch(f);
    assert_status(f, kvi_batch_store(b, f->id, k.b, k.n, "engine", 6, 0), KVI_OK);
    assert_status(f, kvi_batch_store(b, "local:batchside", k.b, k.n, "side", 4, 0), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, k.b, k.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, "local:batchside", k.b, k.n), KVI_OK);
    assert_status(f, kvi_batch_run(b, 10000), KVI_OK);
    assert_op_value(f, b, 2, "engine", 6);
    assert_op_value(f, b, 3, "side", 4);
    kvi_batch_free(b);
}

/* A raw query in a batch returns its reply tree (engines with one). */
static void test_batch_raw_query_returns_its_reply(void **state)
{
    fx *f = F;
    if (!has(f, KVI_CAP_RAW_QUERY))
        return; /* refused at add: test_batch_refuses_bad_arguments_when_added */
    tkey k = key(f, "raw");
    char q[600];
    snprintf(q, sizeof q, "SET \"%.*s\" 42", (int)k.n, k.b);
    kvi_batch *b = new_batch(f);
    assert_status(f, kvi_batch_raw_query(b, f->id, q, strlen(q)), KVI_OK);
    assert_status(f, kvi_batch_fetch(b, f->id, k.b, k.n), KVI_OK);
    assert_status(f, kvi_batch_run(b, 10000), KVI_OK);
    assert_op(f, b, 0, KVI_OK);
    assert_non_null(kvi_batch_reply(b, 0));
    assert_int_equal(kvi_reply_type_of(kvi_batch_reply(b, 0)), KVI_REPLY_STATUS);
    assert_op_value(f, b, 1, "42", 2);
    kvi_batch_free(b);
}

/* Expired keys are missing for a batch's fetches too (engines that fetch
 * many keys at once apply the expiry rule of a single fetch). */
static void test_batch_fetch_of_expired_keys_is_not_found(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    tkey a = key(f, "short"), b = key(f, "long"), c = key(f, "short2");
    store_str(f, &a, "1", short_expire());
    store_str(f, &b, "2", 0);
    store_str(f, &c, "3", short_expire());
    pass_short_expire(f);
    kvi_batch *bt = new_batch(f);
    assert_status(f, kvi_batch_fetch(bt, f->id, a.b, a.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(bt, f->id, b.b, b.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(bt, f->id, c.b, c.n), KVI_OK);
    assert_status(f, kvi_batch_fetch(bt, f->id, b.b, b.n), KVI_OK);
    assert_status(f, kvi_batch_run(bt, 10000), KVI_OK);
    assert_op(f, bt, 0, KVI_NOT_FOUND);
    assert_op_value(f, bt, 1, "2", 1);
    assert_op(f, bt, 2, KVI_NOT_FOUND);
    assert_op_value(f, bt, 3, "2", 1);
    kvi_batch_free(bt);
}

static void test_batch_null_and_out_of_range_are_safe(void **state)
{
    fx *f = F;
    assert_int_equal(kvi_batch_new(NULL, NULL), KVI_E_INVALID);
    assert_int_equal(kvi_batch_run(NULL, 0), KVI_E_INVALID);
    assert_int_equal(kvi_batch_fetch(NULL, f->id, "a", 1), KVI_E_INVALID);
    kvi_batch_free(NULL);
    kvi_batch_clear(NULL);
    kvi_batch *b = new_batch(f);
    assert_status(f, kvi_batch_run(b, 0), KVI_OK); /* empty */
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_INVALID);
    assert_int_equal(kvi_batch_kind(b, 0), 0);
    assert_null(kvi_batch_value(b, 7, NULL));
    assert_null(kvi_batch_reply(b, 7));
    assert_int_equal(kvi_batch_integer(b, 7), 0);
    assert_string_equal(kvi_batch_errmsg(b, 7), "");
    assert_int_equal(kvi_batch_count(NULL), 0);
    kvi_batch_free(b);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_batch_mixed_operations_each_get_their_own_result),
    CONF_TEST(test_batch_keeps_the_order_of_operations_on_a_key),
    CONF_TEST(test_batch_refuses_bad_arguments_when_added),
    CONF_TEST(test_batch_values_are_binary_safe_and_owned_by_the_batch),
    CONF_TEST(test_batch_of_thousands_of_operations_and_reuse),
    CONF_TEST(test_batch_spans_engine_ids),
    CONF_TEST(test_batch_raw_query_returns_its_reply),
    CONF_TEST(test_batch_fetch_of_expired_keys_is_not_found),
    CONF_TEST(test_batch_null_and_out_of_range_are_safe),
};

const conf_block conf_batch_block = {tests, sizeof tests / sizeof tests[0]};
