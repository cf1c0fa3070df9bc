/*
 * lua_runner.c -- runs one Lua test command (busted under lua5.1 or lua5.4)
 * with the real servers it needs, which this program starts on free
 * 127.0.0.1 ports in temporary directories (tests/support/testserver.c) and
 * always stops by PID, also when the Lua side fails or is killed.
 *
 *     kvi-lua-runner [--redis | --redis-cluster] [--memcached] [--need FILE]...
 *                    [--child-env VAR=VALUE]...
 *                    -- CMD ARGS...
 *
 * The command gets in its environment, for each server started:
 *     KVI_TEST_REDIS_URL=redis://127.0.0.1:P/0, KVI_TEST_REDIS_PORT=P
 *     (--redis-cluster: a 3-master Redis Cluster, KVI_TEST_REDIS_URL=
 *     redis://127.0.0.1:P1,...,127.0.0.1:P3/?cluster=yes)
 *     KVI_TEST_MEMCACHED_URL=memcached://127.0.0.1:P/, KVI_TEST_MEMCACHED_PORT=P
 * and always KVI_TEST_DEAD_PORT (a 127.0.0.1 port nothing listens on).
 * --child-env sets a variable for CMD only (LD_PRELOAD of a sanitizer
 * runtime, which this program, itself built with the sanitizer, must not
 * get).
 * Exit status: the command's; 77 (CTest: skipped, with the reason printed,
 * kvi_test_skip) when a server binary or a --need file (an engine module)
 * is missing -- a failure instead under KVI_REQUIRE_SERVERS=1.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvitest.h"
#include "testcluster.h"
#include "testserver.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: kvi-lua-runner [--redis | --redis-cluster] [--memcached] [--need FILE]... "
            "[--child-env VAR=VALUE]... -- CMD...\n");
    return 2;
}

static void export_port(const char *name, const char *url_fmt, uint16_t port)
{
    char var[64], val[128];
    snprintf(var, sizeof var, "KVI_TEST_%s_PORT", name);
    snprintf(val, sizeof val, "%u", (unsigned)port);
    setenv(var, val, 1);
    if (url_fmt != NULL) {
        snprintf(var, sizeof var, "KVI_TEST_%s_URL", name);
        snprintf(val, sizeof val, url_fmt, (unsigned)port);
        setenv(var, val, 1);
    }
}

static int run(char **cmd, char **child_env, int n_child_env)
{
    int status;
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        /* Dies with the runner, so a killed test leaves nothing behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int e = 0; e < n_child_env; e++)
            putenv(child_env[e]);
        execvp(cmd[0], cmd);
        fprintf(stderr, "FAIL: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 1;
        }
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    fprintf(stderr, "FAIL: %s killed by signal %d\n", cmd[0], WTERMSIG(status));
    return 1;
}

int main(int argc, char **argv)
{
    int want_redis = 0, want_cluster = 0, want_mc = 0, i, rc, n_child_env = 0;
    kvi_tc_cluster *cluster = NULL;
    char *child_env[8];
    kvi_ts_server *redis = NULL, *mc = NULL;
    uint16_t dead;

    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--redis") == 0) {
            want_redis = 1;
        } else if (strcmp(argv[i], "--redis-cluster") == 0) {
            want_cluster = 1;
        } else if (strcmp(argv[i], "--memcached") == 0) {
            want_mc = 1;
        } else if (strcmp(argv[i], "--child-env") == 0 && i + 1 < argc &&
                   strchr(argv[i + 1], '=') != NULL && n_child_env < 8) {
            child_env[n_child_env++] = argv[++i];
        } else if (strcmp(argv[i], "--need") == 0 && i + 1 < argc) {
            if (access(argv[++i], R_OK) != 0)
                kvi_test_skip("%s is not built (%s)", argv[i], strerror(errno));
        } else {
            return usage();
        }
    }
    if (i + 1 >= argc)
        return usage();

    if (kvi_ts_free_port(&dead) != KVI_TS_OK)
        kvi_test_fail("no free port: %s", kvi_ts_errmsg());
    export_port("DEAD", NULL, dead);
    if (want_redis) {
        redis = kvi_test_redis(NULL);
        export_port("REDIS", "redis://127.0.0.1:%u/0", kvi_ts_port(redis));
    }
    if (want_cluster) {
        kvi_tc_spec spec = {.masters = 3, .replicas = 0};
        char url[512];
        kvi_ts_result r = kvi_tc_start(&spec, &cluster);
        if (r == KVI_TS_MISSING)
            kvi_test_skip("cannot run a Redis Cluster: %s", kvi_tc_errmsg());
        if (r != KVI_TS_OK)
            kvi_test_fail("cannot start a Redis Cluster: %s", kvi_tc_errmsg());
        if (kvi_tc_url(cluster, "redis", url, sizeof url) + sizeof "?cluster=yes" > sizeof url)
            kvi_test_fail("cluster URL too long");
        strcat(url, "?cluster=yes");
        setenv("KVI_TEST_REDIS_URL", url, 1);
    }
    if (want_mc) {
        mc = kvi_test_memcached(NULL);
        export_port("MEMCACHED", "memcached://127.0.0.1:%u/", kvi_ts_port(mc));
    }
    fflush(stdout);
    rc = run(argv + i + 1, child_env, n_child_env);
    if (rc != 0) {
        if (redis != NULL)
            kvi_ts_print_log(redis, stderr, 2000);
        if (mc != NULL)
            kvi_ts_print_log(mc, stderr, 2000);
    }
    kvi_ts_free(redis);
    kvi_tc_free(cluster);
    kvi_ts_free(mc);
    return rc;
}
