/* expiry.c -- expiry and ttl (docs/semantics.md). */
#include "conformance.h"

/* ---- expiry ------------------------------------------------------------------------ */

static void test_expire_zero_never_expires(void **state)
{
    fx *f = F;
    tkey k = key(f, "forever");
    store_str(f, &k, "v", 0);
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &k), -1);
    /* Ten years later (virtual time only: nobody waits that long). */
    if (conf_g.virtual_time)
        pass_ms(f, 10LL * 366 * 24 * 3600 * 1000);
    expect_str(f, &k, "v");
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &k), -1);
}

static void test_store_with_zero_clears_expiry(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    tkey k = key(f, "cleared");
    store_str(f, &k, "first", short_expire());
    int64_t t = ttl_of(f, &k);
    assert_true(t >= 1 && t <= short_expire());
    store_str(f, &k, "second", 0);
    assert_int_equal(ttl_of(f, &k), -1);
    pass_short_expire(f);
    expect_str(f, &k, "second");
    assert_int_equal(ttl_of(f, &k), -1);
}

static void test_expire_n_gone_after_n_seconds(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    tkey gone = key(f, "exp:gone");
    tkey stays = key(f, "exp:stays");
    tkey later = key(f, "exp:later");
    store_str(f, &gone, "g", short_expire());
    store_str(f, &stays, "s", 0);
    store_str(f, &later, "l", 3600);
    expect_str(f, &gone, "g");
    pass_to_just_before_expiry(f);
    expect_str(f, &gone, "g");
    pass_rest_of_expiry(f);

    /* Listed before anything touches the expired key, so that lazy expiry
     * on access cannot hide it. */
    if (has(f, KVI_CAP_ITERATE)) {
        kvi_reply *r = list(f, "exp:*");
        assert_false(reply_has(r, &gone));
        assert_true(reply_has(r, &stays));
        assert_true(reply_has(r, &later));
        assert_int_equal(kvi_reply_count(r), 2);
        kvi_reply_free(r);
    }
    expect_missing(f, &gone);
    int64_t t = 5;
    assert_status(f, op_ttl(f, &gone, &t), KVI_NOT_FOUND);
    assert_int_equal(t, 0);
    assert_status(f, op_remove(f, &gone), KVI_NOT_FOUND);
    expect_str(f, &stays, "s");
    expect_str(f, &later, "l");
    /* The key can be used again after it expired. */
    store_str(f, &gone, "again", 0);
    expect_str(f, &gone, "again");
}

static void test_ttl_counts_down_in_whole_seconds(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    tkey k = key(f, "ttl");
    tkey none = key(f, "ttl-none");
    tkey missing = key(f, "ttl-missing");
    store_str(f, &k, "v", 100);
    store_str(f, &none, "v", 0);
    int64_t t = ttl_of(f, &k);
    if (conf_g.virtual_time) {
        assert_int_equal(t, 100);
        pass_ms(f, 30500);
        /* 69.5 s left, rounded down: ttl never claims more than the key
         * has. */
        assert_int_equal(ttl_of(f, &k), 69);
    } else {
        assert_true(t >= 98 && t <= 100);
    }
    assert_int_equal(ttl_of(f, &none), -1);
    int64_t m = 3;
    assert_status(f, op_ttl(f, &missing, &m), KVI_NOT_FOUND);
    assert_int_equal(m, 0);
}

/* Phases of a wall-clock second the expiry rows sample. */
#define PHASES 20

/* The test's clock: the virtual one, or the real monotonic clock. */
static int64_t test_now_ms(fx *f)
{
    if (conf_g.virtual_time)
        return kvi_test_clock_fn(&f->clock);
    return kvi_test_mono_ms();
}

static void pass_until_ms(fx *f, int64_t at)
{
    int64_t now = test_now_ms(f);
    if (at > now)
        pass_ms(f, at - now);
}

enum phase_step { PH_STORE, PH_TTL, PH_CHECK, PH_DONE };

struct phase_sample {
    tkey k;
    int64_t expire_s;
    enum phase_step next;
    int64_t due_ms, stored_ms, limit_ms, ttl;
};

/* Keys stored at PHASES moments spread over a second of the wall clock:
 * a 1-second key is still there just before its second has passed (no
 * engine drops a key early, whatever the sub-second moment of the store),
 * and a ttl of t read 500 ms into a 2-second key promises the key for t
 * more seconds: it is there just before.  In virtual time "just before" is
 * 1 ms; in real time 150 ms, and a check the machine delayed past its limit
 * proves nothing (counted, reported, never failed). */
/* One round of PHASES samples; counts the checks that came in time
 * (conclusive) and those the machine delayed past their limit (late). */
