/*
 * mc_item.c -- reading and writing one item: the memcached key of a kvi key,
 * the envelope of mapped keys' values, the expiry stamp in the flags.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mc_engine.h"

int64_t kvi__mc_now_ms(void)
{
    /* Wall-clock time: stamps are compared across hosts and with the
     * server's clock, so the context's (replaceable) clock does not apply. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kvi_status kvi__mc_key_init(kvi_conn *c, struct mc_key *k, const void *key, size_t key_len)
{
    k->key = key;
    k->key_len = key_len;
    const struct mc_conn *m = kvi_conn_priv(c);
    k->mkey_len = kvi__mc_key_md(key, key_len, m->sha256, k->mkey, &k->mapped);
    if (k->mkey_len == 0)
        return kvi_engine_error(c, KVI_E_BACKEND,
                                "cannot compute the SHA-256 that names this key in memcached "
                                "(libcrypto has no SHA-256 provider)");
    return KVI_OK;
}

/* The common end of both reads: the stamp, the envelope of a mapped key,
 * whether the item is live. */
kvi_status kvi__mc_decode(kvi_conn *c, const struct mc_key *k, struct mc_item *it, int64_t now_ms,
                          const char *op)
{
    it->present = 1;
    it->expiry_s = kvi__mc_stamp_expiry(it->flags);
    if (k->mapped) {
        size_t off;
        if (!kvi__mc_unwrap(it->data, it->len, k->key, k->key_len, &off))
            return kvi_engine_error_in(c, KVI_E_CORRUPT, op,
                                       "item '%s' is not kvi's envelope for this key "
                                       "(written by another client?)",
                                       k->mkey);
        it->data += off;
        it->len -= off;
    }
    it->live = it->expiry_s == 0 || it->expiry_s * 1000 > now_ms;
    if (it->data == NULL)
        it->data = "";
    return KVI_OK;
}

/* After a read that returned no item: a miss (KVI_OK) or a failure.
 * libmemcached 1.1 reports any failure of a fetch that returned no item as
 * NOTFOUND (a garbage reply included); the handle's last error tells a miss
 * from a failure. */
static kvi_status mc_no_item(kvi_conn *c, memcached_st *mc, memcached_return_t rc, const char *op)
{
    memcached_return_t last = memcached_last_error(mc);
    if (last != MEMCACHED_SUCCESS && last != MEMCACHED_END && last != MEMCACHED_NOTFOUND)
        return kvi__mc_fail(c, mc, last, op);
    if (rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_SUCCESS)
        return KVI_OK;
    return kvi__mc_fail(c, mc, rc, op);
}

/* Reads the item of k without its CAS: one GETK request and its reply (a
 * multi-get would add a NOOP request and a second reply packet, a wait
 * more per call).  The value is malloc'ed by libmemcached, owned by it. */
static kvi_status mc_get_once(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                              struct mc_item *it, int64_t now_ms, const char *op)
{
    memset(it, 0, sizeof *it);
    size_t len = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    char *v = memcached_get(mc, k->mkey, k->mkey_len, &len, &flags, &rc);
    /* An empty value comes back as NULL with SUCCESS. */
    if (v == NULL && rc != MEMCACHED_SUCCESS)
        return mc_no_item(c, mc, rc, op);
    it->owned = v;
    it->data = v;
    it->len = v != NULL ? len : 0;
    it->flags = flags;
    return kvi__mc_decode(c, k, it, now_ms, op);
}

/* Reads the item of k with its CAS into res / *it. */
static kvi_status mc_gets_once(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                               memcached_result_st *res, struct mc_item *it, int64_t now_ms,
                               const char *op)
{
    memset(it, 0, sizeof *it);
    const char *keys[1] = {k->mkey};
    size_t lens[1] = {k->mkey_len};
    memcached_return_t rc = memcached_mget(mc, keys, lens, 1);
    if (rc != MEMCACHED_SUCCESS)
        return kvi__mc_fail(c, mc, rc, op);
    memcached_result_st *r = memcached_fetch_result(mc, res, &rc);
    if (r == NULL)
        return mc_no_item(c, mc, rc, op);
    /* Drain the end of the reply so the handle is ready for the next call. */
    memcached_return_t rc2;
    memcached_result_st *extra;
    while ((extra = memcached_fetch_result(mc, NULL, &rc2)) != NULL)
        memcached_result_free(extra);
    it->data = memcached_result_value(r);
    it->len = memcached_result_length(r);
    it->flags = memcached_result_flags(r);
    it->cas = memcached_result_cas(r);
    return kvi__mc_decode(c, k, it, now_ms, op);
}

