/*
 * test_options.c -- the core's one URL option parser (src/core/options.c):
 * declared options of every kind, defaults, the one grammar and case rule,
 * the message style, the registration checks, ABI-1 engines that list only
 * names, and the built-in engines' options (incl. the inconsistencies the
 * engines' own parsers had: lazy=YES refused while cluster=YES accepted,
 * save_s=+5 accepted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include "kvitest.h"

#include "kvi/engine.h"

/* ---- a test engine declaring one option of every kind -------------------- */

struct opts {
    int flag;
    int mode; /* bool with auto */
    int64_t count;
    uint32_t wait_ms;
    uint64_t cap;
    int policy;
    char *path;
    char *label;
};

static const char *const policy_words[] = {"none", "lru", "random", NULL};

static const kvi_option test_table[] = {
    {"flag", KVI_OPT_BOOL, "no", 0, 1, NULL, offsetof(struct opts, flag), "a bool"},
    {"mode", KVI_OPT_BOOL, "auto", -1, 1, NULL, offsetof(struct opts, mode), "yes/no/auto"},
    {"count", KVI_OPT_INT, "3", -5, 100, NULL, offsetof(struct opts, count), "an integer"},
    {"wait", KVI_OPT_MS, "250", 1, 60000, NULL, offsetof(struct opts, wait_ms), "ms"},
    {"cap", KVI_OPT_SIZE, "1k", 0, INT64_MAX, NULL, offsetof(struct opts, cap), "a size"},
    {"policy", KVI_OPT_ENUM, "none", 0, 0, policy_words, offsetof(struct opts, policy), "enum"},
    {"path", KVI_OPT_PATH, NULL, 0, 0, NULL, offsetof(struct opts, path), "a path"},
    {"label", KVI_OPT_STRING, "dflt", 0, 0, NULL, offsetof(struct opts, label), "a string"},
    KVI_OPTION_END,
};

/* What the last open() saw. */
static struct {
    int opens;
    struct opts o;
    char path[KVI_OPT_PATH_MAX + 1];
    char label[64];
    uint32_t timeout_ms, connect_timeout_ms;
    int lazy;
} seen;

static kvi_status t_open(kvi_conn *c, const kvi_url *url)
{
    (void)url;
    const struct opts *o = kvi_conn_options(c);
    seen.opens++;
    seen.o = *o;
    snprintf(seen.path, sizeof seen.path, "%s", o->path != NULL ? o->path : "(null)");
    snprintf(seen.label, sizeof seen.label, "%s", o->label != NULL ? o->label : "(null)");
    seen.o.path = NULL;
    seen.o.label = NULL;
    seen.timeout_ms = kvi_conn_timeout_ms(c);
    seen.connect_timeout_ms = kvi_conn_connect_timeout_ms(c);
    seen.lazy = kvi_conn_lazy(c);
    return KVI_OK;
}

static kvi_status t_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t expire_s)
{
    (void)c, (void)key, (void)key_len, (void)val, (void)val_len, (void)expire_s;
    return KVI_OK;
}

static kvi_status t_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    (void)c, (void)key, (void)key_len, (void)out;
    return KVI_NOT_FOUND;
}

static kvi_status t_remove(kvi_conn *c, const void *key, size_t key_len)
{
    (void)c, (void)key, (void)key_len;
    return KVI_NOT_FOUND;
}

static const struct kvi_engine test_engine = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "opt",
    .description = "declares one option of each kind",
    .open = t_open,
    .store = t_store,
    .fetch = t_fetch,
    .remove = t_remove,
    .option_table = test_table,
    .options_size = sizeof(struct opts),
};

static int setup(void **state)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_register_engine(k, &test_engine) != KVI_OK)
        return -1;
    memset(&seen, 0, sizeof seen);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    kvi_free(*state);
    return 0;
}

