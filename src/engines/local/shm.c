/*
 * shm.c -- the shared collection's segment: creating, sizing, checking and
 * attaching to the named POSIX shared-memory segment, its header, the
 * per-shard locks with their repair after a dead owner, the undo log, and
 * the registry of attached processes: the segment's life only.  The table
 * operations on top are in shm_table.c, which calls the lock, undo log and
 * registry here; nothing here calls the table.  The picture is in shm.h.
 *
 * Segment layout (byte offsets from its start; all links inside are
 * 16-byte granule numbers, never pointers):
 *
 *   0            struct sh_header (magic, layout, size, uid, mode, geometry,
 *                checksum; then the mutable ready flag, repair count and
 *                the attached-process registry)
 *   shards_off   SH_SHARDS x struct sh_shard (lock, arena bounds, bump top,
 *                sums, free-list heads, statistics, undo log)
 *   buckets      SH_SHARDS x nbuckets x uint32_t
 *   arenas       SH_SHARDS x arena_bytes
 */
#include "engines/local/shm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SH_MAGIC "KVISHM\r\n"
#define SH_WAIT_MS 500

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static uint64_t header_sum(const struct sh_header *h)
{
    return fnv1a(h, offsetof(struct sh_header, checksum));
}

/* ---- undo log ------------------------------------------------------------- */

void kvi__sh_log(kvi__sh *s, struct sh_shard *sh, void *addr, size_t len)
{
    unsigned char *p = addr;
    while (len) {
        size_t n = len > SH_UNDO_BYTES ? SH_UNDO_BYTES : len;
        uint32_t i = sh->log_n;
        if (i >= SH_LOG_MAX) {
            /* A bug (an operation with more writes than the log holds):
             * stopping here keeps the table repairable. */
            abort();
        }
        struct sh_undo *u = &sh->log[i];
        u->off = (uint64_t)(p - s->base);
        u->len = (uint32_t)n;
        memcpy(u->old, p, n);
        /* The record must be complete before the count names it, and the
         * count before the data write it covers (a kill, not a power
         * loss, is the fault: compiler order is the whole question). */
        atomic_signal_fence(memory_order_seq_cst);
        __atomic_store_n(&sh->log_n, i + 1u, __ATOMIC_RELEASE);
        atomic_signal_fence(memory_order_seq_cst);
        p += n;
        len -= n;
    }
}

void kvi__sh_commit(struct sh_shard *sh)
{
    atomic_signal_fence(memory_order_seq_cst);
    __atomic_store_n(&sh->log_n, 0u, __ATOMIC_RELEASE);
    atomic_signal_fence(memory_order_seq_cst);
}

/* Rolls back the dead owner's half-done operation: restores the logged old
 * bytes newest first.  Idempotent, so a repairer killed half-way leaves a
 * log the next one replays the same way. */
static int sh_repair(kvi__sh *s, struct sh_shard *sh)
{
    uint32_t n = sh->log_n;
    if (n > SH_LOG_MAX)
        return -1;
    for (uint32_t i = n; i-- > 0;) {
        const struct sh_undo *u = &sh->log[i];
        /* Only the shards, buckets and arenas are ever logged. */
        if (u->len > SH_UNDO_BYTES || u->off < SH_SHARDS_OFF || u->off > s->size ||
            s->size - u->off < u->len)
            return -1;
        memcpy(s->base + u->off, u->old, u->len);
    }
    kvi__sh_commit(sh);
    return 0;
}

kvi_status kvi__sh_fault(kvi__sh *s, struct sh_shard *sh, const char *why)
{
    atomic_store_explicit(&s->fault, why, memory_order_relaxed);
    /* Undo what this operation wrote before it met the bad link (logged
     * offsets are the process's own, so this cannot fail but for a log
     * damaged too; then the writes stay, as after a commit). */
    if (sh && sh_repair(s, sh) != 0)
        kvi__sh_commit(sh);
    return KVI_E_CORRUPT;
}

const char *kvi__sh_fault_reason(kvi__sh *s)
{
    return atomic_load_explicit(&s->fault, memory_order_relaxed);
}

