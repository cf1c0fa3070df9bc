/* bad_input.c -- bad input is KVI_E_INVALID before any engine runs (docs/semantics.md). */
#include "conformance.h"

/* ---- bad input -------------------------------------------------------------------------- */

static void test_bad_input_is_invalid(void **state)
{
    fx *f = F;
    tkey k = key(f, "bad");
    kvi_value v = KVI_VALUE_INIT;
    int64_t n = 0;
    uint64_t u = 0;
    kvi_reply *r = NULL;
    kvi_stats s;

    /* NULL context and handle. */
    assert_int_equal(kvi_new(NULL), KVI_E_INVALID);
    assert_int_equal(kvi_store(NULL, f->id, k.b, k.n, "x", 1, 0), KVI_E_INVALID);
    assert_int_equal(kvi_fetch(NULL, f->id, k.b, k.n, &v), KVI_E_INVALID);
    assert_null(v.data);
    assert_int_equal(kvi_remove(NULL, f->id, k.b, k.n), KVI_E_INVALID);
    assert_int_equal(kvi_add(NULL, f->id, k.b, k.n, 1, 0, &n), KVI_E_INVALID);
    assert_int_equal(kvi_sub(NULL, f->id, k.b, k.n, 1, 0, &n), KVI_E_INVALID);
    assert_int_equal(kvi_counter_fetch(NULL, f->id, k.b, k.n, &n), KVI_E_INVALID);
    assert_int_equal(kvi_raw_query(NULL, f->id, "PING", 4, &r), KVI_E_INVALID);
    assert_int_equal(kvi_keys(NULL, f->id, "*", 1, &r), KVI_E_INVALID);
    assert_int_equal(kvi_remove_chunk(NULL, f->id, "*", 1, &u), KVI_E_INVALID);
    assert_int_equal(kvi_ttl(NULL, f->id, k.b, k.n, &n), KVI_E_INVALID);
    assert_int_equal(kvi_ping(NULL, f->id), KVI_E_INVALID);
    assert_int_equal(kvi_stats_get(NULL, f->id, &s), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(NULL, conf_g.url), KVI_E_INVALID);
    assert_int_equal(kvi_load_config(NULL, "/dev/null"), KVI_E_INVALID);
    assert_int_equal(kvi_conn_store(NULL, k.b, k.n, "x", 1, 0), KVI_E_INVALID);
    assert_int_equal(kvi_conn_fetch(NULL, k.b, k.n, &v), KVI_E_INVALID);
    assert_int_equal(kvi_conn_remove(NULL, k.b, k.n), KVI_E_INVALID);
    assert_int_equal(kvi_conn_add(NULL, k.b, k.n, 1, 0, &n), KVI_E_INVALID);
    assert_int_equal(kvi_conn_sub(NULL, k.b, k.n, 1, 0, &n), KVI_E_INVALID);
    assert_int_equal(kvi_conn_counter_fetch(NULL, k.b, k.n, &n), KVI_E_INVALID);
    assert_int_equal(kvi_conn_raw_query(NULL, "PING", 4, &r), KVI_E_INVALID);
    assert_int_equal(kvi_conn_keys(NULL, "*", 1, &r), KVI_E_INVALID);
    assert_int_equal(kvi_conn_remove_chunk(NULL, "*", 1, &u), KVI_E_INVALID);
    assert_int_equal(kvi_conn_ttl(NULL, k.b, k.n, &n), KVI_E_INVALID);
    assert_int_equal(kvi_conn_ping(NULL), KVI_E_INVALID);
    assert_int_equal(kvi_conn_stats(NULL, &s), KVI_E_INVALID);
    assert_int_equal(kvi_conn_stats(f->c, NULL), KVI_E_INVALID);
    assert_int_equal(kvi_stats_get(f->k, f->id, NULL), KVI_E_INVALID);
    assert_int_equal(kvi_foreach_conn(f->k, NULL, NULL), KVI_E_INVALID);

    /* NULL configuration arguments. */
    assert_status(f, kvi_add_url(f->k, NULL), KVI_E_INVALID);
    assert_status(f, kvi_load_config(f->k, NULL), KVI_E_INVALID);
    assert_status(f, kvi_set_module_path(f->k, NULL), KVI_E_INVALID);
    kvi_conn *c = (kvi_conn *)&c;
    assert_status(f, kvi_conn_get(f->k, NULL, &c), KVI_E_INVALID);
    assert_null(c);
    assert_status(f, kvi_conn_get(f->k, f->id, NULL), KVI_E_INVALID);
    assert_true(strlen(kvi_errmsg(f->k)) > 0);

    /* Nothing was written by any of it; the fetch that says so leaves no
     * message (kvi_errmsg is about the last call only). */
    expect_missing(f, &k);
    assert_string_equal(kvi_errmsg(f->k), "");
}

