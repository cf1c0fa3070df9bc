/*
 * state.c -- the default "local" store of the kvi command, kept between
 * runs in the user's state directory ($XDG_STATE_HOME/kvi, by default
 * ~/.local/state/kvi):
 *
 *   cli.lock         flock()ed exclusively for the whole run of a command,
 *                    so kvi processes that use the default store take turns
 *                    (a counter incremented by two processes at once loses
 *                    nothing);
 *   local.kvis       the local engine's own snapshot (local://?file=...);
 *   local.kvis.cli   the CLI's stop-gap file, used while the local engine
 *                    does not know the file= option yet.
 *
 * Persistence is a URL option of the local engine.  Everything below marked
 * FALLBACK only exists until local://?file= works and can then be deleted
 * (keep the one-time import of an old local.kvis.cli, or drop it too).  The
 * fallback uses only the public API: kvi_keys + kvi_fetch + kvi_ttl to save,
 * kvi_store to load.
 *
 * FALLBACK file format (all integers little-endian):
 *   "KVICLI01"
 *   per entry: u32 key_len (>= 1), u64 value_len, i64 expire_at_ms (0: never),
 *              key bytes, value bytes
 *   end:       u32 0, u64 number of entries
 * Written to a temporary file, fsync()ed and renamed over the old one.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define STATE_MAGIC "KVICLI01"
#define NOT_FROZEN INT64_MIN

/* Absolute expiry of an entry as loaded from the fallback file. */
struct loaded_ttl {
    char *key;
    size_t len;
    int64_t expire_at_ms;
};

struct kvi__cli_state {
    int lock_fd;
    char dir[PATH_MAX];
    char engine_file[PATH_MAX + 32];
    char cli_file[PATH_MAX + 32];
    int opened;   /* kvi__cli_state_open succeeded */
    int fallback; /* the CLI loads and saves cli_file itself */
    int migrate;  /* cli_file was imported into the engine's file */
    int has_baseline;
    kvi_stats baseline;
    struct loaded_ttl *ttls; /* sorted by key */
    size_t nttls;
    _Atomic int64_t frozen_ms; /* clock value while loading, else NOT_FROZEN */
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

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The context's clock: real time, except while an entry is loaded (see
 * load_entry). */