kvi_status kvi__sh_lock(kvi__sh *s, struct sh_shard *sh)
{
    int rc = pthread_mutex_lock(&sh->lock);
    if (rc == 0) {
        /* A log left under a lock released normally: its writer kept its
         * writes (an operation that failed after logging).  Start clean,
         * so a count read from the segment never overruns the log. */
        if (sh->log_n != 0)
            kvi__sh_commit(sh);
        return KVI_OK;
    }
    if (rc == EOWNERDEAD) {
        if (sh_repair(s, sh) != 0) {
            /* Leave the mutex inconsistent: unlocking it makes it
             * unrecoverable, so nobody trusts this shard again. */
            pthread_mutex_unlock(&sh->lock);
            return KVI_E_CORRUPT;
        }
        sh->repairs++;
        atomic_fetch_add_explicit(&s->h->repairs, 1, memory_order_relaxed);
        pthread_mutex_consistent(&sh->lock);
        return KVI_OK;
    }
    return KVI_E_CORRUPT;
}

/* ---- registry of attached processes ---------------------------------------- */

static int reg_lock(struct sh_header *h)
{
    int rc = pthread_mutex_lock(&h->reg_lock);
    if (rc == EOWNERDEAD) {
        /* Slots are single int writes: nothing to roll back. */
        pthread_mutex_consistent(&h->reg_lock);
        rc = 0;
    }
    return rc;
}

static int pid_alive(int32_t pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
}

/* Adds (add = 1) or removes one slot of this process (one that saves as
 * this handle does: a process may hold several handles); returns the number
 * of other live registered processes that save.  A read-only look never
 * registers. */
static uint64_t reg_update(kvi__sh *s, int add)
{
    struct sh_header *h = s->h;
    if (s->readonly)
        return 1;
    if (reg_lock(h) != 0)
        return 1;
    int32_t me = (int32_t)getpid();
    int done = 0;
    uint64_t others = 0;
    for (size_t i = 0; i < SH_SLOTS; i++) {
        int32_t p = h->slots[i];
        int saves = h->saves[i] != 0;
        if (p != 0 && p != me && !pid_alive(p)) {
            h->slots[i] = 0;
            p = 0;
        }
        if (!done && add && p == 0) {
            h->slots[i] = me;
            h->saves[i] = (uint8_t)(s->saves != 0);
            done = 1;
        } else if (!done && !add && p == me && saves == (s->saves != 0)) {
            h->slots[i] = 0;
            done = 1;
        } else if (p != 0 && saves) {
            others++;
        }
    }
    pthread_mutex_unlock(&h->reg_lock);
    return others;
}

/* ---- names ------------------------------------------------------------------ */

static kvi_status shm_name(const char *name, char *shm, size_t shm_len, char *err, size_t err_len)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > KVI__SH_MAX_NAME) {
        snprintf(err, err_len, "shm= needs a name of 1..%u characters", KVI__SH_MAX_NAME);
        return KVI_E_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            snprintf(err, err_len, "bad shm name '%s' (letters, digits, '.', '_', '-')", name);
            return KVI_E_INVALID;
        }
    }
    snprintf(shm, shm_len, "/kvi.%s", name);
    return KVI_OK;
}

kvi_status kvi__sh_unlink(const char *name, char *err, size_t err_len)
{
    char shm[KVI__SH_MAX_NAME + 8];
    kvi_status st = shm_name(name, shm, sizeof(shm), err, err_len);
    if (st != KVI_OK)
        return st;
    if (shm_unlink(shm) == 0)
        return KVI_OK;
    int e = errno;
    snprintf(err, err_len, "cannot remove segment /dev/shm%s: %s", shm, strerror(e));
    if (e == ENOENT)
        return KVI_NOT_FOUND;
    return e == EACCES || e == EPERM ? KVI_E_AUTH : KVI_E_IO;
}

const char *kvi__sh_path(const kvi__sh *s)
{
    return s->path;
}

void kvi__sh_set_context(kvi__sh *s, kvi *k)
{
    s->k = k;
}

/* ---- geometry ------------------------------------------------------------- */

