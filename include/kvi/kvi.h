/*
 * kvi.h -- the application API of kvi, one key-value interface over many
 * stores (the embedded "local" engine, redis, memcached, ...).
 *
 * Every operation names an ENGINE_ID: "scheme" (the engine's default
 * connection) or "scheme:group" (a named one), each defined by a URL:
 *
 *     kvi *k;
 *     kvi_new(&k);
 *     kvi_add_url(k, "redis:billing://127.0.0.1:6379/0");
 *     kvi_store(k, "local", "a", 1, "1", 1, 0);
 *
 * Conventions that hold for the whole API:
 *  - Every function that can fail returns a kvi_status; KVI_OK (0) is the
 *    only success value.  KVI_NOT_FOUND, KVI_OUT_OF_BOUNDS and
 *    KVI_KEY_EXISTS are normal outcomes, not errors (KVI_STATUS_IS_ERROR).
 *  - Keys and values are byte strings (pointer + length, NUL allowed).
 *  - On any status other than KVI_OK every out-parameter is left empty
 *    (zeroed) and is safe to pass to its free function.  The one exception:
 *    a bounded add/sub refused with KVI_OUT_OF_BOUNDS reports the current
 *    value in *value.
 *  - A kvi context and its connection handles may be used from many threads
 *    at once; configuration calls (kvi_add_url, kvi_set_*) are thread-safe
 *    too, but the setters are meant to be called before traffic starts.
 *  - The detail message of the last failed call is per thread and per
 *    context (kvi_errmsg) and never contains a password.
 */
#ifndef KVI_KVI_H
#define KVI_KVI_H

#include <stddef.h>
#include <stdint.h>

#include "kvi/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KVI_BUILDING) && defined(__GNUC__)
#define KVI_EXPORT __attribute__((visibility("default")))
#else
#define KVI_EXPORT
#endif

#if defined(__GNUC__)
#define KVI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KVI_PRINTF(f, a)
#endif

/*
 * Status codes.  Append-only: a code, once released, keeps its number and
 * name forever.  X(NAME, number, default message, CLI exit code).
 */
#define KVI_STATUS_MAP(X)                                                                          \
    X(OK, 0, "success", 0)                                                                         \
    X(NOT_FOUND, 1, "key not found", 1)                                                            \
    X(E_INVALID, 2, "invalid argument", 3)                                                         \
    X(E_BAD_URL, 3, "bad URL", 4)                                                                  \
    X(E_UNKNOWN_ENGINE, 4, "unknown engine id", 5)                                                 \
    X(E_MODULE_MISSING, 5, "engine module not available", 6)                                       \
    X(E_UNSUPPORTED, 6, "operation not supported by this engine", 7)                               \
    X(E_CONNECT, 7, "cannot connect to server", 8)                                                 \
    X(E_TIMEOUT, 8, "operation timed out", 9)                                                      \
    X(E_AUTH, 9, "authentication failed", 10)                                                      \
    X(E_IO, 10, "I/O error", 11)                                                                   \
    X(E_PROTOCOL, 11, "protocol error", 12)                                                        \
    X(E_NOT_A_COUNTER, 12, "value is not an integer counter", 13)                                  \
    X(E_OVERFLOW, 13, "counter overflow", 14)                                                      \
    X(E_NOMEM, 14, "out of memory", 15)                                                            \
    X(E_STORE_FULL, 15, "store is full", 16)                                                       \
    X(E_BACKEND, 16, "back-end error", 17)                                                         \
    X(E_EXISTS, 17, "engine id already defined", 18)                                               \
    X(E_LOCKED, 18, "resource is locked by another process", 19)                                   \
    X(E_CORRUPT, 19, "corrupt or unreadable data", 20)                                             \
    X(E_INTERNAL, 20, "internal error", 21)                                                        \
    X(OUT_OF_BOUNDS, 21, "change refused: result would leave [min, max]", 22)                      \
    X(KEY_EXISTS, 22, "key exists; not stored", 23)                                               \
    X(E_OUTCOME_UNKNOWN, 23, "sent but not answered: the change may or may not be applied", 24) \
    X(E_CANCELED, 24, "canceled before it was answered", 25)

typedef enum kvi_status {
#define KVI__STATUS_ENUM(name, num, msg, exitcode) KVI_##name = num,
    KVI_STATUS_MAP(KVI__STATUS_ENUM)
#undef KVI__STATUS_ENUM
} kvi_status;

/* Number of status codes defined by this version (one past the largest). */
#define KVI_STATUS_COUNT 25

/* 1 when st is an error (neither success nor one of the normal outcomes
 * KVI_NOT_FOUND, KVI_OUT_OF_BOUNDS, KVI_KEY_EXISTS); what kvi_stats.errors
 * counts.  Codes 2..20 are the errors of this version; KVI_OUT_OF_BOUNDS
 * and KVI_KEY_EXISTS were appended later and are refusals, not errors;
 * KVI_E_OUTCOME_UNKNOWN (a batch's state-changing operation that was sent
 * but never answered) and KVI_E_CANCELED (kvi_batch_cancel) are errors.
 * st is evaluated more than once. */
#define KVI_STATUS_IS_ERROR(st)                                                                    \
    ((st) != KVI_OK && (st) != KVI_NOT_FOUND && (st) != KVI_OUT_OF_BOUNDS && (st) != KVI_KEY_EXISTS)

/* Static English text for a status; never NULL ("unknown status" for codes
 * this version does not know).  Thread-safe. */
KVI_EXPORT const char *kvi_strerror(kvi_status st);

/* Symbolic name of a status ("KVI_E_TIMEOUT"); never NULL.  Thread-safe. */
KVI_EXPORT const char *kvi_status_name(kvi_status st);