/* Defines "opt:N://?QUERY" (a fresh group each time) and returns the status. */
static kvi_status define(kvi *k, const char *query)
{
    static unsigned n;
    char url[KVI_OPT_PATH_MAX + 200];
    snprintf(url, sizeof url, "opt:g%u://%s%s", ++n, query[0] ? "?" : "", query);
    return kvi_add_url(k, url);
}

static void assert_accepted(kvi *k, const char *query)
{
    int opens = seen.opens;
    kvi_status st = define(k, query);
    if (st != KVI_OK)
        fail_msg("'%s' was refused: %s", query, kvi_errmsg(k));
    assert_int_equal(seen.opens, opens + 1);
}

/* Refused with KVI_E_INVALID, open() not called, and a message naming the
 * option and each of the given pieces. */
static void assert_refused(kvi *k, const char *query, const char *want1, const char *want2)
{
    int opens = seen.opens;
    kvi_status st = define(k, query);
    if (st != KVI_E_INVALID)
        fail_msg("'%s' gave %s, expected INVALID", query, kvi_strerror(st));
    assert_int_equal(seen.opens, opens);
    const char *msg = kvi_errmsg(k);
    if (want1 != NULL && strstr(msg, want1) == NULL)
        fail_msg("'%s': message \"%s\" lacks \"%s\"", query, msg, want1);
    if (want2 != NULL && strstr(msg, want2) == NULL)
        fail_msg("'%s': message \"%s\" lacks \"%s\"", query, msg, want2);
}

/* ---- defaults and each kind ------------------------------------------------ */

static void test_defaults_apply_when_options_are_absent(void **state)
{
    kvi *k = *state;
    assert_accepted(k, "");
    assert_int_equal(seen.o.flag, 0);
    assert_int_equal(seen.o.mode, -1);
    assert_int_equal(seen.o.count, 3);
    assert_int_equal(seen.o.wait_ms, 250);
    assert_int_equal(seen.o.cap, 1024);
    assert_int_equal(seen.o.policy, 0);
    assert_string_equal(seen.path, "(null)");
    assert_string_equal(seen.label, "dflt");
    /* The common options' defaults. */
    assert_int_equal(seen.timeout_ms, 1000);
    assert_int_equal(seen.connect_timeout_ms, 1000);
    assert_int_equal(seen.lazy, 0);
}

static void test_every_kind_stores_its_value(void **state)
{
    kvi *k = *state;
    assert_accepted(k, "flag=yes&mode=no&count=-5&wait=60000&cap=3m&policy=random&path=/tmp/x"
                       "&label=&timeout=20&connect_timeout=30&lazy=on");
    assert_int_equal(seen.o.flag, 1);
    assert_int_equal(seen.o.mode, 0);
    assert_int_equal(seen.o.count, -5);
    assert_int_equal(seen.o.wait_ms, 60000);
    assert_int_equal(seen.o.cap, 3u << 20);
    assert_int_equal(seen.o.policy, 2);
    assert_string_equal(seen.path, "/tmp/x");
    assert_string_equal(seen.label, "");
    assert_int_equal(seen.timeout_ms, 20);
    assert_int_equal(seen.connect_timeout_ms, 30);
    assert_int_equal(seen.lazy, 1);
}

static void test_bool_words_ignore_case(void **state)
{
    kvi *k = *state;
    static const struct {
        const char *text;
        int value;
    } words[] = {{"yes", 1}, {"YES", 1}, {"True", 1},  {"on", 1},  {"1", 1},
                 {"no", 0},  {"NO", 0},  {"false", 0}, {"OFF", 0}, {"0", 0}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char q[32];
        snprintf(q, sizeof q, "flag=%s", words[i].text);
        assert_accepted(k, q);
        assert_int_equal(seen.o.flag, words[i].value);
        snprintf(q, sizeof q, "lazy=%s", words[i].text);
        assert_accepted(k, q);
        assert_int_equal(seen.lazy, words[i].value);
    }
    assert_accepted(k, "mode=AUTO");
    assert_int_equal(seen.o.mode, -1);
    assert_accepted(k, "mode=Yes");
    assert_int_equal(seen.o.mode, 1);
    /* auto only where declared; an empty value is no bool. */
    assert_refused(k, "flag=auto", "'flag'", "'auto'");
    assert_refused(k, "flag=", "'flag'", "yes or no");
    assert_refused(k, "lazy=", "'lazy'", "yes or no");
    assert_refused(k, "lazy=maybe", "'maybe'", "yes or no");
    assert_refused(k, "mode=sometimes", "'mode'", "yes or no or auto");
}

