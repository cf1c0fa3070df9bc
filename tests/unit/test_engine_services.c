/*
 * test_engine_services.c -- the services include/kvi/engine.h gives every
 * engine so that none re-makes them: the monotonic clock and sleep, string
 * duplication through the context's allocator, and password-safe messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/engine.h"

static void test_monotonic_clock_never_goes_back_and_sleep_waits(void **state)
{
    (void)state;
    int64_t t0 = kvi_monotonic_ms();
    assert_true(t0 >= 0);
    int64_t prev = t0;
    for (int i = 0; i < 1000; i++) {
        int64_t t = kvi_monotonic_ms();
        assert_true(t >= prev);
        prev = t;
    }
    kvi_sleep_ms(30);
    /* A lower bound only: a loaded machine may sleep longer. */
    assert_true(kvi_monotonic_ms() - t0 >= 30);
}

static void test_sleep_of_zero_or_less_returns_at_once(void **state)
{
    (void)state;
    int64_t t0 = kvi_monotonic_ms();
    kvi_sleep_ms(0);
    kvi_sleep_ms(-5);
    kvi_sleep_ms(INT64_MIN);
    /* Generous: only a real sleep of seconds would fail this. */
    assert_true(kvi_monotonic_ms() - t0 < 1000);
}

/* ---- an engine that uses the services in open() ------------------------ */

static size_t allocs;

static void *count_malloc(void *ud, size_t n)
{
    (void)ud;
    allocs++;
    return malloc(n);
}

static void *count_realloc(void *ud, void *p, size_t n)
{
    (void)ud;
    return realloc(p, n);
}

static void count_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

static struct {
    size_t allocs_before, allocs_after;
    char copy[64];
    int null_copy_is_null;
    char scrubbed[128];
} seen;

static kvi_status s_open(kvi_conn *c, const kvi_url *url)
{
    seen.allocs_before = allocs;
    char *d = kvi_engine_strdup(c, "copied text");
    seen.allocs_after = allocs;
    if (d == NULL)
        return KVI_E_NOMEM;
    strcpy(seen.copy, d);
    kvi_engine_free(c, d);
    seen.null_copy_is_null = kvi_engine_strdup(c, NULL) == NULL;

    char msg[128] = "server said: bad password Pa55word-x9 (Pa55word-x9)";
    kvi_engine_scrub(c, msg);
    strcpy(seen.scrubbed, msg);
    kvi_engine_scrub(NULL, msg); /* accepted, does nothing */
    kvi_engine_scrub(c, NULL);

    if (kvi_url_option_get(url, "fail") != NULL)
        return kvi_engine_error(c, KVI_E_AUTH, "server text: WRONGPASS for %s", url->password);
    return KVI_OK;
}

static kvi_status s_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t expire_s)
{
    (void)c, (void)key, (void)key_len, (void)val, (void)val_len, (void)expire_s;
    return KVI_OK;
}

static kvi_status s_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    (void)c, (void)key, (void)key_len, (void)out;
    return KVI_NOT_FOUND;
}

static kvi_status s_remove(kvi_conn *c, const void *key, size_t key_len)
{
    (void)c, (void)key, (void)key_len;
    return KVI_NOT_FOUND;
}

static const char *const svc_option_names[] = {"fail", NULL};

static const struct kvi_engine svc_engine = {
    .abi_version = 1, /* a name-listed option: the engine reads it itself */
    .name = "svc",
    .open = s_open,
    .store = s_store,
    .fetch = s_fetch,
    .remove = s_remove,
    .options = svc_option_names,
};

static kvi *new_context(void)
{
    static const kvi_allocator a = {count_malloc, count_realloc, count_free, NULL};
    kvi *k = NULL;
    assert_int_equal(kvi_new_with_allocator(&k, &a), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &svc_engine), KVI_OK);
    memset(&seen, 0, sizeof seen);
    return k;
}

static void test_strdup_copies_through_the_context_allocator(void **state)
{
    (void)state;
    kvi *k = new_context();
    assert_int_equal(kvi_add_url(k, "svc://:Pa55word-x9@h/"), KVI_OK);
    assert_string_equal(seen.copy, "copied text");
    assert_int_equal(seen.allocs_after, seen.allocs_before + 1);
    assert_true(seen.null_copy_is_null);
    kvi_free(k);
}

static void test_scrub_and_engine_errors_hide_the_password(void **state)
{
    (void)state;
    kvi *k = new_context();
    assert_int_equal(kvi_add_url(k, "svc://:Pa55word-x9@h/"), KVI_OK);
    assert_string_equal(seen.scrubbed, "server said: bad password *** (***)");
    assert_int_equal(kvi_add_url(k, "svc:b://:Pa55word-x9@h/?fail=1"), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "Pa55word"));
    assert_non_null(strstr(kvi_errmsg(k), "WRONGPASS for ***"));
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic_clock_never_goes_back_and_sleep_waits),
        cmocka_unit_test(test_sleep_of_zero_or_less_returns_at_once),
        cmocka_unit_test(test_strdup_copies_through_the_context_allocator),
        cmocka_unit_test(test_scrub_and_engine_errors_hide_the_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
