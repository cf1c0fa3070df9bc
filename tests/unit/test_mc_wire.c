/*
 * test_mc_wire.c -- the memcached engine's binary protocol codec
 * (src/engines/memcached/mc_wire.c, compiled in: it is part of the
 * kvi_memcached module): request layout, replies parsed whole and in
 * pieces, and the lengths a server cannot be trusted with refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engines/memcached/mc_wire.c"

/* A reply header + body built by hand. */
static size_t reply(uint8_t *out, uint8_t opcode, uint16_t status, uint8_t extlen,
                    const char *key, const char *val, uint32_t opaque, uint64_t cas)
{
    size_t kl = key ? strlen(key) : 0, vl = val ? strlen(val) : 0;
    memset(out, 0, MCW_HEADER + extlen);
    out[0] = MCW_RES_MAGIC;
    out[1] = opcode;
    put16(out + 2, (uint16_t)kl);
    out[4] = extlen;
    put16(out + 6, status);
    put32(out + 8, (uint32_t)(extlen + kl + vl));
    put32(out + 12, opaque);
    put32(out + 16, (uint32_t)(cas >> 32));
    put32(out + 20, (uint32_t)cas);
    if (extlen >= 4)
        put32(out + MCW_HEADER, 0xdeadbeefu);
    memcpy(out + MCW_HEADER + extlen, key ? key : "", kl);
    memcpy(out + MCW_HEADER + extlen + kl, val ? val : "", vl);
    return MCW_HEADER + extlen + kl + vl;
}

static void test_requests_have_the_protocol_layout(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n = kvi__mcw_key_req(b, MCW_OP_GET, "abc", 3, 0x01020304u);
    assert_int_equal(n, 27);
    static const uint8_t get[] = {0x80, 0x00, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4,
                                  0,    0,    0, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
    assert_memory_equal(b, get, sizeof get);
    n = kvi__mcw_store_head(b, MCW_OP_SET, "k", 1, 5, 0x11223344u, 60, 0x0102030405060708ull, 7);
    assert_int_equal(n, 24 + 8 + 1);
    assert_int_equal(b[0], 0x80);
    assert_int_equal(b[1], MCW_OP_SET);
    assert_int_equal(get16(b + 2), 1);
    assert_int_equal(b[4], 8);
    assert_int_equal(get32(b + 8), 8 + 1 + 5);
    assert_int_equal(get32(b + 12), 7);
    assert_int_equal(get32(b + 16), 0x01020304u);
    assert_int_equal(get32(b + 20), 0x05060708u);
    assert_int_equal(get32(b + 24), 0x11223344u);
    assert_int_equal(get32(b + 28), 60);
    assert_int_equal(b[32], 'k');
    uint8_t s[32];
    assert_int_equal(kvi__mcw_sasl_plain(s, sizeof s, "al", "pw"), 6);
    assert_memory_equal(s, "\0al\0pw", 6);
    assert_int_equal(kvi__mcw_sasl_plain(s, 5, "al", "pw"), 0);
}

static void test_a_get_reply_parses_whole_and_needs_more_in_pieces(void **state)
{
    (void)state;
    uint8_t b[256];
    size_t n = reply(b, MCW_OP_GET, MCW_OK, 4, NULL, "hello", 42, 99);
    struct mcw_reply r;
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(kvi__mcw_parse(b, i, 1000, &r, &need), 0);
        assert_int_equal(need, i < MCW_HEADER ? MCW_HEADER : n);
    }
    assert_int_equal(kvi__mcw_parse(b, n, 1000, &r, &need), (long)n);
    assert_int_equal(r.status, MCW_OK);
    assert_int_equal(r.opaque, 42);
    assert_int_equal(r.cas, 99);
    assert_true(r.has_flags);
    assert_int_equal(r.flags, 0xdeadbeefu);
    assert_int_equal(r.value_len, 5);
    assert_memory_equal(r.value, "hello", 5);
    /* Two replies back to back: the first only. */
    size_t n2 = reply(b + n, MCW_OP_DELETE, MCW_ENOENT, 0, NULL, "Not found", 43, 0);
    assert_int_equal(kvi__mcw_parse(b, n + n2, 1000, &r, NULL), (long)n);
    assert_int_equal(kvi__mcw_parse(b + n, n2, 1000, &r, NULL), (long)n2);
    assert_int_equal(r.status, MCW_ENOENT);
    assert_int_equal(r.value_len, 9);
}

static void test_untrusted_lengths_are_refused(void **state)
{
    (void)state;
    uint8_t b[256];
    struct mcw_reply r;
    size_t n = reply(b, MCW_OP_GET, MCW_OK, 4, NULL, "v", 1, 0);
    /* wrong magic, even before the header is complete */
    b[0] = 0x80;
    assert_int_equal(kvi__mcw_parse(b, 1, 1000, &r, NULL), -1);
    b[0] = MCW_RES_MAGIC;
    /* extras + key longer than the body */
    put16(b + 2, 200);
    assert_int_equal(kvi__mcw_parse(b, n, 1000, &r, NULL), -1);
    put16(b + 2, 0);
    b[4] = 9;
    assert_int_equal(kvi__mcw_parse(b, n, 1000, &r, NULL), -1);
    /* a GET reply without its flags */
    b[4] = 0;
    assert_int_equal(kvi__mcw_parse(b, n, 1000, &r, NULL), -1);
    b[4] = 4;
    /* a body over the cap is refused from its header alone */
    put32(b + 8, 0x7fffffffu);
    assert_int_equal(kvi__mcw_parse(b, MCW_HEADER, 1u << 20, &r, NULL), -1);
    put32(b + 8, 5);
    assert_int_equal(kvi__mcw_parse(b, n, 4, &r, NULL), -1);
    assert_int_equal(kvi__mcw_parse(b, n, 5, &r, NULL), (long)n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_have_the_protocol_layout),
        cmocka_unit_test(test_a_get_reply_parses_whole_and_needs_more_in_pieces),
        cmocka_unit_test(test_untrusted_lengths_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
