/*
 * testserver.c -- throwaway servers for kvi's tests (see testserver.h).
 */
#include "testserver.h"

#include "testclock.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define DEFAULT_READY_MS 5000u
#define STOP_GRACE_MS 5000u
#define MAX_LIVE 256

struct kvi_ts_server {
    char *name;
    char **argv; /* argv[0] is the resolved path */
    uint16_t port;
    char *dir;
    int own_dir;
    char *log_path;
    unsigned ready_timeout_ms;
    kvi_ts_probe_fn probe;
    void *probe_ud;
    pid_t pid;
    int slot;                       /* index in live_pids, -1 when not registered */
    pid_t owner;                    /* process that created it */
    struct kvi_ts_server *next_all; /* every server not yet freed */
};

static _Thread_local char errbuf[1024];

/* Pids of running servers, read by the signal handler: plain stores of
 * sig_atomic_t-sized values, slots handed out under a mutex. */
static volatile pid_t live_pids[MAX_LIVE];
/* Which process started each one: a forked child inherits this table and
 * our exit hooks, and must not kill its parent's servers when it exits. */
static volatile pid_t live_owner[MAX_LIVE];
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;
/* Servers created and not yet freed, so that exit can remove their temp
 * dirs when a failing test never reached kvi_ts_free(). */
static kvi_ts_server *all_servers;
static const int hook_signals[] = {SIGINT, SIGTERM, SIGABRT, SIGHUP};
static struct sigaction old_actions[sizeof hook_signals / sizeof hook_signals[0]];

#if defined(__GNUC__)
#define KVI_TS_FMT(f, a) __attribute__((format(printf, f, a)))
#else
#define KVI_TS_FMT(f, a)
#endif

static kvi_ts_result set_error(kvi_ts_result r, const char *fmt, ...) KVI_TS_FMT(2, 3);

static kvi_ts_result set_error(kvi_ts_result r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return r;
}

const char *kvi_ts_errmsg(void)
{
    return errbuf;
}

int kvi_ts_servers_required(void)
{
    const char *v = getenv("KVI_REQUIRE_SERVERS");
    return v != NULL && strcmp(v, "1") == 0;
}

kvi_ts_result kvi_ts_missing(const char *prog, const char *package)
{
    if (kvi_ts_servers_required())
        return set_error(KVI_TS_FAILED,
                         "%s not found on PATH (Debian package %s), and KVI_REQUIRE_SERVERS=1 "
                         "says every server test must run here",
                         prog, package);
    return set_error(KVI_TS_MISSING,
                     "%s not found on PATH; install it (Debian package %s) to run this test", prog,
                     package);
}

static void on_signal(int sig)
{
    kvi_ts_kill_all();
    for (size_t i = 0; i < sizeof hook_signals / sizeof hook_signals[0]; i++) {
        if (hook_signals[i] == sig)
            sigaction(sig, &old_actions[i], NULL);
    }
    /* Delivered again once this handler returns, now to the previous
     * disposition (usually the default: terminate). */
    raise(sig);
}

static int remove_tree_quietly(const char *path);

static void on_exit_hook(void)
{
    kvi_ts_kill_all();
    /* A thread may be inside a kvi_ts_ call as the process exits; then the
     * dirs stay rather than the exit hanging. */
    if (pthread_mutex_trylock(&live_lock) != 0)
        return;
    for (kvi_ts_server *s = all_servers; s != NULL; s = s->next_all) {
        if (s->owner != getpid())
            continue;
        if (s->pid > 0)
            waitpid(s->pid, NULL, 0);
        if (s->own_dir)
            remove_tree_quietly(s->dir);
    }
    pthread_mutex_unlock(&live_lock);
}

