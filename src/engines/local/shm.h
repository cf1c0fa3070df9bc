/*
 * shm.h -- the local engine's shared collection: one table in a named POSIX
 * shared-memory segment that every process of a pre-fork server (and an
 * operator's `kvi`) attaches to by name.  Not installed.
 *
 * The segment has a fixed size (max_memory) and holds, at offsets from its
 * start (never pointers): a header (magic, layout version, size, creator
 * uid, mode, checksum), 64 shards, each with a robust process-shared mutex,
 * a fixed bucket array, its own arena of memory with size-class free lists,
 * its statistics and an undo log.  Every structural write under a shard
 * lock is preceded by an undo record (address and old bytes); a process
 * killed while it holds the lock leaves the log behind, and the next locker
 * (EOWNERDEAD) rolls the half-done operation back before it marks the mutex
 * consistent.  So a kill loses at most the one operation in flight and
 * leaks nothing (kvi__sh_check proves it: used + free == carved, per shard).
 *
 * The table's operations are also kvi__sh_ops, the shared instance of the
 * table interface (kvi__tab_ops, local.h) that local.c and snapshot.c use.
 */
#ifndef KVI_LOCAL_SHM_H
#define KVI_LOCAL_SHM_H

#include <stdint.h>
#include <stddef.h>

#include "core/internal.h"

/* Segment size when the URL gives no max_memory; the smallest accepted. */
#define KVI__SH_DEFAULT_SIZE (UINT64_C(128) << 20)
#define KVI__SH_MIN_SIZE (UINT64_C(1) << 20)
#define KVI__SH_MAX_SIZE (UINT64_C(64) << 30)
/* Longest NAME in shm=NAME ([A-Za-z0-9._-]). */
#define KVI__SH_MAX_NAME 200u

typedef struct kvi__sh kvi__sh;

typedef struct kvi__sh_config {
    const char *name;    /* shm=NAME; the segment is /dev/shm/kvi.NAME */
    uint64_t max_memory; /* segment bytes; 0 = not given (default on creation) */
    int evict;           /* KVI__LT_EVICT_*; -1 = not given (none on creation) */
    unsigned mode;       /* permission bits; 0 = not given (0600) */
    int unlink_on_close; /* shm_unlink=yes: remove the name at close */
    int attach_only;     /* shm_create=no: a missing segment is an error */
    int readonly;        /* shm_readonly=yes: look at a private copy (implies attach_only) */
    int saves;           /* this process has file= and may write the snapshot */
} kvi__sh_config;

/* Content figures of the shared table; all counted across processes. */
typedef struct kvi__sh_info {
    uint64_t size;      /* segment bytes */
    uint64_t arena;     /* bytes entries may use, over all shards */
    uint64_t carved;    /* arena bytes ever handed out and not given back */
    uint64_t repairs;   /* locks found with a dead owner and repaired */
    uint64_t attached;  /* processes registered now (dead ones pruned) */
    uint64_t max_entry; /* largest entry (24 + key + value) that fits */
} kvi__sh_info;

/* Opens (creating and sizing it when it does not exist, unless
 * cfg->attach_only) the segment of cfg->name and maps it.  A segment is
 * trusted only when it is a plain file with one link, owned by this
 * process's effective uid (root included) and no wider than the mode
 * asked; cfg->readonly instead reads a private copy of an existing
 * segment of any owner (nothing is ever written to it).  KVI_E_INVALID
 * (bad name, size, or an option that contradicts the existing segment),
 * KVI_E_AUTH (another user's segment, a mode wider than asked, permission
 * denied), KVI_E_CORRUPT (wrong magic, layout, size, checksum or geometry;
 * never initialised), KVI_E_IO (also: no such segment with attach_only).
 * err names the segment.  *created says whether this call made it. */
kvi_status kvi__sh_open(kvi *k, const kvi__sh_config *cfg, kvi__sh **out, int *created, char *err,
                        size_t err_len);

/* Unregisters this process (once; not in a forked child that did not open
 * it) and returns 1 when no other registered live process with file=
 * (cfg->saves) remains: then this one is the last that can write the
 * snapshot. */
int kvi__sh_leave(kvi__sh *s);

/* Whether a process with file= has loaded the snapshot into this segment
 * (kept in the segment: a segment made by a process without file=, say an
 * operator's look after a reboot, has not). */
