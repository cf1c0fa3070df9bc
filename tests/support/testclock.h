/*
 * testclock.h -- the one clock helper of kvi's test programs (part of the
 * kvi_testsupport library, prefix kvi_test_): real time for deadlines and
 * waits, and a manual clock to hand to kvi_set_clock() so that expiry can
 * be tested without sleeping.
 *
 *   int64_t t0 = kvi_test_mono_ms();  ...  kvi_test_mono_ms() - t0 < 2000
 *
 *   static kvi_test_clock clk;
 *   kvi_test_clock_set(&clk, INT64_C(1700000000000));
 *   kvi_set_clock(k, kvi_test_clock_fn, &clk);
 *   kvi_test_clock_advance(&clk, 1500);
 */
#ifndef KVI_TEST_CLOCK_H
#define KVI_TEST_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Monotonic milliseconds (kvi_monotonic_ms), for deadlines and elapsed
 * times in tests. */
int64_t kvi_test_mono_ms(void);

/* Monotonic seconds with a fraction, for rates printed by benchmarks. */
double kvi_test_mono_s(void);

/* Wall-clock milliseconds since the epoch (CLOCK_REALTIME), what a
 * context's default clock reads. */
int64_t kvi_test_wall_ms(void);

/* Sleeps at least ms milliseconds (kvi_sleep_ms). */
void kvi_test_sleep_ms(int64_t ms);

/* A manual clock: only the test moves it.  Safe to read from many threads. */
typedef struct kvi_test_clock {
    _Atomic int64_t now_ms;
} kvi_test_clock;

/* A kvi_clock_fn reading the kvi_test_clock that ud points to. */
int64_t kvi_test_clock_fn(void *ud);

/* Sets / moves the manual clock. */
void kvi_test_clock_set(kvi_test_clock *c, int64_t now_ms);
void kvi_test_clock_advance(kvi_test_clock *c, int64_t delta_ms);

#ifdef __cplusplus
}
#endif

#endif /* KVI_TEST_CLOCK_H */
