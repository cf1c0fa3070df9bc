/*
 * ops.c -- the one wrapper per operation.
 *
 * Each public operation is checked here once for every engine: arguments
 * (NULL, lengths, expiry), capability bits, output zeroing; then the engine
 * slot is called, timed and counted, and on failure its outputs are emptied
 * and a detail message is guaranteed.  Engines repeat none of this.
 */
#include <limits.h>
#include <string.h>

#include "core/ids.h"
#include "core/ops.h"

#define GLOB_MAX_LEN 4096u

/* ---- stats -------------------------------------------------------------- */

/* The first KVI__STAT_STRIPES - 1 threads that count get a stripe of
 * their own (in every handle) and add to it with a plain load and store:
 * no locked instruction per call, which would also stop the CPU from
 * overlapping one call's cache misses with the next's.  Stripes are never
 * handed out twice, so no other thread writes there; every later thread
 * shares the last stripe and adds atomically.  Readers sum all stripes
 * with relaxed loads. */
#define SHARED_STRIPE (KVI__STAT_STRIPES - 1u)

static _Atomic unsigned next_stripe;
static _Thread_local unsigned tl_stripe KVI__TLS_FAST = UINT_MAX;

static struct kvi__stat_stripe *my_stripe(kvi_conn *c)
{
    if (tl_stripe == UINT_MAX) {
        unsigned i = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed);
        tl_stripe = i < SHARED_STRIPE ? i : SHARED_STRIPE;
    }
    return &c->stats[tl_stripe];
}