static void expiry_phase_round(fx *f, int round, int *conclusive, int *late)
{
    int64_t before = conf_g.virtual_time ? 1 : 150;
    struct phase_sample s[PHASES];
    int64_t start = test_now_ms(f);
    for (int i = 0; i < PHASES; i++) {
        char name[24];
        snprintf(name, sizeof name, "phase:%d:%d", round, i);
        s[i].k = key(f, name);
        s[i].expire_s = i % 2 ? 2 : 1;
        s[i].next = PH_STORE;
        /* A store every 1000/PHASES + 3 ms covers a bit more than one
         * wall-clock second wherever it starts. */
        s[i].due_ms = start + i * (1000 / PHASES + 3);
    }
    for (;;) {
        struct phase_sample *p = NULL;
        for (int i = 0; i < PHASES; i++)
            if (s[i].next != PH_DONE && (p == NULL || s[i].due_ms < p->due_ms))
                p = &s[i];
        if (p == NULL)
            break;
        pass_until_ms(f, p->due_ms);
        if (p->next == PH_STORE) {
            p->stored_ms = test_now_ms(f);
            store_str(f, &p->k, "v", p->expire_s);
            p->limit_ms = p->stored_ms + 1000 * p->expire_s;
            p->next = p->expire_s == 1 ? PH_CHECK : PH_TTL;
            p->due_ms = p->expire_s == 1 ? p->limit_ms - before : p->stored_ms + 500;
        } else if (p->next == PH_TTL) {
            int64_t at = test_now_ms(f);
            p->ttl = ttl_of(f, &p->k);
            if (p->ttl < 0 || p->ttl > p->expire_s)
                fail_msg("ttl of a %lld s key is %lld", (long long)p->expire_s, (long long)p->ttl);
            p->next = p->ttl > 0 ? PH_CHECK : PH_DONE; /* 0 promises nothing */
            p->limit_ms = at + 1000 * p->ttl;
            p->due_ms = p->limit_ms - before;
        } else {
            kvi_value v = KVI_VALUE_INIT;
            kvi_status st = op_fetch(f, &p->k, &v);
            int64_t done = test_now_ms(f);
            kvi_value_free(&v);
            p->next = PH_DONE;
            if (done >= p->limit_ms) {
                (*late)++;
                continue;
            }
            (*conclusive)++;
            if (st != KVI_OK)
                fail_msg("%lld s key %s %lld ms after its store began, %lld ms before %s: %s",
                         (long long)p->expire_s, st == KVI_NOT_FOUND ? "gone" : "failed",
                         (long long)(done - p->stored_ms), (long long)(p->limit_ms - done),
                         p->expire_s == 1 ? "its expiry" : "what ttl promised",
                         kvi_status_name(st));
        }
    }
}

/* The verdict rests on evidence: more than half of the PHASES checks of a
 * round must have come in time (a check the machine delayed past its limit
 * proves nothing either way).  A loaded machine gets up to three rounds to
 * produce such a majority; the counts are always reported. */
#define PHASE_MAJORITY (PHASES / 2 + 1)
#define PHASE_ROUNDS 3

static void test_expiry_never_early_and_ttl_never_more_at_any_phase(void **state)
{
    fx *f = F;
    if (ttl_unsupported(f))
        return;
    int conclusive = 0, late = 0;
    for (int round = 0; round < PHASE_ROUNDS; round++) {
        conclusive = late = 0;
        expiry_phase_round(f, round, &conclusive, &late);
        fprintf(stderr, "expiry phases, round %d: %d of %d checks conclusive (%d too late); %d needed\n",
                round + 1, conclusive, conclusive + late, late, PHASE_MAJORITY);
        if (conclusive >= PHASE_MAJORITY)
            return;
    }
    fail_msg("only %d of %d expiry phase checks came in time in each of %d rounds (need %d): "
             "the machine is too loaded to decide",
             conclusive, PHASES, PHASE_ROUNDS, PHASE_MAJORITY);
}

static void test_negative_expire_is_invalid_and_writes_nothing(void **state)
{
    fx *f = F;
    tkey fresh = key(f, "neg:fresh");
    tkey old = key(f, "neg:old");
    assert_status(f, op_store(f, &fresh, "x", 1, -1), KVI_E_INVALID);
    expect_missing(f, &fresh);
    assert_status(f, op_store(f, &fresh, "x", 1, INT64_MIN), KVI_E_INVALID);
    assert_status(f, op_store(f, &fresh, "x", 1, KVI_MAX_EXPIRE_S + 1), KVI_E_INVALID);
    expect_missing(f, &fresh);

    store_str(f, &old, "old", 0);
    assert_status(f, op_store(f, &old, "new", 3, -5), KVI_E_INVALID);
    expect_str(f, &old, "old");
    if (has(f, KVI_CAP_TTL))
        assert_int_equal(ttl_of(f, &old), -1);

    if (has(f, KVI_CAP_COUNTERS)) {
        int64_t nv = 9;
        assert_status(f, op_add(f, &fresh, 1, -1, &nv), KVI_E_INVALID);
        assert_int_equal(nv, 0);
        assert_status(f, op_sub(f, &fresh, 1, -1, &nv), KVI_E_INVALID);
        expect_missing(f, &fresh);
    }
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_expire_zero_never_expires),
    CONF_TEST(test_store_with_zero_clears_expiry),
    CONF_TEST(test_expire_n_gone_after_n_seconds),
    CONF_TEST(test_ttl_counts_down_in_whole_seconds),
    CONF_TEST(test_expiry_never_early_and_ttl_never_more_at_any_phase),
    CONF_TEST(test_negative_expire_is_invalid_and_writes_nothing),
};

const conf_block conf_expiry_block = {tests, sizeof tests / sizeof tests[0]};
