/*
 * test_mc_envelope.c -- the memcached engine's pure layout functions: which
 * keys are used as they are and which are mapped (and the exact names of
 * mapped keys: SHA-256 from libcrypto, vectors computed independently), the value envelope of
 * mapped keys, and the expiry stamps kept in the item flags.  No server needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mc_envelope.h"

static void test_valid_memcached_key_is_used_as_is(void **state)
{
    (void)state;
    char out[KVI_MC_KEY_BUF];
    int mapped = -1;
    size_t n = kvi__mc_key("user:42!~", 9, out, &mapped);
    assert_int_equal(mapped, 0);
    assert_int_equal(n, 9);
    assert_string_equal(out, "user:42!~");

    char k250[250];
    memset(k250, 'x', sizeof k250);
    n = kvi__mc_key(k250, sizeof k250, out, &mapped);
    assert_int_equal(mapped, 0);
    assert_int_equal(n, 250);
    assert_memory_equal(out, k250, 250);
}

static void assert_mapped(const void *key, size_t len, const char *digest_hex)
{
    char out[KVI_MC_KEY_BUF];
    int mapped = -1;
    size_t n = kvi__mc_key(key, len, out, &mapped);
    assert_int_equal(mapped, 1);
    assert_int_equal(n, KVI_MC_KEY_PREFIX_LEN + 64);
    assert_memory_equal(out, KVI_MC_KEY_PREFIX, KVI_MC_KEY_PREFIX_LEN);
    for (size_t i = 0; i < n; i++)
        assert_true(out[i] > 0x20 && out[i] < 0x7f);
    if (digest_hex != NULL)
        assert_string_equal(out + KVI_MC_KEY_PREFIX_LEN, digest_hex);
    /* The engine's path (SHA-256 fetched once) names it the same. */
    void *md = kvi__mc_sha256_fetch();
    char out2[KVI_MC_KEY_BUF];
    int mapped2 = -1;
    assert_int_equal(kvi__mc_key_md(key, len, md, out2, &mapped2), n);
    assert_int_equal(mapped2, 1);
    assert_string_equal(out2, out);
    kvi__mc_sha256_free(md);
}

static void test_other_keys_are_mapped_to_prefix_and_digest(void **state)
{
    (void)state;
    assert_mapped("a key", 5, "8fa3aab2faa9b79e0a0398da5b5abd0780142442a5be80b9a64608d718cb1fcd");
    char k251[251];
    memset(k251, 'x', sizeof k251);
    assert_mapped(k251, sizeof k251, NULL);
    assert_mapped("a\0b", 3, NULL);
    assert_mapped("tab\there", 8, NULL);
    assert_mapped("del\x7f", 4, NULL);
    assert_mapped("\xff\xfe", 2, NULL);
    assert_mapped("new\nline", 8, NULL);
    char k1024[1024];
    memset(k1024, 0xAB, sizeof k1024);
    assert_mapped(k1024, sizeof k1024, NULL);
}

/* The names mapped keys had before libcrypto computed their digest (and
 * that Python's hashlib gives): a new digest code must not move any stored
 * key.  Lengths around SHA-256's 55/56/64-byte padding edges, NUL bytes,
 * every byte value, the longest key. */
static void test_mapped_key_names_are_unchanged(void **state)
{
    (void)state;
    char buf[1024];
    memset(buf, 'x', 251);
    assert_mapped(buf, 251, "90d738c31c5ee1241cbcd2ff3d4aa1257ba5b7d717c545c397d37dc060ecf7ff");
    assert_mapped("a\0b", 3, "59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138");
    memset(buf, 0xAB, 1024);
    assert_mapped(buf, 1024, "4555555dc68d872c2270ba89ecc5f6f094812f65372b37e50071fe5168031c49");
    assert_mapped("~kvi:abc", 8,
                  "656fd8d184e9d24b086ddab79f78b7677195c050ccab4c5c1901a9c7a2fd02a6");
    memset(buf, ' ', 64);
    assert_mapped(buf, 55, "cf7549d8bac5733ab715481b3faf0b951877eabfa537676b05bfe8bbc5213133");
    assert_mapped(buf, 56, "b60c4c2d565cd1f10eeb0deffdd7b65fdf9d4fd3960868da68e3533159b70bd8");
    assert_mapped(buf, 64, "ce4153b0147c2a863ed4298ee0676bc879fc77a12abe1f49b2b055df1069523e");
    unsigned char all[256];
    for (unsigned i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    assert_mapped(all, sizeof all,
                  "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880");
}

static void test_key_with_mapping_prefix_is_mapped_so_it_cannot_meet_a_digest(void **state)
{
    (void)state;
    /* A user key that looks exactly like a mapped key must not be stored
     * under that name, or it would meet the mapped key "a key". */
    char fake[KVI_MC_KEY_BUF];
    int mapped;
    size_t n = kvi__mc_key("a key", 5, fake, &mapped);
    char out[KVI_MC_KEY_BUF];
    size_t m = kvi__mc_key(fake, n, out, &mapped);
    assert_int_equal(mapped, 1);
    assert_int_equal(m, n);
    assert_true(memcmp(out, fake, n) != 0);
    assert_mapped(KVI_MC_KEY_PREFIX, KVI_MC_KEY_PREFIX_LEN, NULL);
    /* Only the exact prefix is reserved. */
    kvi__mc_key("~kvi", 4, out, &mapped);
    assert_int_equal(mapped, 0);
}

static void test_envelope_round_trip_and_key_check(void **state)
{
    (void)state;
    const char key[] = "k\0ey";
    unsigned char buf[64];
    kvi__mc_wrap_header(key, 4, buf);
    memcpy(buf + KVI_MC_WRAP_FIXED + 4, "value", 5);
    size_t len = KVI_MC_WRAP_FIXED + 4 + 5;
    size_t off = 0;
    assert_int_equal(kvi__mc_unwrap(buf, len, key, 4, &off), 1);
    assert_int_equal(off, KVI_MC_WRAP_FIXED + 4);
    assert_memory_equal(buf + off, "value", 5);

    /* Another key with the same digest (a collision) is refused. */
    assert_int_equal(kvi__mc_unwrap(buf, len, "k\0ez", 4, &off), 0);
    assert_int_equal(kvi__mc_unwrap(buf, len, "k\0e", 3, &off), 0);
    /* Truncated or foreign data is refused. */
    assert_int_equal(kvi__mc_unwrap(buf, KVI_MC_WRAP_FIXED + 3, key, 4, &off), 0);
    assert_int_equal(kvi__mc_unwrap("plain value", 11, key, 4, &off), 0);
    buf[3] = 2;
    assert_int_equal(kvi__mc_unwrap(buf, len, key, 4, &off), 0);
}

static void test_envelope_holds_a_1024_byte_key_and_empty_value(void **state)
{
    (void)state;
    unsigned char key[1024];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)(i * 7u);
    unsigned char buf[KVI_MC_WRAP_FIXED + 1024];
    kvi__mc_wrap_header(key, sizeof key, buf);
    size_t off = 0;
    assert_int_equal(kvi__mc_unwrap(buf, sizeof buf, key, sizeof key, &off), 1);
    assert_int_equal(off, sizeof buf);
}

