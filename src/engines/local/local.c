/*
 * local.c -- the embedded "local" engine: an in-process key-value store
 * (table.c) behind the struct kvi_engine slots.  Every engine id
 * (local://, local:sessions://) is its own connection and so its own table.
 */
#include "engines/local/local.h"
#include "engines/local/shm.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAVE_S (366 * 86400)

struct local_conn {
    kvi__tab tab; /* the table's operations: on lt or on sh */
    kvi__lt *lt;  /* the in-process table, or */
    kvi__sh *sh;  /* the shared one (its life: open, leave, close) */
    kvi_conn *c;
    int shm_created; /* this process made the segment (and so loads file=) */
    int readonly;    /* shm_readonly=yes: a private copy; writes are refused */
    /* Persistence (file=): all zero without it. */
    char *path;
    int lock_fd; /* descriptor of PATH.lock + 1; 0 = none (state starts zeroed) */
    int loaded;  /* the snapshot was read: close may write it */
    pid_t owner; /* process that opened it: a forked child never saves */
    uint64_t saved_changes;
    int64_t save_s;
    int saver_running;
    int stop;
    pthread_t saver;
    pthread_mutex_t save_mu;
    pthread_cond_t save_cv;
};

/* The URL options (docs/engines/local.md), parsed by the core. */
struct local_options {
    uint64_t max_memory;
    int evict; /* index in evict_words */
    char *file;
    int64_t save_s;
    int on_corrupt; /* index in corrupt_words */
    char *shm;      /* segment name, NULL = in-process */
    char *shm_mode; /* octal text */
    int shm_unlink;
    int shm_create;
    int shm_readonly;
};

static const char *const evict_words[] = {"none", "lru", NULL};
static const char *const corrupt_words[] = {"fail", "empty", NULL};

static const kvi_option local_options[] = {
    {"max_memory", KVI_OPT_SIZE, "0", 0, INT64_MAX, NULL,
     offsetof(struct local_options, max_memory), "memory cap of the collection (0 = none)"},
    {"evict", KVI_OPT_ENUM, "none", 0, 0, evict_words, offsetof(struct local_options, evict),
     "at the cap: none answers STORE_FULL, lru evicts cold keys"},
    {"file", KVI_OPT_PATH, NULL, 0, 0, NULL, offsetof(struct local_options, file),
     "snapshot file, loaded on open and written on close"},
    {"save_s", KVI_OPT_INT, "0", 0, MAX_SAVE_S, NULL, offsetof(struct local_options, save_s),
     "also save every N seconds when changed (0 = only on close); needs file"},
    {"on_corrupt", KVI_OPT_ENUM, "fail", 0, 0, corrupt_words,
     offsetof(struct local_options, on_corrupt),
     "a corrupt snapshot: fail, or empty (start empty, keep it as FILE.corrupt)"},
    {"shm", KVI_OPT_STRING, NULL, 0, 0, NULL, offsetof(struct local_options, shm),
     "share the collection through the POSIX shm segment /dev/shm/kvi.NAME"},
    {"shm_mode", KVI_OPT_STRING, NULL, 0, 0, NULL, offsetof(struct local_options, shm_mode),
     "with shm: permission bits of a new segment, octal (0600); an existing wider one is refused"},
    {"shm_unlink", KVI_OPT_BOOL, "no", 0, 0, NULL, offsetof(struct local_options, shm_unlink),
     "with shm: remove the segment name when this connection closes"},
    {"shm_create", KVI_OPT_BOOL, "yes", 0, 0, NULL, offsetof(struct local_options, shm_create),
     "with shm: create the segment when it does not exist (no: only attach)"},
    {"shm_readonly", KVI_OPT_BOOL, "no", 0, 0, NULL, offsetof(struct local_options, shm_readonly),
     "with shm: look at a private copy of an existing segment of any owner; writes refused"},
    KVI_OPTION_END,
};

static const kvi__tab *table_of(kvi_conn *c)
{
    return &((struct local_conn *)kvi_conn_priv(c))->tab;
}

