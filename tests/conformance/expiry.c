/* expiry.c -- expiry and ttl (docs/semantics.md). */
#include "conformance.h"

/* ---- expiry ------------------------------------------------------------------------ */

static void test_expire_zero_never_expires(void **state)
{
    fx *f = F;
    tkey k = key(f, "forever");
    store_str(f, &k, "v", 0);
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &k), -1);
    /* Ten years later (virtual time only: nobody waits that long). */
    if (conf_g.virtual_time)
        pass_ms(f, 10LL * 366 * 24 * 3600 * 1000);
    expect_str(f, &k, "v");
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &k), -1);
}

static void test_store_with_zero_clears_expiry(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    tkey k = key(f, "cleared");
    store_str(f, &k, "first", short_expire());
    int64_t t = ttl_of(f, &k);
    assert_true(t >= 1 && t <= short_expire());
    store_str(f, &k, "second", 0);
    assert_int_equal(ttl_of(f, &k), -1);
    pass_short_expire(f);
    expect_str(f, &k, "second");
    assert_int_equal(ttl_of(f, &k), -1);
}

static void test_expire_n_gone_after_n_seconds(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    tkey gone = key(f, "exp:gone");
    tkey stays = key(f, "exp:stays");
    tkey later = key(f, "exp:later");
    store_str(f, &gone, "g", short_expire());
    store_str(f, &stays, "s", 0);
    store_str(f, &later, "l", 3600);
    expect_str(f, &gone, "g");
    pass_to_just_before_expiry(f);
    expect_str(f, &gone, "g");
    pass_rest_of_expiry(f);

    /* Listed before anything touches the expired key, so that lazy expiry
     * on access cannot hide it. */
    if (has(f, KVI_CAP_ITERATE)) {
        kvi_reply *r = list(f, "exp:*");
        assert_false(reply_has(r, &gone));
        assert_true(reply_has(r, &stays));
        assert_true(reply_has(r, &later));
        assert_int_equal(kvi_reply_count(r), 2);
        kvi_reply_free(r);
    }
    expect_missing(f, &gone);
    int64_t t = 5;
    assert_status(f, op_ttl(f, &gone, &t), KVI_NOT_FOUND);
    assert_int_equal(t, 0);
    assert_status(f, op_remove(f, &gone), KVI_NOT_FOUND);
    expect_str(f, &stays, "s");
    expect_str(f, &later, "l");
    /* The key can be used again after it expired. */
    store_str(f, &gone, "again", 0);
    expect_str(f, &gone, "again");
}

static void test_ttl_counts_down_in_whole_seconds(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    tkey k = key(f, "ttl");
    tkey none = key(f, "ttl-none");
    tkey missing = key(f, "ttl-missing");
    store_str(f, &k, "v", 100);
    store_str(f, &none, "v", 0);
    int64_t t = ttl_of(f, &k);
    if (conf_g.virtual_time) {
        assert_int_equal(t, 100);
        pass_ms(f, 30500);
        /* 69.5 s left, rounded up. */
        assert_int_equal(ttl_of(f, &k), 70);
    } else {
        assert_true(t >= 98 && t <= 100);
    }
    assert_int_equal(ttl_of(f, &none), -1);
    int64_t m = 3;
    assert_status(f, op_ttl(f, &missing, &m), KVI_NOT_FOUND);
    assert_int_equal(m, 0);
}

static void test_negative_expire_is_invalid_and_writes_nothing(void **state)
{
    fx *f = F;
    tkey fresh = key(f, "neg:fresh");
    tkey old = key(f, "neg:old");
    assert_status(f, op_store(f, &fresh, "x", 1, -1), KVI_E_INVALID);
    expect_missing(f, &fresh);
    assert_status(f, op_store(f, &fresh, "x", 1, INT64_MIN), KVI_E_INVALID);
    assert_status(f, op_store(f, &fresh, "x", 1, KVI_MAX_EXPIRE_S + 1), KVI_E_INVALID);
    expect_missing(f, &fresh);

    store_str(f, &old, "old", 0);
    assert_status(f, op_store(f, &old, "new", 3, -5), KVI_E_INVALID);
    expect_str(f, &old, "old");
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &old), -1);

    if (has(f, KVI_CAP_COUNTERS)) {
        int64_t nv = 9;
        assert_status(f, op_add(f, &fresh, 1, -1, &nv), KVI_E_INVALID);
        assert_int_equal(nv, 0);
        assert_status(f, op_sub(f, &fresh, 1, -1, &nv), KVI_E_INVALID);
        expect_missing(f, &fresh);
    }
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_expire_zero_never_expires),
    CONF_TEST(test_store_with_zero_clears_expiry),
    CONF_TEST(test_expire_n_gone_after_n_seconds),
    CONF_TEST(test_ttl_counts_down_in_whole_seconds),
    CONF_TEST(test_negative_expire_is_invalid_and_writes_nothing),
};

const conf_block conf_expiry_block = {tests, sizeof tests / sizeof tests[0]};