/* Limits that the core enforces before any engine sees a call. */
#define KVI_MAX_KEY_LEN 1024u              /* keys are 1..1024 bytes */
#define KVI_MAX_VALUE_LEN (512u << 20)     /* values are 0..512 MiB (engines may be lower) */
#define KVI_MAX_EXPIRE_S ((int64_t)INT32_MAX) /* expire_s is 0..2^31-1 */
#define KVI_MAX_QUERY_LEN (1u << 20)        /* raw query text */
#define KVI_MAX_ID_LEN 255u                 /* engine id "scheme:group" */

/* Opaque context.  Owns engines, connections, allocator, log hook, clock and
 * statistics.  No state is shared between contexts. */
typedef struct kvi kvi;

/* Opaque connection handle: one engine id of one context.  Owned by the
 * context; valid until kvi_free(). */
typedef struct kvi_conn kvi_conn;

/* Opaque reply tree of raw queries and key listings. */
typedef struct kvi_reply kvi_reply;

/*
 * A fetched value.  `data` is NUL-terminated for convenience (the NUL is not
 * counted in `len`), owned by the caller and released with kvi_value_free().
 * An empty value has len 0 and a non-NULL data; a value left empty by a
 * failed call has data NULL and len 0.  The remaining fields are private.
 */
typedef struct kvi_value {
    char *data;
    size_t len;
    void (*free_fn_)(void *ud, void *ptr);
    void *free_ud_;
} kvi_value;

/* The empty value; use it to initialise a kvi_value before a call. */
#define KVI_VALUE_INIT {NULL, 0, NULL, NULL}

/* Releases a value's bytes and resets it to empty.  NULL and already empty
 * values are accepted.  May be called after the context is freed. */
KVI_EXPORT void kvi_value_free(kvi_value *v);

/* ---------------------------------------------------------------------- */
/* Context                                                                 */

/* Memory allocator of a context.  All three functions are required; `ud` is
 * passed back unchanged.  realloc_fn/free_fn follow realloc()/free(). */
typedef struct kvi_allocator {
    void *(*malloc_fn)(void *ud, size_t size);
    void *(*realloc_fn)(void *ud, void *ptr, size_t size);
    void (*free_fn)(void *ud, void *ptr);
    void *ud;
} kvi_allocator;

/* Creates a context with the C library's allocator.  On success *out owns a
 * new context that the caller frees with kvi_free().  Returns KVI_E_INVALID
 * when out is NULL, KVI_E_NOMEM when memory runs out. */
KVI_EXPORT kvi_status kvi_new(kvi **out);

/* Same as kvi_new() but the context, its handles, fetched values and the
 * local engine's entries go through *alloc (copied; alloc->ud must outlive
 * the context and every value it returned).  Objects that exist without a
 * context use the C library's malloc: replies (kvi_reply), parsed URLs
 * (kvi_url) and engine scratch buffers; third-party client libraries
 * (hiredis, libmemcached) keep their own allocator. */
KVI_EXPORT kvi_status kvi_new_with_allocator(kvi **out, const kvi_allocator *alloc);

/* Closes every connection, unloads modules and frees the context.  Values
 * and replies already returned stay valid.  NULL is accepted.  Must not run
 * concurrently with any other call on the same context. */
KVI_EXPORT void kvi_free(kvi *k);

/*
 * Defines one engine id from a URL (grammar in docs/urls.md):
 *   scheme [":" group] "://" [user[:password]@] [host[:port][,host[:port]]...]
 *          ["/" [database]] ["?" name=value[&name=value]...]
 * The engine of `scheme` is looked up among registered engines, then loaded
 * as module kvi_<scheme>.so from the module path.  Returns KVI_E_BAD_URL
 * (syntax), KVI_E_EXISTS (id already defined, or being defined by another
 * thread), KVI_E_MODULE_MISSING (no engine of that scheme), KVI_E_INVALID
 * (unknown option or bad option value) or the engine's open error (a
 * non-lazy network engine connects here: KVI_E_CONNECT, KVI_E_AUTH, ...).
 * On failure nothing is defined.  Thread-safe; the engine's open() runs
 * outside the context's lock, so other threads' calls do not wait for it.
 */
KVI_EXPORT kvi_status kvi_add_url(kvi *k, const char *url);

/*
 * Reads a configuration file: one URL per line; blank lines and lines whose
 * first non-blank character is '#' are ignored; surrounding blanks are
 * trimmed.  Stops at the first bad line with its status and a detail message
 * naming the file and line; ids defined by earlier lines stay defined.
 */
KVI_EXPORT kvi_status kvi_load_config(kvi *k, const char *path);

/* Directory list (':'-separated) searched for engine modules; replaces the
 * default ($KVI_MODULE_PATH when set, else the build tree's modules when
 * this libkvi runs from its build tree, then the install directory).
 * Copied.  KVI_E_INVALID (NULL), KVI_E_NOMEM. */
KVI_EXPORT kvi_status kvi_set_module_path(kvi *k, const char *path);

typedef enum kvi_log_level {
    KVI_LOG_ERROR = 0,
    KVI_LOG_WARN = 1,
    KVI_LOG_INFO = 2,
    KVI_LOG_DEBUG = 3
} kvi_log_level;

/* Log hook: called with a complete message (no trailing newline) that never
 * holds a password.  May be called from any thread that uses the context,
 * concurrently; it must not call back into the same context. */
typedef void (*kvi_log_fn)(void *ud, kvi_log_level level, const char *msg);

/* Installs the log hook (NULL: logging off, the default) and the most
 * verbose level passed to it.  Thread-safe: a call in flight sees either
 * the old hook with its ud or the new one with its ud; the old ud must stay
 * valid until kvi_free().  KVI_E_INVALID (k NULL), KVI_E_NOMEM. */