static inline void bump(_Atomic uint64_t *counter, uint64_t n)
{
    if (tl_stripe < SHARED_STRIPE)
        atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* Time and count one engine call.  The clock costs ~25 ns a read on a
 * typical VM; with a slow threshold of 20 ms or more the coarse clock
 * (~7 ns, a few ms resolution) is precise enough to find slow calls, and the
 * sum of coarse differences over many calls still estimates total_us
 * without bias.  A threshold of 0 turns timing off. */
typedef struct {
    uint64_t slow_us;
    uint64_t t0;
    int coarse;
} op_timer;

#define COARSE_MIN_THRESHOLD_US 20000u

static inline op_timer op_begin(kvi_conn *c)
{
    op_timer t;
    kvi__clear_error();
    t.slow_us = atomic_load_explicit(&c->k->timed_us, memory_order_relaxed);
    t.coarse = t.slow_us >= COARSE_MIN_THRESHOLD_US;
    t.t0 = t.slow_us ? kvi__clock_us(t.coarse) : 0;
    return t;
}

static kvi_status op_end_slow(kvi_conn *c, op_timer t, const char *op, kvi_status st);

/* The end of every call: a call that is not timed and ends in OK or
 * NOT_FOUND (nearly all of them) is counted inline; the rest goes through
 * op_end_slow. */
static inline kvi_status op_end(kvi_conn *c, op_timer t, const char *op, kvi_status st)
{
    if (t.slow_us != 0 || (st != KVI_OK && st != KVI_NOT_FOUND))
        return op_end_slow(c, t, op, st);
    struct kvi__stat_stripe *s = my_stripe(c);
    bump(&s->ops, 1);
    if (st == KVI_NOT_FOUND)
        bump(&s->misses, 1);
    kvi__discard_error(); /* a failed internal retry is not this call's failure */
    return st;
}

static kvi_status op_end_slow(kvi_conn *c, op_timer t, const char *op, kvi_status st)
{
    struct kvi__stat_stripe *s = my_stripe(c);
    bump(&s->ops, 1);
    if ((unsigned)st >= KVI_STATUS_COUNT) {
        /* An engine must not invent codes; callers switch over the enum. */
        st = kvi_engine_error(c, KVI_E_INTERNAL, "%s: engine returned unknown status %d", op,
                              (int)st);
    }
    if (!KVI_STATUS_IS_ERROR(st))
        kvi__discard_error(); /* a failed internal retry is not this call's failure */
    if (st == KVI_NOT_FOUND) {
        bump(&s->misses, 1);
    } else if (KVI_STATUS_IS_ERROR(st)) {
        bump(&s->errors, 1);
        if (!kvi__error_is_set())
            kvi_engine_error(c, st, "%s: %s", op, kvi_strerror(st));
    }
    if (t.slow_us) {
        uint64_t dt = kvi__clock_us(t.coarse) - t.t0;
        bump(&s->total_us, dt);
        if (dt > t.slow_us) {
            bump(&s->slow_ops, 1);
            kvi_engine_log(c, KVI_LOG_WARN, "slow %s: %llu us (threshold %llu us)", op,
                           (unsigned long long)dt, (unsigned long long)t.slow_us);
        }
    }
    return st;
}

/* A call refused before the engine: counted and explained. */
static kvi_status reject(kvi_conn *c, kvi_status st, const char *op, const char *why)
{
    bump(&my_stripe(c)->rejected, 1);
    return kvi_engine_error(c, st, "%s: %s", op, why);
}

static kvi_status check_key(kvi_conn *c, const char *op, const void *key, size_t key_len)
{
    if (key == NULL)
        return reject(c, KVI_E_INVALID, op, "key is NULL");
    if (key_len == 0)
        return reject(c, KVI_E_INVALID, op, "key is empty (keys are 1..1024 bytes)");
    if (key_len > KVI_MAX_KEY_LEN)
        return reject(c, KVI_E_INVALID, op, "key is longer than 1024 bytes");
    return KVI_OK;
}

static kvi_status check_expire(kvi_conn *c, const char *op, int64_t expire_s)
{
    if (expire_s < 0)
        return reject(c, KVI_E_INVALID, op, "expire is negative");
    if (expire_s > KVI_MAX_EXPIRE_S)
        return reject(c, KVI_E_INVALID, op, "expire is larger than 2147483647 seconds");
    if (expire_s > 0 && !(c->caps & KVI_CAP_TTL))
        return reject(c, KVI_E_UNSUPPORTED, op, "this engine cannot expire keys");
    return KVI_OK;
}

static kvi_status check_cap(kvi_conn *c, const char *op, uint32_t cap, const char *what)
{
    if (c->caps & cap)
        return KVI_OK;
    bump(&my_stripe(c)->rejected, 1);
    return kvi_engine_error(c, KVI_E_UNSUPPORTED, "%s: engine '%s' has no %s", op, c->engine->name,
                            what);
}

/* ---- handle form ---------------------------------------------------------- */

/* The argument checks of store and store_nx. */
static kvi_status check_store(kvi_conn *c, const char *op, const void *key, size_t key_len,
                              const void *val, size_t val_len, int64_t expire_s)
{
    kvi_status st = check_key(c, op, key, key_len);
    if (st == KVI_OK && val == NULL && val_len > 0)
        st = reject(c, KVI_E_INVALID, op, "value is NULL");
    if (st == KVI_OK && val_len > c->max_value_len)
        st = reject(c, KVI_E_INVALID, op, "value is larger than the engine's limit");
    if (st == KVI_OK)
        st = check_expire(c, op, expire_s);
    return st;
}

kvi_status kvi_conn_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t expire_s)
{
    if (c == NULL)
        return KVI_E_INVALID;
    kvi_status st = check_store(c, "store", key, key_len, val, val_len, expire_s);
    if (st != KVI_OK)
        return st;
    op_timer t = op_begin(c);
    return op_end(c, t, "store",
                  c->engine->store(c, key, key_len, val ? val : "", val_len, expire_s));
}

kvi_status kvi_conn_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                             size_t val_len, int64_t expire_s)
{
    if (c == NULL)
        return KVI_E_INVALID;
    kvi_status st = check_cap(c, "store_nx", KVI_CAP_CONDITIONAL, "store-if-absent");
    if (st == KVI_OK)
        st = check_store(c, "store_nx", key, key_len, val, val_len, expire_s);
    if (st != KVI_OK)
        return st;
    op_timer t = op_begin(c);
    return op_end(c, t, "store_nx",
                  c->engine->store_nx(c, key, key_len, val ? val : "", val_len, expire_s));
}

