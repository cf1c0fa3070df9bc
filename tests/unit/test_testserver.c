/*
 * test_testserver.c -- the test-server harness itself: servers start on a
 * free port in a temp dir, stop, die by kill -9, restart on the same port
 * and dir, and leave nothing behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "kvitest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testserver.h"

static int port_accepts(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Sends one line to the server and returns the first reply line. */
static void talk(uint16_t port, const char *line, char *reply, size_t replylen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    size_t got = 0;
    while (got + 1 < replylen) {
        ssize_t n = read(fd, reply + got, replylen - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(reply, '\n', got))
            break;
    }
    reply[got] = '\0';
    close(fd);
}

/* Dead or a zombie (a reparented zombie may linger when PID 1 does not
 * reap). */
static int process_gone(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return 1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char st = kvi_test_proc_state(path);
    return st == 0 || st == 'Z';
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_free_port_is_bindable(void **state)
{
    (void)state;
    uint16_t port = 0;
    assert_int_equal(kvi_ts_free_port(&port), KVI_TS_OK);
    assert_true(port > 0);
    assert_false(port_accepts(port));
    /* Below the ephemeral range: an outgoing connection cannot take it. */
    unsigned lo = 0, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%u %u", &lo, &hi), 2);
    fclose(f);
    if (lo > 11000) {
        for (int i = 0; i < 50; i++) {
            assert_int_equal(kvi_ts_free_port(&port), KVI_TS_OK);
            if (port < 10000 || port >= lo)
                fail_msg("port %u is not in [10000, %u)", (unsigned)port, lo);
        }
    } else {
        print_message("N/A: ephemeral range starts at %u: ports come from bind(0)\n", lo);
    }
}

static void test_tempdir_is_made_and_removed(void **state)
{
    (void)state;
    char *dir = NULL;
    assert_int_equal(kvi_ts_make_tempdir("selftest", &dir), KVI_TS_OK);
    assert_true(dir_exists(dir));
    char path[4096];
    snprintf(path, sizeof path, "%s/sub", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/sub/file", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
    assert_int_equal(kvi_ts_remove_tree(dir), KVI_TS_OK);
    assert_false(dir_exists(dir));
    free(dir);
}

static void test_missing_program_is_reported_as_missing(void **state)
{
    (void)state;
    const char *argv[] = {"kvi-no-such-server-binary", NULL};
    kvi_ts_spec spec = {.name = "nothing", .argv = argv};
    kvi_ts_server *s = (kvi_ts_server *)1;
    assert_int_equal(kvi_ts_start(&spec, &s), KVI_TS_MISSING);
    assert_null(s);
    assert_non_null(strstr(kvi_ts_errmsg(), "kvi-no-such-server-binary"));
}

static void test_server_that_exits_is_a_failure_with_its_log(void **state)
{
    (void)state;
    uint16_t port;
    assert_int_equal(kvi_ts_free_port(&port), KVI_TS_OK);
    const char *argv[] = {"sh", "-c", "echo boom-from-server; exit 3", NULL};
    kvi_ts_spec spec = {.name = "failing", .argv = argv, .port = port};
    kvi_ts_server *s = NULL;
    assert_int_equal(kvi_ts_start(&spec, &s), KVI_TS_FAILED);
    assert_null(s);
    assert_non_null(strstr(kvi_ts_errmsg(), "boom-from-server"));
}

static void test_redis_starts_stops_and_restarts_on_same_port(void **state)
{
    (void)state;
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, NULL);
    if (r == KVI_TS_MISSING) {
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    }
    assert_int_equal(r, KVI_TS_OK);
    uint16_t port = kvi_ts_port(s);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", kvi_ts_dir(s));
    char reply[256];
    talk(port, "PING\r\n", reply, sizeof reply);
    assert_string_equal(reply, "+PONG\r\n");

    pid_t first = kvi_ts_pid(s);
    assert_int_equal(kvi_ts_kill(s), KVI_TS_OK);
    assert_int_equal(kvi_ts_pid(s), 0);
    assert_false(kvi_ts_running(s));
    assert_true(process_gone(first));
    assert_false(port_accepts(port));

    assert_int_equal(kvi_ts_restart(s), KVI_TS_OK);
    assert_int_equal(kvi_ts_port(s), port);
    assert_string_equal(kvi_ts_dir(s), dir);
    assert_true(kvi_ts_running(s));
    talk(port, "PING\r\n", reply, sizeof reply);
    assert_string_equal(reply, "+PONG\r\n");

    assert_int_equal(kvi_ts_stop(s), KVI_TS_OK);
    assert_false(port_accepts(port));
    assert_true(dir_exists(dir));
    kvi_ts_free(s);
    assert_false(dir_exists(dir));
}

static void test_redis_extra_args_are_passed(void **state)
{
    (void)state;
    const char *extra[] = {"--requirepass", "selftest-secret", NULL};
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, extra);
    if (r == KVI_TS_MISSING) {
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    }
    assert_int_equal(r, KVI_TS_OK);
    char reply[256];
    talk(kvi_ts_port(s), "PING\r\n", reply, sizeof reply);
    assert_memory_equal(reply, "-NOAUTH", 7);
    kvi_ts_free(s);
}

