/*
 * memcached.c -- the memcached engine (module kvi_memcached.so) on
 * libmemcached: a pool of servers sharded by consistent hashing (ketama),
 * binary protocol, optional SASL.
 *
 * Threads: a memcached_st is not thread-safe, so each call leases one from
 * the connection's idle list (cloning the configured, never-connected
 * "master" when the list is empty) and gives it back afterwards.  The list
 * lock is held only to pop or push a pointer or to clone: no call ever waits
 * for another thread's network I/O.
 *
 * fork(): handles carry sockets, so the idle list lives in a "generation"
 * tagged with the pid that made it.  A call that sees another pid starts a
 * new generation; the parent's handles are abandoned in the child, never
 * used or freed there (freeing would send QUIT on the parent's sockets).
 *
 * The contract's parts that memcached lacks (keys of any bytes, signed
 * counters, add/sub that keep the expiry, ttl) come from mc_envelope.h and
 * the CAS loop in mc_add(); docs/engines/memcached.md explains the design.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "kvi/engine.h"
#include "mc_envelope.h"

#define MC_DEFAULT_HOST "127.0.0.1"
#define MC_DEFAULT_PORT 11211
/* Idle handles kept per connection; more concurrent callers get extra
 * handles that are freed when given back. */
#define MC_IDLE_MAX 32
/* A counter update that loses the CAS race this often gives up. */
#define MC_CAS_MAX_TRIES 10000
#define MC_DEFAULT_RETRY_S 0
#define MC_MAX_RETRY_S 3600
/* The watchdog cuts a call this long after the larger of timeout and
 * connect_timeout, so that libmemcached's own timeout reports a silent
 * server first. */
#define MC_WATCH_GRACE_MS 100
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
};

struct mc_conn {
    memcached_st *master; /* configuration only; never does I/O */
    _Atomic(struct mc_gen *) gen;
    uint64_t retry_s; /* retry_timeout option */
    uint32_t call_ms; /* longest a call may talk to the servers */
};

/* A handle lent to one call, and the call's deadline. */
struct mc_lease {
    struct mc_gen *gen;
    memcached_st *mc;
    int64_t deadline_ms; /* CLOCK_MONOTONIC */
    atomic_int expired;  /* the watchdog cut the call's connections */
    int armed;           /* in gen's watch list (under wlock) */
    struct mc_lease *prev, *next;
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
};

enum mc_write_mode { MC_SET, MC_ADD, MC_CAS };

static const char *const mc_options[] = {"retry_timeout", NULL};

/* ---- errors: the one place libmemcached codes become kvi_status ---------- */

static kvi_status mc_map(memcached_return_t rc)
{
    switch (rc) {
    case MEMCACHED_SUCCESS:
    case MEMCACHED_STORED:
    case MEMCACHED_DELETED:
    case MEMCACHED_END:
        return KVI_OK;
    case MEMCACHED_NOTFOUND:
        return KVI_NOT_FOUND;
    case MEMCACHED_TIMEOUT:
    case MEMCACHED_IN_PROGRESS:
        return KVI_E_TIMEOUT;
    case MEMCACHED_HOST_LOOKUP_FAILURE:
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_CONNECTION_BIND_FAILURE:
    case MEMCACHED_ERROR: /* also CONNECTION_SOCKET_CREATE_FAILURE */
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_NO_SERVERS:
    case MEMCACHED_FAIL_UNIX_SOCKET:
        return KVI_E_CONNECT;
    case MEMCACHED_WRITE_FAILURE:
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_UNKNOWN_READ_FAILURE:
    case MEMCACHED_PARTIAL_READ:
    case MEMCACHED_ERRNO:
        return KVI_E_IO;
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_CLIENT_ERROR:
    case MEMCACHED_UNKNOWN_STAT_KEY:
    case MEMCACHED_INVALID_HOST_PROTOCOL:
        return KVI_E_PROTOCOL;
    case MEMCACHED_E2BIG:
    case MEMCACHED_KEY_TOO_BIG:
    case MEMCACHED_BAD_KEY_PROVIDED:
    case MEMCACHED_NO_KEY_PROVIDED:
    case MEMCACHED_INVALID_ARGUMENTS:
    case MEMCACHED_PARSE_ERROR:
    case MEMCACHED_PARSE_USER_ERROR:
        return KVI_E_INVALID;
    case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
        return KVI_E_NOMEM;
    case MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE:
        return KVI_E_STORE_FULL;
    case MEMCACHED_AUTH_PROBLEM:
    case MEMCACHED_AUTH_FAILURE:
    case MEMCACHED_AUTH_CONTINUE:
        return KVI_E_AUTH;
    case MEMCACHED_NOT_SUPPORTED:
    case MEMCACHED_DEPRECATED:
        return KVI_E_UNSUPPORTED;
    default:
        return KVI_E_BACKEND;
    }
}

/* Copies libmemcached's message without its handle address prefix
 * "(0x...) " and source location suffix " -> file:line". */
static const char *mc_clean_message(const char *msg, char *buf, size_t size)
{
    if (msg == NULL)
        return NULL;
    if (msg[0] == '(' && msg[1] == '0' && msg[2] == 'x') {
        const char *close = strstr(msg, ") ");
        if (close != NULL)
            msg = close + 2;
    }
    size_t n = 0;
    for (const char *p = msg; *p != '\0' && n + 1 < size; p++) {
        if (strncmp(p, " -> ", 4) == 0)
            break;
        if (p[0] == ' ' && p[1] == ' ')
            continue;
        buf[n++] = *p;
    }
    buf[n] = '\0';
    return buf;
}

