/*
 * test_core_batch.c -- what the core does around batches, against two small
 * engines registered by the test: "single" (no batch slot: the core runs the
 * ops one by one) and "grouped" (ABI 3 with a batch slot that records what
 * it was given).  Each answers with statuses the test chooses, so the core's
 * rules can be seen: a state-changing op that may have been applied is
 * KVI_E_OUTCOME_UNKNOWN and never sent again, a passed deadline sends
 * nothing, an op the engine leaves open is KVI_E_INTERNAL, an ABI-2
 * engine's spare word is never taken for a batch slot, stats count each op.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/engine.h"

static struct {
    kvi_status next; /* what every data slot answers */
    int calls;       /* data-slot calls */
    int batch_calls; /* batch-slot calls */
    size_t batch_sizes[8];
    int leave_open;    /* the batch slot ends no op */
    int dirty_fetches; /* fetch ops the batch slot got with inputs not emptied */
    unsigned sleep_ms; /* per single call */
} es;

static kvi_status ans(kvi_conn *c)
{
    es.calls++;
    if (es.sleep_ms)
        kvi_sleep_ms(es.sleep_ms);
    if (es.next == KVI_OK || es.next == KVI_NOT_FOUND)
        return es.next;
    return kvi_engine_error(c, es.next, "injected %s", kvi_status_name(es.next));
}

static kvi_status e_open(kvi_conn *c, const kvi_url *u)
{
    (void)c;
    (void)u;
    return KVI_OK;
}
static void e_close(kvi_conn *c)
{
    (void)c;
}
static kvi_status e_store(kvi_conn *c, const void *k, size_t kl, const void *v, size_t vl,
                          int64_t e)
{
    (void)k, (void)kl, (void)v, (void)vl, (void)e;
    return ans(c);
}
static kvi_status e_fetch(kvi_conn *c, const void *k, size_t kl, kvi_value *out)
{
    (void)k, (void)kl;
    kvi_status st = ans(c);
    return st == KVI_OK ? kvi_value_set(c, out, "v", 1) : st;
}
static kvi_status e_remove(kvi_conn *c, const void *k, size_t kl)
{
    (void)k, (void)kl;
    return ans(c);
}
static kvi_status e_add(kvi_conn *c, const void *k, size_t kl, int64_t d, int64_t e, int64_t *nv)
{
    (void)k, (void)kl, (void)e;
    *nv = d;
    return ans(c);
}
static kvi_status e_counter(kvi_conn *c, const void *k, size_t kl, int64_t *out)
{
    (void)k, (void)kl;
    *out = 1;
    return ans(c);
}
static kvi_status e_bounded(kvi_conn *c, const void *k, size_t kl, int64_t d, int64_t e,
                            int64_t mn, int64_t mx, int64_t *v)
{
    (void)k, (void)kl, (void)e, (void)mn, (void)mx;
    *v = d;
    return ans(c);
}
static kvi_status e_nx(kvi_conn *c, const void *k, size_t kl, const void *v, size_t vl, int64_t e)
{
    (void)k, (void)kl, (void)v, (void)vl, (void)e;
    return ans(c);
}

static void e_batch(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    (void)deadline_ms;
    if (es.batch_calls < 8)
        es.batch_sizes[es.batch_calls] = n;
    es.batch_calls++;
    for (size_t i = 0; i < n; i++) {
        const kvi_batch_op *op = ops[i];
        int dirty = op->val != NULL || op->val_len != 0 || op->expire_s != 0 || op->delta != 0 ||
                    op->min != 0 || op->max != 0 || op->no_resend != 0;
        for (size_t r = 0; r < sizeof op->reserved_ / sizeof op->reserved_[0]; r++)
            dirty |= op->reserved_[r] != NULL;
        es.dirty_fetches += op->kind == KVI_OP_FETCH && dirty;
    }
    if (es.leave_open)
        return;
    for (size_t i = 0; i < n; i++)
        kvi_batch_op_single(c, ops[i]);
}

static void must_not_run(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t d)
{
    (void)c, (void)ops, (void)n, (void)d;
    fail_msg("the spare word of an ABI-2 engine was called as a batch slot");
}