/* Splits size into header, shards, buckets and arenas; 0 when too small. */
static int sh_geometry(uint64_t size, uint64_t *nbuckets, uint64_t *arena)
{
    uint64_t fixed = SH_SHARDS_OFF + (uint64_t)SH_SHARDS * sizeof(struct sh_shard);
    if (size <= fixed)
        return 0;
    uint64_t per = (size - fixed) / SH_SHARDS;
    /* One bucket per 50..100 arena bytes (an entry of a short key and
     * value takes 48..96): a full shard's chains average at most ~1.25
     * entries (at 100..200 bytes they ran near 1.9, and a miss walked them
     * all); buckets cost 4..8% of memory. */
    uint64_t nb = 16;
    while (nb * 2u * 50u <= per && nb < (UINT64_C(1) << 27))
        nb *= 2u;
    uint64_t a = (per - nb * 4u) & ~(uint64_t)(SH_GRAN - 1u);
    if (a < 4096u)
        return 0;
    *nbuckets = nb;
    *arena = a;
    return 1;
}

/* Where shard i's buckets and arena lie in a segment of nb buckets and
 * arena bytes per shard (the one layout sh_format writes). */
static struct sh_geo sh_layout(uint64_t nb, uint64_t arena, uint32_t i)
{
    uint64_t buckets = SH_SHARDS_OFF + (uint64_t)SH_SHARDS * sizeof(struct sh_shard);
    uint64_t arenas = buckets + (uint64_t)SH_SHARDS * nb * 4u;
    arenas = (arenas + SH_GRAN - 1u) & ~(uint64_t)(SH_GRAN - 1u);
    struct sh_geo g;
    g.buckets_off = buckets + (uint64_t)i * nb * 4u;
    g.arena_off = arenas + (uint64_t)i * arena;
    g.arena_end = g.arena_off + arena;
    return g;
}

static void sh_bind(kvi__sh *s)
{
    s->h = (struct sh_header *)s->base;
    s->shards = (struct sh_shard *)(s->base + s->h->shards_off);
    s->seed = s->h->seed;
    s->nbmask = s->h->nbuckets - 1u;
    s->lru_shift = s->h->lru_shift;
    s->evict = (int)s->h->evict;
    for (uint32_t i = 0; i < SH_SHARDS; i++)
        s->geo[i] = sh_layout(s->h->nbuckets, s->h->arena_bytes, i);
    /* An entry takes two granules at least. */
    s->max_steps = s->h->arena_bytes / (2u * SH_GRAN) + 1u;
}

static kvi_status init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0)
        return KVI_E_NOMEM;
    int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc == 0 ? KVI_OK : KVI_E_INTERNAL;
}

/* Lays out a fresh (zero-filled) segment; ready is set last. */
static kvi_status sh_format(kvi__sh *s, const kvi__sh_config *cfg, unsigned mode, uint64_t nb,
                            uint64_t arena)
{
    struct sh_header *h = (struct sh_header *)s->base;
    memcpy(h->magic, SH_MAGIC, 8);
    h->layout = SH_LAYOUT;
    h->header_size = (uint32_t)sizeof(struct sh_header);
    h->size = s->size;
    h->creator_uid = (uint32_t)geteuid();
    h->mode = mode;
    h->nshards = SH_SHARDS;
    h->shard_size = (uint32_t)sizeof(struct sh_shard);
    h->mutex_size = (uint32_t)sizeof(pthread_mutex_t);
    h->evict = cfg->evict == KVI__LT_EVICT_LRU ? 1u : 0u;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed =
            kvi__lt_mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid());
    }
    h->seed = seed;
    h->shards_off = SH_SHARDS_OFF;
    h->nbuckets = nb;
    h->arena_bytes = arena;
    /* The 16-bit LRU stamp counts a shard's accesses >> lru_shift; its
     * window spans a few times the entries a shard can hold. */
    uint64_t est = arena / 48u;
    uint32_t shift = 0;
    while (shift < 40 && (UINT64_C(1) << (14u + shift)) < est)
        shift++;
    h->lru_shift = shift;
    h->created_ms = kvi_now_ms(s->k);
    h->checksum = header_sum(h);
    if (init_mutex(&h->reg_lock) != KVI_OK)
        return KVI_E_INTERNAL;
    struct sh_shard *shards = (struct sh_shard *)(s->base + SH_SHARDS_OFF);
    for (uint32_t i = 0; i < SH_SHARDS; i++) {
        struct sh_shard *sh = &shards[i];
        if (init_mutex(&sh->lock) != KVI_OK)
            return KVI_E_INTERNAL;
        struct sh_geo g = sh_layout(nb, arena, i);
        sh->buckets_off = g.buckets_off;
        sh->arena_off = g.arena_off;
        sh->arena_end = g.arena_end;
        sh->top = sh->arena_off;
        sh->rng = kvi__lt_mix64(seed + i + 1u) | 1u;
    }
    atomic_store_explicit(&h->ready, 1u, memory_order_release);
    return KVI_OK;
}