KVI_EXPORT kvi_status kvi_set_log(kvi *k, kvi_log_fn fn, void *ud, kvi_log_level max_level);

/* Operations that take longer than threshold_us microseconds are counted as
 * slow in the stats and logged at KVI_LOG_WARN.  0 disables the check.  The
 * default is 100000 (100 ms), applied once a log hook is installed
 * (kvi_set_log): a context with neither a log hook nor an explicit
 * threshold reads no clock per call, and its slow_ops and total_us stay 0.
 * Thread-safe. */
KVI_EXPORT void kvi_set_slow_threshold(kvi *k, uint64_t threshold_us);

/* Clock used for expiry: returns the current time in milliseconds since the
 * Unix epoch.  The default (fn NULL) reads CLOCK_REALTIME.  Tests and
 * simulations install their own to move time without sleeping.  fn must be
 * thread-safe; replacing it is, as for kvi_set_log (the old ud stays valid
 * until kvi_free()).  Engines whose server keeps time (redis, memcached)
 * ignore it.  KVI_E_INVALID (k NULL), KVI_E_NOMEM. */
typedef int64_t (*kvi_clock_fn)(void *ud);
KVI_EXPORT kvi_status kvi_set_clock(kvi *k, kvi_clock_fn fn, void *ud);

/* The context's current time in ms (its clock); the real time for NULL. */
KVI_EXPORT int64_t kvi_now_ms(kvi *k);

/* Detail message of the last call made by this thread on this context when
 * that call failed, or "" when there is none (after a call that succeeded
 * or ended in an outcome such as KVI_NOT_FOUND it is "", even when the
 * engine retried internally after a failure).  Valid until this thread's
 * next call on any kvi context.  Never contains a password. */
KVI_EXPORT const char *kvi_errmsg(const kvi *k);

/* ---------------------------------------------------------------------- */
/* Engine ids and handles                                                  */

/* Capability bits an engine reports.  The core answers KVI_E_UNSUPPORTED by
 * itself for an operation whose bit is missing. */
#define KVI_CAP_TTL (1u << 0)          /* expire_s > 0 honoured; ttl() works */
#define KVI_CAP_COUNTERS (1u << 1)     /* add, sub, counter_fetch */
#define KVI_CAP_NEG_COUNTERS (1u << 2) /* counters may go below zero */
#define KVI_CAP_BINARY (1u << 3)       /* any bytes natively (others map keys) */
#define KVI_CAP_ITERATE (1u << 4)      /* keys() and remove_chunk() */
#define KVI_CAP_RAW_QUERY (1u << 5)    /* raw_query() in a native language */
#define KVI_CAP_PERSISTENT (1u << 6)   /* data survives a restart */
#define KVI_CAP_SHARED (1u << 7)       /* shared between processes */
#define KVI_CAP_CONDITIONAL (1u << 8)  /* add_bounded/sub_bounded and store_nx, atomic */

/* One past the highest capability bit this version defines: the bits are
 * (1u << 0) .. (1u << (KVI_CAP_BITS - 1)). */
#define KVI_CAP_BITS 9

/* The lower-case name of one capability bit ("ttl", "neg_counters",
 * "conditional", ...), the name the kvi command and the Lua binding show;
 * NULL for 0, for a value with more than one bit set and for a bit this
 * version does not know.  Static storage; thread-safe. */
KVI_EXPORT const char *kvi_cap_name(uint32_t cap);

/* Looks up (and on first use of "local", defines as local://) an engine id
 * and returns its handle, owned by the context.  KVI_E_UNKNOWN_ENGINE when
 * the id is not defined, KVI_E_INVALID for a malformed id.  Thread-safe. */
KVI_EXPORT kvi_status kvi_conn_get(kvi *k, const char *id, kvi_conn **out);

/* The engine id of a handle ("redis:billing"); owned by the handle. */
KVI_EXPORT const char *kvi_conn_id(const kvi_conn *c);

/* The engine name of a handle ("redis"). */
KVI_EXPORT const char *kvi_conn_engine(const kvi_conn *c);

/* The handle's KVI_CAP_* bits. */
KVI_EXPORT uint32_t kvi_conn_caps(const kvi_conn *c);

/* Calls fn once per defined engine id (in definition order) with the id's
 * handle.  Returns KVI_E_INVALID on NULL arguments. */
KVI_EXPORT kvi_status kvi_foreach_conn(kvi *k, void (*fn)(void *ud, kvi_conn *c), void *ud);

/* ---------------------------------------------------------------------- */
/* Operations.  Each exists in an engine-id form (kvi_X(k, id, ...)) and a
 * handle form (kvi_conn_X(c, ...)) for hot paths; both behave the same.
 * Every one rejects NULL, empty or oversized arguments with KVI_E_INVALID
 * before the engine is called.                                            */

/* Stores value under key.  expire_s 0 = never expires (and clears an earlier
 * expiry); > 0 = gone after that many seconds; < 0 is KVI_E_INVALID. */
KVI_EXPORT kvi_status kvi_store(kvi *k, const char *id, const void *key, size_t key_len,
                                const void *val, size_t val_len, int64_t expire_s);
KVI_EXPORT kvi_status kvi_conn_store(kvi_conn *c, const void *key, size_t key_len,
                                     const void *val, size_t val_len, int64_t expire_s);

/* Fetches the value of key into *out (caller frees with kvi_value_free).
 * KVI_NOT_FOUND when there is none; *out is then empty.  A counter fetches
 * as its decimal text.  *out must be KVI_VALUE_INIT or a value an earlier
 * call filled: one that still holds data is released first, so one kvi_value
 * may be reused across fetches without leaking (never pass an uninitialised
 * one). */