/* Turns a failed libmemcached call into a kvi status with a detail message.
 * libmemcached's messages name hosts, never the SASL password. */
static kvi_status mc_fail(kvi_conn *c, memcached_st *mc, memcached_return_t rc, const char *op)
{
    const struct mc_lease *l = mc != NULL ? memcached_get_user_data(mc) : NULL;
    if (l != NULL && atomic_load(&l->expired)) {
        const struct mc_conn *m = kvi_conn_priv(c);
        return kvi_engine_error(c, KVI_E_TIMEOUT,
                                "%s: no complete reply within %u ms (the server answers too "
                                "slowly or not at all)",
                                op, (unsigned)m->call_ms);
    }
    /* FAILURE / SOME_ERRORS say little; the handle's last error says why. */
    if ((rc == MEMCACHED_FAILURE || rc == MEMCACHED_SOME_ERRORS) && mc != NULL &&
        memcached_last_error(mc) != MEMCACHED_SUCCESS)
        rc = memcached_last_error(mc);
    kvi_status st = mc_map(rc);
    if (st == KVI_OK || st == KVI_NOT_FOUND)
        st = KVI_E_BACKEND; /* an unexpected reply for this call */
    char buf[256];
    const char *msg = NULL;
    if (mc != NULL && memcached_last_error(mc) == rc)
        msg = mc_clean_message(memcached_last_error_message(mc), buf, sizeof buf);
    if ((msg == NULL || msg[0] == '\0') && rc == MEMCACHED_PROTOCOL_ERROR)
        msg = "a server's reply is not a valid memcached binary protocol reply";
    if (msg == NULL || msg[0] == '\0')
        msg = memcached_strerror(mc, rc);
    if (rc == MEMCACHED_E2BIG)
        return kvi_engine_error(c, st,
                                "%s: value too large for the server's item size limit "
                                "(memcached -I; 1 MiB values need -I 2m): %s",
                                op, msg);
    return kvi_engine_error(c, st, "%s: %s", op, msg);
}

/* ---- handles ------------------------------------------------------------- */

static int64_t mc_now_ms(void)
{
    /* Wall-clock time: stamps are compared across hosts and with the
     * server's clock, so the context's (replaceable) clock does not apply. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct mc_gen *mc_gen_new(kvi_conn *c, pid_t pid, struct mc_gen *prev)
{
    struct mc_gen *g = kvi_engine_malloc(c, sizeof *g);
    if (g == NULL)
        return NULL;
    memset(g, 0, sizeof *g);
    pthread_condattr_t ca;
    int ok = pthread_condattr_init(&ca) == 0;
    if (ok && (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
               pthread_cond_init(&g->wcond, &ca) != 0)) {
        pthread_condattr_destroy(&ca);
        ok = 0;
    }
    if (!ok) {
        kvi_engine_free(c, g);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        pthread_cond_destroy(&g->wcond);
        kvi_engine_free(c, g);
        return NULL;
    }
    if (pthread_mutex_init(&g->wlock, NULL) != 0) {
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->wcond);
        kvi_engine_free(c, g);
        return NULL;
    }
    g->pid = pid;
    g->prev = prev;
    return g;
}

/* Frees a generation of the calling process: stops its watchdog, frees its
 * idle handles. */
static void mc_gen_free(kvi_conn *c, struct mc_gen *g)
{
    pthread_mutex_lock(&g->wlock);
    g->wstop = 1;
    pthread_cond_signal(&g->wcond);
    pthread_mutex_unlock(&g->wlock);
    if (g->wstarted)
        pthread_join(g->wtid, NULL);
    for (size_t i = 0; i < g->nidle; i++)
        memcached_free(g->idle[i]);
    pthread_mutex_destroy(&g->wlock);
    pthread_cond_destroy(&g->wcond);
    pthread_mutex_destroy(&g->lock);
    kvi_engine_free(c, g);
}

/* ---- the watchdog: one deadline per call ---------------------------------- */

static int64_t mc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mc_port_of(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)a)->sin_port);
    if (a->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)a)->sin6_port);
    return -1;
}

/* 1 when a is the address written in host, or host is a name (not
 * compared: the ports already single out the connection). */
static int mc_host_is(const struct sockaddr_storage *a, const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return a->ss_family == AF_INET &&
               memcmp(&((const struct sockaddr_in *)(const void *)a)->sin_addr, &v4, sizeof v4) ==
                   0;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return a->ss_family == AF_INET6 &&
               memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr, &v6, sizeof v6) ==
                   0;
    return 1;
}

/* Shuts down the TCP connection from local port lport to host:rport, so
 * that libmemcached's wait on it ends at once.  libmemcached 1.1 does not
 * publish its sockets: the connection is found among the process's
 * descriptors by its addresses. */
static void mc_cut_connection(int lport, const char *host, int rport)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd < 0 || fd > INT_MAX || fd == dirfd(d))
            continue;
        struct sockaddr_storage a;
        socklen_t alen = sizeof a;
        if (getsockname((int)fd, (struct sockaddr *)&a, &alen) != 0 || mc_port_of(&a) != lport)
            continue;
        alen = sizeof a;
        if (getpeername((int)fd, (struct sockaddr *)&a, &alen) != 0 || mc_port_of(&a) != rport ||
            !mc_host_is(&a, host))
            continue;
        shutdown((int)fd, SHUT_RDWR);
    }
    closedir(d);
}