/* The snapshot lock of a shared collection: its processes load and save
 * in turn, each holding it a moment; waits up to 2 s.  The descriptor,
 * -2 (still held by another) or -1 (err says why). */
static int shared_snapshot_lock(const char *path, char *err, size_t err_len)
{
    int fd = -2;
    for (int i = 0; i < 200 && fd == -2; i++) {
        fd = kvi__local_snapshot_lock(path, err, err_len);
        if (fd == -2)
            usleep(10000);
    }
    return fd;
}

/* Writes the snapshot when the table changed since the last one, or
 * always (force: the last process of a shared collection, whose table
 * others changed too). */
static kvi_status local_save(struct local_conn *lc, int force, char *err, size_t err_len)
{
    uint64_t changes = lc->tab.ops->changes(lc->tab.self);
    if (changes == lc->saved_changes && !force)
        return KVI_OK;
    kvi_status st;
    if (lc->sh) {
        /* Several processes may save the same segment: one at a time. */
        int fd = shared_snapshot_lock(lc->path, err, err_len);
        if (fd < 0)
            return fd == -2 ? KVI_E_LOCKED : KVI_E_IO;
        st = kvi__local_snapshot_save_tab(lc->tab, kvi_conn_context(lc->c), lc->path, err, err_len);
        close(fd);
    } else {
        st = kvi__local_snapshot_save_tab(lc->tab, kvi_conn_context(lc->c), lc->path, err, err_len);
    }
    if (st == KVI_OK)
        lc->saved_changes = changes;
    return st;
}

static void *saver_main(void *arg)
{
    struct local_conn *lc = arg;
    pthread_mutex_lock(&lc->save_mu);
    while (!lc->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)lc->save_s;
        while (!lc->stop && pthread_cond_timedwait(&lc->save_cv, &lc->save_mu, &until) == 0) {
        }
        if (lc->stop)
            break;
        pthread_mutex_unlock(&lc->save_mu);
        char err[512];
        if (local_save(lc, 0, err, sizeof(err)) != KVI_OK)
            kvi_engine_log(lc->c, KVI_LOG_ERROR, "periodic save failed: %s", err);
        pthread_mutex_lock(&lc->save_mu);
    }
    pthread_mutex_unlock(&lc->save_mu);
    return NULL;
}

static kvi_status start_saver(kvi_conn *c, struct local_conn *lc)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lc->save_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&lc->save_mu, NULL);
    if (pthread_create(&lc->saver, NULL, saver_main, lc) != 0) {
        pthread_cond_destroy(&lc->save_cv);
        pthread_mutex_destroy(&lc->save_mu);
        return kvi_engine_error(c, KVI_E_NOMEM, "cannot start the snapshot thread");
    }
    lc->saver_running = 1;
    return KVI_OK;
}

static void stop_saver(struct local_conn *lc)
{
    if (!lc->saver_running)
        return;
    pthread_mutex_lock(&lc->save_mu);
    lc->stop = 1;
    pthread_cond_signal(&lc->save_cv);
    pthread_mutex_unlock(&lc->save_mu);
    pthread_join(lc->saver, NULL);
    pthread_cond_destroy(&lc->save_cv);
    pthread_mutex_destroy(&lc->save_mu);
    lc->saver_running = 0;
}

/* Takes the lock and reads the snapshot of lc->path into the table.  A
 * shared collection holds the lock only while it reads (its processes
 * load and save in turn); of its processes with file=, the first to find
 * the segment without its snapshot loaded reads it (whoever made the
 * segment: an operator's look without file= may have), and the segment
 * remembers it. */
