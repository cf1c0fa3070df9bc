/*
 * local.h -- internals of the embedded "local" engine, shared by its files:
 * the sharded hash table (table.c), the engine slots (local.c) and the
 * snapshot persistence (snapshot.c).  Not installed.
 *
 * The table is a fixed number of shards, each a chained hash table under
 * its own mutex.  A shard grows by incremental rehash (a few buckets moved
 * per operation on that shard), so no operation ever pays for a whole
 * table copy.  Every entry is one allocation holding a 24-byte header, the
 * key and the value.  Expired entries are removed lazily on access and by
 * an incremental sweep of a few buckets per write.
 */
#ifndef KVI_LOCAL_H
#define KVI_LOCAL_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "core/internal.h"

/* Number of shards of a table (a power of two). */
#define KVI__LT_SHARDS 64u

/* Expiry times are absolute unix milliseconds kept in 48 bits; later
 * instants are clamped to this. */
#define KVI__LT_MAX_EXPIRE_MS ((int64_t)((UINT64_C(1) << 48) - 1))

typedef enum kvi__lt_evict {
    KVI__LT_EVICT_NONE = 0, /* a full store answers KVI_E_STORE_FULL */
    KVI__LT_EVICT_LRU = 1   /* approximate LRU by sampling */
} kvi__lt_evict;

typedef struct kvi__lt_config {
    uint64_t max_memory; /* bytes, 0 = unlimited */
    kvi__lt_evict evict;
} kvi__lt_config;

/* Content figures of a table (see kvi_stats). */
typedef struct kvi__lt_stats {
    uint64_t entries;
    uint64_t bytes;  /* keys + values */
    uint64_t memory; /* approximate memory charged against max_memory */
    uint64_t hits;
    uint64_t expired;
    uint64_t evicted;
    /* Operation counts of every process, kept only by a shared table
     * (shared = 1; hits then counts every process's too): the operations,
     * those that ended KVI_NOT_FOUND and those that ended with an error. */
    int shared;
    uint64_t ops;
    uint64_t misses;
    uint64_t errors;
} kvi__lt_stats;

typedef struct kvi__lt kvi__lt;

static inline uint64_t kvi__lt_rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64u - r));
}

/* A 64-bit finaliser (splitmix64's). */
static inline uint64_t kvi__lt_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/* Seeded 64-bit hash of a key, 8 bytes per multiply; the seed is random
 * per table so that chosen keys cannot pile into one chain.  Used by the
 * in-process and the shared table. */
static inline uint64_t kvi__lt_hash(uint64_t seed, const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = seed ^ ((uint64_t)n * UINT64_C(0x9E3779B97F4A7C15));
    while (n >= 16) { /* the loop below, two words a turn */
        uint64_t v, w;
        memcpy(&v, p, 8);
        memcpy(&w, p + 8, 8);
        h ^= v * UINT64_C(0xff51afd7ed558ccd);
        h = kvi__lt_rotl64(h, 29) * UINT64_C(0xc4ceb9fe1a85ec53);
        h ^= w * UINT64_C(0xff51afd7ed558ccd);
        h = kvi__lt_rotl64(h, 29) * UINT64_C(0xc4ceb9fe1a85ec53);
        p += 16;
        n -= 16;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h ^= v * UINT64_C(0xff51afd7ed558ccd);
        h = kvi__lt_rotl64(h, 29) * UINT64_C(0xc4ceb9fe1a85ec53);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        memcpy(&v, p, n);
        h ^= v * UINT64_C(0xff51afd7ed558ccd);
        h = kvi__lt_rotl64(h, 29) * UINT64_C(0xc4ceb9fe1a85ec53);
    }
    return kvi__lt_mix64(h);
}

/* Do the n bytes at a and b match?  Keys of 4..16 bytes (most keys) in
 * two overlapping loads each instead of a memcmp call. */
