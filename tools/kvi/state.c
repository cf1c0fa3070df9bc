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
 *                    nothing).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
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
    while (flock(st->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            snprintf(err, errlen, "cannot lock %s: %s", lock, strerror(errno));
            kvi__cli_state_close(st);
            return KVI_E_LOCKED;
        }
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