int kvi__sh_snapshot_loaded(kvi__sh *s);
void kvi__sh_set_snapshot_loaded(kvi__sh *s);

/* Unmaps (after kvi__sh_leave); when asked (shm_unlink=yes) removes the
 * name.  NULL is accepted. */
void kvi__sh_close(kvi__sh *s);

/* Removes the segment name /dev/shm/kvi.NAME.  KVI_OK, KVI_NOT_FOUND when
 * there was none, KVI_E_INVALID for a bad name, KVI_E_AUTH, KVI_E_IO. */
kvi_status kvi__sh_unlink(const char *name, char *err, size_t err_len);

/* The segment's path for messages ("/dev/shm/kvi.NAME"). */
const char *kvi__sh_path(const kvi__sh *s);

/* Makes t's clock the context k (each process has its own). */
void kvi__sh_set_context(kvi__sh *s, kvi *k);

/* Why the last operation answered KVI_E_CORRUPT ("a chain link points
 * outside its shard", ...); NULL when none did. */
const char *kvi__sh_fault_reason(kvi__sh *s);

/* Operations: same contracts as the kvi__lt_* of the same name (local.h),
 * plus KVI_E_CORRUPT when a lock cannot be recovered or a link, offset or
 * length read from the segment points outside where it may (nothing is
 * followed then: kvi__sh_fault_reason says what).  Thread- and
 * process-safe. */
kvi_status kvi__sh_store(kvi__sh *s, const void *key, size_t key_len, const void *val,
                         size_t val_len, int64_t expire_s);
kvi_status kvi__sh_store_nx(kvi__sh *s, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s);
kvi_status kvi__sh_put_abs(kvi__sh *s, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_ms);
kvi_status kvi__sh_fetch(kvi__sh *s, const void *key, size_t key_len,
                         kvi_status (*fn)(void *ud, const void *data, size_t len), void *ud);
kvi_status kvi__sh_remove(kvi__sh *s, const void *key, size_t key_len);
kvi_status kvi__sh_add(kvi__sh *s, const void *key, size_t key_len, int64_t delta, int64_t expire_s,
                       int64_t *new_value);
/* Bounded add: applied only when min <= cur + delta <= max (cur = 0 for a
 * missing key); else KVI_OUT_OF_BOUNDS with *value = cur. */
kvi_status kvi__sh_add_bounded(kvi__sh *s, const void *key, size_t key_len, int64_t delta,
                               int64_t expire_s, int64_t min, int64_t max, int64_t *value);
kvi_status kvi__sh_counter(kvi__sh *s, const void *key, size_t key_len, int64_t *out);
kvi_status kvi__sh_ttl(kvi__sh *s, const void *key, size_t key_len, int64_t *ttl_s);
kvi_status kvi__sh_foreach(kvi__sh *s, const char *glob, size_t glob_len,
                           kvi_status (*fn)(void *ud, const void *key, size_t key_len,
                                            const void *val, size_t val_len, int64_t expire_ms),
                           void *ud);
void kvi__sh_remove_chunk(kvi__sh *s, const char *glob, size_t glob_len, uint64_t *removed);
uint64_t kvi__sh_changes(kvi__sh *s);

/* Counts, in the segment (for every process's kvi stats), one operation of
 * this process that took no shard's lock (a walk, a ping, a refused write;
 * error: it ended with an error), or the error status one operation ended
 * with.  The key operations above count themselves. */
void kvi__sh_count_other(kvi__sh *s, int error);
void kvi__sh_count_error(kvi__sh *s);

/* Content statistics in the layout of kvi__lt_stats (declared in local.h;
 * the same fields in the same order). */
struct kvi__lt_stats;
void kvi__sh_stats_get(kvi__sh *s, struct kvi__lt_stats *out);
void kvi__sh_info_get(kvi__sh *s, kvi__sh_info *out);

/* Walks every shard under its lock and checks the structure: chains,
 * hashes, lengths, free lists, sums, and that used + free bytes equal the
 * carved bytes (nothing leaked).  KVI_OK or KVI_E_CORRUPT with the first
 * fault in err. */
kvi_status kvi__sh_check(kvi__sh *s, char *err, size_t err_len);

#endif /* KVI_LOCAL_SHM_H */
