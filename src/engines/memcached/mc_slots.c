/*
 * mc_slots.c -- the memcached engine's operations.  The contract's parts
 * that memcached lacks (keys of any bytes, signed counters, add/sub that keep
 * the expiry, ttl) come from mc_envelope.h and the CAS loop in
 * kvi__mc_add(); docs/engines/memcached.md explains the design.
 */
#include <string.h>

#include "mc_engine.h"

/* A keyed operation's memcached name and leased handle (mc_begin). */
struct mc_op {
    struct mc_key k;
    struct mc_lease l;
};

/* The start of every keyed operation: the key's memcached name, a leased
 * handle, and the breaker of the key's server (a server marked down fails
 * the call at once).  End it with mc_end(). */
static kvi_status mc_begin(kvi_conn *c, struct mc_key *k, const void *key, size_t key_len,
                           struct mc_lease *l)
{
    kvi_status st = kvi__mc_key_init(c, k, key, key_len);
    if (st == KVI_OK)
        st = kvi__mc_acquire(c, l);
    if (st != KVI_OK)
        return st;
    const struct mc_conn *m = kvi_conn_priv(c);
    l->server = kvi__mc_server_of(m, l->mc, k->mkey, k->mkey_len);
    l->probe = 0;
    if (l->server == NULL)
        return KVI_OK;
    st = kvi_breaker_enter(c, l->server->breaker, l->server->name, &l->probe);
    if (st != KVI_OK)
        kvi__mc_release(c, l, KVI_OK); /* no I/O happened */
    return st;
}

/* The end of a keyed operation begun with mc_begin(): st is its outcome
 * (NOT_FOUND, OUT_OF_BOUNDS and KEY_EXISTS are answers of the server). */
static void mc_end(kvi_conn *c, struct mc_lease *l, kvi_status st)
{
    if (l->server != NULL)
        kvi_breaker_leave(c, l->server->breaker, l->server->name, l->probe, st);
    int answer = st == KVI_NOT_FOUND || st == KVI_OUT_OF_BOUNDS || st == KVI_KEY_EXISTS;
    kvi__mc_release(c, l, answer ? KVI_OK : st);
}

/* One SET, sent again once after a broken connection. */
static kvi_status mc_set(kvi_conn *c, const struct mc_key *k, const struct mc_lease *l,
                         const void *val, size_t val_len, int64_t expire_s)
{
    uint32_t flags;
    int64_t exptime;
    kvi__mc_new_expiry(kvi__mc_now_ms(), expire_s, &flags, &exptime);
    memcached_return_t rc = kvi__mc_write(c, l->mc, k, MC_SET, val, val_len, exptime, flags, 0);
    kvi_status st = rc == MEMCACHED_SUCCESS ? KVI_OK : kvi__mc_fail(c, l->mc, rc, "store");
    if (kvi__mc_retry_once(c, l->mc, st)) {
        rc = kvi__mc_write(c, l->mc, k, MC_SET, val, val_len, exptime, flags, 0);
        st = rc == MEMCACHED_SUCCESS ? KVI_OK : kvi__mc_fail(c, l->mc, rc, "store");
    }
    return st;
}

/* Reads the live item of key on a leased handle and hands it to use()
 * (KVI_NOT_FOUND when there is none): the common part of fetch,
 * counter_fetch and ttl. */
typedef kvi_status (*mc_use_fn)(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                                int64_t now_ms, void *out);

static kvi_status mc_read_live(kvi_conn *c, const void *key, size_t key_len, const char *op,
                               mc_use_fn use, void *out)
{
    struct mc_op o;
    kvi_status st = mc_begin(c, &o.k, key, key_len, &o.l);
    if (st != KVI_OK)
        return st;
    struct mc_item it;
    int64_t now_ms = kvi__mc_now_ms();
    st = kvi__mc_read(c, o.l.mc, &o.k, NULL, &it, now_ms, op);
    if (st == KVI_OK && !it.live)
        st = KVI_NOT_FOUND;
    if (st == KVI_OK)
        st = use(c, &o.k, &it, now_ms, out);
    kvi__mc_item_free(&it);
    mc_end(c, &o.l, st);
    return st;
}