/* Cuts every connection of mc (in use by another thread, which is waiting
 * inside libmemcached). */
static void mc_cut(memcached_st *mc)
{
    uint32_t n = memcached_server_count(mc);
    for (uint32_t i = 0; i < n; i++) {
        const memcached_instance_st *in = memcached_server_instance_by_position(mc, i);
        in_port_t lport = memcached_server_srcport(in);
        if (lport != 0 && lport != (in_port_t)-1)
            mc_cut_connection(lport, memcached_server_name(in), memcached_server_port(in));
    }
}

static void mc_unwatch(struct mc_gen *g, struct mc_lease *l)
{
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        g->whead = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    else
        g->wtail = l->prev;
    l->prev = l->next = NULL;
    l->armed = 0;
}

/* libmemcached's timeouts apply to each wait for the socket, so a server
 * that sends a byte now and then keeps a call going for as long as it
 * likes; the watchdog ends each call at its deadline by cutting its
 * connections (the call then fails with KVI_E_TIMEOUT, see mc_fail()). */
static void *mc_watch_main(void *arg)
{
    struct mc_gen *g = arg;
    unsigned idle_rounds = 0;
    pthread_mutex_lock(&g->wlock);
    while (!g->wstop) {
        struct mc_lease *l = g->whead;
        if (l == NULL && idle_rounds >= MC_WATCH_IDLE_ROUNDS) {
            g->wasleep = 1;
            pthread_cond_wait(&g->wcond, &g->wlock);
            g->wasleep = 0;
            idle_rounds = 0;
            continue;
        }
        if (l == NULL) {
            /* Waking call_ms from now is never later than the deadline of
             * a call that starts meanwhile, so calls need not wake the
             * watchdog (a wake-up per call would cost a context switch). */
            int64_t wake = mc_mono_ms() + g->call_ms;
            struct timespec ts = {.tv_sec = (time_t)(wake / 1000),
                                  .tv_nsec = (long)(wake % 1000) * 1000000L};
            pthread_cond_timedwait(&g->wcond, &g->wlock, &ts);
            idle_rounds++;
            continue;
        }
        idle_rounds = 0;
        if (l->deadline_ms > mc_mono_ms()) {
            struct timespec ts = {.tv_sec = (time_t)(l->deadline_ms / 1000),
                                  .tv_nsec = (long)(l->deadline_ms % 1000) * 1000000L};
            pthread_cond_timedwait(&g->wcond, &g->wlock, &ts);
            continue;
        }
        mc_unwatch(g, l);
        atomic_store(&l->expired, 1);
        /* Under wlock: the call cannot end and give its handle back
         * meanwhile (mc_disarm waits). */
        mc_cut(l->mc);
    }
    pthread_mutex_unlock(&g->wlock);
    return NULL;
}

/* Starts the deadline of the call holding l (the watchdog thread of the
 * generation is started on first use; without it calls are not cut). */
static void mc_arm(const struct mc_conn *m, struct mc_lease *l)
{
    struct mc_gen *g = l->gen;
    atomic_init(&l->expired, 0);
    l->armed = 0;
    l->prev = l->next = NULL;
    memcached_set_user_data(l->mc, l);
    pthread_mutex_lock(&g->wlock);
    g->call_ms = m->call_ms;
    if (!g->wstarted && !g->wfailed) {
        /* The application's signals are not for this thread. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&g->wtid, NULL, mc_watch_main, g) == 0)
            g->wstarted = 1;
        else
            g->wfailed = 1;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (g->wstarted) {
        /* Deadlines are now + the same call_ms, taken under the lock:
         * appending keeps the list sorted. */
        l->deadline_ms = mc_mono_ms() + m->call_ms;
        l->prev = g->wtail;
        if (g->wtail != NULL)
            g->wtail->next = l;
        else
            g->whead = l;
        g->wtail = l;
        l->armed = 1;
        if (g->wasleep) {
            g->wasleep = 0;
            pthread_cond_signal(&g->wcond);
        }
    }
    pthread_mutex_unlock(&g->wlock);
}

/* Ends the deadline of l; returns 1 when it had expired. */
static int mc_disarm(struct mc_lease *l)
{
    struct mc_gen *g = l->gen;
    pthread_mutex_lock(&g->wlock);
    if (l->armed)
        mc_unwatch(g, l);
    pthread_mutex_unlock(&g->wlock);
    memcached_set_user_data(l->mc, NULL);
    return atomic_load(&l->expired);
}

/* The generation of the calling process, made on first use after fork(). */
static struct mc_gen *mc_gen_current(kvi_conn *c, struct mc_conn *m)
{
    pid_t pid = getpid();
    for (;;) {
        struct mc_gen *g = atomic_load_explicit(&m->gen, memory_order_acquire);
        if (g->pid == pid)
            return g;
        struct mc_gen *fresh = mc_gen_new(c, pid, g);
        if (fresh == NULL)
            return NULL;
        if (atomic_compare_exchange_strong_explicit(&m->gen, &g, fresh, memory_order_acq_rel,
                                                    memory_order_acquire))
            return fresh;
        /* Another thread of this process won the race; use its generation. */
        mc_gen_free(c, fresh);
    }
}

