/*
 * state.c -- the default "local" store of the kvi command, kept between
 * runs in the user's state directory ($XDG_STATE_HOME/kvi, by default
 * ~/.local/state/kvi, created with mode 0700):
 *
 *   local.kvis       the local engine's snapshot: the store is defined as
 *                    local://?file=<dir>/local.kvis, so persistence is the
 *                    engine's (loaded on open, written atomically on close);
 *   local.kvis.lock  the engine's lock against a second writer, which fails
 *                    at once when taken;
 *   cli.lock         flock()ed exclusively, waiting, for the whole run of a
 *                    command, so kvi processes that use the default store
 *                    take turns instead of failing with KVI_E_LOCKED (a
 *                    counter incremented by two processes at once loses
 *                    nothing).  A command kept waiting (by a `kvi shell`,
 *                    which holds it for its whole session) says who holds it
 *                    (pid from /proc/locks, its command word); the wait ends
 *                    after KVI_LOCK_TIMEOUT seconds (default 30).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

struct kvi__cli_state {
    int lock_fd;
};

/* ---------------------------------------------------------------------- */
/* Directory and lock                                                      */

static int mkdir_p(char *path, char *err, size_t errlen)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
            *p = saved;
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            return 0;
    }
}

int kvi__cli_state_dir(char *buf, size_t buflen, int create, char *err, size_t errlen)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    int n;
    /* The XDG spec ignores relative paths. */
    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(buf, buflen, "%s/kvi", xdg);
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] != '/') {
            struct passwd *pw = getpwuid(getuid());
            home = pw != NULL ? pw->pw_dir : NULL;
        }
        if (home == NULL || home[0] != '/') {
            snprintf(err, errlen, "no state directory: set XDG_STATE_HOME or HOME");
            return -1;
        }
        n = snprintf(buf, buflen, "%s/.local/state/kvi", home);
    }
    if (n < 0 || (size_t)n >= buflen) {
        snprintf(err, errlen, "state directory path too long");
        return -1;
    }
    if (create && mkdir_p(buf, err, errlen) != 0)
        return -1;
    return 0;
}

/* Writes path percent-encoded (all but unreserved characters and '/'). */
static int url_encode_path(const char *path, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~' ||
                    *p == '/';
        if (o + 4 > outlen)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

/* How long a command waits for the lock by default (KVI_LOCK_TIMEOUT). */
#define LOCK_TIMEOUT_S 30
/* A wait shorter than this is not worth a message (two kvi commands taking
 * turns). */
#define LOCK_QUIET_MS 2000
/* How often the wait looks at the clock and at signals. */
#define LOCK_TICK_MS 100

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* KVI_LOCK_TIMEOUT: whole seconds 0..86400 (unset or empty: the
 * default); -1 for anything else. */
static long lock_timeout_s(void)
{
    const char *v = getenv("KVI_LOCK_TIMEOUT");
    if (v == NULL || *v == '\0')
        return LOCK_TIMEOUT_S;
    if (v[0] < '0' || v[0] > '9')
        return -1;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n > 86400)
        return -1;
    return n;
}

/* The command word of kvi process pid (its first argument that is not an
 * option), when it looks like one; only that word is shown: the other
 * arguments may be values that are secrets. */
static void holder_command(long pid, char *buf, size_t len)
{
    char path[64], args[4096];
    buf[0] = '\0';
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(args, 1, sizeof args - 1, f);
    fclose(f);
    args[n] = '\0';
    for (size_t i = strlen(args) + 1; i < n; i += strlen(args + i) + 1) {
        const char *w = args + i;
        if (w[0] == '-')
            continue;
        size_t wl = strlen(w);
        if (wl == 0 || wl >= len || wl > 24 || strspn(w, "abcdefghijklmnopqrstuvwxyz_-") != wl)
            return;
        memcpy(buf, w, wl + 1);
        return;
    }
}

/* Who holds the flock() on fd, from /proc/locks: "kvi shell (pid 123)",
 * or "another kvi process" when that cannot be told. */
static void lock_holder(int fd, char *buf, size_t len)
{
    struct stat sb;
    snprintf(buf, len, "another kvi process");
    if (fstat(fd, &sb) != 0)
        return;
    FILE *f = fopen("/proc/locks", "r");
    if (f == NULL)
        return;
    char line[256];
    long pid = 0;
    while (pid == 0 && fgets(line, sizeof line, f) != NULL) {
        char kind[16];
        long p;
        unsigned maj, min;
        unsigned long ino;
        if (sscanf(line, "%*s %15s %*s %*s %ld %x:%x:%lu", kind, &p, &maj, &min, &ino) == 5 &&
            strcmp(kind, "FLOCK") == 0 && ino == (unsigned long)sb.st_ino && p > 0 &&
            p != (long)getpid())
            pid = p;
    }
    fclose(f);
    if (pid == 0)
        return;
    char cmd[32];
    holder_command(pid, cmd, sizeof cmd);
    snprintf(buf, len, "kvi %s%s(pid %ld)", cmd, cmd[0] ? " " : "", pid);
}

