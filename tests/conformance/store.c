/* store.c -- store, fetch, remove: keys, values and their limits (docs/semantics.md). */
#include "conformance.h"

/* ---- store, fetch, remove ------------------------------------------------------ */

static void test_ping(void **state)
{
    fx *f = F;
    assert_status(f, kvi_ping(f->k, f->id), KVI_OK);
    assert_status(f, kvi_conn_ping(f->c), KVI_OK);
}

static void test_handle_reports_its_id_and_engine(void **state)
{
    fx *f = F;
    assert_string_equal(kvi_conn_id(f->c), conf_g.id);
    assert_string_equal(kvi_conn_engine(f->c), conf_g.scheme);
    kvi_conn *again = NULL;
    assert_status(f, kvi_conn_get(f->k, conf_g.id, &again), KVI_OK);
    assert_ptr_equal(again, f->c);
}

static void test_store_then_fetch_is_binary_safe(void **state)
{
    fx *f = F;
    unsigned char v[2 * 256 + 16];
    for (size_t i = 0; i < 512; i++)
        v[i] = (unsigned char)(i & 0xffu);
    memcpy(v + 512, "a b\r\n\0\xff\t \n\0\0end", 16);
    tkey k = key(f, "binary");
    store_ok(f, &k, v, sizeof v, 0);
    expect_bytes(f, &k, v, sizeof v);

    /* Special bytes alone, where text protocols break. */
    static const char *const odd[] = {"\r\n", "END\r\n", " ", "\n", "\0"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        size_t len = odd[i][0] ? strlen(odd[i]) : 1;
        store_ok(f, &k, odd[i], len, 0);
        expect_bytes(f, &k, odd[i], len);
    }
}

static void test_store_overwrites_value(void **state)
{
    fx *f = F;
    tkey k = key(f, "over");
    store_str(f, &k, "a longer first value", 0);
    store_str(f, &k, "short", 0);
    expect_str(f, &k, "short");
}

static void test_empty_value_is_ok_not_not_found(void **state)
{
    fx *f = F;
    tkey k = key(f, "empty");
    store_ok(f, &k, "", 0, 0);
    kvi_value out = KVI_VALUE_INIT;
    assert_status(f, op_fetch(f, &k, &out), KVI_OK);
    assert_non_null(out.data);
    assert_int_equal(out.len, 0);
    assert_int_equal(out.data[0], '\0');
    kvi_value_free(&out);
    /* A NULL pointer with length 0 is the same empty value. */
    store_ok(f, &k, NULL, 0, 0);
    expect_bytes(f, &k, "", 0);
    assert_status(f, op_remove(f, &k), KVI_OK);
    expect_missing(f, &k);
}

static void test_key_of_1024_bytes_any_bytes(void **state)
{
    fx *f = F;
    unsigned char tail[KVI_MAX_KEY_LEN] = {0};
    size_t tlen = KVI_MAX_KEY_LEN - f->prefix_len;
    for (size_t i = 0; i < tlen; i++)
        tail[i] = (unsigned char)(i & 0xffu);
    tkey k1 = bkey(f, tail, tlen);
    assert_int_equal(k1.n, KVI_MAX_KEY_LEN);
    tail[tlen - 1] ^= 0x55u;
    tkey k2 = bkey(f, tail, tlen);
    store_str(f, &k1, "first", 0);
    store_str(f, &k2, "second", 0);
    expect_str(f, &k1, "first");
    expect_str(f, &k2, "second");
    assert_status(f, op_remove(f, &k1), KVI_OK);
    expect_missing(f, &k1);
    expect_str(f, &k2, "second");
}

static void test_keys_with_nul_bytes_are_distinct(void **state)
{
    fx *f = F;
    tkey a = bkey(f, "a", 1);
    tkey a0b = bkey(f, "a\0b", 3);
    tkey a0c = bkey(f, "a\0c", 3);
    tkey a0 = bkey(f, "a\0", 2);
    store_str(f, &a, "1", 0);
    store_str(f, &a0b, "2", 0);
    store_str(f, &a0c, "3", 0);
    store_str(f, &a0, "4", 0);
    expect_str(f, &a, "1");
    expect_str(f, &a0b, "2");
    expect_str(f, &a0c, "3");
    expect_str(f, &a0, "4");
}

