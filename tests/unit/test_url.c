/*
 * test_url.c -- kvi_url_parse, kvi_url_option_get, kvi_url_format_redacted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/kvi.h"

static char errbuf[256];

static kvi_url *parse_ok(const char *url)
{
    kvi_url *u = NULL;
    errbuf[0] = 'x';
    kvi_status st = kvi_url_parse(url, &u, errbuf, sizeof errbuf);
    if (st != KVI_OK)
        fail_msg("parse of '%s' failed: %s", url, errbuf);
    assert_non_null(u);
    assert_string_equal(errbuf, "");
    return u;
}

/* Parses a URL that must fail with KVI_E_BAD_URL and checks that the
 * message contains `needle`; returns the message. */
static const char *parse_bad(const char *url, const char *needle)
{
    kvi_url *u = (kvi_url *)0x1;
    kvi_status st = kvi_url_parse(url, &u, errbuf, sizeof errbuf);
    if (st != KVI_E_BAD_URL)
        fail_msg("parse of '%s' gave %d, expected KVI_E_BAD_URL", url, (int)st);
    assert_null(u);
    if (strstr(errbuf, needle) == NULL)
        fail_msg("error for '%s' is '%s', expected it to contain '%s'", url, errbuf, needle);
    assert_non_null(strstr(errbuf, "bad URL: "));
    return errbuf;
}

static char *redact(const kvi_url *u)
{
    static char buf[512];
    size_t n = kvi_url_format_redacted(u, buf, sizeof buf);
    assert_true(n < sizeof buf);
    assert_int_equal(n, strlen(buf));
    return buf;
}

/* ---- scheme, group, id --------------------------------------------- */

static void test_scheme_only_local_has_no_hosts(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("local://");
    assert_string_equal(u->scheme, "local");
    assert_null(u->group);
    assert_string_equal(u->id, "local");
    assert_null(u->user);
    assert_null(u->password);
    assert_int_equal(u->has_password, 0);
    assert_int_equal(u->nhosts, 0);
    assert_null(u->hosts);
    assert_null(u->database);
    assert_int_equal(u->noptions, 0);
    kvi_url_free(u);
}

static void test_group_makes_id_scheme_colon_group(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("local:sessions://");
    assert_string_equal(u->scheme, "local");
    assert_string_equal(u->group, "sessions");
    assert_string_equal(u->id, "local:sessions");
    kvi_url_free(u);
    u = parse_ok("redis:Bill_ing-2.eu://h");
    assert_string_equal(u->id, "redis:Bill_ing-2.eu");
    kvi_url_free(u);
}

static void test_scheme_allows_digits_and_underscore(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("my_engine2://");
    assert_string_equal(u->scheme, "my_engine2");
    kvi_url_free(u);
}

static void test_missing_separator_is_bad(void **state)
{
    (void)state;
    parse_bad("redis:/127.0.0.1", "missing '://'");
    parse_bad("", "missing '://'");
}

static void test_bad_scheme_is_named(void **state)
{
    (void)state;
    parse_bad("Redis://h", "scheme 'Redis'");
    parse_bad("1redis://h", "scheme '1redis'");
    parse_bad("re-dis://h", "scheme 're-dis'");
    parse_bad("://h", "missing scheme");
}

static void test_bad_group_is_named(void **state)
{
    (void)state;
    parse_bad("redis:://h", "empty group");
    parse_bad("redis:a:b://h", "group 'a:b'");
    parse_bad("redis:a%2Fb://h", "group 'a%2Fb'");
}

static void test_scheme_and_group_are_percent_decoded(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("r%65dis:b%69lling://h");
    assert_string_equal(u->scheme, "redis");
    assert_string_equal(u->group, "billing");
    assert_string_equal(u->id, "redis:billing");
    assert_string_equal(redact(u), "redis:billing://h");
    kvi_url_free(u);
    parse_bad("re%zzdis://h", "bad percent-encoding in the scheme");
    parse_bad("redis:g%0://h", "bad percent-encoding in the group");
    parse_bad("redis%00://h", "%00 (NUL byte) not allowed in the scheme");
    parse_bad("redis:g%00://h", "%00 (NUL byte) not allowed in the group");
}

