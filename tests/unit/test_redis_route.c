/*
 * test_redis_route.c -- the redis engine's pure routing helpers: cluster
 * hash slots (the vectors of the Redis Cluster specification), command key
 * positions for raw queries, and kvi glob -> redis MATCH patterns.
 *
 * route.c is compiled into this test directly: it is part of the
 * kvi_redis module, whose internals a statically linked test cannot reach.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engines/redis/route.c"
#include "kvi/engine.h"

static unsigned slot_of(const char *key)
{
    return kvi__redis_key_slot(key, strlen(key));
}

static void test_crc16_matches_xmodem_check_value(void **state)
{
    (void)state;
    /* The CRC-16/XMODEM check value of "123456789". */
    assert_int_equal(kvi__redis_crc16("123456789", 9), 0x31C3);
}

static void test_key_slot_vectors(void **state)
{
    (void)state;
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("{user}.name"), 5474);
    assert_int_equal(slot_of("{}bar"), 6479);
    assert_int_equal(slot_of("hello{world}"), 9059);
    assert_int_equal(slot_of("{{foo}}"), 13308);
    assert_int_equal(slot_of(""), 0);
}

static void test_hash_tag_puts_keys_in_one_slot(void **state)
{
    (void)state;
    assert_int_equal(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("{user}.name"), slot_of("user"));
    /* Only the first '{' counts, and an unclosed one hashes the whole key. */
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("foo{bar"), kvi__redis_crc16("foo{bar", 7) & 16383);
}

static void test_key_slot_is_binary_safe(void **state)
{
    (void)state;
    const char key[] = {'a', '\0', 'b'};
    assert_int_equal(kvi__redis_key_slot(key, 3), kvi__redis_crc16(key, 3) & 16383);
    assert_int_not_equal(kvi__redis_key_slot(key, 3), kvi__redis_key_slot(key, 1));
}

/* First-key index of a command line given as words. */
static int first_key(const char *const *words)
{
    size_t n = 0, lens[16];
    while (words[n] != NULL) {
        lens[n] = strlen(words[n]);
        n++;
    }
    return kvi__redis_first_key(n, (char *const *)words, lens);
}

static void test_first_key_of_common_commands(void **state)
{
    (void)state;
    const char *get[] = {"get", "k", NULL};
    const char *set[] = {"SET", "k", "v", NULL};
    const char *bitop[] = {"BITOP", "AND", "dest", "a", NULL};
    const char *obj[] = {"OBJECT", "ENCODING", "k", NULL};
    assert_int_equal(first_key(get), 1);
    assert_int_equal(first_key(set), 1);
    assert_int_equal(first_key(bitop), 2);
    assert_int_equal(first_key(obj), 2);
}

static void test_first_key_of_numkeys_commands(void **state)
{
    (void)state;
    const char *eval[] = {"EVAL", "return 1", "1", "k", NULL};
    const char *eval0[] = {"evalsha", "abc", "0", NULL};
    const char *evalbad[] = {"EVAL", "return 1", "x", "k", NULL};
    const char *zunion[] = {"ZUNION", "2", "a", "b", NULL};
    const char *blmpop[] = {"BLMPOP", "0", "1", "l", "LEFT", NULL};
    assert_int_equal(first_key(eval), 3);
    assert_int_equal(first_key(eval0), KVI_REDIS_NO_KEY);
    assert_int_equal(first_key(evalbad), KVI_REDIS_NO_KEY);
    assert_int_equal(first_key(zunion), 2);
    assert_int_equal(first_key(blmpop), 3);
}

static void test_first_key_of_xread_follows_streams(void **state)
{
    (void)state;
    const char *xread[] = {"XREAD", "COUNT", "2", "STREAMS", "s1", "0", NULL};
    const char *nostreams[] = {"XREAD", "COUNT", "2", NULL};
    assert_int_equal(first_key(xread), 4);
    assert_int_equal(first_key(nostreams), KVI_REDIS_NO_KEY);
}