#define ENGINE_SLOTS                                                                               \
    .caps = KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS | KVI_CAP_CONDITIONAL, .open = e_open,         \
    .close = e_close, .store = e_store, .fetch = e_fetch, .remove = e_remove, .add = e_add,        \
    .counter_fetch = e_counter, .add_bounded = e_bounded, .store_nx = e_nx

/* ABI 2, with a non-NULL word where ABI 3 has its batch slot. */
static const struct kvi_engine single_engine = {
    .abi_version = 2, .name = "single", ENGINE_SLOTS, .batch = must_not_run};
static const struct kvi_engine grouped_engine = {
    .abi_version = KVI_ENGINE_ABI, .name = "grouped", ENGINE_SLOTS, .batch = e_batch};

static int setup(void **state)
{
    memset(&es, 0, sizeof es);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &single_engine), KVI_OK);
    assert_int_equal(kvi_register_engine(k, &grouped_engine), KVI_OK);
    assert_int_equal(kvi_add_url(k, "single://"), KVI_OK);
    assert_int_equal(kvi_add_url(k, "grouped://"), KVI_OK);
    assert_int_equal(kvi_add_url(k, "grouped:two://"), KVI_OK);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    kvi_free(*state);
    return 0;
}

/* One op of every kind on id. */
static void add_all_kinds(kvi_batch *b, const char *id)
{
    assert_int_equal(kvi_batch_store(b, id, "k", 1, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, id, "k", 1), KVI_OK);
    assert_int_equal(kvi_batch_remove(b, id, "k", 1), KVI_OK);
    assert_int_equal(kvi_batch_counter_fetch(b, id, "k", 1), KVI_OK);
    assert_int_equal(kvi_batch_add(b, id, "k", 1, 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_sub(b, id, "k", 1, 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_add_bounded(b, id, "k", 1, 1, 0, 0, 9), KVI_OK);
    assert_int_equal(kvi_batch_sub_bounded(b, id, "k", 1, 1, 0, -9, 9), KVI_OK);
    assert_int_equal(kvi_batch_store_nx(b, id, "k", 1, "v", 1, 0), KVI_OK);
}

/* The first four kinds are reads or idempotent writes: a timeout stays a
 * timeout.  The other five change state and may have been applied. */
static void expect_unknown_outcome_for_state_changes(kvi_batch *b, kvi_status injected)
{
    for (size_t i = 0; i < 9; i++) {
        kvi_status want = i < 4 ? injected : KVI_E_OUTCOME_UNKNOWN;
        if (kvi_batch_status(b, i) != want)
            fail_msg("op %zu (kind %d): %s, want %s", i, (int)kvi_batch_kind(b, i),
                     kvi_status_name(kvi_batch_status(b, i)), kvi_status_name(want));
        assert_non_null(strstr(kvi_batch_errmsg(b, i), "injected"));
    }
    assert_int_equal(kvi_batch_failed(b), 9);
}

static void test_fallback_marks_state_changes_that_timed_out_unknown(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    add_all_kinds(b, "single");
    es.next = KVI_E_TIMEOUT;
    assert_int_equal(kvi_batch_run(b, 0), KVI_E_TIMEOUT);
    assert_int_equal(es.calls, 9); /* each sent once, none again */
    expect_unknown_outcome_for_state_changes(b, KVI_E_TIMEOUT);
    kvi_batch_free(b);
}

static void test_batch_slot_single_marks_io_errors_unknown(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    add_all_kinds(b, "grouped");
    es.next = KVI_E_IO;
    assert_int_equal(kvi_batch_run(b, 0), KVI_E_IO);
    assert_int_equal(es.calls, 9);
    expect_unknown_outcome_for_state_changes(b, KVI_E_IO);
    kvi_batch_free(b);
}

static void test_connect_failure_is_not_unknown(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    add_all_kinds(b, "single");
    es.next = KVI_E_CONNECT; /* never reached the server */
    assert_int_equal(kvi_batch_run(b, 0), KVI_E_CONNECT);
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(kvi_batch_status(b, i), KVI_E_CONNECT);
    kvi_batch_free(b);
}

static void test_ops_are_grouped_per_engine_id_in_one_slot_call(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kvi_batch_fetch(b, "grouped", "a", 1), KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "grouped:two", "a", 1), KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "single", "a", 1), KVI_OK);
    }
    assert_int_equal(kvi_batch_run(b, 1000), KVI_OK);
    assert_int_equal(es.batch_calls, 2);
    assert_int_equal(es.batch_sizes[0], 5);
    assert_int_equal(es.batch_sizes[1], 5);
    assert_int_equal(es.calls, 15);
    for (size_t i = 0; i < 15; i++)
        assert_string_equal(kvi_batch_value(b, i, NULL), "v");
    kvi_stats st;
    assert_int_equal(kvi_stats_get(*state, "grouped", &st), KVI_OK);
    assert_int_equal(st.ops, 5);
    kvi_batch_free(b);
}