static kvi_status open_file(kvi_conn *c, struct local_conn *lc, const kvi__lt_config *cfg,
                            int corrupt_empty)
{
    char err[512];
    kvi *k = kvi_conn_context(c);
    int fd = lc->sh ? shared_snapshot_lock(lc->path, err, sizeof(err))
                    : kvi__local_snapshot_lock(lc->path, err, sizeof(err));
    if (fd < 0)
        return kvi_engine_error(c, fd == -2 ? KVI_E_LOCKED : KVI_E_IO, "%s", err);
    lc->lock_fd = fd + 1;
    int missing = 0;
    kvi_status st = KVI_OK;
    int load = !lc->sh || !kvi__sh_snapshot_loaded(lc->sh);
    if (load)
        st = kvi__local_snapshot_read_tab(lc->tab, k, lc->path, &missing, err, sizeof(err));
    if (st == KVI_E_CORRUPT && corrupt_empty) {
        /* Keep the bad file for inspection and start empty, as asked. */
        char aside[4200];
        snprintf(aside, sizeof(aside), "%s.corrupt", lc->path);
        int moved = rename(lc->path, aside) == 0;
        kvi_engine_log(c, KVI_LOG_WARN, "%s; starting empty (on_corrupt=empty)%s%s", err,
                       moved ? ", bad file kept as " : "", moved ? aside : "");
        if (lc->sh) {
            uint64_t n = 0;
            kvi__sh_remove_chunk(lc->sh, "*", 1, &n);
        } else {
            kvi__lt_free(lc->lt);
            lc->lt = NULL;
            st = kvi__lt_new(k, cfg, &lc->lt);
            lc->tab.self = lc->lt;
            if (st != KVI_OK)
                return kvi_engine_error(c, st, "cannot allocate the table");
        }
        st = KVI_OK;
    } else if (st != KVI_OK) {
        return kvi_engine_error(c, st, "%s%s", err,
                                st == KVI_E_CORRUPT ? " (add on_corrupt=empty to start empty)"
                                                    : "");
    }
    if (lc->sh) {
        if (load)
            kvi__sh_set_snapshot_loaded(lc->sh);
        close(fd);
        lc->lock_fd = 0;
    }
    lc->loaded = 1;
    lc->owner = getpid();
    lc->saved_changes = missing ? UINT64_MAX : lc->tab.ops->changes(lc->tab.self);
    return KVI_OK;
}

/* Options of a shared collection (shm=NAME); refuses those that make no
 * sense with or without it. */
static kvi_status parse_shm(kvi_conn *c, const kvi_url *url, const struct local_options *opt,
                            const kvi__lt_config *cfg, kvi__sh_config *sc)
{
    static const char *const shm_only[] = {"shm_mode", "shm_unlink", "shm_create", "shm_readonly"};
    if (!opt->shm) {
        for (size_t i = 0; i < sizeof(shm_only) / sizeof(shm_only[0]); i++)
            if (kvi_url_option_get(url, shm_only[i]))
                return kvi_engine_error(c, KVI_E_INVALID, "%s needs shm=NAME", shm_only[i]);
        return KVI_OK;
    }
    sc->name = opt->shm;
    sc->attach_only = opt->shm_create == 0;
    sc->saves = opt->file != NULL;
    sc->readonly = opt->shm_readonly == 1;
    if (sc->readonly && (opt->file || opt->shm_unlink == 1 || opt->shm_mode))
        return kvi_engine_error(c, KVI_E_INVALID,
                                "shm_readonly=yes only looks: it takes no file=, shm_unlink or "
                                "shm_mode");
    sc->max_memory = cfg->max_memory;
    sc->evict = kvi_url_option_get(url, "evict") ? (int)cfg->evict : -1;
    sc->unlink_on_close = opt->shm_unlink == 1;
    const char *mm = kvi_url_option_get(url, "max_memory");
    if (mm && cfg->max_memory == 0)
        return kvi_engine_error(c, KVI_E_INVALID,
                                "max_memory=%s (unlimited) does not go with shm=: a shared "
                                "segment has a fixed size (default 128m)",
                                mm);
    if (opt->shm_mode) {
        const char *mode = opt->shm_mode;
        char *end;
        errno = 0;
        unsigned long m = strtoul(mode, &end, 8);
        if (errno || end == mode || *end || m > 0777u || (m & 0600u) != 0600u)
            return kvi_engine_error(c, KVI_E_INVALID,
                                    "bad shm_mode '%s' (octal, 0600..0777, the owner must "
                                    "read and write)",
                                    mode);
        sc->mode = (unsigned)m;
    }
    return KVI_OK;
}