/* ---- open ----------------------------------------------------------------- */

static kvi_status sh_map(kvi__sh *s, int fd, char *err, size_t err_len)
{
    void *p = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        snprintf(err, err_len, "cannot map segment %s (%llu bytes): %s", s->path,
                 (unsigned long long)s->size, strerror(errno));
        return KVI_E_NOMEM;
    }
    s->base = p;
    return KVI_OK;
}

/* Is this segment one whose creator died while it made it: never marked
 * ready, its magic ours or not yet written?  Such a segment holds no data
 * and may be made again.  Anything else not ready is somebody else's. */
static int sh_unfinished(int fd, size_t size)
{
    if (size < sizeof(struct sh_header))
        return 1;
    void *p = mmap(NULL, sizeof(struct sh_header), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return 0;
    const struct sh_header *h = p;
    static const char zero[8];
    int r = atomic_load_explicit(&h->ready, memory_order_acquire) != 1u &&
            (memcmp(h->magic, SH_MAGIC, 8) == 0 || memcmp(h->magic, zero, 8) == 0);
    munmap(p, sizeof(struct sh_header));
    return r;
}

/* Makes the segment: a new (empty) file, or one whose creator died half-way
 * (sh_unfinished).  Formatting needs the exclusive flock, which attachers
 * wait for; *retry when, with the lock, the segment turns out to be made
 * by another process meanwhile (attach to it instead). */
static kvi_status sh_create(kvi__sh *s, int fd, const kvi__sh_config *cfg, unsigned mode,
                            uint64_t size, int *retry, char *err, size_t err_len)
{
    *retry = 0;
    uint64_t nb = 0, arena = 0;
    if (!sh_geometry(size, &nb, &arena)) {
        snprintf(err, err_len, "max_memory=%llu is too small for segment %s",
                 (unsigned long long)size, s->path);
        return KVI_E_INVALID;
    }
    struct stat sb;
    if (flock(fd, LOCK_EX) != 0 || fstat(fd, &sb) != 0) {
        snprintf(err, err_len, "cannot prepare segment %s: %s", s->path, strerror(errno));
        return KVI_E_IO;
    }
    if (sb.st_size > 0) {
        if (!sh_unfinished(fd, (size_t)sb.st_size)) {
            flock(fd, LOCK_UN);
            *retry = 1;
            return KVI_OK;
        }
        /* Start from zeros: what the dead creator wrote goes. */
        if (ftruncate(fd, 0) != 0) {
            snprintf(err, err_len, "cannot reset segment %s: %s", s->path, strerror(errno));
            return KVI_E_IO;
        }
    }
    if (fchmod(fd, mode) != 0) {
        snprintf(err, err_len, "cannot prepare segment %s: %s", s->path, strerror(errno));
        return KVI_E_IO;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        snprintf(err, err_len, "cannot size segment %s to %llu bytes: %s", s->path,
                 (unsigned long long)size, strerror(errno));
        return KVI_E_NOMEM;
    }
    /* Reserve the memory now: a page that tmpfs cannot supply later would
     * be a SIGBUS in the middle of a store. */
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
        snprintf(err, err_len, "cannot reserve %llu bytes for segment %s: %s",
                 (unsigned long long)size, s->path, strerror(rc));
        return KVI_E_NOMEM;
    }
    s->size = (size_t)size;
    kvi_status st = sh_map(s, fd, err, err_len);
    if (st != KVI_OK)
        return st;
    st = sh_format(s, cfg, mode, nb, arena);
    if (st != KVI_OK) {
        snprintf(err, err_len, "cannot initialise the locks of segment %s", s->path);
        return st;
    }
    sh_bind(s);
    flock(fd, LOCK_UN);
    return KVI_OK;
}