static void test_overlong_id_is_bad(void **state)
{
    (void)state;
    char url[400];
    memset(url, 0, sizeof url);
    strcpy(url, "redis:");
    memset(url + 6, 'g', 260);
    strcat(url, "://h");
    parse_bad(url, "more than 255");
}

/* ---- userinfo -------------------------------------------------------- */

static void test_user_only(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://alice@h");
    assert_string_equal(u->user, "alice");
    assert_null(u->password);
    assert_int_equal(u->has_password, 0);
    assert_int_equal(u->nhosts, 1);
    assert_string_equal(u->hosts[0].host, "h");
    assert_string_equal(redact(u), "redis://alice@h");
    kvi_url_free(u);
}

static void test_password_only(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://:secret@h:6379");
    assert_null(u->user);
    assert_string_equal(u->password, "secret");
    assert_int_equal(u->has_password, 1);
    assert_int_equal(u->hosts[0].port, 6379);
    assert_string_equal(redact(u), "redis://:***@h:6379");
    kvi_url_free(u);
}

static void test_user_and_password(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://alice:pw@h");
    assert_string_equal(u->user, "alice");
    assert_string_equal(u->password, "pw");
    kvi_url_free(u);
}

static void test_empty_password_is_present(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://alice:@h");
    assert_string_equal(u->user, "alice");
    assert_int_equal(u->has_password, 1);
    assert_non_null(u->password);
    assert_string_equal(u->password, "");
    kvi_url_free(u);
    u = parse_ok("redis://@h");
    assert_null(u->user);
    assert_int_equal(u->has_password, 0);
    assert_null(u->password);
    kvi_url_free(u);
}

static void test_password_with_at_comma_colon(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://bob:p@ss,w:rd@h1:1,h2:2/3");
    assert_string_equal(u->user, "bob");
    assert_string_equal(u->password, "p@ss,w:rd");
    assert_int_equal(u->nhosts, 2);
    assert_string_equal(u->hosts[0].host, "h1");
    assert_int_equal(u->hosts[0].port, 1);
    assert_string_equal(u->hosts[1].host, "h2");
    assert_int_equal(u->hosts[1].port, 2);
    assert_string_equal(u->database, "3");
    kvi_url_free(u);
}

static void test_percent_encoded_userinfo_is_decoded(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://us%3Aer:p%2Fw%3F%25%40@h");
    assert_string_equal(u->user, "us:er");
    assert_string_equal(u->password, "p/w?%@");
    assert_string_equal(redact(u), "redis://us%3Aer:***@h");
    kvi_url_free(u);
}

static void test_bad_percent_encoding_in_password_hides_it(void **state)
{
    (void)state;
    const char *m = parse_bad("redis://u:s3cr3t%zz@h", "bad percent-encoding in the password");
    assert_null(strstr(m, "s3cr3t"));
    m = parse_bad("redis://u:s3cr3t%4@h", "bad percent-encoding in the password");
    assert_null(strstr(m, "s3cr3t"));
    parse_bad("redis://a%g1:pw@h", "bad percent-encoding in the user name");
}

/* ---- hosts ----------------------------------------------------------- */

static void test_host_without_port_has_port_zero(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("memcached://cache.example");
    assert_int_equal(u->nhosts, 1);
    assert_string_equal(u->hosts[0].host, "cache.example");
    assert_int_equal(u->hosts[0].port, 0);
    assert_int_equal(u->hosts[0].ipv6, 0);
    kvi_url_free(u);
}

static void test_host_list_with_and_without_ports(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("memcached:auth://10.0.0.1:11211,10.0.0.2,10.0.0.3:1/");
    assert_int_equal(u->nhosts, 3);
    assert_string_equal(u->hosts[0].host, "10.0.0.1");
    assert_int_equal(u->hosts[0].port, 11211);
    assert_string_equal(u->hosts[1].host, "10.0.0.2");
    assert_int_equal(u->hosts[1].port, 0);
    assert_string_equal(u->hosts[2].host, "10.0.0.3");
    assert_int_equal(u->hosts[2].port, 1);
    assert_null(u->database);
    kvi_url_free(u);
}

