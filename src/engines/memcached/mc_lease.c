/*
 * mc_lease.c -- handles lent to calls, and fork handling.
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
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mc_engine.h"

struct mc_gen *kvi__mc_gen_new(kvi_conn *c, pid_t pid, struct mc_gen *prev)
{
    struct mc_gen *g = kvi_engine_malloc(c, sizeof *g);
    if (g == NULL)
        return NULL;
    memset(g, 0, sizeof *g);
    if (kvi__mc_watch_init(g) != 0) {
        kvi_engine_free(c, g);
        return NULL;
    }
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        kvi__mc_watch_destroy(g);
        kvi_engine_free(c, g);
        return NULL;
    }
    g->pid = pid;
    g->prev = prev;
    return g;
}

void kvi__mc_gen_free(kvi_conn *c, struct mc_gen *g)
{
    kvi__mc_watch_destroy(g);
    for (size_t i = 0; i < g->nidle; i++)
        memcached_free(g->idle[i]);
    kvi__mc_pipe_gen_free(c, g);
    pthread_mutex_destroy(&g->lock);
    kvi_engine_free(c, g);
}

/* The calling process's pid without a system call per call: a page that
 * fork() hands to the child zeroed (MADV_WIPEONFORK, Linux 4.14) caches
 * it, so a zero means "first use or a new process" and getpid() runs once.
 * Where the kernel lacks it every call asks getpid(). */
struct mc_pid_page {
    _Atomic pid_t pid;
};
static struct mc_pid_page *mc_pid_cache;
static pthread_once_t mc_pid_once = PTHREAD_ONCE_INIT;

static void mc_pid_cache_init(void)
{
#ifdef MADV_WIPEONFORK
    long page = sysconf(_SC_PAGESIZE);
    size_t size = page > 0 ? (size_t)page : 4096u;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    if (madvise(p, size, MADV_WIPEONFORK) != 0) {
        munmap(p, size);
        return;
    }
    mc_pid_cache = p; /* kept for the life of the process */
#endif
}

static pid_t mc_pid(void)
{
    pthread_once(&mc_pid_once, mc_pid_cache_init);
    if (mc_pid_cache == NULL)
        return getpid();
    pid_t pid = atomic_load_explicit(&mc_pid_cache->pid, memory_order_relaxed);
    if (pid == 0) {
        pid = getpid();
        atomic_store_explicit(&mc_pid_cache->pid, pid, memory_order_relaxed);
    }
    return pid;
}

static struct mc_gen *mc_gen_current(kvi_conn *c, struct mc_conn *m)
{
    pid_t pid = mc_pid();
    for (;;) {
        struct mc_gen *g = atomic_load_explicit(&m->gen, memory_order_acquire);
        if (g->pid == pid)
            return g;
        struct mc_gen *fresh = kvi__mc_gen_new(c, pid, g);
        if (fresh == NULL)
            return NULL;
        if (atomic_compare_exchange_strong_explicit(&m->gen, &g, fresh, memory_order_acq_rel,
                                                    memory_order_acquire))
            return fresh;
        /* Another thread of this process won the race; use its generation. */
        kvi__mc_gen_free(c, fresh);
    }
}

struct mc_gen *kvi__mc_gen_current(kvi_conn *c)
{
    return mc_gen_current(c, kvi_conn_priv(c));
}

kvi_status kvi__mc_acquire(kvi_conn *c, struct mc_lease *l)
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
    kvi__mc_arm(m, l);
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
     * the next request would take for its own reply: close them (also
     * after a failed SASL handshake, so the next call tries it afresh). */
    if (st == KVI_E_IO || st == KVI_E_PROTOCOL || st == KVI_E_TIMEOUT || st == KVI_E_AUTH)
        memcached_quit(mc);
    if (m->retry_s == 0 &&
        (st == KVI_E_CONNECT || st == KVI_E_TIMEOUT || st == KVI_E_IO || st == KVI_E_AUTH)) {
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
int kvi__mc_retry_once(kvi_conn *c, memcached_st *mc, kvi_status st)
{
    if (st != KVI_E_CONNECT && st != KVI_E_IO)
        return 0;
    mc_after_failure(c, mc, st);
    return 1;
}

/* Gives a handle back; st is the outcome of the call. */
void kvi__mc_release(kvi_conn *c, struct mc_lease *l, kvi_status st)
{
    /* A call that ended just as it was cut leaves shut sockets. */
    if (kvi__mc_disarm(l))
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