static kvi_status use_value(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                            int64_t now_ms, void *out)
{
    (void)k, (void)now_ms;
    return kvi_value_set(c, out, it->data, it->len);
}

kvi_status kvi__mc_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    return mc_read_live(c, key, key_len, "fetch", use_value, out);
}

/* memcached holds an item up to 3 s past its stamp (see
 * kvi__mc_server_exptime), and kvi treats it as missing from the stamp on:
 * remove reads the item first, so that removing an expired key is
 * NOT_FOUND as on every engine (one round trip more than a bare delete). */
kvi_status kvi__mc_remove(kvi_conn *c, const void *key, size_t key_len)
{
    struct mc_op o;
    kvi_status st = mc_begin(c, &o.k, key, key_len, &o.l);
    if (st != KVI_OK)
        return st;
    struct mc_item it;
    st = kvi__mc_read(c, o.l.mc, &o.k, NULL, &it, kvi__mc_now_ms(), "remove");
    if (st == KVI_OK && !it.present)
        st = KVI_NOT_FOUND;
    for (int attempt = 0; st == KVI_OK; attempt++) {
        memcached_return_t rc = memcached_delete(o.l.mc, o.k.mkey, o.k.mkey_len, 0);
        if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_DELETED)
            st = it.live ? KVI_OK : KVI_NOT_FOUND;
        else if (rc == MEMCACHED_NOTFOUND)
            st = KVI_NOT_FOUND;
        else
            st = kvi__mc_fail(c, o.l.mc, rc, "remove");
        if (attempt > 0 || !kvi__mc_retry_once(c, o.l.mc, st))
            break;
        st = KVI_OK;
    }
    kvi__mc_item_free(&it);
    mc_end(c, &o.l, st);
    return st;
}

/* The end of a CAS loop that kept losing to other writers. */
static kvi_status mc_gave_up(kvi_conn *c, const char *op)
{
    return kvi_engine_error_in(c, KVI_E_BACKEND, op,
                               "gave up after %d conflicting concurrent updates", MC_CAS_MAX_TRIES);
}

/* The bounds of a counter update; plain add/sub have the whole int64 range. */
struct mc_bounds {
    int64_t min, max;
    const char *op; /* "add" or "add_bounded", for messages */
};

/* One attempt of add: KVI_OK with *done = 1 when written, *done = 0 when
 * another client changed the item meanwhile (try again);
 * KVI_OUT_OF_BOUNDS (nothing written, *value = the current value, 0 when
 * missing) when the result would leave b. */
static kvi_status mc_add_once(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                              memcached_result_st *res, int64_t delta, int64_t expire_s,
                              const struct mc_bounds *b, int64_t *value, int *done)
{
    *done = 0;
    int64_t now_ms = kvi__mc_now_ms();
    struct mc_item it;
    kvi_status st = kvi__mc_read(c, mc, k, res, &it, now_ms, b->op);
    if (st != KVI_OK)
        return st;

    int64_t old = 0, next = delta;
    enum mc_write_mode mode;
    uint32_t flags;
    int64_t exptime;
    if (!it.live) {
        /* Missing (ADD: exactly one creator wins) or past its recorded
         * expiry while the server still holds it (CAS: replaced once). */
        mode = it.present ? MC_CAS : MC_ADD;
        kvi__mc_new_expiry(now_ms, expire_s, &flags, &exptime);
    } else {
        if (!kvi_parse_int64(it.data, it.len, &old))
            return kvi_engine_error_in(c, KVI_E_NOT_A_COUNTER, b->op,
                                       "value of '%s' is not an integer", k->mkey);
        if (__builtin_add_overflow(old, delta, &next))
            return kvi_engine_error_in(c, KVI_E_OVERFLOW, b->op,
                                       "%lld + %lld does not fit in int64", (long long)old,
                                       (long long)delta);
        /* Fixed window: keep the recorded expiry (flags unchanged) and send
         * the time left of it. */
        mode = MC_CAS;
        flags = it.flags;
        exptime = it.expiry_s ? kvi__mc_server_exptime(it.expiry_s, now_ms) : 0;
    }
    if (next < b->min || next > b->max) {
        /* Refused on the value read with this CAS: nothing is written, so
         * the refusal is as atomic as the update would have been. */
        *value = old;
        return KVI_OUT_OF_BOUNDS;
    }
    char text[24];
    size_t text_len = kvi_format_int64(next, text);
    memcached_return_t rc = kvi__mc_write(c, mc, k, mode, text, text_len, exptime, flags, it.cas);
    switch (rc) {
    case MEMCACHED_SUCCESS:
    case MEMCACHED_STORED:
        *done = 1;
        *value = next;
        return KVI_OK;
    case MEMCACHED_DATA_EXISTS: /* CAS lost, or ADD found a key (binary) */
    case MEMCACHED_NOTSTORED:   /* ADD found a key */
    case MEMCACHED_NOTFOUND:    /* removed between read and CAS */
        return KVI_OK;
    default:
        return kvi__mc_fail(c, mc, rc, b->op);
    }
}