static void test_ipv6_with_and_without_port(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://[::1]:6380,[fe80::1%25eth0],h");
    assert_int_equal(u->nhosts, 3);
    assert_string_equal(u->hosts[0].host, "::1");
    assert_int_equal(u->hosts[0].ipv6, 1);
    assert_int_equal(u->hosts[0].port, 6380);
    assert_string_equal(u->hosts[1].host, "fe80::1%eth0");
    assert_int_equal(u->hosts[1].ipv6, 1);
    assert_int_equal(u->hosts[1].port, 0);
    assert_int_equal(u->hosts[2].ipv6, 0);
    assert_string_equal(redact(u), "redis://[::1]:6380,[fe80::1%25eth0],h");
    kvi_url_free(u);
}

static void test_unterminated_bracket_is_bad(void **state)
{
    (void)state;
    parse_bad("redis://[::1", "unterminated '[' in host 1");
    parse_bad("redis://h,[::1:6379/0", "unterminated '[' in host 2");
    parse_bad("redis://[::1,::2]", "unterminated '[' in host 1");
}

static void test_text_after_bracket_is_bad(void **state)
{
    (void)state;
    parse_bad("redis://[::1]x", "after ']' in host 1");
    parse_bad("redis://[]:1", "empty IPv6 address");
    parse_bad("redis://a]b", "unexpected ']' in host 1");
}

static void test_port_not_a_number_is_bad(void **state)
{
    (void)state;
    parse_bad("redis://h1:1,h2:abc", "port of host 2 is not a number");
    parse_bad("redis://h:-1", "port of host 1 is not a number");
    parse_bad("redis://h:1:2", "port of host 1 is not a number");
    parse_bad("redis://[::1]:x", "port of host 1 is not a number");
    /* A password whose '@' is missing must not be echoed as a port. */
    parse_bad("redis://user:s3cretpw/0", "port of host 1 is not a number");
    char err[256];
    kvi_url *u = NULL;
    assert_int_equal(kvi_url_parse("redis://user:s3cretpw/0", &u, err, sizeof err), KVI_E_BAD_URL);
    assert_null(strstr(err, "s3cretpw"));
    assert_int_equal(kvi_url_parse("redis://user:1234567/0", &u, err, sizeof err), KVI_E_BAD_URL);
    assert_null(strstr(err, "1234567"));
    parse_bad("redis://h:", "empty port after ':' in host 1");
}

static void test_port_out_of_range_is_bad(void **state)
{
    (void)state;
    parse_bad("redis://h:0", "port 0 of host 1 out of range 1..65535");
    parse_bad("redis://h:65536", "port 65536 of host 1 out of range 1..65535");
    parse_bad("redis://h:99999999999999999999999", "out of range 1..65535");
    kvi_url *u = parse_ok("redis://h:65535,g:1");
    assert_int_equal(u->hosts[0].port, 65535);
    assert_int_equal(u->hosts[1].port, 1);
    kvi_url_free(u);
}

static void test_empty_host_in_list_is_bad(void **state)
{
    (void)state;
    parse_bad("redis://,h", "empty host in host list (position 1)");
    parse_bad("redis://a,,b", "empty host in host list (position 2)");
    parse_bad("redis://a,b,", "empty host in host list (position 3)");
    parse_bad("redis://:6379", "empty host in host list (position 1)");
    parse_bad("redis://,", "empty host in host list (position 1)");
}

static void test_percent_encoded_host_is_decoded(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://%2Ftmp%2Fredis.sock/2");
    assert_string_equal(u->hosts[0].host, "/tmp/redis.sock");
    assert_string_equal(u->database, "2");
    assert_string_equal(redact(u), "redis://%2Ftmp%2Fredis.sock/2");
    kvi_url_free(u);
    parse_bad("redis://a,b%2", "bad percent-encoding in host 2");
}

/* ---- database and options ------------------------------------------ */

static void test_database(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://127.0.0.1:6379/0");
    assert_string_equal(u->database, "0");
    kvi_url_free(u);
    u = parse_ok("sql:///var/lib/kvi/a%20b.db");
    assert_int_equal(u->nhosts, 0);
    assert_string_equal(u->database, "var/lib/kvi/a b.db");
    kvi_url_free(u);
    u = parse_ok("redis://h/");
    assert_null(u->database);
    kvi_url_free(u);
}