static kvi_status mc_acquire(kvi_conn *c, struct mc_lease *l)
{
    struct mc_conn *m = kvi_conn_priv(c);
    l->gen = mc_gen_current(c, m);
    if (l->gen == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    l->mc = NULL;
    pthread_mutex_lock(&l->gen->lock);
    int fresh = 0;
    if (l->gen->nidle > 0) {
        l->mc = l->gen->idle[--l->gen->nidle];
    } else {
        l->mc = memcached_clone(NULL, m->master);
        fresh = 1;
    }
    pthread_mutex_unlock(&l->gen->lock);
    /* libmemcached 1.1's clone loses the ketama point hash, so its keys
     * would land elsewhere than with other ketama clients; setting the
     * distribution again rebuilds the continuum. */
    if (fresh && l->mc != NULL &&
        memcached_behavior_set(l->mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1) != MEMCACHED_SUCCESS) {
        memcached_free(l->mc);
        l->mc = NULL;
    }
    if (l->mc == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory creating a memcached handle");
    mc_arm(m, l);
    return KVI_OK;
}

/* After a failed call: closes the handle's connections when a reply may be
 * left half read, and with retry_timeout 0 makes the handle's servers
 * eligible at once (libmemcached would otherwise wait for the next second). */
static void mc_after_failure(kvi_conn *c, memcached_st *mc, kvi_status st)
{
    const struct mc_conn *m = kvi_conn_priv(c);
    /* After a reply that was not read to its end (garbage, a timeout, a
     * broken connection) the sockets may still hold the rest of it, which
     * the next request would take for its own reply: close them. */
    if (st == KVI_E_IO || st == KVI_E_PROTOCOL || st == KVI_E_TIMEOUT)
        memcached_quit(mc);
    if (m->retry_s == 0 && (st == KVI_E_CONNECT || st == KVI_E_TIMEOUT || st == KVI_E_IO)) {
        uint32_t n = memcached_server_count(mc);
        for (uint32_t i = 0; i < n; i++)
            memcached_instance_next_retry(memcached_server_instance_by_position(mc, i), 0);
    }
}

/* 1 when an idempotent request that failed with st should be sent once
 * more: a pooled handle may hold a socket to a server that restarted since
 * it was last used, and the failure that reveals it is not the server's
 * current state.  Timeouts are not retried (the call would take twice the
 * configured time). */
static int mc_retry_once(kvi_conn *c, memcached_st *mc, kvi_status st)
{
    if (st != KVI_E_CONNECT && st != KVI_E_IO)
        return 0;
    mc_after_failure(c, mc, st);
    return 1;
}

/* Gives a handle back; st is the outcome of the call. */
static void mc_release(kvi_conn *c, struct mc_lease *l, kvi_status st)
{
    /* A call that ended just as it was cut leaves shut sockets. */
    if (mc_disarm(l))
        memcached_quit(l->mc);
    mc_after_failure(c, l->mc, st);
    memcached_st *spare = l->mc;
    pthread_mutex_lock(&l->gen->lock);
    if (l->gen->nidle < MC_IDLE_MAX) {
        l->gen->idle[l->gen->nidle++] = l->mc;
        spare = NULL;
    }
    pthread_mutex_unlock(&l->gen->lock);
    if (spare != NULL)
        memcached_free(spare);
    l->mc = NULL;
}

/* ---- items ---------------------------------------------------------------- */

static void mc_key_init(struct mc_key *k, const void *key, size_t key_len)
{
    k->key = key;
    k->key_len = key_len;
    k->mkey_len = kvi__mc_key(key, key_len, k->mkey, &k->mapped);
}

/* Reads the item of k with its CAS into res / *it.  KVI_OK when memcached
 * answered (present or not), otherwise an error status. */
static kvi_status mc_read_once(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                               memcached_result_st *res, struct mc_item *it, int64_t now_ms,
                               const char *op)
{
    memset(it, 0, sizeof *it);
    const char *keys[1] = {k->mkey};
    size_t lens[1] = {k->mkey_len};
    memcached_return_t rc = memcached_mget(mc, keys, lens, 1);
    if (rc != MEMCACHED_SUCCESS)
        return mc_fail(c, mc, rc, op);
    memcached_result_st *r = memcached_fetch_result(mc, res, &rc);
    if (r == NULL) {
        /* libmemcached 1.1 reports any failure of a fetch that returned no
         * item as NOTFOUND (a garbage reply included); the handle's last
         * error tells a miss from a failure. */
        memcached_return_t last = memcached_last_error(mc);
        if (last != MEMCACHED_SUCCESS && last != MEMCACHED_END && last != MEMCACHED_NOTFOUND)
            return mc_fail(c, mc, last, op);
        if (rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_SUCCESS)
            return KVI_OK;
        return mc_fail(c, mc, rc, op);
    }
    /* Drain the end of the reply so the handle is ready for the next call. */
    memcached_return_t rc2;
    memcached_result_st *extra;
    while ((extra = memcached_fetch_result(mc, NULL, &rc2)) != NULL)
        memcached_result_free(extra);

    it->present = 1;
    it->data = memcached_result_value(r);
    it->len = memcached_result_length(r);
    it->flags = memcached_result_flags(r);
    it->cas = memcached_result_cas(r);
    it->expiry_s = kvi__mc_stamp_expiry(it->flags);
    if (k->mapped) {
        size_t off;
        if (!kvi__mc_unwrap(it->data, it->len, k->key, k->key_len, &off))
            return kvi_engine_error(c, KVI_E_CORRUPT,
                                    "%s: item '%s' is not kvi's envelope for this key "
                                    "(written by another client?)",
                                    op, k->mkey);
        it->data += off;
        it->len -= off;
    }
    it->live = it->expiry_s == 0 || it->expiry_s * 1000 > now_ms;
    if (it->data == NULL)
        it->data = "";
    return KVI_OK;
}

static kvi_status mc_read(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                          memcached_result_st *res, struct mc_item *it, int64_t now_ms,
                          const char *op)
{
    kvi_status st = mc_read_once(c, mc, k, res, it, now_ms, op);
    if (mc_retry_once(c, mc, st))
        st = mc_read_once(c, mc, k, res, it, now_ms, op);
    return st;
}

/* Writes payload under k (wrapped when k is mapped).  Returns the raw
 * libmemcached code; *st is set to KVI_E_NOMEM when the envelope could not
 * be built (rc is then MEMCACHED_MEMORY_ALLOCATION_FAILURE). */
static memcached_return_t mc_write(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                                   enum mc_write_mode mode, const void *payload, size_t len,
                                   int64_t exptime, uint32_t flags, uint64_t cas)
{
    const char *val = payload;
    size_t val_len = len;
    char *buf = NULL;
    if (k->mapped) {
        size_t head = KVI_MC_WRAP_FIXED + k->key_len;
        buf = kvi_engine_malloc(c, head + len + 1);
        if (buf == NULL)
            return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
        kvi__mc_wrap_header(k->key, k->key_len, (unsigned char *)buf);
        if (len > 0)
            memcpy(buf + head, payload, len);
        val = buf;
        val_len = head + len;
    }
    if (val == NULL)
        val = "";
    time_t exp = (time_t)exptime;
    memcached_return_t rc;
    switch (mode) {
    case MC_ADD:
        rc = memcached_add(mc, k->mkey, k->mkey_len, val, val_len, exp, flags);
        break;
    case MC_CAS:
        rc = memcached_cas(mc, k->mkey, k->mkey_len, val, val_len, exp, flags, cas);
        break;
    case MC_SET:
    default:
        rc = memcached_set(mc, k->mkey, k->mkey_len, val, val_len, exp, flags);
        break;
    }
    kvi_engine_free(c, buf);
    return rc;
}

/* ---- slots ---------------------------------------------------------------- */

static kvi_status mc_parse_retry(kvi_conn *c, const kvi_url *url, uint64_t *out)
{
    const char *v = kvi_url_option_get(url, "retry_timeout");
    *out = MC_DEFAULT_RETRY_S;
    if (v == NULL)
        return KVI_OK;
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || n > MC_MAX_RETRY_S)
        return kvi_engine_error(c, KVI_E_INVALID,
                                "option 'retry_timeout': '%s' is not a number of seconds in "
                                "0..%d",
                                v, MC_MAX_RETRY_S);
    *out = n;
    return KVI_OK;
}

static kvi_status mc_behave(kvi_conn *c, memcached_st *mc, memcached_behavior_t b, uint64_t v,
                            const char *what)
{
    memcached_return_t rc = memcached_behavior_set(mc, b, v);
    if (rc != MEMCACHED_SUCCESS)
        return kvi_engine_error(c, KVI_E_BACKEND, "cannot set %s: %s", what,
                                memcached_strerror(mc, rc));
    return KVI_OK;
}

/* Asks every server of mc for its statistics; *up counts the servers that
 * answered.  Used instead of VERSION: libmemcached 1.1 copies a binary
 * VERSION reply into a 32-byte stack buffer whatever length the server
 * announces, so a hostile or broken server overwrites the caller's stack
 * (the reply lengths of STAT are checked against the buffer). */
static memcached_return_t mc_stat_all(kvi_conn *c, memcached_st *mc, uint32_t *up, int warn)
{
    memcached_return_t rc;
    memcached_stat_st *s = memcached_stat(mc, NULL, &rc);
    uint32_t n = memcached_server_count(mc);
    *up = 0;
    if (s == NULL)
        return rc == MEMCACHED_SUCCESS ? MEMCACHED_FAILURE : rc;
    /* libmemcached marks a server whose reply never gave its pid with -1. */
    for (uint32_t i = 0; i < n; i++) {
        if (rc == MEMCACHED_SUCCESS || s[i].pid != -1) {
            (*up)++;
        } else if (warn) {
            const memcached_instance_st *in = memcached_server_instance_by_position(mc, i);
            kvi_engine_log(c, KVI_LOG_WARN, "server %s:%u does not answer",
                           memcached_server_name(in), (unsigned)memcached_server_port(in));
        }
    }
    memcached_stat_free(NULL, s);
    /* A STAT reply libmemcached cannot parse fails without a recorded
     * error (a connection or timeout failure records one). */
    if (rc == MEMCACHED_SOME_ERRORS && memcached_last_error(mc) == MEMCACHED_SUCCESS)
        return MEMCACHED_PROTOCOL_ERROR;
    return rc;
}

/* Connects at open: succeeds when at least one server of the pool answers
 * (the keys of a server that is down fail with CONNECT until it is back),
 * logging a warning when some do not.  STAT needs SASL authentication on a
 * server that has it, so it also detects missing credentials. */
static kvi_status mc_probe(kvi_conn *c)
{
    struct mc_lease l;
    kvi_status st = mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    uint32_t up;
    memcached_return_t rc = mc_stat_all(c, l.mc, &up, 1);
    if (rc == MEMCACHED_PROTOCOL_ERROR && up == 0) {
        /* libmemcached does not record a refused STAT (nor any reply it
         * cannot use); a key's existence check reports a refusal. */
        memcached_quit(l.mc);
        memcached_return_t rc2 = memcached_exist(l.mc, "kvi:probe", 9);
        if (rc2 == MEMCACHED_AUTH_FAILURE || rc2 == MEMCACHED_AUTH_PROBLEM)
            st = KVI_E_AUTH;
    }
    if (rc != MEMCACHED_SUCCESS) {
        memcached_return_t last = memcached_last_error(l.mc);
        if (up == 0 &&
            (st == KVI_E_AUTH || last == MEMCACHED_AUTH_FAILURE || last == MEMCACHED_AUTH_PROBLEM))
            st = kvi_engine_error(c, KVI_E_AUTH,
                                  "connect: the server requires SASL authentication: give "
                                  "user:password in the URL");
        else if (up == 0)
            st = mc_fail(c, l.mc, rc, "connect");
    }
    mc_release(c, &l, st);
    return st;
}

static kvi_status mc_open(kvi_conn *c, const kvi_url *url)
{
    struct mc_conn *m = kvi_conn_priv(c);
    if (url->database != NULL)
        return kvi_engine_error(c, KVI_E_BAD_URL,
                                "memcached has no databases: remove '/%s' from the URL",
                                url->database);
    if ((url->user != NULL) != (url->has_password != 0))
        return kvi_engine_error(c, KVI_E_INVALID,
                                "SASL authentication needs both a user name and a password");
    kvi_status st = mc_parse_retry(c, url, &m->retry_s);
    if (st != KVI_OK)
        return st;
    uint64_t retry_s = m->retry_s;

    m->master = memcached_create(NULL);
    if (m->master == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory creating a memcached handle");
    memcached_st *mc = m->master;
    uint64_t timeout_ms = kvi_conn_timeout_ms(c);
    uint32_t connect_ms = kvi_conn_connect_timeout_ms(c);
    m->call_ms = (uint32_t)(timeout_ms > connect_ms ? timeout_ms : connect_ms) + MC_WATCH_GRACE_MS;
    struct {
        memcached_behavior_t b;
        uint64_t v;
        const char *what;
    } behaviours[] = {
        {MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1, "binary protocol"},
        /* ketama with MD5 points, as other ketama clients place keys */
        {MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1, "ketama distribution"},
        {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY"},
        {MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1, "CAS"},
        {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, kvi_conn_connect_timeout_ms(c), "connect timeout"},
        {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, timeout_ms, "timeout"},
        {MEMCACHED_BEHAVIOR_SND_TIMEOUT, timeout_ms * 1000u, "send timeout"},
        {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, timeout_ms * 1000u, "receive timeout"},
        /* A failed server is retried after retry_timeout seconds and is
         * never ejected: ejection would move its keys to other servers and
         * split counters between two places. */
        {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, retry_s, "retry timeout"},
        {MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, retry_s, "dead timeout"},
        {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0, "failed-server removal"},
        {MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0, "auto-eject"},
    };
    for (size_t i = 0; i < sizeof behaviours / sizeof behaviours[0]; i++) {
        st = mc_behave(c, mc, behaviours[i].b, behaviours[i].v, behaviours[i].what);
        if (st != KVI_OK)
            return st;
    }

    for (size_t i = 0; i < url->nhosts; i++) {
        const kvi_url_host *h = &url->hosts[i];
        memcached_return_t rc =
            memcached_server_add(mc, h->host, h->port ? h->port : MC_DEFAULT_PORT);
        if (rc != MEMCACHED_SUCCESS)
            return kvi_engine_error(c, KVI_E_BAD_URL, "cannot use server '%s': %s", h->host,
                                    memcached_strerror(mc, rc));
    }
    if (url->nhosts == 0) {
        memcached_return_t rc = memcached_server_add(mc, MC_DEFAULT_HOST, MC_DEFAULT_PORT);
        if (rc != MEMCACHED_SUCCESS)
            return kvi_engine_error(c, KVI_E_BACKEND, "cannot add the default server: %s",
                                    memcached_strerror(mc, rc));
    }
    if (url->user != NULL) {
        memcached_return_t rc = memcached_set_sasl_auth_data(mc, url->user, url->password);
        if (rc != MEMCACHED_SUCCESS)
            return kvi_engine_error(
                c, mc_map(rc) == KVI_E_UNSUPPORTED ? KVI_E_UNSUPPORTED : KVI_E_AUTH,
                "cannot set up SASL for user '%s': %s", url->user, memcached_strerror(mc, rc));
    }

    struct mc_gen *g = mc_gen_new(c, getpid(), NULL);
    if (g == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    atomic_store_explicit(&m->gen, g, memory_order_release);

    if (!kvi_conn_lazy(c))
        return mc_probe(c);
    return KVI_OK;
}

static void mc_close(kvi_conn *c)
{
    struct mc_conn *m = kvi_conn_priv(c);
    pid_t pid = getpid();
    struct mc_gen *g = atomic_load_explicit(&m->gen, memory_order_acquire);
    while (g != NULL) {
        struct mc_gen *prev = g->prev;
        /* Handles of another pid hold the parent's sockets, and its
         * watchdog thread is not in this process: leave them. */
        if (g->pid == pid)
            mc_gen_free(c, g);
        else
            kvi_engine_free(c, g);
        g = prev;
    }
    atomic_store_explicit(&m->gen, NULL, memory_order_release);
    if (m->master != NULL)
        memcached_free(m->master);
    m->master = NULL;
}

static kvi_status mc_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_s)
{
    struct mc_key k;
    mc_key_init(&k, key, key_len);
    int64_t now_s = mc_now_ms() / 1000;
    uint32_t flags = kvi__mc_stamp(now_s, expire_s);
    int64_t exptime = flags ? kvi__mc_server_exptime(flags, now_s) : 0;
    struct mc_lease l;
    kvi_status st = mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    memcached_return_t rc = mc_write(c, l.mc, &k, MC_SET, val, val_len, exptime, flags, 0);
    st = rc == MEMCACHED_SUCCESS ? KVI_OK : mc_fail(c, l.mc, rc, "store");
    if (mc_retry_once(c, l.mc, st)) {
        rc = mc_write(c, l.mc, &k, MC_SET, val, val_len, exptime, flags, 0);
        st = rc == MEMCACHED_SUCCESS ? KVI_OK : mc_fail(c, l.mc, rc, "store");
    }
    mc_release(c, &l, st);
    return st;
}

/* Reads the live item of key on a leased handle and hands it to use()
 * (KVI_NOT_FOUND when there is none): the common part of fetch,
 * counter_fetch and ttl. */
typedef kvi_status (*mc_use_fn)(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                                int64_t now_ms, void *out);

static kvi_status mc_read_live(kvi_conn *c, const void *key, size_t key_len, const char *op,
                               mc_use_fn use, void *out)
{
    struct mc_key k;
    mc_key_init(&k, key, key_len);
    struct mc_lease l;
    kvi_status st = mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    memcached_result_st res;
    memcached_result_create(l.mc, &res);
    struct mc_item it;
    int64_t now_ms = mc_now_ms();
    st = mc_read(c, l.mc, &k, &res, &it, now_ms, op);
    if (st == KVI_OK && !it.live)
        st = KVI_NOT_FOUND;
    if (st == KVI_OK)
        st = use(c, &k, &it, now_ms, out);
    memcached_result_free(&res);
    mc_release(c, &l, st);
    return st;
}

static kvi_status use_value(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                            int64_t now_ms, void *out)
{
    (void)k, (void)now_ms;
    return kvi_value_set(c, out, it->data, it->len);
}

static kvi_status mc_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    return mc_read_live(c, key, key_len, "fetch", use_value, out);
}

static kvi_status mc_remove(kvi_conn *c, const void *key, size_t key_len)
{
    struct mc_key k;
    mc_key_init(&k, key, key_len);
    struct mc_lease l;
    kvi_status st = mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    for (int attempt = 0;; attempt++) {
        memcached_return_t rc = memcached_delete(l.mc, k.mkey, k.mkey_len, 0);
        if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_DELETED)
            st = KVI_OK;
        else if (rc == MEMCACHED_NOTFOUND)
            st = KVI_NOT_FOUND;
        else
            st = mc_fail(c, l.mc, rc, "remove");
        if (attempt > 0 || !mc_retry_once(c, l.mc, st))
            break;
    }
    mc_release(c, &l, st);
    return st;
}

/* One attempt of add: KVI_OK with *done = 1 when written, *done = 0 when
 * another client changed the item meanwhile (try again). */
static kvi_status mc_add_once(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                              memcached_result_st *res, int64_t delta, int64_t expire_s,
                              int64_t *new_value, int *done)
{
    *done = 0;
    int64_t now_ms = mc_now_ms();
    int64_t now_s = now_ms / 1000;
    struct mc_item it;
    kvi_status st = mc_read(c, mc, k, res, &it, now_ms, "add");
    if (st != KVI_OK)
        return st;

    int64_t value = delta;
    enum mc_write_mode mode;
    uint32_t flags;
    int64_t exptime;
    if (!it.live) {
        /* Missing (ADD: exactly one creator wins) or past its recorded
         * expiry while the server still holds it (CAS: replaced once). */
        mode = it.present ? MC_CAS : MC_ADD;
        flags = kvi__mc_stamp(now_s, expire_s);
        exptime = flags ? kvi__mc_server_exptime(flags, now_s) : 0;
    } else {
        int64_t old;
        if (!kvi_parse_int64(it.data, it.len, &old))
            return kvi_engine_error(c, KVI_E_NOT_A_COUNTER, "add: value of '%s' is not an integer",
                                    k->mkey);
        if (__builtin_add_overflow(old, delta, &value))
            return kvi_engine_error(c, KVI_E_OVERFLOW, "add: %lld + %lld does not fit in int64",
                                    (long long)old, (long long)delta);
        /* Fixed window: keep the recorded expiry (flags unchanged) and send
         * the time left of it. */
        mode = MC_CAS;
        flags = it.flags;
        exptime = it.expiry_s ? kvi__mc_server_exptime(it.expiry_s, now_s) : 0;
    }
    char text[24];
    size_t text_len = kvi_format_int64(value, text);
    memcached_return_t rc = mc_write(c, mc, k, mode, text, text_len, exptime, flags, it.cas);
    switch (rc) {
    case MEMCACHED_SUCCESS:
    case MEMCACHED_STORED:
        *done = 1;
        *new_value = value;
        return KVI_OK;
    case MEMCACHED_DATA_EXISTS: /* CAS lost, or ADD found a key (binary) */
    case MEMCACHED_NOTSTORED:   /* ADD found a key */
    case MEMCACHED_NOTFOUND:    /* removed between read and CAS */
        return KVI_OK;
    default:
        return mc_fail(c, mc, rc, "add");
    }
}

static kvi_status mc_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                         int64_t expire_s, int64_t *new_value)
{
    struct mc_key k;
    mc_key_init(&k, key, key_len);
    struct mc_lease l;
    kvi_status st = mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    memcached_result_st res;
    memcached_result_create(l.mc, &res);
    int done = 0;
    int64_t value = 0;
    for (int tries = 0; st == KVI_OK && !done; tries++) {
        if (tries == MC_CAS_MAX_TRIES) {
            st = kvi_engine_error(c, KVI_E_BACKEND,
                                  "add: gave up after %d conflicting concurrent updates",
                                  MC_CAS_MAX_TRIES);
            break;
        }
        st = mc_add_once(c, l.mc, &k, &res, delta, expire_s, &value, &done);
    }
    memcached_result_free(&res);
    mc_release(c, &l, st);
    if (st == KVI_OK && new_value != NULL)
        *new_value = value;
    return st;
}