static void test_bad_engine_id_is_invalid(void **state)
{
    fx *f = F;
    tkey k = key(f, "badid");
    char long_id[KVI_MAX_ID_LEN + 2];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    const char *bad[] = {"",       ":",         "local:",   ":group",    "Local", "9local",
                         "lo cal", "local:a b", "local://", "local:x:y", long_id};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvi_status st = kvi_store(f->k, bad[i], k.b, k.n, "x", 1, 0);
        if (st != KVI_E_INVALID)
            fail_msg("id \"%.40s\": %s, want KVI_E_INVALID", bad[i], kvi_status_name(st));
        kvi_conn *c = NULL;
        assert_status(f, kvi_conn_get(f->k, bad[i], &c), KVI_E_INVALID);
        assert_null(c);
    }
    assert_status(f, kvi_store(f->k, NULL, k.b, k.n, "x", 1, 0), KVI_E_INVALID);
    assert_status(f, kvi_ping(f->k, NULL), KVI_E_INVALID);
    /* Well-formed but never defined. */
    assert_status(f, kvi_store(f->k, "nosuchengine:grp", k.b, k.n, "x", 1, 0),
                  KVI_E_UNKNOWN_ENGINE);
    assert_non_null(strstr(kvi_errmsg(f->k), "nosuchengine:grp"));
    expect_missing(f, &k);
}

static void test_bad_key_is_invalid(void **state)
{
    fx *f = F;
    char big[KVI_MAX_KEY_LEN + 1];
    memcpy(big, f->prefix, f->prefix_len);
    memset(big + f->prefix_len, 'k', sizeof big - f->prefix_len);
    struct {
        const void *p;
        size_t n;
    } bad[] = {{NULL, 0}, {NULL, 5}, {"k", 0}, {big, sizeof big}, {big, SIZE_MAX}};
    kvi_stats before, after;
    assert_status(f, kvi_conn_stats(f->c, &before), KVI_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const void *p = bad[i].p;
        size_t n = bad[i].n;
        kvi_value v = KVI_VALUE_INIT;
        int64_t x = 5;
        assert_status(f, kvi_store(f->k, f->id, p, n, "x", 1, 0), KVI_E_INVALID);
        assert_status(f, kvi_conn_store(f->c, p, n, "x", 1, 0), KVI_E_INVALID);
        assert_status(f, kvi_fetch(f->k, f->id, p, n, &v), KVI_E_INVALID);
        assert_status(f, kvi_conn_fetch(f->c, p, n, &v), KVI_E_INVALID);
        assert_null(v.data);
        assert_status(f, kvi_remove(f->k, f->id, p, n), KVI_E_INVALID);
        assert_status(f, kvi_conn_remove(f->c, p, n), KVI_E_INVALID);
        if (has(f, KVI_CAP_COUNTERS)) {
            assert_status(f, kvi_add(f->k, f->id, p, n, 1, 0, &x), KVI_E_INVALID);
            assert_int_equal(x, 0);
            assert_status(f, kvi_conn_sub(f->c, p, n, 1, 0, &x), KVI_E_INVALID);
            x = 5;
            assert_status(f, kvi_counter_fetch(f->k, f->id, p, n, &x), KVI_E_INVALID);
            assert_int_equal(x, 0);
            assert_status(f, kvi_conn_counter_fetch(f->c, p, n, &x), KVI_E_INVALID);
        }
        if (has(f, KVI_CAP_TTL)) {
            x = 5;
            assert_status(f, kvi_ttl(f->k, f->id, p, n, &x), KVI_E_INVALID);
            assert_int_equal(x, 0);
            assert_status(f, kvi_conn_ttl(f->c, p, n, &x), KVI_E_INVALID);
        }
    }
    assert_status(f, kvi_conn_stats(f->c, &after), KVI_OK);
    /* A shared collection's ops are every process's (others may run
     * beside); rejected stays this handle's. */
    if (!after.shared)
        assert_int_equal(after.ops, before.ops);
    assert_true(after.rejected > before.rejected);
    /* The 1024-byte start of the oversized key was not written either. */
    tkey cut;
    memcpy(cut.b, big, KVI_MAX_KEY_LEN);
    cut.n = KVI_MAX_KEY_LEN;
    expect_missing(f, &cut);
}