kvi_status kvi_conn_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    /* A value still holding an earlier fetch is released, not leaked. */
    if (out != NULL && out->data != NULL)
        kvi_value_free(out);
    if (c == NULL)
        return KVI_E_INVALID;
    kvi_status st = check_key(c, "fetch", key, key_len);
    if (st == KVI_OK && out == NULL)
        st = reject(c, KVI_E_INVALID, "fetch", "output value is NULL");
    if (st != KVI_OK)
        return st;
    op_timer t = op_begin(c);
    st = c->engine->fetch(c, key, key_len, out);
    if (st == KVI_OK && out->data == NULL)
        st = kvi_value_set(c, out, "", 0);
    if (st != KVI_OK)
        kvi_value_free(out);
    return op_end(c, t, "fetch", st);
}

kvi_status kvi_conn_remove(kvi_conn *c, const void *key, size_t key_len)
{
    if (c == NULL)
        return KVI_E_INVALID;
    kvi_status st = check_key(c, "remove", key, key_len);
    if (st != KVI_OK)
        return st;
    op_timer t = op_begin(c);
    return op_end(c, t, "remove", c->engine->remove(c, key, key_len));
}

static kvi_status counter_op(kvi_conn *c, const char *op, const void *key, size_t key_len,
                             int64_t delta, int64_t expire_s, int64_t *new_value)
{
    if (new_value != NULL)
        *new_value = 0;
    if (c == NULL)
        return KVI_E_INVALID;
    kvi_status st = check_key(c, op, key, key_len);
    if (st == KVI_OK)
        st = check_cap(c, op, KVI_CAP_COUNTERS, "counters");
    if (st == KVI_OK)
        st = check_expire(c, op, expire_s);
    if (st == KVI_OK && delta == INT64_MIN && op[0] == 's')
        st = reject(c, KVI_E_INVALID, op, "delta -9223372036854775808 cannot be negated");
    if (st != KVI_OK)
        return st;
    int64_t v = 0;
    op_timer t = op_begin(c);
    st = c->engine->add(c, key, key_len, op[0] == 's' ? -delta : delta, expire_s, &v);
    if (st == KVI_OK && new_value != NULL)
        *new_value = v;
    return op_end(c, t, op, st);
}

kvi_status kvi_conn_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                        int64_t expire_s, int64_t *new_value)
{
    return counter_op(c, "add", key, key_len, delta, expire_s, new_value);
}

kvi_status kvi_conn_sub(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                        int64_t expire_s, int64_t *new_value)
{
    return counter_op(c, "sub", key, key_len, delta, expire_s, new_value);
}

/* The one wrapper of add_bounded and sub_bounded (op "add_bounded" or
 * "sub_bounded").  Refusals (KVI_OUT_OF_BOUNDS) are outcomes: counted as
 * operations, not errors, and *value gets the current value. */
static kvi_status bounded_op(kvi_conn *c, const char *op, const void *key, size_t key_len,
                             int64_t delta, int64_t expire_s, int64_t min, int64_t max,
                             int64_t *value)
{
    if (value != NULL)
        *value = 0;
    if (c == NULL)
        return KVI_E_INVALID;
    int sub = op[0] == 's';
    kvi_status st = check_key(c, op, key, key_len);
    if (st == KVI_OK)
        st = check_cap(c, op, KVI_CAP_CONDITIONAL, "bounded counters");
    if (st == KVI_OK)
        st = check_expire(c, op, expire_s);
    if (st == KVI_OK && min > max)
        st = reject(c, KVI_E_INVALID, op, "min is greater than max");
    if (st == KVI_OK && delta == INT64_MIN && sub)
        st = reject(c, KVI_E_INVALID, op, "delta -9223372036854775808 cannot be negated");
    if (st != KVI_OK)
        return st;
    int64_t v = 0;
    op_timer t = op_begin(c);
    st = c->engine->add_bounded(c, key, key_len, sub ? -delta : delta, expire_s, min, max, &v);
    if ((st == KVI_OK || st == KVI_OUT_OF_BOUNDS) && value != NULL)
        *value = v;
    return op_end(c, t, op, st);
}

