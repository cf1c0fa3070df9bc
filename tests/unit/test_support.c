/*
 * test_support.c -- the test support library itself (tests/support): the
 * skip decision (a loud skip, exit 77, or a failure under
 * KVI_REQUIRE_SERVERS=1), server-or-skip, contexts, URLs, and the shell
 * helpers missing.sh / check-skips.sh that make test relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvitest.h"

/* Runs fn in a child with KVI_REQUIRE_SERVERS set to `required` ("" =
 * unset) and its stderr captured in err; returns the child's exit status. */
static int in_child(void (*fn)(void), const char *required, char *err, size_t errlen)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        if (required[0] != '\0')
            setenv("KVI_REQUIRE_SERVERS", required, 1);
        else
            unsetenv("KVI_REQUIRE_SERVERS");
        fn();
        _exit(99); /* fn must not return */
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < errlen && (got = read(pfd[0], err + n, errlen - 1 - n)) > 0)
        n += (size_t)got;
    err[n] = '\0';
    close(pfd[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void skip_something(void)
{
    kvi_test_skip("no %s here", "frobnicator");
}

static void need_missing_program(void)
{
    kvi_test_need_program("kvi-no-such-program-xyz", "kvi-no-such-package");
    _exit(0);
}

static void need_present_program(void)
{
    kvi_test_need_program("sh", "dash");
    _exit(0);
}

static void context_of_missing_module(void)
{
    setenv("KVI_MODULE_PATH", "/nonexistent-kvi-modules", 1);
    kvi *k = kvi_test_context1("redis://127.0.0.1:1/?lazy=yes");
    kvi_free(k);
    _exit(0);
}

static void context_of_bad_url(void)
{
    kvi *k = kvi_test_context1("local://?no_such_option=1");
    kvi_free(k);
    _exit(0);
}

static void test_skip_is_loud_and_77(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(in_child(skip_something, "", err, sizeof err), KVI_TEST_SKIP);
    assert_string_equal(err, "SKIPPED: no frobnicator here\n");
    assert_int_equal(in_child(skip_something, "0", err, sizeof err), KVI_TEST_SKIP);
}

static void test_skip_fails_when_servers_are_required(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(in_child(skip_something, "1", err, sizeof err), 1);
    assert_non_null(strstr(err, "FAILED: no frobnicator here"));
    assert_non_null(strstr(err, "KVI_REQUIRE_SERVERS=1"));
}

static void test_need_program(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(in_child(need_missing_program, "", err, sizeof err), KVI_TEST_SKIP);
    assert_non_null(strstr(err, "kvi-no-such-program-xyz not found on PATH"));
    assert_non_null(strstr(err, "kvi-no-such-package"));
    assert_int_equal(in_child(need_missing_program, "1", err, sizeof err), 1);
    assert_int_equal(in_child(need_present_program, "1", err, sizeof err), 0);
    assert_string_equal(err, "");
}

static void test_missing_server_binary_decision(void **state)
{
    (void)state;
    unsetenv("KVI_REQUIRE_SERVERS");
    assert_int_equal(kvi_ts_missing("frob-server", "frob"), KVI_TS_MISSING);
    assert_non_null(strstr(kvi_ts_errmsg(), "frob-server not found on PATH"));
    assert_non_null(strstr(kvi_ts_errmsg(), "Debian package frob"));
    setenv("KVI_REQUIRE_SERVERS", "1", 1);
    assert_int_equal(kvi_ts_servers_required(), 1);
    assert_int_equal(kvi_ts_missing("frob-server", "frob"), KVI_TS_FAILED);
    assert_non_null(strstr(kvi_ts_errmsg(), "KVI_REQUIRE_SERVERS=1"));
    unsetenv("KVI_REQUIRE_SERVERS");
    assert_int_equal(kvi_ts_servers_required(), 0);
}

static void test_context_helpers(void **state)
{
    (void)state;
    char err[1024];
    /* A module that is not there is a skip naming the engine. */
    assert_int_equal(in_child(context_of_missing_module, "", err, sizeof err), KVI_TEST_SKIP);
    assert_non_null(strstr(err, "SKIPPED: engine module not built"));
    assert_non_null(strstr(err, "redis"));
    /* Any other error is a failure naming what was refused. */
    assert_int_equal(in_child(context_of_bad_url, "", err, sizeof err), 1);
    assert_non_null(strstr(err, "FAILED: kvi_add_url (URL 1)"));
    assert_non_null(strstr(err, "no_such_option"));
    /* And a good one works. */
    const char *urls[] = {"local://", "local:two://", NULL};
    kvi *k = kvi_test_context(urls);
    assert_int_equal(kvi_store(k, "local:two", "k", 1, "v", 1, 0), KVI_OK);
    kvi_free(k);
}

/* Runs a shell command line; returns its exit status. */
static int sh(const char *cmd)
{
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_shell_helpers(void **state)
{
    (void)state;
    const char *src = getenv("KVI_SOURCE_DIR");
    if (src == NULL)
        skip();
    char cmd[2048], log[] = "/tmp/kvi-test-support-XXXXXX";
    int fd = mkstemp(log);
    assert_true(fd >= 0);
    const char *text = "1/2 Test #1: a ... Passed\n"
                       "The following tests did not run:\n"
                       "\t  7 - conformance_redis (Skipped)\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    snprintf(cmd, sizeof cmd,
             "KVI_REQUIRE_SERVERS= sh %s/tests/support/check-skips.sh %s >/dev/null", src, log);
    assert_int_equal(sh(cmd), 0); /* listed, not fatal */
    snprintf(cmd, sizeof cmd,
             "KVI_REQUIRE_SERVERS=1 sh %s/tests/support/check-skips.sh %s >/dev/null 2>&1", src,
             log);
    assert_int_equal(sh(cmd), 1); /* fatal when every test must run */
    fd = open(log, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "100% tests passed\n", 18), 18);
    close(fd);
    assert_int_equal(sh(cmd), 0); /* nothing skipped */
    /* Cases skipped inside a program are listed with their test, not fatal. */
    char last[] = "/tmp/kvi-test-support-last-XXXXXX";
    fd = mkstemp(last);
    assert_true(fd >= 0);
    const char *lt = "3/9 Test: conformance_local\n[  SKIPPED ] test_shared_between_processes\n"
                     "[  SKIPPED ] 1 test(s), listed below:\n";
    assert_int_equal(write(fd, lt, strlen(lt)), (ssize_t)strlen(lt));
    close(fd);
    snprintf(cmd, sizeof cmd,
             "KVI_REQUIRE_SERVERS=1 sh %s/tests/support/check-skips.sh %s %s | grep -qx "
             "'   conformance_local: test_shared_between_processes'",
             src, log, last);
    assert_int_equal(sh(cmd), 0);
    unlink(last);
    unlink(log);
    snprintf(cmd, sizeof cmd,
             "KVI_REQUIRE_SERVERS= sh %s/tests/support/missing.sh t why 2>/dev/null", src);
    assert_int_equal(sh(cmd), KVI_TEST_SKIP);
    snprintf(cmd, sizeof cmd,
             "KVI_REQUIRE_SERVERS=1 sh %s/tests/support/missing.sh t why 2>/dev/null", src);
    assert_int_equal(sh(cmd), 1);
}

static void test_url(void **state)
{
    (void)state;
    kvi_ts_server *s = kvi_test_redis(NULL); /* a loud skip without redis-server */
    char url[128];
    kvi_test_url(url, sizeof url, "redis", s, "?timeout=2000");
    char want[128];
    snprintf(want, sizeof want, "redis://127.0.0.1:%u/?timeout=2000", (unsigned)kvi_ts_port(s));
    assert_string_equal(url, want);
    kvi_ts_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skip_is_loud_and_77),
        cmocka_unit_test(test_skip_fails_when_servers_are_required),
        cmocka_unit_test(test_need_program),
        cmocka_unit_test(test_missing_server_binary_decision),
        cmocka_unit_test(test_context_helpers),
        cmocka_unit_test(test_shell_helpers),
        cmocka_unit_test(test_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
