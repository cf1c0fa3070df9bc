/*
 * test_local_url_checks.c -- local URLs that make no sense are refused when
 * added, naming what is wrong, and define nothing: a host, a database, a
 * user or password; save_s or on_corrupt without file=; shm_* options
 * without shm=; a read-only look that would write; an unlimited max_memory
 * for a segment of fixed size; a shm_mode that is not octal or leaves the
 * owner out.  docs/engines/local.md lists the options.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/kvi.h"

static void test_impossible_local_urls_are_refused_naming_the_fault(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *words;
    } rows[] = {
        {"local://somehost/", "takes no host"},
        {"local:///3", "takes no database ('/3')"},
        {"local://user@/", "takes no user or password"},
        {"local://:pw@/", "takes no user or password"},
        {"local://?save_s=5", "save_s needs file="},
        {"local://?on_corrupt=empty", "on_corrupt needs file="},
        {"local://?shm_mode=0600", "shm_mode needs shm=NAME"},
        {"local://?shm_unlink=yes", "shm_unlink needs shm=NAME"},
        {"local://?shm_create=no", "shm_create needs shm=NAME"},
        {"local://?shm_readonly=yes", "shm_readonly needs shm=NAME"},
        {"local://?shm=kvi-urlcheck-never-made&shm_readonly=yes&shm_unlink=yes",
         "shm_readonly=yes only looks"},
        {"local://?shm=kvi-urlcheck-never-made&shm_readonly=yes&shm_mode=0600",
         "shm_readonly=yes only looks"},
        {"local://?shm=kvi-urlcheck-never-made&shm_readonly=yes&file=/tmp/x.kvis",
         "shm_readonly=yes only looks"},
        {"local://?shm=kvi-urlcheck-never-made&max_memory=0", "does not go with shm="},
        {"local://?shm=kvi-urlcheck-never-made&shm_mode=0400", "bad shm_mode '0400'"},
        {"local://?shm=kvi-urlcheck-never-made&shm_mode=0x1ff", "bad shm_mode '0x1ff'"},
        {"local://?shm=kvi-urlcheck-never-made&shm_mode=01777", "bad shm_mode '01777'"},
        {"local://?shm=kvi-urlcheck-never-made&shm_mode=", "bad shm_mode"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        kvi *k = NULL;
        assert_int_equal(kvi_new(&k), KVI_OK);
        kvi_status st = kvi_add_url(k, rows[i].url);
        if ((st != KVI_E_INVALID && st != KVI_E_BAD_URL) ||
            strstr(kvi_errmsg(k), rows[i].words) == NULL)
            fail_msg("%s: %s '%s', want a refusal with '%s'", rows[i].url, kvi_status_name(st),
                     kvi_errmsg(k), rows[i].words);
        /* Nothing was defined: the id is still free. */
        assert_int_equal(kvi_add_url(k, "local://"), KVI_OK);
        kvi_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_impossible_local_urls_are_refused_naming_the_fault),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