static void test_null_outputs_are_invalid(void **state)
{
    fx *f = F;
    tkey k = key(f, "nullout");
    store_str(f, &k, "1", 0);
    assert_status(f, kvi_fetch(f->k, f->id, k.b, k.n, NULL), KVI_E_INVALID);
    assert_status(f, kvi_conn_fetch(f->c, k.b, k.n, NULL), KVI_E_INVALID);
    assert_status(f, kvi_counter_fetch(f->k, f->id, k.b, k.n, NULL), KVI_E_INVALID);
    assert_status(f, kvi_conn_counter_fetch(f->c, k.b, k.n, NULL), KVI_E_INVALID);
    assert_status(f, kvi_ttl(f->k, f->id, k.b, k.n, NULL), KVI_E_INVALID);
    assert_status(f, kvi_conn_ttl(f->c, k.b, k.n, NULL), KVI_E_INVALID);
    assert_status(f, kvi_keys(f->k, f->id, "*", 1, NULL), KVI_E_INVALID);
    assert_status(f, kvi_conn_keys(f->c, "*", 1, NULL), KVI_E_INVALID);
    assert_status(f, kvi_raw_query(f->k, f->id, "PING", 4, NULL), KVI_E_INVALID);
    assert_status(f, kvi_conn_raw_query(f->c, "PING", 4, NULL), KVI_E_INVALID);
    expect_str(f, &k, "1");
}

static void test_oversized_value_is_invalid(void **state)
{
    fx *f = F;
    tkey k = key(f, "bigval");
    tkey old = key(f, "bigval:old");
    store_str(f, &old, "old", 0);
    /* The core must refuse before reading the (tiny) buffer. */
    static const char tiny[8] = "tiny";
    size_t lens[] = {(size_t)KVI_MAX_VALUE_LEN + 1u, SIZE_MAX};
    for (size_t i = 0; i < 2; i++) {
        assert_status(f, op_store(f, &k, tiny, lens[i], 0), KVI_E_INVALID);
        assert_status(f, op_store(f, &old, tiny, lens[i], 0), KVI_E_INVALID);
    }
    assert_status(f, op_store(f, &k, NULL, 5, 0), KVI_E_INVALID);
    assert_status(f, op_store(f, &old, NULL, 5, 0), KVI_E_INVALID);
    expect_missing(f, &k);
    expect_str(f, &old, "old");
}

static void test_bad_glob_is_invalid(void **state)
{
    fx *f = F;
    tkey k = key(f, "glob:keep");
    store_str(f, &k, "x", 0);
    uint64_t n = 3;
    kvi_reply *r = (kvi_reply *)&r;
    /* An empty glob must not remove everything by accident. */
    assert_status(f, kvi_remove_chunk(f->k, f->id, NULL, 0, &n), KVI_E_INVALID);
    assert_int_equal(n, 0);
    assert_status(f, kvi_conn_remove_chunk(f->c, "", 0, &n), KVI_E_INVALID);
    assert_status(f, kvi_conn_remove_chunk(f->c, NULL, 1, &n), KVI_E_INVALID);
    assert_status(f, kvi_keys(f->k, f->id, NULL, 3, &r), KVI_E_INVALID);
    assert_null(r);
    char *huge = malloc(1u << 20);
    assert_non_null(huge);
    memset(huge, '*', 1u << 20);
    assert_status(f, kvi_conn_keys(f->c, huge, 1u << 20, &r), KVI_E_INVALID);
    assert_status(f, kvi_conn_remove_chunk(f->c, huge, 1u << 20, &n), KVI_E_INVALID);
    free(huge);
    expect_str(f, &k, "x");
}

static void test_bad_query_is_invalid(void **state)
{
    fx *f = F;
    kvi_reply *r = (kvi_reply *)&r;
    assert_status(f, kvi_raw_query(f->k, f->id, NULL, 4, &r), KVI_E_INVALID);
    assert_null(r);
    assert_status(f, kvi_conn_raw_query(f->c, NULL, 0, &r), KVI_E_INVALID);
    assert_status(f, kvi_conn_raw_query(f->c, "PING", 0, &r), KVI_E_INVALID);
    char *huge = malloc(KVI_MAX_QUERY_LEN + 1u);
    assert_non_null(huge);
    memset(huge, 'x', KVI_MAX_QUERY_LEN + 1u);
    assert_status(f, kvi_conn_raw_query(f->c, huge, KVI_MAX_QUERY_LEN + 1u, &r), KVI_E_INVALID);
    free(huge);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_bad_input_is_invalid),
    CONF_TEST(test_bad_engine_id_is_invalid),
    CONF_TEST(test_bad_key_is_invalid),
    CONF_TEST(test_null_outputs_are_invalid),
    CONF_TEST(test_oversized_value_is_invalid),
    CONF_TEST(test_bad_glob_is_invalid),
    CONF_TEST(test_bad_query_is_invalid),
};

const conf_block conf_bad_input_block = {tests, sizeof tests / sizeof tests[0]};