static kvi_status mc_read_once(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                               memcached_result_st *res, struct mc_item *it, int64_t now_ms,
                               const char *op)
{
    if (res == NULL)
        return mc_get_once(c, mc, k, it, now_ms, op);
    return mc_gets_once(c, mc, k, res, it, now_ms, op);
}

void kvi__mc_item_free(struct mc_item *it)
{
    free(it->owned);
    it->owned = NULL;
}

kvi_status kvi__mc_read(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                        memcached_result_st *res, struct mc_item *it, int64_t now_ms,
                        const char *op)
{
    kvi_status st = mc_read_once(c, mc, k, res, it, now_ms, op);
    if (kvi__mc_retry_once(c, mc, st)) {
        kvi__mc_item_free(it);
        st = mc_read_once(c, mc, k, res, it, now_ms, op);
    }
    return st;
}

/* Writes payload under k (wrapped when k is mapped).  Returns the raw
 * libmemcached code; *st is set to KVI_E_NOMEM when the envelope could not
 * be built (rc is then MEMCACHED_MEMORY_ALLOCATION_FAILURE). */
memcached_return_t kvi__mc_write(kvi_conn *c, memcached_st *mc, const struct mc_key *k,
                                 enum mc_write_mode mode, const void *payload, size_t len,
                                 int64_t exptime, uint32_t flags, uint64_t cas)
{
    const char *val = payload;
    size_t val_len = len;
    char *buf = NULL;
    if (k->mapped) {
        size_t head = KVI_MC_WRAP_FIXED + k->key_len;
        buf = kvi_engine_malloc(c, head + len + 1);
        if (buf == NULL)
            return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
        kvi__mc_wrap_header(k->key, k->key_len, (unsigned char *)buf);
        if (len > 0)
            memcpy(buf + head, payload, len);
        val = buf;
        val_len = head + len;
    }
    if (val == NULL)
        val = "";
    time_t exp = (time_t)exptime;
    memcached_return_t rc;
    switch (mode) {
    case MC_ADD:
        rc = memcached_add(mc, k->mkey, k->mkey_len, val, val_len, exp, flags);
        break;
    case MC_CAS:
        rc = memcached_cas(mc, k->mkey, k->mkey_len, val, val_len, exp, flags, cas);
        break;
    case MC_SET:
    default:
        rc = memcached_set(mc, k->mkey, k->mkey_len, val, val_len, exp, flags);
        break;
    }
    kvi_engine_free(c, buf);
    return rc;
}

void kvi__mc_new_expiry(int64_t now_ms, int64_t expire_s, uint32_t *flags, int64_t *exptime)
{
    *flags = kvi__mc_stamp(now_ms, expire_s);
    *exptime = *flags ? kvi__mc_server_exptime(*flags, now_ms) : 0;
}

/* Asks every server of mc for its statistics; *up counts the servers that
 * answered.  Used instead of VERSION: libmemcached 1.1 copies a binary
 * VERSION reply into a 32-byte stack buffer whatever length the server
 * announces, so a hostile or broken server overwrites the caller's stack
 * (the reply lengths of STAT are checked against the buffer). */
memcached_return_t kvi__mc_stat_all(kvi_conn *c, memcached_st *mc, uint32_t *up, int warn)
{
    memcached_return_t rc;
    memcached_stat_st *s = memcached_stat(mc, NULL, &rc);
    uint32_t n = memcached_server_count(mc);
    *up = 0;
    if (s == NULL)
        return rc == MEMCACHED_SUCCESS ? MEMCACHED_FAILURE : rc;
    /* libmemcached marks a server whose reply never gave its pid with -1. */
    for (uint32_t i = 0; i < n; i++) {
        if (rc == MEMCACHED_SUCCESS || s[i].pid != -1) {
            (*up)++;
        } else if (warn) {
            const memcached_instance_st *in = memcached_server_instance_by_position(mc, i);
            kvi_engine_log(c, KVI_LOG_WARN, "server %s:%u does not answer",
                           memcached_server_name(in), (unsigned)memcached_server_port(in));
        }
    }
    memcached_stat_free(NULL, s);
    /* A STAT reply libmemcached cannot parse fails without a recorded
     * error (a connection or timeout failure records one). */
    if (rc == MEMCACHED_SOME_ERRORS && memcached_last_error(mc) == MEMCACHED_SUCCESS)
        return MEMCACHED_PROTOCOL_ERROR;
    return rc;
}