static kvi_status corrupt(kvi__sh *s, char *err, size_t err_len, const char *why)
{
    snprintf(err, err_len,
             "segment %s is not a usable kvi collection: %s (remove it with shm_unlink=yes "
             "once no process uses it)",
             s->path, why);
    return KVI_E_CORRUPT;
}

static kvi_status sh_check_header(kvi__sh *s, char *err, size_t err_len)
{
    const struct sh_header *h = (const struct sh_header *)s->base;
    char why[160];
    if (memcmp(h->magic, SH_MAGIC, 8) != 0)
        return corrupt(s, err, err_len, "bad magic");
    if (h->layout != SH_LAYOUT) {
        snprintf(why, sizeof(why), "layout version %u (this build uses %u)", h->layout, SH_LAYOUT);
        return corrupt(s, err, err_len, why);
    }
    if (h->header_size != sizeof(struct sh_header) || h->nshards != SH_SHARDS ||
        h->shard_size != sizeof(struct sh_shard) || h->mutex_size != sizeof(pthread_mutex_t))
        return corrupt(s, err, err_len, "made by a build with another layout");
    if (header_sum(h) != h->checksum)
        return corrupt(s, err, err_len, "header checksum mismatch");
    if (h->size != s->size) {
        snprintf(why, sizeof(why), "header says %llu bytes, the segment has %llu",
                 (unsigned long long)h->size, (unsigned long long)s->size);
        return corrupt(s, err, err_len, why);
    }
    uint64_t nb = 0, arena = 0;
    if (!sh_geometry(h->size, &nb, &arena) || nb != h->nbuckets || arena != h->arena_bytes ||
        h->shards_off != SH_SHARDS_OFF || h->evict > 1u)
        return corrupt(s, err, err_len, "inconsistent geometry");
    if (atomic_load_explicit(&h->ready, memory_order_acquire) != 1u)
        return corrupt(s, err, err_len, "never completely initialised (its creator died?)");
    const struct sh_shard *shards = (const struct sh_shard *)(s->base + SH_SHARDS_OFF);
    for (uint32_t i = 0; i < SH_SHARDS; i++) {
        const struct sh_shard *sh = &shards[i];
        /* The offsets must be the very ones sh_format writes (the process
         * keeps its own copy of them, see sh_bind); top is checked again
         * wherever it is used. */
        struct sh_geo g = sh_layout(nb, arena, i);
        uint64_t top = __atomic_load_n(&sh->top, __ATOMIC_RELAXED);
        if (g.arena_end > s->size || sh->arena_off != g.arena_off || sh->arena_end != g.arena_end ||
            sh->buckets_off != g.buckets_off || top < g.arena_off || top > g.arena_end ||
            top % SH_GRAN != 0)
            return corrupt(s, err, err_len, "damaged shard table");
    }
    return KVI_OK;
}

/* "uid 102 (kamailio)": a uid with its user name when there is one. */
static void sh_uid_name(char *out, size_t out_len, uid_t uid)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != NULL)
        snprintf(out, out_len, "uid %u (%s)", (unsigned)uid, found->pw_name);
    else
        snprintf(out, out_len, "uid %u", (unsigned)uid);
}

/* The part of a refusal that tells the operator what to do when the
 * segment belongs to another user (e.g. made by a root `kvi` before the
 * server, running as its own user, opened it). */
static void sh_owner_hint(char *out, size_t out_len, uid_t owner, uid_t me)
{
    char o[300], m[300];
    sh_uid_name(o, sizeof o, owner);
    sh_uid_name(m, sizeof m, me);
    snprintf(out, out_len,
             "belongs to %s, not to this user (%s); run every program that opens it as its "
             "owner (e.g. sudo -u <owner> kvi ...), or remove it and let the server make it",
             o, m);
}

/* Attaches to an existing segment; *unfinished when its creator died
 * before it was made (or has not begun): then the caller makes it. */
