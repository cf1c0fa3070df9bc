/* counters.c -- counters: add, sub, counter_fetch (docs/semantics.md). */
#include "conformance.h"

/* ---- counters ------------------------------------------------------------------------ */

static void test_add_on_missing_key_creates_counter(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey k = key(f, "add:plain");
    expect_add(f, &k, 5, 0, 5);
    expect_counter(f, &k, 5);
    expect_str(f, &k, "5");
    if (!has(f, KVI_CAP_TTL)) {
        int64_t nv;
        assert_status(f, op_add(f, &k, 1, 5, &nv), KVI_E_UNSUPPORTED);
        return;
    }
    assert_int_equal(ttl_of(f, &k), -1);

    tkey e = key(f, "add:expiring");
    expect_add(f, &e, 7, short_expire(), 7);
    int64_t t = ttl_of(f, &e);
    assert_true(t >= 1 && t <= short_expire());
    pass_short_expire(f);
    expect_missing(f, &e);
    expect_counter(f, &k, 5);
    /* Created afresh after it expired. */
    expect_add(f, &e, 2, 0, 2);
}

static void test_sub_on_missing_key_creates_negative_counter(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey k = key(f, "sub:plain");
    expect_sub(f, &k, 5, 0, -5);
    expect_counter(f, &k, -5);
    expect_str(f, &k, "-5");
    if (!has(f, KVI_CAP_TTL))
        return;
    assert_int_equal(ttl_of(f, &k), -1);
    tkey e = key(f, "sub:expiring");
    expect_sub(f, &e, 3, short_expire(), -3);
    int64_t t = ttl_of(f, &e);
    assert_true(t >= 1 && t <= short_expire());
    pass_short_expire(f);
    expect_missing(f, &e);
}

static void test_add_and_sub_return_the_new_value(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey k = key(f, "seq");
    expect_add(f, &k, 1, 0, 1);
    expect_add(f, &k, 2, 0, 3);
    expect_add(f, &k, 3, 0, 6);
    expect_sub(f, &k, 10, 0, -4);
    expect_add(f, &k, 0, 0, -4);
    expect_sub(f, &k, -4, 0, 0);
    /* new_value may be NULL. */
    assert_status(f, op_add(f, &k, 5, 0, NULL), KVI_OK);
    assert_status(f, op_sub(f, &k, 1, 0, NULL), KVI_OK);
    expect_counter(f, &k, 4);
}

static void test_add_keeps_existing_expiry(void **state)
{
    fx *f = F;
    if (counters_unsupported(f) || ttl_unsupported(f))
        return;
    tkey win = key(f, "keep:window");    /* created with expiry */
    tkey none = key(f, "keep:none");     /* created without */
    tkey stored = key(f, "keep:stored"); /* stored text with expiry */
    int64_t n = short_expire();
    expect_add(f, &win, 1, n, 1);
    expect_add(f, &none, 1, 0, 1);
    store_str(f, &stored, "10", n);

    /* Deltas that change the text's length too: an engine that rewrites
     * the entry must carry the expiry over. */
    expect_add(f, &win, 9, 0, 10);
    expect_add(f, &win, 990, 3600, 1000);
    expect_sub(f, &win, 999, 3600, 1);
    int64_t t = ttl_of(f, &win);
    assert_true(t >= 1 && t <= n);
    expect_add(f, &none, 99, n, 100);
    assert_int_equal(ttl_of(f, &none), -1);
    expect_add(f, &stored, 95, 0, 105);
    t = ttl_of(f, &stored);
    assert_true(t >= 1 && t <= n);

    pass_short_expire(f);
    expect_missing(f, &win);
    expect_missing(f, &stored);
    expect_counter(f, &none, 100);
}

