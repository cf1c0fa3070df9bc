/*
 * types.h -- the core's private types: the layout of a context (struct kvi)
 * and of a connection handle (struct kvi_conn) and what they hold, shared
 * by the core's files.  Types only; each file's functions are declared in
 * its own header (or internal.h).  Engines never see it.
 */
#ifndef KVI_CORE_TYPES_H
#define KVI_CORE_TYPES_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/internal.h"

/* Stats are striped per thread so that two threads on one handle do not
 * fight over one cache line.  Each stripe is padded to a cache line rather
 * than aligned: a handle comes from the context's allocator, which only
 * promises malloc's alignment. */
#define KVI__STAT_STRIPES 16

struct kvi__stat_stripe {
    _Atomic uint64_t ops;
    _Atomic uint64_t errors;
    _Atomic uint64_t misses;
    _Atomic uint64_t slow_ops;
    _Atomic uint64_t rejected;
    _Atomic uint64_t total_us;
    char pad_[64 - 6 * sizeof(uint64_t)];
};

struct kvi_conn {
    kvi *k;
    const struct kvi_engine *engine;
    char *id;       /* "scheme" or "scheme:group" */
    char *secret;   /* the URL's password, only to scrub messages; may be NULL */
    char *secret2;  /* an option holding a password (name ending in "password",
                       redis: sentinel_password), scrubbed like secret; may be NULL */
    uint32_t caps;  /* the engine's, or what open() set with kvi_conn_set_caps */
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    int lazy;
    size_t max_value_len;
    void *priv;     /* engine->conn_size bytes */
    unsigned char *options; /* engine->options_size bytes, or NULL (options.c) */
    struct kvi_conn *_Atomic next; /* definition order; append-only */
    struct kvi__stat_stripe stats[KVI__STAT_STRIPES];
};

struct kvi__engine_entry {
    const struct kvi_engine *engine;
    void *dl_handle; /* dlopen() handle of its module, or NULL */
    struct kvi__engine_entry *next;
};

/* A hook (log or clock) with its user data, published as one pointer so a
 * reader never pairs one setting's function with another's data.  Replaced
 * hooks are kept until kvi_free(): a reader may still hold one. */
struct kvi__hook {
    void (*fn)(void);
    void *ud;
    int level;
    struct kvi__hook *older;
};

/* An id being opened: reserved so that a second definition is refused while
 * open() runs outside the lock. */
struct kvi__pending {
    const char *id;
    struct kvi__pending *next;
};

struct kvi {
    kvi_allocator alloc;
    pthread_mutex_t config_lock; /* serialises definitions and registrations */
    struct kvi__engine_entry *engines;
    struct kvi__pending *pending;   /* ids whose open() runs; under config_lock */
    struct kvi_conn *_Atomic conns; /* read without a lock: append-only list */
    char *module_path;              /* NULL: default */

    struct kvi__hook *_Atomic log;   /* NULL: logging off */
    struct kvi__hook *_Atomic clock; /* never NULL */
    struct kvi__hook *retired;       /* replaced hooks; under config_lock */
    _Atomic uint64_t slow_us;  /* the slow threshold, as set or the default */
    int slow_set;              /* kvi_set_slow_threshold was called; under config_lock */
    _Atomic uint64_t timed_us; /* the threshold calls are timed against; 0 = untimed */
};

/* Thread-locals of libkvi use the initial-exec model: no __tls_get_addr
 * call on the hot path.  (libkvi's TLS is a few hundred bytes, well inside
 * the static TLS reserve even when the library is dlopen()ed.) */
#if defined(__GNUC__)
#define KVI__TLS_FAST __attribute__((tls_model("initial-exec")))
#else
#define KVI__TLS_FAST
#endif

/* The calling thread's detail message (error.c: set, cleared, read only
 * there; here for kvi__discard_error_inline). */
#define KVI__ERRMSG_MAX 512
struct kvi__errstate {
    const kvi *k;
    int set;
    char msg[KVI__ERRMSG_MAX];
};
extern _Thread_local struct kvi__errstate kvi__tl_err KVI__TLS_FAST;

/* kvi__discard_error() without a call when there is nothing to discard
 * (the end of every fetch added to a batch). */
static inline void kvi__discard_error_inline(void)
{
    if (kvi__tl_err.set || kvi__tl_err.k != NULL || kvi__tl_err.msg[0] != '\0')
        kvi__discard_error();
}

#endif /* KVI_CORE_TYPES_H */
