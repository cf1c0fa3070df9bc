/*
 * kvitest.c -- the support library of kvi's test programs (kvitest.h).
 */
#include "kvitest.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define KVI_TEST_HAVE_MEMCHECK 1
#endif
#endif

/* Prints "<lead><fmt...><tail>\n" to standard error. */
static void vnote(const char *lead, const char *tail, const char *fmt, va_list ap)
{
    fputs(lead, stderr);
    vfprintf(stderr, fmt, ap);
    fputs(tail, stderr);
    fputc('\n', stderr);
    fflush(stderr);
}

/* The skip message, or under KVI_REQUIRE_SERVERS=1 the failure saying that
 * `what` must run here; returns whether it is required. */
static int vskip_note(const char *what, const char *fmt, va_list ap)
{
    int required = kvi_ts_servers_required();
    char tail[96] = "";
    if (required)
        snprintf(tail, sizeof tail, " -- KVI_REQUIRE_SERVERS=1 says this %s must run here", what);
    vnote(required ? "FAILED: " : "SKIPPED: ", tail, fmt, ap);
    return required;
}

void kvi_test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int required = vskip_note("test", fmt, ap);
    va_end(ap);
    exit(required ? 1 : KVI_TEST_SKIP);
}

int kvi_test_skip_case_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int required = vskip_note("case", fmt, ap);
    va_end(ap);
    return required;
}

void kvi_test_not_applicable(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote("N/A: ", "", fmt, ap);
    va_end(ap);
}

void kvi_test_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote("FAILED: ", "", fmt, ap);
    va_end(ap);
    exit(1);
}

void kvi_test_need_program(const char *prog, const char *package)
{
    char *p = kvi_ts_find_program(prog);
    if (p == NULL)
        kvi_test_skip("%s not found on PATH (Debian package %s)", prog, package);
    free(p);
}

static kvi_ts_server *started(kvi_ts_result r, kvi_ts_server *s, const char *what)
{
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        kvi_test_fail("cannot start %s: %s", what, kvi_ts_errmsg());
    return s;
}

kvi_ts_server *kvi_test_redis(const char *const *extra)
{
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, extra);
    return started(r, s, "redis-server");
}

kvi_ts_server *kvi_test_memcached(const char *const *extra)
{
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_memcached_start(&s, extra);
    return started(r, s, "memcached");
}