kvi_status kvi_conn_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    return bounded_op(c, "add_bounded", key, key_len, delta, expire_s, min, max, value);
}

kvi_status kvi_conn_sub_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    return bounded_op(c, "sub_bounded", key, key_len, delta, expire_s, min, max, value);
}

typedef kvi_status (*int_slot)(kvi_conn *c, const void *key, size_t key_len, int64_t *out);

/* A keyed read of one integer (counter_fetch, ttl): checks, the capability
 * cap, and *out written only on success. */
static kvi_status int_read_op(kvi_conn *c, const char *op, uint32_t cap, const char *what,
                              const void *key, size_t key_len, int64_t *out)
{
    if (out != NULL)
        *out = 0;
    if (c == NULL)
        return KVI_E_INVALID;
    kvi_status st = check_key(c, op, key, key_len);
    if (st == KVI_OK && out == NULL)
        st = reject(c, KVI_E_INVALID, op, "output is NULL");
    if (st == KVI_OK)
        st = check_cap(c, op, cap, what);
    if (st != KVI_OK)
        return st;
    int_slot slot = cap == KVI_CAP_TTL ? c->engine->ttl : c->engine->counter_fetch;
    int64_t v = 0;
    op_timer t = op_begin(c);
    st = slot(c, key, key_len, &v);
    if (st == KVI_OK)
        *out = v;
    return op_end(c, t, op, st);
}

kvi_status kvi_conn_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out)
{
    return int_read_op(c, "counter_fetch", KVI_CAP_COUNTERS, "counters", key, key_len, out);
}

/* Runs a reply-returning slot and empties *out unless it succeeded. */
static kvi_status reply_end(kvi_conn *c, op_timer t, const char *op, kvi_status st, kvi_reply *r,
                            kvi_reply **out)
{
    if (st == KVI_OK && r == NULL)
        st = kvi_engine_error(c, KVI_E_INTERNAL, "%s: engine returned no reply", op);
    if (st == KVI_OK)
        *out = r;
    else
        kvi_reply_free(r);
    return op_end(c, t, op, st);
}

/* The checks before a reply-returning slot: *out emptied, then
 * KVI_E_INVALID for no handle, no output or the argument problem bad (NULL
 * for none), then the capability cap. */
static kvi_status reply_begin(kvi_conn *c, const char *op, kvi_reply **out, const char *bad,
                              uint32_t cap, const char *what)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return KVI_E_INVALID;
    if (out == NULL)
        return reject(c, KVI_E_INVALID, op, "output is NULL");
    if (bad != NULL)
        return reject(c, KVI_E_INVALID, op, bad);
    return check_cap(c, op, cap, what);
}

kvi_status kvi_conn_raw_query(kvi_conn *c, const char *query, size_t query_len, kvi_reply **out)
{
    const char *bad = NULL;
    if (query == NULL || query_len == 0)
        bad = "query is empty";
    else if (query_len > KVI_MAX_QUERY_LEN)
        bad = "query is longer than 1 MiB";
    kvi_status st = reply_begin(c, "raw_query", out, bad, KVI_CAP_RAW_QUERY, "raw query language");
    if (st != KVI_OK)
        return st;
    kvi_reply *r = NULL;
    op_timer t = op_begin(c);
    st = c->engine->raw_query(c, query, query_len, &r);
    return reply_end(c, t, "raw_query", st, r, out);
}

kvi_status kvi_conn_keys(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out)
{
    const char *bad = NULL;
    if (glob == NULL && glob_len > 0)
        bad = "glob is NULL";
    else if (glob_len > GLOB_MAX_LEN)
        bad = "glob is longer than 4096 bytes";
    kvi_status st = reply_begin(c, "keys", out, bad, KVI_CAP_ITERATE, "key listing");
    if (st != KVI_OK)
        return st;
    if (glob == NULL || glob_len == 0) {
        glob = "*";
        glob_len = 1;
    }
    kvi_reply *r = NULL;
    op_timer t = op_begin(c);
    st = c->engine->keys(c, glob, glob_len, &r);
    return reply_end(c, t, "keys", st, r, out);
}