static void test_options_alone(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("local://?file=%2Ftmp%2Fs.snap&max_bytes=100&empty=");
    assert_int_equal(u->nhosts, 0);
    assert_null(u->database);
    assert_int_equal(u->noptions, 3);
    assert_string_equal(u->options[0].name, "file");
    assert_string_equal(u->options[0].value, "/tmp/s.snap");
    assert_string_equal(kvi_url_option_get(u, "max_bytes"), "100");
    assert_string_equal(kvi_url_option_get(u, "empty"), "");
    assert_null(kvi_url_option_get(u, "nope"));
    assert_null(kvi_url_option_get(u, NULL));
    assert_null(kvi_url_option_get(NULL, "file"));
    assert_string_equal(redact(u), "local://?file=/tmp/s.snap&max_bytes=100&empty=");
    kvi_url_free(u);
}

static void test_options_keep_meaning_with_host_list(void **state)
{
    (void)state;
    kvi_url *u =
        parse_ok("redis:billing://:secret@127.0.0.1:7001,127.0.0.1:7002/5?cluster=yes&timeout=50");
    assert_string_equal(u->id, "redis:billing");
    assert_string_equal(u->password, "secret");
    assert_int_equal(u->nhosts, 2);
    assert_int_equal(u->hosts[0].port, 7001);
    assert_int_equal(u->hosts[1].port, 7002);
    assert_string_equal(u->hosts[1].host, "127.0.0.1");
    assert_string_equal(u->database, "5");
    assert_int_equal(u->noptions, 2);
    assert_string_equal(kvi_url_option_get(u, "cluster"), "yes");
    assert_string_equal(kvi_url_option_get(u, "timeout"), "50");
    kvi_url_free(u);
    /* without a database, '?' right after the host list */
    u = parse_ok("redis://a:1,b:2?lazy=1");
    assert_int_equal(u->nhosts, 2);
    assert_int_equal(u->hosts[1].port, 2);
    assert_null(u->database);
    assert_string_equal(kvi_url_option_get(u, "lazy"), "1");
    kvi_url_free(u);
}

static void test_option_value_may_hold_equals_and_decodes(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://h/?a=b=c&n%61me=v%26w");
    assert_string_equal(kvi_url_option_get(u, "a"), "b=c");
    assert_string_equal(kvi_url_option_get(u, "name"), "v&w");
    assert_string_equal(redact(u), "redis://h?a=b%3Dc&name=v%26w");
    kvi_url_free(u);
}

static void test_empty_query_has_no_options(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://h/?");
    assert_int_equal(u->noptions, 0);
    kvi_url_free(u);
}

static void test_option_syntax_errors(void **state)
{
    (void)state;
    parse_bad("redis://h/?x", "option 'x' has no '='");
    parse_bad("redis://h/?a=1&x", "option 'x' has no '='");
    parse_bad("redis://h/?timeout=1&timeout=2", "option 'timeout' given twice");
    parse_bad("redis://h/?a=1&&b=2", "empty option (position 2)");
    parse_bad("redis://h/?a=1&", "empty option (position 2)");
    parse_bad("redis://h/?=1", "option 1 has an empty name");
    parse_bad("redis://h/?a=%G0", "bad percent-encoding in the value of option 'a'");
}

static void test_too_many_options_are_bad(void **state)
{
    (void)state;
    static char url[16 + 300 * 8];
    strcpy(url, "local://?");
    size_t n = strlen(url);
    for (int i = 0; i < 257; i++)
        n += (size_t)sprintf(url + n, "%so%d=", i ? "&" : "", i);
    parse_bad(url, "too many options (257, at most 256)");
    /* 256 is fine */
    *strrchr(url, '&') = '\0';
    kvi_url *u = parse_ok(url);
    assert_int_equal(u->noptions, 256);
    assert_string_equal(kvi_url_option_get(u, "o255"), "");
    kvi_url_free(u);
}

static void test_unknown_options_are_not_the_parsers_business(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://h/?no_such_option=1");
    assert_string_equal(kvi_url_option_get(u, "no_such_option"), "1");
    kvi_url_free(u);
}

/* ---- NUL, blanks, arguments ---------------------------------------- */