int kvi_test_valgrind(void)
{
    /* valgrind preloads its vgpreload_*.so into the program. */
    const char *pre = getenv("LD_PRELOAD");
    return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

char kvi_test_proc_state(const char *stat_path)
{
    char buf[512];
    FILE *f = fopen(stat_path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')' and a space (comm
     * may hold either). */
    const char *close = strrchr(buf, ')');
    return close != NULL && (size_t)(close - buf) + 2 < n && close[1] == ' ' ? close[2] : 0;
}

/* 1 when every thread of pid is stopped (state T or t in its
 * /proc/PID/task/TID/stat), -1 when that cannot be read (no /proc). */
static int process_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int stopped = 1;
    struct dirent *e;
    while (stopped == 1 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[400];
        snprintf(file, sizeof file, "%s/%s/stat", path, e->d_name);
        char st = kvi_test_proc_state(file);
        stopped = st == 'T' || st == 't';
    }
    closedir(d);
    return stopped;
}

void kvi_test_hang(kvi_ts_server *s)
{
    pid_t pid = s != NULL ? kvi_ts_pid(s) : 0;
    if (pid <= 0 || kill(pid, SIGSTOP) != 0)
        kvi_test_fail("cannot stop the server (SIGSTOP): it does not run");
    /* kill() returns before a running thread has stopped, and that thread
     * could still answer the next request: wait for every one. */
    int stopped = 0;
    for (int tries = 0; tries < 2000 && (stopped = process_stopped(pid)) == 0; tries++)
        kvi_test_sleep_ms(1);
    if (stopped == 0)
        kvi_test_fail("the server (pid %d) did not stop within 2 s of SIGSTOP", (int)pid);
}

void kvi_test_unhang(kvi_ts_server *s)
{
    if (s == NULL || kvi_ts_pid(s) <= 0)
        return;
    if (kill(kvi_ts_pid(s), SIGCONT) != 0)
        kvi_test_fail("cannot let the server go on (SIGCONT)");
}

void kvi_test_wait(const kvi_wait *w)
{
    /* A wait without a deadline that sees nothing for a minute is a hang:
     * it fails here, with a message, rather than at CTest's timeout. */
    enum { NO_DEADLINE_CAP_MS = 60000 };
    int timeout = NO_DEADLINE_CAP_MS;
    if (w->deadline_ms != 0) {
        int64_t left = w->deadline_ms - kvi_test_mono_ms();
        timeout = left > 0 ? (left < INT_MAX ? (int)left : INT_MAX) : 0;
    }
    struct pollfd p = {w->fd, 0, 0};
    if (w->events & KVI_WAIT_READ)
        p.events |= POLLIN;
    if (w->events & KVI_WAIT_WRITE)
        p.events |= POLLOUT;
    int rc = poll(&p, w->fd >= 0 ? 1 : 0, timeout);
    if (rc < 0 && errno != EINTR)
        kvi_test_fail("poll: %s", strerror(errno));
    if (rc == 0 && w->deadline_ms == 0)
        kvi_test_fail("a wait without a deadline (fd %d) saw nothing in %d ms", w->fd,
                      (int)NO_DEADLINE_CAP_MS);
}

#ifdef KVI_TEST_HAVE_MEMCHECK
static unsigned long child_lost_at_start; /* definitely + indirectly lost bytes */
#endif

void kvi_test_child_start(void)
{
#ifdef KVI_TEST_HAVE_MEMCHECK
    if (RUNNING_ON_VALGRIND) {
        unsigned long lost = 0, dubious = 0, reachable = 0, suppressed = 0;
        /* After fork() glibc keeps the stacks of the parent's other
         * threads in its cache of stacks, for the child's new threads.
         * Those get a stack of an eighth of the default size here (256 KiB
         * at least): glibc never reuses a cached stack more than 4 times
         * the size asked, so the parent's threads' stacks stay as they
         * were, and what those threads held stays reachable as in the
         * parent (unless the cache outgrows its 40 MB and glibc unmaps
         * some: a parent with more than 4 other threads). */
        pthread_attr_t attr;
        size_t size = 0;
        if (pthread_getattr_default_np(&attr) == 0) {
            if (pthread_attr_getstacksize(&attr, &size) == 0 && size > 0 &&
                pthread_attr_setstacksize(&attr, size / 8 > 262144 ? size / 8 : 262144) == 0)
                (void)pthread_setattr_default_np(&attr);
            pthread_attr_destroy(&attr);
        }
        VALGRIND_CLO_CHANGE("-q");
        VALGRIND_CLO_CHANGE("--show-leak-kinds=definite,indirect");
        VALGRIND_DO_QUICK_LEAK_CHECK;
        VALGRIND_COUNT_LEAKS(lost, dubious, reachable, suppressed);
        (void)dubious, (void)reachable, (void)suppressed;
        child_lost_at_start = lost;
    }
#endif
}

void kvi_test_child_exit(int code)
{
#ifdef KVI_TEST_HAVE_MEMCHECK
    if (RUNNING_ON_VALGRIND) {
        unsigned long lost = 0, dubious = 0, reachable = 0, suppressed = 0;
        VALGRIND_DO_ADDED_LEAK_CHECK;
        VALGRIND_COUNT_LEAKS(lost, dubious, reachable, suppressed);
        (void)dubious, (void)reachable, (void)suppressed;
        VALGRIND_CLO_CHANGE("--leak-check=no");
        if (lost > child_lost_at_start) {
            fprintf(stderr, "FAILED: this child (pid %d) lost %lu bytes (valgrind: above)\n",
                    (int)getpid(), lost - child_lost_at_start);
            if (code == 0)
                code = KVI_TEST_CHILD_LEAKED;
        }
    }
#endif
    _exit(code);
}

unsigned kvi_test_peer_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&sa, &len) != 0)
        return 0;
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return 0;
}