static void test_keys_with_spaces_and_over_250_bytes(void **state)
{
    fx *f = F;
    tkey sp = key(f, "with space\tand\nnewline\r\nEND");
    store_str(f, &sp, "spaced", 0);
    expect_str(f, &sp, "spaced");

    /* Two long keys equal in their first 299 bytes: a mapping that cuts or
     * hashes long keys must still keep them apart. */
    char tail[300];
    memset(tail, 'x', sizeof tail);
    tkey l1 = bkey(f, tail, sizeof tail);
    tail[sizeof tail - 1] = 'y';
    tkey l2 = bkey(f, tail, sizeof tail);
    tkey l3 = bkey(f, tail, 251 - f->prefix_len);
    store_str(f, &l1, "long1", 0);
    store_str(f, &l2, "long2", 0);
    store_str(f, &l3, "long3", 0);
    expect_str(f, &l1, "long1");
    expect_str(f, &l2, "long2");
    expect_str(f, &l3, "long3");
    assert_status(f, op_remove(f, &l2), KVI_OK);
    expect_missing(f, &l2);
    expect_str(f, &l1, "long1");
}

static void test_key_of_1_byte(void **state)
{
    fx *f = F;
    /* No room for the run prefix: pick a byte from the run id so that
     * parallel runs against one server rarely meet. */
    tkey k;
    k.b[0] = (char)(0x80u | ((unsigned)getpid() & 0x7fu));
    k.n = 1;
    track(f, &k);
    store_str(f, &k, "one", 0);
    expect_str(f, &k, "one");
    assert_status(f, op_remove(f, &k), KVI_OK);
}

static void test_value_of_1_mib(void **state)
{
    fx *f = F;
    size_t len = 1u << 20;
    char *v = malloc(len);
    assert_non_null(v);
    fill_random(v, len, 0x1234567u);
    tkey k = key(f, "mib");
    store_ok(f, &k, v, len, 0);
    expect_bytes(f, &k, v, len);
    free(v);
}

static void test_many_keys_are_independent(void **state)
{
    fx *f = F;
    enum { N = 300 };
    tkey keys[N];
    char name[32], val[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "many:%d", i);
        snprintf(val, sizeof val, "value-%d", i);
        keys[i] = key(f, name);
        store_str(f, &keys[i], val, 0);
    }
    for (int i = 0; i < N; i += 2)
        assert_status(f, op_remove(f, &keys[i]), KVI_OK);
    for (int i = 0; i < N; i++) {
        if (i % 2 == 0) {
            expect_missing(f, &keys[i]);
        } else {
            snprintf(val, sizeof val, "value-%d", i);
            expect_str(f, &keys[i], val);
        }
    }
}

static void test_fetch_missing_is_not_found_and_output_empty(void **state)
{
    fx *f = F;
    tkey k = key(f, "never-stored");
    expect_missing(f, &k);
    int64_t n = 99;
    if (has(f, KVI_CAP_COUNTERS)) {
        assert_status(f, op_counter(f, &k, &n), KVI_NOT_FOUND);
        assert_int_equal(n, 0);
    }
    n = 99;
    if (has(f, KVI_CAP_TTL)) {
        assert_status(f, op_ttl(f, &k, &n), KVI_NOT_FOUND);
        assert_int_equal(n, 0);
    }
}

static void test_remove_reports_ok_then_not_found(void **state)
{
    fx *f = F;
    tkey k = key(f, "rm");
    tkey never = key(f, "rm-never");
    store_str(f, &k, "x", 0);
    assert_status(f, op_remove(f, &k), KVI_OK);
    expect_missing(f, &k);
    assert_status(f, op_remove(f, &k), KVI_NOT_FOUND);
    assert_status(f, op_remove(f, &never), KVI_NOT_FOUND);
    /* An empty value is a value: its removal is OK. */
    store_ok(f, &k, "", 0, 0);
    assert_status(f, op_remove(f, &k), KVI_OK);
}