/* The CAS loop of add, sub and their bounded forms. */
static kvi_status mc_add_loop(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                              int64_t expire_s, const struct mc_bounds *b, int64_t *out)
{
    struct mc_op o;
    kvi_status st = mc_begin(c, &o.k, key, key_len, &o.l);
    if (st != KVI_OK)
        return st;
    memcached_result_st res;
    memcached_result_create(o.l.mc, &res);
    int done = 0;
    int64_t value = 0;
    for (int tries = 0; st == KVI_OK && !done; tries++) {
        if (tries == MC_CAS_MAX_TRIES) {
            st = mc_gave_up(c, b->op);
            break;
        }
        st = mc_add_once(c, o.l.mc, &o.k, &res, delta, expire_s, b, &value, &done);
    }
    memcached_result_free(&res);
    mc_end(c, &o.l, st);
    if ((st == KVI_OK || st == KVI_OUT_OF_BOUNDS) && out != NULL)
        *out = value;
    return st;
}

kvi_status kvi__mc_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                       int64_t expire_s, int64_t *new_value)
{
    static const struct mc_bounds any = {INT64_MIN, INT64_MAX, "add"};
    return mc_add_loop(c, key, key_len, delta, expire_s, &any, new_value);
}

kvi_status kvi__mc_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                               int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    const struct mc_bounds b = {min, max, "add_bounded"};
    return mc_add_loop(c, key, key_len, delta, expire_s, &b, value);
}

/* memcached's add command stores only where the server holds no item; an
 * item past its stamp that the server still holds is absent for kvi and is
 * replaced with CAS (one racer wins, the others see the winner's item). */
static kvi_status mc_set_nx(kvi_conn *c, const struct mc_key *k, const struct mc_lease *l,
                            const void *val, size_t val_len, int64_t expire_s)
{
    kvi_status st = KVI_OK;
    memcached_result_st res;
    memcached_result_create(l->mc, &res);
    struct mc_item it;
    memset(&it, 0, sizeof it);
    for (int tries = 0;; tries++) {
        if (tries == MC_CAS_MAX_TRIES) {
            st = mc_gave_up(c, "store_nx");
            break;
        }
        int64_t now_ms = kvi__mc_now_ms();
        uint32_t flags;
        int64_t exptime;
        kvi__mc_new_expiry(now_ms, expire_s, &flags, &exptime);
        enum mc_write_mode mode = it.present ? MC_CAS : MC_ADD;
        memcached_return_t rc =
            kvi__mc_write(c, l->mc, k, mode, val, val_len, exptime, flags, it.cas);
        if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED) {
            st = KVI_OK;
            break;
        }
        if (rc != MEMCACHED_DATA_EXISTS && rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_NOTFOUND) {
            st = kvi__mc_fail(c, l->mc, rc, "store_nx");
            if (tries == 0 && mode == MC_ADD && kvi__mc_retry_once(c, l->mc, st))
                continue;
            break;
        }
        /* The server holds an item (or lost the one we read): live means
         * the key exists; expired means replace it with its CAS. */
        st = kvi__mc_read(c, l->mc, k, &res, &it, kvi__mc_now_ms(), "store_nx");
        if (st == KVI_OK && it.live)
            st = KVI_KEY_EXISTS;
        if (st != KVI_OK)
            break;
    }
    memcached_result_free(&res);
    return st;
}

