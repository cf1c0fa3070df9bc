/*
 * mc_watch.c -- the watchdog: one deadline per call, kept by one thread per
 * generation (connection and process).
 *
 * libmemcached's timeouts apply to each wait for the socket, so a server
 * that sends a byte now and then keeps a call going for as long as it
 * likes; the watchdog ends each call at its deadline by cutting its
 * connections (the call then fails with KVI_E_TIMEOUT, see kvi__mc_fail()).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "mc_engine.h"

_Thread_local int64_t kvi__mc_batch_deadline_ms KVI_MODULE_TLS;

int kvi__mc_watch_init(struct mc_gen *g)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                     pthread_cond_init(&g->wcond, &ca) == 0
                 ? 0
                 : -1;
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return -1;
    if (pthread_mutex_init(&g->wlock, NULL) != 0) {
        pthread_cond_destroy(&g->wcond);
        return -1;
    }
    return 0;
}

void kvi__mc_watch_destroy(struct mc_gen *g)
{
    pthread_mutex_lock(&g->wlock);
    g->wstop = 1;
    pthread_cond_signal(&g->wcond);
    pthread_mutex_unlock(&g->wlock);
    if (g->wstarted)
        pthread_join(g->wtid, NULL);
    pthread_mutex_destroy(&g->wlock);
    pthread_cond_destroy(&g->wcond);
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

/* Puts l in the list, which is kept sorted by deadline. */
static void mc_watch_insert(struct mc_gen *g, struct mc_lease *l)
{
    struct mc_lease *at = g->whead;
    while (at != NULL && at->deadline_ms <= l->deadline_ms)
        at = at->next;
    l->next = at;
    l->prev = at != NULL ? at->prev : g->wtail;
    if (l->prev != NULL)
        l->prev->next = l;
    else
        g->whead = l;
    if (at != NULL)
        at->prev = l;
    else
        g->wtail = l;
    l->armed = 1;
}

/* The watchdog thread: cuts the calls whose deadline has passed. */
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
            int64_t wake = kvi_monotonic_ms() + g->call_ms;
            struct timespec ts = {.tv_sec = (time_t)(wake / 1000),
                                  .tv_nsec = (long)(wake % 1000) * 1000000L};
            pthread_cond_timedwait(&g->wcond, &g->wlock, &ts);
            idle_rounds++;
            continue;
        }
        idle_rounds = 0;
        if (l->deadline_ms > kvi_monotonic_ms()) {
            struct timespec ts = {.tv_sec = (time_t)(l->deadline_ms / 1000),
                                  .tv_nsec = (long)(l->deadline_ms % 1000) * 1000000L};
            pthread_cond_timedwait(&g->wcond, &g->wlock, &ts);
            continue;
        }
        mc_unwatch(g, l);
        atomic_store(&l->expired, 1);
        /* Under wlock: the call cannot end and give its handle back
         * meanwhile (kvi__mc_disarm waits). */
        mc_cut(l->mc);
        /* A cut can miss: a connection being made has no source port yet,
         * and libmemcached may connect again after a cut and wait a whole
         * poll timeout more.  Cut again every MC_WATCH_RECUT_MS until the
         * call ends (kvi__mc_disarm takes it off the list). */
        l->deadline_ms = kvi_monotonic_ms() + MC_WATCH_RECUT_MS;
        mc_watch_insert(g, l);
    }
    pthread_mutex_unlock(&g->wlock);
    return NULL;
}

/* Starts the deadline of the call holding l (the watchdog thread of the
 * generation is started on first use; without it calls are not cut). */
void kvi__mc_arm(const struct mc_conn *m, struct mc_lease *l)
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
        l->deadline_ms = kvi_monotonic_ms() + m->call_ms;
        int64_t bd = kvi__mc_batch_deadline_ms;
        if (bd != 0 && bd < l->deadline_ms) {
            /* A batch's earlier deadline: in its place in the list, and
             * the watchdog told (it may be waiting for a later one). */
            l->deadline_ms = bd;
            mc_watch_insert(g, l);
            g->wasleep = 0;
            pthread_cond_signal(&g->wcond);
        } else {
            /* Deadlines are now + the same call_ms, taken under the lock,
             * and a batch's only earlier: appending keeps the list sorted. */
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
    }
    pthread_mutex_unlock(&g->wlock);
}

/* Ends the deadline of l; returns 1 when it had expired. */
int kvi__mc_disarm(struct mc_lease *l)
{
    struct mc_gen *g = l->gen;
    pthread_mutex_lock(&g->wlock);
    if (l->armed)
        mc_unwatch(g, l);
    pthread_mutex_unlock(&g->wlock);
    memcached_set_user_data(l->mc, NULL);
    return atomic_load(&l->expired);
}