/* A redis-server started with no --dir (and saving on) writes its dump into
 * its own directory, never into the directory the test runs in (a dump.rdb
 * was once committed at the repository's root). */
static void test_redis_saves_only_in_its_own_dir(void **state)
{
    (void)state;
    uint16_t port = 0;
    assert_int_equal(kvi_ts_free_port(&port), KVI_TS_OK);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    const char *argv[] = {"redis-server", "--port", portstr, "--bind", "127.0.0.1", NULL};
    kvi_ts_spec spec = {.name = "redis-bare", .argv = argv, .port = port};
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_start(&spec, &s);
    if (r == KVI_TS_MISSING) {
        print_message("SKIP: %s\n", kvi_ts_errmsg());
        skip();
    }
    assert_int_equal(r, KVI_TS_OK);
    char cwd[4096], here[4200], there[4200], reply[256];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(here, sizeof here, "%s/dump.rdb", cwd);
    int was_here = access(here, F_OK) == 0;
    talk(port, "SAVE\r\n", reply, sizeof reply);
    assert_string_equal(reply, "+OK\r\n");
    snprintf(there, sizeof there, "%s/dump.rdb", kvi_ts_dir(s));
    assert_int_equal(access(there, F_OK), 0);
    if (!was_here)
        assert_int_not_equal(access(here, F_OK), 0);
    kvi_ts_free(s);
}

static void test_memcached_starts_and_answers(void **state)
{
    (void)state;
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_memcached_start(&s, NULL);
    if (r == KVI_TS_MISSING) {
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    }
    assert_int_equal(r, KVI_TS_OK);
    char reply[256];
    talk(kvi_ts_port(s), "version\r\n", reply, sizeof reply);
    assert_memory_equal(reply, "VERSION ", 8);
    kvi_ts_free(s);
}

/* A child that starts a server and then dies by SIGKILL must not leave
 * the server behind (parent-death signal). */