/* The one bracket of store and store_nx (mc_begin .. mc_end). */
static kvi_status mc_put(kvi_conn *c, const void *key, size_t key_len, const void *val,
                         size_t val_len, int64_t expire_s, int nx)
{
    struct mc_op o;
    kvi_status st = mc_begin(c, &o.k, key, key_len, &o.l);
    if (st != KVI_OK)
        return st;
    if (nx)
        st = mc_set_nx(c, &o.k, &o.l, val, val_len, expire_s);
    else
        st = mc_set(c, &o.k, &o.l, val, val_len, expire_s);
    mc_end(c, &o.l, st);
    return st;
}

kvi_status kvi__mc_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                         size_t val_len, int64_t expire_s)
{
    return mc_put(c, key, key_len, val, val_len, expire_s, 0);
}

kvi_status kvi__mc_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s)
{
    return mc_put(c, key, key_len, val, val_len, expire_s, 1);
}

static kvi_status use_counter(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                              int64_t now_ms, void *out)
{
    (void)now_ms;
    if (!kvi_parse_int64(it->data, it->len, out))
        return kvi_engine_error(c, KVI_E_NOT_A_COUNTER,
                                "counter_fetch: value of '%s' is not an integer", k->mkey);
    return KVI_OK;
}

kvi_status kvi__mc_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out)
{
    return mc_read_live(c, key, key_len, "counter_fetch", use_counter, out);
}

static kvi_status use_ttl(kvi_conn *c, const struct mc_key *k, const struct mc_item *it,
                          int64_t now_ms, void *out)
{
    (void)c, (void)k;
    /* Whole seconds the item is sure to live (rounded down): never more
     * than it has. */
    *(int64_t *)out = it->expiry_s == 0 ? -1 : (it->expiry_s * 1000 - now_ms) / 1000;
    return KVI_OK;
}

kvi_status kvi__mc_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
{
    return mc_read_live(c, key, key_len, "ttl", use_ttl, ttl_s);
}

kvi_status kvi__mc_ping(kvi_conn *c)
{
    struct mc_lease l;
    kvi_status st = kvi__mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    /* STAT goes to every server of the pool: all must answer (not
     * VERSION: see kvi__mc_stat_all()). */
    uint32_t up;
    memcached_return_t rc = kvi__mc_stat_all(c, l.mc, &up, 0);
    st = rc == MEMCACHED_SUCCESS ? KVI_OK : kvi__mc_fail(c, l.mc, rc, "ping");
    if (kvi__mc_retry_once(c, l.mc, st)) {
        rc = kvi__mc_stat_all(c, l.mc, &up, 0);
        st = rc == MEMCACHED_SUCCESS ? KVI_OK : kvi__mc_fail(c, l.mc, rc, "ping");
    }
    kvi__mc_release(c, &l, st);
    return st;
}

kvi_status kvi__mc_stats(kvi_conn *c, kvi_stats *out)
{
    struct mc_lease l;
    kvi_status st = kvi__mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    memcached_return_t rc;
    memcached_stat_st *s = memcached_stat(l.mc, NULL, &rc);
    if (s != NULL && rc == MEMCACHED_SUCCESS) {
        uint32_t n = memcached_server_count(l.mc);
        for (uint32_t i = 0; i < n; i++) {
            out->entries += s[i].curr_items;
            out->bytes += s[i].bytes;
            out->hits += s[i].get_hits;
            out->evicted += s[i].evictions;
        }
        out->has_content = 1;
    } else {
        /* The core's own counters are still worth reporting while a server
         * is down; the content figures are then left out. */
        kvi_engine_log(c, KVI_LOG_DEBUG, "stats: %s", memcached_strerror(l.mc, rc));
    }
    if (s != NULL)
        memcached_stat_free(NULL, s);
    kvi__mc_release(c, &l, KVI_OK);
    return KVI_OK;
}