static kvi_status local_open(kvi_conn *c, const kvi_url *url)
{
    struct local_conn *lc = kvi_conn_priv(c);
    kvi__lt_config cfg = {0, KVI__LT_EVICT_NONE};
    int corrupt_empty = 0;
    lc->c = c;

    if (url->nhosts)
        return kvi_engine_error(c, KVI_E_INVALID,
                                "the local engine takes no host (write local:// or "
                                "local:GROUP://)");
    if (url->database)
        return kvi_engine_error(c, KVI_E_INVALID, "the local engine takes no database ('/%s')",
                                url->database);
    if (url->user || url->has_password)
        return kvi_engine_error(c, KVI_E_INVALID, "the local engine takes no user or password");

    const struct local_options *opt = kvi_conn_options(c);
    cfg.max_memory = opt->max_memory;
    cfg.evict = opt->evict == 1 ? KVI__LT_EVICT_LRU : KVI__LT_EVICT_NONE;
    const char *file = opt->file;
    if (!file && kvi_url_option_get(url, "save_s"))
        return kvi_engine_error(c, KVI_E_INVALID, "save_s needs file=");
    if (!file && kvi_url_option_get(url, "on_corrupt"))
        return kvi_engine_error(c, KVI_E_INVALID, "on_corrupt needs file=");
    lc->save_s = opt->save_s;
    corrupt_empty = opt->on_corrupt == 1;
    kvi__sh_config sc = {.evict = -1};
    kvi_status st = parse_shm(c, url, opt, &cfg, &sc);
    if (st != KVI_OK)
        return st;

    if (sc.name) {
        char err[600];
        st = kvi__sh_open(kvi_conn_context(c), &sc, &lc->sh, &lc->shm_created, err, sizeof(err));
        if (st != KVI_OK)
            return kvi_engine_error(c, st, "%s", err);
        lc->readonly = sc.readonly;
        kvi_conn_set_caps(c, kvi_conn_caps(c) | KVI_CAP_SHARED);
    } else {
        st = kvi__lt_new(kvi_conn_context(c), &cfg, &lc->lt);
        if (st != KVI_OK)
            return kvi_engine_error(c, st, "cannot allocate the table");
    }
    lc->tab.ops = lc->sh ? &kvi__sh_ops : &kvi__lt_ops;
    lc->tab.self = lc->sh ? (void *)lc->sh : (void *)lc->lt;
    if (!file)
        return KVI_OK;
    lc->path = kvi_engine_strdup(c, file);
    if (!lc->path)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    st = open_file(c, lc, &cfg, corrupt_empty);
    if (st == KVI_OK && lc->save_s > 0)
        st = start_saver(c, lc);
    if (st == KVI_OK)
        kvi_conn_set_caps(c, kvi_conn_caps(c) | KVI_CAP_PERSISTENT);
    return st;
}

static void local_close(kvi_conn *c)
{
    struct local_conn *lc = kvi_conn_priv(c);
    if (lc->loaded && lc->owner != getpid()) {
        /* A forked child: the saver thread and the file belong to the
         * parent; the child's copy of the table is private and dropped
         * (a shared one stays, and the parent saves it). */
        lc->saver_running = 0;
        lc->loaded = 0;
    }
    stop_saver(lc);
    /* Of a shared collection, the last registered process with file= to
     * leave writes the file, whatever the others without it still do (the
     * others' changes are in the segment it saves). */
    int last = lc->sh ? kvi__sh_leave(lc->sh) : 1;
    if (lc->loaded && last && (lc->lt || lc->sh)) {
        char err[512];
        if (local_save(lc, lc->sh != NULL, err, sizeof(err)) != KVI_OK)
            kvi_engine_log(c, KVI_LOG_ERROR,
                           "final save failed, changes since the last save "
                           "are lost: %s",
                           err);
    }
    kvi__sh_close(lc->sh);
    lc->sh = NULL;
    if (lc->lock_fd > 0)
        close(lc->lock_fd - 1);
    lc->lock_fd = 0;
    kvi_engine_free(c, lc->path);
    lc->path = NULL;
    kvi__lt_free(lc->lt);
    lc->lt = NULL;
    lc->tab.self = NULL;
}

