/*
 * test_hooks.c -- a context's replaceable hooks (src/core/hooks.c): a log
 * hook replaced by another sends to the new one only, and NULL switches
 * logging off; a clock replaced by NULL is the real clock again, and
 * kvi_now_ms(NULL) is the real time; expiry follows whichever clock is set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kvi/engine.h"

static int counts[2];

static void log_hook(void *ud, kvi_log_level level, const char *msg)
{
    (void)level, (void)msg;
    counts[*(const int *)ud]++;
}

static int64_t fixed_clock(void *ud)
{
    return *(const int64_t *)ud;
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An engine whose open() logs one line (and then fails, so that the same
 * id can be tried again). */
static kvi_status talk_open(kvi_conn *c, const kvi_url *url)
{
    (void)url;
    kvi_engine_log(c, KVI_LOG_WARN, "opening");
    return KVI_E_CONNECT;
}

static kvi_status talk_never(kvi_conn *c)
{
    (void)c;
    return KVI_E_INTERNAL;
}

static kvi_status talk_store(kvi_conn *c, const void *k, size_t kl, const void *v, size_t vl,
                             int64_t e)
{
    (void)k, (void)kl, (void)v, (void)vl, (void)e;
    return talk_never(c);
}

static kvi_status talk_fetch(kvi_conn *c, const void *k, size_t kl, kvi_value *out)
{
    (void)k, (void)kl, (void)out;
    return talk_never(c);
}

static kvi_status talk_remove(kvi_conn *c, const void *k, size_t kl)
{
    (void)k, (void)kl;
    return talk_never(c);
}

static const struct kvi_engine talker = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "talker",
    .open = talk_open,
    .store = talk_store,
    .fetch = talk_fetch,
    .remove = talk_remove,
};

static void one_logged_op(kvi *k)
{
    assert_int_equal(kvi_add_url(k, "talker://h/"), KVI_E_CONNECT);
}

static void test_a_replaced_log_hook_gets_nothing(void **state)
{
    (void)state;
    static const int first = 0, second = 1;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &talker), KVI_OK);
    assert_int_equal(kvi_set_log(k, log_hook, (void *)&first, KVI_LOG_DEBUG), KVI_OK);
    counts[0] = counts[1] = 0;
    one_logged_op(k);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 0);
    assert_int_equal(kvi_set_log(k, log_hook, (void *)&second, KVI_LOG_DEBUG), KVI_OK);
    counts[0] = counts[1] = 0;
    one_logged_op(k);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 1);
    assert_int_equal(kvi_set_log(k, NULL, NULL, KVI_LOG_DEBUG), KVI_OK);
    counts[0] = counts[1] = 0;
    one_logged_op(k);
    assert_int_equal(counts[0] + counts[1], 0);
    assert_int_equal(kvi_set_log(NULL, log_hook, NULL, KVI_LOG_DEBUG), KVI_E_INVALID);
    kvi_free(k);
}

static void test_clock_null_is_the_real_clock_again(void **state)
{
    (void)state;
    kvi *k = NULL;
    int64_t t = 1000000;
    assert_int_equal(kvi_new(&k), KVI_OK);
    int64_t now = real_ms();
    assert_true(kvi_now_ms(k) >= now - 5000 && kvi_now_ms(k) <= now + 5000);
    assert_int_equal(kvi_set_clock(k, NULL, NULL), KVI_OK); /* already the default */
    assert_int_equal(kvi_set_clock(k, fixed_clock, &t), KVI_OK);
    assert_int_equal(kvi_now_ms(k), 1000000);
    /* Expiry follows the clock set. */
    assert_int_equal(kvi_store(k, "local", "e", 1, "v", 1, 10), KVI_OK);
    t += 11000;
    kvi_value v = {0};
    assert_int_equal(kvi_fetch(k, "local", "e", 1, &v), KVI_NOT_FOUND);
    /* A second custom clock, then back to the real one. */
    int64_t t2 = 5;
    assert_int_equal(kvi_set_clock(k, fixed_clock, &t2), KVI_OK);
    assert_int_equal(kvi_now_ms(k), 5);
    assert_int_equal(kvi_set_clock(k, NULL, NULL), KVI_OK);
    now = real_ms();
    assert_true(kvi_now_ms(k) >= now - 5000 && kvi_now_ms(k) <= now + 5000);
    now = real_ms();
    assert_true(kvi_now_ms(NULL) >= now - 5000 && kvi_now_ms(NULL) <= now + 5000);
    assert_int_equal(kvi_set_clock(NULL, NULL, NULL), KVI_E_INVALID);
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_replaced_log_hook_gets_nothing),
        cmocka_unit_test(test_clock_null_is_the_real_clock_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