static kvi_status use_counter(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                              int64_t now_ms, void *out)
{
    (void)now_ms;
    if (!kvi_parse_int64(it->data, it->len, out))
        return kvi_engine_error(c, KVI_E_NOT_A_COUNTER,
                                "counter_fetch: value of '%s' is not an integer", k->mkey);
    return KVI_OK;
}

static kvi_status mc_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out)
{
    return mc_read_live(c, key, key_len, "counter_fetch", use_counter, out);
}

static kvi_status use_ttl(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                          int64_t now_ms, void *out)
{
    (void)c, (void)k;
    *(int64_t *)out = it->expiry_s == 0 ? -1 : (it->expiry_s * 1000 - now_ms + 999) / 1000;
    return KVI_OK;
}

static kvi_status mc_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
{
    return mc_read_live(c, key, key_len, "ttl", use_ttl, ttl_s);
}

static kvi_status mc_ping(kvi_conn *c)
{
    struct mc_lease l;
    kvi_status st = mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    /* STAT goes to every server of the pool: all must answer (not
     * VERSION: see mc_stat_all()). */
    uint32_t up;
    memcached_return_t rc = mc_stat_all(c, l.mc, &up, 0);
    st = rc == MEMCACHED_SUCCESS ? KVI_OK : mc_fail(c, l.mc, rc, "ping");
    if (mc_retry_once(c, l.mc, st)) {
        rc = mc_stat_all(c, l.mc, &up, 0);
        st = rc == MEMCACHED_SUCCESS ? KVI_OK : mc_fail(c, l.mc, rc, "ping");
    }
    mc_release(c, &l, st);
    return st;
}