/* Fetches added in the slots that stores and bounded counters held before
 * (a batch cleared and filled again) reach an engine's batch slot with
 * their unused inputs empty, whether grouped in one pass or per id. */
static void test_fetches_reach_the_engine_with_empty_inputs(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    for (int mixed = 0; mixed < 2; mixed++) {
        kvi_batch_clear(b);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(kvi_batch_store(b, "grouped", "k", 1, "value", 5, 0), KVI_OK);
            assert_int_equal(kvi_batch_add_bounded(b, "grouped", "k", 1, 3, 0, -9, 9), KVI_OK);
        }
        assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
        kvi_batch_clear(b);
        for (int i = 0; i < 8; i++) {
            assert_int_equal(kvi_batch_fetch(b, "grouped", "k", 1), KVI_OK);
            if (mixed && i == 3)
                assert_int_equal(kvi_batch_fetch(b, "grouped:two", "k", 1), KVI_OK);
        }
        es.dirty_fetches = 0;
        assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
        assert_int_equal(es.dirty_fetches, 0);
        assert_string_equal(kvi_batch_value(b, 0, NULL), "v");
    }
    kvi_batch_free(b);
}

static void test_op_left_open_by_the_engine_is_internal_error(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "grouped", "a", 1), KVI_OK);
    es.leave_open = 1;
    assert_int_equal(kvi_batch_run(b, 0), KVI_E_INTERNAL);
    assert_non_null(strstr(kvi_batch_errmsg(b, 0), "unanswered"));
    assert_non_null(strstr(kvi_errmsg(*state), "unanswered"));
    kvi_stats st;
    assert_int_equal(kvi_stats_get(*state, "grouped", &st), KVI_OK);
    assert_int_equal(st.errors, 1);
    kvi_batch_free(b);
}

/* Once the batch's deadline has passed nothing more is sent: the rest ends
 * KVI_E_TIMEOUT, and no state-changing op is unknown. */
static void test_deadline_stops_sending(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(kvi_batch_add(b, "single", "a", 1, 1, 0), KVI_OK);
    /* 200 ms naps, a 500 ms deadline: 3 calls on a quiet machine; a stall
     * before the first send (valgrind on a loaded machine) may leave 0,
     * and then every op has timed out. */
    es.sleep_ms = 200;
    assert_int_equal(kvi_batch_run(b, 500), KVI_E_TIMEOUT);
    assert_true(es.calls <= 4);
    if (es.calls > 0)
        assert_int_equal(kvi_batch_status(b, 0), KVI_OK);
    assert_int_equal(kvi_batch_status(b, 19), KVI_E_TIMEOUT);
    assert_non_null(strstr(kvi_batch_errmsg(b, 19), "deadline"));
    assert_int_equal(kvi_batch_failed(b), (size_t)(20 - es.calls));
    kvi_batch_free(b);
}

static void test_engine_status_out_of_range_is_internal(void **state)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*state, &b), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "grouped", "a", 1), KVI_OK);
    es.next = (kvi_status)999;
    assert_int_equal(kvi_batch_run(b, 0), KVI_E_INTERNAL);
    kvi_batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_fallback_marks_state_changes_that_timed_out_unknown),
        T(test_batch_slot_single_marks_io_errors_unknown),
        T(test_connect_failure_is_not_unknown),
        T(test_ops_are_grouped_per_engine_id_in_one_slot_call),
        T(test_fetches_reach_the_engine_with_empty_inputs),
        T(test_op_left_open_by_the_engine_is_internal_error),
        T(test_deadline_stops_sending),
        T(test_engine_status_out_of_range_is_internal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