static void test_first_key_none_and_unknown(void **state)
{
    (void)state;
    const char *ping[] = {"PING", NULL};
    const char *info[] = {"info", "server", NULL};
    const char *get_nokey[] = {"GET", NULL};
    const char *odd[] = {"MIGRATE", "h", "1", "k", "0", "100", NULL};
    assert_int_equal(first_key(ping), KVI_REDIS_NO_KEY);
    assert_int_equal(first_key(info), KVI_REDIS_NO_KEY);
    assert_int_equal(first_key(get_nokey), KVI_REDIS_NO_KEY);
    assert_int_equal(first_key(odd), KVI_REDIS_KEY_UNKNOWN);
}

static int stateful(const char *const *words)
{
    size_t n = 0, lens[8];
    while (words[n] != NULL) {
        lens[n] = strlen(words[n]);
        n++;
    }
    return kvi__redis_stateful_command(n, (char *const *)words, lens);
}

static void test_connection_state_commands_are_recognised(void **state)
{
    (void)state;
    const char *multi[] = {"multi", NULL};
    const char *select[] = {"SELECT", "2", NULL};
    const char *sub[] = {"SUBSCRIBE", "ch", NULL};
    const char *reply[] = {"CLIENT", "REPLY", "OFF", NULL};
    const char *list[] = {"CLIENT", "LIST", NULL};
    const char *get[] = {"GET", "k", NULL};
    assert_true(stateful(multi));
    assert_true(stateful(select));
    assert_true(stateful(sub));
    assert_true(stateful(reply));
    assert_false(stateful(list));
    assert_false(stateful(get));
}

static const char *pattern(const char *glob)
{
    static char out[256];
    kvi__redis_glob_pattern(glob, strlen(glob), out);
    return out;
}

static void test_glob_pattern_keeps_wildcards_and_escapes(void **state)
{
    (void)state;
    assert_string_equal(pattern("*"), "*");
    assert_string_equal(pattern("user:?:*"), "user:?:*");
    assert_string_equal(pattern("a\\*b"), "a\\*b");
    assert_string_equal(pattern("tail\\"), "tail\\\\");
}

static void test_glob_pattern_turns_classes_into_one_byte(void **state)
{
    (void)state;
    assert_string_equal(pattern("[abc]x"), "?x");
    assert_string_equal(pattern("[!a]x"), "?x");
    assert_string_equal(pattern("[^a-z]*"), "?*");
    assert_string_equal(pattern("[]a]x"), "?x");
    assert_string_equal(pattern("[a\\]]x"), "?x");
    /* An unterminated class is a literal '['. */
    assert_string_equal(pattern("a[bc"), "a\\[bc");
}

/* Every key the kvi glob matches must match the pattern too (the engine
 * refines with kvi_glob_match afterwards). */
static void test_glob_pattern_is_a_superset(void **state)
{
    (void)state;
    const char *globs[] = {"[!a]*", "[]x]?", "a[b-d]\\[", "*[^0-9]", "x[", "[a-]z"};
    const char *keys[] = {"b", "]q", "ac[", "12a", "x[", "-z", "az", "a", "zz", "9"};
    for (size_t g = 0; g < sizeof globs / sizeof globs[0]; g++) {
        char pat[64];
        size_t plen = kvi__redis_glob_pattern(globs[g], strlen(globs[g]), pat);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (kvi_glob_match(globs[g], strlen(globs[g]), keys[k], strlen(keys[k])))
                assert_true(kvi_glob_match(pat, plen, keys[k], strlen(keys[k])));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_matches_xmodem_check_value),
        cmocka_unit_test(test_key_slot_vectors),
        cmocka_unit_test(test_hash_tag_puts_keys_in_one_slot),
        cmocka_unit_test(test_key_slot_is_binary_safe),
        cmocka_unit_test(test_first_key_of_common_commands),
        cmocka_unit_test(test_first_key_of_numkeys_commands),
        cmocka_unit_test(test_first_key_of_xread_follows_streams),
        cmocka_unit_test(test_first_key_none_and_unknown),
        cmocka_unit_test(test_connection_state_commands_are_recognised),
        cmocka_unit_test(test_glob_pattern_keeps_wildcards_and_escapes),
        cmocka_unit_test(test_glob_pattern_turns_classes_into_one_byte),
        cmocka_unit_test(test_glob_pattern_is_a_superset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