static kvi_status mc_stats(kvi_conn *c, kvi_stats *out)
{
    struct mc_lease l;
    kvi_status st = mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    memcached_return_t rc;
    memcached_stat_st *s = memcached_stat(l.mc, NULL, &rc);
    if (s != NULL && rc == MEMCACHED_SUCCESS) {
        uint32_t n = memcached_server_count(l.mc);
        for (uint32_t i = 0; i < n; i++) {
            out->entries += s[i].curr_items;
            out->bytes += s[i].bytes;
            out->hits += s[i].get_hits;
            out->evicted += s[i].evictions;
        }
        out->has_content = 1;
    } else {
        /* The core's own counters are still worth reporting while a server
         * is down; the content figures are then left out. */
        kvi_engine_log(c, KVI_LOG_DEBUG, "stats: %s", memcached_strerror(l.mc, rc));
    }
    if (s != NULL)
        memcached_stat_free(NULL, s);
    mc_release(c, &l, KVI_OK);
    return KVI_OK;
}

static const struct kvi_engine kvi_engine_memcached = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "memcached",
    .description = "memcached server pool (libmemcached, ketama, binary protocol)",
    .caps = KVI_CAP_TTL | KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS | KVI_CAP_BINARY | KVI_CAP_SHARED,
    .conn_size = sizeof(struct mc_conn),
    .max_value_len = 0,
    .options = mc_options,
    .open = mc_open,
    .close = mc_close,
    .store = mc_store,
    .fetch = mc_fetch,
    .remove = mc_remove,
    .add = mc_add,
    .counter_fetch = mc_counter_fetch,
    .ttl = mc_ttl,
    .ping = mc_ping,
    .stats = mc_stats,
};

/* The macro defines this without a prototype; declared here to keep
 * -Wmissing-prototypes quiet. */
const struct kvi_engine *kvi_module_engine(void);
KVI_ENGINE_MODULE(kvi_engine_memcached)
