/*
 * hooks.c -- a context's replaceable hooks: the log hook, the wall clock
 * (kvi_set_clock, kvi_now_ms) and the slow-call threshold.  A hook is
 * published as one pointer, and replaced hooks are kept until kvi_free(),
 * so a reader needs no lock.
 */
#include <time.h>

#include "core/hooks.h"

static int64_t realtime_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Shared by every context and never freed or changed. */
static struct kvi__hook default_clock = {(void (*)(void))realtime_ms, NULL, 0, NULL};

static void free_hooks(kvi *k, struct kvi__hook *h)
{
    while (h != NULL && h != &default_clock) {
        struct kvi__hook *older = h->older;
        kvi__free(k, h);
        h = older;
    }
}

void kvi__hooks_init(kvi *k)
{
    atomic_init(&k->log, NULL);
    atomic_init(&k->slow_us, 100000);
    atomic_init(&k->timed_us, 0);
    atomic_init(&k->clock, &default_clock);
}

void kvi__hooks_free(kvi *k)
{
    free_hooks(k, atomic_load(&k->log));
    free_hooks(k, atomic_load(&k->clock));
    free_hooks(k, k->retired);
}

/* Publishes a new hook in *slot (NULL hook for fn == NULL when nullable),
 * keeping the one it replaces until kvi_free(). */
static kvi_status set_hook(kvi *k, struct kvi__hook *_Atomic *slot, void (*fn)(void), void *ud,
                           int level)
{
    struct kvi__hook *h = NULL;
    if (fn != NULL) {
        h = kvi__malloc(k, sizeof *h);
        if (h == NULL)
            return kvi__error(k, KVI_E_NOMEM, "out of memory setting a hook");
        h->fn = fn;
        h->ud = ud;
        h->level = level;
        h->older = NULL;
    }
    pthread_mutex_lock(&k->config_lock);
    struct kvi__hook *old = atomic_exchange_explicit(slot, h, memory_order_acq_rel);
    if (old != NULL && old != &default_clock) {
        old->older = k->retired;
        k->retired = old;
    }
    pthread_mutex_unlock(&k->config_lock);
    return KVI_OK;
}

/* Calls are timed only when someone can learn of a slow one: a log hook is
 * installed or the threshold was set explicitly.  Otherwise an operation
 * reads no clock at all (two reads were a tenth of a local fetch).  Called
 * under config_lock. */
static void update_timing(kvi *k)
{
    int on = k->slow_set || atomic_load(&k->log) != NULL;
    atomic_store(&k->timed_us, on ? atomic_load(&k->slow_us) : 0);
}

kvi_status kvi_set_log(kvi *k, kvi_log_fn fn, void *ud, kvi_log_level max_level)
{
    if (k == NULL)
        return KVI_E_INVALID;
    kvi__clear_error();
    kvi_status st = set_hook(k, &k->log, (void (*)(void))fn, ud, (int)max_level);
    pthread_mutex_lock(&k->config_lock);
    update_timing(k);
    pthread_mutex_unlock(&k->config_lock);
    return st;
}

void kvi_set_slow_threshold(kvi *k, uint64_t threshold_us)
{
    if (k == NULL)
        return;
    pthread_mutex_lock(&k->config_lock);
    atomic_store(&k->slow_us, threshold_us);
    k->slow_set = 1;
    update_timing(k);
    pthread_mutex_unlock(&k->config_lock);
}

kvi_status kvi_set_clock(kvi *k, kvi_clock_fn fn, void *ud)
{
    if (k == NULL)
        return KVI_E_INVALID;
    kvi__clear_error();
    if (fn == NULL) {
        pthread_mutex_lock(&k->config_lock);
        struct kvi__hook *old = atomic_exchange(&k->clock, &default_clock);
        if (old != &default_clock) {
            old->older = k->retired;
            k->retired = old;
        }
        pthread_mutex_unlock(&k->config_lock);
        return KVI_OK;
    }
    return set_hook(k, &k->clock, (void (*)(void))fn, ud, 0);
}

int64_t kvi_now_ms(kvi *k)
{
    if (k == NULL)
        return realtime_ms(NULL);
    const struct kvi__hook *h = atomic_load_explicit(&k->clock, memory_order_acquire);
    return ((kvi_clock_fn)h->fn)(h->ud);
}
