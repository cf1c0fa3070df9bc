/*
 * test_numbers.c -- kvi_parse_int64 and kvi_format_int64.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/engine.h"

static int parse(const char *s, int64_t *v)
{
    return kvi_parse_int64(s, strlen(s), v);
}

static void assert_rejected(const char *s)
{
    int64_t v = 12345;
    if (parse(s, &v) != 0)
        fail_msg("'%s' was accepted", s);
    assert_int_equal(v, 12345); /* output untouched */
}

static void test_plain_numbers_parse(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(parse("0", &v), 1);
    assert_int_equal(v, 0);
    assert_int_equal(parse("7", &v), 1);
    assert_int_equal(v, 7);
    assert_int_equal(parse("-42", &v), 1);
    assert_int_equal(v, -42);
    assert_int_equal(parse("1234567890123", &v), 1);
    assert_int_equal(v, 1234567890123LL);
    assert_int_equal(parse("-10", &v), 1);
    assert_int_equal(v, -10);
}

static void test_extremes_parse_exactly(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(parse("9223372036854775807", &v), 1);
    assert_true(v == INT64_MAX);
    assert_int_equal(parse("-9223372036854775808", &v), 1);
    assert_true(v == INT64_MIN);
    assert_int_equal(parse("-9223372036854775807", &v), 1);
    assert_true(v == -INT64_MAX);
}

static void test_out_of_range_is_rejected(void **state)
{
    (void)state;
    assert_rejected("9223372036854775808");
    assert_rejected("-9223372036854775809");
    assert_rejected("10000000000000000000");
    assert_rejected("99999999999999999999999999");
    assert_rejected("-99999999999999999999999999");
}

static void test_non_canonical_forms_are_rejected(void **state)
{
    (void)state;
    assert_rejected("");
    assert_rejected("-");
    assert_rejected("+1");
    assert_rejected("-0");
    assert_rejected("00");
    assert_rejected("01");
    assert_rejected("-01");
    assert_rejected(" 1");
    assert_rejected("1 ");
    assert_rejected("1\n");
    assert_rejected("1.0");
    assert_rejected("1e3");
    assert_rejected("0x10");
    assert_rejected("--1");
    assert_rejected("1-");
    assert_rejected("abc");
}

static void test_length_bounds_the_text(void **state)
{
    (void)state;
    int64_t v = 0;
    /* only the first two bytes count; no NUL needed */
    assert_int_equal(kvi_parse_int64("12abc", 2, &v), 1);
    assert_int_equal(v, 12);
    /* an embedded NUL is not a digit */
    assert_int_equal(kvi_parse_int64("1\0002", 3, &v), 0);
    assert_int_equal(kvi_parse_int64(NULL, 0, &v), 0);
    assert_int_equal(kvi_parse_int64(NULL, 3, &v), 0);
    /* out may be NULL: validation only */
    assert_int_equal(kvi_parse_int64("5", 1, NULL), 1);
    assert_int_equal(kvi_parse_int64("x", 1, NULL), 0);
}

static void test_format_known_values(void **state)
{
    (void)state;
    char buf[21];
    assert_int_equal(kvi_format_int64(0, buf), 1);
    assert_string_equal(buf, "0");
    assert_int_equal(kvi_format_int64(-42, buf), 3);
    assert_string_equal(buf, "-42");
    assert_int_equal(kvi_format_int64(INT64_MAX, buf), 19);
    assert_string_equal(buf, "9223372036854775807");
    assert_int_equal(kvi_format_int64(INT64_MIN, buf), 20);
    assert_string_equal(buf, "-9223372036854775808");
    assert_int_equal(kvi_format_int64(1000, buf), 4);
    assert_string_equal(buf, "1000");
}

static void test_format_then_parse_round_trips(void **state)
{
    (void)state;
    /* powers of ten and their neighbours, both signs, plus a pseudo-random
     * walk over the whole range */
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 20000; i++) {
        int64_t v;
        if (i < 19 * 6) {
            int64_t p = 1;
            for (int k = 0; k < i / 6; k++)
                p *= 10;
            const int64_t d[] = {p - 1, p, p + 1, -(p - 1), -p, -(p + 1)};
            v = d[i % 6];
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v = (int64_t)(x >> (i % 64));
            if (i & 1)
                v = -v;
        }
        char buf[21];
        size_t n = kvi_format_int64(v, buf);
        assert_int_equal(n, strlen(buf));
        int64_t back = 0;
        if (kvi_parse_int64(buf, n, &back) != 1 || back != v)
            fail_msg("round trip of %s failed", buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_numbers_parse),
        cmocka_unit_test(test_extremes_parse_exactly),
        cmocka_unit_test(test_out_of_range_is_rejected),
        cmocka_unit_test(test_non_canonical_forms_are_rejected),
        cmocka_unit_test(test_length_bounds_the_text),
        cmocka_unit_test(test_format_known_values),
        cmocka_unit_test(test_format_then_parse_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