static void test_counters_are_int64(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    const int64_t p32 = INT64_C(4294967296), p53 = INT64_C(9007199254740992);
    tkey a = key(f, "i64:a");
    expect_add(f, &a, p32 + 7, 0, p32 + 7);
    expect_add(f, &a, p32, 0, 2 * p32 + 7);
    expect_str(f, &a, "8589934599");

    /* Beyond a double's 53-bit mantissa: every unit must count. */
    tkey b = key(f, "i64:b");
    expect_add(f, &b, p53 + 1, 0, p53 + 1);
    expect_add(f, &b, 1, 0, p53 + 2);
    expect_counter(f, &b, p53 + 2);
    expect_str(f, &b, "9007199254740994");
    expect_sub(f, &b, 2 * p53, 0, -p53 + 2);
    expect_str(f, &b, "-9007199254740990");

    tkey top = key(f, "i64:top");
    store_str(f, &top, "9223372036854775806", 0);
    expect_add(f, &top, 1, 0, INT64_MAX);
    expect_str(f, &top, "9223372036854775807");
    tkey bottom = key(f, "i64:bottom");
    store_str(f, &bottom, "-9223372036854775807", 0);
    expect_sub(f, &bottom, 1, 0, INT64_MIN);
    expect_str(f, &bottom, "-9223372036854775808");
    expect_counter(f, &bottom, INT64_MIN);
    tkey c = key(f, "i64:c");
    expect_add(f, &c, INT64_MIN, 0, INT64_MIN);
}

static void test_counters_may_go_negative(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey k = key(f, "neg");
    expect_add(f, &k, 5, 0, 5);
    expect_sub(f, &k, 8, 0, -3);
    expect_str(f, &k, "-3");
    expect_sub(f, &k, INT64_C(1) << 40, 0, -3 - (INT64_C(1) << 40));
    expect_add(f, &k, (INT64_C(1) << 40) + 3, 0, 0);
    expect_add(f, &k, -1, 0, -1);
    expect_counter(f, &k, -1);
    tkey s = key(f, "neg:stored");
    store_str(f, &s, "-100", 0);
    expect_add(f, &s, 1, 0, -99);
}

static void expect_overflow(fx *f, const tkey *k, int sub, int64_t delta, const char *text)
{
    int64_t nv = 123;
    kvi_status st = sub ? op_sub(f, k, delta, 0, &nv) : op_add(f, k, delta, 0, &nv);
    assert_status(f, st, KVI_E_OVERFLOW);
    assert_int_equal(nv, 0);
    expect_str(f, k, text);
}

static void test_overflow_is_overflow_and_unchanged(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey top = key(f, "ovf:top");
    store_str(f, &top, "9223372036854775807", 0);
    expect_overflow(f, &top, 0, 1, "9223372036854775807");
    expect_overflow(f, &top, 1, -1, "9223372036854775807");
    expect_overflow(f, &top, 0, INT64_MAX, "9223372036854775807");
    expect_counter(f, &top, INT64_MAX);

    tkey bottom = key(f, "ovf:bottom");
    store_str(f, &bottom, "-9223372036854775808", 0);
    expect_overflow(f, &bottom, 1, 1, "-9223372036854775808");
    expect_overflow(f, &bottom, 0, -1, "-9223372036854775808");
    expect_overflow(f, &bottom, 1, INT64_MAX, "-9223372036854775808");
    expect_counter(f, &bottom, INT64_MIN);

    /* Reached by counting, not by storing text. */
    tkey counted = key(f, "ovf:counted");
    expect_add(f, &counted, INT64_MAX, 0, INT64_MAX);
    expect_overflow(f, &counted, 0, 1, "9223372036854775807");
    expect_sub(f, &counted, INT64_MAX, 0, 0);
    expect_sub(f, &counted, INT64_MAX, 0, -INT64_MAX);
    expect_overflow(f, &counted, 1, 2, "-9223372036854775807");
}

static void test_sub_of_int64_min_is_invalid_and_unchanged(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey k = key(f, "submin");
    expect_add(f, &k, -1, 0, -1);
    int64_t nv = 4;
    assert_status(f, op_sub(f, &k, INT64_MIN, 0, &nv), KVI_E_INVALID);
    assert_int_equal(nv, 0);
    expect_counter(f, &k, -1);
    tkey missing = key(f, "submin:missing");
    assert_status(f, op_sub(f, &missing, INT64_MIN, 0, &nv), KVI_E_INVALID);
    expect_missing(f, &missing);
}