kvi_status kvi_conn_remove_chunk(kvi_conn *c, const char *glob, size_t glob_len, uint64_t *removed)
{
    if (removed != NULL)
        *removed = 0;
    if (c == NULL)
        return KVI_E_INVALID;
    kvi_status st = KVI_OK;
    if (glob == NULL || glob_len == 0)
        st = reject(c, KVI_E_INVALID, "remove_chunk", "glob is empty (use \"*\" to remove all)");
    else if (glob_len > GLOB_MAX_LEN)
        st = reject(c, KVI_E_INVALID, "remove_chunk", "glob is longer than 4096 bytes");
    if (st == KVI_OK)
        st = check_cap(c, "remove_chunk", KVI_CAP_ITERATE, "key listing");
    if (st != KVI_OK)
        return st;
    uint64_t n = 0;
    op_timer t = op_begin(c);
    st = c->engine->remove_chunk(c, glob, glob_len, &n);
    if (st == KVI_OK && removed != NULL)
        *removed = n;
    return op_end(c, t, "remove_chunk", st);
}

kvi_status kvi_conn_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
{
    return int_read_op(c, "ttl", KVI_CAP_TTL, "expiry", key, key_len, ttl_s);
}

kvi_status kvi_conn_ping(kvi_conn *c)
{
    if (c == NULL)
        return KVI_E_INVALID;
    op_timer t = op_begin(c);
    return op_end(c, t, "ping", c->engine->ping ? c->engine->ping(c) : KVI_OK);
}

kvi_status kvi_conn_stats(kvi_conn *c, kvi_stats *out)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (c == NULL || out == NULL)
        return KVI_E_INVALID;
    for (unsigned i = 0; i < KVI__STAT_STRIPES; i++) {
        const struct kvi__stat_stripe *s = &c->stats[i];
        out->ops += atomic_load_explicit(&s->ops, memory_order_relaxed);
        out->errors += atomic_load_explicit(&s->errors, memory_order_relaxed);
        out->misses += atomic_load_explicit(&s->misses, memory_order_relaxed);
        out->slow_ops += atomic_load_explicit(&s->slow_ops, memory_order_relaxed);
        out->rejected += atomic_load_explicit(&s->rejected, memory_order_relaxed);
        out->total_us += atomic_load_explicit(&s->total_us, memory_order_relaxed);
    }
    if (c->engine->stats != NULL) {
        kvi__clear_error();
        kvi_status st = c->engine->stats(c, out);
        if (st != KVI_OK) {
            memset(out, 0, sizeof *out);
            if (!kvi__error_is_set())
                kvi_engine_error(c, st, "stats: %s", kvi_strerror(st));
            return st;
        }
    }
    return KVI_OK;
}

/* ---- engine-id form ---------------------------------------------------- */

/* Looks up id; on failure *out-style outputs are already zeroed by callers. */
#define WITH_CONN(k, id, call)                                                                     \
    do {                                                                                           \
        kvi_conn *c_;                                                                              \
        kvi_status st_ = kvi_conn_get((k), (id), &c_);                                             \
        if (st_ != KVI_OK)                                                                         \
            return st_;                                                                            \
        return call;                                                                               \
    } while (0)

kvi_status kvi_store(kvi *k, const char *id, const void *key, size_t key_len, const void *val,
                     size_t val_len, int64_t expire_s)
{
    WITH_CONN(k, id, kvi_conn_store(c_, key, key_len, val, val_len, expire_s));
}

kvi_status kvi_fetch(kvi *k, const char *id, const void *key, size_t key_len, kvi_value *out)
{
    kvi_value_free(out);
    WITH_CONN(k, id, kvi_conn_fetch(c_, key, key_len, out));
}

kvi_status kvi_remove(kvi *k, const char *id, const void *key, size_t key_len)
{
    WITH_CONN(k, id, kvi_conn_remove(c_, key, key_len));
}

