/*
 * mc_batch.c -- the memcached engine's batch slot (engine ABI 3).
 *
 * Runs of consecutive fetches become one multi-get (memcached_mget, one
 * round trip per server of the pool); each reply is decoded as a single
 * fetch would (envelope of a mapped key, expiry stamp).  Every other op
 * runs through its single slot, in its place, so that ops on one key keep
 * their order: stores, removes and counters keep the contract that
 * memcached gives only through reads before writes and CAS loops (signed
 * counters, expiry kept, no lost update), which a blind pipeline cannot.
 * The batch's deadline bounds each multi-get (the handle's poll timeout)
 * and is checked before every op; an op not started by then is
 * KVI_E_TIMEOUT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_engine.h"

/* One fetch of a multi-get. */
struct mg_ent {
    struct mc_key k;
    kvi_batch_op *op;
    struct mc_server *server;
};

static int ent_cmp(const void *a, const void *b)
{
    const struct mg_ent *x = *(const struct mg_ent *const *)a;
    const struct mg_ent *y = *(const struct mg_ent *const *)b;
    size_t n = x->k.mkey_len < y->k.mkey_len ? x->k.mkey_len : y->k.mkey_len;
    int r = memcmp(x->k.mkey, y->k.mkey, n);
    if (r != 0)
        return r;
    return x->k.mkey_len < y->k.mkey_len ? -1 : x->k.mkey_len > y->k.mkey_len;
}