KVI_EXPORT kvi_status kvi_fetch(kvi *k, const char *id, const void *key, size_t key_len,
                                kvi_value *out);
KVI_EXPORT kvi_status kvi_conn_fetch(kvi_conn *c, const void *key, size_t key_len,
                                     kvi_value *out);

/* Removes key: KVI_OK when a key was removed, KVI_NOT_FOUND when none was. */
KVI_EXPORT kvi_status kvi_remove(kvi *k, const char *id, const void *key, size_t key_len);
KVI_EXPORT kvi_status kvi_conn_remove(kvi_conn *c, const void *key, size_t key_len);

/*
 * Atomically adds delta to the 64-bit counter under key and stores the new
 * value in *new_value (may be NULL).  A missing key is created as 0 + delta
 * with expiry expire_s (0 = none); an existing key keeps its expiry.
 * KVI_E_NOT_A_COUNTER when the value is not a decimal int64 (value
 * unchanged), KVI_E_OVERFLOW when the result does not fit (value unchanged).
 */
KVI_EXPORT kvi_status kvi_add(kvi *k, const char *id, const void *key, size_t key_len,
                              int64_t delta, int64_t expire_s, int64_t *new_value);
KVI_EXPORT kvi_status kvi_conn_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                   int64_t expire_s, int64_t *new_value);

/* Same as add with -delta.  delta INT64_MIN is KVI_E_INVALID (its negation
 * does not exist), as in Redis' DECRBY. */
KVI_EXPORT kvi_status kvi_sub(kvi *k, const char *id, const void *key, size_t key_len,
                              int64_t delta, int64_t expire_s, int64_t *new_value);
KVI_EXPORT kvi_status kvi_conn_sub(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                   int64_t expire_s, int64_t *new_value);

/*
 * Bounded add: atomically (with respect to every other operation on the key)
 * adds delta to the counter under key only when the result stays within
 * [min, max] (inclusive).  On KVI_OK *value (may be NULL) is the new value.
 * When the result would leave the bounds nothing changes and the call
 * returns KVI_OUT_OF_BOUNDS, a normal outcome, with the current value in
 * *value (0 when the key is missing) -- the one exception to "outputs are
 * empty unless KVI_OK".  A missing (or expired) key is created as 0 + delta
 * with expiry expire_s (0 = none) when 0 + delta is within the bounds, and
 * refused otherwise; an existing key keeps its expiry.  KVI_E_OVERFLOW when
 * the sum does not fit in int64 and KVI_E_NOT_A_COUNTER when the value is
 * not a decimal int64 (both checked before the bounds; value unchanged).
 * KVI_E_INVALID when min > max; KVI_E_UNSUPPORTED on an engine without
 * KVI_CAP_CONDITIONAL.  Use INT64_MIN / INT64_MAX for an open side.
 */
KVI_EXPORT kvi_status kvi_add_bounded(kvi *k, const char *id, const void *key, size_t key_len,
                                      int64_t delta, int64_t expire_s, int64_t min, int64_t max,
                                      int64_t *value);
KVI_EXPORT kvi_status kvi_conn_add_bounded(kvi_conn *c, const void *key, size_t key_len,
                                           int64_t delta, int64_t expire_s, int64_t min,
                                           int64_t max, int64_t *value);

/* Bounded sub: kvi_add_bounded with -delta (so `sub 3 min 0` on a counter
 * at 2 is KVI_OUT_OF_BOUNDS and leaves 2).  delta INT64_MIN is
 * KVI_E_INVALID. */
KVI_EXPORT kvi_status kvi_sub_bounded(kvi *k, const char *id, const void *key, size_t key_len,
                                      int64_t delta, int64_t expire_s, int64_t min, int64_t max,
                                      int64_t *value);
KVI_EXPORT kvi_status kvi_conn_sub_bounded(kvi_conn *c, const void *key, size_t key_len,
                                           int64_t delta, int64_t expire_s, int64_t min,
                                           int64_t max, int64_t *value);

/*
 * Store if absent: stores value under key with expiry expire_s (0 = none),
 * set in the same atomic step, only when the key does not exist; an expired
 * key counts as absent.  Otherwise changes nothing and returns
 * KVI_KEY_EXISTS, a normal outcome.  Of any number of concurrent callers on
 * one absent key exactly one gets KVI_OK.  Arguments as kvi_store;
 * KVI_E_UNSUPPORTED on an engine without KVI_CAP_CONDITIONAL.
 */
KVI_EXPORT kvi_status kvi_store_nx(kvi *k, const char *id, const void *key, size_t key_len,
                                   const void *val, size_t val_len, int64_t expire_s);
KVI_EXPORT kvi_status kvi_conn_store_nx(kvi_conn *c, const void *key, size_t key_len,
                                        const void *val, size_t val_len, int64_t expire_s);

/* Reads a counter: KVI_NOT_FOUND when missing, KVI_E_NOT_A_COUNTER when the
 * value is not a decimal int64. */
KVI_EXPORT kvi_status kvi_counter_fetch(kvi *k, const char *id, const void *key,
                                        size_t key_len, int64_t *out);
KVI_EXPORT kvi_status kvi_conn_counter_fetch(kvi_conn *c, const void *key, size_t key_len,
                                             int64_t *out);

/* Runs a query in the engine's native language (a Redis command line with
 * quoting, ...) and returns its typed reply tree in *out (caller frees with
 * kvi_reply_free).  An error reply from the server is KVI_OK with a reply of
 * type KVI_REPLY_ERROR.  KVI_E_UNSUPPORTED where the engine has none. */
KVI_EXPORT kvi_status kvi_raw_query(kvi *k, const char *id, const char *query, size_t query_len,
                                    kvi_reply **out);
