/* test_cap_names.c -- kvi_cap_name(): one name per capability bit, the one
 * table the kvi command and the Lua binding print. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/kvi.h"

static void test_every_defined_bit_has_a_distinct_name(void **state)
{
    (void)state;
    for (unsigned b = 0; b < KVI_CAP_BITS; b++) {
        const char *name = kvi_cap_name(1u << b);
        assert_non_null(name);
        assert_true(strlen(name) > 0);
        for (unsigned o = 0; o < b; o++)
            assert_string_not_equal(name, kvi_cap_name(1u << o));
    }
    assert_string_equal(kvi_cap_name(KVI_CAP_TTL), "ttl");
    assert_string_equal(kvi_cap_name(KVI_CAP_NEG_COUNTERS), "neg_counters");
    assert_string_equal(kvi_cap_name(KVI_CAP_CONDITIONAL), "conditional");
}

static void test_zero_several_and_unknown_bits_have_no_name(void **state)
{
    (void)state;
    assert_null(kvi_cap_name(0));
    assert_null(kvi_cap_name(KVI_CAP_TTL | KVI_CAP_COUNTERS));
    assert_null(kvi_cap_name(1u << KVI_CAP_BITS));
    assert_null(kvi_cap_name(1u << 31));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_defined_bit_has_a_distinct_name),
        cmocka_unit_test(test_zero_several_and_unknown_bits_have_no_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