/* An error status an operation of a shared collection ends with is
 * counted in the segment (every process's errors, for kvi stats); the
 * operation itself was counted where it ran. */
static kvi_status count_error(kvi_conn *c, kvi_status st)
{
    kvi__sh *sh = ((struct local_conn *)kvi_conn_priv(c))->sh;
    if (sh && KVI_STATUS_IS_ERROR(st))
        kvi__sh_count_error(sh);
    return st;
}

/* An operation of a shared collection that takes no shard's lock: counted
 * in the segment as one (with its error). */
static kvi_status count_other(kvi_conn *c, kvi_status st)
{
    kvi__sh *sh = ((struct local_conn *)kvi_conn_priv(c))->sh;
    if (sh)
        kvi__sh_count_other(sh, KVI_STATUS_IS_ERROR(st));
    return st;
}

static kvi_status table_error(kvi_conn *c, kvi_status st)
{
    kvi__sh *sh = ((struct local_conn *)kvi_conn_priv(c))->sh;
    if (sh && KVI_STATUS_IS_ERROR(st))
        kvi__sh_count_error(sh); /* as count_error */
    switch (st) {
    case KVI_E_STORE_FULL:
        if (sh)
            return kvi_engine_error(c, st,
                                    "segment %s is full: no room for the entry in its shard "
                                    "(max_memory reached, or larger than a shard's arena)",
                                    kvi__sh_path(sh));
        return kvi_engine_error(c, st, "store is full (max_memory reached)");
    case KVI_E_CORRUPT: {
        const char *why = sh ? kvi__sh_fault_reason(sh) : NULL;
        return kvi_engine_error(c, st,
                                "segment %s is damaged: %s; refused, not followed (the segment "
                                "needs to be removed)",
                                sh ? kvi__sh_path(sh) : "?",
                                why ? why : "a shard lock cannot be recovered (damaged undo log)");
    }
    case KVI_E_NOMEM:
        return kvi_engine_error(c, st, "out of memory");
    default:
        return st;
    }
}

/* A write on a read-only look (shm_readonly=yes): refused. */
static int refuse_write(kvi_conn *c, kvi_status *st)
{
    if (!((struct local_conn *)kvi_conn_priv(c))->readonly)
        return 0;
    *st = count_other(c, kvi_engine_error(c, KVI_E_UNSUPPORTED,
                                          "this connection only looks at a copy of the segment "
                                          "(shm_readonly=yes): writes are refused"));
    return 1;
}

static kvi_status local_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                              size_t val_len, int64_t expire_s)
{
    const kvi__tab *t = table_of(c);
    kvi_status st;
    if (refuse_write(c, &st))
        return st;
    return table_error(c, t->ops->store(t->self, key, key_len, val, val_len, expire_s));
}

struct fetch_ud {
    kvi_conn *c;
    kvi_value *out;
};

static kvi_status fetch_copy(void *ud, const void *data, size_t len)
{
    struct fetch_ud *f = ud;
    char *buf = kvi_value_alloc(f->c, f->out, len);
    if (!buf)
        return KVI_E_NOMEM;
    if (len)
        memcpy(buf, data, len);
    return KVI_OK;
}

static kvi_status local_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    struct fetch_ud f = {c, out};
    const kvi__tab *t = table_of(c);
    kvi_status st = t->ops->fetch(t->self, key, key_len, fetch_copy, &f);
    /* The path of a hit or a miss does no more. */
    return st == KVI_OK || st == KVI_NOT_FOUND ? st : table_error(c, st);
}