KVI_EXPORT kvi_status kvi_conn_raw_query(kvi_conn *c, const char *query, size_t query_len,
                                         kvi_reply **out);

/* Lists the live keys matching a glob (* ? [abc] [a-z] [^a] \x; NULL or ""
 * means "*") as a reply of type KVI_REPLY_ARRAY of KVI_REPLY_STRING, in no
 * particular order.  Expired keys are never listed. */
KVI_EXPORT kvi_status kvi_keys(kvi *k, const char *id, const char *glob, size_t glob_len,
                               kvi_reply **out);
KVI_EXPORT kvi_status kvi_conn_keys(kvi_conn *c, const char *glob, size_t glob_len,
                                    kvi_reply **out);

/* Removes every key matching a glob (same syntax; an empty glob is
 * KVI_E_INVALID so that nothing is removed by accident: pass "*").
 * *removed (may be NULL) receives the number removed. */
KVI_EXPORT kvi_status kvi_remove_chunk(kvi *k, const char *id, const char *glob,
                                      size_t glob_len, uint64_t *removed);
KVI_EXPORT kvi_status kvi_conn_remove_chunk(kvi_conn *c, const char *glob, size_t glob_len,
                                           uint64_t *removed);

/* Remaining lifetime of key in whole seconds, rounded down (never more than
 * the key has: 0 in its last second), in *ttl_s, or -1 when it never
 * expires.  KVI_NOT_FOUND when missing. */
KVI_EXPORT kvi_status kvi_ttl(kvi *k, const char *id, const void *key, size_t key_len,
                              int64_t *ttl_s);
KVI_EXPORT kvi_status kvi_conn_ttl(kvi_conn *c, const void *key, size_t key_len,
                                   int64_t *ttl_s);

/* Checks that the store answers: KVI_OK, or the connection's error
 * (KVI_E_CONNECT, KVI_E_TIMEOUT, KVI_E_AUTH, ...).  An engine without a
 * server (local) answers KVI_OK without I/O. */
KVI_EXPORT kvi_status kvi_ping(kvi *k, const char *id);
KVI_EXPORT kvi_status kvi_conn_ping(kvi_conn *c);

/* ---------------------------------------------------------------------- */
/* Batches: many operations, one round trip per server                     */

/* Opaque batch of operations (docs/batch.md).  Owned by the caller, freed
 * with kvi_batch_free(); used by one thread at a time (different batches of
 * one context may run in different threads at once). */
typedef struct kvi_batch kvi_batch;

/* The kind of an operation of a batch. */
typedef enum kvi_op_kind {
    KVI_OP_STORE = 1,
    KVI_OP_STORE_NX = 2,
    KVI_OP_FETCH = 3,
    KVI_OP_REMOVE = 4,
    KVI_OP_ADD = 5,
    KVI_OP_SUB = 6,
    KVI_OP_ADD_BOUNDED = 7,
    KVI_OP_SUB_BOUNDED = 8,
    KVI_OP_COUNTER_FETCH = 9,
    KVI_OP_RAW_QUERY = 10
} kvi_op_kind;

/* A new empty batch of context k in *out.  KVI_E_INVALID (NULL arguments),
 * KVI_E_NOMEM.  The batch must be freed before the context. */
KVI_EXPORT kvi_status kvi_batch_new(kvi *k, kvi_batch **out);

/* Frees a batch with its copies of keys and values and every result
 * (values, replies, messages).  NULL is accepted. */
KVI_EXPORT void kvi_batch_free(kvi_batch *b);

/* Empties a batch (operations and results) for reuse; keeps its memory.
 * A pending batch (kvi_batch_start) is canceled first, as is one freed. */
KVI_EXPORT void kvi_batch_clear(kvi_batch *b);

/*
 * Adding operations.  Each call appends one operation to the batch, with
 * the arguments of the single call of the same name (kvi_store, kvi_fetch,
 * ...); keys, values and queries are copied, so the caller's buffers may
 * be reused at once.  The operation's index is its position in the order
 * of the calls, from 0 (kvi_batch_count() - 1 right after the call).
 * Nothing is sent before kvi_batch_run().
 * Returns KVI_OK when the operation is queued.  An argument that the
 * single call would reject (KVI_E_INVALID, KVI_E_UNSUPPORTED,
 * KVI_E_UNKNOWN_ENGINE for an id that is not defined) is returned here and
 * also becomes the operation's final status: it still takes its index and
 * is never sent.  Only KVI_E_NOMEM (nothing appended) and KVI_E_INVALID for
 * a NULL batch or one that is pending (kvi_batch_start) leave the count
 * unchanged.
 */
KVI_EXPORT kvi_status kvi_batch_store(kvi_batch *b, const char *id, const void *key,
                                      size_t key_len, const void *val, size_t val_len,
                                      int64_t expire_s);
KVI_EXPORT kvi_status kvi_batch_store_nx(kvi_batch *b, const char *id, const void *key,
                                         size_t key_len, const void *val, size_t val_len,
                                         int64_t expire_s);
KVI_EXPORT kvi_status kvi_batch_fetch(kvi_batch *b, const char *id, const void *key,
                                      size_t key_len);
KVI_EXPORT kvi_status kvi_batch_remove(kvi_batch *b, const char *id, const void *key,
                                       size_t key_len);
KVI_EXPORT kvi_status kvi_batch_add(kvi_batch *b, const char *id, const void *key, size_t key_len,
                                    int64_t delta, int64_t expire_s);
KVI_EXPORT kvi_status kvi_batch_sub(kvi_batch *b, const char *id, const void *key, size_t key_len,
                                    int64_t delta, int64_t expire_s);