/* The first of the sorted entries whose memcached key is key, or n. */
static size_t ent_find(struct mg_ent *const *sorted, size_t n, const char *key, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct mc_key *k = &sorted[mid]->k;
        size_t m = k->mkey_len < len ? k->mkey_len : len;
        int r = memcmp(k->mkey, key, m);
        if (r == 0)
            r = k->mkey_len < len ? -1 : k->mkey_len > len;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void end_timeout(kvi_conn *c, kvi_batch_op *op)
{
    kvi_batch_op_done(c, op,
                      kvi_engine_error(c, KVI_E_TIMEOUT,
                                       "the batch's deadline passed before this operation was "
                                       "sent"));
}

/* The calling thread's detail message without its "id: " prefix (the
 * kvi_engine_error that reuses it puts it back). */
static void copy_msg(kvi_conn *c, char *buf, size_t len)
{
    const char *m = kvi_errmsg(kvi_conn_context(c));
    size_t idl = strlen(kvi_conn_id(c));
    if (strncmp(m, kvi_conn_id(c), idl) == 0 && m[idl] == ':' && m[idl + 1] == ' ')
        m += idl + 2;
    snprintf(buf, len, "%s", m);
}

/* Ends the op of one multi-get reply r (a single fetch's outcome). */
static void end_with_result(kvi_conn *c, struct mg_ent *e, memcached_result_st *r, int64_t now_ms)
{
    struct mc_item it;
    kvi_status st = kvi__mc_item_of_result(c, &e->k, r, &it, now_ms, "fetch");
    if (st == KVI_OK && !it.live)
        st = KVI_NOT_FOUND;
    if (st == KVI_OK) {
        /* In the batch's memory: no allocation per value. */
        char *p = kvi_batch_op_value_alloc(c, e->op, it.len);
        if (p == NULL)
            st = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        else if (it.len > 0)
            memcpy(p, it.data, it.len);
    }
    kvi_batch_op_done(c, e->op, st);
}

/* A server of the pool in one multi-get: its breaker entered once (1), or
 * refused (-1: marked down, with the refusal's status and message). */
struct mg_server_use {
    int entered;
    int probe;
    kvi_status st;
    char msg[256];
};

/* One multi-get of the fetches ops[0..n) (n >= 2). */
static void mget_run(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    struct mc_conn *m = kvi_conn_priv(c);
    struct mg_ent *ents = kvi_engine_malloc(c, n * sizeof *ents);
    struct mg_ent **sorted = kvi_engine_malloc(c, n * sizeof *sorted);
    const char **keys = kvi_engine_malloc(c, n * sizeof *keys);
    size_t *lens = kvi_engine_malloc(c, n * sizeof *lens);
    struct mg_server_use *use = kvi_engine_malloc(c, (m->nservers + 1) * sizeof *use);
    struct mc_lease l;
    memset(&l, 0, sizeof l);
    kvi_status st = KVI_OK;
    size_t cnt = 0;
    if (ents == NULL || sorted == NULL || keys == NULL || lens == NULL || use == NULL) {
        for (size_t i = 0; i < n; i++)
            kvi_batch_op_done(c, ops[i], kvi_engine_error(c, KVI_E_NOMEM, "out of memory"));
        goto out;
    }
    memset(use, 0, (m->nservers + 1) * sizeof *use);
    st = kvi__mc_acquire(c, &l);
    if (st != KVI_OK) {
        char msg[400];
        copy_msg(c, msg, sizeof msg);
        for (size_t i = 0; i < n; i++)
            kvi_batch_op_done(c, ops[i], kvi_engine_error(c, st, "%s", msg));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct mg_ent *e = &ents[cnt];
        e->op = ops[i];
        kvi_status ks = kvi__mc_key_init(c, &e->k, ops[i]->key, ops[i]->key_len);
        if (ks != KVI_OK) {
            kvi_batch_op_done(c, ops[i], ks);
            continue;
        }
        e->server = kvi__mc_server_of(m, l.mc, e->k.mkey, e->k.mkey_len);
        if (e->server != NULL) {
            struct mg_server_use *u = &use[e->server - m->servers];
            if (!u->entered) {
                u->st = kvi_breaker_enter(c, e->server->breaker, e->server->name, &u->probe);
                u->entered = u->st == KVI_OK ? 1 : -1;
                if (u->st != KVI_OK)
                    copy_msg(c, u->msg, sizeof u->msg);
            }
            if (u->entered < 0) {
                kvi_batch_op_done(c, ops[i], kvi_engine_error(c, u->st, "%s", u->msg));
                continue;
            }
        }
        sorted[cnt] = e;
        cnt++;
    }
    if (cnt == 0)
        goto release;
    qsort(sorted, cnt, sizeof *sorted, ent_cmp);
    for (size_t i = 0; i < cnt; i++) {
        keys[i] = sorted[i]->k.mkey;
        lens[i] = sorted[i]->k.mkey_len;
    }
    /* The batch's deadline bounds the waits of this multi-get. */
    uint64_t poll_ms = memcached_behavior_get(l.mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT);
    int64_t left = deadline_ms != 0 ? deadline_ms - kvi_monotonic_ms() : 0;
    if (deadline_ms != 0 && (left <= 0 || (uint64_t)left < poll_ms))
        memcached_behavior_set(l.mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
                               (uint64_t)(left > 0 ? left : 1));
    int64_t now_ms = kvi__mc_now_ms();
    size_t answered = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        memcached_return_t rc = memcached_mget(l.mc, keys, lens, cnt);
        st = KVI_OK;
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_SOME_ERRORS)
            st = kvi__mc_fail(c, l.mc, rc, "fetch (multi-get)");
        memcached_result_st res;
        if (st == KVI_OK && memcached_result_create(l.mc, &res) == NULL)
            st = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        if (st == KVI_OK) {
            memcached_result_st *r;
            while ((r = memcached_fetch_result(l.mc, &res, &rc)) != NULL) {
                const char *key = memcached_result_key_value(r);
                size_t klen = memcached_result_key_length(r);
                for (size_t i = ent_find(sorted, cnt, key, klen);
                     i < cnt && sorted[i]->k.mkey_len == klen &&
                     memcmp(sorted[i]->k.mkey, key, klen) == 0;
                     i++) {
                    if (!sorted[i]->op->done) {
                        end_with_result(c, sorted[i], r, now_ms);
                        answered++;
                    }
                }
            }
            memcached_result_free(&res);
            /* As for a single fetch: libmemcached reports a failure of a
             * fetch as NOTFOUND; the handle's last error tells. */
            memcached_return_t last = memcached_last_error(l.mc);
            if (last != MEMCACHED_SUCCESS && last != MEMCACHED_END && last != MEMCACHED_NOTFOUND)
                st = kvi__mc_fail(c, l.mc, last, "fetch (multi-get)");
            else if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_SUCCESS)
                st = kvi__mc_fail(c, l.mc, rc, "fetch (multi-get)");
        }
        /* A stale connection, nothing read yet: reads may be sent again. */
        if (st == KVI_OK || answered > 0 || !kvi__mc_retry_once(c, l.mc, st))
            break;
    }
    if (deadline_ms != 0)
        memcached_behavior_set(l.mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, poll_ms);
    /* The keys memcached did not return: misses, or the failure's status. */
    char msg[400] = "";
    if (st != KVI_OK)
        copy_msg(c, msg, sizeof msg);
    for (size_t i = 0; i < cnt; i++)
        if (!sorted[i]->op->done)
            kvi_batch_op_done(c, sorted[i]->op,
                              st == KVI_OK ? KVI_NOT_FOUND : kvi_engine_error(c, st, "%s", msg));
release:
    for (uint32_t s = 0; s < m->nservers; s++)
        if (use[s].entered > 0)
            kvi_breaker_leave(c, m->servers[s].breaker, m->servers[s].name, use[s].probe, st);
    kvi__mc_release(c, &l, st);
out:
    kvi_engine_free(c, ents);
    kvi_engine_free(c, sorted);
    kvi_engine_free(c, keys);
    kvi_engine_free(c, lens);
    kvi_engine_free(c, use);
}

/* See mc_engine.h. */
void kvi__mc_batch(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    /* Every call below is cut at the batch's deadline (mc_watch.c). */
    int64_t outer = kvi__mc_batch_deadline_ms;
    kvi__mc_batch_deadline_ms = deadline_ms;
    for (size_t i = 0; i < n;) {
        if (deadline_ms != 0 && kvi_monotonic_ms() >= deadline_ms) {
            for (; i < n; i++)
                end_timeout(c, ops[i]);
            break;
        }
        size_t j = i;
        while (j < n && ops[j]->kind == KVI_OP_FETCH)
            j++;
        if (j - i >= 2) {
            mget_run(c, ops + i, j - i, deadline_ms);
            i = j;
        } else {
            /* One fetch alone is cheaper as a plain get (no NOOP). */
            kvi_batch_op_single(c, ops[i++]);
        }
    }
    kvi__mc_batch_deadline_ms = outer;
}