static void test_id_and_handle_forms_agree(void **state)
{
    fx *f = F;
    tkey k = key(f, "forms");
    assert_status(f, kvi_store(f->k, f->id, k.b, k.n, "via-id", 6, 0), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_status(f, kvi_conn_fetch(f->c, k.b, k.n, &v), KVI_OK);
    assert_int_equal(v.len, 6);
    assert_memory_equal(v.data, "via-id", 6);
    kvi_value_free(&v);
    assert_status(f, kvi_conn_store(f->c, k.b, k.n, "via-handle", 10, 0), KVI_OK);
    assert_status(f, kvi_fetch(f->k, f->id, k.b, k.n, &v), KVI_OK);
    assert_int_equal(v.len, 10);
    assert_memory_equal(v.data, "via-handle", 10);
    kvi_value_free(&v);
    assert_status(f, kvi_remove(f->k, f->id, k.b, k.n), KVI_OK);
    assert_status(f, kvi_conn_remove(f->c, k.b, k.n), KVI_NOT_FOUND);
}

static void test_stats_count_operations(void **state)
{
    fx *f = F;
    kvi_stats before, after;
    assert_status(f, kvi_conn_stats(f->c, &before), KVI_OK);
    tkey k = key(f, "stats");
    store_str(f, &k, "x", 0);
    expect_str(f, &k, "x");
    assert_status(f, op_remove(f, &k), KVI_OK);
    expect_missing(f, &k);
    assert_status(f, kvi_stats_get(f->k, f->id, &after), KVI_OK);
    assert_true(after.ops >= before.ops + 4);
    assert_true(after.misses >= before.misses + 1);
}

/* A kvi_value that still holds an earlier fetch is released, not leaked, by
 * the next fetch into it (ASan and valgrind runs of this suite would report
 * the first value's bytes); a miss leaves it empty. */
static void test_fetch_into_a_value_that_holds_data_releases_it(void **state)
{
    fx *f = F;
    tkey a = key(f, "reuse_a"), b = key(f, "reuse_b"), gone = key(f, "reuse_missing");
    store_str(f, &a, "the first value, long enough to be its own allocation", 0);
    store_str(f, &b, "second", 0);
    kvi_value out = KVI_VALUE_INIT;
    assert_status(f, op_fetch(f, &a, &out), KVI_OK);
    assert_status(f, op_fetch(f, &b, &out), KVI_OK);
    assert_int_equal(out.len, 6);
    assert_memory_equal(out.data, "second", 6);
    assert_status(f, op_fetch(f, &gone, &out), KVI_NOT_FOUND);
    assert_null(out.data);
    assert_int_equal(out.len, 0);
    kvi_value_free(&out);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_ping),
    CONF_TEST(test_handle_reports_its_id_and_engine),
    CONF_TEST(test_store_then_fetch_is_binary_safe),
    CONF_TEST(test_store_overwrites_value),
    CONF_TEST(test_empty_value_is_ok_not_not_found),
    CONF_TEST(test_key_of_1024_bytes_any_bytes),
    CONF_TEST(test_keys_with_nul_bytes_are_distinct),
    CONF_TEST(test_keys_with_spaces_and_over_250_bytes),
    CONF_TEST(test_key_of_1_byte),
    CONF_TEST(test_value_of_1_mib),
    CONF_TEST(test_many_keys_are_independent),
    CONF_TEST(test_fetch_missing_is_not_found_and_output_empty),
    CONF_TEST(test_fetch_into_a_value_that_holds_data_releases_it),
    CONF_TEST(test_remove_reports_ok_then_not_found),
    CONF_TEST(test_id_and_handle_forms_agree),
    CONF_TEST(test_stats_count_operations),
};

const conf_block conf_store_block = {tests, sizeof tests / sizeof tests[0]};
