/*
 * testclock.c -- the one clock helper of the test programs (testclock.h).
 */
#include "testclock.h"

#include <time.h>

#include "kvi/engine.h"

int64_t kvi_test_mono_ms(void)
{
    return kvi_monotonic_ms();
}

double kvi_test_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t kvi_test_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kvi_test_sleep_ms(int64_t ms)
{
    kvi_sleep_ms(ms);
}

int64_t kvi_test_clock_fn(void *ud)
{
    return atomic_load(&((kvi_test_clock *)ud)->now_ms);
}

void kvi_test_clock_set(kvi_test_clock *c, int64_t now_ms)
{
    atomic_store(&c->now_ms, now_ms);
}

void kvi_test_clock_advance(kvi_test_clock *c, int64_t delta_ms)
{
    atomic_fetch_add(&c->now_ms, delta_ms);
}