static void test_counter_stored_as_text_fetches_decimal(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey k = key(f, "text");
    expect_sub(f, &k, 42, 0, -42);
    expect_str(f, &k, "-42");
    tkey s = key(f, "text:stored");
    store_str(f, &s, "-42", 0);
    expect_counter(f, &s, -42);
    expect_add(f, &s, 0, 0, -42);
    expect_str(f, &s, "-42");
    tkey zero = key(f, "text:zero");
    expect_add(f, &zero, 0, 0, 0);
    expect_str(f, &zero, "0");
}

static void test_store_17_then_add_1_gives_18(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey k = key(f, "17");
    store_str(f, &k, "17", 0);
    expect_add(f, &k, 1, 0, 18);
    expect_counter(f, &k, 18);
    expect_str(f, &k, "18");
}

static void test_add_on_non_integer_is_not_a_counter_unchanged(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    static const struct {
        const char *v;
        size_t len;
    } bad[] = {
        {"abc", 3},
        {"", 0},
        {"1.5", 3},
        {" 17", 3},
        {"17 ", 3},
        {"+17", 3},
        {"0x10", 4},
        {"017", 3},
        {"-", 1},
        {"--1", 3},
        {"1e3", 3},
        {"17\n", 3},
        {"1\0", 2},
        {"-0", 2},
        {"99999999999999999999", 20},
        {"9223372036854775808", 19},
        {"-9223372036854775809", 20},
    };
    tkey k = key(f, "nan");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        store_ok(f, &k, bad[i].v, bad[i].len, 0);
        int64_t nv = 77;
        kvi_status st = op_add(f, &k, 1, 0, &nv);
        if (st != KVI_E_NOT_A_COUNTER)
            fail_msg("add on \"%s\": %s, want KVI_E_NOT_A_COUNTER", bad[i].v, kvi_status_name(st));
        assert_int_equal(nv, 0);
        st = op_sub(f, &k, 1, 0, &nv);
        if (st != KVI_E_NOT_A_COUNTER)
            fail_msg("sub on \"%s\": %s, want KVI_E_NOT_A_COUNTER", bad[i].v, kvi_status_name(st));
        expect_bytes(f, &k, bad[i].v, bad[i].len);
    }
}

static void test_counter_fetch(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey num = key(f, "cf:num");
    tkey text = key(f, "cf:text");
    tkey missing = key(f, "cf:missing");
    expect_add(f, &num, 31, 0, 31);
    expect_counter(f, &num, 31);
    store_str(f, &text, "thirty-one", 0);
    int64_t v = 8;
    assert_status(f, op_counter(f, &text, &v), KVI_E_NOT_A_COUNTER);
    assert_int_equal(v, 0);
    v = 8;
    assert_status(f, op_counter(f, &missing, &v), KVI_NOT_FOUND);
    assert_int_equal(v, 0);
    expect_missing(f, &missing);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_add_on_missing_key_creates_counter),
    CONF_TEST(test_sub_on_missing_key_creates_negative_counter),
    CONF_TEST(test_add_and_sub_return_the_new_value),
    CONF_TEST(test_add_keeps_existing_expiry),
    CONF_TEST(test_counters_are_int64),
    CONF_TEST(test_counters_may_go_negative),
    CONF_TEST(test_overflow_is_overflow_and_unchanged),
    CONF_TEST(test_sub_of_int64_min_is_invalid_and_unchanged),
    CONF_TEST(test_counter_stored_as_text_fetches_decimal),
    CONF_TEST(test_store_17_then_add_1_gives_18),
    CONF_TEST(test_add_on_non_integer_is_not_a_counter_unchanged),
    CONF_TEST(test_counter_fetch),
};

const conf_block conf_counters_block = {tests, sizeof tests / sizeof tests[0]};