static void test_stamp_records_absolute_expiry_rounded_up(void **state)
{
    (void)state;
    int64_t now = 1700000000;
    assert_int_equal(kvi__mc_stamp(now * 1000, 0), 0);
    assert_int_equal(kvi__mc_stamp(now * 1000, 10), 1700000010u);
    assert_int_equal(kvi__mc_stamp_expiry(kvi__mc_stamp(now * 1000, 10)), 1700000010);
    /* Late in a second the key still gets its whole lifetime: never an
     * expiry before now + expire_s. */
    assert_int_equal(kvi__mc_stamp(now * 1000 + 959, 1), 1700000002u);
    assert_int_equal(kvi__mc_stamp(now * 1000 + 1, 1), 1700000002u);
    for (int64_t ms = 0; ms < 1000; ms += 37)
        assert_true((int64_t)kvi__mc_stamp(now * 1000 + ms, 1) * 1000 >= now * 1000 + ms + 1000);
    /* The largest lifetime the contract allows still fits in 32 bits. */
    assert_int_equal(kvi__mc_stamp(now * 1000, INT32_MAX), (uint32_t)(now + INT32_MAX));
    assert_int_equal(kvi__mc_stamp(now * 1000, INT64_MAX / 2), UINT32_MAX);
    /* Small flags come from other clients, not from kvi. */
    assert_int_equal(kvi__mc_stamp_expiry(0), 0);
    assert_int_equal(kvi__mc_stamp_expiry(1), 0);
    assert_int_equal(kvi__mc_stamp_expiry(KVI_MC_MIN_STAMP - 1), 0);
    assert_int_equal(kvi__mc_stamp_expiry(KVI_MC_MIN_STAMP), (int64_t)KVI_MC_MIN_STAMP);
}

static void test_server_exptime_keeps_the_item_past_its_stamp(void **state)
{
    (void)state;
    int64_t now = 1700000000, now_ms = now * 1000;
    /* memcached's whole-second clock may drop an item up to 2 s early: the
     * server gets two seconds more than the time left. */
    assert_int_equal(kvi__mc_server_exptime(now + 5, now_ms), 7);
    assert_int_equal(kvi__mc_server_exptime(now + 5, now_ms + 400), 7);
    assert_int_equal(kvi__mc_server_exptime(now + KVI_MC_MAX_RELATIVE - 2, now_ms),
                     KVI_MC_MAX_RELATIVE);
    /* Past 30 days memcached reads exptime as an absolute time. */
    assert_int_equal(kvi__mc_server_exptime(now + KVI_MC_MAX_RELATIVE, now_ms),
                     now + KVI_MC_MAX_RELATIVE + 2);
    /* Beyond memcached's signed 32-bit clock: the server keeps the item. */
    assert_int_equal(kvi__mc_server_exptime((int64_t)INT32_MAX - 1, now_ms), 0);
    /* Due or overdue: a short time, never 0 (which would mean "never"). */
    assert_int_equal(kvi__mc_server_exptime(now, now_ms), 3);
    assert_int_equal(kvi__mc_server_exptime(now - 3, now_ms), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mapped_key_names_are_unchanged),
        cmocka_unit_test(test_valid_memcached_key_is_used_as_is),
        cmocka_unit_test(test_other_keys_are_mapped_to_prefix_and_digest),
        cmocka_unit_test(test_key_with_mapping_prefix_is_mapped_so_it_cannot_meet_a_digest),
        cmocka_unit_test(test_envelope_round_trip_and_key_check),
        cmocka_unit_test(test_envelope_holds_a_1024_byte_key_and_empty_value),
        cmocka_unit_test(test_stamp_records_absolute_expiry_rounded_up),
        cmocka_unit_test(test_server_exptime_keeps_the_item_past_its_stamp),
    };
    return cmocka_run_group_tests_name("mc_envelope", tests, NULL, NULL);
}