static kvi_status local_remove(kvi_conn *c, const void *key, size_t key_len)
{
    const kvi__tab *t = table_of(c);
    kvi_status st;
    if (refuse_write(c, &st))
        return st;
    return table_error(c, t->ops->remove(t->self, key, key_len));
}

static kvi_status local_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                                 size_t val_len, int64_t expire_s)
{
    const kvi__tab *t = table_of(c);
    kvi_status st;
    if (refuse_write(c, &st))
        return st;
    return table_error(c, t->ops->store_nx(t->self, key, key_len, val, val_len, expire_s));
}

/* The messages of a counter update's errors. */
static kvi_status counter_error(kvi_conn *c, kvi_status st, int64_t delta)
{
    switch (st) {
    case KVI_E_NOT_A_COUNTER:
        count_error(c, st);
        return kvi_engine_error(c, st, "the value is not a decimal int64 counter");
    case KVI_E_OVERFLOW:
        count_error(c, st);
        return kvi_engine_error(c, st, "adding %lld would overflow int64", (long long)delta);
    default:
        return table_error(c, st);
    }
}

static kvi_status local_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                            int64_t expire_s, int64_t *new_value)
{
    const kvi__tab *t = table_of(c);
    kvi_status st;
    if (refuse_write(c, &st))
        return st;
    return counter_error(c, t->ops->add(t->self, key, key_len, delta, expire_s, new_value), delta);
}

static kvi_status local_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                    int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    const kvi__tab *t = table_of(c);
    kvi_status st;
    if (refuse_write(c, &st))
        return st;
    return counter_error(
        c, t->ops->add_bounded(t->self, key, key_len, delta, expire_s, min, max, value), delta);
}

static kvi_status local_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out)
{
    const kvi__tab *t = table_of(c);
    kvi_status st = t->ops->counter(t->self, key, key_len, out);
    if (st == KVI_E_NOT_A_COUNTER)
        return kvi_engine_error(c, count_error(c, st), "the value is not a decimal int64 counter");
    return table_error(c, st);
}

static kvi_status keys_append(void *ud, const void *key, size_t key_len, const void *val,
                              size_t val_len, int64_t expire_ms)
{
    kvi_reply *arr = ud;
    kvi_reply *s = kvi_reply_new_string(KVI_REPLY_STRING, key, key_len);
    if (!s)
        return KVI_E_NOMEM;
    kvi_status st = kvi_reply_append(arr, s);
    if (st != KVI_OK)
        kvi_reply_free(s);
    return st;
}

static kvi_status local_keys(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out)
{
    const kvi__tab *t = table_of(c);
    kvi_reply *arr = kvi_reply_new_array(0);
    if (!arr)
        return count_other(c, kvi_engine_error(c, KVI_E_NOMEM, "out of memory"));
    kvi_status st = t->ops->foreach (t->self, glob, glob_len, keys_append, arr);
    count_other(c, KVI_OK); /* the walk; an error is counted by table_error */
    if (st != KVI_OK) {
        kvi_reply_free(arr);
        return table_error(c, st);
    }
    *out = arr;
    return KVI_OK;
}

static kvi_status local_remove_chunk(kvi_conn *c, const char *glob, size_t glob_len,
                                     uint64_t *removed)
{
    const kvi__tab *t = table_of(c);
    kvi_status st;
    if (refuse_write(c, &st))
        return st;
    uint64_t n = 0;
    t->ops->remove_chunk(t->self, glob, glob_len, &n);
    if (removed)
        *removed = n;
    return count_other(c, KVI_OK);
}

static kvi_status local_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
{
    const kvi__tab *t = table_of(c);
    return table_error(c, t->ops->ttl(t->self, key, key_len, ttl_s));
}

static kvi_status local_ping(kvi_conn *c)
{
    return count_other(c, table_of(c)->self ? KVI_OK
                                            : kvi_engine_error(c, KVI_E_INTERNAL, "no table"));
}

