/*
 * test_core_breaker.c -- the circuit breaker engines keep per server
 * (src/core/breaker.c, include/kvi/engine.h "Circuit breaker"), driven
 * directly: down_after failures in a row mark a server down, calls then
 * fail at once saying until when, one probe at a time after down_for, its
 * answer marks the server up and its failure down again; an answer resets
 * the count; down_after 0 never marks down.  No server, no sleeping
 * longer than a few down_for of 100 ms: a breaker that never opens (or
 * never closes) fails here in well under a second, where the integration
 * tests would need a stopped server and many timeouts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/engine.h"
#include "kvi/kvi.h"

/* Tests that wait for down_for to pass use DOWN_FOR_MS; the others a
 * down_for no stall of a loaded machine (valgrind, ASan, 2 cores) can
 * reach, so that "fails at once" never meets an early probe. */
#define DOWN_FOR_MS 1000
#define NO_WAIT_MS 600000
#define SERVER "127.0.0.1:6379"

struct fx {
    kvi *k;
    kvi_conn *c;
    kvi_breaker *b;
    int warns, infos;
    char last[512];
};

static void log_hook(void *ud, kvi_log_level level, const char *msg)
{
    struct fx *f = ud;
    if (level == KVI_LOG_WARN)
        f->warns++;
    if (level == KVI_LOG_INFO)
        f->infos++;
    snprintf(f->last, sizeof f->last, "%s", msg);
}

static struct fx *fx_new_for(int64_t down_after, uint32_t down_for_ms)
{
    static struct fx f;
    memset(&f, 0, sizeof f);
    assert_int_equal(kvi_new(&f.k), KVI_OK);
    kvi_set_log(f.k, log_hook, &f, KVI_LOG_INFO);
    assert_int_equal(kvi_conn_get(f.k, "local", &f.c), KVI_OK);
    kvi_breaker_options opt = {.down_after = down_after, .down_for_ms = down_for_ms};
    f.b = kvi_breaker_new(f.c, &opt);
    assert_non_null(f.b);
    return &f;
}

static struct fx *fx_new(int64_t down_after)
{
    return fx_new_for(down_after, NO_WAIT_MS);
}

static void fx_free(struct fx *f)
{
    kvi_breaker_free(f->c, f->b);
    kvi_free(f->k);
}

/* One call through the breaker that ends with st; returns what enter said. */
static kvi_status call(struct fx *f, kvi_status st, int *probe_out)
{
    int probe = -1;
    kvi_status e = kvi_breaker_enter(f->c, f->b, SERVER, &probe);
    assert_true(probe == 0 || probe == 1);
    if (probe_out != NULL)
        *probe_out = probe;
    if (e == KVI_OK)
        kvi_breaker_leave(f->c, f->b, SERVER, probe, st);
    else
        assert_int_equal(probe, 0);
    return e;
}

static void test_down_after_failures_in_a_row_marks_down_and_fails_at_once(void **state)
{
    (void)state;
    struct fx *f = fx_new(3);
    assert_int_equal(call(f, KVI_E_TIMEOUT, NULL), KVI_OK);
    assert_int_equal(call(f, KVI_E_TIMEOUT, NULL), KVI_OK);
    assert_int_equal(f->warns, 0);
    /* The third failure in a row marks it down (logged once, as a warning). */
    assert_int_equal(call(f, KVI_E_TIMEOUT, NULL), KVI_OK);
    assert_int_equal(f->warns, 1);
    assert_non_null(strstr(f->last, SERVER " marked down until"));
    assert_non_null(strstr(f->last, "after 3 timeouts in a row"));
    /* Now every call fails at once with the kind of the failures. */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(call(f, KVI_OK, NULL), KVI_E_TIMEOUT);
        assert_non_null(strstr(kvi_errmsg(f->k), SERVER " is marked down until"));
        assert_non_null(strstr(kvi_errmsg(f->k), " UTC after 3 timeouts in a row"));
    }
    assert_int_equal(f->warns, 1);
    fx_free(f);
}

static void test_connect_failures_fail_as_connect(void **state)
{
    (void)state;
    struct fx *f = fx_new(2);
    assert_int_equal(call(f, KVI_E_CONNECT, NULL), KVI_OK);
    assert_int_equal(call(f, KVI_E_CONNECT, NULL), KVI_OK);
    assert_int_equal(call(f, KVI_OK, NULL), KVI_E_CONNECT);
    assert_non_null(strstr(kvi_errmsg(f->k), "connect failures in a row"));
    fx_free(f);
}

static void test_an_answer_resets_the_count(void **state)
{
    (void)state;
    struct fx *f = fx_new(3);
    /* Failures that are not in a row never mark down; any answer (an
     * error reply, a miss) is an answer. */
    static const kvi_status answers[] = {KVI_OK, KVI_NOT_FOUND, KVI_E_BACKEND, KVI_E_AUTH};
    for (int round = 0; round < 8; round++) {
        assert_int_equal(call(f, KVI_E_TIMEOUT, NULL), KVI_OK);
        assert_int_equal(call(f, KVI_E_CONNECT, NULL), KVI_OK);
        assert_int_equal(call(f, answers[round % 4], NULL), KVI_OK);
    }
    assert_int_equal(f->warns, 0);
    fx_free(f);
}

