/*
 * test_core_scrub.c -- a password never survives in a detail message or a
 * log line, even when the text is longer than the message buffer and the
 * cut falls inside the password; and only what came from outside (the
 * arguments of the message: URL parts, a server's reply) is masked, never the
 * message's own words, so a short or common-word password neither garbles a
 * message nor can be read off it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

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

/* An engine whose open() fails with fixed words, the engine id and a
 * server's reply that echoes the password. */
static const char *server_reply;
static int convs_count;

static const char *wordy_where; /* when set, open() reports with it */

static kvi_status wordy_open(kvi_conn *c, const kvi_url *url)
{
    (void)url;
    if (wordy_where != NULL)
        return kvi_engine_error_in(c, KVI_E_NOT_A_COUNTER, wordy_where, "server said: %s",
                                   server_reply);
    kvi_engine_log(c, KVI_LOG_ERROR, "value is not an integer counter; server said: %s",
                   server_reply);
    return kvi_engine_error(c, KVI_E_NOT_A_COUNTER,
                            "value is not an integer counter; server said: %s", server_reply);
}

/* An engine whose message uses every kind of conversion the formatter
 * knows; the password "7-up" shows up in strings and numbers. */
static kvi_status convs_open(kvi_conn *c, const kvi_url *url)
{
    (void)url;
    return kvi_engine_error(c, KVI_E_PROTOCOL,
                            "%% d=%d i=%i ld=%ld lld=%lld zu=%zu zd=%zd jd=%jd td=%td hhd=%hhd "
                            "hd=%hd u=%u lu=%lu llu=%llu x=%x X=%#X o=%o c=%c s=[%8s] "
                            "p=%s f=%.2f e=%e g=%G Lf=%.1Lf w=[%*d] pr=[%.*s] cut=[%.5s]%n end",
                            -7, 42, -7L, 7LL, (size_t)7, (ssize_t)-7, (intmax_t)7, (ptrdiff_t)-7,
                            (signed char)7, (short)-7, 7u, 7UL, 7ULL, 255u, 255u, 8u, '7', "7-up",
                            "(pointer)", 7.25, 7.0, 0.5, (long double)7.5, 5, 7, 4, "7-up and more",
                            "xx7-up", &convs_count);
}

static const struct kvi_engine convs = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "convs",
    .open = convs_open,
    .store = no_store,
    .fetch = no_fetch,
    .remove = no_remove,
};

static const struct kvi_engine wordy = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "wordy",
    .open = wordy_open,
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

/* Defines wordy://:PASSWORD@h/ (its open fails) and checks the message and
 * the log line against want. */
static void check_wordy(const char *password, const char *reply, const char *want)
{
    kvi *k = NULL;
    char url[128];
    snprintf(url, sizeof url, "wordy://:%s@h/", password);
    server_reply = reply;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &wordy), KVI_OK);
    assert_int_equal(kvi_set_log(k, on_log, NULL, KVI_LOG_ERROR), KVI_OK);
    logged[0] = '\0';
    assert_int_equal(kvi_add_url(k, url), KVI_E_NOT_A_COUNTER);
    assert_string_equal(kvi_errmsg(k), want);
    assert_string_equal(logged, want);
    kvi_free(k);
}

static void test_fixed_words_are_never_masked(void **state)
{
    (void)state;
    /* One letter: the message's words stay whole; the reply is masked. */
    check_wordy("e", "ERR bad e", "wordy: value is not an integer counter; server said: ERR bad *");
    /* A word of the message itself, and the engine id. */
    check_wordy("counter", "WRONGPASS counter",
                "wordy: value is not an integer counter; server said: WRONGPASS ***");
    check_wordy("wordy", "no", "wordy: value is not an integer counter; server said: no");
    /* Longer passwords are still masked wherever a reply has them. */
    check_wordy("Pa55word", "Pa55word and Pa55word",
                "wordy: value is not an integer counter; server said: *** and ***");
}

/* Unsigned sizes and pointers: the same text as snprintf gives. */
static const void *const convs_ptr = &convs_count;

static kvi_status convs2_open(kvi_conn *c, const kvi_url *url)
{
    (void)url;
    return kvi_engine_error(c, KVI_E_PROTOCOL, "jx=%jx tx=%tx p=%p end", (uintmax_t)255,
                            (ptrdiff_t)255, convs_ptr);
}

static const struct kvi_engine convs2 = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "convstwo",
    .open = convs2_open,
    .store = no_store,
    .fetch = no_fetch,
    .remove = no_remove,
};

static void test_unsigned_sizes_and_pointers_format_as_printf(void **state)
{
    (void)state;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &convs2), KVI_OK);
    assert_int_equal(kvi_add_url(k, "convstwo://:7-up@h/"), KVI_E_PROTOCOL);
    char want[128];
    snprintf(want, sizeof want, "convstwo: jx=ff tx=ff p=%p end", convs_ptr);
    assert_string_equal(kvi_errmsg(k), want);
    kvi_free(k);
    /* An engine may report without a connection: the status comes back. */
    assert_int_equal(kvi_engine_error(NULL, KVI_E_IO, "no connection: %s", "x"), KVI_E_IO);
}

