/*
 * test_words.c -- kvi_split_words / kvi_words_free, the raw-query
 * tokenizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/engine.h"

struct split {
    char **w;
    size_t *l;
    size_t n;
};

static struct split split_ok(const char *q, size_t len)
{
    struct split s = {NULL, NULL, 99};
    kvi_status st = kvi_split_words(NULL, q, len, &s.w, &s.l, &s.n);
    if (st != KVI_OK)
        fail_msg("split of '%s' failed with %d", q, (int)st);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.w[i][s.l[i]], '\0'); /* NUL-terminated */
    return s;
}

static struct split split_str(const char *q)
{
    return split_ok(q, strlen(q));
}

static void expect_words(const char *q, size_t n, const char *const *words)
{
    struct split s = split_str(q);
    if (s.n != n)
        fail_msg("'%s' gave %zu words, expected %zu", q, s.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(s.l[i], strlen(words[i]));
        assert_memory_equal(s.w[i], words[i], s.l[i]);
    }
    kvi_words_free(s.w, s.l, s.n);
}

#define EXPECT(q, ...)                                                                             \
    do {                                                                                           \
        static const char *const w_[] = {__VA_ARGS__};                                             \
        expect_words(q, sizeof w_ / sizeof w_[0], w_);                                             \
    } while (0)

static void expect_invalid(const char *q)
{
    char **w = (char **)0x1;
    size_t *l = (size_t *)0x1;
    size_t n = 7;
    if (kvi_split_words(NULL, q, strlen(q), &w, &l, &n) != KVI_E_INVALID)
        fail_msg("'%s' was not rejected", q);
    assert_null(w);
    assert_null(l);
    assert_int_equal(n, 0);
}

static void test_blank_separated_words(void **state)
{
    (void)state;
    EXPECT("SET k v", "SET", "k", "v");
    EXPECT("  GET\t k \r\n", "GET", "k");
    EXPECT("a\vb\fc", "a", "b", "c");
}

static void test_empty_and_blank_queries_give_no_words(void **state)
{
    (void)state;
    struct split s = split_str("");
    assert_int_equal(s.n, 0);
    assert_null(s.w);
    assert_null(s.l);
    kvi_words_free(s.w, s.l, s.n);
    s = split_str(" \t\r\n ");
    assert_int_equal(s.n, 0);
    kvi_words_free(s.w, s.l, s.n);
    s = split_ok(NULL, 0);
    assert_int_equal(s.n, 0);
}

static void test_double_quotes_keep_blanks(void **state)
{
    (void)state;
    EXPECT("SET k \"a b\"", "SET", "k", "a b");
    EXPECT("\"\"", "");
    EXPECT("x \"\" y", "x", "", "y");
}

static void test_double_quote_escapes(void **state)
{
    (void)state;
    EXPECT("\"a\\nb\\rc\\td\\\\e\\\"f\"", "a\nb\rc\td\\e\"f");
    EXPECT("\"\\x41\\x7a\\xFf\"", "Az\xff");
    EXPECT("\"\\a\\b\"", "\a\b");
    /* unknown escapes give the byte; a bad \x gives 'x' as redis-cli does */
    EXPECT("\"\\q\\'\"", "q'");
    EXPECT("\"\\xZZ\"", "xZZ");
    EXPECT("\"\\x4\"", "x4");
}

static void test_hex_escape_can_make_nul(void **state)
{
    (void)state;
    struct split s = split_str("SET \"a\\x00b\" x");
    assert_int_equal(s.n, 3);
    assert_int_equal(s.l[1], 3);
    assert_memory_equal(s.w[1], "a\0b", 3);
    kvi_words_free(s.w, s.l, s.n);
}

static void test_single_quotes_are_literal_but_for_escaped_quote(void **state)
{
    (void)state;
    EXPECT("'a b'", "a b");
    EXPECT("'it\\'s'", "it's");
    EXPECT("'a\\nb\\x41\\\\c'", "a\\nb\\x41\\\\c");
    EXPECT("'\"'", "\"");
    EXPECT("\"'\"", "'");
}

static void test_quote_may_start_mid_word(void **state)
{
    (void)state;
    EXPECT("pre\"fix x\" next", "prefix x", "next");
    EXPECT("a'b c'", "ab c");
}

