/*
 * test_mc_envelope.c -- the memcached engine's pure layout functions: the
 * SHA-256 it names mapped keys with (FIPS 180-4 vectors), which keys are
 * used as they are and which are mapped, the value envelope of mapped keys,
 * and the expiry stamps kept in the item flags.  No server needed.
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
#include "mc_sha256.h"

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15u];
    }
    out[2 * n] = '\0';
}

static void assert_sha256(const void *data, size_t len, const char *expect_hex)
{
    unsigned char d[KVI_MC_SHA256_LEN];
    char hex[2 * KVI_MC_SHA256_LEN + 1];
    kvi__mc_sha256(data, len, d);
    hex_of(d, sizeof d, hex);
    assert_string_equal(hex, expect_hex);
}

static void test_sha256_matches_fips_vectors(void **state)
{
    (void)state;
    assert_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_sha256(two_blocks, strlen(two_blocks),
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    assert_sha256(million, 1000000,
                  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

static void test_sha256_padding_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
    };
    char buf[128];
    memset(buf, 'a', sizeof buf);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_sha256(buf, v[i].n, v[i].hex);
    unsigned char all[256];
    for (unsigned i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    assert_sha256(all, sizeof all,
                  "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880");
}

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

static void test_stamp_records_absolute_expiry(void **state)
{
    (void)state;
    int64_t now = 1700000000;
    assert_int_equal(kvi__mc_stamp(now, 0), 0);
    assert_int_equal(kvi__mc_stamp(now, 10), 1700000010u);
    assert_int_equal(kvi__mc_stamp_expiry(kvi__mc_stamp(now, 10)), 1700000010);
    /* The largest lifetime the contract allows still fits in 32 bits. */
    assert_int_equal(kvi__mc_stamp(now, INT32_MAX), (uint32_t)(now + INT32_MAX));
    /* Small flags come from other clients, not from kvi. */
    assert_int_equal(kvi__mc_stamp_expiry(0), 0);
    assert_int_equal(kvi__mc_stamp_expiry(1), 0);
    assert_int_equal(kvi__mc_stamp_expiry(KVI_MC_MIN_STAMP - 1), 0);
    assert_int_equal(kvi__mc_stamp_expiry(KVI_MC_MIN_STAMP), (int64_t)KVI_MC_MIN_STAMP);
}

static void test_server_exptime_relative_absolute_or_kept_by_kvi(void **state)
{
    (void)state;
    int64_t now = 1700000000;
    assert_int_equal(kvi__mc_server_exptime(now + 5, now), 5);
    assert_int_equal(kvi__mc_server_exptime(now + KVI_MC_MAX_RELATIVE, now), KVI_MC_MAX_RELATIVE);
    /* Past 30 days memcached reads exptime as an absolute time. */
    assert_int_equal(kvi__mc_server_exptime(now + KVI_MC_MAX_RELATIVE + 1, now),
                     now + KVI_MC_MAX_RELATIVE + 1);
    /* Beyond memcached's signed 32-bit clock: the server keeps the item. */
    assert_int_equal(kvi__mc_server_exptime((int64_t)INT32_MAX + 1, now), 0);
    /* Due or overdue: one second, never 0 (which would mean "never"). */
    assert_int_equal(kvi__mc_server_exptime(now, now), 1);
    assert_int_equal(kvi__mc_server_exptime(now - 3, now), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_matches_fips_vectors),
        cmocka_unit_test(test_sha256_padding_boundaries),
        cmocka_unit_test(test_valid_memcached_key_is_used_as_is),
        cmocka_unit_test(test_other_keys_are_mapped_to_prefix_and_digest),
        cmocka_unit_test(test_key_with_mapping_prefix_is_mapped_so_it_cannot_meet_a_digest),
        cmocka_unit_test(test_envelope_round_trip_and_key_check),
        cmocka_unit_test(test_envelope_holds_a_1024_byte_key_and_empty_value),
        cmocka_unit_test(test_stamp_records_absolute_expiry),
        cmocka_unit_test(test_server_exptime_relative_absolute_or_kept_by_kvi),
    };
    return cmocka_run_group_tests_name("mc_envelope", tests, NULL, NULL);
}