static int64_t state_clock(void *ud)
{
    struct kvi__cli_state *st = ud;
    int64_t f = atomic_load(&st->frozen_ms);
    return f != NOT_FROZEN ? f : real_ms();
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
/* FALLBACK: loading                                                       */

static int read_exact(FILE *f, void *buf, size_t n)
{
    return fread(buf, 1, n, f) == n ? 0 : -1;
}

static int read_u32(FILE *f, uint32_t *v)
{
    unsigned char b[4];
    if (read_exact(f, b, 4) != 0)
        return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int read_u64(FILE *f, uint64_t *v)
{
    unsigned char b[8];
    if (read_exact(f, b, 8) != 0)
        return -1;
    *v = 0;
    for (int i = 7; i >= 0; i--)
        *v = (*v << 8) | b[i];
    return 0;
}

static int ttl_cmp(const void *a, const void *b)
{
    const struct loaded_ttl *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static void free_ttls(struct kvi__cli_state *st)
{
    for (size_t i = 0; i < st->nttls; i++)
        free(st->ttls[i].key);
    free(st->ttls);
    st->ttls = NULL;
    st->nttls = 0;
}

/* Stores one entry so that it expires at expire_at_ms exactly: expiry is
 * given in whole seconds, so the clock is held at expire_at - s*1000 while
 * the engine computes it. */
static kvi_status load_entry(struct kvi__cli_state *st, kvi *k, const char *key, size_t klen,
                             const char *val, size_t vlen, int64_t expire_at_ms, int *skipped)
{
    *skipped = 0;
    if (expire_at_ms == 0)
        return kvi_store(k, "local", key, klen, val, vlen, 0);
    int64_t left_ms = expire_at_ms - real_ms();
    if (left_ms <= 0) {
        *skipped = 1;
        return KVI_OK;
    }
    int64_t s = (left_ms + 999) / 1000;
    atomic_store(&st->frozen_ms, expire_at_ms - s * 1000);
    kvi_status rc = kvi_store(k, "local", key, klen, val, vlen, s);
    atomic_store(&st->frozen_ms, NOT_FROZEN);
    return rc;
}

static kvi_status load_file(struct kvi__cli_state *st, kvi *k, char *err, size_t errlen)
{
    FILE *f = fopen(st->cli_file, "rb");
    if (f == NULL) {
        if (errno == ENOENT)
            return KVI_OK;
        snprintf(err, errlen, "cannot open %s: %s", st->cli_file, strerror(errno));
        return KVI_E_IO;
    }
    kvi_status rc = KVI_OK;
    char magic[8];
    char *key = NULL, *val = NULL;
    size_t ttl_cap = 0;
    uint64_t count = 0;
    const char *why = NULL;
    if (read_exact(f, magic, 8) != 0 || memcmp(magic, STATE_MAGIC, 8) != 0) {
        why = "not a kvi state file";
        goto corrupt;
    }
    for (;;) {
        uint32_t klen;
        uint64_t vlen, exp;
        if (read_u32(f, &klen) != 0) {
            why = "truncated";
            goto corrupt;
        }
        if (klen == 0) {
            uint64_t n;
            if (read_u64(f, &n) != 0 || n != count || fgetc(f) != EOF) {
                why = "bad end record";
                goto corrupt;
            }
            break;
        }
        if (read_u64(f, &vlen) != 0 || read_u64(f, &exp) != 0) {
            why = "truncated";
            goto corrupt;
        }
        if (klen > KVI_MAX_KEY_LEN || vlen > KVI_MAX_VALUE_LEN || (int64_t)exp < 0) {
            why = "bad entry header";
            goto corrupt;
        }
        key = malloc(klen);
        val = malloc(vlen + 1);
        if (key == NULL || val == NULL) {
            snprintf(err, errlen, "loading %s", st->cli_file);
            rc = KVI_E_NOMEM;
            goto out;
        }
        if (read_exact(f, key, klen) != 0 || read_exact(f, val, vlen) != 0) {
            why = "truncated";
            goto corrupt;
        }
        int skipped;
        rc = load_entry(st, k, key, klen, val, vlen, (int64_t)exp, &skipped);
        if (rc != KVI_OK) {
            snprintf(err, errlen, "loading %s: %s", st->cli_file, kvi_errmsg(k));
            goto out;
        }
        count++;
        free(val);
        val = NULL;
        if (exp != 0 && !skipped) {
            if (st->nttls == ttl_cap) {
                size_t ncap = ttl_cap ? ttl_cap * 2 : 16;
                struct loaded_ttl *nt = realloc(st->ttls, ncap * sizeof *nt);
                if (nt == NULL) {
                    snprintf(err, errlen, "loading %s", st->cli_file);
                    rc = KVI_E_NOMEM;
                    goto out;
                }
                st->ttls = nt;
                ttl_cap = ncap;
            }
            st->ttls[st->nttls].key = key;
            st->ttls[st->nttls].len = klen;
            st->ttls[st->nttls].expire_at_ms = (int64_t)exp;
            st->nttls++;
            key = NULL;
        }
        free(key);
        key = NULL;
    }
    qsort(st->ttls, st->nttls, sizeof *st->ttls, ttl_cmp);
    goto out;
corrupt:
    snprintf(err, errlen, "%s: %s (move it away to start afresh)", st->cli_file, why);
    rc = KVI_E_CORRUPT;
out:
    free(key);
    free(val);
    fclose(f);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* FALLBACK: saving                                                        */

static void put_u32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    fwrite(b, 1, 4, f);
}

static void put_u64(FILE *f, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    fwrite(b, 1, 8, f);
}

/* Absolute expiry of a key with ttl_s seconds left: the loaded one when the
 * key still has the lifetime it was loaded with, so repeated runs do not
 * stretch it by the rounding to whole seconds. */
static int64_t expire_at(const struct kvi__cli_state *st, kvi *k, const char *key, size_t len,
                         int64_t ttl_s)
{
    int64_t now = kvi_now_ms(k);
    struct loaded_ttl probe = {(char *)key, len, 0};
    const struct loaded_ttl *t =
        st->nttls ? bsearch(&probe, st->ttls, st->nttls, sizeof *st->ttls, ttl_cmp) : NULL;
    if (t != NULL && t->expire_at_ms > now && (t->expire_at_ms - now + 999) / 1000 == ttl_s)
        return t->expire_at_ms;
    return now + ttl_s * 1000;
}

static kvi_status write_entries(struct kvi__cli_state *st, kvi *k, FILE *f, char *err,
                                size_t errlen)
{
    kvi_reply *r = NULL;
    kvi_status rc = kvi_keys(k, "local", "*", 1, &r);
    if (rc != KVI_OK) {
        snprintf(err, errlen, "saving the local store: %s", kvi_errmsg(k));
        return rc;
    }
    uint64_t count = 0;
    fwrite(STATE_MAGIC, 1, 8, f);
    for (size_t i = 0; i < kvi_reply_count(r); i++) {
        size_t klen;
        const char *key = kvi_reply_str(kvi_reply_element(r, i), &klen);
        kvi_value v = KVI_VALUE_INIT;
        int64_t ttl_s = -1;
        if (key == NULL)
            continue;
        rc = kvi_fetch(k, "local", key, klen, &v);
        if (rc == KVI_OK)
            rc = kvi_ttl(k, "local", key, klen, &ttl_s);
        if (rc == KVI_NOT_FOUND) {
            /* Expired between listing and reading. */
            kvi_value_free(&v);
            continue;
        }
        if (rc != KVI_OK) {
            snprintf(err, errlen, "saving the local store: %s", kvi_errmsg(k));
            kvi_value_free(&v);
            kvi_reply_free(r);
            return rc;
        }
        put_u32(f, (uint32_t)klen);
        put_u64(f, v.len);
        put_u64(f, ttl_s < 0 ? 0 : (uint64_t)expire_at(st, k, key, klen, ttl_s));
        fwrite(key, 1, klen, f);
        fwrite(v.data, 1, v.len, f);
        kvi_value_free(&v);
        count++;
    }
    put_u32(f, 0);
    put_u64(f, count);
    kvi_reply_free(r);
    return KVI_OK;
}

kvi_status kvi__cli_state_save(struct kvi__cli_state *st, kvi *k, char *err, size_t errlen)
{
    if (st == NULL || !st->opened || !st->fallback)
        return KVI_OK;
    char tmp[PATH_MAX + 48];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", st->cli_file);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return KVI_E_IO;
    }
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return KVI_E_IO;
    }
    kvi_status rc = write_entries(st, k, f, err, errlen);
    if (rc != KVI_OK) {
        fclose(f);
        unlink(tmp);
        return rc;
    }
    if (fflush(f) != 0 || ferror(f) || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        return KVI_E_IO;
    }
    if (fclose(f) != 0 || rename(tmp, st->cli_file) != 0) {
        snprintf(err, errlen, "cannot replace %s: %s", st->cli_file, strerror(errno));
        unlink(tmp);
        return KVI_E_IO;
    }
    /* The rename itself must survive a crash too. */
    int dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KVI_OK;
}

/* ---------------------------------------------------------------------- */
/* Open and close                                                          */

kvi_status kvi__cli_state_open(kvi *k, struct kvi__cli_state **out, char *err, size_t errlen)
{
    *out = NULL;
    struct kvi__cli_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        snprintf(err, errlen, "opening the local store");
        return KVI_E_NOMEM;
    }
    st->lock_fd = -1;
    atomic_store(&st->frozen_ms, NOT_FROZEN);
    *out = st;
    kvi_status rc = KVI_E_IO;
    if (kvi__cli_state_dir(st->dir, sizeof st->dir, 1, err, errlen) != 0)
        goto fail;
    snprintf(st->engine_file, sizeof st->engine_file, "%s/local.kvis", st->dir);
    snprintf(st->cli_file, sizeof st->cli_file, "%s/local.kvis.cli", st->dir);

    char lock[PATH_MAX + 32];
    snprintf(lock, sizeof lock, "%s/cli.lock", st->dir);
    st->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", lock, strerror(errno));
        goto fail;
    }
    while (flock(st->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            snprintf(err, errlen, "cannot lock %s: %s", lock, strerror(errno));
            rc = KVI_E_LOCKED;
            goto fail;
        }
    }

    kvi_set_clock(k, state_clock, st);
    char url[3 * PATH_MAX + 160];
    strcpy(url, "local://?file=");
    if (url_encode_path(st->engine_file, url + strlen(url), sizeof url - strlen(url)) != 0) {
        snprintf(err, errlen, "state file path too long");
        rc = KVI_E_INVALID;
        goto fail;
    }
    struct stat sb;
    int engine_file_existed = stat(st->engine_file, &sb) == 0;
    rc = kvi_add_url(k, url);
    if (rc == KVI_E_INVALID) {
        /* FALLBACK: this local engine has no file= option yet. */
        rc = kvi_add_url(k, "local://");
        if (rc != KVI_OK) {
            snprintf(err, errlen, "defining local://: %s", kvi_errmsg(k));
            goto fail;
        }
        st->fallback = 1;
        rc = load_file(st, k, err, errlen);
    } else if (rc == KVI_OK) {
        if (!engine_file_existed && stat(st->cli_file, &sb) == 0) {
            rc = load_file(st, k, err, errlen);
            st->migrate = rc == KVI_OK;
        }
    } else {
        snprintf(err, errlen, "opening %s: %s", st->engine_file, kvi_errmsg(k));
    }
    if (rc != KVI_OK)
        goto fail;
    if (st->fallback || st->migrate)
        st->has_baseline = kvi_stats_get(k, "local", &st->baseline) == KVI_OK;
    st->opened = 1;
    return KVI_OK;
fail:
    /* st stays with the caller: the context's clock points at it. */
    if (st->lock_fd >= 0) {
        close(st->lock_fd);
        st->lock_fd = -1;
    }
    return rc;
}

const kvi_stats *kvi__cli_state_baseline(const struct kvi__cli_state *st)
{
    return st != NULL && st->has_baseline ? &st->baseline : NULL;
}

void kvi__cli_state_close(struct kvi__cli_state *st)
{
    if (st == NULL)
        return;
    struct stat sb;
    /* The old file is dropped only once the engine has written its own. */
    if (st->migrate && stat(st->engine_file, &sb) == 0)
        unlink(st->cli_file);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    free_ttls(st);
    free(st);
}
