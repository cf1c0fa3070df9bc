/*
 * test_config.c -- kvi__config_parse (pure) and kvi_load_config (with real
 * temporary files and a real context).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/internal.h"

/* ---- kvi__config_parse ---------------------------------------------- */

struct rec {
    size_t n;
    char lines[16][128];
    size_t linenos[16];
    size_t fail_at; /* return KVI_E_BAD_URL at this call (1-based), 0: never */
};

static kvi_status record(void *ud, const char *line, size_t lineno)
{
    struct rec *r = ud;
    assert_true(r->n < 16);
    snprintf(r->lines[r->n], sizeof r->lines[r->n], "%s", line);
    r->linenos[r->n] = lineno;
    r->n++;
    return r->n == r->fail_at ? KVI_E_BAD_URL : KVI_OK;
}

static kvi_status parse_text(const char *text, struct rec *r)
{
    memset(r, 0, sizeof *r);
    return kvi__config_parse(text, strlen(text), record, r);
}

static void test_lines_are_trimmed_and_numbered(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(parse_text("local://\n  redis://h:1 \t\nmemcached://m", &r), KVI_OK);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.lines[0], "local://");
    assert_int_equal(r.linenos[0], 1);
    assert_string_equal(r.lines[1], "redis://h:1");
    assert_int_equal(r.linenos[1], 2);
    assert_string_equal(r.lines[2], "memcached://m"); /* no final newline */
    assert_int_equal(r.linenos[2], 3);
}

static void test_blank_and_comment_lines_are_skipped_but_counted(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(parse_text("# head\n\n   \n\t# indented comment\nlocal://\n#x://\n", &r),
                     KVI_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.lines[0], "local://");
    assert_int_equal(r.linenos[0], 5);
}

static void test_crlf_is_tolerated(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(parse_text("local://\r\n\r\nredis://h/?a=1\r\n", &r), KVI_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.lines[0], "local://");
    assert_string_equal(r.lines[1], "redis://h/?a=1");
    assert_int_equal(r.linenos[1], 3);
}

static void test_hash_inside_a_url_is_kept(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(parse_text("redis://:pa#ss@h\n", &r), KVI_OK);
    assert_string_equal(r.lines[0], "redis://:pa#ss@h");
}

static void test_empty_text_calls_nothing(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(parse_text("", &r), KVI_OK);
    assert_int_equal(r.n, 0);
    assert_int_equal(kvi__config_parse(NULL, 0, record, &r), KVI_OK);
    assert_int_equal(r.n, 0);
}

static void test_stops_at_first_failing_line(void **state)
{
    (void)state;
    struct rec r;
    memset(&r, 0, sizeof r);
    r.fail_at = 2;
    const char *text = "a://\nb://\nc://\n";
    assert_int_equal(kvi__config_parse(text, strlen(text), record, &r), KVI_E_BAD_URL);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.lines[1], "b://");
}

static void test_nul_byte_in_a_line_is_corrupt(void **state)
{
    (void)state;
    struct rec r;
    memset(&r, 0, sizeof r);
    const char text[] = "a://\nb:/\0/x\nc://\n";
    assert_int_equal(kvi__config_parse(text, sizeof text - 1, record, &r), KVI_E_CORRUPT);
    assert_int_equal(r.n, 1); /* line 2 never reached line_fn */
    /* ...but a NUL in a comment line is harmless */
    const char ok[] = "# \0\na://\n";
    memset(&r, 0, sizeof r);
    assert_int_equal(kvi__config_parse(ok, sizeof ok - 1, record, &r), KVI_OK);
    assert_int_equal(r.n, 1);
}

static void test_bad_arguments_are_invalid(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(kvi__config_parse("a://", 4, NULL, &r), KVI_E_INVALID);
    assert_int_equal(kvi__config_parse(NULL, 4, record, &r), KVI_E_INVALID);
}

/* ---- kvi_load_config ------------------------------------------------- */

