/*
 * state.c -- the per-process state and its node registry (see state.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "route.h"
#include "state.h"

/* Bumped in the child of every fork() (see kvi__redis_state_get).  glibc
 * drops the handler when the module is unloaded. */
static atomic_uint fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_child(void)
{
    atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void fork_register(void)
{
    pthread_atfork(NULL, NULL, fork_child);
}

/* See state.h. */
unsigned kvi__redis_fork_gen(void)
{
    return atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

/* See state.h. */
void kvi__redis_state_free(kvi_conn *c, struct kvi_redis_state *st)
{
    while (st != NULL) {
        struct kvi_redis_state *older = st->retired;
        int own = st->pid == getpid();
        struct kvi_redis_node *n = st->nodes;
        while (n != NULL) {
            struct kvi_redis_node *next = n->next;
            kvi__redis_node_free(c, n, own);
            n = next;
        }
        if (own)
            pthread_rwlock_destroy(&st->lock);
        /* A parent's listener thread does not exist in a forked child (its
         * own one was stopped by kvi__redis_sentinel_watch_stop). */
        kvi_engine_free(c, atomic_load(&st->watch));
        kvi_engine_free(c, st->seeds);
        kvi_engine_free(c, st->slots);
        kvi_engine_free(c, st);
        st = older;
    }
}

/* See state.h. */
struct kvi_redis_node *kvi__redis_node_get_locked(kvi_conn *c, struct kvi_redis_state *st,
                                                  const char *host, uint16_t port)
{
    struct kvi_redis_node *n;

    for (n = st->nodes; n != NULL; n = n->next)
        if (n->addr.host != NULL && n->addr.port == port && strcmp(n->addr.host, host) == 0)
            return n;
    n = kvi__redis_node_new(c, &st->node_cfg, host, port, NULL);
    if (n == NULL)
        return NULL;
    n->next = st->nodes;
    st->nodes = n;
    return n;
}

/* See state.h. */
struct kvi_redis_node *kvi__redis_node_get(kvi_conn *c, struct kvi_redis_state *st,
                                           const char *host, uint16_t port)
{
    pthread_rwlock_wrlock(&st->lock);
    struct kvi_redis_node *n = kvi__redis_node_get_locked(c, st, host, port);
    pthread_rwlock_unlock(&st->lock);
    return n;
}

/* See state.h. */
struct kvi_redis_state *kvi__redis_state_new(kvi_conn *c, const struct kvi_redis_node_cfg *nc,
                                             const struct kvi_redis_seeds *cfg)
{
    struct kvi_redis_state *st = kvi_engine_malloc(c, sizeof *st);

    if (st == NULL)
        return NULL;
    memset(st, 0, sizeof *st);
    /* Registered before the generation is read: any later fork bumps it. */
    pthread_once(&fork_once, fork_register);
    st->fork_gen = kvi__redis_fork_gen();
    st->pid = getpid();
    st->node_cfg = *nc;
    pthread_rwlock_init(&st->lock, NULL);
    atomic_init(&st->current, 0);
    atomic_init(&st->last_refresh_ms, 0);
    atomic_init(&st->map_stale, NULL);
    atomic_init(&st->rr, 0);
    atomic_init(&st->master, NULL);
    atomic_init(&st->watch, NULL);
    atomic_init(&st->nc, NULL);
    size_t nseeds = cfg->socket != NULL ? 1 : cfg->nhosts;
    st->seeds = kvi_engine_malloc(c, nseeds * sizeof *st->seeds);
    st->slots = kvi_engine_malloc(c, KVI_REDIS_SLOTS * sizeof *st->slots);
    if (st->seeds == NULL || st->slots == NULL) {
        kvi__redis_state_free(c, st);
        return NULL;
    }
    memset(st->slots, 0, KVI_REDIS_SLOTS * sizeof *st->slots);
    for (size_t i = 0; i < nseeds; i++) {
        struct kvi_redis_node *n;
        if (cfg->socket != NULL) {
            n = kvi__redis_node_new(c, nc, NULL, 0, cfg->socket);
            if (n != NULL) {
                n->next = st->nodes;
                st->nodes = n;
            }
        } else {
            /* A host listed twice is one node. */
            n = kvi__redis_node_get_locked(c, st, cfg->hosts[i].host, cfg->hosts[i].port);
        }
        if (n == NULL) {
            kvi__redis_state_free(c, st);
            return NULL;
        }
        n->sentinel = cfg->sentinels;
        st->seeds[st->nseeds++] = n;
    }
    return st;
}

/* See state.h. */
kvi_status kvi__redis_node_snapshot(kvi_conn *c, struct kvi_redis_state *st,
                                    struct kvi_redis_node ***out, size_t *count)
{
    pthread_rwlock_rdlock(&st->lock);
    size_t n = 0;
    for (struct kvi_redis_node *nd = st->nodes; nd != NULL; nd = nd->next)
        n++;
    struct kvi_redis_node **arr = kvi_engine_malloc(c, (n + 1) * sizeof *arr);
    if (arr != NULL) {
        size_t i = 0;
        for (struct kvi_redis_node *nd = st->nodes; nd != NULL; nd = nd->next)
            arr[i++] = nd;
    }
    pthread_rwlock_unlock(&st->lock);
    if (arr == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    *out = arr;
    *count = n;
    return KVI_OK;
}