static void test_numbers_follow_the_one_integer_grammar(void **state)
{
    kvi *k = *state;
    assert_accepted(k, "count=0");
    assert_int_equal(seen.o.count, 0);
    assert_accepted(k, "count=100");
    assert_int_equal(seen.o.count, 100);
    assert_refused(k, "count=+5", "'count'", "'+5'");
    assert_refused(k, "count=05", "'05'", "an integer in -5..100");
    assert_refused(k, "count=101", "'101'", "-5..100");
    assert_refused(k, "count=-6", "'-6'", "-5..100");
    assert_refused(k, "count=1.5", "'1.5'", NULL);
    assert_refused(k, "count=", "'count'", NULL);
    assert_refused(k, "count=%201", "'count'", NULL);
    assert_refused(k, "count=99999999999999999999", "'count'", NULL);
    assert_refused(k, "wait=0", "'wait'", "milliseconds in 1..60000");
    assert_refused(k, "wait=60001", "'wait'", NULL);
    assert_refused(k, "wait=+5", "'wait'", NULL);
    assert_refused(k, "timeout=soon", "'timeout'", "milliseconds in 1..3600000");
    assert_refused(k, "timeout=0", "'timeout'", NULL);
    assert_refused(k, "connect_timeout=3600001", "'connect_timeout'", NULL);
}

static void test_sizes_take_a_suffix_in_any_case(void **state)
{
    kvi *k = *state;
    static const struct {
        const char *text;
        uint64_t value;
    } sizes[] = {{"0", 0},           {"123", 123},        {"64k", 64u << 10},
                 {"64K", 64u << 10}, {"64kb", 64u << 10}, {"10MB", 10u << 20},
                 {"2g", 2ull << 30}, {"2Gb", 2ull << 30}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char q[32];
        snprintf(q, sizeof q, "cap=%s", sizes[i].text);
        assert_accepted(k, q);
        assert_true(seen.o.cap == sizes[i].value);
    }
    assert_refused(k, "cap=12x", "'cap'", "suffix k, m or g");
    assert_refused(k, "cap=k", "'k'", NULL);
    assert_refused(k, "cap=-1k", "'-1k'", NULL);
    assert_refused(k, "cap=+1k", "'+1k'", NULL);
    assert_refused(k, "cap=1kbb", "'1kbb'", NULL);
    assert_refused(k, "cap=9999999999g", "'cap'", NULL); /* beyond INT64_MAX */
}

static void test_enum_matches_its_words_in_any_case(void **state)
{
    kvi *k = *state;
    assert_accepted(k, "policy=LRU");
    assert_int_equal(seen.o.policy, 1);
    assert_refused(k, "policy=fifo", "'fifo'", "one of none|lru|random");
    assert_refused(k, "policy=", "'policy'", NULL);
}

static void test_paths_are_non_empty_and_bounded(void **state)
{
    kvi *k = *state;
    assert_refused(k, "path=", "'path'", "a path of 1..4000 bytes");
    char q[KVI_OPT_PATH_MAX + 16];
    int n = snprintf(q, sizeof q, "path=");
    memset(q + n, 'p', KVI_OPT_PATH_MAX);
    q[n + KVI_OPT_PATH_MAX] = '\0';
    assert_accepted(k, q);
    assert_int_equal(strlen(seen.path), KVI_OPT_PATH_MAX);
    strcat(q, "p");
    assert_refused(k, q, "'path'", NULL);
}

