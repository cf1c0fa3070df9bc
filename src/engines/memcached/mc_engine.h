/*
 * mc_engine.h -- the memcached engine's private types and the functions its
 * files share (not part of any public or engine ABI).
 *
 * Files, one concern each (lower ones never call higher ones):
 *   mc_envelope.c  key mapping, value envelope, expiry stamps (pure)
 *   mc_error.c     libmemcached codes -> kvi_status and messages
 *   mc_watch.c     the watchdog that ends a call at its deadline
 *   mc_lease.c     handles lent to calls; one generation per pid (fork)
 *   mc_item.c      reading and writing one item (envelope, stamps, retry)
 *   mc_breaker.c   one circuit breaker per server of the pool
 *   mc_slots.c     the operations (store, fetch, add, add_bounded, store_nx, ...)
 *   mc_wire.c      binary protocol encoding and reply parsing (pure)
 *   mc_pipe.c      kvi's own non-blocking connections and the pipelined
 *                  op machines of batches (blocking driver + async table)
 *   mc_batch.c     the batch slot: every op pipelined (mc_pipe.c)
 *   memcached.c    open/close, options, the engine table
 */
#ifndef KVI_MC_ENGINE_H
#define KVI_MC_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <libmemcached/memcached.h>

#include "kvi/engine.h"
#include "mc_envelope.h"

/* Idle handles kept per connection; more concurrent callers get extra
 * handles that are freed when given back. */
#define MC_IDLE_MAX 32
/* A counter update that loses the CAS race this often gives up. */
#define MC_CAS_MAX_TRIES 10000
/* The watchdog cuts a call this long after the larger of timeout and
 * connect_timeout, so that libmemcached's own timeout reports a silent
 * server first. */
#define MC_WATCH_GRACE_MS 100
/* After a cut, how often a call that has not ended is cut again. */
#define MC_WATCH_RECUT_MS 50
/* Idle rounds (of call_ms each) after which the watchdog sleeps until the
 * next call wakes it. */
#define MC_WATCH_IDLE_ROUNDS 10

struct mc_lease;

struct mc_gen {
    pid_t pid;
    pthread_mutex_t lock;
    memcached_st *idle[MC_IDLE_MAX];
    size_t nidle;
    struct mc_gen *prev; /* older generations (other pids after fork) */
    /* The watchdog (mc_watch_main) and the calls it watches, oldest
     * deadline first; all under wlock. */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    struct mc_lease *whead, *wtail;
    pthread_t wtid;
    int wstarted, wfailed, wstop;
    int wasleep; /* the watchdog waits without a time limit */
    uint32_t call_ms;
    /* Idle non-blocking connections of batches (mc_pipe.c), under lock. */
    struct mc_wc *wfree;
    uint32_t nwfree;
};

/* A server of the pool, in libmemcached's order, with its circuit breaker
 * (the core's kvi_breaker). */
struct mc_server {
    kvi_breaker *breaker;
    char name[300]; /* "host:port" for messages */
    /* Its address, resolved when the connection is defined (the batch
     * path's non-blocking connections never resolve a name). */
    struct sockaddr_storage addr;
    socklen_t addrlen; /* 0: could not be resolved */
};

struct mc_conn {
    memcached_st *master; /* configuration only; never does I/O */
    _Atomic(struct mc_gen *) gen;
    uint64_t retry_s; /* retry_timeout option */
    uint32_t call_ms; /* longest a call may talk to the servers */
    struct mc_server *servers;
    uint32_t nservers;
    char *sasl_user; /* the SASL user name of the URL, NULL without SASL */
    char *sasl_pass; /* its password (batch connections authenticate themselves) */
    void *sha256;    /* libcrypto's SHA-256 for mapped keys (kvi__mc_sha256_fetch) */
};