static kvi_status local_stats(kvi_conn *c, kvi_stats *out)
{
    const kvi__tab *t = table_of(c);
    kvi__lt_stats s;
    t->ops->stats_get(t->self, &s);
    out->has_content = 1;
    out->entries = s.entries;
    out->bytes = s.bytes;
    out->hits = s.hits;
    out->expired = s.expired;
    out->evicted = s.evicted;
    if (s.shared) {
        /* The segment's counts: every process's operations, this one's
         * included (the core counted only this handle's). */
        out->shared = 1;
        out->ops = s.ops;
        out->misses = s.misses;
        out->errors = s.errors;
        kvi__sh_info info;
        kvi__sh_info_get(((struct local_conn *)kvi_conn_priv(c))->sh, &info);
        out->processes = info.attached;
    }
    return KVI_OK;
}

/* KVI_CAP_PERSISTENT is not an engine-wide bit: a connection with file=
 * claims it for itself in local_open (see docs/engines/local.md). */
/* The batch slot: runs of fetches go to the table's fetch_ops (each shard
 * locked once per chunk of keys, values straight into the batch's memory),
 * everything else one by one in its place.  Of a fetch op only its key is
 * read: the core leaves a fetch's unused inputs (val, expire_s, ...) as its
 * slot held them for this engine (batch.c, item_init_fetch). */
static size_t local_batch_fetches(kvi_conn *c, const kvi__tab *t, kvi_batch_op *const *ops,
                                  size_t n, size_t *misses)
{
    kvi__batch_sink sink;
    kvi__batch_sink_open(ops[0], &sink);
    size_t open = t->ops->fetch_ops(t->self, ops, n, &sink, misses);
    kvi__batch_sink_close(&sink);
    kvi__clear_error(); /* as kvi_batch_op_done after each */
    for (size_t i = 0; open != 0 && i < n; i++)
        if (!ops[i]->done)
            kvi_batch_op_done(c, ops[i], table_error(c, ops[i]->status));
    return open;
}

static void local_batch(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    const kvi__tab *t = table_of(c);
    size_t misses = 0;
    if (n >= 2 && t->ops->fetch_ops != NULL && kvi__batch_group_all_fetches(ops[0]) &&
        (deadline_ms == 0 || kvi_monotonic_ms() < deadline_ms)) {
        /* All fetches (the batch knows): one run, counted here. */
        if (local_batch_fetches(c, t, ops, n, &misses) == 0)
            kvi__batch_group_counted(ops[0], n, misses);
        return;
    }
    for (size_t i = 0; i < n;) {
        if (deadline_ms != 0 && kvi_monotonic_ms() >= deadline_ms) {
            for (; i < n; i++)
                kvi_batch_op_done(c, ops[i],
                                  count_other(c, kvi_engine_error(c, KVI_E_TIMEOUT,
                                                                  "the batch's deadline passed "
                                                                  "before this operation ran")));
            return;
        }
        size_t j = i;
        while (j < n && ops[j]->kind == KVI_OP_FETCH)
            j++;
        if (j - i >= 2 && t->ops->fetch_ops != NULL) {
            local_batch_fetches(c, t, ops + i, j - i, &misses);
            i = j;
        } else {
            kvi_batch_op_single(c, ops[i++]);
        }
    }
}

const struct kvi_engine kvi__engine_local = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "local",
    .description = "embedded in-process store (sharded hash table, TTL, counters)",
    .caps = KVI_CAP_TTL | KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS | KVI_CAP_BINARY |
            KVI_CAP_ITERATE | KVI_CAP_CONDITIONAL,
    .conn_size = sizeof(struct local_conn),
    .max_value_len = 0,
    .option_table = local_options,
    .options_size = sizeof(struct local_options),
    .open = local_open,
    .close = local_close,
    .store = local_store,
    .fetch = local_fetch,
    .remove = local_remove,
    .add = local_add,
    .counter_fetch = local_counter_fetch,
    .raw_query = NULL,
    .keys = local_keys,
    .remove_chunk = local_remove_chunk,
    .ttl = local_ttl,
    .ping = local_ping,
    .stats = local_stats,
    .add_bounded = local_add_bounded,
    .store_nx = local_store_nx,
    .batch = local_batch,
};