static void test_message_names_option_id_value_and_what_is_allowed(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_add_url(k, "opt:msg://?count=seven"), KVI_E_INVALID);
    assert_string_equal(kvi_errmsg(k), "option 'count' of 'opt:msg': 'seven' is not allowed; "
                                       "expected an integer in -5..100");
    /* A long or binary value is quoted shortened and printable. */
    assert_int_equal(kvi_add_url(k, "opt:msg://?count=%01%02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                    "aaaaaaaaaaaaaaaaaaaaaaaaaaa"),
                     KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "'??aaaa"));
    assert_non_null(strstr(kvi_errmsg(k), "...'"));
    /* Nothing was defined. */
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(k, "opt:msg", &c), KVI_E_UNKNOWN_ENGINE);
}

static void test_names_match_exactly_and_unknown_ones_list_the_known(void **state)
{
    kvi *k = *state;
    assert_refused(k, "FLAG=yes", "unknown option 'FLAG'", "known: flag, mode, count");
    assert_refused(k, "Timeout=5", "unknown option 'Timeout'", "timeout, lazy");
    assert_refused(k, "bogus=1", "'bogus'", "engine 'opt'");
}

/* ---- registration checks ------------------------------------------------- */

static void assert_table_refused(const kvi_option *table, size_t size, const char *why)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    struct kvi_engine e = test_engine;
    e.name = "bad";
    e.option_table = table;
    e.options_size = size;
    assert_int_equal(kvi_register_engine(k, &e), KVI_E_INVALID);
    if (strstr(kvi_errmsg(k), why) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", kvi_errmsg(k), why);
    kvi_free(k);
}

static void test_malformed_tables_are_refused_at_registration(void **state)
{
    (void)state;
    const kvi_option dup[] = {{"a", KVI_OPT_BOOL, NULL, 0, 1, NULL, 0, NULL},
                              {"a", KVI_OPT_BOOL, NULL, 0, 1, NULL, 0, NULL},
                              KVI_OPTION_END};
    assert_table_refused(dup, sizeof(int), "declared twice");
    const kvi_option common[] = {{"timeout", KVI_OPT_MS, NULL, 1, 10, NULL, 0, NULL},
                                 KVI_OPTION_END};
    assert_table_refused(common, sizeof(uint32_t), "common option");
    const kvi_option beyond[] = {{"n", KVI_OPT_INT, NULL, 0, 1, NULL, 8, NULL}, KVI_OPTION_END};
    assert_table_refused(beyond, 8, "offset");
    const kvi_option misaligned[] = {{"n", KVI_OPT_INT, NULL, 0, 1, NULL, 4, NULL}, KVI_OPTION_END};
    assert_table_refused(misaligned, 16, "aligned");
    const kvi_option bad_default[] = {{"n", KVI_OPT_INT, "+1", 0, 5, NULL, 0, NULL},
                                      KVI_OPTION_END};
    assert_table_refused(bad_default, 8, "default");
    const kvi_option no_choices[] = {{"e", KVI_OPT_ENUM, NULL, 0, 0, NULL, 0, NULL},
                                     KVI_OPTION_END};
    assert_table_refused(no_choices, sizeof(int), "choices");
    const kvi_option upper[] = {{"Name", KVI_OPT_BOOL, NULL, 0, 1, NULL, 0, NULL}, KVI_OPTION_END};
    assert_table_refused(upper, sizeof(int), "name must match");
    const kvi_option range[] = {{"n", KVI_OPT_INT, NULL, 5, 1, NULL, 0, NULL}, KVI_OPTION_END};
    assert_table_refused(range, 8, "min > max");
    const kvi_option ms[] = {{"n", KVI_OPT_MS, NULL, 0, (int64_t)UINT32_MAX + 1, NULL, 0, NULL},
                             KVI_OPTION_END};
    assert_table_refused(ms, 4, "UINT32_MAX");
    assert_table_refused(test_table, 0, "options_size 0");

    /* A table and a name list at once. */
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    static const char *const names[] = {"flag", NULL};
    struct kvi_engine e = test_engine;
    e.options = names;
    assert_int_equal(kvi_register_engine(k, &e), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "both"));
    kvi_free(k);
}

