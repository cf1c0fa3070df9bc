/*
 * test_glob.c -- kvi_glob_match.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kvi/engine.h"
#include "testclock.h"

static int m(const char *glob, const char *str)
{
    return kvi_glob_match(glob, strlen(glob), str, strlen(str));
}

#define YES(g, s)                                                                                  \
    do {                                                                                           \
        if (!m(g, s))                                                                              \
            fail_msg("'%s' should match '%s'", g, s);                                              \
    } while (0)
#define NO(g, s)                                                                                   \
    do {                                                                                           \
        if (m(g, s))                                                                               \
            fail_msg("'%s' should not match '%s'", g, s);                                          \
    } while (0)

static void test_literal_matches_only_itself(void **state)
{
    (void)state;
    YES("abc", "abc");
    NO("abc", "abd");
    NO("abc", "ab");
    NO("abc", "abcd");
    YES("", "");
    NO("", "a");
}

static void test_star_matches_any_run_including_empty(void **state)
{
    (void)state;
    YES("*", "");
    YES("*", "anything");
    YES("a*", "a");
    YES("a*", "abc");
    NO("a*", "ba");
    YES("*c", "abc");
    YES("a*c", "ac");
    YES("a*c", "abbbc");
    NO("a*c", "abcd");
    YES("a**c", "abc");
    YES("passwd_*", "passwd_alice");
    NO("passwd_*", "passwd");
    YES("*a*b*", "xxaxxbxx");
    NO("*a*b*", "xxbxxaxx");
}

static void test_question_matches_one_byte(void **state)
{
    (void)state;
    YES("?", "a");
    NO("?", "");
    NO("?", "ab");
    YES("a?c", "abc");
    YES("??", "\xff\x01");
}

static void test_sets_and_ranges(void **state)
{
    (void)state;
    YES("[abc]", "b");
    NO("[abc]", "d");
    YES("[a-z]x", "qx");
    NO("[a-z]", "Q");
    YES("[a-cx-z]", "y");
    NO("[a-cx-z]", "m");
    YES("[z-a]", "m"); /* reversed range */
    YES("k[0-9][0-9]", "k42");
    NO("k[0-9][0-9]", "k4x");
    YES("[a-]", "-"); /* '-' last is literal */
    YES("[]]", "]");  /* ']' first is a member */
    NO("[]]", "a");
}

static void test_negated_sets(void **state)
{
    (void)state;
    YES("[^a]", "b");
    NO("[^a]", "a");
    YES("[!a]", "b");
    NO("[!a]", "a");
    NO("[^a-z]", "q");
    YES("[^a-z]", "Q");
    NO("[^a]", ""); /* still needs one byte */
    YES("[^]]", "a");
    NO("[^]]", "]");
}

static void test_backslash_escapes(void **state)
{
    (void)state;
    YES("\\*", "*");
    NO("\\*", "a");
    YES("\\?", "?");
    NO("\\?", "a");
    YES("\\[a]", "[a]");
    YES("a\\\\b", "a\\b");
    YES("[\\]]", "]");
    YES("[\\-x]", "-");
    NO("[a\\-z]", "b"); /* escaped '-' is not a range */
    YES("[a\\-z]", "z");
    YES("\\", "\\"); /* trailing backslash is literal */
}

static void test_unterminated_bracket_is_literal(void **state)
{
    (void)state;
    YES("[ab", "[ab");
    NO("[ab", "a");
    YES("x[*", "x[yz");
}

static void test_binary_bytes_and_nul(void **state)
{
    (void)state;
    const char key[] = {'a', '\0', 'b', (char)0xff};
    assert_int_equal(kvi_glob_match("a?b*", 4, key, sizeof key), 1);
    assert_int_equal(kvi_glob_match("a\0b\xff", 4, key, sizeof key), 1);
    assert_int_equal(kvi_glob_match("a\0c*", 4, key, sizeof key), 0);
    assert_int_equal(kvi_glob_match("[\x80-\xff]", 5, "\xfe", 1), 1);
    assert_int_equal(kvi_glob_match("[\x80-\xff]", 5, "\x7f", 1), 0);
}

static void test_null_pointers_with_zero_length(void **state)
{
    (void)state;
    assert_int_equal(kvi_glob_match(NULL, 0, NULL, 0), 1);
    assert_int_equal(kvi_glob_match("*", 1, NULL, 0), 1);
    assert_int_equal(kvi_glob_match(NULL, 0, "a", 1), 0);
    assert_int_equal(kvi_glob_match(NULL, 3, "a", 1), 0);
    assert_int_equal(kvi_glob_match("a", 1, NULL, 1), 0);
}

static void test_many_stars_do_not_backtrack_exponentially(void **state)
{
    (void)state;
    /* "a*a*...a*b" against 4000 'a's: exponential with naive recursion,
     * bounded by glob_len * str_len here. */
    char glob[64 * 2 + 2];
    size_t g = 0;
    for (int i = 0; i < 64; i++) {
        glob[g++] = 'a';
        glob[g++] = '*';
    }
    glob[g++] = 'b';
    static char str[4000];
    memset(str, 'a', sizeof str);
    int64_t t0 = kvi_test_mono_ms();
    assert_int_equal(kvi_glob_match(glob, g, str, sizeof str), 0);
    str[sizeof str - 1] = 'b';
    assert_int_equal(kvi_glob_match(glob, g, str, sizeof str), 1);
    double s = (double)(kvi_test_mono_ms() - t0) / 1e3;
    if (s > 2.0)
        fail_msg("pathological pattern took %.2f s", s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_matches_only_itself),
        cmocka_unit_test(test_star_matches_any_run_including_empty),
        cmocka_unit_test(test_question_matches_one_byte),
        cmocka_unit_test(test_sets_and_ranges),
        cmocka_unit_test(test_negated_sets),
        cmocka_unit_test(test_backslash_escapes),
        cmocka_unit_test(test_unterminated_bracket_is_literal),
        cmocka_unit_test(test_binary_bytes_and_nul),
        cmocka_unit_test(test_null_pointers_with_zero_length),
        cmocka_unit_test(test_many_stars_do_not_backtrack_exponentially),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