/*
 * Takes the exclusive lock on fd (the file `path`).  When another kvi holds
 * it, waits, saying after LOCK_QUIET_MS (2 s) who holds it and how long it will
 * wait; gives up with KVI_E_LOCKED after KVI_LOCK_TIMEOUT seconds (default
 * 30) or when SIGINT/SIGTERM/SIGHUP comes.
 */
static void lock_tick(int sig)
{
    (void)sig;
}

static kvi_status take_lock(int fd, const char *path, char *err, size_t errlen)
{
    long limit_s = lock_timeout_s();
    if (limit_s < 0) {
        snprintf(err, errlen, "KVI_LOCK_TIMEOUT must be a whole number of seconds, 0 to 86400");
        return KVI_E_INVALID;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return KVI_OK;
    if (errno != EWOULDBLOCK) {
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        return KVI_E_LOCKED;
    }
    /* A blocking flock() (the kernel hands the lock over in turn, which
     * polling would not), interrupted every LOCK_TICK_MS by SIGALRM to look
     * at the time and at the signals noted. */
    int64_t start = now_ms();
    int told = 0;
    char holder[96] = "";
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = lock_tick; /* no SA_RESTART: flock() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, &old_sa);
    struct itimerval tick = {{0, LOCK_TICK_MS * 1000}, {0, LOCK_TICK_MS * 1000}}, old_tick;
    setitimer(ITIMER_REAL, &tick, &old_tick);
    kvi_status rc = KVI_OK;
    for (;;) {
        int64_t waited = now_ms() - start;
        if (!told && waited >= LOCK_QUIET_MS) {
            lock_holder(fd, holder, sizeof holder);
            fprintf(stderr,
                    "kvi: waiting for the default store: %s holds %s; giving up after %ld s "
                    "(KVI_LOCK_TIMEOUT)\n",
                    holder, path, limit_s);
            told = 1;
        }
        int sig = kvi__cli_signal();
        if (waited >= limit_s * 1000 || sig != 0) {
            lock_holder(fd, holder, sizeof holder);
            if (sig != 0)
                snprintf(err, errlen,
                         "the default store is in use by %s; interrupted while waiting", holder);
            else
                snprintf(err, errlen,
                         "the default store is in use by %s; gave up after %ld s "
                         "(KVI_LOCK_TIMEOUT sets the wait)",
                         holder, limit_s);
            rc = KVI_E_LOCKED;
            break;
        }
        if (flock(fd, LOCK_EX) == 0)
            break;
        if (errno != EINTR) {
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
            rc = KVI_E_LOCKED;
            break;
        }
    }
    setitimer(ITIMER_REAL, &old_tick, NULL);
    sigaction(SIGALRM, &old_sa, NULL);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Open and close                                                          */

kvi_status kvi__cli_state_open(kvi *k, int interactive, struct kvi__cli_state **out, char *err,
                               size_t errlen)
{
    char dir[PATH_MAX], file[PATH_MAX + 32], lock[PATH_MAX + 32];
    char url[3 * PATH_MAX + 160];
    *out = NULL;
    if (kvi__cli_state_dir(dir, sizeof dir, 1, err, errlen) != 0)
        return KVI_E_IO;
    snprintf(file, sizeof file, "%s/local.kvis", dir);
    snprintf(lock, sizeof lock, "%s/cli.lock", dir);

    struct kvi__cli_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        snprintf(err, errlen, "opening the local store");
        return KVI_E_NOMEM;
    }
    st->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", lock, strerror(errno));
        free(st);
        return KVI_E_IO;
    }
    kvi_status lrc = take_lock(st->lock_fd, lock, err, errlen);
    if (lrc != KVI_OK) {
        kvi__cli_state_close(st);
        return lrc;
    }

    strcpy(url, "local://?file=");
    if (url_encode_path(file, url + strlen(url), sizeof url - strlen(url) - 16) != 0) {
        snprintf(err, errlen, "state file path too long");
        kvi__cli_state_close(st);
        return KVI_E_INVALID;
    }
    /* The engine writes its snapshot on close; a terminal session that is
     * interrupted should lose at most the last second. */
    if (interactive)
        strcat(url, "&save_s=1");
    kvi_status rc = kvi_add_url(k, url);
    if (rc != KVI_OK) {
        snprintf(err, errlen, "%s%s", kvi_errmsg(k),
                 rc == KVI_E_CORRUPT ? " (move the file away to start with an empty store)" : "");
        kvi__cli_state_close(st);
        return rc;
    }
    *out = st;
    return KVI_OK;
}

void kvi__cli_state_close(struct kvi__cli_state *st)
{
    if (st == NULL)
        return;
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    free(st);
}
