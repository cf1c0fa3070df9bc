/*
 * test_core_scrub.c -- a password never survives in a detail message or a
 * log line, even when the text is longer than the message buffer and the
 * cut falls inside the password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/engine.h"

#define SECRET "SuperSecretPassword123"

static size_t pad_len; /* bytes of filler before the password */
static char logged[8192];

static kvi_status leaky_open(kvi_conn *c, const kvi_url *url)
{
    char pad[4096];
    memset(pad, 'x', pad_len);
    pad[pad_len] = '\0';
    kvi_engine_log(c, KVI_LOG_ERROR, "%s%s tail", pad, url->password);
    return kvi_engine_error(c, KVI_E_AUTH, "%s%s tail", pad, url->password);
}

static kvi_status never(kvi_conn *c)
{
    (void)c;
    return KVI_E_INTERNAL;
}

static kvi_status no_store(kvi_conn *c, const void *k, size_t kl, const void *v, size_t vl,
                           int64_t e)
{
    (void)k, (void)kl, (void)v, (void)vl, (void)e;
    return never(c);
}

static kvi_status no_fetch(kvi_conn *c, const void *k, size_t kl, kvi_value *out)
{
    (void)k, (void)kl, (void)out;
    return never(c);
}

static kvi_status no_remove(kvi_conn *c, const void *k, size_t kl)
{
    (void)k, (void)kl;
    return never(c);
}

static const struct kvi_engine leaky = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "leaky",
    .open = leaky_open,
    .store = no_store,
    .fetch = no_fetch,
    .remove = no_remove,
};

static void on_log(void *ud, kvi_log_level level, const char *msg)
{
    (void)ud, (void)level;
    snprintf(logged, sizeof logged, "%s", msg);
}

/* No prefix of 4 or more password bytes (what a cut would leave) and no
 * whole password in the message. */
static void assert_no_secret_piece(const char *msg)
{
    static const char secret[] = SECRET;
    for (size_t len = 4; len < sizeof secret; len++) {
        char piece[sizeof secret];
        memcpy(piece, secret, len);
        piece[len] = '\0';
        if (strstr(msg, piece) != NULL)
            fail_msg("password prefix '%s' survives in: ...%s", piece,
                     msg + (strlen(msg) > 40 ? strlen(msg) - 40 : 0));
    }
}

static void test_cut_password_is_scrubbed_at_every_offset(void **state)
{
    (void)state;
    for (pad_len = 400; pad_len < 1100; pad_len += 1) {
        kvi *k = NULL;
        assert_int_equal(kvi_new(&k), KVI_OK);
        assert_int_equal(kvi_register_engine(k, &leaky), KVI_OK);
        assert_int_equal(kvi_set_log(k, on_log, NULL, KVI_LOG_ERROR), KVI_OK);
        logged[0] = '\0';
        assert_int_equal(kvi_add_url(k, "leaky://u:" SECRET "@h/"), KVI_E_AUTH);
        const char *msg = kvi_errmsg(k);
        assert_true(strlen(msg) > 0);
        assert_no_secret_piece(msg);
        assert_true(strlen(logged) > 0);
        assert_no_secret_piece(logged);
        kvi_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_password_is_scrubbed_at_every_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