static void install_hooks(void)
{
    atexit(on_exit_hook);
    for (size_t i = 0; i < sizeof hook_signals / sizeof hook_signals[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(hook_signals[i], &sa, &old_actions[i]);
    }
}

void kvi_ts_kill_all(void)
{
    pid_t self = getpid();
    for (size_t i = 0; i < MAX_LIVE; i++) {
        pid_t pid = live_pids[i];
        if (pid > 0 && live_owner[i] == self)
            kill(pid, SIGKILL);
    }
}

static int live_add(pid_t pid)
{
    int slot = -1;
    pthread_mutex_lock(&live_lock);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live_pids[i] == 0 || live_owner[i] != getpid()) {
            live_owner[i] = getpid();
            live_pids[i] = pid;
            slot = i;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
    return slot;
}

static void live_remove(int slot)
{
    if (slot < 0)
        return;
    pthread_mutex_lock(&live_lock);
    live_pids[slot] = 0;
    pthread_mutex_unlock(&live_lock);
}

char *kvi_ts_find_program(const char *name)
{
    if (name == NULL || *name == '\0')
        return NULL;
    if (strchr(name, '/') != NULL)
        return access(name, X_OK) == 0 ? strdup(name) : NULL;
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    size_t nlen = strlen(name);
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t dlen = end ? (size_t)(end - path) : strlen(path);
        if (dlen > 0) {
            char *full = malloc(dlen + 1 + nlen + 1);
            if (full == NULL)
                return NULL;
            memcpy(full, path, dlen);
            full[dlen] = '/';
            memcpy(full + dlen + 1, name, nlen + 1);
            struct stat st;
            if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0)
                return full;
            free(full);
        }
        if (end == NULL)
            break;
        path = end + 1;
    }
    return NULL;
}

/* Binds a TCP socket to 127.0.0.1:port (0: any) without SO_REUSEADDR and
 * releases it; the port bound (host order), or 0 with errno set. */
static uint16_t try_bind(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    socklen_t len = sizeof sa;
    uint16_t got = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        got = ntohs(sa.sin_port);
    int e = errno;
    close(fd);
    errno = e;
    return got;
}

/* The first port of the kernel's ephemeral range (what it gives outgoing
 * connections and bind(port 0)), 32768 when it cannot be read. */
static unsigned ephemeral_low(void)
{
    unsigned lo = 32768, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    return lo;
}

/* Ports come from below the ephemeral range, at random: a port picked by
 * bind(0) and released could become the source port of any outgoing
 * connection (every test makes many) before the server binds it -- seen in
 * CI: a cluster node's bus port taken, "Address already in use".  Below
 * that range only another test's pick can collide, and picks are spread
 * over thousands of ports. */
kvi_ts_result kvi_ts_free_port(uint16_t *port)
{
    static _Atomic uint64_t picks;
    enum { LOWEST = 10000 };
    unsigned lo = ephemeral_low();
    if (lo > LOWEST + 1000) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        for (int tries = 0; tries < 200; tries++) {
            /* splitmix64 of the pid, the time and a per-process count */
            uint64_t x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^
                         (atomic_fetch_add(&picks, 1) * 0x9e3779b97f4a7c15ULL);
            x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
            x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
            x ^= x >> 31;
            uint16_t want = (uint16_t)(LOWEST + x % (lo - LOWEST));
            if (try_bind(want) == want) {
                *port = want;
                return KVI_TS_OK;
            }
        }
    }
    /* A range too small to pick from: whatever the kernel gives. */
    uint16_t got = try_bind(0);
    if (got == 0)
        return set_error(KVI_TS_FAILED, "cannot bind 127.0.0.1:0: %s", strerror(errno));
    *port = got;
    return KVI_TS_OK;
}

kvi_ts_result kvi_ts_make_tempdir(const char *tag, char **path)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = "/tmp";
    size_t need = strlen(base) + strlen(tag ? tag : "") + 32;
    char *p = malloc(need);
    if (p == NULL)
        return set_error(KVI_TS_FAILED, "out of memory");
    snprintf(p, need, "%s/kvi-%s-XXXXXX", base, tag ? tag : "test");
    if (mkdtemp(p) == NULL) {
        int e = errno;
        free(p);
        return set_error(KVI_TS_FAILED, "mkdtemp under %s: %s", base, strerror(e));
    }
    *path = p;
    return KVI_TS_OK;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

static int remove_tree_quietly(const char *path)
{
    return path ? nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) : 0;
}

kvi_ts_result kvi_ts_remove_tree(const char *path)
{
    if (path == NULL)
        return KVI_TS_OK;
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return set_error(KVI_TS_FAILED, "cannot remove %s: %s", path, strerror(errno));
    return KVI_TS_OK;
}

int kvi_ts_probe_redis(int fd, void *ud)
{
    (void)ud;
    static const char ping[] = "PING\r\n";
    if (write(fd, ping, sizeof ping - 1) != (ssize_t)(sizeof ping - 1))
        return 0;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strncmp(buf, "-LOADING", 8) != 0;
}