static void test_server_dies_with_its_starter(void **state)
{
    (void)state;
    char *prog = kvi_ts_find_program("sleep");
    if (prog == NULL) {
        KVI_TEST_SKIP_CASE("sleep not found on PATH (Debian package coreutils)");
    }
    free(prog);
    char *dir = NULL;
    assert_int_equal(kvi_ts_make_tempdir("sleeper", &dir), KVI_TS_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        const char *argv[] = {"sleep", "60", NULL};
        kvi_ts_spec spec = {.name = "sleeper", .argv = argv, .dir = dir};
        kvi_ts_server *s = NULL;
        pid_t pid = 0;
        if (kvi_ts_start(&spec, &s) == KVI_TS_OK)
            pid = kvi_ts_pid(s);
        (void)!write(fds[1], &pid, sizeof pid);
        raise(SIGKILL);
        _exit(1);
    }
    close(fds[1]);
    pid_t server = 0;
    assert_int_equal(read(fds[0], &server, sizeof server), (ssize_t)sizeof server);
    close(fds[0]);
    assert_true(server > 0);
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    /* The server was the dead child's child: it is reparented and then
     * killed; give the kernel a moment. */
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++) {
        gone = process_gone(server);
        if (!gone)
            usleep(10000);
    }
    if (!gone)
        kill(server, SIGKILL);
    kvi_ts_remove_tree(dir);
    free(dir);
    assert_true(gone);
}

/* A forked child inherits the exit hooks; its exit must not take the
 * parent's servers down. */
static void test_child_exit_leaves_parent_servers_alone(void **state)
{
    (void)state;
    const char *argv[] = {"sleep", "60", NULL};
    kvi_ts_spec spec = {.name = "parent-sleeper", .argv = argv};
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_start(&spec, &s);
    if (r == KVI_TS_MISSING) {
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    }
    assert_int_equal(r, KVI_TS_OK);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        exit(0); /* runs the inherited atexit hook */
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    usleep(50000);
    assert_true(kvi_ts_running(s));
    pid_t pid = kvi_ts_pid(s);
    kvi_ts_free(s);
    assert_true(process_gone(pid));
}

/* A test that fails before kvi_ts_free() leaves neither a server nor its
 * temp dir once the process exits. */
static void test_exit_removes_servers_and_dirs_never_freed(void **state)
{
    (void)state;
    char *prog = kvi_ts_find_program("sleep");
    if (prog == NULL) {
        KVI_TEST_SKIP_CASE("sleep not found on PATH (Debian package coreutils)");
    }
    free(prog);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        const char *argv[] = {"sleep", "60", NULL};
        kvi_ts_spec spec = {.name = "forgotten", .argv = argv};
        kvi_ts_server *s = NULL;
        struct {
            pid_t pid;
            char dir[512];
        } info;
        memset(&info, 0, sizeof info);
        if (kvi_ts_start(&spec, &s) == KVI_TS_OK) {
            info.pid = kvi_ts_pid(s);
            snprintf(info.dir, sizeof info.dir, "%s", kvi_ts_dir(s));
        }
        (void)!write(fds[1], &info, sizeof info);
        exit(0); /* without kvi_ts_free() */
    }
    close(fds[1]);
    struct {
        pid_t pid;
        char dir[512];
    } info;
    assert_int_equal(read(fds[0], &info, sizeof info), (ssize_t)sizeof info);
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(info.pid > 0);
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++) {
        gone = process_gone(info.pid);
        if (!gone)
            usleep(10000);
    }
    if (!gone)
        kill(info.pid, SIGKILL);
    assert_true(gone);
    assert_false(dir_exists(info.dir));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_port_is_bindable),
        cmocka_unit_test(test_tempdir_is_made_and_removed),
        cmocka_unit_test(test_missing_program_is_reported_as_missing),
        cmocka_unit_test(test_server_that_exits_is_a_failure_with_its_log),
        cmocka_unit_test(test_redis_starts_stops_and_restarts_on_same_port),
        cmocka_unit_test(test_redis_extra_args_are_passed),
        cmocka_unit_test(test_redis_saves_only_in_its_own_dir),
        cmocka_unit_test(test_memcached_starts_and_answers),
        cmocka_unit_test(test_server_dies_with_its_starter),
        cmocka_unit_test(test_child_exit_leaves_parent_servers_alone),
        cmocka_unit_test(test_exit_removes_servers_and_dirs_never_freed),
    };
    return cmocka_run_group_tests_name("testserver", tests, NULL, NULL);
}
