/*
 * breaker.c -- the circuit breaker engines keep per server (see
 * include/kvi/engine.h, "Circuit breaker").
 *
 * State: up (down_until_ms == 0) -> after down_after failures in a row,
 * down until down_until_ms -> then half-open: one probe at a time is let
 * through; its answer closes the breaker, its failure opens it again.
 * The fast path of a server that is up takes no lock: two atomic loads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kvi/engine.h"

struct kvi_breaker {
    pthread_mutex_t mu;
    int64_t down_after;
    uint32_t down_for_ms;
    atomic_int_least64_t down_until_ms; /* monotonic; 0 = up */
    atomic_int_least64_t failures;      /* in a row */
    int64_t down_until_wall_ms;         /* the same moment, for messages */
    int probing;                        /* a probe is in flight */
    kvi_status kind;                    /* KVI_E_TIMEOUT or KVI_E_CONNECT */
};

/* Wall-clock ms, only for the "until HH:MM:SS" of messages. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* See engine.h. */
kvi_breaker *kvi_breaker_new(kvi_conn *c, const kvi_breaker_options *opt)
{
    kvi_breaker *b = kvi_engine_malloc(c, sizeof *b);
    if (b == NULL)
        return NULL;
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    b->down_after = opt->down_after;
    b->down_for_ms = opt->down_for_ms;
    atomic_init(&b->down_until_ms, 0);
    atomic_init(&b->failures, 0);
    b->kind = KVI_E_CONNECT;
    return b;
}

/* See engine.h. */
void kvi_breaker_free(kvi_conn *c, kvi_breaker *b)
{
    if (b == NULL)
        return;
    pthread_mutex_destroy(&b->mu);
    kvi_engine_free(c, b);
}

static const char *kind_words(kvi_status kind)
{
    return kind == KVI_E_TIMEOUT ? "timeouts" : "connect failures";
}

/* "HH:MM:SS.mmm" (UTC) of a wall-clock time in ms. */
static void format_utc(int64_t wall_ms, char *buf, size_t len)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, len, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(wall_ms % 1000));
}

/* See engine.h. */
kvi_status kvi_breaker_enter(kvi_conn *c, kvi_breaker *b, const char *server, int *probe)
{
    *probe = 0;
    if (b == NULL || atomic_load(&b->down_until_ms) == 0)
        return KVI_OK;
    pthread_mutex_lock(&b->mu);
    int64_t until = atomic_load(&b->down_until_ms);
    int64_t now = kvi_monotonic_ms();
    if (until == 0 || (now >= until && !b->probing)) {
        /* Up again meanwhile, or this call is the one probe. */
        if (until != 0) {
            b->probing = 1;
            *probe = 1;
        }
        pthread_mutex_unlock(&b->mu);
        return KVI_OK;
    }
    kvi_status kind = b->kind;
    int64_t failures = atomic_load(&b->failures);
    char when[32];
    format_utc(b->down_until_wall_ms, when, sizeof when);
    int probing = b->probing;
    pthread_mutex_unlock(&b->mu);
    if (probing)
        return kvi_engine_error(c, kind,
                                "%s is marked down since %lld %s in a row (until %s UTC); a probe "
                                "is checking whether it is back, calls fail at once meanwhile",
                                server, (long long)failures, kind_words(kind), when);
    return kvi_engine_error(c, kind,
                            "%s is marked down until %s UTC after %lld %s in a row; calls fail at "
                            "once until then",
                            server, when, (long long)failures, kind_words(kind));
}

/* Marks b down from now (caller holds mu). */
static void mark_down(kvi_breaker *b, kvi_status kind)
{
    b->kind = kind;
    b->down_until_wall_ms = wall_ms() + b->down_for_ms;
    int64_t until = kvi_monotonic_ms() + b->down_for_ms;
    atomic_store(&b->down_until_ms, until > 0 ? until : 1);
}

/* See engine.h. */
void kvi_breaker_leave(kvi_conn *c, kvi_breaker *b, const char *server, int probe, kvi_status st)
{
    if (b == NULL || b->down_after <= 0)
        return;
    int failed = st == KVI_E_TIMEOUT || st == KVI_E_CONNECT;
    if (!failed) {
        if (!probe && atomic_load(&b->failures) == 0 && atomic_load(&b->down_until_ms) == 0)
            return;
        pthread_mutex_lock(&b->mu);
        int was_down = atomic_load(&b->down_until_ms) != 0;
        atomic_store(&b->failures, 0);
        atomic_store(&b->down_until_ms, 0);
        if (probe)
            b->probing = 0;
        pthread_mutex_unlock(&b->mu);
        if (was_down)
            kvi_engine_log(c, KVI_LOG_INFO, "%s answers again: no longer marked down", server);
        return;
    }
    pthread_mutex_lock(&b->mu);
    int64_t failures = atomic_fetch_add(&b->failures, 1) + 1;
    int marked = 0;
    if (probe) {
        b->probing = 0;
        mark_down(b, st);
    } else if (failures >= b->down_after && atomic_load(&b->down_until_ms) == 0) {
        mark_down(b, st);
        marked = 1;
    }
    char when[32];
    format_utc(b->down_until_wall_ms, when, sizeof when);
    pthread_mutex_unlock(&b->mu);
    if (marked)
        kvi_engine_log(c, KVI_LOG_WARN, "%s marked down until %s UTC after %lld %s in a row",
                       server, when, (long long)failures, kind_words(st));
}
