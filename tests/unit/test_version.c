/*
 * test_version.c -- the version is written once (include/kvi/version.h):
 * the string is made from the numbers, and the library reports the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/version.h"

static void test_version_string_is_made_from_the_numbers(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", KVI_VERSION_MAJOR, KVI_VERSION_MINOR,
             KVI_VERSION_PATCH);
    assert_string_equal(KVI_VERSION_STRING, want);
    assert_int_equal(KVI_VERSION_NUM,
                     (KVI_VERSION_MAJOR << 16) | (KVI_VERSION_MINOR << 8) | KVI_VERSION_PATCH);
}

static void test_library_reports_the_header_version(void **state)
{
    (void)state;
    assert_string_equal(kvi_version(), KVI_VERSION_STRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_string_is_made_from_the_numbers),
        cmocka_unit_test(test_library_reports_the_header_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