kvi_status kvi_add(kvi *k, const char *id, const void *key, size_t key_len, int64_t delta,
                   int64_t expire_s, int64_t *new_value)
{
    if (new_value != NULL)
        *new_value = 0;
    WITH_CONN(k, id, kvi_conn_add(c_, key, key_len, delta, expire_s, new_value));
}

kvi_status kvi_sub(kvi *k, const char *id, const void *key, size_t key_len, int64_t delta,
                   int64_t expire_s, int64_t *new_value)
{
    if (new_value != NULL)
        *new_value = 0;
    WITH_CONN(k, id, kvi_conn_sub(c_, key, key_len, delta, expire_s, new_value));
}

kvi_status kvi_add_bounded(kvi *k, const char *id, const void *key, size_t key_len, int64_t delta,
                           int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    if (value != NULL)
        *value = 0;
    WITH_CONN(k, id, kvi_conn_add_bounded(c_, key, key_len, delta, expire_s, min, max, value));
}

kvi_status kvi_sub_bounded(kvi *k, const char *id, const void *key, size_t key_len, int64_t delta,
                           int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    if (value != NULL)
        *value = 0;
    WITH_CONN(k, id, kvi_conn_sub_bounded(c_, key, key_len, delta, expire_s, min, max, value));
}

kvi_status kvi_store_nx(kvi *k, const char *id, const void *key, size_t key_len, const void *val,
                        size_t val_len, int64_t expire_s)
{
    WITH_CONN(k, id, kvi_conn_store_nx(c_, key, key_len, val, val_len, expire_s));
}

kvi_status kvi_counter_fetch(kvi *k, const char *id, const void *key, size_t key_len, int64_t *out)
{
    if (out != NULL)
        *out = 0;
    WITH_CONN(k, id, kvi_conn_counter_fetch(c_, key, key_len, out));
}

kvi_status kvi_raw_query(kvi *k, const char *id, const char *query, size_t query_len,
                         kvi_reply **out)
{
    if (out != NULL)
        *out = NULL;
    WITH_CONN(k, id, kvi_conn_raw_query(c_, query, query_len, out));
}

kvi_status kvi_keys(kvi *k, const char *id, const char *glob, size_t glob_len, kvi_reply **out)
{
    if (out != NULL)
        *out = NULL;
    WITH_CONN(k, id, kvi_conn_keys(c_, glob, glob_len, out));
}

kvi_status kvi_remove_chunk(kvi *k, const char *id, const char *glob, size_t glob_len,
                            uint64_t *removed)
{
    if (removed != NULL)
        *removed = 0;
    WITH_CONN(k, id, kvi_conn_remove_chunk(c_, glob, glob_len, removed));
}

kvi_status kvi_ttl(kvi *k, const char *id, const void *key, size_t key_len, int64_t *ttl_s)
{
    if (ttl_s != NULL)
        *ttl_s = 0;
    WITH_CONN(k, id, kvi_conn_ttl(c_, key, key_len, ttl_s));
}

kvi_status kvi_ping(kvi *k, const char *id)
{
    WITH_CONN(k, id, kvi_conn_ping(c_));
}

kvi_status kvi_stats_get(kvi *k, const char *id, kvi_stats *out)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    WITH_CONN(k, id, kvi_conn_stats(c_, out));
}

/* ---- batches (batch.c) -------------------------------------------------- */