static void test_nul_byte_is_rejected_everywhere(void **state)
{
    (void)state;
    parse_bad("redis://u%00:p@h", "%00 (NUL byte) not allowed in the user name");
    parse_bad("redis://u:p%00@h", "%00 (NUL byte) not allowed in the password");
    parse_bad("redis://h%00", "%00 (NUL byte) not allowed in host 1");
    parse_bad("redis://h/d%00", "%00 (NUL byte) not allowed in the database");
    parse_bad("redis://h/?a%00=1", "%00 (NUL byte) not allowed in the name of option 1");
    parse_bad("redis://h/?a=%00", "%00 (NUL byte) not allowed in the value of option 'a'");
    parse_bad("redis://h:6%0079", "%00 (NUL byte) not allowed in the port of host 1");
}

static void test_blanks_and_control_characters_are_rejected(void **state)
{
    (void)state;
    parse_bad("redis://h /0", "blank or control character at offset 9");
    parse_bad("redis://h\t", "blank or control character");
    parse_bad("redis://h\x7f", "blank or control character");
}

static void test_null_arguments(void **state)
{
    (void)state;
    kvi_url *u = (kvi_url *)0x1;
    assert_int_equal(kvi_url_parse(NULL, &u, errbuf, sizeof errbuf), KVI_E_INVALID);
    assert_null(u);
    assert_int_equal(kvi_url_parse("local://", NULL, errbuf, sizeof errbuf), KVI_E_INVALID);
    /* no error buffer at all is fine */
    assert_int_equal(kvi_url_parse("redis://h:0", &u, NULL, 0), KVI_E_BAD_URL);
    assert_null(u);
    kvi_url_free(NULL);
    assert_int_equal(kvi_url_format_redacted(NULL, NULL, 0), 0);
}

static void test_tiny_error_buffer_is_truncated_not_overrun(void **state)
{
    (void)state;
    char small[8];
    memset(small, 'Z', sizeof small);
    kvi_url *u = NULL;
    assert_int_equal(kvi_url_parse("redis://h:0", &u, small, 5), KVI_E_BAD_URL);
    assert_string_equal(small, "bad ");
    assert_int_equal(small[5], 'Z');
}

/* ---- passwords never leak ------------------------------------------ */

static void test_errors_never_contain_the_password(void **state)
{
    (void)state;
    static const char *const urls[] = {
        "redis://u:s3cr3t@x@h:abc",
        "redis://u:s3cr3t@x@h:0",
        "redis://u:s3cr3t@x@,h",
        "redis://u:s3cr3t@x@[::1",
        "redis://u:s3cr3t@x@h/?x",
        "redis://u:s3cr3t@x@h/?a=1&a=2",
        "redis://u:s3cr3t@x@h%00",
        "redis://u:s3cr3t@x%00@h",
        "redis://u:s3cr3t@x%0@h",
        "redis://u:s3cr3t@x@h\x01",
        "redis:g:g://u:s3cr3t@x@h",
        /* unencoded '/' or '?' in the password: the URL splits in the wrong
         * place, and the parser must still not quote any of it */
        "redis://u:s3cr/3t@x@h",
        "redis://u:s3cr3t/x@h:1",
        "redis://u:s3cr3t?x@h",
        "redis://u:s3cr3t@x?q@h",
        "redis://:s3cr3t:6379/?a@b",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        kvi_url *u = NULL;
        errbuf[0] = '\0';
        kvi_status st = kvi_url_parse(urls[i], &u, errbuf, sizeof errbuf);
        if (st != KVI_E_BAD_URL)
            fail_msg("url %zu parsed with status %d", i, (int)st);
        if (errbuf[0] == '\0')
            fail_msg("url %zu gave no message", i);
        if (strstr(errbuf, "s3cr") != NULL || strstr(errbuf, "3t@x") != NULL ||
            strstr(errbuf, "3t") != NULL)
            fail_msg("url %zu leaks the password: %s", i, errbuf);
    }
}

static void test_redacted_format_hides_password(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis:billing://admin:s3cr3t%40x@[::1]:7001,b/0?timeout=5");
    assert_string_equal(u->password, "s3cr3t@x");
    char *text = redact(u);
    assert_null(strstr(text, "s3cr3t"));
    assert_string_equal(text, "redis:billing://admin:***@[::1]:7001,b/0?timeout=5");
    kvi_url_free(u);
}

