/*
 * clock.c -- the monotonic clock and sleep the core and the engines share
 * (kvi_monotonic_ms, kvi_sleep_ms, kvi__clock_us).  The replaceable wall
 * clock of a context (kvi_set_clock, kvi_now_ms) is a hook of the context.
 */
#include <errno.h>
#include <time.h>

#include "core/types.h"

uint64_t kvi__clock_us(int coarse)
{
    struct timespec ts;
    clock_gettime(coarse ? CLOCK_MONOTONIC_COARSE : CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Milliseconds of CLOCK_MONOTONIC.  Thread-safe. */
int64_t kvi_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps at least ms milliseconds, resuming after signals.  Thread-safe. */
void kvi_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