/* A handle lent to one call, and the call's deadline. */
struct mc_lease {
    struct mc_gen *gen;
    memcached_st *mc;
    int64_t deadline_ms; /* CLOCK_MONOTONIC */
    atomic_int expired;  /* the watchdog cut the call's connections */
    int armed;           /* in gen's watch list (under wlock) */
    struct mc_lease *prev, *next;
    struct mc_server *server; /* a keyed call's server (its breaker), or NULL */
    int probe;                /* the call is its breaker's one probe */
};

/* A kvi key and the memcached key it is stored under. */
struct mc_key {
    const void *key;
    size_t key_len;
    char mkey[KVI_MC_KEY_BUF];
    size_t mkey_len;
    int mapped;
};

/* An item as read by mc_read(). */
struct mc_item {
    int present;      /* memcached holds an item under the key */
    int live;         /* present and its recorded expiry has not passed */
    const char *data; /* the value (envelope removed) */
    size_t len;
    uint32_t flags;
    uint64_t cas;
    int64_t expiry_s; /* absolute expiry, 0 = none known */
    char *owned;      /* the value buffer of a read without CAS (malloc) */
};

enum mc_write_mode { MC_SET, MC_ADD, MC_CAS };

/* ---- mc_error.c ---------------------------------------------------------- */

/* The kvi status of a libmemcached code. */
kvi_status kvi__mc_map(memcached_return_t rc);

/* Turns a failed libmemcached call on mc (may be NULL) into a kvi status
 * with a detail message naming op.  Never returns KVI_OK or NOT_FOUND. */
kvi_status kvi__mc_fail(kvi_conn *c, memcached_st *mc, memcached_return_t rc, const char *op);

/* ---- mc_watch.c ---------------------------------------------------------- */

/* Sets up / tears down the watchdog part of g (destroy stops and joins the
 * thread; only in the process that made g).  init returns 0 on success. */
int kvi__mc_watch_init(struct mc_gen *g);
void kvi__mc_watch_destroy(struct mc_gen *g);

/* Starts the deadline of the call holding l (starting the watchdog thread
 * of l->gen on first use); disarm ends it and returns 1 when it had
 * expired (the call's connections were cut). */
void kvi__mc_arm(const struct mc_conn *m, struct mc_lease *l);
int kvi__mc_disarm(struct mc_lease *l);
/* A batch's deadline (kvi_monotonic_ms(); 0: none) for the calls this
 * thread makes while it runs the batch: kvi__mc_arm() cuts them by then
 * when it is earlier than their own deadline, so an operation sent one by
 * one cannot outlast the batch (a hung server, the connection's timeout
 * long). */
extern _Thread_local int64_t kvi__mc_batch_deadline_ms KVI_MODULE_TLS;

/* ---- mc_lease.c ---------------------------------------------------------- */

/* A new generation for pid (older ones in prev); NULL when out of memory.
 * free stops its watchdog and frees its idle handles (calling process's
 * generation only). */
struct mc_gen *kvi__mc_gen_new(kvi_conn *c, pid_t pid, struct mc_gen *prev);
void kvi__mc_gen_free(kvi_conn *c, struct mc_gen *g);

/* Lends a handle of the calling process's generation to one call, with its
 * deadline armed; release gives it back (st: the call's outcome). */
kvi_status kvi__mc_acquire(kvi_conn *c, struct mc_lease *l);
void kvi__mc_release(kvi_conn *c, struct mc_lease *l, kvi_status st);

/* 1 when an idempotent request that failed with st should be sent once more
 * (the handle is then ready for it), 0 otherwise. */
int kvi__mc_retry_once(kvi_conn *c, memcached_st *mc, kvi_status st);

/* ---- mc_item.c ----------------------------------------------------------- */

/* Wall-clock milliseconds (expiry stamps are compared across hosts). */
int64_t kvi__mc_now_ms(void);

/* Sets up k for kvi key (key_len 1..1024): its memcached key and whether
 * it is mapped.  KVI_E_BACKEND when libcrypto fails to give the digest. */