static void test_one_probe_after_down_for_and_its_answer_marks_up(void **state)
{
    (void)state;
    struct fx *f = fx_new_for(1, DOWN_FOR_MS);
    assert_int_equal(call(f, KVI_E_TIMEOUT, NULL), KVI_OK);
    assert_int_equal(call(f, KVI_OK, NULL), KVI_E_TIMEOUT);
    kvi_sleep_ms(DOWN_FOR_MS + 20);
    /* The first call after down_for is the probe; while it is in flight
     * the others still fail at once, saying a probe is checking. */
    int probe = 0;
    assert_int_equal(kvi_breaker_enter(f->c, f->b, SERVER, &probe), KVI_OK);
    assert_int_equal(probe, 1);
    int other = -1;
    assert_int_equal(kvi_breaker_enter(f->c, f->b, SERVER, &other), KVI_E_TIMEOUT);
    assert_int_equal(other, 0);
    assert_non_null(strstr(kvi_errmsg(f->k), "a probe is checking"));
    kvi_breaker_leave(f->c, f->b, SERVER, probe, KVI_OK);
    assert_non_null(strstr(f->last, SERVER " answers again"));
    assert_int_equal(f->infos, 1);
    /* Up: every call goes ahead, none of them a probe. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(call(f, KVI_OK, &probe), KVI_OK);
        assert_int_equal(probe, 0);
    }
    fx_free(f);
}

static void test_a_failed_probe_marks_down_again_for_down_for(void **state)
{
    (void)state;
    struct fx *f = fx_new_for(2, DOWN_FOR_MS);
    assert_int_equal(call(f, KVI_E_CONNECT, NULL), KVI_OK);
    assert_int_equal(call(f, KVI_E_CONNECT, NULL), KVI_OK);
    kvi_sleep_ms(DOWN_FOR_MS + 20);
    int probe = 0;
    assert_int_equal(call(f, KVI_E_TIMEOUT, &probe), KVI_OK);
    assert_int_equal(probe, 1);
    /* Down again at once (not after down_after more failures), now as
     * timeouts, until a new down_for has passed. */
    assert_int_equal(call(f, KVI_OK, NULL), KVI_E_TIMEOUT);
    assert_null(strstr(kvi_errmsg(f->k), "a probe is checking"));
    kvi_sleep_ms(DOWN_FOR_MS + 20);
    assert_int_equal(call(f, KVI_OK, &probe), KVI_OK);
    assert_int_equal(probe, 1);
    assert_int_equal(call(f, KVI_OK, &probe), KVI_OK);
    assert_int_equal(probe, 0);
    fx_free(f);
}

static void test_down_for_is_kept_before_the_probe(void **state)
{
    (void)state;
    struct fx *f = fx_new_for(1, DOWN_FOR_MS);
    assert_int_equal(call(f, KVI_E_TIMEOUT, NULL), KVI_OK);
    int64_t t0 = kvi_monotonic_ms(); /* down_for runs from before this */
    /* During the first half of down_for no call goes through (polled, so a
     * slow machine only makes the loop shorter; half of it is margin for a
     * stall between the clock read and the call). */
    int probe = 0;
    while (kvi_monotonic_ms() - t0 < DOWN_FOR_MS / 2) {
        assert_int_equal(call(f, KVI_OK, &probe), KVI_E_TIMEOUT);
        kvi_sleep_ms(5);
    }
    kvi_sleep_ms(DOWN_FOR_MS - (kvi_monotonic_ms() - t0) + 50);
    assert_int_equal(call(f, KVI_OK, &probe), KVI_OK);
    assert_int_equal(probe, 1);
    fx_free(f);
}

static void test_down_after_0_never_marks_down(void **state)
{
    (void)state;
    struct fx *f = fx_new(0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(call(f, i % 2 ? KVI_E_TIMEOUT : KVI_E_CONNECT, NULL), KVI_OK);
    assert_int_equal(f->warns, 0);
    fx_free(f);
}

static void test_null_breaker_lets_every_call_through(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    int probe = -1;
    assert_int_equal(kvi_breaker_enter(f->c, NULL, SERVER, &probe), KVI_OK);
    assert_int_equal(probe, 0);
    kvi_breaker_leave(f->c, NULL, SERVER, 0, KVI_E_TIMEOUT);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_down_after_failures_in_a_row_marks_down_and_fails_at_once),
        cmocka_unit_test(test_connect_failures_fail_as_connect),
        cmocka_unit_test(test_an_answer_resets_the_count),
        cmocka_unit_test(test_one_probe_after_down_for_and_its_answer_marks_up),
        cmocka_unit_test(test_a_failed_probe_marks_down_again_for_down_for),
        cmocka_unit_test(test_down_for_is_kept_before_the_probe),
        cmocka_unit_test(test_down_after_0_never_marks_down),
        cmocka_unit_test(test_null_breaker_lets_every_call_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
