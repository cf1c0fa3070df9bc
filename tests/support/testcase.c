/*
 * testcase.c -- the support library's helpers for one cmocka case
 * (kvitest.h): set-ups that skip only the case they are for.  A file of
 * its own so that a program without cmocka (the Lua runner) never pulls
 * it in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kvitest.h"
#include "testcluster.h"
#include "testsentinel.h"

kvi_tc_cluster *kvi_test_cluster_case(const kvi_tc_spec *spec)
{
    kvi_tc_cluster *cl = NULL;
    kvi_ts_result r = kvi_tc_start(spec, &cl);
    if (r == KVI_TS_MISSING)
        KVI_TEST_SKIP_CASE("%s", kvi_tc_errmsg());
    if (r != KVI_TS_OK)
        fail_msg("cannot start the cluster: %s", kvi_tc_errmsg());
    return cl;
}

kvi_tsn_setup *kvi_test_sentinels_case(const kvi_tsn_spec *spec)
{
    kvi_tsn_setup *sn = NULL;
    kvi_ts_result r = kvi_tsn_start(spec, &sn);
    if (r == KVI_TS_MISSING)
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        fail_msg("cannot start the sentinel set-up: %s", kvi_ts_errmsg());
    return sn;
}