static inline int kvi__lt_key_eq(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (n >= 8 && n <= 16) {
        uint64_t x0, x1, y0, y1;
        memcpy(&x0, x, 8);
        memcpy(&y0, y, 8);
        memcpy(&x1, x + n - 8, 8);
        memcpy(&y1, y + n - 8, 8);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t x0, x1, y0, y1;
        memcpy(&x0, x, 4);
        memcpy(&y0, y, 4);
        memcpy(&x1, x + n - 4, 4);
        memcpy(&y1, y + n - 4, 4);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    return memcmp(x, y, n) == 0;
}

/* The absolute expiry (unix ms, clamped to KVI__LT_MAX_EXPIRE_MS, at
 * least 1) of an entry stored at now_ms with expire_s > 0. */
static inline int64_t kvi__lt_deadline(int64_t now_ms, int64_t expire_s)
{
    int64_t add = expire_s * 1000;
    int64_t at = now_ms > KVI__LT_MAX_EXPIRE_MS - add ? KVI__LT_MAX_EXPIRE_MS : now_ms + add;
    return at < 1 ? 1 : at;
}

/* What one table operation carries along: the context's clock, read at
 * most once and only when an expiry must be compared or set (ms), and, in
 * the shared table, whether it met a damaged link (bad: it then answers
 * KVI_E_CORRUPT).  Start it as {.k = k}. */
typedef struct kvi__lt_op {
    kvi *k;
    int64_t ms;
    int have;
    int bad;
} kvi__lt_op;

static inline int64_t kvi__lt_now(kvi__lt_op *op)
{
    if (!op->have) {
        op->ms = kvi_now_ms(op->k);
        op->have = 1;
    }
    return op->ms;
}

/* The expiry rule of both tables: an entry whose expiry (unix ms, 0 =
 * none) is at or before now is dead, to the millisecond. */
static inline int kvi__lt_dead(int64_t expire_ms, kvi__lt_op *op)
{
    return expire_ms != 0 && kvi__lt_now(op) >= expire_ms;
}

/* The expiry of an entry stored now with expire_s (0 = none). */
static inline int64_t kvi__lt_expire_at(kvi__lt_op *op, int64_t expire_s)
{
    return expire_s <= 0 ? 0 : kvi__lt_deadline(kvi__lt_now(op), expire_s);
}

/* A live entry's remaining time in whole seconds, rounded down (never more
 * than it has: 0 in its last second), -1 without an expiry. */
static inline int64_t kvi__lt_ttl_s(int64_t expire_ms, kvi__lt_op *op)
{
    return expire_ms ? (expire_ms - kvi__lt_now(op)) / 1000 : -1;
}

/* An absolute expiry read back from a snapshot (unix ms, 0 = none) as the
 * put_abs functions keep it: a negative one becomes 1 (long past), a later
 * one than KVI__LT_MAX_EXPIRE_MS is clamped to it. */
static inline int64_t kvi__lt_clamp_abs(int64_t expire_ms)
{
    if (expire_ms < 0)
        return 1;
    return expire_ms > KVI__LT_MAX_EXPIRE_MS ? KVI__LT_MAX_EXPIRE_MS : expire_ms;
}

/* Receives a value under the shard lock; must copy it and not call back
 * into the table.  Returns KVI_OK or an error that the operation returns. */
typedef kvi_status (*kvi__lt_value_fn)(void *ud, const void *data, size_t len);

/* A kvi__lt_value_fn reading the value as a counter into the int64_t *ud:
 * KVI_E_NOT_A_COUNTER unless it is a whole decimal that fits. */
static inline kvi_status kvi__lt_read_counter(void *ud, const void *data, size_t len)
{
    if (len == 0 || len > 20 || !kvi_parse_int64(data, len, ud))
        return KVI_E_NOT_A_COUNTER;
    return KVI_OK;
}

/* The counter rule both tables apply under the shard lock (kvi_add,
 * kvi_add_bounded): the current value is the decimal text val (vlen bytes)
 * when present, else 0 (a missing or expired key).  KVI_OK with *result =
 * current + delta; KVI_OUT_OF_BOUNDS with *result = current when that
 * leaves [min, max]; KVI_E_NOT_A_COUNTER, KVI_E_OVERFLOW (both checked
 * before the bounds; *result untouched). */
static inline kvi_status kvi__lt_counter_step(int present, const void *val, size_t vlen,
                                              int64_t delta, int64_t min, int64_t max,
                                              int64_t *result)
{
    int64_t cur = 0;
    if (present && (vlen == 0 || vlen > 20 || !kvi_parse_int64(val, vlen, &cur)))
        return KVI_E_NOT_A_COUNTER;
    if ((delta > 0 && cur > INT64_MAX - delta) || (delta < 0 && cur < INT64_MIN - delta))
        return KVI_E_OVERFLOW;
    if (cur + delta < min || cur + delta > max) {
        *result = cur;
        return KVI_OUT_OF_BOUNDS;
    }
    *result = cur + delta;
    return KVI_OK;
}

/* Receives one live entry under its shard lock (expire_ms 0 = none); same
 * rules as kvi__lt_value_fn. */
typedef kvi_status (*kvi__lt_entry_fn)(void *ud, const void *key, size_t key_len, const void *val,
                                       size_t val_len, int64_t expire_ms);

/* The LRU rule of both tables' eviction: an entry's age is how far its
 * 16-bit stamp lags the table's LRU clock (both in the low 16 bits of
 * stamp and clock); a dead entry is older than any live one.  Of the few
 * entries sampled, the oldest is evicted. */
static inline uint64_t kvi__lt_lru_age(int dead, uint64_t clock, uint64_t stamp)
{
    return dead ? UINT64_MAX : ((clock - stamp) & UINT64_C(0xFFFF));
}

/* The rule of a walk by glob (foreach and remove_chunk), written once:
 * each table walks its own chains under the shard lock and asks
 * kvi__lt_walk_step what to do with each entry.  fn NULL: the walk
 * removes the matching entries. */
typedef enum kvi__lt_step {
    KVI__LT_NEXT, /* go on to the next entry */
    KVI__LT_DROP, /* dead: unlink it, counted as expired */
    KVI__LT_TAKE, /* matches a removing walk: unlink it, counted as removed */
    KVI__LT_STOP  /* fn answered w->st, not KVI_OK: end the walk with it */
} kvi__lt_step;

typedef struct kvi__lt_walk {
    const char *glob;
    size_t glob_len;
    kvi__lt_entry_fn fn;
    void *ud;
    kvi__lt_op *op;
    kvi_status st;
} kvi__lt_walk;

static inline kvi__lt_step kvi__lt_walk_step(kvi__lt_walk *w, const void *key, size_t key_len,
                                             const void *val, size_t val_len, int64_t expire_ms)
{
    if (kvi__lt_dead(expire_ms, w->op))
        return KVI__LT_DROP;
    if (!kvi_glob_match(w->glob, w->glob_len, key, key_len))
        return KVI__LT_NEXT;
    if (!w->fn)
        return KVI__LT_TAKE;
    w->st = w->fn(w->ud, key, key_len, val, val_len, expire_ms);
    return w->st == KVI_OK ? KVI__LT_NEXT : KVI__LT_STOP;
}

/* Creates an empty table whose memory comes from k's allocator and whose
 * time is kvi_now_ms(k).  KVI_E_NOMEM. */
kvi_status kvi__lt_new(kvi *k, const kvi__lt_config *cfg, kvi__lt **out);

/* Frees the table and every entry.  NULL is accepted.  Not concurrent with
 * any other call on the table. */
void kvi__lt_free(kvi__lt *t);

/* Stores val under key with expiry expire_s seconds from now (0 = none,
 * clears an earlier one).  KVI_E_NOMEM, KVI_E_STORE_FULL (max_memory with
 * evict=none, or a value larger than max_memory).  Thread-safe. */
kvi_status kvi__lt_store(kvi__lt *t, const void *key, size_t key_len, const void *val,
                         size_t val_len, int64_t expire_s);

/* Inserts an entry with an absolute expiry (unix ms, 0 = none), as the
 * snapshot loader does.  An entry already expired is skipped (KVI_OK).
 * Same errors as kvi__lt_store.  Thread-safe. */
kvi_status kvi__lt_put_abs(kvi__lt *t, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_ms);

/* Looks key up and hands its value to fn.  KVI_NOT_FOUND when missing or
 * expired, else fn's status.  Thread-safe. */
kvi_status kvi__lt_fetch(kvi__lt *t, const void *key, size_t key_len, kvi__lt_value_fn fn,
                         void *ud);

/* A batch's run of fetches ops[0..n) (open KVI_OP_FETCH ops of one
 * batch, fresh: no value yet), each shard locked once per chunk of keys:
 * a found value is copied through sink into the batch's memory and its op
 * ended KVI_OK, a missing or expired key's op ended KVI_NOT_FOUND (both as
 * kvi_batch_op_done would end them; the thread's detail message is left
 * for the caller to clear).  An op that failed (KVI_E_NOMEM; the shared
 * table also KVI_E_CORRUPT or a lock's status) is left open with that
 * status in op->status, for the caller to end; returns how many were left
 * so, and adds the number ended KVI_NOT_FOUND to *misses.  Every expiry of one call is judged at one instant (the clock read
 * once, when first needed).  Thread-safe. */
size_t kvi__lt_fetch_ops(kvi__lt *t, kvi_batch_op *const *ops, size_t n, kvi__batch_sink *sink,
                         size_t *misses);

/* KVI_OK when key was removed, KVI_NOT_FOUND when there was none. */
kvi_status kvi__lt_remove(kvi__lt *t, const void *key, size_t key_len);

/* Atomically adds delta to the decimal counter under key (see kvi_add):
 * creates it at delta with expiry expire_s when missing, keeps the expiry
 * otherwise.  KVI_E_NOT_A_COUNTER, KVI_E_OVERFLOW (value unchanged),
 * KVI_E_NOMEM, KVI_E_STORE_FULL. */
kvi_status kvi__lt_add(kvi__lt *t, const void *key, size_t key_len, int64_t delta, int64_t expire_s,
                       int64_t *new_value);

/* kvi__lt_add applied only when the result stays within [min, max]
 * (kvi_add_bounded): otherwise KVI_OUT_OF_BOUNDS, nothing changed, *value
 * the current value (0 for a missing key).  A missing or expired key is
 * created at delta with expiry expire_s when delta is within the bounds.
 * Overflow and a non-counter value are reported before the bounds. */
kvi_status kvi__lt_add_bounded(kvi__lt *t, const void *key, size_t key_len, int64_t delta,
                               int64_t expire_s, int64_t min, int64_t max, int64_t *value);

/* Stores val under key only when no live entry has that key (an expired
 * one is replaced), expiry included, under the shard lock: KVI_KEY_EXISTS
 * when one has, else as kvi__lt_store. */
kvi_status kvi__lt_store_nx(kvi__lt *t, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s);

/* Reads a counter: KVI_NOT_FOUND, KVI_E_NOT_A_COUNTER. */
kvi_status kvi__lt_counter(kvi__lt *t, const void *key, size_t key_len, int64_t *out);

/* Remaining lifetime in whole seconds rounded down (never more than the
 * key has), -1 when none; KVI_NOT_FOUND. */
kvi_status kvi__lt_ttl(kvi__lt *t, const void *key, size_t key_len, int64_t *ttl_s);

/* Calls fn for every live entry whose key matches glob (kvi_glob_match),
 * one shard at a time under its lock, and drops expired entries met on the
 * way.  Stops at fn's first error and returns it. */
kvi_status kvi__lt_foreach(kvi__lt *t, const char *glob, size_t glob_len, kvi__lt_entry_fn fn,
                           void *ud);

/* Removes every live entry whose key matches glob; *removed gets the
 * number (expired entries dropped on the way are not counted). */
void kvi__lt_remove_chunk(kvi__lt *t, const char *glob, size_t glob_len, uint64_t *removed);

/* Fills *out with the table's content figures.  Thread-safe. */
void kvi__lt_stats_get(kvi__lt *t, kvi__lt_stats *out);

/* Bytes the table charges for one entry of these lengths (header, key,
 * value and an allocator word), as counted against max_memory. */
size_t kvi__lt_entry_cost(size_t key_len, size_t val_len);

/* Sum of the changes (inserts, replacements, removals, counter updates)
 * ever made to the table; a snapshot is due when it moved.  Thread-safe. */
uint64_t kvi__lt_changes(kvi__lt *t);

/* ---- the table interface ---------------------------------------------------- */

/*
 * The operations every table of the local engine offers, declared once
 * (as SQLite declares a VFS): one const instance per implementation,
 * kvi__lt_ops (table.c, in the process's heap) and kvi__sh_ops
 * (shm_table.c, in a shared segment).  local.c and snapshot.c reach a
 * table only through it.  Each slot has the contract of the kvi__lt_*
 * function of the same name above, with self the implementation's table;
 * the shared one adds KVI_E_CORRUPT (a lock that cannot be recovered, a
 * damaged link: shm.h).  Invariants both keep: an entry whose expiry
 * (unix ms) is <= now is never returned and is dropped by whoever meets
 * it; keys are binary, 1..KVI_MAX_KEY_LEN bytes; the content figures and
 * changes are counted per shard; every slot is thread-safe.
 */
typedef struct kvi__tab_ops {
    const char *name; /* "heap" or "shm" */
    kvi_status (*store)(void *self, const void *key, size_t key_len, const void *val,
                        size_t val_len, int64_t expire_s);
    kvi_status (*store_nx)(void *self, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_s);
    kvi_status (*put_abs)(void *self, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t expire_ms);
    kvi_status (*fetch)(void *self, const void *key, size_t key_len, kvi__lt_value_fn fn, void *ud);
    /* Optional (batches): a run of fetches, each shard locked once per
     * chunk (kvi__lt_fetch_ops; NULL: the engine fetches one by one). */
    size_t (*fetch_ops)(void *self, kvi_batch_op *const *ops, size_t n, kvi__batch_sink *sink,
                        size_t *misses);
    kvi_status (*remove)(void *self, const void *key, size_t key_len);
    kvi_status (*add)(void *self, const void *key, size_t key_len, int64_t delta, int64_t expire_s,
                      int64_t *new_value);
    kvi_status (*add_bounded)(void *self, const void *key, size_t key_len, int64_t delta,
                              int64_t expire_s, int64_t min, int64_t max, int64_t *value);
    kvi_status (*counter)(void *self, const void *key, size_t key_len, int64_t *out);
    kvi_status (*ttl)(void *self, const void *key, size_t key_len, int64_t *ttl_s);
    kvi_status (*foreach)(void *self, const char *glob, size_t glob_len, kvi__lt_entry_fn fn,
                          void *ud);
    void (*remove_chunk)(void *self, const char *glob, size_t glob_len, uint64_t *removed);
    void (*stats_get)(void *self, kvi__lt_stats *out);
    uint64_t (*changes)(void *self);
} kvi__tab_ops;

extern const kvi__tab_ops kvi__lt_ops;
extern const kvi__tab_ops kvi__sh_ops;

/* A table: its operations and the implementation's object they take. */
typedef struct kvi__tab {
    const kvi__tab_ops *ops;
    void *self;
} kvi__tab;

typedef struct kvi__sh kvi__sh;

/* ---- snapshot.c ---------------------------------------------------------- */

/* Checks a whole snapshot image (format in snapshot.c) and, only when all
 * of it is valid, inserts its live records into t.  KVI_E_CORRUPT with
 * *bad_offset (byte offset of the fault) and a reason in why (why_len
 * bytes, may be 0) for a truncated, corrupt or newer-format image; an
 * insert error (KVI_E_NOMEM, KVI_E_STORE_FULL) as such.  Never reads past
 * len.  This is the entry point of the snapshot fuzz target. */
kvi_status kvi__local_snapshot_load(kvi__lt *t, const void *buf, size_t len, uint64_t *bad_offset,
                                    char *why, size_t why_len);

/* kvi__local_snapshot_read and _save on either table. */
kvi_status kvi__local_snapshot_read_tab(kvi__tab t, kvi *k, const char *path, int *missing,
                                        char *err, size_t err_len);
kvi_status kvi__local_snapshot_save_tab(kvi__tab t, kvi *k, const char *path, char *err,
                                        size_t err_len);

/* Reads snapshot file path into t.  A file that does not exist sets
 * *missing and is KVI_OK.  Errors (KVI_E_IO, KVI_E_CORRUPT, ...) leave a
 * message naming the file (and the byte offset) in err. */
kvi_status kvi__local_snapshot_read(kvi__lt *t, kvi *k, const char *path, int *missing, char *err,
                                    size_t err_len);

/* Writes every live entry of t to path atomically (temporary file, fsync,
 * rename, directory fsync).  KVI_E_IO with a message in err. */
kvi_status kvi__local_snapshot_save(kvi__lt *t, kvi *k, const char *path, char *err,
                                    size_t err_len);

/* Takes the exclusive lock PATH.lock (flock, non-blocking) that guards
 * snapshot path against a second writer.  Returns the descriptor to keep
 * open while writing, -2 when another holder has it, -1 on another error;
 * err says which. */
int kvi__local_snapshot_lock(const char *path, char *err, size_t err_len);

#endif /* KVI_LOCAL_H */