static void test_redacted_format_is_canonical_and_reparses(void **state)
{
    (void)state;
    const char *url = "redis://us%20er:pw@h%2Cx:1,[::2]/d%3Fb/x?o%26=v%20w&t=%2F";
    kvi_url *u = parse_ok(url);
    char text[256];
    kvi_url_format_redacted(u, text, sizeof text);
    kvi_url *v = parse_ok(text);
    assert_string_equal(v->user, u->user);
    assert_string_equal(v->password, "***");
    assert_int_equal(v->nhosts, 2);
    assert_string_equal(v->hosts[0].host, "h,x");
    assert_int_equal(v->hosts[0].port, 1);
    assert_string_equal(v->hosts[1].host, "::2");
    assert_string_equal(v->database, "d?b/x");
    assert_string_equal(kvi_url_option_get(v, "o&"), "v w");
    assert_string_equal(kvi_url_option_get(v, "t"), "/");
    kvi_url_free(v);
    kvi_url_free(u);
}

static void test_redacted_format_truncates_like_snprintf(void **state)
{
    (void)state;
    kvi_url *u = parse_ok("redis://:pw@host:6379/0");
    char full[64];
    size_t n = kvi_url_format_redacted(u, full, sizeof full);
    assert_string_equal(full, "redis://:***@host:6379/0");
    char small[10];
    memset(small, 'Z', sizeof small);
    assert_int_equal(kvi_url_format_redacted(u, small, 6), n);
    assert_string_equal(small, "redis");
    assert_int_equal(small[6], 'Z');
    assert_int_equal(kvi_url_format_redacted(u, NULL, 0), n);
    kvi_url_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scheme_only_local_has_no_hosts),
        cmocka_unit_test(test_group_makes_id_scheme_colon_group),
        cmocka_unit_test(test_scheme_allows_digits_and_underscore),
        cmocka_unit_test(test_missing_separator_is_bad),
        cmocka_unit_test(test_bad_scheme_is_named),
        cmocka_unit_test(test_bad_group_is_named),
        cmocka_unit_test(test_scheme_and_group_are_percent_decoded),
        cmocka_unit_test(test_overlong_id_is_bad),
        cmocka_unit_test(test_user_only),
        cmocka_unit_test(test_password_only),
        cmocka_unit_test(test_user_and_password),
        cmocka_unit_test(test_empty_password_is_present),
        cmocka_unit_test(test_password_with_at_comma_colon),
        cmocka_unit_test(test_percent_encoded_userinfo_is_decoded),
        cmocka_unit_test(test_bad_percent_encoding_in_password_hides_it),
        cmocka_unit_test(test_host_without_port_has_port_zero),
        cmocka_unit_test(test_host_list_with_and_without_ports),
        cmocka_unit_test(test_ipv6_with_and_without_port),
        cmocka_unit_test(test_unterminated_bracket_is_bad),
        cmocka_unit_test(test_text_after_bracket_is_bad),
        cmocka_unit_test(test_port_not_a_number_is_bad),
        cmocka_unit_test(test_port_out_of_range_is_bad),
        cmocka_unit_test(test_empty_host_in_list_is_bad),
        cmocka_unit_test(test_percent_encoded_host_is_decoded),
        cmocka_unit_test(test_database),
        cmocka_unit_test(test_options_alone),
        cmocka_unit_test(test_options_keep_meaning_with_host_list),
        cmocka_unit_test(test_option_value_may_hold_equals_and_decodes),
        cmocka_unit_test(test_empty_query_has_no_options),
        cmocka_unit_test(test_option_syntax_errors),
        cmocka_unit_test(test_too_many_options_are_bad),
        cmocka_unit_test(test_unknown_options_are_not_the_parsers_business),
        cmocka_unit_test(test_nul_byte_is_rejected_everywhere),
        cmocka_unit_test(test_blanks_and_control_characters_are_rejected),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_tiny_error_buffer_is_truncated_not_overrun),
        cmocka_unit_test(test_errors_never_contain_the_password),
        cmocka_unit_test(test_redacted_format_hides_password),
        cmocka_unit_test(test_redacted_format_is_canonical_and_reparses),
        cmocka_unit_test(test_redacted_format_truncates_like_snprintf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