/* The checks of the single call of kind, for one operation of a batch. */
kvi_status kvi__op_check(kvi_conn *c, kvi_op_kind kind, const kvi_batch_op *op)
{
    static const char *const names[] = {
        [KVI_OP_STORE] = "store",
        [KVI_OP_STORE_NX] = "store_nx",
        [KVI_OP_FETCH] = "fetch",
        [KVI_OP_REMOVE] = "remove",
        [KVI_OP_ADD] = "add",
        [KVI_OP_SUB] = "sub",
        [KVI_OP_ADD_BOUNDED] = "add_bounded",
        [KVI_OP_SUB_BOUNDED] = "sub_bounded",
        [KVI_OP_COUNTER_FETCH] = "counter_fetch",
        [KVI_OP_RAW_QUERY] = "raw_query",
    };
    const char *name = names[kind];
    kvi_status st = KVI_OK;
    switch (kind) {
    case KVI_OP_STORE_NX:
        st = check_cap(c, name, KVI_CAP_CONDITIONAL, "store-if-absent");
        /* fall through */
    case KVI_OP_STORE:
        if (st == KVI_OK)
            st = check_store(c, name, op->key, op->key_len, op->val, op->val_len, op->expire_s);
        return st;
    case KVI_OP_FETCH:
    case KVI_OP_REMOVE:
        return check_key(c, name, op->key, op->key_len);
    case KVI_OP_ADD:
    case KVI_OP_SUB:
    case KVI_OP_ADD_BOUNDED:
    case KVI_OP_SUB_BOUNDED: {
        int bounded = kind == KVI_OP_ADD_BOUNDED || kind == KVI_OP_SUB_BOUNDED;
        st = check_key(c, name, op->key, op->key_len);
        if (st == KVI_OK)
            st = bounded ? check_cap(c, name, KVI_CAP_CONDITIONAL, "bounded counters")
                         : check_cap(c, name, KVI_CAP_COUNTERS, "counters");
        if (st == KVI_OK)
            st = check_expire(c, name, op->expire_s);
        if (st == KVI_OK && bounded && op->min > op->max)
            st = reject(c, KVI_E_INVALID, name, "min is greater than max");
        if (st == KVI_OK && op->delta == INT64_MIN &&
            (kind == KVI_OP_SUB || kind == KVI_OP_SUB_BOUNDED))
            st = reject(c, KVI_E_INVALID, name, "delta -9223372036854775808 cannot be negated");
        return st;
    }
    case KVI_OP_COUNTER_FETCH:
        st = check_key(c, name, op->key, op->key_len);
        return st == KVI_OK ? check_cap(c, name, KVI_CAP_COUNTERS, "counters") : st;
    case KVI_OP_RAW_QUERY:
        if (op->val == NULL || op->val_len == 0)
            return reject(c, KVI_E_INVALID, name, "query is empty");
        if (op->val_len > KVI_MAX_QUERY_LEN)
            return reject(c, KVI_E_INVALID, name, "query is longer than 1 MiB");
        return check_cap(c, name, KVI_CAP_RAW_QUERY, "raw query language");
    }
    return kvi_engine_error(c, KVI_E_INVALID, "batch: unknown operation kind %d", (int)kind);
}

/* Start of a batch's timing on c: 0 when timing is off. */
uint64_t kvi__op_batch_begin(kvi_conn *c, int *coarse)
{
    uint64_t slow_us = atomic_load_explicit(&c->k->timed_us, memory_order_relaxed);
    *coarse = slow_us >= COARSE_MIN_THRESHOLD_US;
    return slow_us ? kvi__clock_us(*coarse) : 0;
}

/* Counts the n ended ops of one batch on c (ops, of them errors and
 * misses) and its time (one slow batch counts once, with its size in the
 * log line). */
void kvi__op_batch_end(kvi_conn *c, uint64_t t0, int coarse, size_t n, size_t misses, size_t errors)
{
    struct kvi__stat_stripe *s = my_stripe(c);
    bump(&s->ops, n);
    if (errors)
        bump(&s->errors, errors);
    if (misses)
        bump(&s->misses, misses);
    uint64_t slow_us = atomic_load_explicit(&c->k->timed_us, memory_order_relaxed);
    if (t0 != 0 && slow_us != 0) {
        uint64_t dt = kvi__clock_us(coarse) - t0;
        bump(&s->total_us, dt);
        if (dt > slow_us) {
            bump(&s->slow_ops, 1);
            kvi_engine_log(c, KVI_LOG_WARN,
                           "slow batch of %zu operations: %llu us (threshold %llu us)", n,
                           (unsigned long long)dt, (unsigned long long)slow_us);
        }
    }
}