kvi_status kvi__mc_key_init(kvi_conn *c, struct mc_key *k, const void *key, size_t key_len);

/* Reads the item of k (retrying once on a stale connection): with res, its
 * CAS too (multi-get; the value lives in res); with res NULL one plain get
 * (the value is owned by *it: kvi__mc_item_free).  KVI_OK when memcached
 * answered, present or not. */
kvi_status kvi__mc_read(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                        memcached_result_st *res, struct mc_item *it, int64_t now_ms,
                        const char *op);
void kvi__mc_item_free(struct mc_item *it);

/* Decodes an item read by any means: it->data/len/flags/cas as the server
 * sent them; sets present, live, expiry_s and removes a mapped key's
 * envelope (KVI_E_CORRUPT when it is not this key's). */
kvi_status kvi__mc_decode(kvi_conn *c, const struct mc_key *k, struct mc_item *it, int64_t now_ms,
                          const char *op);

/* The flags (stamp) and server exptime of an item written at now_ms with
 * lifetime expire_s (0 = none). */
void kvi__mc_new_expiry(int64_t now_ms, int64_t expire_s, uint32_t *flags, int64_t *exptime);

/* Writes payload under k (wrapped when k is mapped); the raw libmemcached
 * code (MEMCACHED_MEMORY_ALLOCATION_FAILURE when the envelope could not be
 * built). */
memcached_return_t kvi__mc_write(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                                 enum mc_write_mode mode, const void *payload, size_t len,
                                 int64_t exptime, uint32_t flags, uint64_t cas);

/* Asks every server of mc for its statistics; *up counts those that
 * answered; warn logs the others. */
memcached_return_t kvi__mc_stat_all(kvi_conn *c, memcached_st *mc, uint32_t *up, int warn);

/* ---- mc_breaker.c -------------------------------------------------------- */

/* Makes / frees the server table of m with one breaker per server of
 * m->master; init returns KVI_OK or an error with its message. */
kvi_status kvi__mc_servers_init(kvi_conn *c, struct mc_conn *m, const kvi_breaker_options *opt);
void kvi__mc_servers_free(kvi_conn *c, struct mc_conn *m);

/* The server a keyed call on mkey goes to, for its breaker. */
struct mc_server *kvi__mc_server_of(const struct mc_conn *m, memcached_st *mc, const char *mkey,
                                    size_t mkey_len);

/* ---- mc_slots.c ---------------------------------------------------------- */

kvi_status kvi__mc_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                         size_t val_len, int64_t expire_s);
kvi_status kvi__mc_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out);
kvi_status kvi__mc_remove(kvi_conn *c, const void *key, size_t key_len);
kvi_status kvi__mc_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                       int64_t expire_s, int64_t *new_value);
kvi_status kvi__mc_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                               int64_t expire_s, int64_t min, int64_t max, int64_t *value);
kvi_status kvi__mc_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s);
kvi_status kvi__mc_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out);
kvi_status kvi__mc_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s);
kvi_status kvi__mc_ping(kvi_conn *c);
kvi_status kvi__mc_stats(kvi_conn *c, kvi_stats *out);

/* ---- mc_pipe.c ----------------------------------------------------------- */

/* Runs ops[0..n) (no raw query among them) on kvi's own pipelined
 * connections, blocking in poll() until all ended or deadline_ms. */
void kvi__mc_pipe_run(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms);

/* The async table (struct kvi_engine.async). */
extern const struct kvi_engine_async kvi__mc_async;

/* Closes the idle batch connections of g (its own process only). */
void kvi__mc_pipe_gen_free(kvi_conn *c, struct mc_gen *g);

/* The calling process's generation (mc_lease.c); NULL when out of memory. */
struct mc_gen *kvi__mc_gen_current(kvi_conn *c);

/* ---- mc_batch.c ---------------------------------------------------------- */

/* The batch slot (struct kvi_engine.batch). */
void kvi__mc_batch(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms);

#endif /* KVI_MC_ENGINE_H */