/* One connection attempt: 1 ready, 0 not yet. */
static int try_ready(kvi_ts_server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(s->port);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        struct timeval tv = {0, 500000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        ok = s->probe ? s->probe(fd, s->probe_ud) : 1;
    }
    close(fd);
    return ok;
}

/* Reaps the child when it has exited; returns 1 while it is alive. */
static int check_alive(kvi_ts_server *s, int *status)
{
    if (s->pid <= 0)
        return 0;
    int st = 0;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    if (status)
        *status = st;
    live_remove(s->slot);
    s->slot = -1;
    s->pid = 0;
    return 0;
}

static void log_tail(const kvi_ts_server *s, char *buf, size_t buflen)
{
    buf[0] = '\0';
    int fd = open(s->log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)(buflen - 1) ? size - (off_t)(buflen - 1) : 0;
    if (lseek(fd, from, SEEK_SET) == from) {
        ssize_t n = read(fd, buf, buflen - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    close(fd);
}

kvi_ts_result kvi_ts_wait_ready(kvi_ts_server *s, unsigned timeout_ms)
{
    uint64_t deadline = ((uint64_t)kvi_test_mono_ms()) + timeout_ms;
    for (;;) {
        int status = 0;
        if (!check_alive(s, &status)) {
            char tail[600];
            log_tail(s, tail, sizeof tail);
            return set_error(KVI_TS_FAILED,
                             "%s exited (status %d) before it was ready; log %s:\n%s", s->name,
                             status, s->log_path, tail);
        }
        if (s->port == 0 || try_ready(s))
            return KVI_TS_OK;
        if (((uint64_t)kvi_test_mono_ms()) >= deadline)
            break;
        kvi_test_sleep_ms(20);
    }
    char tail[600];
    log_tail(s, tail, sizeof tail);
    return set_error(KVI_TS_FAILED, "%s not ready on 127.0.0.1:%u after %u ms; log %s:\n%s",
                     s->name, s->port, timeout_ms, s->log_path, tail);
}

static kvi_ts_result spawn(kvi_ts_server *s)
{
    pthread_once(&hooks_once, install_hooks);
    int logfd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        return set_error(KVI_TS_FAILED, "cannot open %s: %s", s->log_path, strerror(errno));
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid();
    /* Blocked across fork so that the child cannot run our hooks before it
     * execs; the parent restores its mask right away. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: async-signal-safe calls only until exec. */
        for (size_t i = 0; i < sizeof hook_signals / sizeof hook_signals[0]; i++)
            signal(hook_signals[i], SIG_DFL);
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
#endif
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        if (chdir(s->dir) != 0)
            _exit(126);
        if (nullfd >= 0)
            dup2(nullfd, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        close_range(3, ~0u, 0);
        execv(s->argv[0], s->argv);
        static const char msg[] = "exec failed\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(127);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(logfd);
    if (nullfd >= 0)
        close(nullfd);
    if (pid < 0)
        return set_error(KVI_TS_FAILED, "fork: %s", strerror(fork_errno));
    s->pid = pid;
    s->slot = live_add(pid);
    kvi_ts_result r = kvi_ts_wait_ready(s, s->ready_timeout_ms);
    if (r != KVI_TS_OK) {
        char msg[sizeof errbuf];
        memcpy(msg, errbuf, sizeof msg);
        kvi_ts_kill(s);
        memcpy(errbuf, msg, sizeof msg);
    }
    return r;
}

static void server_free_fields(kvi_ts_server *s)
{
    if (s->argv) {
        for (char **a = s->argv; *a; a++)
            free(*a);
        free(s->argv);
    }
    free(s->name);
    free(s->dir);
    free(s->log_path);
    free(s);
}

kvi_ts_result kvi_ts_start(const kvi_ts_spec *spec, kvi_ts_server **out)
{
    if (out)
        *out = NULL;
    if (spec == NULL || out == NULL || spec->argv == NULL || spec->argv[0] == NULL)
        return set_error(KVI_TS_FAILED, "kvi_ts_start: missing spec, argv or out");
    char *prog = kvi_ts_find_program(spec->argv[0]);
    if (prog == NULL)
        return set_error(KVI_TS_MISSING, "%s not found on PATH; install it to run this test",
                         spec->argv[0]);
    kvi_ts_server *s = calloc(1, sizeof *s);
    size_t argc = 0;
    int is_redis = 0, has_dir = 0;
    while (spec->argv[argc]) {
        if (strcmp(spec->argv[argc], "--dir") == 0)
            has_dir = 1;
        argc++;
    }
    {
        const char *base = strrchr(prog, '/');
        is_redis = strcmp(base ? base + 1 : prog, "redis-server") == 0;
    }
    /* A redis-server always gets "--dir DIR" (its own directory): whatever
     * it saves (dump.rdb, appendonlydir, nodes.conf) lands there, never in
     * the directory the test was started from. */
    int add_dir = is_redis && !has_dir;
    if (s == NULL || (s->argv = calloc(argc + 1 + (add_dir ? 2 : 0), sizeof *s->argv)) == NULL) {
        free(prog);
        free(s);
        return set_error(KVI_TS_FAILED, "out of memory");
    }
    s->slot = -1;
    s->argv[0] = prog;
    for (size_t i = 1; i < argc; i++) {
        if ((s->argv[i] = strdup(spec->argv[i])) == NULL) {
            server_free_fields(s);
            return set_error(KVI_TS_FAILED, "out of memory");
        }
    }
    const char *label = spec->name ? spec->name : spec->argv[0];
    s->name = strdup(label);
    s->port = spec->port;
    s->ready_timeout_ms = spec->ready_timeout_ms ? spec->ready_timeout_ms : DEFAULT_READY_MS;
    s->probe = spec->probe;
    s->probe_ud = spec->probe_ud;
    if (spec->dir) {
        s->dir = strdup(spec->dir);
        s->own_dir = spec->own_dir;
    } else {
        if (kvi_ts_make_tempdir(label, &s->dir) != KVI_TS_OK) {
            server_free_fields(s);
            return KVI_TS_FAILED;
        }
        s->own_dir = 1;
    }
    if (add_dir && s->dir != NULL) {
        s->argv[argc] = strdup("--dir");
        s->argv[argc + 1] = strdup(s->dir);
        if (s->argv[argc] == NULL || s->argv[argc + 1] == NULL) {
            if (s->own_dir)
                kvi_ts_remove_tree(s->dir);
            server_free_fields(s);
            return set_error(KVI_TS_FAILED, "out of memory");
        }
    }
    size_t need = (s->dir ? strlen(s->dir) : 0) + (s->name ? strlen(s->name) : 0) + 8;
    s->log_path = malloc(need);
    if (s->name == NULL || s->dir == NULL || s->log_path == NULL) {
        server_free_fields(s);
        return set_error(KVI_TS_FAILED, "out of memory");
    }
    snprintf(s->log_path, need, "%s/%s.log", s->dir, s->name);
    kvi_ts_result r = spawn(s);
    if (r != KVI_TS_OK) {
        if (s->own_dir)
            kvi_ts_remove_tree(s->dir);
        server_free_fields(s);
        return r;
    }
    s->owner = getpid();
    pthread_mutex_lock(&live_lock);
    s->next_all = all_servers;
    all_servers = s;
    pthread_mutex_unlock(&live_lock);
    *out = s;
    return KVI_TS_OK;
}

/* Builds base + extra into one NULL-terminated vector (pointers only). */
static const char **join_args(const char *const *base, size_t nbase, const char *const *extra)
{
    size_t nextra = 0;
    while (extra && extra[nextra])
        nextra++;
    const char **v = calloc(nbase + nextra + 1, sizeof *v);
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < nbase; i++)
        v[i] = base[i];
    for (size_t i = 0; i < nextra; i++)
        v[nbase + i] = extra[i];
    return v;
}

static kvi_ts_result start_ready_made(const char *name, const char *prog, kvi_ts_server **out,
                                      const char *const *extra)
{
    if (out)
        *out = NULL;
    char *found = kvi_ts_find_program(prog);
    if (found == NULL)
        return kvi_ts_missing(prog, strcmp(prog, "memcached") == 0 ? "memcached" : "redis-server");
    free(found);
    uint16_t port;
    char *dir;
    if (kvi_ts_free_port(&port) != KVI_TS_OK)
        return KVI_TS_FAILED;
    if (kvi_ts_make_tempdir(name, &dir) != KVI_TS_OK)
        return KVI_TS_FAILED;
    char portbuf[8];
    snprintf(portbuf, sizeof portbuf, "%u", port);
    const char **argv;
    kvi_ts_probe_fn probe = NULL;
    if (strcmp(name, "redis") == 0) {
        const char *base[] = {prog, "--port",       portbuf, "--bind", "127.0.0.1", "--save",
                              "",   "--appendonly", "no",    "--dir",  dir};
        argv = join_args(base, sizeof base / sizeof base[0], extra);
        probe = kvi_ts_probe_redis;
    } else {
        /* memcached refuses to run as root without -u; "-u root" keeps our
         * credentials, so the parent-death signal stays armed (switching
         * user would clear it). */
        const char *base[] = {prog, "-l", "127.0.0.1", "-p", portbuf, "-U",  "0",
                              "-I", "2m", "-m",        "64", "-u",    "root"};
        size_t nbase = sizeof base / sizeof base[0];
        argv = join_args(base, geteuid() == 0 ? nbase : nbase - 2, extra);
    }
    if (argv == NULL) {
        kvi_ts_remove_tree(dir);
        free(dir);
        return set_error(KVI_TS_FAILED, "out of memory");
    }
    kvi_ts_spec spec = {
        .name = name, .argv = argv, .port = port, .dir = dir, .own_dir = 1, .probe = probe};
    kvi_ts_result r = kvi_ts_start(&spec, out);
    free(argv);
    if (r != KVI_TS_OK)
        kvi_ts_remove_tree(dir);
    free(dir);
    return r;
}

kvi_ts_result kvi_ts_redis_start(kvi_ts_server **out, const char *const *extra)
{
    return start_ready_made("redis", "redis-server", out, extra);
}

kvi_ts_result kvi_ts_memcached_start(kvi_ts_server **out, const char *const *extra)
{
    return start_ready_made("memcached", "memcached", out, extra);
}

uint16_t kvi_ts_port(const kvi_ts_server *s)
{
    return s ? s->port : 0;
}

const char *kvi_ts_dir(const kvi_ts_server *s)
{
    return s ? s->dir : NULL;
}

const char *kvi_ts_name(const kvi_ts_server *s)
{
    return s ? s->name : NULL;
}

const char *kvi_ts_log_path(const kvi_ts_server *s)
{
    return s ? s->log_path : NULL;
}

pid_t kvi_ts_pid(const kvi_ts_server *s)
{
    return s ? s->pid : 0;
}

int kvi_ts_running(kvi_ts_server *s)
{
    return s ? check_alive(s, NULL) : 0;
}

static void reap_blocking(kvi_ts_server *s)
{
    while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    live_remove(s->slot);
    s->slot = -1;
    s->pid = 0;
}

kvi_ts_result kvi_ts_stop(kvi_ts_server *s)
{
    if (s == NULL || !check_alive(s, NULL))
        return KVI_TS_OK;
    kill(s->pid, SIGTERM);
    uint64_t deadline = ((uint64_t)kvi_test_mono_ms()) + STOP_GRACE_MS;
    while (((uint64_t)kvi_test_mono_ms()) < deadline) {
        if (!check_alive(s, NULL))
            return KVI_TS_OK;
        kvi_test_sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    reap_blocking(s);
    return set_error(KVI_TS_FAILED, "%s ignored SIGTERM for %u ms; killed", s->name, STOP_GRACE_MS);
}

kvi_ts_result kvi_ts_kill(kvi_ts_server *s)
{
    if (s == NULL || !check_alive(s, NULL))
        return KVI_TS_OK;
    kill(s->pid, SIGKILL);
    reap_blocking(s);
    return KVI_TS_OK;
}

kvi_ts_result kvi_ts_restart(kvi_ts_server *s)
{
    if (s == NULL)
        return set_error(KVI_TS_FAILED, "kvi_ts_restart: NULL server");
    kvi_ts_stop(s);
    return spawn(s);
}

void kvi_ts_print_log(const kvi_ts_server *s, FILE *f, size_t max_bytes)
{
    if (s == NULL || f == NULL || max_bytes == 0)
        return;
    char *buf = malloc(max_bytes + 1);
    if (buf == NULL)
        return;
    log_tail(s, buf, max_bytes + 1);
    fprintf(f, "---- %s log (%s) ----\n%s\n----\n", s->name, s->log_path, buf);
    free(buf);
}

void kvi_ts_free(kvi_ts_server *s)
{
    if (s == NULL)
        return;
    kvi_ts_stop(s);
    pthread_mutex_lock(&live_lock);
    for (kvi_ts_server **pp = &all_servers; *pp != NULL; pp = &(*pp)->next_all) {
        if (*pp == s) {
            *pp = s->next_all;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
    if (s->own_dir)
        kvi_ts_remove_tree(s->dir);
    server_free_fields(s);
}