static void test_backslash_outside_quotes_is_literal(void **state)
{
    (void)state;
    EXPECT("a\\nb c\\d", "a\\nb", "c\\d");
    /* ...so a '"' after it still opens a quote */
    expect_invalid("a\\\"b");
}

static void test_unterminated_quote_is_invalid(void **state)
{
    (void)state;
    expect_invalid("SET k \"abc");
    expect_invalid("SET k 'abc");
    expect_invalid("\"abc\\\"");
    expect_invalid("'it\\'");
    expect_invalid("\"");
}

static void test_closing_quote_must_end_the_word(void **state)
{
    (void)state;
    expect_invalid("\"a\"b");
    expect_invalid("'a'b");
    expect_invalid("\"a\"\"b\"");
    EXPECT("\"a\" b", "a", "b");
    EXPECT("\"a\"\tb", "a", "b");
}

static void test_embedded_nul_bytes_are_kept(void **state)
{
    (void)state;
    const char q[] = {'S', 'E', 'T', ' ', 'k', '\0', 'x', ' ', '\0'};
    struct split s = split_ok(q, sizeof q);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.l[1], 3);
    assert_memory_equal(s.w[1], "k\0x", 3);
    assert_int_equal(s.l[2], 1);
    assert_int_equal(s.w[2][0], '\0');
    kvi_words_free(s.w, s.l, s.n);
}

static void test_many_words(void **state)
{
    (void)state;
    char q[3000];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        q[n++] = (char)('a' + i % 26);
        q[n++] = ' ';
    }
    struct split s = split_ok(q, n);
    assert_int_equal(s.n, 1000);
    assert_int_equal(s.w[999][0], 'a' + 999 % 26);
    kvi_words_free(s.w, s.l, s.n);
}

static void test_null_arguments_are_invalid(void **state)
{
    (void)state;
    char **w;
    size_t *l;
    size_t n;
    assert_int_equal(kvi_split_words(NULL, NULL, 3, &w, &l, &n), KVI_E_INVALID);
    assert_int_equal(kvi_split_words(NULL, "a", 1, NULL, &l, &n), KVI_E_INVALID);
    assert_int_equal(kvi_split_words(NULL, "a", 1, &w, NULL, &n), KVI_E_INVALID);
    assert_int_equal(kvi_split_words(NULL, "a", 1, &w, &l, NULL), KVI_E_INVALID);
    kvi_words_free(NULL, NULL, 0);
}

static void test_detail_message_names_the_problem_but_not_the_query(void **state)
{
    (void)state;
    kvi *k = NULL;
    kvi_conn *c = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_conn_get(k, "local", &c), KVI_OK);

    char **w;
    size_t *l;
    size_t n;
    const char *q = "AUTH \"s3cr3t";
    assert_int_equal(kvi_split_words(c, q, strlen(q), &w, &l, &n), KVI_E_INVALID);
    const char *msg = kvi_errmsg(k);
    if (strstr(msg, "unterminated double quote") == NULL)
        fail_msg("message: '%s'", msg);
    assert_null(strstr(msg, "s3cr3t"));

    q = "AUTH 's3cr3t'x";
    assert_int_equal(kvi_split_words(c, q, strlen(q), &w, &l, &n), KVI_E_INVALID);
    msg = kvi_errmsg(k);
    if (strstr(msg, "closing quote must be followed by a blank") == NULL)
        fail_msg("message: '%s'", msg);
    assert_null(strstr(msg, "s3cr3t"));
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blank_separated_words),
        cmocka_unit_test(test_empty_and_blank_queries_give_no_words),
        cmocka_unit_test(test_double_quotes_keep_blanks),
        cmocka_unit_test(test_double_quote_escapes),
        cmocka_unit_test(test_hex_escape_can_make_nul),
        cmocka_unit_test(test_single_quotes_are_literal_but_for_escaped_quote),
        cmocka_unit_test(test_quote_may_start_mid_word),
        cmocka_unit_test(test_backslash_outside_quotes_is_literal),
        cmocka_unit_test(test_unterminated_quote_is_invalid),
        cmocka_unit_test(test_closing_quote_must_end_the_word),
        cmocka_unit_test(test_embedded_nul_bytes_are_kept),
        cmocka_unit_test(test_many_words),
        cmocka_unit_test(test_null_arguments_are_invalid),
        cmocka_unit_test(test_detail_message_names_the_problem_but_not_the_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