KVI_EXPORT kvi_status kvi_batch_add_bounded(kvi_batch *b, const char *id, const void *key,
                                            size_t key_len, int64_t delta, int64_t expire_s,
                                            int64_t min, int64_t max);
KVI_EXPORT kvi_status kvi_batch_sub_bounded(kvi_batch *b, const char *id, const void *key,
                                            size_t key_len, int64_t delta, int64_t expire_s,
                                            int64_t min, int64_t max);
KVI_EXPORT kvi_status kvi_batch_counter_fetch(kvi_batch *b, const char *id, const void *key,
                                              size_t key_len);
KVI_EXPORT kvi_status kvi_batch_raw_query(kvi_batch *b, const char *id, const char *query,
                                          size_t query_len);

/*
 * Runs every operation added since the last run: the operations of one
 * engine id go to its engine together (a Redis pipeline, a memcached
 * multi-get, ...; an engine without batch support runs them one by one),
 * and operations on one key take effect in the order they were added.
 * timeout_ms bounds the whole run (0: no bound beyond each connection's
 * own timeouts); an operation not sent when it passes fails with
 * KVI_E_TIMEOUT.  A state-changing operation (store_nx, add, sub and the
 * bounded ones) is never sent twice: when it was sent and no answer came
 * its status is KVI_E_OUTCOME_UNKNOWN.
 * Returns KVI_OK when every operation ended in KVI_OK or a normal outcome
 * (KVI_NOT_FOUND, KVI_OUT_OF_BOUNDS, KVI_KEY_EXISTS), else the status of
 * the first operation (by index) that ended in an error; the results of
 * the others are valid either way.  KVI_E_INVALID for a NULL batch,
 * KVI_E_NOMEM when the run could not start (nothing sent), KVI_E_INVALID
 * for a batch that is pending (kvi_batch_start).  More operations may be
 * added afterwards and run by the next call.
 */
KVI_EXPORT kvi_status kvi_batch_run(kvi_batch *b, uint32_t timeout_ms);

/* Number of operations in the batch. */
KVI_EXPORT size_t kvi_batch_count(const kvi_batch *b);

/* Number of operations that ended in an error (KVI_STATUS_IS_ERROR). */
KVI_EXPORT size_t kvi_batch_failed(const kvi_batch *b);

/* Kind of operation i; 0 when i is out of range. */
KVI_EXPORT kvi_op_kind kvi_batch_kind(const kvi_batch *b, size_t i);

/* Status of operation i: its outcome once run (KVI_OK, KVI_NOT_FOUND,
 * KVI_OUT_OF_BOUNDS, KVI_KEY_EXISTS or an error), the rejection of its
 * arguments, or KVI_E_INVALID when i is out of range or it has not run. */
KVI_EXPORT kvi_status kvi_batch_status(const kvi_batch *b, size_t i);

/* Detail message of operation i when its status is an error, else "";
 * owned by the batch, never contains a password. */
KVI_EXPORT const char *kvi_batch_errmsg(const kvi_batch *b, size_t i);

/* Value fetched by operation i (a fetch that ended KVI_OK): its bytes,
 * NUL-terminated (the NUL not counted in *len, which may be NULL), owned
 * by the batch until it is cleared or freed; NULL otherwise. */
KVI_EXPORT const char *kvi_batch_value(const kvi_batch *b, size_t i, size_t *len);

/* Moves the value of operation i into *out (which must be empty or
 * KVI_VALUE_INIT); the caller then frees it with kvi_value_free.  KVI_OK,
 * or KVI_E_INVALID (no value to take; *out left empty). */
KVI_EXPORT kvi_status kvi_batch_take_value(kvi_batch *b, size_t i, kvi_value *out);

/* Integer of operation i: the new value of add/sub and the bounded ones
 * (the current value when refused with KVI_OUT_OF_BOUNDS), the counter of
 * counter_fetch; 0 otherwise. */
KVI_EXPORT int64_t kvi_batch_integer(const kvi_batch *b, size_t i);

/* Reply tree of raw query i (KVI_OK), owned by the batch; NULL otherwise. */
KVI_EXPORT const kvi_reply *kvi_batch_reply(const kvi_batch *b, size_t i);

/* ---------------------------------------------------------------------- */
/* Non-blocking batches (docs/async.md)                                    */

/* What a pending batch waits for: readiness of fd (KVI_WAIT_READ and/or
 * KVI_WAIT_WRITE), or the deadline (CLOCK_MONOTONIC milliseconds; 0 =
 * none), whichever comes first; then call kvi_batch_resume().  fd is -1
 * when only the deadline matters. */
typedef struct kvi_wait {
    int fd;
    unsigned events;
    int64_t deadline_ms;
} kvi_wait;

#define KVI_WAIT_READ 1u
#define KVI_WAIT_WRITE 2u

/* Called once when a started batch has ended (done, failed, timed out or
 * canceled), from kvi_batch_start/_resume/_cancel; it may read the results
 * but must not free, clear, run or start the batch. */
typedef void (*kvi_batch_done_fn)(void *ud, kvi_batch *b);

/*
 * Starts running the operations added since the last run without
 * blocking: returns 1 when the batch is done at once (its results are
 * there, as after kvi_batch_run, and done was called), 0 when it is
 * pending (wait as *w says, then kvi_batch_resume), -1 for a NULL
 * argument or a batch already pending.  timeout_ms bounds the whole run
 * (0: each connection's timeout).  done (may be NULL) is called with ud
 * when it ends.  Engines that cannot work without blocking (memcached, a
 * redis connection in cluster mode or whose mode is not known yet, raw
 * queries, wait_replicas) run their operations within the call; the local
 * engine never waits.  One pending batch per kvi_batch; many batches may
 * be pending at once, each on its own connection.
 */