static kvi_status sh_attach(kvi__sh *s, int fd, const kvi__sh_config *cfg, unsigned mode,
                            int *unfinished, char *err, size_t err_len)
{
    *unfinished = 0;
    struct stat sb;
    uid_t me = geteuid();
    if (fstat(fd, &sb) != 0) {
        snprintf(err, err_len, "cannot stat segment %s: %s", s->path, strerror(errno));
        return KVI_E_IO;
    }
    /* Root too: /dev/shm is world-writable and the names predictable, so
     * a segment another user made first is theirs to fill (shm_readonly=yes
     * looks at a copy of any segment). */
    if (!S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
        snprintf(err, err_len, "segment %s is not a plain file with one link: refusing to trust it",
                 s->path);
        return KVI_E_AUTH;
    }
    if (sb.st_uid != me) {
        char hint[800];
        sh_owner_hint(hint, sizeof hint, sb.st_uid, me);
        snprintf(err, err_len,
                 "segment %s %s: refusing to trust it (shm_readonly=yes looks at a copy)", s->path,
                 hint);
        return KVI_E_AUTH;
    }
    unsigned have = (unsigned)sb.st_mode & 0777u;
    if (have & ~mode) {
        snprintf(err, err_len,
                 "segment %s has mode %04o, wider than shm_mode=%04o: refusing to trust it",
                 s->path, have, mode);
        return KVI_E_AUTH;
    }
    /* The creator holds an exclusive flock while it sizes and formats;
     * between its shm_open and its flock the size is still 0.  Holding the
     * shared lock, an unfinished segment means its creator is not at work
     * (not yet, or dead). */
    struct timespec pause = {0, 5 * 1000 * 1000};
    for (int waited = 0;; waited += 5) {
        if (flock(fd, LOCK_SH) != 0 || fstat(fd, &sb) != 0) {
            snprintf(err, err_len, "cannot read segment %s: %s", s->path, strerror(errno));
            return KVI_E_IO;
        }
        if (!sh_unfinished(fd, (size_t)sb.st_size))
            break;
        flock(fd, LOCK_UN);
        if (waited >= SH_WAIT_MS) {
            *unfinished = 1;
            return KVI_OK;
        }
        nanosleep(&pause, NULL);
    }
    kvi_status st;
    if ((uint64_t)sb.st_size < KVI__SH_MIN_SIZE || (uint64_t)sb.st_size > KVI__SH_MAX_SIZE) {
        st = corrupt(s, err, err_len, "wrong size");
        flock(fd, LOCK_UN);
        return st;
    }
    s->size = (size_t)sb.st_size;
    st = sh_map(s, fd, err, err_len);
    if (st == KVI_OK)
        st = sh_check_header(s, err, err_len);
    flock(fd, LOCK_UN);
    if (st != KVI_OK)
        return st;
    sh_bind(s);
    if (s->h->creator_uid != (uint32_t)sb.st_uid) {
        snprintf(err, err_len, "segment %s was made by uid %u but belongs to uid %u", s->path,
                 s->h->creator_uid, (unsigned)sb.st_uid);
        return KVI_E_AUTH;
    }
    if (cfg->max_memory && cfg->max_memory != s->h->size) {
        snprintf(err, err_len,
                 "segment %s exists with max_memory=%llu (fixed when it was created); this URL "
                 "asks max_memory=%llu (drop the option or remove the segment)",
                 s->path, (unsigned long long)s->h->size, (unsigned long long)cfg->max_memory);
        return KVI_E_INVALID;
    }
    if (cfg->evict >= 0 && (unsigned)cfg->evict != s->h->evict) {
        snprintf(err, err_len,
                 "segment %s exists with evict=%s (fixed when it was created); this URL asks "
                 "evict=%s",
                 s->path, s->h->evict ? "lru" : "none", cfg->evict ? "lru" : "none");
        return KVI_E_INVALID;
    }
    return KVI_OK;
}

/* shm_readonly=yes: reads the whole segment into private memory, checks
 * it like an attach, and makes its locks this process's own (released,
 * undo logs rolled back).  Nothing is written to the segment, which may
 * belong to any user; what the copy holds is checked at every use like a
 * shared segment. */