/* ---- ABI-1 engines --------------------------------------------------------- */

static char legacy_seen[16];

static kvi_status legacy_open(kvi_conn *c, const kvi_url *url)
{
    const char *v = kvi_url_option_get(url, "speed");
    snprintf(legacy_seen, sizeof legacy_seen, "%s", v != NULL ? v : "(none)");
    /* ABI 1 had no option struct. */
    return kvi_conn_options(c) == NULL ? KVI_OK : KVI_E_INVALID;
}

static void test_abi1_engines_keep_their_name_list(void **state)
{
    (void)state;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    static const char *const names[] = {"speed", NULL};
    struct kvi_engine e = test_engine;
    e.abi_version = 1;
    e.name = "old";
    e.open = legacy_open;
    e.options = names;
    /* An ABI-1 engine's reserved words are not read as a table. */
    e.option_table = test_table;
    e.options_size = 0;
    assert_int_equal(kvi_register_engine(k, &e), KVI_OK);
    assert_int_equal(kvi_add_url(k, "old://?speed=+5&lazy=YES"), KVI_OK);
    assert_string_equal(legacy_seen, "+5"); /* the engine parses its own */
    assert_int_equal(kvi_add_url(k, "old:b://?flag=yes"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "unknown option 'flag'"));
    assert_int_equal(kvi_add_url(k, "old:c://?timeout=+5"), KVI_E_INVALID);
    kvi_option_info info;
    assert_int_equal(kvi_engine_option(k, "old", 0, &info), KVI_OK);
    assert_string_equal(info.name, "speed");
    assert_string_equal(info.kind, "engine-parsed");
    kvi_free(k);
}

/* ---- listing ------------------------------------------------------------- */

static void test_engine_option_lists_own_then_common_options(void **state)
{
    kvi *k = *state;
    kvi_option_info info;
    assert_int_equal(kvi_engine_option(k, "opt", 0, &info), KVI_OK);
    assert_string_equal(info.name, "flag");
    assert_string_equal(info.kind, "bool");
    assert_string_equal(info.default_value, "no");
    assert_string_equal(info.allowed, "yes|no");
    assert_int_equal(info.common, 0);
    assert_int_equal(kvi_engine_option(k, "opt", 5, &info), KVI_OK);
    assert_string_equal(info.allowed, "none|lru|random");
    assert_int_equal(kvi_engine_option(k, "opt", 6, &info), KVI_OK);
    assert_null(info.default_value);
    assert_int_equal(kvi_engine_option(k, "opt", 8, &info), KVI_OK);
    assert_string_equal(info.name, "connect_timeout");
    assert_string_equal(info.allowed, "1..3600000 ms");
    assert_int_equal(info.common, 1);
    assert_int_equal(kvi_engine_option(k, "opt", 10, &info), KVI_OK);
    assert_string_equal(info.name, "lazy");
    assert_int_equal(kvi_engine_option(k, "opt", 11, &info), KVI_NOT_FOUND);
    assert_int_equal(kvi_engine_option(k, "Opt", 0, &info), KVI_E_INVALID);
    assert_int_equal(kvi_engine_option(k, NULL, 0, &info), KVI_E_INVALID);
    assert_int_equal(kvi_engine_option(k, "opt", 0, NULL), KVI_E_INVALID);
    assert_int_equal(kvi_engine_option(NULL, "opt", 0, &info), KVI_E_INVALID);
}

/* ---- the built-in engines ------------------------------------------------- */