KVI_EXPORT int kvi_batch_start(kvi_batch *b, uint32_t timeout_ms, kvi_batch_done_fn done, void *ud,
                               kvi_wait *w);

/* Continues a pending batch after what *w named happened (or at any time:
 * a step that cannot advance waits again).  Returns 1 when done, 0 when
 * still pending (*w says for what: the descriptor may have changed), -1
 * when b is not pending.  Past the deadline the operations not answered
 * end with KVI_E_TIMEOUT (state changes already written with
 * KVI_E_OUTCOME_UNKNOWN). */
KVI_EXPORT int kvi_batch_resume(kvi_batch *b, kvi_wait *w);

/* Ends a pending batch now: operations not answered end with
 * KVI_E_CANCELED (a state change already written with
 * KVI_E_OUTCOME_UNKNOWN); done is called.  No effect on a batch that is
 * not pending. */
KVI_EXPORT void kvi_batch_cancel(kvi_batch *b);

/*
 * Non-blocking single operations: an operation is a batch of one.  Each
 * kvi_start_X(b, <the arguments of kvi_X>, timeout_ms, done, ud, w)
 * empties b (a pending run is canceled first, as by kvi_batch_clear),
 * adds the one operation as kvi_batch_X would and starts it as
 * kvi_batch_start does: 1 when it is done at once (the local engine, an
 * argument the single call refuses, an engine that cannot wait; done has
 * been called), 0 when it is pending (wait as *w says, then
 * kvi_batch_resume(b, w) until it returns 1; kvi_batch_cancel(b) ends it
 * early), -1 for a NULL b or w or when out of memory adding it.
 * The result is operation 0 of b, read as for any batch and typed like
 * the single call's out-parameters: kvi_batch_status(b, 0) (its status,
 * KVI_E_OUTCOME_UNKNOWN for a state change sent and not answered),
 * kvi_batch_errmsg(b, 0), kvi_batch_value(b, 0, &len) or
 * kvi_batch_take_value(b, 0, &v) (fetch), kvi_batch_integer(b, 0) (add,
 * sub, the bounded ones, counter_fetch), kvi_batch_reply(b, 0) (raw
 * query); owned by b until the next start, clear or free.  One operation
 * in flight per kvi_batch: keep one kvi_batch per operation you want
 * pending at once (reusing it costs no allocation).  docs/async.md.
 */