static void test_every_conversion_formats_as_printf_and_is_masked(void **state)
{
    (void)state;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &convs), KVI_OK);
    assert_int_equal(kvi_add_url(k, "convs://:7-up@h/"), KVI_E_PROTOCOL);
    /* As printf would write it, with "7-up" masked in what the arguments
     * put in: %8s pads, a precision that cuts the password masks its start. */
    assert_string_equal(kvi_errmsg(k),
                        "convs: % d=-7 i=42 ld=-7 lld=7 zu=7 zd=-7 jd=7 td=-7 hhd=7 hd=-7 u=7 "
                        "lu=7 llu=7 x=ff X=0XFF o=10 c=7 s=[    ***] p=(pointer) f=7.25 "
                        "e=7.000000e+00 g=0.5 Lf=7.5 w=[    7] pr=[***] cut=[xx***] end");
    kvi_free(k);
    /* Without a password nothing is masked. */
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &convs), KVI_OK);
    assert_int_equal(kvi_add_url(k, "convs://h/"), KVI_E_PROTOCOL);
    assert_non_null(strstr(kvi_errmsg(k), "s=[    7-up] "));
    assert_non_null(strstr(kvi_errmsg(k), "pr=[7-up] cut=[xx7-u] end"));
    kvi_free(k);
}

static void test_fixed_words_in_a_variable_are_never_masked(void **state)
{
    (void)state;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &wordy), KVI_OK);
    wordy_where = "fetch";
    server_reply = "bad e here";
    assert_int_equal(kvi_add_url(k, "wordy://:e@h/"), KVI_E_NOT_A_COUNTER);
    assert_string_equal(kvi_errmsg(k), "wordy: fetch: server said: bad * h*r*");
    wordy_where = "";
    assert_int_equal(kvi_add_url(k, "wordy://:e@h/"), KVI_E_NOT_A_COUNTER);
    assert_string_equal(kvi_errmsg(k), "wordy: server said: bad * h*r*");
    wordy_where = NULL;
    kvi_free(k);
    assert_int_equal(kvi_engine_error_in(NULL, KVI_E_IO, "fetch", "x"), KVI_E_IO);
}

/* An engine with an option that holds a password (its name ends in
 * "password", like redis's sentinel_password): a server that echoes the
 * AUTH it got shows it; the core masks it like the URL's password. */
struct vault_options {
    char *vault_password;
    int64_t vault_retries;
};

static const kvi_option vault_table[] = {
    {"vault_password", KVI_OPT_STRING, NULL, 0, 0, NULL,
     offsetof(struct vault_options, vault_password), "the vault's own password"},
    {"vault_retries", KVI_OPT_INT, "0", 0, 9, NULL, offsetof(struct vault_options, vault_retries),
     "retries"},
    KVI_OPTION_END,
};

static kvi_status vault_open(kvi_conn *c, const kvi_url *url)
{
    (void)url;
    const struct vault_options *o = kvi_conn_options(c);
    kvi_engine_log(c, KVI_LOG_ERROR, "vault said: unknown command 'AUTH', with args: '%s'",
                   o->vault_password);
    return kvi_engine_error(c, KVI_E_AUTH, "vault said: unknown command 'AUTH', with args: '%s'",
                            o->vault_password);
}

static const struct kvi_engine vault = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "vault",
    .open = vault_open,
    .store = no_store,
    .fetch = no_fetch,
    .remove = no_remove,
    .option_table = vault_table,
    .options_size = sizeof(struct vault_options),
};

static void test_an_option_holding_a_password_is_masked_too(void **state)
{
    (void)state;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &vault), KVI_OK);
    assert_int_equal(kvi_set_log(k, on_log, NULL, KVI_LOG_ERROR), KVI_OK);
    logged[0] = '\0';
    assert_int_equal(kvi_add_url(k, "vault://:url-pw-1@h/?vault_password=Vault-pw-99"), KVI_E_AUTH);
    const char *want = "vault: vault said: unknown command 'AUTH', with args: '***'";
    assert_string_equal(kvi_errmsg(k), want);
    assert_string_equal(logged, want);
    /* A mistyped option that holds it: the message echoes the value,
     * masked. */
    kvi_status st =
        kvi_add_url(k, "vault:b://h/?vault_password=Vault-pw-99&vault_retries=x-Vault-pw-99");
    print_message("  %s: %s\n", kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(st, KVI_E_INVALID);
    assert_null(strstr(kvi_errmsg(k), "Vault-pw"));
    assert_non_null(strstr(kvi_errmsg(k), "'x-***'"));
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_password_is_scrubbed_at_every_offset),
        cmocka_unit_test(test_fixed_words_are_never_masked),
        cmocka_unit_test(test_fixed_words_in_a_variable_are_never_masked),
        cmocka_unit_test(test_every_conversion_formats_as_printf_and_is_masked),
        cmocka_unit_test(test_unsigned_sizes_and_pointers_format_as_printf),
        cmocka_unit_test(test_an_option_holding_a_password_is_masked_too),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
