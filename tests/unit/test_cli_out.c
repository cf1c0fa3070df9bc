/*
 * test_cli_out.c -- the kvi command's output encodings (tools/kvi/out.c):
 * UTF-8 validation, JSON strings, base64 for bytes that are not UTF-8, and
 * the lossless escaped form used for keys and raw replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

/* What fn wrote, as a malloc'd NUL-terminated string. */
struct mem {
    char *buf;
    size_t len;
    FILE *f;
};

static void mem_open(struct mem *m)
{
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    assert_non_null(m->f);
}

static char *mem_close(struct mem *m)
{
    assert_int_equal(fclose(m->f), 0);
    return m->buf;
}

#define S(lit) lit, sizeof(lit) - 1

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(kvi__cli_utf8_valid(S("")));
    assert_true(kvi__cli_utf8_valid(S("plain ascii")));
    assert_true(kvi__cli_utf8_valid(S("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80")));
    assert_true(kvi__cli_utf8_valid(S("nul\0inside")));
    assert_false(kvi__cli_utf8_valid(S("\xc0\x80")));         /* overlong NUL */
    assert_false(kvi__cli_utf8_valid(S("\xe0\x80\xaf")));     /* overlong '/' */
    assert_false(kvi__cli_utf8_valid(S("\xed\xa0\x80")));     /* surrogate */
    assert_false(kvi__cli_utf8_valid(S("\xf4\x90\x80\x80"))); /* > U+10FFFF */
    assert_false(kvi__cli_utf8_valid(S("\xe2\x82")));         /* truncated */
    assert_false(kvi__cli_utf8_valid(S("\xff")));
    assert_false(kvi__cli_utf8_valid(S("a\x80")));
}

static void test_json_string(void **state)
{
    (void)state;
    struct mem m;
    mem_open(&m);
    kvi__cli_json_string(m.f, S("a\"b\\c\n\r\t\b\f\x01\x7f\xc3\xa9"));
    char *out = mem_close(&m);
    assert_string_equal(out, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u007f\xc3\xa9\"");
    free(out);

    mem_open(&m);
    kvi__cli_json_cstr(m.f, NULL);
    fputc(' ', m.f);
    kvi__cli_json_cstr(m.f, "ok");
    fputc(' ', m.f);
    kvi__cli_json_cstr(m.f, "\xff"); /* not UTF-8: the base64 object */
    out = mem_close(&m);
    assert_string_equal(out, "null \"ok\" {\"base64\":\"/w==\"}");
    free(out);
}

static void test_json_bytes(void **state)
{
    (void)state;
    struct mem m;
    mem_open(&m);
    kvi__cli_json_bytes_field(m.f, "value", S("text"));
    fputc(',', m.f);
    kvi__cli_json_bytes_field(m.f, "value",
                              S("\xff\x00"
                                "a"));
    fputc(',', m.f);
    kvi__cli_json_bytes_value(m.f, S("\x80\x81\x82\x83"));
    fputc(',', m.f);
    kvi__cli_json_bytes_value(m.f, S(""));
    char *out = mem_close(&m);
    /* base64 of ff 00 61 is "/wBh"; of 80 81 82 83 "gIGCgw==". */
    assert_string_equal(out, "\"value\":\"text\",\"value_base64\":\"/wBh\","
                             "{\"base64\":\"gIGCgw==\"},\"\"");
    free(out);
}

static void test_write_escaped(void **state)
{
    (void)state;
    struct mem m;
    mem_open(&m);
    kvi__cli_write_escaped(m.f, S("a\\b\"c\n\xff\0"), 1);
    fputc('|', m.f);
    kvi__cli_write_escaped(m.f, S("q\"uote"), 0);
    fputc('|', m.f);
    /* U+00A0 and above as they are; U+0085 (a C1 control) escaped. */
    kvi__cli_write_escaped(m.f, S("\xc2\xa0\xc3\xa9\xc2\x85"), 0);
    char *out = mem_close(&m);
    assert_string_equal(out, "a\\\\b\\\"c\\x0a\\xff\\x00|q\"uote|\xc2\xa0\xc3\xa9\\xc2\\x85");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_json_bytes),
        cmocka_unit_test(test_write_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