KVI_EXPORT int kvi_start_store(kvi_batch *b, const char *id, const void *key, size_t key_len,
                               const void *val, size_t val_len, int64_t expire_s,
                               uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_store_nx(kvi_batch *b, const char *id, const void *key, size_t key_len,
                                  const void *val, size_t val_len, int64_t expire_s,
                                  uint32_t timeout_ms, kvi_batch_done_fn done, void *ud,
                                  kvi_wait *w);
KVI_EXPORT int kvi_start_fetch(kvi_batch *b, const char *id, const void *key, size_t key_len,
                               uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_remove(kvi_batch *b, const char *id, const void *key, size_t key_len,
                                uint32_t timeout_ms, kvi_batch_done_fn done, void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_add(kvi_batch *b, const char *id, const void *key, size_t key_len,
                             int64_t delta, int64_t expire_s, uint32_t timeout_ms,
                             kvi_batch_done_fn done, void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_sub(kvi_batch *b, const char *id, const void *key, size_t key_len,
                             int64_t delta, int64_t expire_s, uint32_t timeout_ms,
                             kvi_batch_done_fn done, void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_add_bounded(kvi_batch *b, const char *id, const void *key,
                                     size_t key_len, int64_t delta, int64_t expire_s, int64_t min,
                                     int64_t max, uint32_t timeout_ms, kvi_batch_done_fn done,
                                     void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_sub_bounded(kvi_batch *b, const char *id, const void *key,
                                     size_t key_len, int64_t delta, int64_t expire_s, int64_t min,
                                     int64_t max, uint32_t timeout_ms, kvi_batch_done_fn done,
                                     void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_counter_fetch(kvi_batch *b, const char *id, const void *key,
                                       size_t key_len, uint32_t timeout_ms, kvi_batch_done_fn done,
                                       void *ud, kvi_wait *w);
KVI_EXPORT int kvi_start_raw_query(kvi_batch *b, const char *id, const char *query,
                                   size_t query_len, uint32_t timeout_ms, kvi_batch_done_fn done,
                                   void *ud, kvi_wait *w);

/* ---------------------------------------------------------------------- */
/* Statistics                                                              */

/*
 * Counters of one engine id since it was defined.  The core fills the
 * operation counters; an engine that keeps content figures sets
 * has_content and the fields after it.
 */
typedef struct kvi_stats {
    uint64_t ops;        /* operations that reached the engine */
    uint64_t errors;     /* of those, ended with an error (KVI_STATUS_IS_ERROR) */
    uint64_t misses;     /* of those, ended with KVI_NOT_FOUND */
    uint64_t slow_ops;   /* of those, slower than the slow threshold */
    uint64_t rejected;   /* calls refused by the core before the engine */
    uint64_t total_us;   /* time spent in the engine, microseconds */
    int has_content;     /* the fields below are filled */
    uint64_t entries;    /* live entries */
    uint64_t bytes;      /* bytes of keys and values */
    uint64_t hits;       /* fetches that found a key */
    uint64_t expired;    /* entries removed by expiry */
    uint64_t evicted;    /* entries removed by eviction */
    /* Nonzero when ops, errors, misses and hits are the totals of every
     * process attached to a shared collection (the local engine's shm=,
     * counted in its segment), not this handle's alone; slow_ops, rejected
     * and total_us stay this handle's. */
    uint64_t shared;
    uint64_t processes; /* with shared: processes attached now (0 for a read-only look) */
    /* Of hits, the fetches a near cache of this process answered without
     * asking the server (redis client_cache=N; 0 elsewhere). */
    uint64_t near_hits;
    uint64_t reserved_[5];
} kvi_stats;

/* Fills *out with the handle's statistics (a consistent-enough snapshot:
 * counters are read one by one while other threads run).  KVI_E_INVALID
 * for NULL arguments; an engine's content statistics may fail with its
 * error, and then *out is all zero.  Thread-safe. */
KVI_EXPORT kvi_status kvi_conn_stats(kvi_conn *c, kvi_stats *out);
KVI_EXPORT kvi_status kvi_stats_get(kvi *k, const char *id, kvi_stats *out);

/* ---------------------------------------------------------------------- */
/* Replies                                                                 */

typedef enum kvi_reply_type {
    KVI_REPLY_NIL = 0,
    KVI_REPLY_INTEGER = 1,
    KVI_REPLY_STRING = 2,
    KVI_REPLY_ARRAY = 3,
    KVI_REPLY_STATUS = 4,
    KVI_REPLY_ERROR = 5
} kvi_reply_type;

/* Accessors; all accept NULL (type NIL, 0, NULL, 0). */
KVI_EXPORT kvi_reply_type kvi_reply_type_of(const kvi_reply *r);
KVI_EXPORT int64_t kvi_reply_integer(const kvi_reply *r);
/* Bytes of a STRING, STATUS or ERROR reply (NUL-terminated; *len may be
 * NULL); NULL for other types. */
KVI_EXPORT const char *kvi_reply_str(const kvi_reply *r, size_t *len);
/* Number of elements of an ARRAY, 0 otherwise. */
KVI_EXPORT size_t kvi_reply_count(const kvi_reply *r);
/* Element i of an ARRAY, NULL when out of range; owned by the array. */
KVI_EXPORT const kvi_reply *kvi_reply_element(const kvi_reply *r, size_t i);
/* Frees a whole reply tree.  NULL is accepted. */
KVI_EXPORT void kvi_reply_free(kvi_reply *r);

/* ---------------------------------------------------------------------- */
/* URLs                                                                    */

typedef struct kvi_url_host {
    char *host;    /* decoded; an IPv6 address without brackets */
    uint16_t port; /* 0 when the URL gave none */
    int ipv6;      /* host was written in brackets */
} kvi_url_host;

typedef struct kvi_url_option {
    char *name;  /* decoded */
    char *value; /* decoded, "" when written "name=" */
} kvi_url_option;

/*
 * A parsed URL.  Every string is percent-decoded and NUL-terminated; a part
 * the URL does not have is NULL (has_password tells ":@" from "@").  The
 * parser rejects a NUL byte (%00) in any part.  Read-only for callers.
 */
typedef struct kvi_url {
    char *scheme;   /* "redis" */
    char *group;    /* "billing" or NULL */
    char *id;       /* "redis:billing" or "redis" */
    char *user;     /* NULL when absent or empty */
    char *password; /* NULL when absent; "" for "user:@" */
    int has_password; /* 1 when the URL had a ':' in its userinfo */
    kvi_url_host *hosts;
    size_t nhosts;
    char *database; /* NULL when absent or empty ("host/" has none) */
    kvi_url_option *options;
    size_t noptions;
} kvi_url;

/* Parses url into a new *out (free with kvi_url_free).  On error returns
 * KVI_E_BAD_URL (KVI_E_INVALID for NULL arguments, KVI_E_NOMEM) and writes a message naming the offending
 * part, without any password, into err (errlen bytes, may be 0). */
KVI_EXPORT kvi_status kvi_url_parse(const char *url, kvi_url **out, char *err, size_t errlen);

/* Frees a parsed URL, wiping its password first.  NULL is accepted. */
KVI_EXPORT void kvi_url_free(kvi_url *u);

/* Value of option name, or NULL when absent.  (The parser rejects an option
 * given twice, so there is at most one.) */
KVI_EXPORT const char *kvi_url_option_get(const kvi_url *u, const char *name);

/* Writes the URL back in canonical form with the password replaced by
 * "***" into buf (NUL-terminated, truncated to buflen).  Returns the length
 * the full text needs, as snprintf. */
KVI_EXPORT size_t kvi_url_format_redacted(const kvi_url *u, char *buf, size_t buflen);

/* ---------------------------------------------------------------------- */
/* The URL options an engine knows                                         */

/* One URL option of an engine, as kvi_engine_option() describes it.  The
 * strings are static or owned by the engine (valid while the context is). */
typedef struct kvi_option_info {
    const char *name;
    /* "bool", "integer", "milliseconds", "size", "enum", "path", "string";
     * "engine-parsed" for an engine that lists only option names (ABI 1). */
    const char *kind;
    const char *default_value; /* as URL text; NULL when there is none */
    const char *help;          /* one line; "" when the engine gave none */
    int common;                /* 1 for connect_timeout, timeout, lazy */
    char allowed[128];         /* e.g. "1..3600000", "lru|none", "yes|no" */
} kvi_option_info;

/* Describes option number index (0, 1, ...) that URLs of engine scheme
 * accept: the engine's own first, then the common ones.  Loads the engine's
 * module when needed.  KVI_OK and *out filled; KVI_NOT_FOUND past the last
 * one; KVI_E_INVALID for NULL arguments; a load error otherwise.
 * Thread-safe. */
KVI_EXPORT kvi_status kvi_engine_option(kvi *k, const char *scheme, size_t index,
                                        kvi_option_info *out);

#ifdef __cplusplus
}
#endif

#endif /* KVI_KVI_H */