static void test_local_options_use_the_one_parser(void **state)
{
    kvi *k = *state;
    /* save_s=+5 was accepted by the engine's own strtoll. */
    assert_int_equal(kvi_add_url(k, "local:a://?file=/tmp/kvi-test-options-never&save_s=+5"),
                     KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "option 'save_s' of 'local:a': '+5' is not allowed"));
    /* lazy=YES was refused by the core's case-sensitive bool. */
    assert_int_equal(kvi_add_url(k, "local:b://?lazy=YES&evict=LRU&max_memory=64KB"), KVI_OK);
    assert_int_equal(kvi_add_url(k, "local:c://?evict=random"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "one of none|lru"));
    assert_int_equal(kvi_add_url(k, "local:d://?max_memory=12x"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "option 'max_memory'"));
    assert_int_equal(kvi_add_url(k, "local:e://?on_corrupt=Maybe&file=/tmp/x"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "fail|empty"));
    kvi_option_info info;
    assert_int_equal(kvi_engine_option(k, "local", 0, &info), KVI_OK);
    assert_string_equal(info.name, "max_memory");
    assert_string_equal(info.default_value, "0");
}

static void test_redis_cluster_and_lazy_follow_the_same_rule(void **state)
{
    kvi *k = *state;
    kvi_option_info info;
    kvi_status st = kvi_engine_option(k, "redis", 0, &info);
    if (st == KVI_E_MODULE_MISSING) {
        KVI_TEST_SKIP_CASE("the redis module is not built: %s", kvi_errmsg(k));
    }
    assert_int_equal(st, KVI_OK);
    assert_string_equal(info.name, "cluster");
    assert_string_equal(info.allowed, "yes|no|auto");
    /* Lazy: open() does not connect, so no server is needed. */
    assert_int_equal(kvi_add_url(k, "redis:a://127.0.0.1:1/?cluster=YES&lazy=YES"), KVI_OK);
    assert_int_equal(kvi_add_url(k, "redis:b://127.0.0.1:1/?cluster=sometimes&lazy=yes"),
                     KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "yes or no or auto"));
    assert_int_equal(kvi_add_url(k, "redis:c://127.0.0.1:1/?max_idle=+3&lazy=yes"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "option 'max_idle' of 'redis:c': '+3'"));
    assert_int_equal(kvi_add_url(k, "redis:d://127.0.0.1:1/?socket=&lazy=yes"), KVI_E_INVALID);
}

static void test_memcached_retry_timeout_uses_the_one_parser(void **state)
{
    kvi *k = *state;
    kvi_option_info info;
    kvi_status st = kvi_engine_option(k, "memcached", 0, &info);
    if (st == KVI_E_MODULE_MISSING) {
        KVI_TEST_SKIP_CASE("the memcached module is not built: %s", kvi_errmsg(k));
    }
    assert_int_equal(st, KVI_OK);
    assert_string_equal(info.name, "retry_timeout");
    assert_string_equal(info.allowed, "0..3600");
    assert_int_equal(kvi_add_url(k, "memcached://127.0.0.1:1/?retry_timeout=+1"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "option 'retry_timeout' of 'memcached': '+1'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_apply_when_options_are_absent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_every_kind_stores_its_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bool_words_ignore_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers_follow_the_one_integer_grammar, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sizes_take_a_suffix_in_any_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enum_matches_its_words_in_any_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths_are_non_empty_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_names_option_id_value_and_what_is_allowed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_match_exactly_and_unknown_ones_list_the_known,
                                        setup, teardown),
        cmocka_unit_test(test_malformed_tables_are_refused_at_registration),
        cmocka_unit_test(test_abi1_engines_keep_their_name_list),
        cmocka_unit_test_setup_teardown(test_engine_option_lists_own_then_common_options, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_local_options_use_the_one_parser, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_cluster_and_lazy_follow_the_same_rule, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_memcached_retry_timeout_uses_the_one_parser, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