/* See kvitest.h. */
int kvi_test_fd_is(int fd, const char *kind)
{
    char path[64], target[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = fd >= 0 ? readlink(path, target, sizeof target - 1) : -1;
    if (n <= 0)
        return 0;
    target[n] = '\0';
    return strstr(target, kind) != NULL;
}

void kvi_test_url(char *buf, size_t buflen, const char *scheme, const kvi_ts_server *s,
                  const char *rest)
{
    int n = snprintf(buf, buflen, "%s://127.0.0.1:%u/%s", scheme, (unsigned)kvi_ts_port(s),
                     rest != NULL ? rest : "");
    if (n < 0 || (size_t)n >= buflen)
        kvi_test_fail("kvi_test_url: buffer of %zu bytes too small", buflen);
}

kvi *kvi_test_context(const char *const *urls)
{
    kvi *k = NULL;
    kvi_status st = kvi_new(&k);
    if (st != KVI_OK)
        kvi_test_fail("kvi_new: %s", kvi_strerror(st));
    for (size_t i = 0; urls != NULL && urls[i] != NULL; i++) {
        st = kvi_add_url(k, urls[i]);
        if (st == KVI_OK)
            continue;
        /* The message names the engine and the module; never the password. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kvi_errmsg(k));
        kvi_free(k);
        if (st == KVI_E_MODULE_MISSING)
            kvi_test_skip("engine module not built: %s", msg);
        kvi_test_fail("kvi_add_url (URL %zu): %s: %s", i + 1, kvi_strerror(st), msg);
    }
    return k;
}

kvi *kvi_test_context1(const char *url)
{
    const char *urls[] = {url, NULL};
    return kvi_test_context(urls);
}

struct storm_worker {
    kvi *k;
    const char *id, *key;
    int calls;
    int64_t deadline_ms; /* kvi_test_mono_ms() after which no call starts */
    kvi_test_storm seen;
};

static void *storm_main(void *arg)
{
    struct storm_worker *w = arg;
    for (int i = 0; i < w->calls && kvi_test_mono_ms() < w->deadline_ms; i++) {
        w->seen.calls++;
        kvi_value v = KVI_VALUE_INIT;
        kvi_status st = kvi_fetch(w->k, w->id, w->key, strlen(w->key), &v);
        kvi_value_free(&v);
        if (st == KVI_E_TIMEOUT || st == KVI_E_CONNECT) {
            w->seen.failed++;
            /* kvi_errmsg is per thread: this call's message. */
            const char *msg = kvi_errmsg(w->k);
            if (strstr(msg, "is marked down") != NULL && strstr(msg, " UTC") != NULL)
                w->seen.marked_down++;
        } else {
            w->seen.other++;
        }
    }
    return NULL;
}

void kvi_test_fetch_storm(kvi *k, const char *id, const char *key, int threads, int calls,
                          int64_t budget_ms, kvi_test_storm *out)
{
    struct storm_worker w[16];
    pthread_t th[16];
    if (threads <= 0 || threads > 16)
        kvi_test_fail("kvi_test_fetch_storm: %d threads (1..16)", threads);
    memset(out, 0, sizeof *out);
    int64_t t0 = kvi_test_mono_ms();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct storm_worker){
            .k = k, .id = id, .key = key, .calls = calls, .deadline_ms = t0 + budget_ms};
        if (pthread_create(&th[i], NULL, storm_main, &w[i]) != 0)
            kvi_test_fail("kvi_test_fetch_storm: cannot start thread %d", i);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        out->failed += w[i].seen.failed;
        out->marked_down += w[i].seen.marked_down;
        out->other += w[i].seen.other;
        out->calls += w[i].seen.calls;
    }
    out->elapsed_ms = kvi_test_mono_ms() - t0;
}