static kvi_status sh_copy(kvi__sh *s, const char *shm, const kvi__sh_config *cfg, char *err,
                          size_t err_len)
{
    int fd = shm_open(shm, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            snprintf(err, err_len, "no such shared collection: segment %s does not exist", s->path);
            return KVI_E_IO;
        }
        snprintf(err, err_len, "cannot open segment %s: %s", s->path, strerror(e));
        return e == EACCES || e == EPERM ? KVI_E_AUTH : KVI_E_IO;
    }
    struct stat sb;
    kvi_status st = KVI_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, err_len, "segment %s is not a plain file", s->path);
        st = KVI_E_IO;
    } else if ((uint64_t)sb.st_size < KVI__SH_MIN_SIZE || (uint64_t)sb.st_size > KVI__SH_MAX_SIZE) {
        st = corrupt(s, err, err_len, "wrong size");
    }
    if (st == KVI_OK) {
        /* Wait while its creator formats it (it holds LOCK_EX). */
        (void)flock(fd, LOCK_SH);
        s->size = (size_t)sb.st_size;
        void *p = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            snprintf(err, err_len, "cannot copy segment %s (%llu bytes): out of memory", s->path,
                     (unsigned long long)s->size);
            st = KVI_E_NOMEM;
        } else {
            s->base = p;
            size_t got = 0;
            while (got < s->size) {
                ssize_t n = pread(fd, s->base + got, s->size - got, (off_t)got);
                if (n <= 0) {
                    if (n < 0 && errno == EINTR)
                        continue;
                    break;
                }
                got += (size_t)n;
            }
            if (got != s->size)
                st = corrupt(s, err, err_len, "shorter than its size");
        }
        (void)flock(fd, LOCK_UN);
    }
    close(fd);
    if (st == KVI_OK)
        st = sh_check_header(s, err, err_len);
    if (st != KVI_OK)
        return st;
    sh_bind(s);
    if ((cfg->max_memory && cfg->max_memory != s->h->size) ||
        (cfg->evict >= 0 && (unsigned)cfg->evict != s->h->evict)) {
        snprintf(err, err_len,
                 "segment %s exists with other max_memory or evict than this URL asks", s->path);
        return KVI_E_INVALID;
    }
    if (init_mutex(&s->h->reg_lock) != KVI_OK)
        return KVI_E_INTERNAL;
    for (uint32_t i = 0; i < SH_SHARDS; i++) {
        struct sh_shard *sh = &s->shards[i];
        if (init_mutex(&sh->lock) != KVI_OK)
            return KVI_E_INTERNAL;
        /* Copied while a writer was half-way: undo it in the copy. */
        if (sh->log_n != 0 && sh_repair(s, sh) != 0)
            kvi__sh_commit(sh);
    }
    return KVI_OK;
}

static void sh_free_handle(kvi__sh *s)
{
    if (s->base)
        munmap(s->base, s->size);
    kvi__free(s->k, s);
}