struct fixture {
    char dir[64];
    char path[128];
    kvi *k;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/kvi-test-config-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/kvi.conf", f->dir);
    assert_int_equal(kvi_new(&f->k), KVI_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kvi_free(f->k);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static int is_defined(kvi *k, const char *id)
{
    kvi_conn *c = NULL;
    return kvi_conn_get(k, id, &c) == KVI_OK;
}

static void test_load_defines_every_url(void **state)
{
    struct fixture *f = *state;
    const char *text = "# sessions and carts\r\n"
                       "local:sessions://\r\n"
                       "\r\n"
                       "   local:carts://   \r\n";
    write_file(f->path, text, strlen(text));
    assert_int_equal(kvi_load_config(f->k, f->path), KVI_OK);
    assert_true(is_defined(f->k, "local:sessions"));
    assert_true(is_defined(f->k, "local:carts"));
    assert_false(is_defined(f->k, "local:other"));
    /* and they work */
    assert_int_equal(kvi_store(f->k, "local:carts", "a", 1, "1", 1, 0), KVI_OK);
}

static void test_bad_line_names_file_and_line_but_not_password(void **state)
{
    struct fixture *f = *state;
    const char *text = "local:one://\n"
                       "# comment\n"
                       "redis:two://:s3cr3t@x@h:0\n"
                       "local:three://\n";
    write_file(f->path, text, strlen(text));
    assert_int_equal(kvi_load_config(f->k, f->path), KVI_E_BAD_URL);
    const char *msg = kvi_errmsg(f->k);
    char want[200];
    snprintf(want, sizeof want, "%s:3: bad URL: port 0 of host 1 out of range", f->path);
    if (strstr(msg, want) == NULL)
        fail_msg("message '%s' lacks '%s'", msg, want);
    assert_null(strstr(msg, "s3cr3t"));
    /* earlier lines stay defined, later ones were not reached */
    assert_true(is_defined(f->k, "local:one"));
    assert_false(is_defined(f->k, "local:three"));
}

static void test_engine_error_keeps_its_status_and_hides_password(void **state)
{
    struct fixture *f = *state;
    const char *text = "\n\nnosuchengine://:s3cr3t@x@h\n";
    write_file(f->path, text, strlen(text));
    kvi_status st = kvi_load_config(f->k, f->path);
    assert_true(st == KVI_E_UNKNOWN_ENGINE || st == KVI_E_MODULE_MISSING);
    const char *msg = kvi_errmsg(f->k);
    char want[160];
    snprintf(want, sizeof want, "%s:3: ", f->path);
    if (strncmp(msg, want, strlen(want)) != 0)
        fail_msg("message '%s' does not start with '%s'", msg, want);
    assert_true(strlen(msg) > strlen(want)); /* a reason follows */
    assert_null(strstr(msg, "s3cr3t"));
}

static void test_duplicate_id_is_exists(void **state)
{
    struct fixture *f = *state;
    const char *text = "local:a://\nlocal:a://\n";
    write_file(f->path, text, strlen(text));
    assert_int_equal(kvi_load_config(f->k, f->path), KVI_E_EXISTS);
    char want[160];
    snprintf(want, sizeof want, "%s:2: ", f->path);
    assert_non_null(strstr(kvi_errmsg(f->k), want));
}

static void test_missing_file_is_io_error_with_reason(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(kvi_load_config(f->k, f->path), KVI_E_IO);
    const char *msg = kvi_errmsg(f->k);
    assert_non_null(strstr(msg, f->path));
    assert_non_null(strstr(msg, "No such file or directory"));
}

static void test_directory_is_io_error(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(kvi_load_config(f->k, f->dir), KVI_E_IO);
    assert_non_null(strstr(kvi_errmsg(f->k), f->dir));
    assert_non_null(strstr(kvi_errmsg(f->k), "Is a directory"));
}

/* What an unprivileged process gets from a mode-0 file: 0 when KVI_E_IO
 * names "Permission denied". */
static int unreadable_config_is_io_error(const char *path)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        return 1;
    int bad = kvi_load_config(k, path) != KVI_E_IO ||
              strstr(kvi_errmsg(k), "Permission denied") == NULL;
    if (bad)
        fprintf(stderr, "load_config of a mode-0 file: %s\n", kvi_errmsg(k));
    kvi_free(k);
    return bad;
}

static void test_unreadable_file_is_io_error(void **state)
{
    struct fixture *f = *state;
    write_file(f->path, "local://\n", 9);
    assert_int_equal(chmod(f->path, 0), 0);
    if (geteuid() != 0) {
        assert_int_equal(unreadable_config_is_io_error(f->path), 0);
        return;
    }
    /* Root reads anything: the check runs in a child that has become
     * nobody (65534), with the directory open to it. */
    assert_int_equal(chmod(f->dir, 0755), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(2);
        _exit(unreadable_config_is_io_error(f->path));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_path_through_a_file_is_io_error(void **state)
{
    struct fixture *f = *state;
    write_file(f->path, "local://\n", 9);
    char bad[200];
    snprintf(bad, sizeof bad, "%s/x.conf", f->path);
    assert_int_equal(kvi_load_config(f->k, bad), KVI_E_IO);
    assert_non_null(strstr(kvi_errmsg(f->k), bad));
    assert_non_null(strstr(kvi_errmsg(f->k), "Not a directory"));
}

static void test_nul_byte_line_is_corrupt_with_its_number(void **state)
{
    struct fixture *f = *state;
    const char text[] = "local:a://\n# c\0mment\n\nlocal:b:/\0/\n";
    write_file(f->path, text, sizeof text - 1);
    assert_int_equal(kvi_load_config(f->k, f->path), KVI_E_CORRUPT);
    char want[160];
    snprintf(want, sizeof want, "%s:4: NUL byte in line", f->path);
    if (strstr(kvi_errmsg(f->k), want) == NULL)
        fail_msg("message '%s' lacks '%s'", kvi_errmsg(f->k), want);
    assert_true(is_defined(f->k, "local:a"));
}

static void test_empty_file_defines_nothing(void **state)
{
    struct fixture *f = *state;
    write_file(f->path, "", 0);
    assert_int_equal(kvi_load_config(f->k, f->path), KVI_OK);
    assert_false(is_defined(f->k, "local:a"));
}

static void test_null_arguments(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(kvi_load_config(NULL, f->path), KVI_E_INVALID);
    assert_int_equal(kvi_load_config(f->k, NULL), KVI_E_INVALID);
    assert_int_equal(kvi_load_config(f->k, ""), KVI_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_are_trimmed_and_numbered),
        cmocka_unit_test(test_blank_and_comment_lines_are_skipped_but_counted),
        cmocka_unit_test(test_crlf_is_tolerated),
        cmocka_unit_test(test_hash_inside_a_url_is_kept),
        cmocka_unit_test(test_empty_text_calls_nothing),
        cmocka_unit_test(test_stops_at_first_failing_line),
        cmocka_unit_test(test_nul_byte_in_a_line_is_corrupt),
        cmocka_unit_test(test_bad_arguments_are_invalid),
        cmocka_unit_test_setup_teardown(test_load_defines_every_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_line_names_file_and_line_but_not_password, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_engine_error_keeps_its_status_and_hides_password,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_id_is_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_io_error_with_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_is_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_file_is_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_through_a_file_is_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_byte_line_is_corrupt_with_its_number, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_defines_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