kvi_status kvi__sh_open(kvi *k, const kvi__sh_config *cfg, kvi__sh **out, int *created, char *err,
                        size_t err_len)
{
    char shm[KVI__SH_MAX_NAME + 8];
    *out = NULL;
    *created = 0;
    kvi_status st = shm_name(cfg->name, shm, sizeof(shm), err, err_len);
    if (st != KVI_OK)
        return st;
    unsigned mode = cfg->mode ? cfg->mode : 0600u;
    uint64_t size = cfg->max_memory ? cfg->max_memory : KVI__SH_DEFAULT_SIZE;
    if (size < KVI__SH_MIN_SIZE || size > KVI__SH_MAX_SIZE) {
        snprintf(err, err_len,
                 "max_memory=%llu is outside what a shared collection can use (1m..64g: "
                 "64 shards need room for their locks, buckets and arenas)",
                 (unsigned long long)size);
        return KVI_E_INVALID;
    }
    kvi__sh *s = kvi__calloc(k, 1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return KVI_E_NOMEM;
    }
    s->k = k;
    s->pid = getpid();
    s->unlink_on_close = cfg->unlink_on_close;
    s->saves = cfg->saves && !cfg->readonly;
    snprintf(s->name, sizeof(s->name), "%s", cfg->name);
    snprintf(s->path, sizeof(s->path), "/dev/shm%s", shm);

    if (cfg->readonly) {
        s->readonly = 1;
        st = sh_copy(s, shm, cfg, err, err_len);
        if (st != KVI_OK) {
            sh_free_handle(s);
            return st;
        }
        *out = s;
        return KVI_OK;
    }
    int attempt;
    for (attempt = 0; attempt < 50; attempt++) {
        int retry = 0, unfinished = 0;
        int fd = cfg->attach_only ? -1 : shm_open(shm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (cfg->attach_only)
            errno = EEXIST;
        if (fd < 0 && errno == EEXIST) {
            fd = shm_open(shm, O_RDWR | O_CLOEXEC, 0);
            if (fd < 0 && errno == ENOENT && cfg->attach_only) {
                snprintf(err, err_len,
                         "no such shared collection: segment %s does not exist (shm_create=no)",
                         s->path);
                st = KVI_E_IO;
                break;
            }
            if (fd < 0 && errno == ENOENT)
                continue; /* removed meanwhile: create it */
            if (fd >= 0) {
                st = sh_attach(s, fd, cfg, mode, &unfinished, err, err_len);
                if (st != KVI_OK || !unfinished) {
                    close(fd);
                    break;
                }
                if (cfg->attach_only) {
                    close(fd);
                    snprintf(err, err_len,
                             "no such shared collection: segment %s was never completely made "
                             "(shm_create=no)",
                             s->path);
                    st = KVI_E_IO;
                    break;
                }
            }
        }
        if (fd < 0) {
            int e = errno;
            struct stat ob;
            char hint[800];
            if ((e == EACCES || e == EPERM) && stat(s->path, &ob) == 0 && ob.st_uid != geteuid()) {
                sh_owner_hint(hint, sizeof hint, ob.st_uid, geteuid());
                snprintf(err, err_len, "cannot open segment %s: %s: it %s", s->path, strerror(e),
                         hint);
            } else {
                snprintf(err, err_len, "cannot open segment %s: %s", s->path, strerror(e));
            }
            st = e == EACCES || e == EPERM ? KVI_E_AUTH : KVI_E_IO;
            break;
        }
        /* A new segment, or one whose creator died before finishing. */
        st = sh_create(s, fd, cfg, mode, size, &retry, err, err_len);
        close(fd);
        if (retry)
            continue;
        if (st != KVI_OK)
            shm_unlink(shm);
        else
            *created = 1;
        break;
    }
    if (attempt == 50) {
        st = KVI_E_IO;
        snprintf(err, err_len, "segment %s kept changing while it was opened", s->path);
    }
    if (st == KVI_E_CORRUPT && cfg->unlink_on_close && shm_unlink(shm) == 0) {
        size_t n = strlen(err);
        snprintf(err + n, err_len - n, "; removed it, as shm_unlink=yes asks");
    }
    if (st != KVI_OK) {
        sh_free_handle(s);
        return st;
    }
    (void)reg_update(s, 1);
    *out = s;
    return KVI_OK;
}

int kvi__sh_snapshot_loaded(kvi__sh *s)
{
    return atomic_load_explicit(&s->h->snap_loaded, memory_order_acquire) != 0;
}

void kvi__sh_set_snapshot_loaded(kvi__sh *s)
{
    atomic_store_explicit(&s->h->snap_loaded, 1u, memory_order_release);
}

int kvi__sh_leave(kvi__sh *s)
{
    if (s->pid != getpid() || s->left || s->readonly)
        return 0;
    s->left = 1;
    return reg_update(s, 0) == 0;
}

void kvi__sh_close(kvi__sh *s)
{
    if (!s)
        return;
    (void)kvi__sh_leave(s);
    if (s->unlink_on_close && s->pid == getpid() && !s->readonly) {
        char shm[KVI__SH_MAX_NAME + 8];
        snprintf(shm, sizeof(shm), "/kvi.%s", s->name);
        shm_unlink(shm);
    }
    sh_free_handle(s);
}

uint64_t kvi__sh_attached(kvi__sh *s)
{
    uint64_t n = 0;
    if (!s->readonly && reg_lock(s->h) == 0) {
        for (size_t i = 0; i < SH_SLOTS; i++)
            if (pid_alive(s->h->slots[i]))
                n++;
        pthread_mutex_unlock(&s->h->reg_lock);
    }
    return n;
}
